"""The Airflow adapter's S3 client: built from the Connection, configured as archiving needs."""

import base64
import hashlib
import json

from kingfisher_archive import settings, tasks


def use_connection(monkeypatch, s3_server, **extra):
    connection = {
        "conn_type": "aws",
        "login": s3_server.access_key,
        "password": s3_server.secret_key,
        "extra": {"endpoint_url": s3_server.endpoint_url, "region_name": s3_server.region, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{settings.S3_CONNECTION.upper()}", json.dumps(connection))


def put_with_md5(client, bucket, body):
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    client.put_object(Bucket=bucket, Key="probe", Body=body, ContentMD5=md5)
    return client.get_object(Bucket=bucket, Key="probe")["Body"].read()


def test_the_connection_gives_a_client_that_sends_md5_without_a_sha256_of_the_body(monkeypatch, s3_server, bucket):
    use_connection(monkeypatch, s3_server)
    client = tasks.s3_client()

    assert client.meta.endpoint_url == s3_server.endpoint_url
    assert client.meta.config.s3["payload_signing_enabled"] is False
    assert client.meta.config.request_checksum_calculation == "when_required"
    assert put_with_md5(client, bucket, b"accepted by the server") == b"accepted by the server"


def test_what_the_connection_sets_wins(monkeypatch, s3_server, bucket):
    config_kwargs = {
        "s3": {"addressing_style": "path", "payload_signing_enabled": True},
        "request_checksum_calculation": "when_supported",
    }
    use_connection(monkeypatch, s3_server, config_kwargs=config_kwargs)
    client = tasks.s3_client()

    assert client.meta.config.s3 == {"addressing_style": "path", "payload_signing_enabled": True}
    assert client.meta.config.request_checksum_calculation == "when_supported"
    assert put_with_md5(client, bucket, b"signed") == b"signed"
