"""A run's metrics, from its summary: what the *Summarise the run* task sends through Airflow's stats client.

Plain Python: :func:`from_summary` returns ``(kind, name, value)`` triples, and :mod:`kingfisher_archive.tasks`
sends them with ``airflow.sdk.observability.stats.Stats``. Counters add up over runs; gauges are the state a run
found; a dry run sends nothing. See docs/operating.md, Metrics, for every name and what it counts.
"""

from __future__ import annotations

from kingfisher_archive.ledger import Status

PREFIX = "kingfisher_archive."

COUNTER = "incr"
GAUGE = "gauge"


def from_summary(summary: dict, results: dict[str, dict]) -> list[tuple[str, str, float]]:
    """The run's metrics: ``(kind, name, value)``, kind ``"incr"`` (a counter) or ``"gauge"``; none on a dry run.

    ``summary`` is :func:`kingfisher_archive.steps.summarise`'s value; ``results`` the archive results by id (what the
    ledger recorded for the crawls this run archived).
    """
    if summary.get("dry_run"):
        return []
    rows = summary["rows"]
    archived = [results[row["id"]] for row in rows if row["status"] == Status.ARCHIVED and row["id"] in results]
    bytes_read = sum(result.get("bytes_read") or result.get("bytes") or 0 for result in archived)
    seconds = sum(result.get("seconds") or 0 for result in archived)
    kept = sum(summary["rejected"].values()) + summary["not_archived"] + summary["pending"]
    waits = [item.get("waited_seconds") or 0 for item in summary.get("waiting", [])]
    found = [
        (COUNTER, "crawls_archived", summary["archived"]),
        (COUNTER, "crawls_kept", kept),
        (COUNTER, "bytes_read", bytes_read),
        (COUNTER, "bytes_uploaded", summary["compressed_bytes"]),
        (COUNTER, "bytes_freed", summary["bytes_freed"]),
        (GAUGE, "crawls_held", summary["held"]),
        (GAUGE, "crawls_waiting", len(waits)),
        (GAUGE, "oldest_wait_days", round(max(waits, default=0) / 86400, 2)),
    ]
    if archived and seconds > 0:
        found.append((GAUGE, "throughput_mb_per_second", round(summary["bytes_archived"] / 1e6 / seconds, 2)))
    return [(kind, PREFIX + name, value) for kind, name, value in found]
