"""The probe of conditional requests, against a real server and a proxy that strips the conditions."""

import pytest

from kingfisher_archive.s3.client import client_config
from kingfisher_archive.s3.probe import ConditionalWritesError, probe_conditional_writes


def _client_via(s3_server, endpoint_url):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=s3_server.region,
        config=client_config(Config(s3={"addressing_style": "path"})),
    )


def test_a_server_that_honours_conditional_writes_passes_the_probe_which_leaves_nothing(s3_server, bucket):
    client = _client_via(s3_server, s3_server.endpoint_url)
    probe_conditional_writes(client, bucket)
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_server_that_ignores_conditional_writes_is_named_before_anything_is_archived(s3_server, bucket):
    from tests.harness.stripping_proxy import StrippingProxy

    with StrippingProxy(s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key, s3_server.region) as proxy:
        client = _client_via(s3_server, proxy.endpoint_url)
        client.put_object(Bucket=bucket, Key="scotland/2020/09/metadata.json", Body=b"{}")  # the proxy works
        with pytest.raises(ConditionalWritesError) as raised:
            probe_conditional_writes(client, bucket)
    message = str(raised.value)
    assert f"The S3 server of bucket {bucket!r} ignores" in message
    assert "If-None-Match: * on PutObject" in message and "If-Match on DeleteObject" in message
    keys = [
        item["Key"]
        for item in _client_via(s3_server, s3_server.endpoint_url).list_objects_v2(Bucket=bucket)["Contents"]
    ]
    assert keys == ["scotland/2020/09/metadata.json"]  # the probe cleaned up after itself, and touched nothing else


def test_a_server_that_ignores_if_none_match_on_completing_an_upload_is_named(s3_server, bucket):
    """Archiving into an empty month completes its multipart uploads with ``If-None-Match: *``: a server that honours
    the header on PutObject but ignores it on CompleteMultipartUpload fails the probe, naming that."""
    from tests.harness.stripping_proxy import StrippingProxy

    def completing(method: str, path: str) -> bool:
        return method == "POST" and "uploadId=" in path

    with StrippingProxy(
        s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key, s3_server.region, drop_on=completing
    ) as proxy:
        with pytest.raises(ConditionalWritesError) as raised:
            probe_conditional_writes(_client_via(s3_server, proxy.endpoint_url), bucket)
    message = str(raised.value)
    assert "ignores If-None-Match: * on CompleteMultipartUpload (it completed over an existing object)" in message
    assert "PutObject" not in message and "DeleteObject" not in message
    assert _client_via(s3_server, s3_server.endpoint_url).list_objects_v2(Bucket=bucket).get("KeyCount") == 0
