"""The archive task's step (no Airflow): retries that converge, a crawl that vanished, a month claimed by another run,
and a decision the bucket has overtaken."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

import pytest

from kingfisher_archive import crawl as crawls
from kingfisher_archive import steps
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.ledger import ClaimedError, Ledger
from scripts.demo_kit.kingfisher_host import ocds_files


def test_a_retry_after_the_crawl_was_archived_and_deleted_succeeds(host, settings, bucket):
    crawl = host.add_crawl("scotland", "20200902_052458")
    settings = replace(settings, bucket=bucket.name)
    facts = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200902_052458"})
    [plan] = steps.decide(settings, bucket, [facts])["to_archive"]

    first = steps.archive(settings, bucket.client, plan)
    assert not os.path.exists(crawl.directory) and not os.path.exists(crawl.log)
    keys = sorted(o["Key"] for o in bucket.client.list_objects_v2(Bucket=bucket.name)["Contents"])

    again = steps.archive(settings, bucket.client, plan)  # the task cleared and run again
    assert again["already_archived"] is True and again["bytes"] == first["bytes"]
    assert sorted(o["Key"] for o in bucket.client.list_objects_v2(Bucket=bucket.name)["Contents"]) == keys


def test_a_crawl_that_vanished_without_being_archived_fails_with_a_clear_message(host, settings, bucket):
    host.add_crawl("scotland", "20200902_052458")
    settings = replace(settings, bucket=bucket.name)
    facts = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200902_052458"})
    [plan] = steps.decide(settings, bucket, [facts])["to_archive"]
    shutil.rmtree(host.crawls["scotland/20200902_052458"].directory)
    with pytest.raises(FileNotFoundError, match="disappeared after it was inspected, and the bucket does not hold"):
        steps.archive(settings, bucket.client, plan)


def test_a_log_path_outside_the_logs_directory_is_never_deleted(host, settings, bucket, tmp_path):
    crawl = host.add_crawl("scotland", "20200902_052458")
    settings = replace(settings, bucket=bucket.name)
    facts = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200902_052458"})
    [plan] = steps.decide(settings, bucket, [facts])["to_archive"]
    victim = tmp_path / "precious.log"
    victim.write_text("keep me")
    plan["log"] = str(victim)  # as if the XCom had been edited
    with pytest.raises(crawls.UnsafeCrawlError, match="refusing to archive .*precious.log: it is not a log in"):
        steps.archive(settings, bucket.client, plan)
    assert victim.read_text() == "keep me"
    assert os.path.isdir(crawl.directory)


def test_a_month_claimed_by_another_run_is_left_to_it(host, settings, bucket):
    crawl = host.add_crawl("scotland", "20200902_052458")
    settings = replace(settings, bucket=bucket.name)
    facts = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200902_052458"})
    [plan] = steps.decide(settings, bucket, [facts])["to_archive"]
    ledger = Ledger(settings.ledger)
    # Another run is archiving this crawl, or another crawl of September 2020: either way it holds the month.
    with ledger.claim("scotland", "2020-09", "scheduled__2026-11-28T00:00:00+00:00"):
        with pytest.raises(ClaimedError, match="scotland/2020-09 is being archived by run scheduled__2026-11-28"):
            steps.archive_and_record(settings, bucket.client, plan, ledger, "backfill__2026-11-01T00:00:00+00:00")
        assert os.path.isdir(crawl.directory)
        assert "Contents" not in bucket.client.list_objects_v2(Bucket=bucket.name)
    result = steps.archive_and_record(settings, bucket.client, plan, ledger, "backfill__2026-11-01T00:00:00+00:00")
    assert ledger.get("scotland", "20200902_052458")["status"] == "archived"
    assert result["id"] == "scotland/20200902_052458"


def test_a_decision_the_bucket_has_overtaken_archives_nothing_and_deletes_nothing(host, settings, bucket):
    # Run 1 chooses A (its month is empty) and its archive task fails. Run 2 sees A and a bigger B, archives B and
    # deletes B locally. Then an operator clears run 1's failed task: A must not replace B, the only copy of B.
    settings = replace(settings, bucket=bucket.name)
    a = host.add_crawl("scotland", "20200902_052458", ocds_files("a", 4))
    facts_a = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200902_052458"})
    [stale] = steps.decide(settings, bucket, [facts_a])["to_archive"]
    assert stale["month_held"] is None

    b = host.add_crawl("scotland", "20200920_101010", ocds_files("b", 12))
    facts_b = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200920_101010"})
    fresh = Bucket(bucket.client, bucket.name, "STANDARD")
    run_2 = steps.decide(settings, fresh, [facts_a, facts_b])
    assert [p["id"] for p in run_2["to_archive"]] == ["scotland/20200920_101010"]
    steps.archive(settings, bucket.client, run_2["to_archive"][0])
    assert not os.path.exists(b.directory)
    metadata_key = "scotland/2020/09/metadata.json"
    before = bucket.client.get_object(Bucket=bucket.name, Key=metadata_key)["Body"].read()

    # The archive task decides again against what the month holds now: A does not beat B, so nothing happens.
    result = steps.archive(settings, bucket.client, stale)
    assert result["redecided"]["reason"] == "same_period"
    assert result["redecided"]["compared_with"] == "scotland/20200920_101010"
    assert result["redecided"]["held"].startswith("scotland/20200920_101010 (")
    assert (result["compressed_bytes"], result["deleted"]) == (None, [])
    assert os.path.isdir(a.directory) and os.path.exists(a.log)
    assert bucket.client.get_object(Bucket=bucket.name, Key=metadata_key)["Body"].read() == before
    assert bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="staging/").get("KeyCount") == 0
