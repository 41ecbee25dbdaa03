"""Deleting a crawl removes only what was set aside and checked, whatever the disk, the ledger or Collect does.

docs/safety.md, sections 15 to 18. Each test runs the steps of a run directly (no Airflow) against a real SeaweedFS
bucket and a Kingfisher host on disk; faults on the local side are real file system errors raised where the package
calls the file system (a refused unlink, a full disk on the rename aside), or real changes to the disk between
steps (Kingfisher Collect writing the crawl's path again, the ledger deleted).
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from datetime import datetime

import pytest

from kingfisher_archive import crawl as crawls
from kingfisher_archive import steps
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.ledger import Held, Ledger, Status
from kingfisher_archive.process import Collection
from kingfisher_archive.settings import Settings
from scripts.demo_kit.kingfisher_host import KingfisherHost, ocds_files
from scripts.demo_kit.scrapy_logs import write_log

DATABASE_STORE = [
    "scrapy.extensions.corestats.CoreStats",
    "scrapy.extensions.logstats.LogStats",
    "kingfisher_scrapy.extensions.DatabaseStore",
]


@pytest.fixture
def settings(settings, bucket):
    """The steps' settings, naming the test's bucket: every test here archives before it deletes."""
    return replace(settings, bucket=bucket.name)


class Killed(BaseException):
    """The worker dies here (a BaseException, as the supervisor's SIGKILL leaves nothing to catch)."""


def collections(host: KingfisherHost) -> list[Collection]:
    return [
        Collection(n, crawl.source_id, datetime.strptime(crawl.data_version, crawls.DATA_VERSION_FORMAT))
        for n, crawl in enumerate(host.crawls.values(), 1)
    ]


def run(settings: Settings, host: KingfisherHost, bucket: Bucket, run_id: str, ledger: Ledger | None = None) -> dict:
    """One run's find, inspect, decide (with its mending), record and archive tasks; the decisions and results."""
    ledger = ledger or Ledger(settings.ledger)
    bucket = Bucket(bucket.client, bucket.name, "STANDARD")  # each task reads the bucket afresh
    found = steps.find(settings, collections(host), ledger.settled(), False, deleted=ledger.deleted())
    inspected = [steps.inspect(settings, crawl) for crawl in found["crawls"]]
    decided = steps.decide(settings, bucket, inspected, ledger, run_id)
    steps.record_decisions(ledger, decided["decisions"], run_id)
    results = {plan["id"]: steps.archive_and_record(settings, bucket.client, plan, ledger, run_id)
               for plan in decided["to_archive"]}  # fmt: skip
    return {"decisions": {d["id"]: d for d in decided["decisions"]}, "results": results}


def month_holds(bucket: Bucket, crawl_id: str) -> bool:
    source_id, data_version = crawl_id.split("/")
    bucket = Bucket(bucket.client, bucket.name, "STANDARD")  # a fresh read, no cache
    archived = bucket.archived(source_id, int(data_version[:4]), int(data_version[4:6]))
    return archived is not None and archived.id == crawl_id


def write_again(directory: str) -> None:
    """Kingfisher Collect resumes the crawl (same crawl_time, a new Scrapyd job and log): it writes a file by path,
    re-creating the folder."""
    os.makedirs(os.path.join(directory, "000"), exist_ok=True)
    with open(os.path.join(directory, "000", "resumed.json"), "wb") as f:
        f.write(b'{"resumed": true}')
    data_directory, source_id, data_version = directory.rsplit("/", 2)
    logs = os.path.join(os.path.dirname(data_directory), "logs", "kingfisher", source_id)
    started = datetime.strptime(data_version, crawls.DATA_VERSION_FORMAT)
    write_log(
        os.path.join(logs, "resumed.log"),
        spider=source_id,
        job="resumed",
        start_time=started.replace(year=started.year + 1),
        files=1,
        crawl_time_argument=started,
    )


class KillingLedger(Ledger):
    """A ledger whose process dies right after recording that the set-aside crawl was checked (before any unlink),
    after ``then`` runs (what happens on disk meanwhile)."""

    def __init__(self, path: str, crawl: str, then=lambda: None) -> None:
        super().__init__(path)
        self.crawl, self.then = crawl, then

    def mark_deleting(self, source_id, data_version, result, run_id):
        super().mark_deleting(source_id, data_version, result, run_id)
        if result.get("checked") and f"{source_id}/{data_version}" == self.crawl:
            self.then()
            raise Killed(f"killed after {source_id}/{data_version} was set aside and checked")


def test_a_directory_written_again_during_the_delete_is_kept_and_found_as_a_new_crawl(host, settings, bucket):
    crawl = host.add_crawl("scotland", "20200902_052458")

    class Recreating(Ledger):
        def mark_deleting(self, source_id, data_version, result, run_id):
            super().mark_deleting(source_id, data_version, result, run_id)
            if result.get("checked"):  # set aside and checked: Collect writes into the crawl's path now
                write_again(crawl.directory)

    outcome = run(settings, host, bucket, "r1", Recreating(settings.ledger))

    assert outcome["results"][crawl.id]["deleted"][0] == crawl.directory  # what was set aside
    assert os.listdir(crawl.directory) == ["000"] and os.listdir(os.path.join(crawl.directory, "000")) == [
        "resumed.json"
    ], "the new file is in no archive: it must be kept"
    assert not os.path.exists(crawl.directory + crawls.DELETING_SUFFIX) and not os.path.exists(crawl.log)
    assert month_holds(bucket, crawl.id)
    ledger = Ledger(settings.ledger)
    assert ledger.get("scotland", "20200902_052458")["status"] == Status.ARCHIVED

    # The next run finds it again (archived, and on disk): a new crawl to inspect, held, never deleted.
    again = run(settings, host, bucket, "r2")
    decision = again["decisions"][crawl.id]
    assert (decision["status"], decision["reason"]) == (Status.HELD, Held.SMALLER_THAN_ITS_ARCHIVE)
    assert ledger.get("scotland", "20200902_052458")["status"] == Status.HELD
    assert os.path.exists(os.path.join(crawl.directory, "000", "resumed.json"))
    assert month_holds(bucket, crawl.id)


def test_a_kill_after_the_set_aside_then_a_directory_written_again_do_not_stop_the_next_run(host, settings, bucket):
    crawl = host.add_crawl("scotland", "20200902_052458")
    other = host.add_crawl("paraguay", "20201101_000000")
    with pytest.raises(Killed):
        run(
            settings,
            host,
            bucket,
            "r1",
            KillingLedger(settings.ledger, crawl.id, then=lambda: write_again(crawl.directory)),
        )
    assert os.path.isdir(crawl.directory + crawls.DELETING_SUFFIX) and os.path.isdir(crawl.directory)

    outcome = run(settings, host, bucket, "r2")  # decide finishes the deletion; the run goes on

    assert not os.path.exists(crawl.directory + crawls.DELETING_SUFFIX)
    assert os.path.exists(os.path.join(crawl.directory, "000", "resumed.json")), "the new file is kept"
    assert month_holds(bucket, crawl.id) and month_holds(bucket, other.id)
    assert not os.path.exists(other.directory) and outcome["decisions"] == {}
    assert Ledger(settings.ledger).get("paraguay", "20201101_000000")["status"] == Status.ARCHIVED


@pytest.mark.parametrize(
    ("call", "code"),
    [("unlink", errno.EPERM), ("unlink", errno.EIO), ("rename", errno.ENOSPC), ("rename", errno.EDQUOT)],
)
def test_one_crawls_disk_error_holds_it_and_every_other_crawl_goes_on(host, settings, bucket, monkeypatch, call, code):
    crawl = host.add_crawl("scotland", "20200902_052458")
    other = host.add_crawl("paraguay", "20201101_000000")
    refused = crawl.directory
    real = {"unlink": crawls._unlink_batch, "rename": os.rename}

    def unlink_batch(root_fd, parts, names):
        if os.readlink(f"/proc/self/fd/{root_fd}").startswith(refused):
            raise OSError(code, os.strerror(code), os.path.join(refused + crawls.DELETING_SUFFIX, *parts, names[0]))
        return real["unlink"](root_fd, parts, names)

    def rename(source, target, *args, **kwargs):
        if source == refused:
            raise OSError(code, os.strerror(code), source, target)
        return real["rename"](source, target, *args, **kwargs)

    if call == "unlink":
        monkeypatch.setattr(crawls, "_unlink_batch", unlink_batch)
    else:
        monkeypatch.setattr(crawls.os, "rename", rename)

    first = run(settings, host, bucket, "r1")

    held = first["results"][crawl.id]["held"]
    assert held["reason"] == Held.DELETE_FAILED and errno.errorcode[code] in held["detail"]
    assert month_holds(bucket, crawl.id), "its archive is verified"
    assert month_holds(bucket, other.id) and not os.path.exists(other.directory), "the other crawl went on"
    ledger = Ledger(settings.ledger)
    row = ledger.get("scotland", "20200902_052458")
    assert row["status"] == Status.DELETING and row["facts"]["problem"]["reason"] == Held.DELETE_FAILED
    assert crawls.on_disk(settings.data_directory, "scotland", "20200902_052458")  # nothing lost on disk either

    # The next run: still refused; its decide task does not fail, and says so.
    host.add_crawl("paraguay", "20201201_000000")
    second = run(settings, host, bucket, "r2")
    assert second["decisions"][crawl.id]["status"] == Status.HELD
    assert second["decisions"][crawl.id]["reason"] == Held.DELETE_FAILED
    assert month_holds(bucket, "paraguay/20201201_000000")

    monkeypatch.undo()  # the operator fixes the disk
    run(settings, host, bucket, "r3")
    row = ledger.get("scotland", "20200902_052458")
    assert row["status"] == Status.ARCHIVED and "problem" not in row["facts"]
    assert not crawls.on_disk(settings.data_directory, "scotland", "20200902_052458")
    assert not os.path.exists(crawl.log)


@pytest.mark.parametrize("change", ["nothing", "a file added to what was set aside", "the path written again too"])
def test_a_crawl_set_aside_that_a_new_ledger_does_not_know_is_deleted_only_if_its_archive_holds_it(
    host, settings, bucket, change
):
    crawl = host.add_crawl("scotland", "20200902_052458")
    with pytest.raises(Killed):
        run(settings, host, bucket, "r1", KillingLedger(settings.ledger, crawl.id))
    aside = crawl.directory + crawls.DELETING_SUFFIX
    if change != "nothing":
        with open(os.path.join(aside, "added-later.json"), "wb") as f:
            f.write(b"[]")
    if change == "the path written again too":
        write_again(crawl.directory)
    for suffix in ("", "-wal", "-shm"):  # the ledger is lost
        if os.path.exists(settings.ledger + suffix):
            os.remove(settings.ledger + suffix)

    outcome = run(settings, host, bucket, "r2")

    ledger = Ledger(settings.ledger)
    row = ledger.get("scotland", "20200902_052458")
    assert month_holds(bucket, crawl.id)
    assert bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="staging/").get("KeyCount") == 0
    if change == "nothing":  # the archive holds it byte for byte: deleted, never uploaded again
        assert not os.path.exists(aside) and not os.path.exists(crawl.directory) and not os.path.exists(crawl.log)
        assert row["status"] == Status.ARCHIVED
    elif change == "a file added to what was set aside":
        # Renamed back, for the next run to find and decide as any crawl: it holds all of its month's archive and
        # more, so it is archived again (with the file added), and only then deleted.
        assert not os.path.exists(aside) and row is None
        assert os.path.exists(os.path.join(crawl.directory, "added-later.json"))
        run(settings, host, bucket, "r3")
        assert ledger.get("scotland", "20200902_052458")["status"] == Status.ARCHIVED
        assert not os.path.exists(crawl.directory) and not os.path.exists(aside)
        archived = Bucket(bucket.client, bucket.name, "STANDARD").archived("scotland", 2020, 9)
        assert archived.id == crawl.id and archived.raw["data_files"] == 5 + 1
    else:  # neither can be renamed: held for a person, both kept
        assert os.path.exists(os.path.join(aside, "added-later.json"))
        assert os.path.exists(os.path.join(crawl.directory, "000", "resumed.json"))
        decision = outcome["decisions"][crawl.id]
        assert (decision["status"], decision["reason"]) == (Status.HELD, Held.LEFT_ASIDE)
        assert "compare the two" in decision["detail"]


