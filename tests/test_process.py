"""Kingfisher Process, both generations, against a real PostgreSQL with the real schemas.

v2 rows are written the way Process's own code writes them (scripts/demo_kit/kingfisher_process.py), one lifecycle
step at a time, so the rule "a crawl leaves the disk only once Process has loaded every file" is tested against
the states Process really passes through.
"""

import os
from datetime import UTC, datetime

import psycopg2
import pytest

from kingfisher_archive.process import ProcessError, detect_schema, loaded_collections
from scripts.demo_kit.kingfisher_host import KingfisherHost
from scripts.demo_kit.kingfisher_process import ProcessV2


@pytest.fixture(params=["v1", "v2", "v2_0026"])
def host(request, process_database, tmp_path):
    dsn = process_database(request.param)
    return KingfisherHost(str(tmp_path), dsn=dsn, schema=request.param.split("_")[0])


@pytest.fixture(params=["v2", "v2_0026"])
def process(request, process_database, tmp_path):
    """Process v2 at today's migration and at mid-2022's, with a files store holding every file it is sent."""
    return ProcessV2(process_database(request.param), str(tmp_path))


def found(dsn, loaded_before=None):
    with psycopg2.connect(dsn) as connection:
        result = loaded_collections(connection, loaded_before)
    connection.close()
    return result


def crawl_ids(collections) -> list[tuple[str, str]]:
    return sorted((c.source_id, c.data_version.strftime("%Y%m%d_%H%M%S")) for c in collections)


def collections(host, loaded_before=None):
    result = found(host.dsn, loaded_before)
    return result.schema.generation, crawl_ids(result.loaded)


def test_the_schema_is_detected_and_only_loaded_original_collections_are_candidates(host):
    when = datetime(2020, 9, 2, 5, 24, 58)
    host.insert_collection("scotland", when)
    host.insert_collection("scotland", datetime(2020, 10, 1), loaded=False)
    host.insert_collection("scotland", datetime(2020, 11, 1), sample=True)
    host.insert_collection("scotland", datetime(2020, 12, 1), deleted=True)
    if host.schema == "v1":
        host.insert_collection("scotland", datetime(2021, 1, 1), transform_type="compile-releases")
    host.insert_collection("moldova_local", datetime(2021, 2, 1))
    host.insert_collection("moldova", datetime(2021, 3, 1), close_reason="cancelled")
    schema, loaded = collections(host)
    assert schema == host.schema
    expected = [("scotland", "20200902_052458")]
    if host.schema == "v1":  # v1 knows neither local loads nor close-reason notes
        expected = [("moldova", "20210301_000000"), ("moldova_local", "20210201_000000"), *expected]
    assert loaded == expected


def test_a_backfill_run_sees_only_what_was_closed_before_its_interval_ended(host):
    host.insert_collection("scotland", datetime(2020, 9, 2))  # the harness closes everything at 2026-01-01
    assert collections(host, loaded_before=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))[1] == [
        ("scotland", "20200902_000000")
    ]
    assert collections(host, loaded_before=datetime(2025, 12, 31, tzinfo=UTC))[1] == []
    assert collections(host, loaded_before=datetime(2026, 1, 1, 0, 0, 1))[1] == [("scotland", "20200902_000000")]


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ("v1", "v1"),
        ("v2", "v2 (migration 0049_collection_compilation_enqueued)"),
        # Mid-2022: v1's check_data beside v2's completed_at. Taken for v1, it was spared the close-reason filter.
        ("v2_0026", "v2 (migration 0026_remove_collection_check_older_data_with_schema_version_1_1)"),
    ],
)
def test_every_generation_and_migration_state_is_named(process_database, schema, named):
    with psycopg2.connect(process_database(schema)) as connection:
        assert str(detect_schema(connection)) == named
    connection.close()


def test_a_v2_database_too_old_to_tell_when_files_are_loaded_is_named(process_database):
    dsn = process_database("v1")  # v2 before 2021 had v1's columns exactly, and no processing_step table
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE django_migrations (id serial, app text, name text, applied timestamptz)")
        cursor.execute("INSERT INTO django_migrations (app, name) VALUES ('process', '0012_auto_20210216_1511')")
    with psycopg2.connect(dsn) as connection, pytest.raises(ProcessError) as raised:
        loaded_collections(connection)
    connection.close()
    message = str(raised.value)
    assert "v2 (migration 0012_auto_20210216_1511)" in message
    assert "no 'collection_file' table, no 'processing_step' table" in message


def test_a_database_that_is_neither_generation_is_named(process_database):
    dsn = process_database(None)
    with psycopg2.connect(dsn) as connection, pytest.raises(ProcessError, match="no 'collection' table"):
        loaded_collections(connection)
    connection.close()
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE collection (id serial, name text)")
    with psycopg2.connect(dsn) as connection, pytest.raises(ProcessError, match=r"neither v1 nor v2.*'id', 'name'"):
        loaded_collections(connection)
    connection.close()


