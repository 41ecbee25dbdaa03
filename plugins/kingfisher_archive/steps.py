"""The steps of one run, as plain functions: find, inspect, decide, archive, summarise.

:mod:`kingfisher_archive.tasks` calls these from Airflow tasks; tests and the command line call them directly.
What crosses from one step to the next is a small JSON-ready dict (ids, paths, numbers, reasons), because
Airflow passes it through XCom; nothing large ever does.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from kingfisher_archive import archiver, policy, scrapy_log
from kingfisher_archive import bucket as layout
from kingfisher_archive import crawl as crawls
from kingfisher_archive.bucket import ArchivedCrawl, Bucket, MetadataError
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.process import Collection
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)


class StaleDecisionError(Exception):
    """The crawl's month no longer holds what the decision to archive the crawl was measured against."""


MiB = 1 << 20
#: Clocks and time zones differ between hosts; a data version further ahead than this is not a real crawl time.
FUTURE_TOLERANCE = timedelta(days=1)
#: Airflow refuses to map a task over more than 1,024 items by default; beyond this, the rest waits a day.
MAX_CRAWLS_PER_RUN = 1000


def crawl_id(source_id: str, data_version: str) -> str:
    return f"{source_id}/{data_version}"


# -- find --------------------------------------------------------------------------------------------------------


def find(
    settings: Settings,
    collections: list[Collection],
    settled: set[tuple[str, str]],
    reevaluate: bool,
    loading: list[Collection] = (),
    now: datetime | None = None,
) -> dict:
    """Turn Process's loaded collections into work: only those whose crawl directory is still on disk.

    Most rows' crawls were archived and deleted long ago, so this keeps a run's fan-out to the crawls that are
    actually there. Crawls the ledger has settled are skipped unless ``reevaluate``. Crawls Process is still
    ``loading`` are never work: those still on disk are listed as ``waiting``, with how long they have waited since
    they were closed, for the run's summary.
    """
    crawls_found: dict[tuple[str, str], dict] = {}
    ignored: list[str] = []
    counts = Counter()
    for collection in collections:
        problem = crawls.source_id_problem(collection.source_id)
        if problem:
            ignored.append(f"collection {collection.id}: {problem}")
            continue
        data_version = crawls.format_data_version(collection.data_version)
        key = (collection.source_id, data_version)
        directory = crawls.crawl_directory(settings.data_directory, *key)
        if not os.path.lexists(directory):
            counts["not_on_disk"] += 1
            continue
        if key in settled and not reevaluate:
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


def _waiting(settings: Settings, loading: list[Collection], now: datetime) -> list[dict]:
    """The crawls still on disk that Process is loading, oldest close first, with how long they have waited."""
    waiting = []
    for collection in sorted(loading, key=lambda c: (c.closed_at or now, c.id)):
        if crawls.source_id_problem(collection.source_id):
            continue
        data_version = crawls.format_data_version(collection.data_version)
        if not os.path.lexists(crawls.crawl_directory(settings.data_directory, collection.source_id, data_version)):
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


# -- inspect -----------------------------------------------------------------------------------------------------


