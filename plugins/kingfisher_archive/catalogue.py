"""The catalogue: the whole bucket by source and month, and what the ledger says is still on disk.

:func:`catalogue` is what ``kingfisher-archive list`` without a source and the Airflow UI's catalogue page show,
read through :func:`kingfisher_archive.restore.list_months` and :meth:`kingfisher_archive.ledger.Ledger.all` so
that the layout's rules live in one place. Plain Python: no Airflow. It returns, JSON-ready::

    {"bucket", "generated_at",
     "attention": [{"kind", "id", "what", "what_to_do"}, ...],   # what needs a person, most urgent first
     "sources": [{"source_id", "months": [month row, ...], "bytes", "compressed_bytes", "stored", "problems": [...]}],
     "periods": ["YYYY-MM", ...],              # every month that any source has, oldest first (the grid's columns)
     "retention_days", "waiting_warning_days", "last_run",
     "on_disk": {"waiting": [...], "held": [...], "kept": [...]},
     "totals": {"bytes_archived", "compressed_bytes", "bytes_freed", "by_month": [...]},
     "storage": {"region", "as_of", "source", "usd_per_month", "bytes", "classes": [...], "unpriced": [...]}}

``stored`` (a source's, and a month row's) is its objects' count, bytes and billable bytes by storage class, read
from the same listing (each entry's ``StorageClass`` and ``Size``: no request per object); ``storage`` is the whole
bucket's months' objects by class and the estimated monthly bill
(:func:`kingfisher_archive.storage_cost.bill`, with the price table's region and date).

Codes (``status``, ``reason``) stay codes, for machines; ``why`` (and ``outcome``, ``what``) say the same in words
(:mod:`kingfisher_archive.words`), for people. A ``by_month`` month is when the runs archived and freed (the
ledger's and metadata.json's dates), not the month of the data, which is a month row's ``period``.

A month row is a ``list_months`` row (what ``list SOURCE`` prints) plus ``period`` (``YYYY-MM``), ``state``
(``archived``, or ``broken`` with a problem), ``reason`` (why the crawl was kept: this installation's ledger, else
its metadata.json), ``why`` (the same in words),
``replaced`` (crawls of the month archived earlier and replaced since), ``restore_command`` and ``restore_params``
(the restore DAG's). A month a source lacks has no row: it is *empty*.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from kingfisher_archive import ledger, storage_cost, words
from kingfisher_archive.bucket import reserved_source_problem
from kingfisher_archive.crawl import parse_data_version, source_id_problem
from kingfisher_archive.ledger import Kept, Status
from kingfisher_archive.records import CrawlKey
from kingfisher_archive.restore import list_months
from kingfisher_archive.settings import DEFAULT_WAITING_WARNING_DAYS

#: Sources listed at once (each is one paginated listing and one GET per month's metadata.json).
WORKERS = 8

HELD_ADVICE, DEFAULT_ADVICE = words.HELD_ADVICE, words.DEFAULT_ADVICE
WAITING_ADVICE = (
    "check the collection in Kingfisher Process (a load that failed or stopped); the next run after its files are "
    "loaded archives it"
)
BROKEN_ADVICE = "run `kingfisher-archive audit` and mend the month as docs/restore-and-audit.md says"
FAILED_CRAWL_ADVICE = "it stays on disk: clear its Archive crawl task in that run, or wait for the next run"
FAILED_TASK_ADVICE = "read the task's log, fix the cause, then clear the task"


def read_ledger(path: str) -> list[dict]:
    """The ledger's crawl rows, as :meth:`Ledger.all` gives them, opened read-only: a reader never changes the file."""
    return ledger.read_state(path)["crawls"]


