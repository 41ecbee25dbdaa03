"""``kingfisher-archive ledger rebuild``: a lost or corrupt ledger rebuilt from a real bucket and a data directory,
in a subprocess, as an operator would run it; and a corrupt ledger that the DAG's tasks refuse to replace."""

import json
import sqlite3

import pytest

from kingfisher_archive.ledger import Ledger, LedgerCorruptError
from scripts.demo_kit.kingfisher_host import tree
from tests import test_cli
from tests.test_restore import archive, put_month, write_tree

one_line_error = test_cli.one_line_error
GARBAGE = b"this is not a database" * 100


def objects(client, bucket):
    """Every object of the bucket with its ETag: to show that nothing there changed."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}


@pytest.fixture
def world(client, bucket, tmp_path):
    """A bucket and a data directory as a ledger's loss would find them.

    - scotland/20200902_052458 and uk/20201105_000000: archived, deleted locally;
    - paraguay/20200301_000000: archived, and its directory still on disk (a deletion never begun);
    - scotland/20201001_000000: on disk, never archived;
    - mexico/20200101_000000.deleting: a deletion cut short, its month naming it;
    - old/2020/05: a 2020 archive, which names no crawl.
    """
    archive(client, bucket, tmp_path, {"a.json": b"[]", "000/b.json": b'{"b": 1}'})
    archive(client, bucket, tmp_path, {"x.json": b"[1, 2]"}, source="uk", version="20201105_000000")
    archive(client, bucket, tmp_path, {"p.json": b"{}"}, source="paraguay", version="20200301_000000")
    archive(client, bucket, tmp_path, {"m.json": b"[3]"}, source="mexico", version="20200101_000000")
    data = tmp_path / "kfc-data"
    write_tree(data / "paraguay" / "20200301_000000", {"p.json": b"{}"})
    write_tree(data / "scotland" / "20201001_000000", {"new.json": b"[4]"})
    write_tree(data / "mexico" / "20200101_000000.deleting", {"m.json": b"[3]"})
    put_month(client, bucket, "old/2020/05/", data=b"x" * 10, metadata={"data_size": 10, "data_md5": "0" * 32})
    airflow = tmp_path / "airflow"
    airflow.mkdir()
    return {"data": data, "ledger": airflow / "kingfisher_archive.sqlite3"}


def rebuild(cli, bucket, world, *extra):
    return cli(
        "ledger", "rebuild", "--bucket", bucket, "--ledger", str(world["ledger"]), "--data-directory",
        str(world["data"]), *extra,
    )  # fmt: skip


def test_a_corrupt_ledger_fails_the_tasks_open_and_a_rebuild_records_the_archived_crawls_only(
    cli, client, bucket, world
):
    path = world["ledger"]
    path.write_bytes(GARBAGE)
    with pytest.raises(LedgerCorruptError) as raised:
        Ledger(str(path))  # what every task of the DAG does first
    assert f"The ledger {path} is corrupt" in str(raised.value) and "ledger rebuild" in str(raised.value)
    assert path.read_bytes() == GARBAGE
    bucket_before, disk_before = objects(client, bucket), tree(world["data"])

    result = rebuild(cli, bucket, world)

    assert result.returncode == 0, result.stderr
    [aside] = [p for p in path.parent.iterdir() if p.name.startswith("kingfisher_archive.sqlite3.corrupt-")]
    assert aside.read_bytes() == GARBAGE
    lines = result.stdout.splitlines()
    assert lines[0] == f"Rebuilt the ledger {path} from s3://{bucket}/ and {world['data']} ({lines[0].split('(')[1]}"
    assert lines[1] == f"  the corrupt ledger was moved to {aside}"
    assert lines[2] == (
        "  5 months in the bucket: 2 recorded archived, 2 whose crawl is still on disk, 1 naming no crawl (2020 "
        "generation)"
    )
    assert lines[3] == "  2 crawls on disk, left for the next run to inspect; 1 being deleted"
    deleting = world["data"] / "mexico" / "20200101_000000"
    assert lines[4] == (
        "needs a person  mexico/20200101_000000.deleting: a deletion was cut short; without its ledger row no run "
        f"finishes it; rename it back (`mv {deleting}.deleting {deleting}`): the next run inspects it and compares "
        "it with its month, and deletes it only if the month holds its archive byte for byte"
    )
    # Nothing in the bucket or on disk changed.
    assert objects(client, bucket) == bucket_before
    assert tree(world["data"]) == disk_before

    ledger = Ledger(str(path))
    rows = {f"{row['source_id']}/{row['data_version']}": row for row in ledger.all()}
    assert sorted(rows) == ["scotland/20200902_052458", "uk/20201105_000000"]
    for crawl_id, prefix in (("scotland/20200902_052458", "scotland/2020/09/"), ("uk/20201105_000000", "uk/2020/11/")):
        metadata = json.loads(client.get_object(Bucket=bucket, Key=prefix + "metadata.json")["Body"].read())
        size = client.head_object(Bucket=bucket, Key=prefix + "data.tar.zst")["ContentLength"]
        row = rows[crawl_id]
        assert (row["status"], row["reason"], row["updated_at"]) == (
            "archived",
            "rebuilt_from_bucket",
            metadata["archived_at"],
        )
        assert row["result"]["bytes"] == metadata["bytes"] and row["result"]["checksum"] == metadata["checksum"]
        assert row["result"]["compressed_bytes"] == size
    # The crawls on disk are unsettled: the next run's find_crawls inspects them.
    assert ledger.settled() == {("scotland", "20200902_052458"), ("uk", "20201105_000000")}
    assert ledger.get("paraguay", "20200301_000000") is None and ledger.get("mexico", "20200101_000000") is None
    assert {row[0] for row in sqlite3.connect(path).execute("SELECT run_id FROM event")} == {
        lines[0].split("run id ")[1].rstrip("):")
    }


def test_a_rebuild_refuses_a_readable_ledger_without_force_and_one_with_a_live_claim(cli, client, bucket, world):
    path = world["ledger"]
    Ledger(str(path)).record(
        [{"source_id": "scotland", "data_version": "20201001_000000", "status": "held", "reason": "x"}], "run-1"
    )
    before = path.read_bytes()

    refused = rebuild(cli, bucket, world)

    assert f"the ledger {path} exists and can be read" in one_line_error(refused) and "--force" in refused.stderr
    assert path.read_bytes() == before and [p for p in path.parent.iterdir() if "sqlite3." in p.name] == []

    with Ledger(str(path)).claim("scotland", "2020-10", "run-2"):  # this process: alive
        claimed = rebuild(cli, bucket, world, "--force")
    assert "holds claims of archive tasks that may still be running: scotland/2020-10 by run run-2" in (
        one_line_error(claimed)
    )
    assert not [p for p in path.parent.iterdir() if ".old-" in p.name]

    forced = rebuild(cli, bucket, world, "--force")

    assert forced.returncode == 0, forced.stderr
    [aside] = [
        p
        for p in path.parent.iterdir()
        if p.name.startswith("kingfisher_archive.sqlite3.old-") and not p.name.endswith(("-wal", "-shm"))
    ]
    assert f"  the old ledger was moved to {aside}" in forced.stdout.splitlines()
    assert Ledger(str(aside)).get("scotland", "20201001_000000")["status"] == "held"
    assert Ledger(str(path)).get("scotland", "20201001_000000") is None
    assert len(Ledger(str(path)).all()) == 2


def test_a_dry_run_writes_nothing_and_says_what_a_rebuild_would(cli, client, bucket, world):
    path = world["ledger"]
    path.write_bytes(GARBAGE)

    result = rebuild(cli, bucket, world, "--dry-run", "--json")

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert (found["dry_run"], found["previous"]["state"], found["previous"]["moved_to"]) == (True, "corrupt", None)
    assert found["archived"] == ["scotland/20200902_052458", "uk/20201105_000000"]
    assert [item["id"] for item in found["needs_a_person"]] == ["mexico/20200101_000000.deleting"]
    assert [p.name for p in path.parent.iterdir()] == [path.name] and path.read_bytes() == GARBAGE


def test_bad_input_to_a_rebuild_is_one_line_naming_the_thing(cli, bucket, world, tmp_path):
    missing = tmp_path / "no-such-directory" / "ledger.sqlite3"
    result = cli(
        "ledger", "rebuild", "--bucket", bucket, "--ledger", str(missing), "--data-directory", str(world["data"])
    )
    assert f"the ledger {missing} (from --ledger) is in {missing.parent}, which is not a directory" in one_line_error(
        result, 2
    )
    assert not missing.parent.exists()

    result = cli("ledger", "rebuild", "--ledger", str(world["ledger"]), "--data-directory", str(world["data"]))
    assert "no bucket: pass --bucket" in one_line_error(result, 2)

    # No --ledger: the DAG's default under $AIRFLOW_HOME, which the cli fixture points at a folder that is not there.
    result = cli("ledger", "rebuild", "--bucket", bucket, "--data-directory", str(world["data"]))
    error = one_line_error(result, 2)
    assert "(from $AIRFLOW_HOME (the DAGs' default))" in error and "which is not a directory" in error

    result = cli("ledger", "rebuild", "--bucket", bucket, "--ledger", str(world["ledger"]), "--data-directory", "nope")
    assert f"the data directory {tmp_path / 'nope'} (from --data-directory) is not a directory" in one_line_error(
        result, 2
    )
    assert not world["ledger"].exists()


def test_list_carries_on_without_a_ledger_it_cannot_read(cli, client, bucket, world):
    world["ledger"].write_bytes(GARBAGE)

    result = cli("list", "--bucket", bucket, "--ledger", str(world["ledger"]))

    assert result.returncode == 0, result.stderr
    assert f"list: warning: the ledger {world['ledger']} is corrupt" in result.stderr
    assert "ledger rebuild" in result.stderr and result.stderr.count("\n") == 1
    assert "SOURCE" in [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert "scotland" in result.stdout
    assert world["ledger"].read_bytes() == GARBAGE