def test_a_crawl_collect_writes_into_again_is_archived_and_kept_and_never_swept(host, settings, bucket):
    crawl = host.add_crawl("scotland", "20200902_052458", log={"extensions": DATABASE_STORE})
    outcome = run(settings, host, bucket, "r1")

    result = outcome["results"][crawl.id]
    assert result["kept"] == "incremental_updates" and result["deleted"] == []
    assert month_holds(bucket, crawl.id)
    metadata = Bucket(bucket.client, bucket.name, "STANDARD").archived("scotland", 2020, 9).raw
    assert metadata["kept_on_disk"] == "incremental_updates"
    assert os.path.isdir(crawl.directory) and os.path.exists(crawl.log)
    ledger = Ledger(settings.ledger)
    assert ledger.get("scotland", "20200902_052458")["status"] == Status.KEPT

    summary = steps.summarise(
        list(outcome["decisions"].values()), outcome["results"], False, ledger_rows={crawl.id: ledger.all()[0]}
    )
    assert [(r["id"], r["status"]) for r in summary["rows"]] == [(crawl.id, Status.KEPT)]
    assert summary["bytes_freed"] == 0 and summary["kept_on_disk"] == 1

    # The next run leaves it (settled); the sweep never deletes it.
    assert run(settings, host, bucket, "r2")["decisions"] == {}
    loaded = {("scotland", "20200902_052458")}
    swept = steps.sweep(
        replace(settings, retention_days=1), ledger, loaded, datetime(2026, 12, 1), False, bucket=bucket
    )
    assert swept == [] and os.path.isdir(crawl.directory)