def read_ledger_or_why(path: str) -> tuple[list[dict], str | None]:
    """:func:`read_ledger`, or no rows and a sentence saying why it cannot be read: a reader carries on without the
    ledger (the bucket is still listed), and never mends it."""
    try:
        return read_ledger(path), None
    except sqlite3.OperationalError as e:  # locked, unreadable now
        return [], f"the ledger {path} cannot be read now ({e}): held and kept crawls are not shown"
    except sqlite3.DatabaseError as e:
        return [], (
            f"the ledger {path} is corrupt ({e}): held and kept crawls are not shown, and the DAG's tasks fail until "
            "it is rebuilt (`kingfisher-archive ledger rebuild`; docs/operating.md, The ledger is lost or corrupt)"
        )
    except ValueError as e:  # a row whose JSON cannot be read
        return [], f"the ledger {path} holds a row that cannot be read ({e}): held and kept crawls are not shown"


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
            if reserved_source_problem(name) is None and source_id_problem(name) is None:
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
    waiting_warning_days: int = DEFAULT_WAITING_WARNING_DAYS,
    last_run: dict | None = None,
    only: list[str] | None = None,
    now: datetime | None = None,
    workers: int = WORKERS,
    cache: MetadataCache | None = None,
    prices: storage_cost.Prices = storage_cost.DEFAULT,
) -> dict:
    """The bucket by source and month, the crawls waiting, held or kept on disk, and the totals per month.

    :param ledger_rows: :meth:`Ledger.all`; empty without a ledger on this machine, and the on-disk part with it.
    :param waiting: the crawls the last run found waiting for Kingfisher Process (the ledger's, or its summary's).
    :param retention_days: the local retention setting, to say when a kept crawl will be swept.
    :param waiting_warning_days: a crawl that has waited longer needs attention.
    :param last_run: the ledger's record of the last run (what failed), or ``None``.
    :param only: these sources, not every source in the bucket.
    :param cache: metadata already read (by ETag), kept across calls.
    :param prices: the price table of the estimated bill (the Variable kingfisher_archive_storage_prices's).
    """
    now = now or datetime.now(UTC)
    names = sorted(only) if only is not None else sources(client, bucket)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(names) or 1))) as pool:
        read = cache.reader(client, bucket) if cache is not None else None
        listed = list(pool.map(lambda name: list_months(client, bucket, name, read), names))

    archived_by_month: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in ledger_rows:
        if row["status"] in (Status.ARCHIVED, Status.KEPT) and (period := _period(row)):
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
            if current:  # this installation's ledger says why, as the metadata.json it wrote does
                row["reason"] = current["reason"] or row.get("reason")
                row["compared_with"] = (current.get("facts") or {}).get("compared_with") or row.get("compared_with")
            row.update(
                period=period,
                state="broken" if row["problem"] else "archived",
                why=words.why(
                    Status.ARCHIVED,
                    row.get("reason"),
                    crawl_id=f"{name}/{row['data_version']}" if row["data_version"] else None,
                    compared_with=row.get("compared_with"),
                )
                or None,
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
        stored = storage_cost.merge(row.get("stored") for row in months)
        result_sources.append({"source_id": name, "months": months, **total, "stored": stored, "problems": problems})

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

    found_on_disk = on_disk(ledger_rows, waiting, retention_days, now, waiting_warning_days)
    return {
        "bucket": bucket,
        "generated_at": now.replace(microsecond=0).isoformat(),
        "attention": attention(result_sources, found_on_disk, last_run),
        "sources": result_sources,
        "periods": sorted(periods),
        "retention_days": retention_days,
        "waiting_warning_days": waiting_warning_days,
        "last_run": last_run,
        "on_disk": found_on_disk,
        "totals": {
            "bytes_archived": sum(s["bytes"] for s in result_sources),
            "compressed_bytes": sum(s["compressed_bytes"] for s in result_sources),
            "bytes_freed": sum(m["bytes_freed"] for m in by_month.values()),
            "by_month": [{"month": month, **by_month[month]} for month in sorted(by_month)],
        },
        "storage": storage_cost.bill(storage_cost.merge(s["stored"] for s in result_sources), prices),
    }


def on_disk(
    ledger_rows, waiting, retention_days: int | None, now: datetime, warning_days: int = DEFAULT_WAITING_WARNING_DAYS
) -> dict:
    """The crawls still on the Kingfisher host that someone may ask about: waiting, held, and kept (lost).

    Each has its codes (``status``, ``reason``) and, for people, ``why`` (and ``outcome``): the codes in words.
    """
    held, kept = [], []
    for row in ledger_rows:
        crawl_id = f"{row['source_id']}/{row['data_version']}"
        facts = row.get("facts") or {}
        if problem := facts.get("problem"):
            # What stopped a run from finishing it (a deletion, a sweep): held, whatever its status says.
            held.append(
                {
                    "id": crawl_id,
                    "reason": problem["reason"],
                    "detail": problem["detail"],
                    "why": words.why(Status.HELD, problem["reason"], crawl_id=crawl_id, detail=problem["detail"]),
                    "since": row.get("updated_at"),
                    "what_to_do": words.advice(problem["reason"]),
                }
            )
        elif row["status"] == Status.HELD:
            held.append(
                {
                    "id": crawl_id,
                    "reason": row["reason"],
                    "detail": facts.get("detail"),
                    "why": words.why(row["status"], row["reason"], crawl_id=crawl_id, detail=facts.get("detail")),
                    "since": row.get("updated_at"),
                    "what_to_do": words.advice(row["reason"]),
                }
            )
        elif row["status"] == Status.KEPT:  # archived, and kept on disk on purpose: never swept
            reason = (row.get("result") or {}).get("kept") or Kept.INCREMENTAL_UPDATES
            kept.append(
                {
                    "id": crawl_id,
                    "status": row["status"],
                    "reason": reason,
                    "outcome": words.outcome(row["status"]),
                    "why": words.reason_phrase(reason),
                    "bytes": facts.get("bytes") or (row.get("result") or {}).get("bytes"),
                    "lost_to": None,
                    "swept_from": None,
                }
            )
        elif row["status"] in (Status.REJECTED, Status.NOT_ARCHIVED, Status.PENDING):
            sweep_after = None
            if retention_days:
                try:
                    started = parse_data_version(row["data_version"]).replace(tzinfo=UTC)
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
                    "outcome": words.outcome(row["status"]),
                    "why": words.sentence({**row, "id": crawl_id}),
                    "bytes": facts.get("bytes"),
                    "lost_to": facts.get("superseded_by") or facts.get("pending_on") or facts.get("compared_with"),
                    "swept_from": sweep_after,
                }
            )
    return {"waiting": [_waiting(item, now, warning_days) for item in waiting], "held": held, "kept": kept}


