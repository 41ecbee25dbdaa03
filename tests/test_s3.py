"""The S3 transport's arithmetic; its requests are checked against a real server in test_archiver and test_faults."""

import pytest

from kingfisher_archive import crawl, s3


@pytest.mark.parametrize(
    ("size", "files", "part_size"),
    [
        (0, 0, 8 * crawl.MiB),
        (100 * crawl.MiB, 10_000, 8 * crawl.MiB),
        (848 * 1024 * crawl.MiB, 1_000_000, 98 * crawl.MiB),  # the biggest crawl seen: 848 GB
    ],
)
def test_the_part_size_fits_the_crawl_in_10000_parts(size, files, part_size):
    chosen = s3.choose_part_size(size, files)
    assert chosen == part_size
    assert chosen * s3.MAX_PARTS >= size * 1.01 + files * 1536


def _client_via(s3_server, endpoint_url):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=s3_server.region,
        config=s3.client_config(Config(s3={"addressing_style": "path"})),
    )


def test_a_server_that_honours_conditional_writes_passes_the_probe_which_leaves_nothing(s3_server, bucket):
    client = _client_via(s3_server, s3_server.endpoint_url)
    s3.probe_conditional_writes(client, bucket)
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_server_that_ignores_conditional_writes_is_named_before_anything_is_archived(s3_server, bucket):
    from tests.harness.stripping_proxy import StrippingProxy

    with StrippingProxy(s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key, s3_server.region) as proxy:
        client = _client_via(s3_server, proxy.endpoint_url)
        client.put_object(Bucket=bucket, Key="scotland/2020/09/metadata.json", Body=b"{}")  # the proxy works
        with pytest.raises(s3.ConditionalWritesError) as raised:
            s3.probe_conditional_writes(client, bucket)
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
        with pytest.raises(s3.ConditionalWritesError) as raised:
            s3.probe_conditional_writes(_client_via(s3_server, proxy.endpoint_url), bucket)
    message = str(raised.value)
    assert "ignores If-None-Match: * on CompleteMultipartUpload (it completed over an existing object)" in message
    assert "PutObject" not in message and "DeleteObject" not in message
    assert _client_via(s3_server, s3_server.endpoint_url).list_objects_v2(Bucket=bucket).get("KeyCount") == 0
