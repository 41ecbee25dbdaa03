"""Same end state whatever fails and whatever overlaps: the sequences that once depended on history.

Each test replays a sequence of runs, failures and overlaps with the steps a run is made of (no Airflow), against
a real SeaweedFS and a real ledger, and checks what an operator would see: the month's objects, the crawls on
disk, the ledger's statuses and what the retention sweep deletes.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import replace
from datetime import datetime

import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from kingfisher_archive import deletion, steps
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.crawl import CrawlChangedError
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.month import crawl_in
from kingfisher_archive.s3.client import client_config
from scripts.demo_kit.kingfisher_host import KingfisherHost, ocds_files

SMALL, BIG = "scotland/20200902_052458", "scotland/20200920_101010"
MONTH = "scotland/2020/09/"


def fresh_bucket(client, settings) -> Bucket:
    """What one run's tasks see: a new Bucket reads the bucket afresh."""
    return Bucket(client, settings.bucket, settings.storage_class)


def run_decide(settings, client, ledger, crawl_ids, run_id):
    """A run's find, inspect and decide over ``crawl_ids``: its plans, by id."""
    inspected = [
        steps.inspect(settings, dict(zip(("source_id", "data_version"), c.split("/"), strict=True))) for c in crawl_ids
    ]
    decided = steps.decide(settings, fresh_bucket(client, settings), inspected, ledger, run_id)
    steps.record_decisions(ledger, decided["decisions"], run_id)
    return {p["id"]: p for p in decided["to_archive"]}, {d["id"]: d for d in decided["decisions"]}


