"""The retention sweep (no Airflow): which settled crawls it deletes from disk, and which it keeps."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

from kingfisher_archive import steps
from kingfisher_archive.ledger import Ledger


def test_the_sweep_keeps_a_rejected_crawl_whose_reason_no_longer_holds(host, settings, bucket):
    """A rejection is settled and may be old, or made on a read that failed for a moment: the sweep deletes a
    rejected crawl only while its reject reason still holds."""
    settings = replace(settings, retention_days=90)
    ledger = Ledger(settings.ledger)
    host.add_crawl("a", "20200101_000000")  # finished, complete, clean: acceptable now
    host.add_crawl("a", "20200102_000000", log={"finish_reason": "shutdown"})
    for version in ("20200101_000000", "20200102_000000"):
        ledger.record(
            [{"source_id": "a", "data_version": version, "status": "rejected", "reason": "not_finished"}], "r1"
        )
    loaded = {("a", "20200101_000000"), ("a", "20200102_000000")}
    swept = steps.sweep(settings, ledger, loaded, datetime(2026, 11, 28), dry_run=False, bucket=bucket)
    assert [item["id"] for item in swept] == ["a/20200102_000000"]
    row = ledger.get("a", "20200101_000000")
    assert host.exists("a/20200101_000000") and (row["status"], row["reason"]) == ("held", "rejection_no_longer_holds")
    assert ("a", "20200101_000000") not in ledger.settled()  # the next run inspects and decides it again


def test_the_retention_sweep_deletes_only_old_settled_loaded_crawls_of_closed_months(host, settings, bucket):
    ledger = Ledger(settings.ledger)
    # The archive a/20200201_000000 lost to is in the bucket; the one a/20200601_000000 lost to is not (any more).
    document = {"id": "a/20200215_000000", "data_version": "20200215_000000", "bytes": 9, "checksum": "0" * 32}
    bucket.client.put_object(Bucket=bucket.name, Key="a/2020/02/metadata.json", Body=json.dumps(document))
    bucket.client.put_object(Bucket=bucket.name, Key="a/2020/02/data.tar.lz4", Body=b"archive")
    winner = {"compared_with": "a/20200215_000000"}
    kinds = {
        "a/20200101_000000": ("rejected", "not_finished", True, {}),  # swept
        "a/20200201_000000": ("not_archived", "same_period", True, winner),  # swept
        "a/20200301_000000": ("not_archived", "same_period", True, winner),  # its month still has a crawl to archive
        "a/20200302_000000": ("to_archive", "same_period_more_bytes", True, {}),
        "a/20200401_000000": ("held", "unreadable_archive_metadata", True, {}),
        "a/20200501_000000": ("rejected", "not_finished", False, {}),  # Process does not list it as loaded
        "a/20200601_000000": ("not_archived", "same_period", True, {"compared_with": "a/20200602_000000"}),
        "a/20261120_000000": ("rejected", "not_finished", True, {}),  # too young
    }
    for crawl_id, (status, reason, _, facts) in kinds.items():
        host.add_crawl(*crawl_id.split("/"), log={"finish_reason": "shutdown"} if reason == "not_finished" else None)
        row = {"source_id": "a", "data_version": crawl_id[2:], "status": status, "reason": reason, "facts": facts}
        ledger.record([row], "r1")
    loaded = {("a", crawl_id[2:]) for crawl_id, (_, _, is_loaded, _) in kinds.items() if is_loaded}
    now = datetime(2026, 11, 28)

    assert steps.sweep(settings, ledger, loaded, now, dry_run=False, bucket=bucket) == []  # off unless set

    settings = replace(settings, retention_days=90)
    would = steps.sweep(settings, ledger, loaded, now, dry_run=True, bucket=bucket)
    assert [item["id"] for item in would] == ["a/20200101_000000", "a/20200201_000000"]
    assert all(host.exists(crawl_id) for crawl_id in kinds)  # a dry run deletes nothing

    swept = steps.sweep(settings, ledger, loaded, now, dry_run=False, run_id="r2", bucket=bucket)
    assert [item["id"] for item in swept] == ["a/20200101_000000", "a/20200201_000000"]
    assert {crawl_id: host.exists(crawl_id) for crawl_id in kinds} == {
        "a/20200101_000000": False,
        "a/20200201_000000": False,
        "a/20200301_000000": True,
        "a/20200302_000000": True,
        "a/20200401_000000": True,
        "a/20200501_000000": True,
        "a/20200601_000000": True,  # what it lost to is not in the bucket: kept
        "a/20261120_000000": True,
    }
    assert not host.log_exists("a/20200101_000000") and host.log_exists("a/20200301_000000")
    assert ledger.get("a", "20200101_000000")["status"] == "swept"
    assert steps.sweep(settings, ledger, loaded, now, dry_run=False, bucket=bucket) == []  # nothing left


def test_a_crawl_that_lost_is_swept_once_its_winner_was_replaced_by_a_better_one(host, settings, bucket):
    """L lost to W; later a better W2 replaced W in W's month. L was not kept because of W's bytes in particular: the
    month holds a better archive, so L is not kept for ever."""
    settings = replace(settings, retention_days=90)
    ledger = Ledger(settings.ledger)
    document = {"id": "a/20200220_000000", "data_version": "20200220_000000", "bytes": 9, "checksum": "0" * 32}
    document["compressed_bytes"] = 7
    bucket.client.put_object(Bucket=bucket.name, Key="a/2020/02/metadata.json", Body=json.dumps(document))
    bucket.client.put_object(Bucket=bucket.name, Key="a/2020/02/data.tar.lz4", Body=b"archive")
    host.add_crawl("a", "20200201_000000")
    facts = {"compared_with": "a/20200210_000000"}  # W, since replaced by W2 (a/20200220_000000)
    ledger.record([{"source_id": "a", "data_version": "20200201_000000", "status": "not_archived",
                    "reason": "same_period", "facts": facts}], "r1")  # fmt: skip
    swept = steps.sweep(settings, ledger, {("a", "20200201_000000")}, datetime(2026, 11, 28), False, bucket=bucket)
    assert [item["id"] for item in swept] == ["a/20200201_000000"] and not host.exists("a/20200201_000000")
