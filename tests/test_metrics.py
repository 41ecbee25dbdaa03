"""The run's metrics from its summary (sending them through a real Airflow and StatsD: tests/test_dag.py)."""

from kingfisher_archive import metrics, steps


def decision(crawl_id, status, reason, **extra):
    source_id, data_version = crawl_id.split("/")
    return {"id": crawl_id, "source_id": source_id, "data_version": data_version, "status": status, "reason": reason}


DECISIONS = [
    decision("uk/20201201_000000", "to_archive", "new_period"),
    decision("uk/20201202_000000", "rejected", "not_finished"),
    decision("uk/20201203_000000", "held", "checksum_failed"),
]
RESULTS = {"uk/20201201_000000": {"bytes": 5_000_000, "compressed_bytes": 1_000_000, "seconds": 2.0}}


def test_a_dry_run_sends_nothing():
    summary = steps.summarise(DECISIONS, {}, dry_run=True)
    assert metrics.from_summary(summary, {}) == []


def test_a_run_sends_what_it_moved_and_what_it_found():
    waiting = [{"id": "uk/20201204_000000", "waited_seconds": 2 * 86400}]
    summary = steps.summarise(DECISIONS, RESULTS, dry_run=False, waiting=waiting)
    assert metrics.from_summary(summary, RESULTS) == [
        ("incr", "kingfisher_archive.crawls_archived", 1),
        ("incr", "kingfisher_archive.crawls_kept", 1),
        ("incr", "kingfisher_archive.bytes_read", 5_000_000),
        ("incr", "kingfisher_archive.bytes_uploaded", 1_000_000),
        ("incr", "kingfisher_archive.bytes_freed", 5_000_000),
        ("gauge", "kingfisher_archive.crawls_held", 1),
        ("gauge", "kingfisher_archive.crawls_waiting", 1),
        ("gauge", "kingfisher_archive.oldest_wait_days", 2.0),
        ("gauge", "kingfisher_archive.throughput_mb_per_second", 2.5),
    ]
