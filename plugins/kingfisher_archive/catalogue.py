"""The catalogue: the whole bucket by source and month, and what the ledger says is still on disk.

:func:`catalogue` is what ``kingfisher-archive list`` without a source and the Airflow UI's catalogue page show,
read through :func:`kingfisher_archive.restore.list_months` and :meth:`kingfisher_archive.ledger.Ledger.all` so
that the layout's rules live in one place. Plain Python: no Airflow. It returns, JSON-ready::

    {"bucket", "generated_at",
     "sources": [{"source_id", "months": [month row, ...], "bytes", "compressed_bytes", "problems": [...]}],
     "periods": ["YYYY-MM", ...],              # every month that any source has, oldest first (the grid's columns)
     "on_disk": {"waiting": [...], "held": [...], "kept": [...]},
     "totals": {"bytes_archived", "compressed_bytes", "bytes_freed", "by_month": [...]}}

A month row is a ``list_months`` row (what ``list SOURCE`` prints) plus ``period`` (``YYYY-MM``), ``state``
(``archived``, or ``broken`` with a problem), ``reason`` (why this installation's ledger kept the crawl),
``replaced`` (crawls of the month archived earlier and replaced since), ``restore_command`` and ``restore_params``
(the restore DAG's). A month a source lacks has no row: it is *empty*.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta

from kingfisher_archive import bucket as layout
from kingfisher_archive import crawl as crawls
from kingfisher_archive.ledger import Held, Status
from kingfisher_archive.records import CrawlKey
from kingfisher_archive.restore import list_months

#: Sources listed at once (each is one paginated listing and one GET per month's metadata.json).
WORKERS = 8

#: What an operator does about a held crawl, by the ledger's reason (docs/operating.md says the same).
HELD_ADVICE = {
    Held.INSPECTION_FAILED: (
        "fix the cause named in the detail (permissions, an unreadable log); the next run looks again"
    ),
    Held.CHECKSUM_FAILED: "fix the cause named in the detail (an unreadable file); the next run looks again",
    Held.UNREADABLE_ARCHIVE_METADATA: (
        "the month's metadata.json cannot be read: run `kingfisher-archive audit`, fix the month by hand; the next "
        "run looks again"
    ),
    Held.SMALLER_THAN_ITS_ARCHIVE: (
        "a deletion was interrupted: check the month (`kingfisher-archive audit --verify-data`, or restore it), "
        "then delete what is left on disk by hand"
    ),
}
DEFAULT_ADVICE = "fix the cause named in the detail; the next run looks again"


def read_ledger(path: str) -> list[dict]:
    """The ledger's crawl rows, as :meth:`Ledger.all` gives them, opened read-only: a reader never changes the file.

    (:class:`~kingfisher_archive.ledger.Ledger` itself rebuilds a corrupt file, which is for the DAG to do.)
    """
    uri = f"file:{path}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=10)) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute("SELECT * FROM crawl ORDER BY source_id, data_version").fetchall()
    found = []
    for row in rows:
        data = dict(row)
        data["facts"] = json.loads(data.get("facts") or "{}")
        data["result"] = json.loads(data["result"]) if data.get("result") else None
        found.append(data)
    return found


class MetadataCache:
    """metadata.json bodies by bucket, key and ETag: a long-lived reader (the page) GETs only what changed.

    A listing still runs every time, and an object rewritten since has a new ETag, so nothing stale is shown.
    """

    def __init__(self) -> None:
        self._bodies: dict[tuple[str, str, str], bytes] = {}
        self._lock = threading.Lock()

    def reader(self, client, bucket: str):
        def read(key: str, etag: str) -> bytes:
            with self._lock:
                body = self._bodies.get((bucket, key, etag)) if etag else None
            if body is None:
                body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                if etag:
                    with self._lock:
                        self._bodies[(bucket, key, etag)] = body
            return body

        return read


def sources(client, bucket: str) -> list[str]:
    """Every source id with a folder at the top of the bucket (paginated), ``staging/`` and odd names left out."""
    found = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Delimiter="/"):
        for prefix in page.get("CommonPrefixes", []):
            name = prefix["Prefix"].rstrip("/")
            if layout.reserved_source_problem(name) is None and crawls.source_id_problem(name) is None:
                found.append(name)
    return sorted(found)


def restore_command(source_id: str, year: int, month: int) -> str:
    return f"kingfisher-archive restore {source_id} {year:04d} {month:02d} TARGET_DIRECTORY"


def _period(row: dict) -> str | None:
    key = CrawlKey.parse(row)
    return key.period if key else None


def _month_of(timestamp: str | None) -> str | None:
    if not isinstance(timestamp, str) or len(timestamp) < 7:
        return None
    return timestamp[:7]


def catalogue(
    client,
    bucket: str,
    *,
    ledger_rows: list[dict] = (),
    waiting: list[dict] = (),
    retention_days: int | None = None,
    only: list[str] | None = None,
    now: datetime | None = None,
    workers: int = WORKERS,
    cache: MetadataCache | None = None,
) -> dict:
    """The bucket by source and month, the crawls waiting, held or kept on disk, and the totals per month.

    :param ledger_rows: :meth:`Ledger.all`; empty without a ledger on this machine, and the on-disk part with it.
    :param waiting: the crawls the last run found waiting for Kingfisher Process (its summary's ``waiting``).
    :param retention_days: the local retention setting, to say when a kept crawl will be swept.
    :param only: these sources, not every source in the bucket.
    :param cache: metadata already read (by ETag), kept across calls.
    """
    now = now or datetime.now(UTC)
    names = sorted(only) if only is not None else sources(client, bucket)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(names) or 1))) as pool:
        read = cache.reader(client, bucket) if cache is not None else None
        listed = list(pool.map(lambda name: list_months(client, bucket, name, read), names))

    archived_by_month: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in ledger_rows:
        if row["status"] == Status.ARCHIVED and (period := _period(row)):
            archived_by_month[(row["source_id"], period)].append(row)

    periods: set[str] = set()
    by_month: dict[str, dict[str, int]] = defaultdict(
        lambda: {"bytes_archived": 0, "compressed_bytes": 0, "bytes_freed": 0}
    )
    result_sources = []
    for name, months in zip(names, listed, strict=True):
        total = {"bytes": 0, "compressed_bytes": 0}
        problems = []
        for row in months:
            period = f"{row['year']:04d}-{row['month']:02d}"
            periods.add(period)
            ours = {r["data_version"]: r for r in archived_by_month.get((name, period), [])}
            current = ours.pop(row["data_version"], None) if row["data_version"] else None
            row.update(
                period=period,
                state="broken" if row["problem"] else "archived",
                reason=current["reason"] if current else None,
                replaced=sorted(ours),
                restore_command=restore_command(name, row["year"], row["month"]),
                restore_params={"source_id": name, "year": row["year"], "month": row["month"]},
            )
            if row["problem"]:
                problems.append(f"{period}: {row['problem']}")
            total["bytes"] += row["bytes"] or 0
            total["compressed_bytes"] += row["compressed_bytes"] or 0
            when = _month_of(row.get("archived_at"))
            if when:
                by_month[when]["bytes_archived"] += row["bytes"] or 0
                by_month[when]["compressed_bytes"] += row["compressed_bytes"] or 0
        result_sources.append({"source_id": name, "months": months, **total, "problems": problems})

    # Freed on the Kingfisher host: what was archived and then deleted, and what local retention swept, by the month
    # the ledger recorded it.
    for row in ledger_rows:
        when = _month_of(row.get("updated_at"))
        if not when:
            continue
        if row["status"] == Status.ARCHIVED:
            by_month[when]["bytes_freed"] += (row.get("result") or {}).get("bytes") or 0
        elif row["status"] == Status.SWEPT:
            by_month[when]["bytes_freed"] += (row.get("facts") or {}).get("bytes") or 0

    return {
        "bucket": bucket,
        "generated_at": now.replace(microsecond=0).isoformat(),
        "sources": result_sources,
        "periods": sorted(periods),
        "on_disk": on_disk(ledger_rows, waiting, retention_days, now),
        "totals": {
            "bytes_archived": sum(s["bytes"] for s in result_sources),
            "compressed_bytes": sum(s["compressed_bytes"] for s in result_sources),
            "bytes_freed": sum(m["bytes_freed"] for m in by_month.values()),
            "by_month": [{"month": month, **by_month[month]} for month in sorted(by_month)],
        },
    }


def on_disk(ledger_rows, waiting, retention_days: int | None, now: datetime) -> dict:
    """The crawls still on the Kingfisher host that someone may ask about: waiting, held, and kept (lost)."""
    held, kept = [], []
    for row in ledger_rows:
        crawl_id = f"{row['source_id']}/{row['data_version']}"
        facts = row.get("facts") or {}
        if row["status"] == Status.HELD:
            held.append(
                {
                    "id": crawl_id,
                    "reason": row["reason"],
                    "detail": facts.get("detail"),
                    "since": row.get("updated_at"),
                    "what_to_do": HELD_ADVICE.get(row["reason"], DEFAULT_ADVICE),
                }
            )
        elif row["status"] in (Status.REJECTED, Status.NOT_ARCHIVED, Status.PENDING):
            sweep_after = None
            if retention_days:
                try:
                    started = crawls.parse_data_version(row["data_version"]).replace(tzinfo=UTC)
                except ValueError:
                    started = None
                if started is not None:
                    due = started + timedelta(days=retention_days)
                    sweep_after = max(due, now).date().isoformat() if row["status"] != Status.PENDING else None
            kept.append(
                {
                    "id": crawl_id,
                    "status": row["status"],
                    "reason": row["reason"],
                    "bytes": facts.get("bytes"),
                    "lost_to": facts.get("superseded_by") or facts.get("pending_on") or facts.get("compared_with"),
                    "swept_from": sweep_after,
                }
            )
    return {
        "waiting": [
            {
                "id": item["id"],
                "collection_id": item.get("collection_id"),
                "since": item.get("closed_at"),
                "waited_days": round((item.get("waited_seconds") or 0) / 86400, 1),
                "detail": item.get("detail"),
            }
            for item in waiting
        ],
        "held": held,
        "kept": kept,
    }
