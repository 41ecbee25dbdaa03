"""Cold storage classes (GLACIER, DEEP_ARCHIVE) on the archive path, through the tests' imitation of AWS's archive
classes (tests.harness.aws_like, ``cold=True``: a GET or copy of a cold object not thawed is refused, and recorded in
``proxy.refused_cold``). The data object goes into the cold class, ``metadata.json`` and ``scrapy.log`` into one that
reads at once, and nothing on the archive path ever tries to read a cold object."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from botocore.exceptions import EndpointConnectionError

from kingfisher_archive import audit, steps
from kingfisher_archive import settings as config
from kingfisher_archive.archiver import UnprovableColdUploadError
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.errors import PermanentError
from kingfisher_archive.ledger import Held, Ledger, Status
from kingfisher_archive.month import crawl_in
from scripts.demo_kit.kingfisher_host import ocds_files
from tests.harness.world import writing_lz4
from tests.test_faults import assert_month_is_consistent, keys, plan_for

MONTH = "scotland/2020/09/"
EARLIER, BETTER = "20200901_000000", "20200902_052458"


def _cold(settings, storage_class):
    return replace(settings, storage_class=storage_class, metadata_storage_class="STANDARD_IA")


def _classes(client, bucket, prefix=MONTH):
    return {
        key: client.head_object(Bucket=bucket, Key=key).get("StorageClass") for key in keys(client, bucket, prefix)
    }


def _on_disk(host, data_version):
    return os.path.exists(os.path.join(host.data_directory, "scotland", data_version))


def _archive(settings, host, client, data_version, files):
    host.add_crawl("scotland", data_version, files)
    return steps.archive(settings, client, plan_for(settings, client, "scotland", data_version))


@pytest.mark.slow
@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_a_cold_month_is_archived_and_replaced_without_a_cold_read(
    aws_like, settings, host, bucket, s3_server, storage_class
):
    proxy, client = aws_like
    settings = _cold(settings, storage_class)
    first = _archive(settings, host, client, EARLIER, ocds_files("small", 2))
    assert first["in_place"] and first["deleted"] and not _on_disk(host, EARLIER)
    better = _archive(settings, host, client, BETTER, ocds_files("big", 20))
    assert better["in_place"] is False and better["deleted"] and not _on_disk(host, BETTER)

    assert proxy.refused_cold == []  # no GET, ranged GET or copy of a cold object was even tried
    assert _classes(client, bucket) == {
        MONTH + "data.tar.zst": storage_class,
        MONTH + "metadata.json": "STANDARD_IA",
        MONTH + "scrapy.log": "STANDARD_IA",
    }
    assert keys(client, bucket, "staging/") == []
    # The month is whole: read behind the proxy (SeaweedFS serves every class).
    metadata = assert_month_is_consistent(s3_server.client(), bucket, MONTH)
    assert (metadata["id"], metadata["storage_class"]) == (f"scotland/{BETTER}", storage_class)
    # Which crawl the data holds is its user metadata, read by HEAD, through the copy from staging.
    head = client.head_object(Bucket=bucket, Key=MONTH + "data.tar.zst")
    assert head["Metadata"] == {"crawl": f"scotland/{BETTER}"}
    assert crawl_in(client, bucket, MONTH + "data.tar.zst", "scotland") == f"scotland/{BETTER}"
    assert proxy.refused_cold == [] and proxy.restores == []


@pytest.mark.slow
@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_a_replacement_of_a_cold_month_cut_short_is_finished_by_the_retry_without_a_cold_read(
    aws_like, settings, host, bucket, s3_server
):
    proxy, client = aws_like
    settings = _cold(settings, "DEEP_ARCHIVE")
    _archive(settings, host, client, EARLIER, ocds_files("small", 2))
    host.add_crawl("scotland", BETTER, ocds_files("big", 20))
    plan = plan_for(settings, client, "scotland", BETTER)
    failed = []

    def fail_once(**kwargs):
        if not failed:
            failed.append(True)
            raise EndpointConnectionError(endpoint_url="http://the-network-went-away")

    client.meta.events.register("before-call.s3.CopyObject", fail_once)
    with pytest.raises(EndpointConnectionError):
        steps.archive(settings, client, plan)
    assert _on_disk(host, BETTER)  # nothing deleted before the month is whole and verified

    result = steps.archive(settings, client, plan)
    assert result["deleted"] and not _on_disk(host, BETTER)
    assert proxy.refused_cold == []
    assert assert_month_is_consistent(s3_server.client(), bucket, MONTH)["id"] == f"scotland/{BETTER}"
    assert _classes(client, bucket)[MONTH + "data.tar.zst"] == "DEEP_ARCHIVE"
    assert keys(client, bucket, "staging/") == []


@pytest.mark.slow
@pytest.mark.aws(cold=True, kms=True, checksums=False, restore_seconds=3600)
def test_a_server_that_only_a_read_back_could_prove_by_never_reads_a_cold_object(
    aws_like, settings, host, bucket, s3_server
):
    proxy, client = aws_like
    # Into an empty month: the cold object written in place cannot be proved without reading it, so it is withdrawn.
    host.add_crawl("scotland", BETTER, ocds_files("big", 20))
    cold = _cold(settings, "GLACIER")
    with pytest.raises(UnprovableColdUploadError, match="kingfisher_archive_storage_class") as raised:
        steps.archive(cold, client, plan_for(cold, client, "scotland", BETTER))
    assert isinstance(raised.value, PermanentError)  # failed without retries: each would upload it all again
    assert keys(client, bucket, MONTH) == [] and _on_disk(host, BETTER)

    # A month that holds an archive: the staged object (readable) is read back, its cold copy proved by its size.
    earlier = _archive(settings, host, client, EARLIER, ocds_files("small", 2))
    assert earlier["deleted"]
    result = steps.archive(cold, client, plan_for(cold, client, "scotland", BETTER))
    assert result["deleted"] and not _on_disk(host, BETTER)
    assert proxy.refused_cold == []
    metadata = assert_month_is_consistent(s3_server.client(), bucket, MONTH)
    assert metadata["verified_by"]["data.tar.zst"] == "read-back"  # in staging, before it was copied
    assert _classes(client, bucket)[MONTH + "data.tar.zst"] == "GLACIER"


@pytest.mark.slow
@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_an_older_cold_archive_whose_crawl_must_be_read_holds_that_crawl_while_it_thaws(
    aws_like, settings, host, bucket, s3_server
):
    proxy, client = aws_like
    direct = s3_server.client()  # what an older tool left, planted behind the proxy
    settings = _cold(settings, "DEEP_ARCHIVE")
    files = ocds_files("small", 2)
    with writing_lz4():  # as this package wrote it before 2.0
        _archive(settings, host, client, EARLIER, files)
    # An archive written before the crawl's id was in its user metadata, whose metadata.json was lost.
    source = {"Bucket": bucket, "Key": MONTH + "data.tar.lz4"}
    direct.copy_object(
        CopySource=source, Bucket=bucket, Key=source["Key"], MetadataDirective="REPLACE", StorageClass="DEEP_ARCHIVE"
    )
    direct.delete_object(Bucket=bucket, Key=MONTH + "metadata.json")
    host.add_crawl("scotland", EARLIER, files)  # the crawl is on disk again
    host.add_crawl("other", "20200903_000000", ocds_files("other", 2))
    ledger = Ledger(settings.ledger)

    def decide():
        inspected = [
            steps.inspect(settings, {"source_id": source_id, "data_version": data_version})
            for source_id, data_version in (("scotland", EARLIER), ("other", "20200903_000000"))
        ]
        return steps.decide(settings, Bucket(client, bucket), inspected, ledger, "run")

    decided = {d["id"]: d for d in decide()["decisions"]}
    held = decided[f"scotland/{EARLIER}"]
    assert (held["status"], held["reason"]) == (Status.HELD, Held.ARCHIVE_THAWING)
    assert "DEEP_ARCHIVE" in held["detail"] and "48 h" in held["detail"]
    assert decided["other/20200903_000000"]["status"] == Status.TO_ARCHIVE  # other crawls go on
    assert proxy.restores == [(MONTH + "data.tar.lz4", 7, "Bulk")]
    assert proxy.refused_cold == []  # HEAD first: the cold archive was never asked for

    proxy.finish_restores()
    plans = decide()["to_archive"]
    assert f"scotland/{EARLIER}" in [plan["id"] for plan in plans]  # its own leftovers: it repairs the month
    assert proxy.refused_cold == []


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_the_audit_never_reads_cold_data_and_verify_data_thaws_it_first(aws_like, settings, host, bucket):
    proxy, client = aws_like
    _archive(_cold(settings, "DEEP_ARCHIVE"), host, client, EARLIER, ocds_files("small", 2))

    at_rest = audit.audit(client, bucket)
    assert at_rest["problems"] == [] and at_rest["thawing"] == [] and proxy.restores == []

    report = audit.audit(client, bucket, verify_data=True)
    assert report["problems"] == [] and report["verified"] == 0 and report["unrepaired"] == 0
    [thawing] = report["thawing"]
    assert thawing["key"] == MONTH + "data.tar.zst" and thawing["storage_class"] == "DEEP_ARCHIVE"
    assert thawing["detail"].startswith("thawing: verify again after 48 h")
    assert proxy.restores == [(MONTH + "data.tar.zst", 7, "Bulk")]
    assert proxy.refused_cold == []

    proxy.finish_restores()
    report = audit.audit(client, bucket, verify_data=True)
    assert report["problems"] == [] and report["verified"] == 1 and report["thawing"] == []
    assert proxy.refused_cold == []


def test_the_metadata_class_must_read_at_once_and_every_class_must_be_known(tmp_path):
    def load(**variables):
        values = {
            config.BUCKET: "b",
            config.DATA_DIRECTORY: str(tmp_path),
            config.LOGS_DIRECTORY: str(tmp_path),
            **variables,
        }
        return config.load(values.get)

    assert load().metadata_class == "STANDARD_IA"
    assert load(**{config.STORAGE_CLASS: "STANDARD"}).metadata_class == "STANDARD"
    deep = load(**{config.STORAGE_CLASS: "DEEP_ARCHIVE"})
    assert (deep.storage_class, deep.metadata_class) == ("DEEP_ARCHIVE", "STANDARD_IA")
    assert load(**{config.STORAGE_CLASS: "GLACIER", config.METADATA_STORAGE_CLASS: "GLACIER_IR"}).metadata_class == (
        "GLACIER_IR"
    )

    with pytest.raises(config.ConfigurationError) as raised:
        load(**{config.METADATA_STORAGE_CLASS: "DEEP_ARCHIVE"})
    message = str(raised.value)
    assert "\n" not in message and "'kingfisher_archive_metadata_storage_class' is 'DEEP_ARCHIVE'" in message
    assert "cannot be read for hours" in message

    with pytest.raises(config.ConfigurationError) as raised:
        load(**{config.STORAGE_CLASS: "FROZEN_SOLID"})
    message = str(raised.value)
    assert "'kingfisher_archive_storage_class' is 'FROZEN_SOLID'" in message
    assert "STANDARD_IA" in message and "DEEP_ARCHIVE" in message


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_the_command_line_audit_says_a_cold_month_is_thawing_and_verifies_it_once_thawed(
    aws_like, cli, settings, host, bucket
):
    proxy, client = aws_like
    _archive(_cold(settings, "GLACIER"), host, client, EARLIER, ocds_files("small", 2))

    thawing = cli("audit", "--bucket", bucket, "--verify-data", KINGFISHER_ARCHIVE_ENDPOINT_URL=proxy.endpoint_url)
    assert thawing.returncode == 0, thawing.stdout + thawing.stderr
    lines = thawing.stdout.splitlines()
    assert lines[0].startswith(f"thawing  {MONTH}data.tar.zst: not verified yet: thawing: verify again after 12 h")
    assert lines[-1].endswith("0 archives verified, 1 cold archive thawing")
    assert proxy.refused_cold == []

    proxy.finish_restores()
    verified = cli("audit", "--bucket", bucket, "--verify-data", KINGFISHER_ARCHIVE_ENDPOINT_URL=proxy.endpoint_url)
    assert verified.returncode == 0 and verified.stdout.splitlines()[-1].endswith("1 archive verified")
