"""The *Find loaded crawls* task: turn Kingfisher Process's collections into the run's work.

Most collections' crawls were archived and deleted long ago, so only crawls still on disk become work; crawls
the ledger has settled are skipped; crawls Process is still loading are listed as waiting, never work.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

from kingfisher_archive.bucket import reserved_source_problem
from kingfisher_archive.crawl import crawl_directory, format_data_version, source_id_problem
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.process import Collection
from kingfisher_archive.records import CrawlRef, Waiting, crawl_id
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)


#: Airflow refuses to map a task over more than 1,024 items by default; beyond this, the rest waits a day.
MAX_CRAWLS_PER_RUN = 1000


def find(
    settings: Settings,
    collections: list[Collection],
    settled: set[tuple[str, str]],
    reevaluate: bool,
    loading: list[Collection] = (),
    now: datetime | None = None,
    deleted: set[tuple[str, str]] = frozenset(),
) -> dict:
    """Turn Process's loaded collections into work: only those whose crawl directory is still on disk.

    :param collections: what Kingfisher Process has finished loading (most were archived long ago: not work).
    :param settled: (source_id, data_version) the ledger has settled: skipped unless ``reevaluate``.
    :param loading: what Process is still loading: never work; those on disk are listed as ``waiting``.
    :param deleted: (source_id, data_version) the ledger records deleted (archived, or swept): one on disk again was
        written again since (Kingfisher Collect resumed it) and is work, a new crawl to inspect, settled or not.
    :returns: ``{"crawls": [CrawlRef], "waiting": [Waiting], "counts": {...}}``.
    """
    crawls_found: dict[tuple[str, str], CrawlRef] = {}
    ignored: list[str] = []
    counts = Counter()
    for collection in collections:
        problem = source_id_problem(collection.source_id) or reserved_source_problem(collection.source_id)
        if problem:
            ignored.append(f"collection {collection.id}: {problem}")
            continue
        data_version = format_data_version(collection.data_version)
        key = (collection.source_id, data_version)
        directory = crawl_directory(settings.data_directory, *key)
        if not os.path.lexists(directory):
            counts["not_on_disk"] += 1
            continue
        if key in deleted:
            logger.warning("%s/%s: written again at its path after it was deleted: inspected as a new crawl", *key)
        elif key in settled and not reevaluate:
            counts["settled"] += 1
            continue
        if key in crawls_found:
            continue
        crawls_found[key] = {
            "source_id": collection.source_id,
            "data_version": data_version,
            "collection_id": collection.id,
            "scrapyd_job": collection.scrapyd_job,
        }
    work = sorted(crawls_found.values(), key=lambda c: (c["source_id"], c["data_version"]))
    if len(work) > MAX_CRAWLS_PER_RUN:
        counts["deferred"] = len(work) - MAX_CRAWLS_PER_RUN
        work = work[:MAX_CRAWLS_PER_RUN]
    waiting = _waiting(settings, loading, now or datetime.now(UTC).replace(tzinfo=None))
    for message in ignored:
        logger.warning("Ignored %s", message)
    for item in waiting:
        logger.info("%s: waiting for Kingfisher Process (%s)", item["id"], item["detail"])
    logger.info(
        "%d collections loaded; %d crawls to inspect; %d no longer on disk; %d already settled; %d ignored; "
        "%d waiting for Kingfisher Process to load their files%s",
        len(collections),
        len(work),
        counts["not_on_disk"],
        counts["settled"],
        len(ignored),
        len(waiting),
        f"; {counts['deferred']} left for the next run" if counts["deferred"] else "",
    )
    return {"crawls": work, "ignored": ignored, "counts": dict(counts), "waiting": waiting}


def _waiting(settings: Settings, loading: list[Collection], now: datetime) -> list[Waiting]:
    """The crawls still on disk that Process is loading, oldest close first, with how long they have waited."""
    waiting = []
    for collection in sorted(loading, key=lambda c: (c.closed_at or now, c.id)):
        if source_id_problem(collection.source_id):
            continue
        data_version = format_data_version(collection.data_version)
        if not os.path.lexists(crawl_directory(settings.data_directory, collection.source_id, data_version)):
            continue
        waited = max(now - (collection.closed_at or now), timedelta(0))
        waiting.append(
            {
                "id": crawl_id(collection.source_id, data_version),
                "source_id": collection.source_id,
                "data_version": data_version,
                "collection_id": collection.id,
                "closed_at": collection.closed_at.isoformat() if collection.closed_at else None,
                "waited_seconds": int(waited.total_seconds()),
                "detail": f"closed {format_duration(waited)} ago; {collection.loading_detail()}",
                "loading": collection.loading_detail(),
            }
        )
    return waiting


def format_duration(value: timedelta) -> str:
    """``3 days 4 h``, ``5 h 12 min`` or ``7 min``: how long a crawl has waited, for people."""
    minutes = int(value.total_seconds()) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def find_and_record(
    settings: Settings,
    collections: list[Collection],
    loading: list[Collection],
    ledger: Ledger | None,
    reevaluate: bool,
    loaded_before: datetime | None,
    run_id: str | None,
    dry_run: bool,
) -> dict:
    """:func:`find`, against what the ledger has settled and deleted, and the waiting crawls recorded in it (where
    ``kingfisher-archive list`` and the catalogue page find them).

    :param ledger: ``None`` on a dry run with no ledger yet: nothing is settled.
    :param loaded_before: the end of the run's data interval (``None``: now), recorded with the waiting crawls.
    :param dry_run: record nothing.
    :returns: as :func:`find`.
    """
    settled, deleted = (ledger.settled(), ledger.deleted()) if ledger is not None else (set(), set())
    work = find(settings, collections, settled, reevaluate, loading, deleted=deleted)
    if not dry_run:
        ledger.record_waiting(work["waiting"], loaded_before, run_id)
    return work
