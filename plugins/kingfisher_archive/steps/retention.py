"""The *Sweep old crawls* task: the opt-in local retention (the old 90-day cron), never touching an open month."""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timedelta

from botocore.exceptions import ClientError

from kingfisher_archive import bucket as layout
from kingfisher_archive import crawl as crawls
from kingfisher_archive import scrapy_log
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.records import Swept, crawl_id
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)

_CRAWL = re.compile(r"(?P<source>[^/]+)/(?P<version>\d{8}_\d{6})")
#: A 2020 archive's id: its metadata names no data version.
_UNDATED = re.compile(r"(?P<source>[^/]+)/(?P<year>\d{4})-(?P<month>\d{2}) \(archived\)")


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

    A crawl is swept only when all of these hold: local retention is on (``retention_days``); the ledger has
    settled it as ``rejected`` or ``not_archived``; Kingfisher Process still lists it as loaded; its data version
    is older than ``retention_days``; no crawl of its source and month is still ``to_archive``, ``pending`` or
    ``held`` (its month's choice is not final, so it may yet be needed); and, for a crawl not archived because of
    another crawl's archive, that archive is in the bucket now (asked of the bucket, not of the ledger: the
    ledger may say what the bucket no longer holds). Its directory, log and ``.stats`` are deleted; on a dry run
    nothing is, and the list says what would be.
    """
    if not settings.retention_days:
        return []
    cutoff = now - timedelta(days=settings.retention_days)
    rows = ledger.all()
    open_months = {
        (r["source_id"], r["data_version"][:6]) for r in rows if r["status"] in ("to_archive", "pending", "held")
    }
    swept = []
    for row in rows:
        source_id, data_version = row["source_id"], row["data_version"]
        if row["status"] not in ("rejected", "not_archived") or (source_id, data_version) not in loaded:
            continue
        if crawls.source_id_problem(source_id) or (source_id, data_version[:6]) in open_months:
            continue
        try:
            started = crawls.parse_data_version(data_version)
        except ValueError:
            continue
        directory = crawls.crawl_directory(settings.data_directory, source_id, data_version)
        if started >= cutoff or not os.path.lexists(directory):
            continue
        if row["status"] == "not_archived":
            facts = row["facts"] or {}
            winner = facts.get("pending_on") or facts.get("superseded_by") or facts.get("compared_with")
            if not _in_bucket(bucket, winner):
                logger.warning(
                    "Kept %s: it was not archived because of %s, whose archive is not in s3://%s/",
                    crawl_id(source_id, data_version),
                    winner or "(no archive recorded)",
                    bucket.name,
                )
                continue
        log = scrapy_log.find(settings.logs_directory, source_id, started)
        item = {
            "id": crawl_id(source_id, data_version),
            "status": row["status"],
            "reason": row["reason"],
            "bytes": (row["facts"] or {}).get("bytes"),
        }
        if dry_run:
            item["deleted"] = []
        else:
            item["deleted"] = crawls.delete_local(
                settings.data_directory, settings.logs_directory, source_id, data_version, log
            )
            ledger.mark_swept(source_id, data_version, run_id)
        swept.append(item)
    logger.info(
        "Local retention (%d days): %s %d crawls",
        settings.retention_days,
        "would sweep" if dry_run else "swept",
        len(swept),
    )
    return swept


def _in_bucket(bucket: Bucket, archived_id: str | None) -> bool:
    """Whether the bucket holds the archive ``archived_id`` names (an :attr:`ArchivedCrawl.id`), data included."""
    if match := _CRAWL.fullmatch(archived_id or ""):
        year, month = int(match["version"][:4]), int(match["version"][4:6])
    elif match := _UNDATED.fullmatch(archived_id or ""):
        year, month = int(match["year"]), int(match["month"])
    else:
        return False
    found = bucket.archived(match["source"], year, month)
    if found is None or found.id != archived_id:
        return False
    try:
        head = bucket.client.head_object(Bucket=bucket.name, Key=found.key[: -len(layout.METADATA)] + layout.DATA)
    except ClientError:
        return False
    expected = found.raw.get("compressed_bytes")
    return not isinstance(expected, int) or head["ContentLength"] == expected
