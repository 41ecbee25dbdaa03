"""The *Sweep old crawls* task: the opt-in local retention (the old 90-day cron), never touching an open month."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

from kingfisher_archive import crawl as crawls
from kingfisher_archive import scrapy_log
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.records import Swept, crawl_id
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)


def sweep(
    settings: Settings,
    ledger: Ledger,
    loaded: set[tuple[str, str]],
    now: datetime,
    dry_run: bool,
    run_id: str | None = None,
) -> list[Swept]:
    """Delete old crawls that Process loaded and this package decided not to archive (the old 90-day cron).

    A crawl is swept only when all of these hold: local retention is on (``retention_days``); the ledger has
    settled it as ``rejected`` or ``not_archived``; Kingfisher Process still lists it as loaded; its data version
    is older than ``retention_days``; and no crawl of its source and month is still ``to_archive`` or ``held``
    (its month's choice is not final, so it may yet be needed). Its directory, log and ``.stats`` are deleted; on
    a dry run nothing is, and the list says what would be.
    """
    if not settings.retention_days:
        return []
    cutoff = now - timedelta(days=settings.retention_days)
    rows = ledger.all()
    open_months = {(r["source_id"], r["data_version"][:6]) for r in rows if r["status"] in ("to_archive", "held")}
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
