"""The *Sweep old crawls* task: the opt-in local retention (the old 90-day cron), never touching an open month."""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timedelta

from botocore.exceptions import ClientError

from kingfisher_archive import scrapy_log
from kingfisher_archive.bucket import Bucket, MetadataError
from kingfisher_archive.crawl import UnsafeCrawlError, crawl_directory, delete_local, on_disk, source_id_problem
from kingfisher_archive.inspection import inspect
from kingfisher_archive.ledger import OPEN, Held, Ledger, Status
from kingfisher_archive.problem import Problem
from kingfisher_archive.records import CrawlKey, Swept
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)

_CRAWL = re.compile(r"(?P<source>[^/]+)/(?P<version>\d{8}_\d{6})")
#: A 2020 archive's id: its metadata names no data version.
_UNDATED = re.compile(r"(?P<source>[^/]+)/(?P<year>\d{4})-(?P<month>\d{2}) \(archived\)")
#: The reason of a crawl identical (same checksum) to an earlier month's archive (policy.not_distinct).
_NOT_DISTINCT = re.compile(r"\d{4}_\d{1,2}_not_distinct")


def sweep(
    settings: Settings,
    ledger: Ledger,
    loaded: set[tuple[str, str]],
    now: datetime,
    dry_run: bool,
    run_id: str | None = None,
    *,
    bucket: Bucket,
) -> list[Swept]:
    """Delete old crawls that Process loaded and this package decided not to archive (the old 90-day cron).

    :param loaded: (source_id, data_version) that Kingfisher Process lists as loaded: nothing else is swept.
    :param now: what "older than ``settings.retention_days``" is measured from.
    :param dry_run: delete nothing; the list says what would be.
    :param bucket: asked whether the archive a crawl lost to still stands (the ledger may say what it no longer holds).
    :returns: the crawls swept: only settled ``rejected`` or ``not_archived`` crawls of months no longer
        :data:`~kingfisher_archive.ledger.OPEN`, whose winner's month holds a whole archive, or whose reject reason
        still holds when inspected again. See docs/operating.md, "Local retention", and docs/safety.md, 9.
    """
    if not settings.retention_days:
        return []
    cutoff = now - timedelta(days=settings.retention_days)
    rows = [(row, CrawlKey.parse(row)) for row in ledger.all()]  # each data version parsed once
    # A month is open while a crawl of it that may yet be archived is still there to be: loaded, and on disk. A row
    # whose crawl was deleted by hand, or whose Process row was deleted, keeps no month open for ever.
    open_months = {
        (r["source_id"], key.period)
        for r, key in rows
        if r["status"] in OPEN
        and key is not None
        and (r["source_id"], r["data_version"]) in loaded
        and _on_disk(settings, r["source_id"], r["data_version"])
    }
    swept = []
    for row, key in rows:
        source_id, data_version = row["source_id"], row["data_version"]
        if row["status"] not in (Status.REJECTED, Status.NOT_ARCHIVED) or (source_id, data_version) not in loaded:
            continue
        if source_id_problem(source_id) or key is None:
            continue
        if (source_id, key.period) in open_months or key.started >= cutoff:
            continue
        try:
            item = _sweep_one(settings, ledger, bucket, row, key, dry_run, run_id)
        except Exception as e:  # one crawl's trouble (EPERM, EIO, a link where its directory was) stays its own
            problem = Problem.of(key.id, e)
            logger.error("Kept %s: sweeping it failed: %s", key.id, problem.detail)
            if not dry_run:
                ledger.note_problem(source_id, data_version, problem.reason, problem.detail, run_id)
            item = {
                "id": key.id,
                "status": row["status"],
                "reason": row["reason"],
                "bytes": (row["facts"] or {}).get("bytes"),
                "deleted": [],
                "problem": {"reason": problem.reason, "detail": problem.detail},
            }
        if item is not None:
            swept.append(item)
    logger.info(
        "Local retention (%d days): %s %d crawls",
        settings.retention_days,
        "would sweep" if dry_run else "swept",
        len([item for item in swept if "problem" not in item]),
    )
    return swept