def month_holds(client, settings) -> str | None:
    try:
        body = client.get_object(Bucket=settings.bucket, Key=MONTH + "metadata.json")["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    return json.loads(body)["id"]


def two_crawls(host):
    small = host.add_crawl("scotland", "20200902_052458", ocds_files("small", 4))
    big = host.add_crawl("scotland", "20200920_101010", ocds_files("big", 12))
    return small, big


@pytest.mark.parametrize("first", ["earlier day's run", "later day's run"])
def test_overlapping_runs_end_with_the_better_crawl_whichever_archives_first(host, settings, client, first):
    """A backfill's runs for two days decide before either archives; the month ends with the better crawl."""
    small, big = two_crawls(host)
    ledger = Ledger(settings.ledger)
    # The earlier day saw only the small crawl; the later day saw both and chose the big one.
    day_1, _ = run_decide(settings, client, ledger, [SMALL], "backfill__day1")
    day_2, decided = run_decide(settings, client, ledger, [SMALL, BIG], "backfill__day2")
    assert decided[SMALL]["status"] == "pending" and decided[SMALL]["pending_on"] == BIG
    assert list(day_1) == [SMALL] and list(day_2) == [BIG]

    tasks = [(day_1[SMALL], "backfill__day1"), (day_2[BIG], "backfill__day2")]
    if first == "later day's run":
        tasks.reverse()
    results = {plan["id"]: steps.archive_and_record(settings, client, plan, ledger, run) for plan, run in tasks}

    # The same bucket as the two days run one after the other: the big crawl, whole.
    assert month_holds(client, settings) == BIG
    assert not os.path.exists(big.directory)
    assert ledger.get("scotland", "20200920_101010")["status"] == "archived"
    if first == "earlier day's run":
        # The small crawl was archived first (and deleted), then replaced: its archive task of the later run found
        # the month changed and decided again (same_period_more_bytes), as the later day alone would have.
        assert not os.path.exists(small.directory)
        assert results[BIG]["prefix"] == MONTH and results[BIG]["in_place"] is False
    else:
        # The big crawl was archived first; the earlier day's task found a month it does not beat: nothing to do,
        # the small crawl stays on disk, settled as not archived against the big one (no failure, no retry).
        assert os.path.isdir(small.directory)
        assert results[SMALL]["redecided"]["compared_with"] == BIG
        row = ledger.get("scotland", "20200902_052458")
        assert (row["status"], row["reason"], row["facts"]["compared_with"]) == ("not_archived", "same_period", BIG)
    assert client.list_objects_v2(Bucket=settings.bucket, Prefix="staging/").get("KeyCount") == 0


@pytest.mark.slow
def test_an_archive_task_waits_for_a_month_another_run_holds_then_decides_again(host, settings, client):
    small, big = two_crawls(host)
    ledger = Ledger(settings.ledger)
    day_1, _ = run_decide(settings, client, ledger, [SMALL], "run-1")
    day_2, _ = run_decide(settings, client, ledger, [SMALL, BIG], "run-2")
    waiting, outcome = threading.Event(), {}

    def later_run():
        outcome["result"] = steps.archive_and_record(
            settings, client, day_2[BIG], ledger, "run-2", claim_wait=600, on_wait=lambda holder: waiting.set()
        )

    with ledger.claim("scotland", "2020-09", "run-1"):  # run 1 is archiving into September
        thread = threading.Thread(target=later_run)
        thread.start()
        assert waiting.wait(60), "the later run's task did not wait for the month"
        steps.archive(settings, client, day_1[SMALL])
    thread.join(120)
    assert outcome["result"]["id"] == BIG
    assert month_holds(client, settings) == BIG


def test_a_month_left_holding_only_metadata_naming_the_crawl_is_repaired_not_compared(host, settings, client):
    """A try that failed after metadata.json (and could not withdraw it) leaves metadata naming a crawl still on
    disk. The next run must archive the crawl again, never compare it with itself and let it be swept."""
    crawl = host.add_crawl("scotland", "20200902_052458", ocds_files("small", 4))
    ledger = Ledger(settings.ledger)
    plans, _ = run_decide(settings, client, ledger, [SMALL], "run-1")
    document = {"id": SMALL, "source_id": "scotland", "data_version": "20200902_052458"}
    document |= {"bytes": plans[SMALL]["expected"]["bytes"], "checksum": "0" * 32, "files_count": 4}
    client.put_object(Bucket=settings.bucket, Key=MONTH + "metadata.json", Body=json.dumps(document).encode())

    plans, decided = run_decide(settings, client, ledger, [SMALL], "run-2")
    assert decided[SMALL]["status"] == "to_archive"
    assert decided[SMALL]["detail"].endswith(f"/{MONTH}: its metadata.json names it")
    result = steps.archive_and_record(settings, client, plans[SMALL], ledger, "run-2")
    assert result["prefix"] == MONTH and not os.path.exists(crawl.directory)
    metadata = json.loads(client.get_object(Bucket=settings.bucket, Key=MONTH + "metadata.json")["Body"].read())
    assert metadata["checksum"] == result["checksum"] != "0" * 32
    data = client.head_object(Bucket=settings.bucket, Key=MONTH + "data.tar.zst")
    assert data["ContentLength"] == metadata["compressed_bytes"]


def test_a_crawl_that_lost_to_a_winner_not_yet_archived_waits_for_it_and_is_never_swept(host, settings, client):
    """Sequence 3: A loses to a bigger B of its month; B's archive fails. A must not be settled (and swept) as
    "not archived" against an archive that does not exist; the next run decides the month again as a whole."""
    small, big = two_crawls(host)
    ledger = Ledger(settings.ledger)
    settings = replace(settings, retention_days=1)
    _, decided = run_decide(settings, client, ledger, [SMALL, BIG], "run-1")
    assert decided[SMALL]["status"] == "pending"
    # B's archive task fails (say, S3 is down); then the sweep runs.
    loaded = {("scotland", "20200902_052458"), ("scotland", "20200920_101010")}
    now = datetime(2026, 11, 28)
    assert steps.sweep(settings, ledger, loaded, now, False, "run-1", bucket=fresh_bucket(client, settings)) == []
    assert os.path.isdir(small.directory) and os.path.isdir(big.directory)

    # The next run finds both again (neither is settled) and decides the month as a whole.
    assert ("scotland", "20200902_052458") not in ledger.settled()
    plans, decided = run_decide(settings, client, ledger, [SMALL, BIG], "run-2")
    assert decided[SMALL]["status"] == "pending" and list(plans) == [BIG]
    steps.archive_and_record(settings, client, plans[BIG], ledger, "run-2")
    assert ledger.get("scotland", "20200902_052458")["status"] == "not_archived"  # settled once B is in the bucket

    swept = steps.sweep(settings, ledger, loaded, now, False, "run-2", bucket=fresh_bucket(client, settings))
    assert [item["id"] for item in swept] == [SMALL]
    assert month_holds(client, settings) == BIG


def test_the_sweep_keeps_a_crawl_whose_winner_is_no_longer_in_the_bucket(host, settings, client):
    small, big = two_crawls(host)
    ledger = Ledger(settings.ledger)
    settings = replace(settings, retention_days=1)
    plans, _ = run_decide(settings, client, ledger, [SMALL, BIG], "run-1")
    steps.archive_and_record(settings, client, plans[BIG], ledger, "run-1")
    client.delete_object(Bucket=settings.bucket, Key=MONTH + "data.tar.zst")  # the ledger no longer tells the truth
    loaded = {("scotland", "20200902_052458")}
    assert (
        steps.sweep(settings, ledger, loaded, datetime(2026, 11, 28), False, bucket=fresh_bucket(client, settings))
        == []
    )
    assert os.path.isdir(small.directory)


def test_files_added_after_the_crawl_was_read_are_never_deleted(host, settings, client):
    crawl = host.add_crawl("scotland", "20200902_052458", ocds_files("small", 4))
    ledger = Ledger(settings.ledger)
    plans, _ = run_decide(settings, client, ledger, [SMALL], "run-1")

    def add_a_file(params, **kwargs):
        # Just as the last object (metadata.json) is written, Kingfisher Collect writes one more file.
        if params.get("Key", "").endswith("metadata.json"):
            with open(os.path.join(crawl.directory, "late.json"), "w") as f:
                f.write("{}")

    client.meta.events.register("before-parameter-build.s3.PutObject", add_a_file)
    with pytest.raises(CrawlChangedError, match="changed on disk after it was read.*it was not deleted"):
        steps.archive_and_record(settings, client, plans[SMALL], ledger, "run-1")
    client.meta.events.unregister("before-parameter-build.s3.PutObject", add_a_file)
    assert os.path.exists(os.path.join(crawl.directory, "late.json")) and os.path.exists(crawl.log)

    # The next run repairs the month with the crawl as it is now, and only then deletes it.
    plans, decided = run_decide(settings, client, ledger, [SMALL], "run-2")
    assert decided[SMALL]["status"] == "to_archive"
    result = steps.archive_and_record(settings, client, plans[SMALL], ledger, "run-2")
    assert result["files"] == 5 and not os.path.exists(crawl.directory)


def test_a_crawl_archived_by_another_run_keeps_that_runs_record(host, settings, client, caplog):
    host.add_crawl("scotland", "20200902_052458", ocds_files("small", 4))
    ledger = Ledger(settings.ledger)
    first, _ = run_decide(settings, client, ledger, [SMALL], "run-1")
    second, _ = run_decide(settings, client, ledger, [SMALL], "run-2")
    archived = steps.archive_and_record(settings, client, first[SMALL], ledger, "run-1")
    with caplog.at_level("INFO"):
        again = steps.archive_and_record(settings, client, second[SMALL], ledger, "run-2")
    assert "scotland/20200902_052458 was archived by run run-1" in caplog.text
    row = ledger.get("scotland", "20200902_052458")
    assert (row["status"], row["run_id"]) == ("archived", "run-1")
    assert row["result"]["compressed_bytes"] == archived["compressed_bytes"] == again["compressed_bytes"]
    assert again["archived_by"] == "run-1"


class Killed(BaseException):
    """The worker killed (SIGKILL): nothing of the try runs after it, not even its cleanup handlers."""


def test_a_deletion_cut_short_is_finished_by_the_next_run_without_reading_the_crawl_again(
    host, settings, client, monkeypatch
):
    """Sequence 2 of issue 21: Airflow's supervisor kills the task (SIGTERM, then SIGKILL) while it deletes a verified
    crawl. The next run finishes the deletion: nothing is downloaded or uploaded, the month is left as it was, the
    crawl is recorded as archived and no month stays open."""
    crawl = host.add_crawl("scotland", "20200902_052458", ocds_files("small", 6))
    ledger = Ledger(settings.ledger)
    plans, _ = run_decide(settings, client, ledger, [SMALL], "run-1")
    unlinked, real_unlink = [], os.unlink

    def killed_after_three_unlinks(*args, **kwargs):
        if len(unlinked) == 3:
            raise Killed("the worker was killed while deleting")
        unlinked.append(args[0])
        return real_unlink(*args, **kwargs)

    monkeypatch.setattr(os, "unlink", killed_after_three_unlinks)
    with pytest.raises(Killed):
        steps.archive_and_record(settings, client, plans[SMALL], ledger, "run-1")
    monkeypatch.undo()
    assert len(unlinked) == 3
    assert ledger.get("scotland", "20200902_052458")["status"] == "deleting"
    assert not os.path.exists(crawl.directory)  # renamed aside before the last walk, and half deleted
    assert os.path.isdir(crawl.directory + ".deleting") and os.path.exists(crawl.log)
    metadata = client.get_object(Bucket=settings.bucket, Key=MONTH + "metadata.json")["Body"].read()
    data = client.get_object(Bucket=settings.bucket, Key=MONTH + "data.tar.zst")["Body"].read()

    requests = []
    client.meta.events.register(
        "before-parameter-build.s3", lambda params, model, **kw: requests.append((model.name, dict(params)))
    )
    # The next run: Kingfisher Process still lists the crawl, whose directory is no longer under its name.
    plans, decided = run_decide(settings, client, ledger, [], "run-2")
    assert plans == {} and decided == {}
    row = ledger.get("scotland", "20200902_052458")
    assert (row["status"], row["run_id"]) == ("archived", "run-1")
    assert row["result"]["checksum"] == json.loads(metadata)["checksum"]
    assert not os.path.exists(crawl.directory + ".deleting") and not os.path.exists(crawl.log)
    assert not any(name in ("PutObject", "UploadPart", "CopyObject", "DeleteObject") for name, _ in requests)
    assert requests and not any(
        name == "GetObject" and params["Key"].endswith((".lz4", ".zst")) for name, params in requests
    )
    assert client.get_object(Bucket=settings.bucket, Key=MONTH + "metadata.json")["Body"].read() == metadata
    assert client.get_object(Bucket=settings.bucket, Key=MONTH + "data.tar.zst")["Body"].read() == data
    assert ("scotland", "20200902_052458") in ledger.settled()


def test_a_crawl_left_smaller_than_its_archive_never_replaces_its_own_complete_archive(
    host, settings, client, monkeypatch
):
    """Files removed from a verified crawl by something else than its deletion (by hand, an older version of this
    package) before the ledger heard of it: what is left is a crawl with fewer files than its archive. Archiving it
    again would replace the only complete copy."""

    crawl = host.add_crawl("scotland", "20200902_052458", ocds_files("small", 6))
    ledger = Ledger(settings.ledger)
    plans, _ = run_decide(settings, client, ledger, [SMALL], "run-1")

    def files_removed_then_killed(*args, **kwargs):
        files = sorted(os.path.join(folder, name) for folder, _, names in os.walk(crawl.directory) for name in names)
        for path in files[: len(files) // 2]:
            os.remove(path)
        raise RuntimeError("the worker was killed while deleting")

    monkeypatch.setattr(deletion, "delete_archived", files_removed_then_killed)
    with pytest.raises(RuntimeError, match="killed while deleting"):
        steps.archive_and_record(settings, client, plans[SMALL], ledger, "run-1")
    monkeypatch.undo()
    archived = json.loads(client.get_object(Bucket=settings.bucket, Key=MONTH + "metadata.json")["Body"].read())
    data = client.get_object(Bucket=settings.bucket, Key=MONTH + "data.tar.zst")["Body"].read()

    plans, decided = run_decide(settings, client, ledger, [SMALL], "run-2")
    assert plans == {}
    left = decided[SMALL]["bytes"]
    assert (decided[SMALL]["status"], decided[SMALL]["reason"]) == ("held", "smaller_than_its_archive")
    assert decided[SMALL]["detail"] == (
        f"s3://{settings.bucket}/{MONTH}metadata.json names this crawl with {archived['bytes']} bytes, and "
        f"{left} are left on disk (a deletion that was interrupted, or files removed since it was archived): the "
        "archive is kept, and what is on disk is left for an operator to check and delete"
    )
    assert month_holds(client, settings) == SMALL
    assert client.get_object(Bucket=settings.bucket, Key=MONTH + "data.tar.zst")["Body"].read() == data
    assert os.path.isdir(crawl.directory)


@pytest.mark.parametrize("then", ["the task's retry", "the next run"])
def test_a_replacement_whose_copy_fails_with_a_connection_error_ends_as_the_fault_free_run(
    host, settings, client, s3_server, then
):
    """Sequence 1 of issue 21. January holds E, February holds A; a bigger B of February wins. The replacement takes
    A's metadata.json away, then the copy from staging fails with a connection error (not a refusal). Whatever comes
    next, February must end holding B, as it does without the fault: never B compared with January (it is
    ``2020_1_not_distinct_maybe`` against E) and swept, nor a later, worse crawl replacing A's data unchecked."""
    settings = replace(settings, retention_days=1)
    ledger = Ledger(settings.ledger)
    january, a_id, b_id, c_id = (
        "scotland/20200110_000000",
        "scotland/20200205_000000",
        "scotland/20200220_000000",
        ("scotland/20200225_000000"),
    )
    february = "scotland/2020/02/"
    host.add_crawl("scotland", "20200110_000000", ocds_files("e", 20, 4000))
    host.add_crawl("scotland", "20200205_000000", ocds_files("a", 2, 500))
    plans, _ = run_decide(settings, client, ledger, [january, a_id], "run-1")
    for plan in plans.values():
        steps.archive_and_record(settings, client, plan, ledger, "run-1")
    b = host.add_crawl("scotland", "20200220_000000", ocds_files("b", 10, 2000), log={"errors": 1})
    plans, decided = run_decide(settings, client, ledger, [b_id], "run-2")
    assert decided[b_id]["reason"] == "same_period_more_bytes" and decided[b_id]["compared_with"] == a_id

    failing = s3_server.client(config=client_config(Config(s3={"addressing_style": "path"})))

    def connection_lost(**kwargs):
        failing.meta.events.unregister("before-call.s3.CopyObject", connection_lost)
        raise EndpointConnectionError(endpoint_url="injected: the copy from staging")

    failing.meta.events.register("before-call.s3.CopyObject", connection_lost)
    with pytest.raises(EndpointConnectionError):
        steps.archive_and_record(settings, failing, plans[b_id], ledger, "run-2")
    assert os.path.isdir(b.directory)

    if then == "the task's retry":
        steps.archive_and_record(settings, client, plans[b_id], ledger, "run-2")
    else:
        # The run finishes the replacement, then finds February naming B, still on disk, byte for byte: it only
        # has to delete it.
        plans, decided = run_decide(settings, client, ledger, [b_id], "run-3")
        assert str(decided[b_id].get("detail")).endswith(f"{february}: its metadata.json names it"), decided[b_id]
        result = steps.archive_and_record(settings, client, plans[b_id], ledger, "run-3")
        assert result["deleted"] and "stream_seconds" not in result  # nothing read into the bucket again
    now = datetime(2026, 11, 28)
    loaded = {("scotland", v) for v in ("20200110_000000", "20200205_000000", "20200220_000000")}
    steps.sweep(settings, ledger, loaded, now, False, "run-3", bucket=fresh_bucket(client, settings))

    metadata = json.loads(client.get_object(Bucket=settings.bucket, Key=february + "metadata.json")["Body"].read())
    assert metadata["id"] == b_id and metadata["compared_with"] == a_id
    assert crawl_in(client, settings.bucket, february + "data.tar.zst", "scotland") == b_id
    assert not os.path.exists(b.directory)
    assert ledger.get("scotland", "20200220_000000")["status"] == "archived"
    assert client.list_objects_v2(Bucket=settings.bucket, Prefix="staging/").get("KeyCount") == 0

    # A later, worse crawl of February is compared with B, and kept on disk.
    host.add_crawl("scotland", "20200225_000000", ocds_files("c", 3, 500))
    plans, decided = run_decide(settings, client, ledger, [c_id], "run-4")
    assert plans == {} and (decided[c_id]["status"], decided[c_id]["compared_with"]) == ("not_archived", b_id)


def test_a_backlog_seen_in_one_run_ends_as_runs_that_saw_its_months_one_at_a_time(host, settings, client, s3_server):
    """A first run on a host with a backlog (or a run after days of downtime) sees several months of one source at
    once: each month's crawl is compared with the crawl chosen for the month before in the same run, and the bucket
    and the disk end as if the months had come one run at a time."""
    crawls_by_month = [
        ("20200105_000000", ocds_files("jan", 6), 0),
        ("20200112_000000", ocds_files("jan-bigger", 12), 0),  # replaces the first within January
        ("20200203_000000", ocds_files("jan-bigger", 12), 0),  # identical to January's choice: not distinct
        ("20200304_000000", ocds_files("mar", 3), 0),
    ]
    one_at_a_time = KingfisherHost(str(host.root) + "-one-at-a-time")
    alone_bucket = f"test-{secrets.token_hex(6)}"
    s3_server.create_bucket(alone_bucket)
    alone = replace(
        settings,
        bucket=alone_bucket,
        data_directory=one_at_a_time.data_directory,
        logs_directory=one_at_a_time.logs_directory,
        ledger=settings.ledger + "-one-at-a-time",
    )
    for target in (host, one_at_a_time):
        for version, files, errors in crawls_by_month:
            target.add_crawl("scotland", version, files, log={"errors": errors})
    ids = [f"scotland/{version}" for version, _, _ in crawls_by_month]

    ledger = Ledger(settings.ledger)
    plans, _ = run_decide(settings, client, ledger, ids, "backlog")
    for plan in reversed(list(plans.values())):  # mapped tasks run in any order
        steps.archive_and_record(settings, client, plan, ledger, "backlog")

    alone_ledger = Ledger(alone.ledger)
    for n, crawl in enumerate(ids):
        plans, _ = run_decide(alone, client, alone_ledger, [crawl], f"day-{n}")
        for plan in plans.values():
            steps.archive_and_record(alone, client, plan, alone_ledger, f"day-{n}")

    def outcome(target_settings, target_host, target_ledger):
        keys = client.list_objects_v2(Bucket=target_settings.bucket).get("Contents", [])
        months = {
            item["Key"].rsplit("/", 1)[0]: json.loads(
                client.get_object(Bucket=target_settings.bucket, Key=item["Key"])["Body"].read()
            )["id"]
            for item in keys
            if item["Key"].endswith("metadata.json")
        }
        on_disk = sorted(crawl for crawl in ids if target_host.exists(crawl))
        statuses = {crawl: target_ledger.get(*crawl.split("/"))["status"] for crawl in ids}
        return months, on_disk, statuses

    # With local retention on, what each world kept on disk because it lost is swept: the same disk.
    loaded = {tuple(crawl.split("/")) for crawl in ids}
    for target, target_ledger in ((settings, ledger), (alone, alone_ledger)):
        target = replace(target, retention_days=1)
        steps.sweep(target, target_ledger, loaded, datetime(2026, 11, 28), False, bucket=fresh_bucket(client, target))
    backlog, one_by_one = outcome(settings, host, ledger), outcome(alone, one_at_a_time, alone_ledger)
    assert backlog[:2] == one_by_one[:2]
    assert backlog[0] == {"scotland/2020/01": ids[1], "scotland/2020/03": ids[3]} and backlog[1] == []
    # The only difference: the first January crawl was never archived in the backlog (it lost at once), where one
    # run at a time archived it, then replaced it.
    assert (backlog[2][ids[0]], one_by_one[2][ids[0]]) == ("swept", "archived")
    assert {c: s for c, s in backlog[2].items() if c != ids[0]} == {
        c: s for c, s in one_by_one[2].items() if c != ids[0]
    }
