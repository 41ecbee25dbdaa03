"""The bucket against a real S3 server: fail-fast checks, paginated listing, months spelled by hand."""

import json
import secrets

import pytest
from botocore.config import Config

from kingfisher_archive.bucket import Bucket, BucketError, MetadataError


@pytest.fixture
def bucket(s3_server):
    name = f"test-{secrets.token_hex(6)}"
    s3_server.create_bucket(name)
    return Bucket(s3_server.client(), name, "STANDARD", "kingfisher_archive_s3")


def put_metadata(bucket, key, **fields):
    document = {"bytes": 100, "checksum": "a" * 32, "files_count": 1, "errors_count": 0, **fields}
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=json.dumps(document).encode())


def test_a_missing_bucket_is_named(s3_server):
    with pytest.raises(BucketError, match="The bucket 'no-such-bucket' \\(connection 'kfa_s3'\\) does not exist"):
        Bucket(s3_server.client(), "no-such-bucket", connection_id="kfa_s3").check()


def test_wrong_credentials_are_reported_with_the_connection(s3_server, bucket):
    client = s3_server.client(secret_key="wrong")
    with pytest.raises(BucketError, match="refused our credentials.*check the connection"):
        Bucket(client, bucket.name, connection_id="kfa_s3").check()


def test_an_unreachable_server_is_reported(bucket):
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(BucketError, match="cannot be reached"):
        Bucket(client, bucket.name).check()


def test_listing_paginates_past_1000_keys_and_reads_both_month_spellings(bucket):
    # Years of months plus many unrelated objects, so the months are spread over several pages.
    client = bucket.client
    for i in range(1100):
        client.put_object(Bucket=bucket.name, Key=f"scotland/2019/01/extra/{i:05d}", Body=b"")
    put_metadata(bucket, "scotland/2019/01/metadata.json")
    put_metadata(bucket, "scotland/2020/3/metadata.json", bytes=3)  # typed by hand
    put_metadata(bucket, "scotland/2020/10/metadata.json", bytes=10)
    put_metadata(bucket, "scotland/2021/1/metadata.json", bytes=1)
    put_metadata(bucket, "scotland/2021/01/metadata.json", bytes=101)  # both spellings: ours wins
    put_metadata(bucket, "scotland_sample/2022/01/metadata.json")
    put_metadata(bucket, "scotland/2020/13/metadata.json")  # not a month

    assert sorted(bucket.months("scotland")) == [(2019, 1), (2020, 3), (2020, 10), (2021, 1)]
    assert bucket.archived("scotland", 2020, 3).bytes == 3
    assert bucket.archived("scotland", 2021, 1).bytes == 101
    assert bucket.archived("scotland", 2020, 4) is None
    assert bucket.archived_before("scotland", 2020, 10).bytes == 3  # the latest earlier month, not the first
    assert bucket.archived_before("scotland", 2020, 11).bytes == 10
    assert bucket.archived_before("scotland", 2019, 1) is None


def test_unreadable_metadata_is_an_error_naming_the_key(bucket):
    bucket.client.put_object(Bucket=bucket.name, Key="scotland/2020/09/metadata.json", Body=b"{oops")
    with pytest.raises(MetadataError, match="scotland/2020/09/metadata.json is not valid JSON"):
        bucket.archived("scotland", 2020, 9)