def test_the_sweep_keeps_a_crawl_identical_to_an_archive_that_a_better_crawl_has_replaced(host, settings, bucket):
    files = ocds_files("january", 4)
    host.add_crawl("scotland", "20200110_000000", files)
    run(settings, host, bucket, "r1")
    twin = host.add_crawl("scotland", "20200210_000000", files)  # February: the same bytes as January's archive
    decided = run(settings, host, bucket, "r2")["decisions"][twin.id]
    assert (decided["status"], decided["reason"]) == (Status.NOT_ARCHIVED, "2020_1_not_distinct")
    better = host.add_crawl("scotland", "20200120_000000", ocds_files("january, again", 12))
    run(settings, host, bucket, "r3")
    assert month_holds(bucket, better.id), "January's archive was replaced by a better crawl"

    ledger = Ledger(settings.ledger)
    loaded = {("scotland", "20200110_000000"), ("scotland", "20200210_000000"), ("scotland", "20200120_000000")}
    swept = steps.sweep(
        replace(settings, retention_days=1), ledger, loaded, datetime(2026, 12, 1), False, bucket=bucket
    )

    assert swept == [], "no archive holds its bytes any more"
    assert os.path.isdir(twin.directory)


@pytest.mark.parametrize("fault", ["its directory replaced by a link", "an unlink refused (EPERM)"])
def test_one_crawl_the_sweep_cannot_delete_is_kept_and_the_others_are_swept(
    host, settings, bucket, tmp_path, monkeypatch, fault
):
    ledger = Ledger(settings.ledger)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.json").write_bytes(b"kept")
    crawls_ = {}
    for data_version in ("20200101_000000", "20200201_000000"):
        crawls_[data_version] = host.add_crawl("a", data_version, log={"finish_reason": "shutdown"})
        row = {"source_id": "a", "data_version": data_version, "status": "rejected", "reason": "not_finished"}
        ledger.record([row], "r1")
    first = crawls_["20200101_000000"].directory
    if fault == "its directory replaced by a link":
        os.rename(first, str(tmp_path / "moved"))
        os.symlink(elsewhere, first)
    else:
        real = crawls._unlink_batch

        def unlink_batch(root_fd, parts, names):
            if os.readlink(f"/proc/self/fd/{root_fd}").startswith(first):
                raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), os.path.join(first, names[0]))
            return real(root_fd, parts, names)

        monkeypatch.setattr(crawls, "_unlink_batch", unlink_batch)
    loaded = {("a", "20200101_000000"), ("a", "20200201_000000")}

    swept = steps.sweep(
        replace(settings, retention_days=1), ledger, loaded, datetime(2026, 12, 1), False, bucket=bucket
    )

    by_id = {item["id"]: item for item in swept}
    assert by_id["a/20200201_000000"]["deleted"] and not os.path.exists(crawls_["20200201_000000"].directory)
    assert ledger.get("a", "20200201_000000")["status"] == Status.SWEPT
    assert (elsewhere / "keep.json").read_bytes() == b"kept", "a link is never followed"
    row = ledger.get("a", "20200101_000000")
    if fault == "its directory replaced by a link":  # inspected again first: no longer what was rejected
        assert "a/20200101_000000" not in by_id
        assert (row["status"], row["reason"]) == (Status.HELD, Held.REJECTION_NO_LONGER_HOLDS)
    else:
        assert by_id["a/20200101_000000"]["deleted"] == []
        assert by_id["a/20200101_000000"]["problem"]["reason"] == Held.DISK_ERROR
        assert row["status"] == Status.REJECTED and row["facts"]["problem"]["reason"] == Held.DISK_ERROR
        assert crawls.on_disk(settings.data_directory, "a", "20200101_000000")
        summary = steps.summarise([], {}, False, swept)
        assert [w.split(":")[0] for w in summary["warnings"]] == [
            "a/20200101_000000 was not swept (the file system refused a call on it)"
        ]


