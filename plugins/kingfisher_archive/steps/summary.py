"""The *Summarise the run* task: every crawl's outcome, for the UI (return value) and the task log (table)."""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

from kingfisher_archive import words
from kingfisher_archive.archive_result import ArchiveResult
from kingfisher_archive.crawl import MiB
from kingfisher_archive.ledger import Kept, Ledger, Status
from kingfisher_archive.records import Decision, Swept, Waiting
from kingfisher_archive.vocabulary import phrased


class Outcome(StrEnum):
    """A summary row's status when it is not a ledger :class:`~kingfisher_archive.ledger.Status`."""

    __new__ = phrased

    #: Chosen on a dry run.
    WOULD_ARCHIVE = "would_archive", "would be archived"
    #: Chosen, and its archive task did not archive it.
    FAILED = "failed", "chosen, and its archive task failed"


WOULD_ARCHIVE = Outcome.WOULD_ARCHIVE
FAILED = Outcome.FAILED


def outcome(status: str) -> str:
    """A summary row's status in words."""
    try:
        return Outcome(status).phrase
    except ValueError:
        return words.outcome(status)


def why(row: dict) -> str:
    """A summary row's reason, and the crawls it names, in words."""
    return words.why(
        row["status"],
        row.get("reason"),
        crawl_id=row["id"],
        compared_with=row.get("compared_with"),
        superseded_by=row.get("superseded_by"),
        pending_on=row.get("pending_on"),
        detail=row.get("detail"),
        early_deletion=row.get("early_deletion"),
    )


