"""The steps of a run called directly (no Airflow): what becomes work, what is decided, and retries converging."""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import datetime

import pytest

from kingfisher_archive import crawl as crawls
from kingfisher_archive import steps
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.ledger import ClaimedError, Ledger
from kingfisher_archive.process import Collection
from kingfisher_archive.settings import Settings
from scripts.demo_kit.airflow_dag import REPOSITORY
from scripts.demo_kit.kingfisher_host import KingfisherHost, ocds_files


@pytest.fixture
def host(tmp_path):
    return KingfisherHost(str(tmp_path / "host"))


@pytest.fixture
def settings(host, tmp_path):
    return Settings("unused", host.data_directory, host.logs_directory, str(tmp_path / "ledger.sqlite3"), "STANDARD")


@pytest.fixture
def bucket(s3_server):
    name = f"test-{secrets.token_hex(6)}"
    s3_server.create_bucket(name)
    return Bucket(s3_server.client(), name, "STANDARD")


def test_ten_thousand_historical_rows_become_only_the_crawls_still_on_disk(host, settings):
    host.add_crawl("scotland", "20200902_052458")
    host.add_crawl("scotland", "20201002_052458")
    host.add_crawl("paraguay", "20201101_000000")
    rows = [Collection(i, "scotland", datetime(2015, 1, 1, 0, i // 60 % 60, i % 60)) for i in range(10_000)]
    rows += [
        Collection(10_001, "scotland", datetime(2020, 9, 2, 5, 24, 58)),
        Collection(10_002, "scotland", datetime(2020, 10, 2, 5, 24, 58)),
        Collection(10_003, "paraguay", datetime(2020, 11, 1)),
        Collection(10_004, "../etc", datetime(2020, 11, 1)),
        Collection(10_005, "a/b", datetime(2020, 11, 1)),
        Collection(10_006, "nul\x00", datetime(2020, 11, 1)),
    ]
    found = steps.find(settings, rows, settled={("scotland", "20201002_052458")}, reevaluate=False)
    assert [c["source_id"] + "/" + c["data_version"] for c in found["crawls"]] == [
        "paraguay/20201101_000000",
        "scotland/20200902_052458",
    ]
    assert found["counts"] == {"not_on_disk": 10_000, "settled": 1}
    assert [m.split(":")[0] for m in found["ignored"]] == ["collection 10004", "collection 10005", "collection 10006"]

    again = steps.find(settings, rows, settled={("scotland", "20201002_052458")}, reevaluate=True)
    assert len(again["crawls"]) == 3


def test_crawls_process_is_still_loading_are_never_work_and_are_listed_as_waiting(host, settings):
    host.add_crawl("scotland", "20240501_000000")
    host.add_crawl("paraguay", "20240502_000000")
    now = datetime(2024, 5, 10, 12, 0, 0)

    def closed(id_, source_id, day, closed_at, stored, expected, pending):
        return Collection(id_, source_id, datetime(2024, 5, day), None, closed_at, False, stored, expected, pending)

    loading = [
        closed(1, "scotland", 1, datetime(2024, 5, 5, 9, 30), stored=40, expected=50, pending=12),
        closed(2, "paraguay", 2, datetime(2024, 5, 10, 11, 15), stored=3, expected=0, pending=3),
        closed(3, "moldova", 3, datetime(2024, 5, 1), stored=0, expected=0, pending=0),  # not on disk: no wait
    ]
    found = steps.find(settings, [], set(), reevaluate=True, loading=loading, now=now)
    assert found["crawls"] == []
    assert [(w["id"], w["collection_id"], w["waited_seconds"], w["detail"]) for w in found["waiting"]] == [
        (
            "scotland/20240501_000000",
            1,
            5 * 86400 + 2 * 3600 + 30 * 60,
            "closed 5 days 2 h ago; 40 of 50 files recorded, 12 still to load",
        ),
        (
            "paraguay/20240502_000000",
            2,
            45 * 60,
            "closed 45 min ago; 3 of an unknown number of files recorded, 3 still to load",
        ),
    ]

    summary = steps.summarise([], {}, False, waiting=found["waiting"], waiting_warning_days=3)
    assert [w["id"] for w in summary["waiting"]] == ["scotland/20240501_000000", "paraguay/20240502_000000"]
    [warning] = summary["warnings"]  # only the one closed more than three days ago
    assert warning.startswith(
        "scotland/20240501_000000 (Kingfisher Process collection 1) has waited for Kingfisher Process to load its "
        "files for longer than 3 days: closed 5 days 2 h ago"
    )
    table = steps.format_table(summary)
    assert "waiting for Kingfisher Process: paraguay/20240502_000000 (collection 2), closed 45 min ago" in table
    assert "2 waiting for Kingfisher Process" in table
    assert steps.summarise([], {}, False, waiting=found["waiting"], waiting_warning_days=6)["warnings"] == []


def test_inspection_gives_each_reject_reason_with_a_detail(host, settings):
    cases = {
        "a/20200101_000000": dict(with_log=False),
        "a/20200102_000000": dict(log={"finish_reason": "closespider_errorcount"}),
        "a/20200103_000000": dict(log={"spider_arguments": {"until_date": "2020-01-01"}}),
        "a/20200104_000000": dict(log={"files": 1, "errors": 2}),
        "a/20200105_000000": dict(files={"scrapyd-job.txt": b"x"}),
        "a/20200106_000000": dict(log={"finish_reason": None, "stats": False}),  # still running
        "a/20200107_000000": dict(log={"sigint": True, "finish_reason": None, "stats": False}),
        "a/20200108_000000": dict(),
        "a/20200111_000000": dict(log={"files": 0}),
    }
    for crawl_id, options in cases.items():
        host.add_crawl(*crawl_id.split("/"), **options)
    os.symlink("/etc", os.path.join(host.data_directory, "a", "20200109_000000"))
    cases["a/20200109_000000"] = {}
    results = {}
    for crawl_id in cases:
        source_id, version = crawl_id.split("/")
        facts = steps.inspect(settings, {"source_id": source_id, "data_version": version})
        results[crawl_id] = (facts["reject_reason"], facts["detail"])
    assert results == {
        "a/20200101_000000": ("no_log_file", None),
        "a/20200102_000000": ("not_finished", "the log's finish reason is 'closespider_errorcount'"),
        "a/20200103_000000": ("not_complete", "spider arguments: until_date=2020-01-01"),
        "a/20200104_000000": ("not_clean_enough", "2 errors (fileerror_count) for 1 files"),
        "a/20200105_000000": ("no_data_files", None),
        "a/20200106_000000": ("not_finished", "the log's finish reason is None"),
        "a/20200107_000000": ("not_finished", "the log's finish reason is None"),
        "a/20200108_000000": (None, None),
        "a/20200111_000000": ("no_data_files", "the log records no File items and no errors"),
        "a/20200109_000000": (
            "unsafe_data_directory",
            f"the crawl directory {host.data_directory}/a/20200109_000000 is a symbolic link",
        ),
    }
    gone = steps.inspect(settings, {"source_id": "a", "data_version": "20200110_000000"})
    assert gone["reject_reason"] == "no_data_directory"


def test_an_unreadable_metadata_json_holds_that_source_and_not_the_others(host, settings, bucket):
    host.add_crawl("scotland", "20200902_052458")
    host.add_crawl("paraguay", "20200902_052458")
    bucket.client.put_object(Bucket=bucket.name, Key="scotland/2020/08/metadata.json", Body=b"{truncated")
    inspected = [
        steps.inspect(settings, {"source_id": s, "data_version": "20200902_052458"}) for s in ("scotland", "paraguay")
    ]
    decided = steps.decide(settings, bucket, inspected)
    by_id = {d["id"]: d for d in decided["decisions"]}
    assert by_id["scotland/20200902_052458"]["status"] == "held"
    assert by_id["scotland/20200902_052458"]["reason"] == "unreadable_archive_metadata"
    assert "scotland/2020/08/metadata.json is not valid JSON" in by_id["scotland/20200902_052458"]["detail"]
    assert [p["id"] for p in decided["to_archive"]] == ["paraguay/20200902_052458"]


def test_the_checksum_is_read_only_for_comparison_with_an_earlier_month(host, settings, bucket):
    crawl = host.add_crawl("scotland", "20200902_052458", ocds_files("x", 3))
    facts = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200902_052458"})
    first = steps.decide(settings, bucket, [dict(facts)])
    assert first["to_archive"][0]["expected"]["checksum"] is None  # nothing to compare with: not read

    document = {"bytes": 1, "checksum": "0" * 32, "files_count": 1, "errors_count": 0}
    bucket.client.put_object(Bucket=bucket.name, Key="scotland/2020/08/metadata.json", Body=json.dumps(document))
    second = steps.decide(settings, Bucket(bucket.client, bucket.name), [dict(facts)])
    [plan] = second["to_archive"]
    assert plan["metadata"]["reason"] == "new_period"
    assert plan["expected"]["checksum"] is not None  # read, and the archive will have to match it
    assert plan["expected"]["checksum"] == crawls.checksum(crawl.directory)


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


def test_the_summary_counts_outcomes_and_fails_nothing_on_a_dry_run():
    decisions = [
        {"id": "a/1", "status": "to_archive", "reason": "new_period"},
        {"id": "a/2", "status": "rejected", "reason": "not_finished", "detail": "x"},
        {"id": "b/1", "status": "to_archive", "reason": "new_period"},
        {"id": "b/2", "status": "not_archived", "reason": "same_period"},
    ]
    decisions[3]["compared_with"] = "b/0"
    results = {"a/1": {"bytes": 7_000_000, "compressed_bytes": 1_000_000, "seconds": 2.0}}
    summary = steps.summarise(decisions, results, dry_run=False)
    assert (summary["archived"], summary["failed"], summary["rejected"], summary["not_archived"]) == (
        1,
        ["b/1"],
        {"not_finished": 1},
        1,
    )
    assert (summary["bytes_archived"], summary["compressed_bytes"], summary["bytes_freed"]) == (
        7_000_000,
        1_000_000,
        7_000_000,
    )
    archived = summary["rows"][0]
    assert (archived["status"], archived["ratio"], archived["mb_per_second"]) == ("archived", 7.0, 3.5)
    table = steps.format_table(summary)
    assert "a/1" in table and "7.0" in table and "3.5" in table
    # What a kept crawl was measured against, and why, in words; the codes stay in the summary's rows.
    assert "lost to 0: same month, without enough more data or fewer errors" in table
    assert "a/2" in table and "log shows the crawl did not finish" in table
    assert "chosen, and its archive task failed" in table
    assert "not_finished" not in table and "same_period" not in table
    dry = steps.summarise(decisions, {}, dry_run=True)
    assert (dry["would_archive"], dry["failed"]) == (2, [])
    assert "would be archived" in steps.format_table(dry)


def test_an_earlier_archive_written_in_2020_is_compared_on_bytes_and_errors_only(host, settings, bucket):
    host.add_crawl("scotland", "20200902_052458", log={"files": 5, "errors": 1})
    facts = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200902_052458"})
    same_size_2020 = {
        "database_id": 123,
        "data_md5": "d41d8cd98f00b204e9800998ecf8427e",
        "data_size": facts["bytes"],
        "scrapy_log_file_found": True,
        "errors_count": 1,
    }
    bucket.client.put_object(Bucket=bucket.name, Key="scotland/2020/7/metadata.json", Body=json.dumps(same_size_2020))
    [decision] = steps.decide(settings, bucket, [dict(facts)])["decisions"]
    # Same bytes and errors, but an MD5 is never "identical" to an XXH3: archived as a new period.
    assert (decision["status"], decision["reason"], decision["compared_with"]) == (
        "to_archive",
        "new_period",
        "scotland/2020-07 (archived)",
    )
    assert decision["checksum"] is None  # nothing to compare a checksum with, so none was computed

    less_clean = dict(same_size_2020, errors_count=0)
    bucket.client.put_object(Bucket=bucket.name, Key="scotland/2020/7/metadata.json", Body=json.dumps(less_clean))
    [decision] = steps.decide(settings, Bucket(bucket.client, bucket.name), [dict(facts)])["decisions"]
    assert (decision["status"], decision["reason"]) == ("not_archived", "2020_7_not_distinct_maybe")


def test_a_data_version_in_the_future_is_rejected_with_the_reason(host, settings):
    host.add_crawl("scotland", "20990101_000000")
    facts = steps.inspect(
        settings, {"source_id": "scotland", "data_version": "20990101_000000"}, now=datetime(2026, 11, 28, 12)
    )
    assert facts["reject_reason"] == "future_data_version"
    assert facts["detail"] == "the crawl claims to start at 2099-01-01 00:00:00, after now (2026-11-28 12:00:00 UTC)"


def test_a_crawl_whose_inspection_fails_is_held_and_the_others_go_on(host, settings, bucket):
    host.add_crawl("paraguay", "20200902_052458")
    inspected = [
        steps.inspect(settings, {"source_id": "scotland", "data_version": "2020-09-02"}),  # a mangled work item
        steps.inspect(settings, {"source_id": "paraguay", "data_version": "20200902_052458"}),
    ]
    decided = steps.decide(settings, bucket, inspected)
    by_id = {d["id"]: d for d in decided["decisions"]}
    held = by_id["scotland/2020-09-02"]
    assert (held["status"], held["reason"]) == ("held", "inspection_failed")
    assert held["detail"] == "ValueError: '2020-09-02' is not a data version (YYYYMMDD_HHMMSS)"
    assert [p["id"] for p in decided["to_archive"]] == ["paraguay/20200902_052458"]


def test_a_spider_log_folder_that_is_a_file_means_no_log(host, settings):
    host.add_crawl("scotland", "20200902_052458")
    broken = os.path.join(host.logs_directory, "scotland")
    shutil.rmtree(broken)
    with open(broken, "w") as f:
        f.write("not a folder")
    facts = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200902_052458"})
    assert facts["reject_reason"] == "no_log_file"


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


PLANNER = """
import json, sys
import boto3
from kingfisher_archive import steps
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.settings import Settings
job = json.load(sys.stdin)
settings = Settings(**job["settings"])
client = boto3.client("s3", region_name="us-east-1", **job["s3"])
inspected = [steps.inspect(settings, crawl) for crawl in job["crawls"]]
decided = steps.decide(settings, Bucket(client, settings.bucket), inspected)
print(json.dumps({d["id"]: [d["status"], d["reason"]] for d in decided["decisions"]}))
"""


def test_planning_reads_no_data_file_content_unless_a_checksum_is_needed(host, settings, bucket, s3_server):
    """Inspect and decide with every data file unreadable: only a comparison with an earlier month may read them."""
    host.add_crawl("scotland", "20200902_052458", log={"finish_reason": "shutdown"})  # rejected
    host.add_crawl("paraguay", "20200902_052458")  # a new month with nothing before it: no checksum needed
    for crawl in host.crawls.values():
        for root, _, files in os.walk(crawl.directory):
            for name in files:
                os.chmod(os.path.join(root, name), 0)
    job = {
        "settings": {**settings.__dict__, "bucket": bucket.name},
        "s3": {
            "endpoint_url": s3_server.endpoint_url,
            "aws_access_key_id": s3_server.access_key,
            "aws_secret_access_key": s3_server.secret_key,
        },
        "crawls": [{"source_id": c.source_id, "data_version": c.data_version} for c in host.crawls.values()],
    }
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    environment = dict(os.environ, PYTHONPATH=f"{REPOSITORY}{os.pathsep}{REPOSITORY / 'plugins'}")

    def plan():
        return subprocess.run(
            [*prefix, sys.executable, "-c", PLANNER], input=json.dumps(job), capture_output=True, text=True,
            env=environment, timeout=120,
        )  # fmt: skip

    result = plan()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "paraguay/20200902_052458": ["to_archive", "new_period"],
        "scotland/20200902_052458": ["rejected", "not_finished"],
    }

    # With an earlier month in the bucket, the checksum is needed, and reading is attempted (and refused here):
    # that source is held, the others are still decided.
    document = {"bytes": 1, "checksum": "0" * 32, "files_count": 1, "errors_count": 0}
    bucket.client.put_object(Bucket=bucket.name, Key="paraguay/2020/08/metadata.json", Body=json.dumps(document))
    result = plan()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "paraguay/20200902_052458": ["held", "checksum_failed"],
        "scotland/20200902_052458": ["rejected", "not_finished"],
    }


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


def test_a_retention_that_is_not_a_number_of_days_is_named():
    from kingfisher_archive import settings as config

    values = {"kingfisher_archive_bucket": "b", "kingfisher_archive_data_directory": "/",
              "kingfisher_archive_logs_directory": "/", "kingfisher_archive_retention_days": "ninety"}  # fmt: skip
    with pytest.raises(config.ConfigurationError, match="'kingfisher_archive_retention_days' is 'ninety'"):
        config.load(values.get)
    values["kingfisher_archive_retention_days"] = "90"
    assert config.load(values.get).retention_days == 90


def test_the_waiting_warning_defaults_to_three_days_and_a_bad_value_is_named():
    from kingfisher_archive import settings as config

    values = {"kingfisher_archive_bucket": "b", "kingfisher_archive_data_directory": "/",
              "kingfisher_archive_logs_directory": "/"}  # fmt: skip
    assert config.load(values.get).waiting_warning_days == 3
    values["kingfisher_archive_waiting_warning_days"] = "0"
    with pytest.raises(
        config.ConfigurationError, match="'kingfisher_archive_waiting_warning_days' is '0', not a whole"
    ):
        config.load(values.get)
    values["kingfisher_archive_waiting_warning_days"] = "14"
    assert config.load(values.get).waiting_warning_days == 14


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


def test_a_task_on_a_host_without_the_crawls_says_so_and_the_audit_does_not_need_them(tmp_path):
    import socket

    from kingfisher_archive import settings as config

    missing = str(tmp_path / "scrapyd" / "data")
    values = {"kingfisher_archive_bucket": "b", "kingfisher_archive_data_directory": missing,
              "kingfisher_archive_logs_directory": str(tmp_path)}  # fmt: skip
    with pytest.raises(config.ConfigurationError) as raised:
        config.load(values.get)
    assert str(raised.value) == (
        f"Airflow Variable 'kingfisher_archive_data_directory' names {missing!r}, which is not a directory on this "
        f"host ({socket.gethostname()}): the tasks that read crawls must run on the Kingfisher Collect host's "
        "worker, the one serving the queue named by KINGFISHER_ARCHIVE_QUEUE"
    )
    # The audit reads only the bucket: it runs on any worker.
    assert config.load(values.get, on_kingfisher_host=False).data_directory == missing


@pytest.mark.parametrize("error", [errno.EACCES, errno.EIO, errno.EMFILE, errno.ENOENT])
@pytest.mark.parametrize("when", ["matching the log", "reading the log"])
def test_a_log_that_cannot_be_read_for_now_holds_the_crawl_and_never_rejects_it(
    host, settings, monkeypatch, error, when
):
    """A read that fails for a moment (permissions, an I/O error, too many open files, the file vanishing while it is
    read) must never settle a crawl as rejected (``no_log_file``): a rejected crawl is never archived and may be
    swept."""
    from kingfisher_archive import scrapy_log

    crawl = host.add_crawl("a", "20200101_000000")
    calls = []

    def failing_open(path, *args, **kwargs):
        if path == crawl.log:
            calls.append(path)
            if len(calls) == (1 if when == "matching the log" else 2):
                raise OSError(error, os.strerror(error), path)
        return open(path, *args, **kwargs)

    # Matching opens the log to read its crawl time; reading opens it again to parse it.
    monkeypatch.setattr(scrapy_log, "open", failing_open, raising=False)
    facts = steps.inspect(settings, {"source_id": "a", "data_version": "20200101_000000"})
    assert facts["reject_reason"] is None and calls
    assert facts["error"] and os.strerror(error) in facts["error"]
    monkeypatch.undo()
    [decision] = steps.decide(settings, Bucket(None, "unused"), [facts])["decisions"]
    assert (decision["status"], decision["reason"]) == ("held", "inspection_failed")
    assert steps.inspect(settings, {"source_id": "a", "data_version": "20200101_000000"})["reject_reason"] is None


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