def _sweep_one(
    settings: Settings, ledger: Ledger, bucket: Bucket, row: dict, key: CrawlKey, dry_run: bool, run_id: str | None
) -> Swept | None:
    """Sweep one settled crawl if it may go; ``None`` if it stays (the log says why)."""
    source_id, data_version = key.source_id, key.data_version
    directory = crawl_directory(settings.data_directory, source_id, data_version)
    if not os.path.lexists(directory):
        if not (row["facts"] or {}).get("problem"):
            return None
        # An earlier sweep of it stopped half-way (its note says why): what it left, set aside or the log, goes now.
        log = scrapy_log.find(settings.logs_directory, source_id, key.started)
        deleted = (
            []
            if dry_run
            else delete_local(settings.data_directory, settings.logs_directory, source_id, data_version, log)
        )
        if not dry_run:
            ledger.mark_swept(source_id, data_version, run_id)
        return {"id": key.id, "status": row["status"], "reason": row["reason"], "bytes": None, "deleted": deleted}
    # Inspected again: a rejection only while its reason still holds, and never a crawl Collect writes into again.
    again = inspect(settings, {"source_id": source_id, "data_version": data_version, "scrapyd_job": None})
    if again.get("reused"):
        logger.warning("Kept %s: Kingfisher Collect writes into it again (incremental updates)", key.id)
        return None
    if row["status"] == Status.NOT_ARCHIVED:
        facts = row["facts"] or {}
        winner = facts.get("pending_on") or facts.get("superseded_by") or facts.get("compared_with")
        # Identical to an earlier month's archive: only that very archive (the same checksum) stands for it.
        same = facts.get("checksum") if _NOT_DISTINCT.fullmatch(row["reason"] or "") else None
        if not _stands_in_bucket(bucket, winner, same):
            logger.warning(
                "Kept %s: it was not archived because of %s, and %s is not in s3://%s/",
                key.id,
                winner or "(no archive recorded)",
                "that very archive" if same else "no archive of that month",
                bucket.name,
            )
            return None
    elif again.get("error") or again["reject_reason"] != row["reason"]:
        # A rejection is settled, and may be old: a crawl rejected for a log unreadable then is looked at again.
        now_says = again.get("error") or again["reject_reason"] or "acceptable"
        logger.warning(
            "Kept %s: it was rejected (%s), which no longer holds (now: %s); the next run decides it again",
            key.id,
            row["reason"],
            now_says,
        )
        if not dry_run:
            detail = f"rejected ({row['reason']}) earlier, which no longer holds (now: {now_says})"
            facts = {**(row["facts"] or {}), "detail": detail}
            ledger.record(
                [{**row, "status": Status.HELD, "reason": Held.REJECTION_NO_LONGER_HOLDS, "facts": facts}],
                run_id,
            )
        return None
    log = scrapy_log.find(settings.logs_directory, source_id, key.started)
    item = {"id": key.id, "status": row["status"], "reason": row["reason"], "bytes": (row["facts"] or {}).get("bytes")}
    if dry_run:
        item["deleted"] = []
    else:
        item["deleted"] = delete_local(settings.data_directory, settings.logs_directory, source_id, data_version, log)
        ledger.mark_swept(source_id, data_version, run_id)
    return item


def _on_disk(settings: Settings, source_id: str, data_version: str) -> bool:
    try:
        return on_disk(settings.data_directory, source_id, data_version)
    except (ValueError, UnsafeCrawlError):
        return False
    except OSError:
        return True  # cannot be looked at now: it may be there


def _stands_in_bucket(bucket: Bucket, archived_id: str | None, checksum: str | None = None) -> bool:
    """Whether the month of the archive ``archived_id`` names (an :attr:`ArchivedCrawl.id`) holds a whole archive:
    that one, or one that replaced it since (only a better crawl replaces a month's archive). With ``checksum`` (a
    crawl found identical to that archive), only that very archive: the same crawl, with that checksum."""
    if match := _CRAWL.fullmatch(archived_id or ""):
        if (key := CrawlKey.parse({"source_id": match["source"], "data_version": match["version"]})) is None:
            return False
        year, month = key.year, key.month
    elif match := _UNDATED.fullmatch(archived_id or ""):
        year, month = int(match["year"]), int(match["month"])
    else:
        return False
    try:
        found = bucket.archived(match["source"], year, month)
    except MetadataError:
        return False
    if found is None:
        return False
    if checksum is not None and (found.id != archived_id or found.checksum != checksum):
        return False
    try:
        size = bucket.data_size(found)
    except ClientError:
        return False
    expected = found.raw.get("compressed_bytes")
    return size is not None and (not isinstance(expected, int) or size == expected)