def crawl(process: ProcessV2, source_id: str, day: int, files: int = 3, **options) -> tuple[int, list[int]]:
    """A crawl written to the files store and sent to Process, one message per file; not closed yet."""
    ids = process.create(source_id, datetime(2024, 5, day, 6, 0, 0), job=f"job{day}", **options)
    return ids.root, [
        add_file(process, ids.root, f"{source_id}/202405{day:02d}_060000/{i}.json") for i in range(files)
    ]


def add_file(process: ProcessV2, collection_id: int, path: str) -> int:
    os.makedirs(os.path.dirname(os.path.join(process.files_store, path)), exist_ok=True)
    with open(os.path.join(process.files_store, path), "w") as f:
        f.write('{"releases": []}')
    return process.add_file(collection_id, path)


def stats(files: int) -> dict:
    return {"kingfisher_process_expected_files_count": files, "item_scraped_count": files}


def test_v2_a_crawl_closed_but_still_loading_is_waiting_and_released_once_every_file_is_loaded(process):
    root, files = crawl(process, "scotland", 1)
    assert found(process.dsn).loaded == found(process.dsn).loading == []  # running: not closed

    process.close(root, "finished", stats(3))
    result = found(process.dsn)
    assert result.loaded == []
    [waiting] = result.loading
    assert (waiting.id, waiting.closed_at, waiting.files_loaded) == (root, process.now, False)
    assert waiting.loading_detail() == "3 of 3 files recorded, 3 still to load"

    process.load_file(files[0])
    process.load_file(files[1])
    assert found(process.dsn).loading[0].loading_detail() == "3 of 3 files recorded, 1 still to load"

    process.load_file(files[2])
    result = found(process.dsn)
    assert (crawl_ids(result.loaded), result.loading) == ([("scotland", "20240501_060000")], [])
    assert result.loaded[0].scrapyd_job == ("job1" if "scrapyd_job" in process.columns else None)


def test_v2_files_still_in_the_queue_keep_a_crawl_waiting(process):
    """Collect publishes a message per file; Process may close the collection before it has recorded them all."""
    root, files = crawl(process, "scotland", 2, files=2)
    process.close(root, "finished", stats(5))  # five sent, two recorded so far
    for file_id in files:
        process.load_file(file_id)
    [waiting] = found(process.dsn).loading
    assert waiting.loading_detail() == "2 of 5 files recorded, 0 still to load"

    for i in range(2, 5):
        process.load_file(add_file(process, root, f"scotland/20240502_060000/{i}.json"))
    assert crawl_ids(found(process.dsn).loaded) == [("scotland", "20240502_060000")]


def test_v2_checks_and_compilation_do_not_keep_the_files(process):
    """Checks and compilation read the database, not the files: a crawl whose files are loaded is released."""
    root, files = crawl(process, "scotland", 3, upgrade=True, compile=True, check=True)
    process.close(root, "finished", stats(3))
    for file_id in files:
        process.load_file(file_id)
    assert process.finish(root) is False  # CHECK steps remain: Process has not completed it
    assert crawl_ids(found(process.dsn).loaded) == [("scotland", "20240503_060000")]

    process.check_all(root)  # and completed, it still is one crawl: derived rows never make a second
    result = found(process.dsn)
    assert [c.id for c in result.loaded] == [root] and result.loading == []


def test_v2_a_crawl_whose_file_disappeared_never_completes_and_keeps_waiting(process, tmp_path):
    root, files = crawl(process, "scotland", 4, files=2)
    process.close(root, "finished", stats(2))
    os.remove(tmp_path / "scotland" / "20240504_060000" / "1.json")
    process.load_all(root)  # the second file is gone: Process notes it and its LOAD step stays
    [waiting] = found(process.dsn).loading
    assert waiting.loading_detail() == "2 of 2 files recorded, 1 still to load"


@pytest.mark.parametrize("reason", ["cancelled", "closespider_errorcount", "memusage_exceeded", None])
def test_v2_crawls_not_closed_as_finished_are_left_alone(process, reason):
    """A reason other than finished, or none at all (Process's load command, closecollection, a kept-open crawl)."""
    root, files = crawl(process, "scotland", 5)
    process.close(root, reason, stats(3) if reason else None)
    process.load_all(root)
    result = found(process.dsn)
    assert (result.loaded, result.loading) == ([], [])


def test_v2_a_shut_down_crawl_is_never_closed_and_left_alone(process):
    root, files = crawl(process, "scotland", 6)  # Collect does not close a crawl stopped with "shutdown"
    for file_id in files:
        process.load_file(file_id)
    result = found(process.dsn)
    assert (result.loaded, result.loading) == ([], [])


def test_v2_samples_local_loads_and_cancelled_collections_are_never_waiting(process):
    for day, source_id, options in [(7, "scotland", {"sample": True}), (8, "scotland_local", {})]:
        root, _ = crawl(process, source_id, day, **options)
        process.close(root, "finished", stats(3))
    root, _ = crawl(process, "scotland", 9)
    process.close(root, "finished", stats(3))
    process.delete(root)
    result = found(process.dsn)
    assert (result.loaded, result.loading) == ([], [])