def inspect(settings: Settings, crawl: dict, now: datetime | None = None) -> dict:
    """Everything the decision needs to know about one crawl, without reading its data files.

    Never raises for a problem of this one crawl: one bad directory or log must not stop the run's other crawls.
    The problem goes into ``error`` and the crawl is held (kept on disk, looked at again next run).
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


def _inspect(settings: Settings, crawl: dict, now: datetime) -> dict:
    source_id, data_version = crawl["source_id"], crawl["data_version"]
    facts = {
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
        "error": None,
    }
    directory = crawls.crawl_directory(settings.data_directory, source_id, data_version)
    started = crawls.parse_data_version(data_version)
    exists = os.path.lexists(directory)
    safe = True
    if exists:
        try:
            summary = crawls.summarise(directory)
            facts.update(
                bytes=summary.bytes,
                files=summary.files,
                data_files=summary.data_files,
                fingerprint=summary.fingerprint,
            )
        except crawls.UnsafeCrawlError as e:
            safe = False
            facts["detail"] = str(e)

    log = None
    if exists and safe:
        path = scrapy_log.find(
            settings.logs_directory, source_id, crawls.parse_data_version(data_version), crawl.get("scrapyd_job")
        )
        if path:
            try:
                log = scrapy_log.parse(path)
            except scrapy_log.LogError as e:
                facts["detail"] = str(e)
        if log is not None:
            facts.update(
                log=path,
                files_count=log.files_count,
                errors_count=log.errors_count,
                errors_source=log.errors_source,
                finish_reason=log.finish_reason,
            )
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
    if reason == policy.NOT_FINISHED:
        facts["detail"] = f"the log's finish reason is {facts['finish_reason']!r}"
    elif reason == policy.NOT_CLEAN_ENOUGH:
        facts["detail"] = f"{facts['errors_count']} errors ({facts['errors_source']}) for {facts['files_count']} files"
    elif reason == policy.NO_DATA_FILES and log is not None and facts["data_files"]:
        facts["detail"] = "the log records no File items and no errors"
    elif reason == policy.FUTURE_DATA_VERSION:
        facts["detail"] = f"the crawl claims to start at {started}, after now ({now.replace(microsecond=0)} UTC)"
    elif reason is None:
        facts["detail"] = None
    logger.info("%s: %s", facts["id"], facts["reject_reason"] or "acceptable")
    return facts


# -- decide ------------------------------------------------------------------------------------------------------


def _candidate(settings: Settings, facts: dict) -> policy.Candidate:
    version = crawls.parse_data_version(facts["data_version"])
    directory = crawls.crawl_directory(settings.data_directory, facts["source_id"], facts["data_version"])

    def checksum() -> str:
        logger.info("%s: computing the checksum to compare with an earlier month", facts["id"])
        facts["checksum"] = crawls.checksum(directory)
        return facts["checksum"]

    return policy.Candidate(
        id=facts["id"],
        year=version.year,
        month=version.month,
        bytes=facts["bytes"],
        files_count=facts["files_count"],
        errors_count=facts["errors_count"],
        checksum=facts.get("checksum"),
        _checksum_of=checksum,
    )


def decide(settings: Settings, bucket: Bucket, inspected: list[dict]) -> dict:
    """Apply the retention policy per source and month against the bucket; return decisions and the work."""
    by_source: dict[str, list[dict]] = defaultdict(list)
    decisions: list[dict] = []
    for facts in inspected:
        if facts.get("error"):
            decisions.append(_decision(facts, "held", "inspection_failed", detail=facts["error"]))
        elif facts["reject_reason"]:
            decisions.append(_decision(facts, "rejected", facts["reject_reason"], detail=facts.get("detail")))
        else:
            by_source[facts["source_id"]].append(facts)

    plans = []
    for source_id, source_facts in sorted(by_source.items()):
        facts_by_id = {f["id"]: f for f in source_facts}
        candidates = [_candidate(settings, f) for f in source_facts]

        def month(y: int, m: int, source_id=source_id):
            found = bucket.archived(source_id, y, m)
            return found.candidate() if found else None

        def before(y: int, m: int, source_id=source_id):
            found = bucket.archived_before(source_id, y, m)
            return found.candidate() if found else None

        try:
            outcome = policy.decide_source(candidates, month, before)
        except MetadataError as e:
            logger.error("%s: cannot compare with the bucket: %s", source_id, e)
            for facts in source_facts:
                decisions.append(_decision(facts, "held", "unreadable_archive_metadata", detail=str(e)))
            continue
        except (OSError, crawls.UnsafeCrawlError) as e:
            # Computing a checksum read the crawl and failed: hold this source, decide the others.
            logger.error("%s: cannot compute a checksum to compare: %s", source_id, e)
            for facts in source_facts:
                decisions.append(_decision(facts, "held", "checksum_failed", detail=str(e)))
            continue
        for decision in outcome:
            facts = facts_by_id[decision.id]
            status = "to_archive" if decision.archive else "not_archived"
            detail = f"superseded by {decision.superseded_by}" if decision.superseded_by else None
            decisions.append(
                _decision(
                    facts,
                    status,
                    decision.reason,
                    detail=detail,
                    compared_with=decision.compared_with,
                    superseded_by=decision.superseded_by,
                )
            )
            if decision.archive:
                version = crawls.parse_data_version(facts["data_version"])
                held = bucket.archived(source_id, version.year, version.month)  # read by the policy already
                plans.append(_plan(facts, decision, month_state(held)))
    decisions.sort(key=lambda d: d["id"])
    counts = Counter(d["status"] for d in decisions)
    logger.info("Decided %d crawls: %s", len(decisions), ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return {"decisions": decisions, "to_archive": plans}


def _decision(facts: dict, status: str, reason: str, **extra) -> dict:
    return {
        "id": facts["id"],
        "source_id": facts["source_id"],
        "data_version": facts["data_version"],
        "collection_id": facts.get("collection_id"),
        "status": status,
        "reason": reason,
        "bytes": facts.get("bytes", 0),
        "files": facts.get("files", 0),
        "files_count": facts.get("files_count", 0),
        "errors_count": facts.get("errors_count", 0),
        "checksum": facts.get("checksum"),
        **{k: v for k, v in extra.items()},
    }


def month_state(archived: ArchivedCrawl | None) -> str | None:
    """What a month of the bucket holds, in a few words: what a decision saw, and what archiving must find again."""
    if archived is None:
        return None
    return f"{archived.id} ({archived.bytes} bytes, checksum {archived.checksum or 'none'})"


def _plan(facts: dict, decision: policy.Decision, month_held: str | None) -> dict:
    return {
        "id": facts["id"],
        "source_id": facts["source_id"],
        "data_version": facts["data_version"],
        "log": facts["log"],
        # What the crawl's month held when it was chosen: archiving refuses to replace anything else.
        "month_held": month_held,
        "expected": {
            "bytes": facts["bytes"],
            "files": facts["files"],
            "fingerprint": facts["fingerprint"],
            "checksum": facts.get("checksum"),
        },
        "metadata": {
            "files_count": facts["files_count"],
            "errors_count": facts["errors_count"],
            "collection_id": facts.get("collection_id"),
            "reason": decision.reason,
            "compared_with": decision.compared_with,
        },
    }


def record_decisions(ledger: Ledger, decisions: list[dict], run_id: str | None) -> None:
    rows = []
    for d in decisions:
        facts = {
            k: d[k] for k in ("bytes", "files", "files_count", "errors_count", "checksum") if d.get(k) is not None
        }
        for k in ("detail", "compared_with", "superseded_by"):
            if d.get(k):
                facts[k] = d[k]
        rows.append({**d, "facts": facts})
    ledger.record(rows, run_id)


# -- archive -----------------------------------------------------------------------------------------------------


def archive(settings: Settings, client, plan: dict) -> dict:
    """Archive one chosen crawl; converge if an earlier try already archived and deleted it."""
    source_id, data_version = plan["source_id"], plan["data_version"]
    directory = crawls.crawl_directory(settings.data_directory, source_id, data_version)
    version = crawls.parse_data_version(data_version)
    archived = Bucket(client, settings.bucket, settings.storage_class).archived(source_id, version.year, version.month)
    if not os.path.lexists(directory):
        if archived is not None and archived.data_version == data_version:
            deleted = archiver.delete_local(
                settings.data_directory, settings.logs_directory, source_id, data_version, plan.get("log")
            )
            logger.info("%s is already archived (an earlier try got that far); finished deleting it", plan["id"])
            return {
                "id": plan["id"],
                "bytes": archived.bytes,
                "files": plan["expected"]["files"],
                "compressed_bytes": None,
                "already_archived": True,
                "deleted": deleted,
            }
        raise FileNotFoundError(
            f"{directory} disappeared after it was inspected, and the bucket does not hold {plan['id']}: "
            "nothing was archived; find out what removed it"
        )
    check_month_unchanged(plan, archived, settings.bucket)
    expected = archiver.Expected(**plan["expected"])
    return archiver.archive_crawl(
        client=client,
        bucket=settings.bucket,
        storage_class=settings.storage_class,
        data_directory=settings.data_directory,
        logs_directory=settings.logs_directory,
        source_id=source_id,
        data_version=data_version,
        log_path=plan["log"],
        expected=expected,
        metadata=plan["metadata"],
    )


def check_month_unchanged(plan: dict, archived: ArchivedCrawl | None, bucket_name: str) -> None:
    """Refuse to archive on a decision that the bucket has since overtaken; ``archived`` is what the month holds.

    A decision is only as good as the month it was measured against. An archive task can run long after its
    decision: an operator clears a failed one a day later, or a backfill and the daily run choose different crawls
    of one month. If in between another crawl was archived into the month (and, being archived, deleted locally),
    archiving this one would overwrite the only copy of that other crawl. So the month must still hold what the
    decision saw, or this crawl itself (an earlier try of this task got that far).
    """
    if archived is not None and archived.data_version == plan["data_version"]:
        return
    if "month_held" not in plan or month_state(archived) != plan["month_held"]:
        version = crawls.parse_data_version(plan["data_version"])
        prefix = f"s3://{bucket_name}/{layout.month_prefix(plan['source_id'], version.year, version.month)}"
        saw = plan.get("month_held", "(not recorded: the decision was made by an older version)") or "nothing"
        raise StaleDecisionError(
            f"{plan['id']} was chosen when {prefix} held {saw}; it now holds {month_state(archived) or 'nothing'}: "
            "nothing was archived or deleted; the next run decides again with what the bucket holds now"
        )


def archive_and_record(settings: Settings, client, plan: dict, ledger: Ledger, run_id: str | None) -> dict:
    """Archive under a claim in the ledger on the crawl's month.

    A backfill and a scheduled run can choose one crawl, or two crawls of one month; the claim fails the second
    until the first has finished, and :func:`check_month_unchanged`, made under it, then stops the second if the
    first changed the month.
    """
    version = crawls.parse_data_version(plan["data_version"])
    with ledger.claim(plan["source_id"], f"{version.year:04d}-{version.month:02d}", run_id):
        result = archive(settings, client, plan)
        ledger.mark_archived(plan["source_id"], plan["data_version"], result, run_id)
    return result


# -- local retention -------------------------------------------------------------------------------------------


def sweep(
    settings: Settings,
    ledger: Ledger,
    loaded: set[tuple[str, str]],
    now: datetime,
    dry_run: bool,
    run_id: str | None = None,
) -> list[dict]:
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
            item["deleted"] = archiver.delete_local(
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


# -- summarise ---------------------------------------------------------------------------------------------------


def summarise(
    decisions: list[dict],
    results: dict[str, dict],
    dry_run: bool,
    swept: list[dict] = (),
    waiting: list[dict] = (),
    waiting_warning_days: int | None = None,
) -> dict:
    """The run in numbers and one line per crawl, for the UI (return value) and the task log (table).

    ``waiting`` are the crawls Process is still loading (from :func:`find`); each that has waited longer than
    ``waiting_warning_days`` since it was closed gets a warning: a collection stuck in Process is something an
    operator wants to hear about, but it is not this run's failure.
    """
    rows = []
    failed = []
    totals = Counter()
    for d in decisions:
        row = {
            "id": d["id"],
            "status": d["status"],
            "reason": d["reason"],
            "detail": d.get("detail"),
            "compared_with": d.get("compared_with"),
            "bytes": d.get("bytes"),
        }
        result = results.get(d["id"])
        if d["status"] == "to_archive":
            if dry_run:
                row["status"] = "would_archive"
            elif result is None:
                row["status"] = "failed"
                failed.append(d["id"])
            else:
                row["status"] = "archived"
                row["bytes"] = result.get("bytes")
                row["compressed_bytes"] = compressed = result.get("compressed_bytes")
                if compressed:
                    row["ratio"] = round(row["bytes"] / compressed, 2)
                if result.get("seconds"):
                    row["mb_per_second"] = round(row["bytes"] / 1e6 / result["seconds"], 1)
                totals["bytes_archived"] += result.get("bytes") or 0
                totals["compressed_bytes"] += result.get("compressed_bytes") or 0
                totals["bytes_freed"] += result.get("bytes") or 0
        rows.append(row)
    by_status = Counter(r["status"] for r in rows)
    rejected = Counter(r["reason"] for r in rows if r["status"] == "rejected")
    summary = {
        "dry_run": dry_run,
        "crawls": len(rows),
        "archived": by_status["archived"],
        "would_archive": by_status["would_archive"],
        "failed": failed,
        "rejected": dict(sorted(rejected.items())),
        "not_archived": by_status["not_archived"],
        "held": by_status["held"],
        "bytes_archived": totals["bytes_archived"],
        "compressed_bytes": totals["compressed_bytes"],
        "bytes_freed": totals["bytes_freed"] + (0 if dry_run else sum(item.get("bytes") or 0 for item in swept)),
        "swept": list(swept),
        "waiting": [dict(item) for item in waiting],
        "warnings": [],
        "rows": rows,
    }
    if waiting_warning_days:
        for item in summary["waiting"]:
            if item["waited_seconds"] > waiting_warning_days * 86400:
                summary["warnings"].append(
                    f"{item['id']} (Kingfisher Process collection {item['collection_id']}) has waited for Kingfisher "
                    f"Process to load its files for longer than {waiting_warning_days} days: {item['detail']}; "
                    "check the collection in Kingfisher Process"
                )
    return summary


def format_table(summary: dict) -> str:
    """A plain-text table of the summary for the task log: every crawl, what happened, why, and the figures."""

    def mib(value) -> str:
        return f"{value / MiB:.1f}" if value is not None else ""

    header = f"{'crawl':<40} {'outcome':<13} {'reason':<26} {'MiB':>9} {'LZ4 MiB':>9} {'ratio':>5} {'MB/s':>6}"
    lines = [header + "  why / detail"]
    for row in summary["rows"]:
        why = row.get("detail") or ""
        if row.get("compared_with") and row["status"] in ("not_archived", "archived", "would_archive"):
            why = f"against {row['compared_with']}" + (f"; {why}" if why else "")
        lines.append(
            f"{row['id']:<40} {row['status']:<13} {row['reason'] or '':<26} {mib(row.get('bytes')):>9} "
            f"{mib(row.get('compressed_bytes')):>9} {row.get('ratio') or '':>5} {row.get('mb_per_second') or '':>6}"
            f"  {why}"
        )
    for item in summary.get("waiting", []):
        lines.append(
            f"waiting for Kingfisher Process: {item['id']} (collection {item['collection_id']}), {item['detail']}"
        )
    lines.append(
        f"{summary['archived']} archived, {summary['would_archive']} would be archived, "
        f"{sum(summary['rejected'].values())} rejected, {summary['not_archived']} kept as not better, "
        f"{summary['held']} held, {len(summary['failed'])} failed, {len(summary['waiting'])} waiting for Kingfisher "
        f"Process; {mib(summary['bytes_archived'])} MiB archived as "
        f"{mib(summary['compressed_bytes'])} MiB; {mib(summary['bytes_freed'])} MiB freed on disk"
    )
    for item in summary.get("swept", []):
        verb = "would sweep" if summary["dry_run"] else "swept"
        lines.append(f"{verb} {item['id']} ({item['status']}: {item['reason']}), older than the retention period")
    return "\n".join(lines)