def test_a_folder_written_again_that_would_be_rejected_is_held_and_never_swept(host, settings, bucket):
    crawl = host.add_crawl("scotland", "20200902_052458")
    run(settings, host, bucket, "r1")
    os.makedirs(crawl.directory)  # a writer puts a file at the archived crawl's path, with no log of its own
    with open(os.path.join(crawl.directory, "written-later.json"), "wb") as f:
        f.write(b"[]")
    ledger = Ledger(settings.ledger)
    for run_id in ("r2", "r3"):  # not only the run that finds it: every later one
        decision = run(settings, host, bucket, run_id)["decisions"][crawl.id]
        assert (decision["status"], decision["reason"]) == (Status.HELD, Held.WRITTEN_AGAIN)
        assert "it would be rejected (no_log_file)" in decision["detail"]
        assert ledger.get("scotland", "20200902_052458")["status"] == Status.HELD
    loaded = {("scotland", "20200902_052458")}
    swept = steps.sweep(
        replace(settings, retention_days=1), ledger, loaded, datetime(2026, 12, 1), False, bucket=bucket
    )
    assert swept == [] and os.path.exists(os.path.join(crawl.directory, "written-later.json"))
    assert month_holds(bucket, crawl.id)


def test_a_crawl_another_run_archived_after_this_run_inspected_it_is_not_taken_for_one_written_again(
    host, settings, bucket
):
    """Overlapping runs (a backfill's): run B inspects a month's two crawls; run A, which saw only the smaller one,
    archives and deletes it; then B decides on its inspections. The smaller crawl is gone, not written again: B does
    not decide it, the ledger keeps A's record, and B archives the better crawl over it."""
    small = host.add_crawl("scotland", "20200210_000000", ocds_files("small", 3))
    big = host.add_crawl("scotland", "20200215_000000", ocds_files("big", 12))
    ledger = Ledger(settings.ledger)
    found = steps.find(settings, collections(host), ledger.settled(), False, deleted=ledger.deleted())
    b_inspected = [steps.inspect(settings, crawl) for crawl in found["crawls"]]
    assert {facts["id"] for facts in b_inspected} == {small.id, big.id}

    a_inspected = [steps.inspect(settings, {"source_id": "scotland", "data_version": small.data_version})]
    a = steps.decide(settings, Bucket(bucket.client, bucket.name, "STANDARD"), a_inspected, ledger, "a")
    steps.record_decisions(ledger, a["decisions"], "a")
    [plan] = a["to_archive"]
    assert steps.archive_and_record(settings, bucket.client, plan, ledger, "a")["kind"] == "archived"
    assert not os.path.exists(small.directory)

    b = steps.decide(settings, Bucket(bucket.client, bucket.name, "STANDARD"), b_inspected, ledger, "b")
    steps.record_decisions(ledger, b["decisions"], "b")
    assert [d["id"] for d in b["decisions"]] == [big.id]
    assert ledger.get("scotland", small.data_version)["status"] == Status.ARCHIVED
    [plan] = b["to_archive"]
    assert steps.archive_and_record(settings, bucket.client, plan, ledger, "b")["kind"] == "archived"
    assert month_holds(bucket, big.id)
    assert ledger.get("scotland", small.data_version)["status"] == Status.ARCHIVED


