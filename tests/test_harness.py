"""The real-server harness behaves like the servers production meets: S3 that checks signatures and keeps data,
and Kingfisher Process databases whose constraints refuse what Kingfisher Process's would."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import tempfile
from datetime import datetime
from pathlib import Path

import botocore.exceptions
import psycopg2
import psycopg2.errors
import pytest

from scripts.demo_kit.servers import start_postgres, start_seaweedfs

ROOT = Path(__file__).resolve().parent.parent

LOADED_ORIGINALS = (
    "SELECT source_id FROM collection "
    "WHERE sample IS FALSE AND store_end_at IS NOT NULL AND transform_type = '' AND deleted_at IS NULL"
)


def _bucket() -> str:
    return f"bucket-{secrets.token_hex(4)}"


def _error_code(excinfo: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_s3_refuses_wrong_credentials(s3_server):
    bucket = _bucket()
    s3_server.create_bucket(bucket)

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3_server.client(secret_key="not-the-secret").list_objects_v2(Bucket=bucket)
    assert _error_code(excinfo) == "SignatureDoesNotMatch"

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3_server.client(access_key="AKNOBODY", secret_key=s3_server.secret_key).list_objects_v2(Bucket=bucket)
    assert _error_code(excinfo) == "InvalidAccessKeyId"


def test_s3_stores_objects_byte_for_byte(s3_server):
    bucket = _bucket()
    s3_server.create_bucket(bucket)
    client = s3_server.client()
    # Larger than the filer's 4 MB chunk, so the object is stored as several chunks and reassembled.
    body = os.urandom(6 * 1024 * 1024 + 7)

    client.put_object(Bucket=bucket, Key="crawl/20240102_030405/data.tar.lz4", Body=body)

    assert client.get_object(Bucket=bucket, Key="crawl/20240102_030405/data.tar.lz4")["Body"].read() == body
    listed = client.list_objects_v2(Bucket=bucket, Prefix="crawl/")["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("crawl/20240102_030405/data.tar.lz4", len(body))]
    assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]


@pytest.mark.slow
def test_s3_keeps_data_across_stop_and_kill(tmp_path):
    server = start_seaweedfs(tmp_path)
    try:
        server.create_bucket("bucket-one")
        body = os.urandom(100_000)
        server.client().put_object(Bucket="bucket-one", Key="before", Body=body)
        endpoint = server.endpoint_url

        server.stop()
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            server.client(config=botocore.config.Config(retries={"max_attempts": 1})).list_buckets()

        server.start()
        assert server.endpoint_url == endpoint
        assert server.client().get_object(Bucket="bucket-one", Key="before")["Body"].read() == body

        server.client().put_object(Bucket="bucket-one", Key="after-restart", Body=b"second")
        server.kill()
        server.start()
        client = server.client()
        assert client.get_object(Bucket="bucket-one", Key="before")["Body"].read() == body
        assert client.get_object(Bucket="bucket-one", Key="after-restart")["Body"].read() == b"second"
        client.put_object(Bucket="bucket-one", Key="after-kill", Body=b"third")
        assert client.get_object(Bucket="bucket-one", Key="after-kill")["Body"].read() == b"third"
    finally:
        server.stop()


def test_v1_collection_refuses_a_duplicate_original(process_database):
    connection = psycopg2.connect(process_database("v1"))
    try:
        crawl = datetime(2021, 3, 4, 5, 6, 7)
        insert = (
            "INSERT INTO collection (source_id, data_version, store_start_at, store_end_at, sample, transform_type, "
            "transform_from_collection_id) VALUES ('spider', %s, %s, %s, %s, %s, %s) RETURNING id"
        )
        with connection, connection.cursor() as cursor:
            cursor.execute(insert, (crawl, crawl, crawl, False, "", None))
            original = cursor.fetchone()[0]
            # The same identifiers are fine for a sample and for a transform of the original.
            cursor.execute(insert, (crawl, crawl, None, True, "", None))
            cursor.execute(insert, (crawl, crawl, None, False, "compile-releases", original))
            cursor.execute(LOADED_ORIGINALS)
            assert cursor.fetchall() == [("spider",)]

        with pytest.raises(psycopg2.errors.UniqueViolation), connection, connection.cursor() as cursor:
            cursor.execute(insert, (crawl, crawl, crawl, False, "", None))
    finally:
        connection.close()


def test_v2_collection_refuses_a_duplicate_original_and_deletes_its_notes(process_database):
    connection = psycopg2.connect(process_database("v2"))
    try:
        crawl = datetime(2024, 3, 4, 5, 6, 7)
        insert = (
            "INSERT INTO collection (source_id, data_version, store_end_at, scrapyd_job) "
            "VALUES ('spider', %s, now(), 'a1b2c3') RETURNING id"
        )
        with connection, connection.cursor() as cursor:
            cursor.execute(insert, (crawl,))
            collection_id = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO collection_note (collection_id, note, data, code) VALUES (%s, %s, '{}', 'INFO')",
                (collection_id, "Spider close reason: finished"),
            )
            cursor.execute(LOADED_ORIGINALS)
            assert cursor.fetchall() == [("spider",)]
            cursor.execute("SELECT note FROM collection_note WHERE collection_id = %s", (collection_id,))
            assert cursor.fetchall() == [("Spider close reason: finished",)]

        with pytest.raises(psycopg2.errors.UniqueViolation), connection, connection.cursor() as cursor:
            cursor.execute(insert, (crawl,))

        with connection, connection.cursor() as cursor:
            cursor.execute("DELETE FROM collection WHERE id = %s", (collection_id,))
            cursor.execute("SELECT count(*) FROM collection_note")
            assert cursor.fetchone() == (0,)
    finally:
        connection.close()


def test_drop_database_removes_it_despite_open_sessions(postgres_server):
    name = f"kfa_test_{secrets.token_hex(4)}"
    dsn = postgres_server.create_database(name, schema="v2")
    lingering = psycopg2.connect(dsn)
    try:
        postgres_server.drop_database(name)
    finally:
        lingering.close()

    with psycopg2.connect(postgres_server.dsn()) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
        assert cursor.fetchone() == (0,)
    admin.close()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(dsn)


def test_airflow_connects_with_the_connection_json(process_database, postgres_server, monkeypatch):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    dsn = process_database("v1")
    name = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    monkeypatch.setenv("AIRFLOW_CONN_KFA_HARNESS", postgres_server.connection_json(name))

    hook = PostgresHook(postgres_conn_id="kfa_harness")

    assert hook.get_records("SELECT current_database(), count(*) FROM collection") == [(name, 0)]


def test_the_servers_files_are_outside_pytests_rotating_directories(s3_server, postgres_server, tmp_path_factory):
    # pytest deletes old pytest-N directories under this one; another pytest run must not delete a server's data.
    rotated = tmp_path_factory.getbasetemp().parent
    assert not s3_server.directory.is_relative_to(rotated)
    if postgres_server.log_path is not None:  # embedded
        assert not postgres_server.log_path.is_relative_to(rotated)
    assert s3_server.problem() is None and postgres_server.problem() is None


DYING_SERVER = """
import os
import shutil
import signal

