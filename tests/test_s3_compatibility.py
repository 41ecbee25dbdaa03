"""The buckets people really have: encrypted (ETags that are not MD5s), policy-enforced, versioned, locked.

SeaweedFS serves every test; where AWS answers otherwise, :mod:`tests.harness.aws_like` stands in front of it
(each imitation cites the AWS page it follows). Versioning is SeaweedFS's own. Each test archives, restores byte
for byte and audits, and looks at what a user would: the bucket's objects and versions, metadata.json, the disk.
"""

from __future__ import annotations

import os
import secrets

import pytest
from botocore.exceptions import ClientError

from kingfisher_archive import audit, restore, steps
from kingfisher_archive import settings as config
from kingfisher_archive.s3.client import encrypt_writes
from kingfisher_archive.s3.delete import delete_if_match, withdraw
from kingfisher_archive.s3.errors import MISSING, error_code
from kingfisher_archive.s3.probe import WriteRefusedError, probe_conditional_writes
from kingfisher_archive.s3.proof import md5_etag
from kingfisher_archive.s3.versions import describe_bucket
from kingfisher_archive.settings import probe_writes
from scripts.demo_kit.kingfisher_host import ocds_files
from tests.test_faults import archive_an_earlier_crawl, assert_month_is_consistent, keys, plan_for
from tests.test_s3_probe import _client_via


def _client(s3_server, endpoint_url, encryption=None):
    client = _client_via(s3_server, endpoint_url)
    encrypt_writes(client, encryption or {})
    return client


def _archive_two_crawls_into_one_month(settings, host, client):
    """An empty month filled in place, then replaced through staging by a bigger crawl of the same month."""
    archive_an_earlier_crawl(settings, host, client)
    host.add_crawl("scotland", "20200902_052458", ocds_files("big", 20))
    return steps.archive(settings, client, plan_for(settings, client, "scotland", "20200902_052458"))


@pytest.mark.slow
@pytest.mark.aws(kms=True)
def test_an_sse_kms_bucket_whose_etags_are_not_md5s_archives_restores_and_audits(
    aws_like, settings, host, bucket, tmp_path, s3_server
):
    proxy, client = aws_like
    result = _archive_two_crawls_into_one_month(settings, host, client)

    assert result["id"] == "scotland/20200902_052458" and result["deleted"], result
    head = client.head_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")
    assert head["ServerSideEncryption"] == "aws:kms"
    metadata = assert_month_is_consistent(client, bucket, "scotland/2020/09/")
    assert metadata["id"] == "scotland/20200902_052458"
    # Proved by the CRC32 the server stores, since the ETags say nothing about the bytes.
    assert metadata["verified_by"] == {"data.tar.zst": "crc32", "scrapy.log": "crc32"}
    stored = client.head_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst", ChecksumMode="ENABLED")
    assert stored["ChecksumCRC32"] == metadata["checksums"]["data.tar.zst"]["crc32"]
    assert keys(client, bucket, "staging/") == []
    assert not os.path.exists(os.path.join(host.data_directory, "scotland", "20200902_052458"))

    target = tmp_path / "restored"
    target.mkdir()
    restored = restore.restore(client, bucket, "scotland", 2020, 9, str(target))
    assert restored["files"] == 20
    report = audit.audit(client, bucket, verify_data=True)
    assert report["problems"] == [] and report["verified"] == 1
    assert report["at_rest"] == 2


@pytest.mark.slow
@pytest.mark.aws(kms=True, checksums=False)
def test_a_server_with_neither_md5_etags_nor_stored_checksums_is_read_back(aws_like, settings, host, bucket, tmp_path):
    proxy, client = aws_like
    result = _archive_two_crawls_into_one_month(settings, host, client)

    assert result["id"] == "scotland/20200902_052458" and result["deleted"], result
    metadata = assert_month_is_consistent(client, bucket, "scotland/2020/09/")
    assert metadata["verified_by"] == {"data.tar.zst": "read-back", "scrapy.log": "read-back"}
    report = audit.audit(client, bucket)
    assert report["problems"] == [] and report["at_rest"] == 0 and report["not_at_rest"] == 2
    target = tmp_path / "restored"
    target.mkdir()
    assert restore.restore(client, bucket, "scotland", 2020, 9, str(target))["files"] == 20


@pytest.mark.aws(kms=True, require_kms=True)
def test_a_bucket_demanding_an_encryption_header_fails_the_probe_naming_the_header(aws_like, bucket):
    proxy, client = aws_like
    with pytest.raises(WriteRefusedError) as raised:
        probe_writes(client, bucket)
    message = str(raised.value)
    assert "refused to write" in message and "AccessDenied" in message
    assert "no x-amz-server-side-encryption header" in message
    assert "'kingfisher_archive_encryption'" in message and '"ServerSideEncryption": "aws:kms"' in message