def test_a_crawl_two_runs_planned_that_one_archived_and_a_better_one_replaced_keeps_its_record(host, settings, bucket):
    """Runs A and B both plan the month's only crawl. A archives and deletes it; a later run replaces it by a better
    crawl; then B's archive task for it runs. It is gone, not written again: decided again, and the ledger keeps
    "archived"."""
    small = host.add_crawl("scotland", "20200210_000000", ocds_files("small", 3))
    ledger = Ledger(settings.ledger)
    inspected = [steps.inspect(settings, {"source_id": "scotland", "data_version": small.data_version})]
    b = steps.decide(settings, Bucket(bucket.client, bucket.name, "STANDARD"), inspected, ledger, "b")
    steps.record_decisions(ledger, b["decisions"], "b")
    [b_plan] = b["to_archive"]

    assert run(settings, host, bucket, "a")["results"][small.id]["kind"] == "archived"
    big = host.add_crawl("scotland", "20200215_000000", ocds_files("big", 12))
    assert run(settings, host, bucket, "later")["results"][big.id]["kind"] == "archived"
    assert month_holds(bucket, big.id)

    result = steps.archive_and_record(settings, bucket.client, b_plan, ledger, "b")
    assert result["kind"] == "decided_again"
    row = ledger.get("scotland", small.data_version)
    assert (row["status"], row["run_id"]) == (Status.ARCHIVED, "a")
    assert not os.path.exists(small.directory) and month_holds(bucket, big.id)