def _waiting(item: dict, now: datetime, warning_days: int) -> dict:
    """A waiting crawl (the ledger's row, or a summary's :class:`~kingfisher_archive.records.Waiting`), its wait
    counted until ``now``."""
    crawl_id = item.get("id") or f"{item['source_id']}/{item['data_version']}"
    since = item.get("closed_at")
    seconds = item.get("waited_seconds") or 0
    try:
        closed = datetime.fromisoformat(since) if since else None
    except ValueError:
        closed = None
    if closed is not None:
        closed = closed if closed.tzinfo else closed.replace(tzinfo=UTC)
        seconds = max((now - closed).total_seconds(), 0)
    loading = item.get("loading") or item.get("detail")
    if loading and "; " in loading and loading.startswith("closed "):  # a summary's detail: "closed ... ago; ..."
        loading = loading.split("; ", 1)[1]
    days = round(seconds / 86400, 1)
    return {
        "id": crawl_id,
        "collection_id": item.get("collection_id"),
        "since": since,
        "waited_days": days,
        "overdue": bool(warning_days) and seconds > warning_days * 86400,
        "detail": loading,
    }


def attention(sources: list[dict], found_on_disk: dict, last_run: dict | None) -> list[dict]:
    """What needs a person, most urgent first: the last run's failures, held crawls, waits past the warning, broken
    months. Each item: ``kind``, ``id``, ``what`` (a sentence) and ``what_to_do``."""
    items = []
    if last_run:
        run = last_run.get("run_id") or "?"
        if last_run.get("error"):
            items.append(
                {
                    "kind": "failed_run",
                    "id": run,
                    "what": f"run {run}: {last_run['error']}",
                    "what_to_do": ("read the run's failed tasks' logs, fix the cause, then clear them"),
                }
            )
        for crawl_id in last_run.get("failed") or []:
            items.append(
                {
                    "kind": "failed_crawl",
                    "id": crawl_id,
                    "what": f"{crawl_id} was chosen by run {run} and not archived",
                    "what_to_do": FAILED_CRAWL_ADVICE,
                }
            )
        for task in last_run.get("failed_tasks") or []:
            items.append(
                {
                    "kind": "failed_task",
                    "id": task,
                    "what": f"task {task} of run {run} failed",
                    "what_to_do": FAILED_TASK_ADVICE,
                }
            )
    for item in found_on_disk["held"]:
        items.append(
            {
                "kind": "held",
                "id": item["id"],
                "what": f"{item['id']} is held: {item['why']}",
                "what_to_do": (item["what_to_do"]),
            }
        )
    for item in found_on_disk["waiting"]:
        if item["overdue"]:
            items.append(
                {
                    "kind": "waiting",
                    "id": item["id"],
                    "what": (
                        f"{item['id']} has waited {item['waited_days']:g} days for Kingfisher Process to load its "
                        f"files (collection {item['collection_id']}: {item['detail'] or 'no detail'})"
                    ),
                    "what_to_do": WAITING_ADVICE,
                }
            )
    for source in sources:
        for row in source["months"]:
            if row["problem"]:
                items.append(
                    {
                        "kind": "broken",
                        "id": row["prefix"],
                        "what": f"{source['source_id']} {row['period']} ({row['prefix']}) is broken: {row['problem']}",
                        "what_to_do": BROKEN_ADVICE,
                    }
                )
    return items
