"""Nothing lost, whatever breaks: faults injected into real servers and real processes.

Faults are injected with botocore's own event hooks on a real client talking to a real SeaweedFS (never by
patching boto3), by killing the S3 server, and by killing or de-privileging the archiving process. Each test
checks the invariants a restorer relies on: local data intact until its archive is verified, metadata.json
describing the data beside it, and the next try converging with nothing left in staging.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import asdict

import pytest
import xxhash
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from kingfisher_archive import crawl as crawls
from kingfisher_archive import steps
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.s3.errors import VerificationError
from scripts.demo_kit.airflow_dag import REPOSITORY
from scripts.demo_kit.kingfisher_host import ocds_files
from tests.harness.world import decompress


def plan_for(settings, client, source_id, data_version):
    """A run's decision for one crawl, as the DAG's (not a dry run's): what earlier tries left is mended first."""
    facts = steps.inspect(settings, {"source_id": source_id, "data_version": data_version})
    ledger = Ledger(settings.ledger)
    [plan] = steps.decide(settings, Bucket(client, settings.bucket), [facts], ledger, "run")["to_archive"]
    return plan


def keys(client, bucket, prefix=""):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def uploads(client, bucket):
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def assert_month_is_consistent(client, bucket, prefix):
    """metadata.json describes the data object it names (none named: data.tar.lz4), the month's only one: same crawl,
    same checksum over the same bytes."""
    metadata = json.loads(client.get_object(Bucket=bucket, Key=prefix + "metadata.json")["Body"].read())
    named = metadata.get("data_object", "data.tar.lz4")
    listed = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    assert [key for key in listed if key.rsplit("/", 1)[1].startswith("data.tar.")] == [prefix + named]
    data = client.get_object(Bucket=bucket, Key=prefix + named)["Body"].read()
    assert len(data) == metadata["compressed_bytes"]
    hasher = xxhash.xxh3_128()
    with tarfile.open(fileobj=io.BytesIO(decompress(data))) as tar:
        members = tar.getmembers()
        assert members[0].name == metadata["id"]
        for member in members:
            if member.isfile():
                hasher.update(tar.extractfile(member).read())
    assert hasher.hexdigest() == metadata["checksum"]
    return metadata


def archive_an_earlier_crawl(settings, host, client):
    """Fill the month with a smaller crawl, so the crawl under test replaces it (through staging)."""
    host.add_crawl("scotland", "20200901_000000", ocds_files("small", 2))
    steps.archive(settings, client, plan_for(settings, client, "scotland", "20200901_000000"))
    return client.get_object(Bucket=settings.bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read()


@pytest.mark.parametrize("month", ["empty", "replaced"])
def test_bytes_that_differ_from_what_we_sent_are_caught_before_anything_is_deleted(
    s3_server, host, settings, bucket, month
):
    client = s3_server.client()
    earlier = archive_an_earlier_crawl(settings, host, client) if month == "replaced" else None
    crawl = host.add_crawl("scotland", "20200902_052458", ocds_files("big", 20))
    plan = plan_for(settings, client, "scotland", "20200902_052458")
    # In an empty month the archive is written in place; in a month that holds one, through staging.
    checked = "staging/scotland/20200902_052458/data.tar.zst" if earlier else "scotland/2020/09/data.tar.zst"
    other = s3_server.client()
    swapped = {}

    def swap(params, **kwargs):
        # Just before we check the uploaded object, something replaces it with other bytes of the same size.
        key = params.get("Key", "")
        if key == checked and "IfMatch" not in params and not swapped:
            swapped["bytes"] = os.urandom(other.head_object(Bucket=bucket, Key=key)["ContentLength"])
            other.put_object(Bucket=bucket, Key=key, Body=swapped["bytes"])

    client.meta.events.register("before-parameter-build.s3.HeadObject", swap)
    with pytest.raises(VerificationError, match=f"{checked} has the stored CRC32"):
        steps.archive(settings, client, plan)
    assert os.path.isdir(crawl.directory) and os.path.exists(crawl.log)
    if earlier:  # the archive being replaced is untouched
        assert client.get_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read() == earlier
        assert assert_month_is_consistent(client, bucket, "scotland/2020/09/")["id"] == "scotland/20200901_000000"
    else:  # no metadata.json describes the stranger's bytes, and they are not ours to delete
        assert [k for k in keys(client, bucket) if not k.startswith("staging/")] == [checked]
        assert client.get_object(Bucket=bucket, Key=checked)["Body"].read() == swapped["bytes"]


def test_promotion_copies_only_the_object_that_was_verified(s3_server, host, settings, bucket):
    client = s3_server.client()
    earlier = archive_an_earlier_crawl(settings, host, client)
    crawl = host.add_crawl("scotland", "20200902_052458", ocds_files("big", 20))
    plan = plan_for(settings, client, "scotland", "20200902_052458")
    other = s3_server.client()

    def swap(params, **kwargs):
        # The promotion's copy names the verified ETag (CopySourceIfMatch); replace the object just before it is sent.
        source = str(params.get("CopySource", ""))  # "<bucket>/<key>" by now
        if params.get("CopySourceIfMatch") and source.endswith("staging/scotland/20200902_052458/data.tar.zst"):
            other.put_object(Bucket=bucket, Key=source.split("/", 1)[1], Body=b"not the archive")

    client.meta.events.register("before-parameter-build.s3.CopyObject", swap)
    with pytest.raises(ClientError, match="412|PreconditionFailed"):
        steps.archive(settings, client, plan)
    assert os.path.isdir(crawl.directory) and os.path.exists(crawl.log)
    assert client.get_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read() == earlier
    assert assert_month_is_consistent(client, bucket, "scotland/2020/09/")["id"] == "scotland/20200901_000000"


def test_an_archive_written_in_place_never_completes_over_an_object_that_appeared_meanwhile(
    s3_server, host, settings, bucket
):
    crawl = host.add_crawl("scotland", "20200902_052458")
    client = s3_server.client()
    plan = plan_for(settings, client, "scotland", "20200902_052458")
    other = s3_server.client()

    def sneak_in(params, **kwargs):
        if params.get("Key") == "scotland/2020/09/data.tar.zst":
            other.put_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst", Body=b"someone else's")

    client.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload", sneak_in)
    with pytest.raises(VerificationError, match="scotland/2020/09/data.tar.zst appeared while this crawl"):
        steps.archive(settings, client, plan)
    assert os.path.isdir(crawl.directory) and os.path.exists(crawl.log)
    assert client.get_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read() == b"someone else's"
    assert keys(client, bucket, "scotland/") == ["scotland/2020/09/data.tar.zst"]
    assert uploads(client, bucket) == []


def test_a_try_that_fails_after_writing_into_an_empty_month_leaves_it_empty(s3_server, host, settings, bucket):
    crawl = host.add_crawl("scotland", "20200902_052458")
    client = s3_server.client()
    plan = plan_for(settings, client, "scotland", "20200902_052458")

    def crash(params, **kwargs):
        if params.get("Key", "").endswith("/metadata.json"):
            raise RuntimeError("the S3 server went away here")

    failing = s3_server.client()
    failing.meta.events.register("before-parameter-build.s3.PutObject", crash)
    with pytest.raises(RuntimeError, match="the S3 server went away here"):
        steps.archive(settings, failing, plan)
    assert os.path.isdir(crawl.directory) and os.path.exists(crawl.log)
    assert keys(client, bucket) == [] and uploads(client, bucket) == []  # the data and log it wrote are gone again

    steps.archive(settings, client, plan_for(settings, client, "scotland", "20200902_052458"))
    assert_month_is_consistent(client, bucket, "scotland/2020/09/")
    assert not os.path.exists(crawl.directory)


def test_a_crash_before_metadata_is_written_is_repaired_by_the_next_try(s3_server, host, settings, bucket):
    client = s3_server.client()
    # The month already holds a smaller crawl; a better one replaces it.
    host.add_crawl("scotland", "20200901_000000", ocds_files("small", 2))
    first = plan_for(settings, client, "scotland", "20200901_000000")
    steps.archive(settings, client, first)
    better = host.add_crawl("scotland", "20200920_000000", ocds_files("big", 20))
    plan = plan_for(settings, client, "scotland", "20200920_000000")
    assert plan["metadata"]["reason"] == "same_period_more_bytes"

    failing = s3_server.client()

    def crash(params, **kwargs):
        if params.get("Key", "").endswith("/metadata.json"):
            raise RuntimeError("the worker died here")

    failing.meta.events.register("before-parameter-build.s3.PutObject", crash)
    with pytest.raises(RuntimeError, match="the worker died here"):
        steps.archive(settings, failing, plan)
    assert os.path.isdir(better.directory) and os.path.exists(better.log)  # nothing deleted

    # The next run finishes the replacement the crash cut short, then finds the better crawl archived and deletes it.
    again = plan_for(settings, client, "scotland", "20200920_000000")
    steps.archive(settings, client, again)
    metadata = assert_month_is_consistent(client, bucket, "scotland/2020/09/")
    assert metadata["id"] == "scotland/20200920_000000"
    assert not os.path.exists(better.directory)
    assert keys(client, bucket, "staging/") == [] and uploads(client, bucket) == []


def test_the_s3_server_killed_mid_upload_costs_nothing_and_the_next_try_archives(
    s3_server, host, settings, bucket, monkeypatch
):
    monkeypatch.setattr("kingfisher_archive.s3.upload.MIN_PART_SIZE", 5 * crawls.MiB)
    incompressible = {f"{i:03X}/part.bin": os.urandom(4 * crawls.MiB) for i in range(6)}
    crawl = host.add_crawl("scotland", "20200902_052458", incompressible)
    before = crawls.checksum(crawl.directory)
    client = s3_server.client(config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2))
    plan = plan_for(settings, client, "scotland", "20200902_052458")
    parts = []

    def kill_after_first_part(**kwargs):
        parts.append(1)
        if len(parts) == 1:
            s3_server.kill()

    client.meta.events.register("after-call.s3.UploadPart", kill_after_first_part)
    try:
        with pytest.raises((BotoCoreError, ClientError)):
            steps.archive(settings, client, plan)
    finally:
        s3_server.start()

    assert crawls.checksum(crawl.directory) == before and os.path.exists(crawl.log)  # local data intact
    client = s3_server.client()
    assert "scotland/2020/09/metadata.json" not in keys(client, bucket)

    result = steps.archive(settings, client, plan_for(settings, client, "scotland", "20200902_052458"))
    assert result["checksum"] == before
    assert_month_is_consistent(client, bucket, "scotland/2020/09/")
    assert keys(client, bucket, "staging/") == []
    assert uploads(client, bucket) == []  # the broken try's multipart upload was aborted


def run_archive_process(settings, plan, s3_server, prefix=(), **options):
    job = {
        "settings": asdict(settings),
        "plan": plan,
        "s3": {
            "endpoint_url": s3_server.endpoint_url,
            "access_key": s3_server.access_key,
            "secret_key": s3_server.secret_key,
        },
        **options,
    }
    environment = dict(os.environ, PYTHONPATH=f"{REPOSITORY}{os.pathsep}{REPOSITORY / 'plugins'}")
    return subprocess.run(
        [*prefix, sys.executable, "-m", "tests.harness.archive_once"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPOSITORY,
        timeout=300,
    )


def test_a_worker_killed_after_metadata_but_before_deleting_is_finished_by_the_retry(
    s3_server, host, settings, bucket
):
    crawl = host.add_crawl("scotland", "20200902_052458")
    client = s3_server.client()
    plan = plan_for(settings, client, "scotland", "20200902_052458")

    killed = run_archive_process(settings, plan, s3_server, die="after_metadata")
    assert killed.returncode == -9, killed.stderr
    assert os.path.isdir(crawl.directory) and os.path.exists(crawl.log)  # killed before deleting
    assert_month_is_consistent(client, bucket, "scotland/2020/09/")

    retry = run_archive_process(settings, plan, s3_server)  # the same task, cleared and run again
    assert retry.returncode == 0, retry.stderr
    assert not os.path.exists(crawl.directory) and not os.path.exists(crawl.log)
    assert_month_is_consistent(client, bucket, "scotland/2020/09/")
    assert keys(client, bucket, "staging/") == [] and uploads(client, bucket) == []


def test_a_worker_killed_before_metadata_in_an_empty_month_is_repaired_by_the_retry(s3_server, host, settings, bucket):
    crawl = host.add_crawl("scotland", "20200902_052458")
    client = s3_server.client()
    plan = plan_for(settings, client, "scotland", "20200902_052458")

    killed = run_archive_process(settings, plan, s3_server, die="before_metadata")
    assert killed.returncode == -9, killed.stderr
    # Killed with no chance to clean up: data and log in the month, nothing describing them, nothing deleted.
    assert keys(client, bucket) == ["scotland/2020/09/data.tar.zst", "scotland/2020/09/scrapy.log"]
    assert os.path.isdir(crawl.directory) and os.path.exists(crawl.log)

    retry = run_archive_process(settings, plan, s3_server)  # the month is not empty now: through staging
    assert retry.returncode == 0, retry.stderr
    assert not os.path.exists(crawl.directory) and not os.path.exists(crawl.log)
    assert assert_month_is_consistent(client, bucket, "scotland/2020/09/")["id"] == "scotland/20200902_052458"
    assert keys(client, bucket, "staging/") == [] and uploads(client, bucket) == []


def test_an_unreadable_file_fails_the_archive_clearly_and_deletes_nothing(s3_server, host, settings, bucket):
    crawl = host.add_crawl("scotland", "20200902_052458", {"a.json": b"{}", "secret/b.json": b"[]"})
    client = s3_server.client()
    plan = plan_for(settings, client, "scotland", "20200902_052458")
    os.chmod(os.path.join(crawl.directory, "secret", "b.json"), 0)
    prefix = ()
    if os.geteuid() == 0:
        # root reads anything: take away the capabilities that let it ignore file permissions.
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
    result = run_archive_process(settings, plan, s3_server, prefix=prefix)
    assert result.returncode != 0
    assert "cannot read 'secret/b.json' in the crawl (Permission denied): nothing was archived or deleted" in (
        result.stderr
    )
    assert os.path.isdir(crawl.directory) and os.path.exists(crawl.log)
    assert [k for k in keys(client, bucket) if not k.startswith("staging/")] == []
    assert uploads(client, bucket) == []