def test_the_catalogue_shows_a_held_deletion_and_a_kept_crawl_in_words():
    from datetime import UTC

    from kingfisher_archive import catalogue

    rows = [
        {
            "source_id": "scotland",
            "data_version": "20200902_052458",
            "status": "deleting",
            "reason": "new_period",
            "facts": {"problem": {"reason": "delete_failed", "detail": "EPERM (Operation not permitted): x.json"}},
            "result": {"bytes": 10},
            "updated_at": "2026-12-01T00:00:00+00:00",
        },
        {
            "source_id": "chile",
            "data_version": "20201215_000000",
            "status": "kept",
            "reason": "new_period",
            "facts": {"bytes": 7},
            "result": {"bytes": 7, "kept": "incremental_updates"},
            "updated_at": "2026-12-01T00:00:00+00:00",
        },
    ]
    found = catalogue.on_disk(rows, [], None, datetime(2026, 12, 2, tzinfo=UTC))

    [held] = found["held"]
    assert (held["id"], held["reason"]) == ("scotland/20200902_052458", Held.DELETE_FAILED)
    assert held["why"].startswith("archived and verified, and deleting it from disk failed")
    assert "the next run finishes it" in held["what_to_do"]
    [kept] = found["kept"]
    assert (kept["id"], kept["outcome"], kept["swept_from"]) == (
        "chile/20201215_000000",
        "archived, and kept on disk",
        None,
    )
    assert kept["why"] == "Kingfisher Collect writes into it again (incremental updates): its files must stay"
    attention = catalogue.attention([], found, None)
    assert [item["id"] for item in attention] == ["scotland/20200902_052458"]