def summarise(
    decisions: list[Decision],
    results: dict[str, ArchiveResult],
    dry_run: bool,
    swept: list[Swept] = (),
    waiting: list[Waiting] = (),
    waiting_warning_days: int | None = None,
    ledger_rows: dict[str, dict] | None = None,
) -> dict:
    """The run in numbers and one line per crawl, for the UI (return value) and the task log (table).

    :param decisions: every crawl's decision (decide's).
    :param results: the archive results, by crawl id, of the crawls archived.
    :param waiting: the crawls Process is still loading; one that has waited over ``waiting_warning_days`` since it
        was closed gets a warning (not a failure of this run).
    :param ledger_rows: the ledger's rows, by id, of the crawls this run chose or left pending, as the archive tasks
        left them: a crawl decided again and not archived, or a pending crawl settled, is reported as it is now.
    :returns: the counts, ``failed`` (chosen and not archived), ``warnings``, ``rows``, and ``early_deletions`` (each
        replacement's early-deletion charge, as decided) with their total, ``early_deletion_usd``.
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
            "superseded_by": d.get("superseded_by"),
            "pending_on": d.get("pending_on"),
            "bytes": d.get("bytes"),
        }
        result = results.get(d["id"])
        now = (ledger_rows or {}).get(d["id"]) or {}
        if d["status"] == Status.PENDING and now.get("status") == Status.NOT_ARCHIVED:
            row["status"] = Status.NOT_ARCHIVED  # the crawl it lost to is archived now
            row["detail"] = f"superseded by {d['superseded_by']}" if d.get("superseded_by") else None
        elif d["status"] == Status.TO_ARCHIVE:
            if dry_run:
                row["status"] = WOULD_ARCHIVE
                row["early_deletion"] = d.get("early_deletion")
            elif result is None and now.get("status") == Status.HELD:
                # Its archive task found the month naming it, and the crawl on disk not that archive; or an error of
                # its own (the file system, the bucket refusing its month) held it.
                row.update(status=Status.HELD, reason=now.get("reason"), detail=(now.get("facts") or {}).get("detail"))
            elif result is None and (problem := (now.get("facts") or {}).get("problem")):
                # Archived and verified; deleting it locally failed, and the next run tries again.
                row.update(status=Status.HELD, reason=problem["reason"], detail=problem["detail"])
            elif result is None and now.get("status") == Status.NOT_ARCHIVED:
                # Decided again by its archive task: by then its month held a crawl it does not beat.
                facts = now.get("facts") or {}
                row.update(
                    status=Status.NOT_ARCHIVED,
                    reason=now.get("reason"),
                    detail=facts.get("detail"),
                    compared_with=facts.get("compared_with"),
                )
            elif result is None:
                row["status"] = FAILED
                failed.append(d["id"])
            else:
                kept = now.get("status") == Status.KEPT or bool(result.get("kept"))
                row["status"] = Status.KEPT if kept else Status.ARCHIVED
                row["early_deletion"] = d.get("early_deletion")  # what the replacement paid, as decided
                if kept:
                    row.update(reason=Kept.INCREMENTAL_UPDATES, detail=None)
                row["bytes"] = result.get("bytes")
                row["compressed_bytes"] = compressed = result.get("compressed_bytes")
                if compressed:
                    row["ratio"] = round(row["bytes"] / compressed, 2)
                if result.get("seconds"):
                    row["mb_per_second"] = round(row["bytes"] / 1e6 / result["seconds"], 1)
                totals["bytes_archived"] += result.get("bytes") or 0
                totals["compressed_bytes"] += result.get("compressed_bytes") or 0
                totals["bytes_freed"] += 0 if kept else result.get("bytes") or 0
        rows.append(row)
    by_status = Counter(r["status"] for r in rows)
    rejected = Counter(r["reason"] for r in rows if r["status"] == Status.REJECTED)
    summary = {
        "dry_run": dry_run,
        "crawls": len(rows),
        "archived": by_status[Status.ARCHIVED] + by_status[Status.KEPT],
        "kept_on_disk": by_status[Status.KEPT],
        "would_archive": by_status[WOULD_ARCHIVE],
        "failed": failed,
        "rejected": dict(sorted(rejected.items())),
        "not_archived": by_status[Status.NOT_ARCHIVED],
        "held": by_status[Status.HELD],
        "pending": by_status[Status.PENDING],
        "bytes_archived": totals["bytes_archived"],
        "compressed_bytes": totals["compressed_bytes"],
        "bytes_freed": totals["bytes_freed"]
        + (0 if dry_run else sum(item.get("bytes") or 0 for item in swept if item.get("deleted"))),
        # Replacements that deleted (or would delete) a data object before its storage class's minimum duration.
        "early_deletions": [r["early_deletion"] for r in rows if r.get("early_deletion")],
        "early_deletion_usd": sum(r["early_deletion"]["usd"] for r in rows if r.get("early_deletion")),
        "swept": list(swept),
        "waiting": [dict(item) for item in waiting],
        "warnings": [],
        "rows": rows,
    }
    for item in swept:
        if item.get("problem"):
            summary["warnings"].append(
                f"{item['id']} was not swept ({words.reason_phrase(item['problem']['reason'])}): "
                f"{item['problem']['detail']}; it stays on "
                "disk, and the next sweep tries again"
            )
    if waiting_warning_days:
        for item in summary["waiting"]:
            if item["waited_seconds"] > waiting_warning_days * 86400:
                summary["warnings"].append(
                    f"{item['id']} (Kingfisher Process collection {item['collection_id']}) has waited for Kingfisher "
                    f"Process to load its files for longer than {waiting_warning_days} days: {item['detail']}; "
                    "check the collection in Kingfisher Process"
                )
    return summary


def recorded(ledger: Ledger, decisions: list[Decision]) -> tuple[dict[str, ArchiveResult], dict[str, dict]]:
    """What the ledger says now of the crawls the run chose to archive (or left pending): the archive results of
    those recorded ``archived`` or ``kept``, and every one's ledger row, by crawl id (:func:`summarise`'s
    ``results`` and ``ledger_rows``)."""
    results, rows = {}, {}
    for d in decisions:
        if d["status"] in (Status.TO_ARCHIVE, Status.PENDING):
            rows[d["id"]] = row = ledger.get(d["source_id"], d["data_version"]) or {}
            if row.get("status") in (Status.ARCHIVED, Status.KEPT) and row.get("result"):
                results[d["id"]] = row["result"]
    return results, rows


def format_table(summary: dict) -> str:
    """A plain-text table of the summary for the task log: every crawl, what happened, why, and the figures."""

    def mib(value) -> str:
        return f"{value / MiB:.1f}" if value is not None else ""

    header = f"{'crawl':<40} {'outcome':<27} {'MiB':>9} {'zstd MiB':>9} {'ratio':>5} {'MB/s':>6}"
    lines = [header + "  why"]
    for row in summary["rows"]:
        lines.append(
            f"{row['id']:<40} {outcome(row['status']):<27} {mib(row.get('bytes')):>9} "
            f"{mib(row.get('compressed_bytes')):>9} {row.get('ratio') or '':>5} {row.get('mb_per_second') or '':>6}"
            f"  {why(row)}"
        )
    for item in summary.get("waiting", []):
        lines.append(
            f"waiting for Kingfisher Process: {item['id']} (collection {item['collection_id']}), {item['detail']}"
        )
    lines.append(
        f"{summary['archived']} archived, {summary['would_archive']} would be archived, "
        f"{sum(summary['rejected'].values())} rejected, {summary['not_archived']} kept as not better, "
        f"{summary['held']} held, {summary['pending']} pending, {len(summary['failed'])} failed, "
        f"{len(summary['waiting'])} waiting for Kingfisher "
        f"Process; {mib(summary['bytes_archived'])} MiB archived as "
        f"{mib(summary['compressed_bytes'])} MiB; {mib(summary['bytes_freed'])} MiB freed on disk"
    )
    for early in summary.get("early_deletions", []):
        lines.append(words.early_deletion(early, summary["dry_run"]))
    for item in summary.get("swept", []):
        if item.get("problem"):
            continue  # in the warnings
        verb = "would sweep" if summary["dry_run"] else "swept"
        said = words.why(item["status"], item["reason"], crawl_id=item["id"])
        lines.append(f"{verb} {item['id']} ({words.outcome(item['status'])}: {said}), older than the retention period")
    return "\n".join(lines)
