"""A crawl's inspection: everything the decision needs to know about one crawl, without reading its data.

The *Inspect crawl* step asks it of every crawl found; the sweep, again, of an old crawl before deleting it.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import UTC, datetime, timedelta

from kingfisher_archive import policy, scrapy_log
from kingfisher_archive.crawl import UnsafeCrawlError, measure
from kingfisher_archive.records import CrawlKey, CrawlRef, Inspection, crawl_id
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)


#: Clocks and time zones differ between hosts; a data version further ahead than this is not a real crawl time.
FUTURE_TOLERANCE = timedelta(days=1)
_DOTTED_PATH = re.compile(r"[A-Za-z_]\w{0,99}(?:\.[A-Za-z_]\w{0,99}){0,9}", re.ASCII)


def inspect(settings: Settings, crawl: CrawlRef, now: datetime | None = None) -> Inspection:
    """Everything the decision needs to know about one crawl, without reading its data files.

    :param crawl: a crawl that :func:`~kingfisher_archive.steps.finding.find` found on disk.
    :param now: what "the future" is measured from (a data version after it is rejected); the clock by default.
    :returns: its facts and reject reason, or, for a problem of this crawl alone, only ``error``: never raises for
        one, so that one bad directory or log does not stop the run (the crawl is held). See docs/safety.md, 8.
    """
    try:
        return _inspect(settings, crawl, now or datetime.now(UTC).replace(tzinfo=None))
    except Exception as e:
        logger.exception("%s/%s: inspection failed", crawl.get("source_id"), crawl.get("data_version"))
        return {
            "id": crawl_id(str(crawl.get("source_id")), str(crawl.get("data_version"))),
            "source_id": crawl.get("source_id"),
            "data_version": crawl.get("data_version"),
            "collection_id": crawl.get("collection_id"),
            "reject_reason": None,
            "error": f"{type(e).__name__}: {e}",
        }


def _inspect(settings: Settings, crawl: CrawlRef, now: datetime) -> Inspection:
    key = CrawlKey.of(crawl)
    source_id, data_version = key.source_id, key.data_version
    facts: Inspection = {
        "id": crawl_id(source_id, data_version),
        "source_id": source_id,
        "data_version": data_version,
        "collection_id": crawl.get("collection_id"),
        "reject_reason": None,
        "detail": None,
        "bytes": 0,
        "files": 0,
        "data_files": 0,
        "fingerprint": None,
        "log": None,
        "files_count": 0,
        "errors_count": 0,
        "errors_source": None,
        "finish_reason": None,
        "reused": False,
        "reused_detail": None,
        "error": None,
    }
    directory = key.directory(settings.data_directory)
    started = key.started
    try:
        os.lstat(directory)
        exists = True
    except FileNotFoundError:
        exists = False  # any other error (permissions, I/O) is not "no directory": it holds the crawl
    safe = True
    if exists:
        try:
            summary = measure(directory)
            facts.update(
                bytes=summary.bytes,
                files=summary.files,
                data_files=summary.data_files,
                fingerprint=summary.fingerprint,
            )
        except UnsafeCrawlError as e:
            safe = False
            facts["detail"] = str(e)

    log = None
    if exists and safe:
        path = scrapy_log.find(settings.logs_directory, source_id, started, crawl.get("scrapyd_job"))
        if path:
            log = scrapy_log.parse(path)  # a log found but unreadable now holds the crawl, never rejects it
        if log is not None:
            facts.update(
                log=path,
                files_count=log.files_count,
                errors_count=log.errors_count,
                errors_source=log.errors_source,
                finish_reason=log.finish_reason,
            )
            if log.is_reused():
                facts.update(reused=True, reused_detail=_reused_detail(log))
            if log.is_subset():
                facts["detail"] = "spider arguments: " + ", ".join(
                    f"{k}={v}"
                    for k, v in sorted(log.spider_arguments.items())
                    if k in scrapy_log.SUBSET_ARGUMENTS and v
                )

    facts["reject_reason"] = policy.reject_reason(
        data_directory_exists=exists,
        data_directory_safe=safe,
        future=started > now + FUTURE_TOLERANCE,
        data_files=facts["data_files"],
        log_found=log is not None,
        finished=bool(log and log.is_finished()),
        subset=bool(log and log.is_subset()),
        files_count=facts["files_count"],
        errors_count=facts["errors_count"],
    )
    reason = facts["reject_reason"]
    if reason == policy.Reject.NOT_FINISHED:
        facts["detail"] = f"the log's finish reason is {facts['finish_reason']!r}"
    elif reason == policy.Reject.NOT_CLEAN_ENOUGH:
        facts["detail"] = f"{facts['errors_count']} errors ({facts['errors_source']}) for {facts['files_count']} files"
    elif reason == policy.Reject.NO_DATA_FILES and log is not None and facts["data_files"]:
        facts["detail"] = "the log records no File items and no errors"
    elif reason == policy.Reject.FUTURE_DATA_VERSION:
        facts["detail"] = f"the crawl claims to start at {started}, after now ({now.replace(microsecond=0)} UTC)"
    elif reason is None:
        facts["detail"] = None
    reused = " (reused by Kingfisher Collect)" if facts["reused"] else ""
    logger.info("%s: %s%s", facts["id"], facts["reject_reason"] or "acceptable", reused)
    return facts


def _reused_detail(log: scrapy_log.ScrapyLog) -> str:
    """Why the crawl's directory is reused: the extension as the log names it, and the ``crawl_time`` it pins.

    Only what has been checked goes into it (the log is untrusted): a dotted path of identifiers, a parsed time.
    """
    names = (
        name
        for name in log.enabled_extensions or ()
        if scrapy_log.is_database_store(name) and _DOTTED_PATH.fullmatch(name)
    )
    name = next(names, scrapy_log.DATABASE_STORE)
    detail = (
        f"the log's enabled extensions include {name} (incremental updates): Kingfisher Collect reads the crawl "
        "directory again at each close, so it must not be deleted"
    )
    if log.crawl_time_source == "crawl_time" and log.crawl_time is not None:
        crawl_time = log.crawl_time.strftime(scrapy_log.CRAWL_TIME_FORMAT)
        detail += f"; its crawl_time argument ({crawl_time}) pins the directory that later crawls write into"
    return detail
