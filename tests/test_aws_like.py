"""The tests' imitation of Amazon S3's archive storage classes (tests.harness.aws_like, ``cold=True``) answers as
the AWS pages it cites say: a test that relies on it relies on these answers."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from kingfisher_archive.s3.errors import error_code


def _code(call) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    return error_code(raised.value)


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_a_cold_object_reads_only_once_a_restore_is_done_and_a_rewrite_is_cold_again(aws_like, bucket):
    proxy, client = aws_like
    client.put_object(Bucket=bucket, Key="m/data", Body=b"cold bytes", StorageClass="DEEP_ARCHIVE")
    client.put_object(Bucket=bucket, Key="m/meta", Body=b"hot bytes", StorageClass="STANDARD_IA")

    assert client.get_object(Bucket=bucket, Key="m/meta")["Body"].read() == b"hot bytes"
    assert _code(lambda: client.get_object(Bucket=bucket, Key="m/data")) == "InvalidObjectState"
    assert _code(lambda: client.get_object(Bucket=bucket, Key="m/data", Range="bytes=0-3")) == "InvalidObjectState"
    copy = {"Bucket": bucket, "Key": "m/data"}
    assert _code(lambda: client.copy_object(CopySource=copy, Bucket=bucket, Key="m/copy")) == "InvalidObjectState"
    head = client.head_object(Bucket=bucket, Key="m/data")
    assert (head["StorageClass"], head.get("Restore"), head["ContentLength"]) == ("DEEP_ARCHIVE", None, 10)
    assert _code(lambda: client.restore_object(Bucket=bucket, Key="m/meta", RestoreRequest={"Days": 1})) == (
        "InvalidObjectState"
    )

    request = {"Days": 2, "GlacierJobParameters": {"Tier": "Bulk"}}
    started = client.restore_object(Bucket=bucket, Key="m/data", RestoreRequest=request)
    assert started["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert client.head_object(Bucket=bucket, Key="m/data")["Restore"] == 'ongoing-request="true"'
    assert _code(lambda: client.restore_object(Bucket=bucket, Key="m/data", RestoreRequest=request)) == (
        "RestoreAlreadyInProgress"
    )
    assert _code(lambda: client.get_object(Bucket=bucket, Key="m/data")) == "InvalidObjectState"

    proxy.finish_restores()
    assert client.head_object(Bucket=bucket, Key="m/data")["Restore"].startswith(
        'ongoing-request="false", expiry-date='
    )
    assert client.get_object(Bucket=bucket, Key="m/data")["Body"].read() == b"cold bytes"
    again = client.restore_object(Bucket=bucket, Key="m/data", RestoreRequest=request)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert proxy.restores == [("m/data", 2, "Bulk")] * 3

    client.put_object(Bucket=bucket, Key="m/data", Body=b"new cold bytes", StorageClass="GLACIER")
    assert _code(lambda: client.get_object(Bucket=bucket, Key="m/data")) == "InvalidObjectState"
    assert [(o["Key"], o["StorageClass"]) for o in client.list_objects_v2(Bucket=bucket)["Contents"]] == [
        ("m/data", "GLACIER"),
        ("m/meta", "STANDARD_IA"),
    ]


@pytest.mark.aws(cold=True, kms=True, restore_seconds=3600)
def test_a_restored_copy_expires_after_its_days(aws_like, bucket):
    proxy, client = aws_like
    now = [1000.0]
    proxy.clock = lambda: now[0]
    client.put_object(Bucket=bucket, Key="k", Body=b"x", StorageClass="GLACIER")
    client.restore_object(Bucket=bucket, Key="k", RestoreRequest={"Days": 1})
    now[0] += 3600
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    now[0] += 86400
    assert client.head_object(Bucket=bucket, Key="k").get("Restore") is None
    assert _code(lambda: client.get_object(Bucket=bucket, Key="k")) == "InvalidObjectState"
