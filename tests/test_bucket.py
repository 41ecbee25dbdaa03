"""The bucket's layout and metadata: fail-fast checks, paginated listing and months spelled by hand against a real
S3 server; metadata.json of every generation, read without trusting it."""

import json
import secrets

import pytest
from botocore.config import Config

from kingfisher_archive.bucket import Bucket, BucketError, MetadataError, parse_metadata


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


KEY = "scotland/2020/09/metadata.json"


def parse(document):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_metadata(KEY, "scotland", 2020, 9, body)


def test_2021_metadata():
    archived = parse(
        {
            "id": "scotland/20200902_052458",
            "source_id": "scotland",
            "data_version": "20200902_052458",
            "bytes": 239,
            "checksum": "0123456789abcdef0123456789abcdef",
            "files_count": 2,
            "errors_count": 1,
            "reject_reason": None,
            "archived": None,
        }
    )
    assert (archived.generation, archived.id, archived.bytes, archived.files_count, archived.errors_count) == (
        "2021",
        "scotland/20200902_052458",
        239,
        2,
        1,
    )
    assert archived.candidate().checksum == "0123456789abcdef0123456789abcdef"


def test_2020_metadata_has_no_comparable_checksum_and_no_files_count():
    archived = parse(
        {
            "database_id": 123,
            "data_md5": "d41d8cd98f00b204e9800998ecf8427e",
            "data_size": 1000,
            "scrapy_log_file_found": True,
            "errors_count": 3,
        }
    )
    assert (archived.generation, archived.bytes, archived.errors_count) == ("2020", 1000, 3)
    assert archived.checksum is None and archived.files_count is None
    assert archived.id == "scotland/2020-09 (archived)"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        (b"[1, 2]", "is not a JSON object"),
        ({"source_id": "scotland"}, "has neither"),
        ({"bytes": 10}, "'checksum' is None"),
        ({"bytes": "10", "checksum": "0" * 32}, "'bytes' is '10', not a count"),
        ({"bytes": -1, "checksum": "0" * 32}, "'bytes' is -1"),
        ({"data_size": None}, "'data_size' is None"),
    ],
)
def test_broken_metadata_names_the_key_and_the_problem(body, message):
    with pytest.raises(MetadataError, match=message) as excinfo:
        parse(body)
    assert KEY in str(excinfo.value)
