"""Kingfisher Process, both generations, against a real PostgreSQL with the real schemas."""

from datetime import UTC, datetime

import psycopg2
import pytest

from kingfisher_archive.process import ProcessError, loaded_collections
from tests.harness.kingfisher_host import KingfisherHost


@pytest.fixture(params=["v1", "v2"])
def host(request, process_database, tmp_path):
    dsn = process_database(request.param)
    return KingfisherHost(str(tmp_path), dsn=dsn, schema=request.param)


def collections(host, loaded_before=None):
    with psycopg2.connect(host.dsn) as connection:
        schema, found = loaded_collections(connection, loaded_before)
    connection.close()
    return schema, sorted((c.source_id, c.data_version.strftime("%Y%m%d_%H%M%S")) for c in found)


def test_the_schema_is_detected_and_only_loaded_original_collections_are_candidates(host):
    when = datetime(2020, 9, 2, 5, 24, 58)
    host.insert_collection("scotland", when)
    host.insert_collection("scotland", datetime(2020, 10, 1), loaded=False)
    host.insert_collection("scotland", datetime(2020, 11, 1), sample=True)
    host.insert_collection("scotland", datetime(2020, 12, 1), deleted=True)
    host.insert_collection("scotland", datetime(2021, 1, 1), transform_type="compile-releases")
    host.insert_collection("moldova_local", datetime(2021, 2, 1))
    host.insert_collection("moldova", datetime(2021, 3, 1), close_reason="cancelled")
    schema, found = collections(host)
    assert schema == host.schema
    expected = [("scotland", "20200902_052458")]
    if host.schema == "v1":  # v1 knows neither local loads nor close-reason notes
        expected = [("moldova", "20210301_000000"), ("moldova_local", "20210201_000000"), *expected]
    assert found == expected


def test_a_backfill_run_sees_only_what_was_loaded_before_its_interval_ended(host):
    host.insert_collection("scotland", datetime(2020, 9, 2))  # the harness loads everything at 2026-01-01
    assert collections(host, loaded_before=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))[1] == [
        ("scotland", "20200902_000000")
    ]
    assert collections(host, loaded_before=datetime(2025, 12, 31, tzinfo=UTC))[1] == []
    assert collections(host, loaded_before=datetime(2026, 1, 1, 0, 0, 1))[1] == [("scotland", "20200902_000000")]


def test_a_database_without_the_collection_table_is_named(process_database):
    dsn = process_database(None)
    with psycopg2.connect(dsn) as connection, pytest.raises(ProcessError, match="no 'collection' table"):
        loaded_collections(connection)
    connection.close()