from botocore.config import Config

ONE_TRY = Config(retries={"max_attempts": 1}, connect_timeout=2)


def test_the_server_dies(s3_server):
    if HOW == "killed":
        os.killpg(s3_server._process.pid, signal.SIGKILL)  # as the OOM killer would
        s3_server._process.wait()
    else:
        shutil.rmtree(s3_server.data_directory)  # as a cleanup of someone else's would
    s3_server.client(config=ONE_TRY).list_buckets()
    assert HOW != "killed"
    raise AssertionError("the test fails for a reason of its own")


def test_after_it(s3_server):
    s3_server.client(config=ONE_TRY).list_buckets()


def test_and_after_that(s3_server):
    pass
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["killed", "data deleted"])
def test_a_dead_server_stops_the_session_reported_once_with_its_log(pytester, monkeypatch, how):
    pytester.makeconftest('pytest_plugins = ["tests.harness.fixtures"]')
    pytester.makepyfile(test_dying=f"HOW = {how!r}\n" + DYING_SERVER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    output = result.stdout.str()
    result.assert_outcomes(failed=1)  # the other two tests never ran
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert output.count("dead test server") == 2  # the reason the session stopped, and the section
    if how == "killed":
        assert re.search(r"SeaweedFS \(weed mini, pid \d+\) exited with status -9; last lines of \S+weed.log:", output)
        assert "Start Seaweed S3 API Server" in output  # from the log's tail
    else:
        assert re.search(r"SeaweedFS lost its data directory \S+: something deleted it; last lines of", output)
    # The inner session removed its servers' directory.
    directory = re.search(r"last lines of (\S+)/seaweedfs/weed.log", output)[1]
    assert directory.startswith(tempfile.gettempdir()) and not os.path.exists(directory)


def test_a_dead_embedded_postgres_is_reported_with_its_log(monkeypatch):
    monkeypatch.delenv("KINGFISHER_ARCHIVE_TEST_POSTGRES", raising=False)
    directory = tempfile.mkdtemp(prefix="kingfisher-archive-test-dying-postgres-")
    try:
        server = start_postgres(directory)
        try:
            assert server.problem() is None
            postmaster = server._embedded._postmaster_info.process
            postmaster.send_signal(signal.SIGKILL)
            postmaster.wait(timeout=60)
            problem = server.problem()
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory)
    assert re.match(r"PostgreSQL \(embedded\) \(postmaster pid \d+\) is no longer running; last lines of ", problem)
    assert "database system is ready to accept connections" in problem
