"""Mending what earlier runs left half-done, before deciding (no Airflow)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime

from kingfisher_archive import steps
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.ledger import Ledger
from tests.harness import step_fixtures

# The steps' fixtures, as tests/steps/ has them: settings that name no bucket, and a Bucket.
settings, bucket = step_fixtures.settings, step_fixtures.bucket


def test_a_crawl_gone_from_disk_before_it_was_settled_keeps_no_month_open(host, settings, bucket):
    """A chosen crawl deleted by hand (or whose last file went just before a kill) is settled by the next run
    against the bucket, so the sweep of its month is not blocked for ever."""
    settings = replace(settings, retention_days=90)
    ledger = Ledger(settings.ledger)
    host.add_crawl("a", "20200201_000000", log={"finish_reason": "shutdown"})
    gone = host.add_crawl("a", "20200202_000000")
    ledger.record([
        {"source_id": "a", "data_version": "20200201_000000", "status": "rejected", "reason": "not_finished"},
        {"source_id": "a", "data_version": "20200202_000000", "status": "to_archive", "reason": "new_period"},
    ], "r1")  # fmt: skip
    shutil.rmtree(gone.directory)
    loaded = {("a", "20200201_000000"), ("a", "20200202_000000")}
    steps.decide(settings, Bucket(bucket.client, bucket.name), [], ledger, "r2")
    row = ledger.get("a", "20200202_000000")
    assert (row["status"], row["reason"]) == ("gone", "not_on_disk")
    assert row["facts"]["detail"] == "its directory is gone, though it was to_archive; its month holds nothing"
    swept = steps.sweep(settings, ledger, loaded, datetime(2026, 11, 28), False, bucket=bucket)
    assert [item["id"] for item in swept] == ["a/20200201_000000"]
