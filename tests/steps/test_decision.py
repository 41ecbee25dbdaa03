"""Deciding what to archive (no Airflow): each crawl against what its month and the months before it hold in a real
bucket; a crawl that cannot be decided is held and the others go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from kingfisher_archive import crawl as crawls
from kingfisher_archive import steps
from kingfisher_archive.bucket import Bucket
from scripts.demo_kit.airflow_dag import REPOSITORY
from scripts.demo_kit.kingfisher_host import ocds_files


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


def test_replacing_a_month_whose_data_is_younger_than_its_class_minimum_says_what_it_pays_and_goes_ahead(
    host, settings, bucket
):
    """The charge comes from the listing entry of the month's data object (its class, size and date), and the
    replacement is still chosen: information, not a refusal. SeaweedFS lists the class each object was written in."""
    from kingfisher_archive import words
    from kingfisher_archive.steps.summary import format_table, summarise

    host.add_crawl("scotland", "20200915_000000", ocds_files("x", 3))
    facts = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200915_000000"})
    archived = {"id": "scotland/20200901_000000", "source_id": "scotland", "data_version": "20200901_000000"}
    archived.update(bytes=1, checksum="0" * 32, files_count=1, errors_count=0)
    put = bucket.client.put_object
    put(
        Bucket=bucket.name, Key="scotland/2020/09/metadata.json", Body=json.dumps(archived), StorageClass="STANDARD_IA"
    )
    put(Bucket=bucket.name, Key="scotland/2020/09/data.tar.lz4", Body=b"d" * 2000, StorageClass="GLACIER")
    put(Bucket=bucket.name, Key="scotland/2020/09/scrapy.log", Body=b"log", StorageClass="STANDARD_IA")

    decided = steps.decide(settings, bucket, [dict(facts)])

    [decision] = decided["decisions"]
    assert (decision["status"], decision["reason"]) == ("to_archive", "same_period_more_bytes")
    assert [plan["id"] for plan in decided["to_archive"]] == ["scotland/20200915_000000"]  # it goes ahead
    early = decision["early_deletion"]
    key = f"s3://{bucket.name}/scotland/2020/09/data.tar.lz4"
    assert {k: early[k] for k in ("key", "storage_class", "bytes", "minimum_days", "days_left")} == {
        "key": key,
        "storage_class": "GLACIER",
        "bytes": 2000,
        "minimum_days": 90,
        "days_left": 90,  # written just now
    }
    phrase = f"replacing {key} pays under $0.0001 early-deletion: 90 days left of GLACIER's 90-day minimum"
    assert words.sentence(decision).endswith("; " + phrase)

    summary = summarise(decided["decisions"], {}, dry_run=True)
    assert summary["early_deletions"] == [early]
    assert summary["rows"][0]["early_deletion"] == early
    table = format_table(summary)
    assert phrase in table.splitlines()[1]  # the crawl's row says why, and what it pays
    assert phrase + " (information: the replacement goes ahead on a real run)" in table.splitlines()


def test_no_early_deletion_is_said_for_an_empty_month_or_a_class_without_a_minimum(host, settings, bucket):
    host.add_crawl("scotland", "20200915_000000", ocds_files("x", 3))
    facts = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200915_000000"})
    [decision] = steps.decide(settings, bucket, [dict(facts)])["decisions"]
    assert decision["status"] == "to_archive" and "early_deletion" not in decision

    archived = {"id": "scotland/20200901_000000", "source_id": "scotland", "data_version": "20200901_000000"}
    archived.update(bytes=1, checksum="0" * 32, files_count=1, errors_count=0)
    bucket.client.put_object(Bucket=bucket.name, Key="scotland/2020/09/metadata.json", Body=json.dumps(archived))
    bucket.client.put_object(Bucket=bucket.name, Key="scotland/2020/09/data.tar.lz4", Body=b"d")  # STANDARD
    [decision] = steps.decide(settings, Bucket(bucket.client, bucket.name), [dict(facts)])["decisions"]
    assert decision["status"] == "to_archive" and "early_deletion" not in decision