@pytest.mark.slow
@pytest.mark.aws(
    kms=True, require_kms=True, encryption={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/archive"}
)
def test_with_encryption_set_every_write_and_copy_carries_it(aws_like, settings, host, bucket):
    proxy, client = aws_like
    probe_conditional_writes(client, bucket, {"ServerSideEncryption": "aws:kms"})
    result = _archive_two_crawls_into_one_month(settings, host, client)

    assert result["id"] == "scotland/20200902_052458" and result["deleted"], result
    creating = [(op, path, h) for op, path, h in proxy.writes if op != "UploadPart"]
    assert {op for op, _, _ in creating} == {"PutObject", "CreateMultipartUpload", "CopyObject"}
    for operation, path, headers in creating:
        assert headers.get("x-amz-server-side-encryption") == "aws:kms", (operation, path)
        assert headers.get("x-amz-server-side-encryption-aws-kms-key-id") == "alias/archive", (operation, path)


@pytest.mark.aws(kms=False)
def test_if_match_on_a_missing_key_answered_404_as_aws_does_is_a_delete_already_done(aws_like, bucket):
    proxy, client = aws_like
    with pytest.raises(ClientError) as raised:
        client.delete_object(Bucket=bucket, Key="scotland/2020/09/metadata.json", IfMatch='"0123"')
    assert error_code(raised.value) in MISSING  # the imitation answers as AWS documents
    delete_if_match(client, bucket, "scotland/2020/09/metadata.json", '"0123"')  # and that is no error


@pytest.fixture
def versioned(s3_server):
    name = f"test-{secrets.token_hex(6)}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def _versions(client, bucket, prefix=""):
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    found = []
    for page in pages:
        found += [("version", v["Key"], v["IsLatest"]) for v in page.get("Versions", [])]
        found += [("marker", v["Key"], v["IsLatest"]) for v in page.get("DeleteMarkers", [])]
    return sorted(found)


def test_a_versioned_bucket_archives_replaces_restores_and_audits_leaving_no_staging_versions(
    s3_server, versioned, host, tmp_path
):
    client = _client(s3_server, s3_server.endpoint_url)
    settings = config.Settings(
        versioned, host.data_directory, host.logs_directory, str(tmp_path / "ledger.sqlite3"), "STANDARD"
    )
    assert describe_bucket(client, versioned) == "versioning Enabled, Object Lock off"
    probe_conditional_writes(client, versioned)
    result = _archive_two_crawls_into_one_month(settings, host, client)

    assert result["id"] == "scotland/20200902_052458" and result["deleted"], result
    assert assert_month_is_consistent(client, versioned, "scotland/2020/09/")["id"] == "scotland/20200902_052458"
    # What this package deletes of its own (the probe, staging) leaves neither versions nor delete markers...
    assert _versions(client, versioned, "staging/") == []
    # ...while the replaced month keeps its old versions, for the operator's lifecycle rule to expire (the docs).
    month = _versions(client, versioned, "scotland/2020/09/")
    assert ("version", "scotland/2020/09/data.tar.zst", False) in month
    assert [entry for entry in month if entry[2]] == [
        ("version", f"scotland/2020/09/{name}", True) for name in ("data.tar.zst", "metadata.json", "scrapy.log")
    ]
    target = tmp_path / "restored"
    target.mkdir()
    assert restore.restore(client, versioned, "scotland", 2020, 9, str(target))["files"] == 20
    report = audit.audit(client, versioned, verify_data=True)
    assert report["problems"] == [] and report["verified"] == 1 and report["at_rest"] == 2


def test_the_audit_finds_an_object_whose_stored_checksum_is_not_its_metadata_s_without_downloading(
    client, bucket, settings, host
):
    archive_an_earlier_crawl(settings, host, client)
    key = "scotland/2020/09/scrapy.log"
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=bytes(reversed(body)), ChecksumAlgorithm="CRC32")
    downloads = []
    client.meta.events.register("before-call.s3.GetObject", lambda params, **kw: downloads.append(params["url_path"]))

    report = audit.audit(client, bucket)

    assert [(p["key"], p["problem"]) for p in report["problems"]] == [(key, "stored checksum does not match metadata")]
    assert report["at_rest"] == 2
    assert [path for path in downloads if not path.endswith("metadata.json")] == []


@pytest.mark.aws(kms=True)
def test_a_withdrawal_that_cannot_delete_metadata_json_leaves_the_month_whole(aws_like, bucket):
    """An encrypted metadata.json's ETag is not the MD5 the withdrawal knows it by: if it cannot be deleted, neither
    are the data and log it describes (a metadata.json without its data would name an archive that is not there)."""
    proxy, client = aws_like
    month = "scotland/2020/09/"
    written = {}
    for name, body in (("data.tar.lz4", b"data"), ("scrapy.log", b"log"), ("metadata.json", b"{}")):
        etag = client.put_object(Bucket=bucket, Key=month + name, Body=body)["ETag"]
        written[month + name] = md5_etag(body) if name == "metadata.json" else etag
    assert written[month + "metadata.json"] != client.head_object(Bucket=bucket, Key=month + "metadata.json")["ETag"]

    withdraw(client, bucket, written)

    assert keys(client, bucket, month) == [month + "data.tar.lz4", month + "metadata.json", month + "scrapy.log"]
    del written[month + "metadata.json"]  # a try that failed before writing it: the rest is withdrawn
    client.delete_object(Bucket=bucket, Key=month + "metadata.json")
    withdraw(client, bucket, written)
    assert keys(client, bucket, month) == []
