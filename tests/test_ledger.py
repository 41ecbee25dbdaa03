"""The ledger: decisions survive, settle, and take concurrent writers."""

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from kingfisher_archive.errors import PermanentError, RetryableError
from kingfisher_archive.ledger import (
    ClaimedError,
    Ledger,
    LedgerCorruptError,
    LedgerError,
    examine,
    move_aside,
    process_identity,
)


def row(version, status, reason=None):
    return {"source_id": "scotland", "data_version": version, "status": status, "reason": reason}


def test_it_is_created_with_its_directory(tmp_path):
    path = tmp_path / "deep" / "ledger.sqlite3"
    Ledger(str(path))
    assert path.exists()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_only_final_decisions_are_settled(tmp_path):
    ledger = Ledger(str(tmp_path / "l.sqlite3"))
    ledger.record(
        [
            row("20200101_000000", "rejected", "not_finished"),
            row("20200102_000000", "not_archived", "same_period"),
            row("20200103_000000", "to_archive", "new_period"),
            row("20200104_000000", "held", "unreadable_archive_metadata"),
        ],
        "run-1",
    )
    ledger.mark_archived("scotland", "20200105_000000", {"bytes": 1}, "run-1")
    assert ledger.settled() == {
        ("scotland", "20200101_000000"),
        ("scotland", "20200102_000000"),
        ("scotland", "20200105_000000"),
    }
    ledger.mark_archived("scotland", "20200103_000000", {"bytes": 2}, "run-2")
    archived = ledger.get("scotland", "20200103_000000")
    assert (archived["status"], archived["reason"], archived["result"]) == ("archived", "new_period", {"bytes": 2})


def test_a_new_decision_replaces_the_old_one_and_both_stay_in_the_history(tmp_path):
    path = str(tmp_path / "l.sqlite3")
    ledger = Ledger(path)
    ledger.record([row("20200101_000000", "to_archive", "new_period")], "run-1")
    ledger.record([row("20200101_000000", "not_archived", "same_period")], "run-2")
    assert ledger.get("scotland", "20200101_000000")["reason"] == "same_period"
    history = sqlite3.connect(path).execute("SELECT run_id, status FROM event ORDER BY id").fetchall()
    assert history == [("run-1", "to_archive"), ("run-2", "not_archived")]


def test_concurrent_writers_lose_no_decision(tmp_path):
    path = str(tmp_path / "l.sqlite3")
    Ledger(path)
    errors = []

    def write(worker):
        try:
            ledger = Ledger(path)
            for i in range(50):
                ledger.mark_archived(f"source{worker}", f"2020010{i % 10}_0000{i:02d}", {"i": i}, f"run{worker}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(Ledger(path).all()) == 200


def test_a_corrupt_ledger_fails_the_open_naming_the_file_and_the_rebuild_and_stays_where_it_is(tmp_path, caplog):
    path = tmp_path / "l.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerCorruptError) as raised:
        Ledger(str(path))
    message = str(raised.value)
    assert f"The ledger {path} is corrupt" in message
    assert "claims of archive tasks still running" in message and "pause the kingfisher_archive DAG" in message
    assert f"kingfisher-archive ledger rebuild --ledger {path}" in message and "backup" in message
    assert isinstance(raised.value, PermanentError) and not isinstance(raised.value, RetryableError)
    # Not replaced: the same bytes, nothing set aside, and the next open fails the same way.
    assert path.read_bytes() == b"this is not a database" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.sqlite3"]
    with pytest.raises(LedgerCorruptError):
        Ledger(str(path))


def test_a_damaged_page_is_noticed_too_and_the_claims_in_the_file_are_not_dropped(tmp_path):
    path = tmp_path / "l.sqlite3"
    ledger = Ledger(str(path))
    ledger.record([row(f"2020010{i}_000000", "rejected", "not_finished") for i in range(10)], "run-1")
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[4096:8192] = os.urandom(4096)  # scribble over the second page, header included
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerCorruptError, match="rebuild"):
        Ledger(str(path))
    with pytest.raises(LedgerCorruptError):
        examine(str(path))
    assert path.read_bytes() == bytes(data)


def test_examine_reads_the_claims_without_changing_the_file_and_move_aside_takes_the_wal_along(tmp_path):
    path = str(tmp_path / "l.sqlite3")
    assert examine(path) is None and not os.path.exists(path)
    with Ledger(path).claim("scotland", "2020-09", "run-1"):
        [claim] = examine(path)
    assert (claim["source_id"], claim["data_version"], claim["run_id"], claim["live"]) == (
        "scotland",
        "2020-09",
        "run-1",
        True,
    )
    assert examine(path) == []
    Ledger(path).record([row("20200101_000000", "rejected", "not_finished")], "run-1")
    files = {suffix for suffix in ("", "-wal", "-shm") if os.path.exists(path + suffix)}
    aside = move_aside(path, "old")
    assert aside.startswith(f"{path}.old-")
    assert not any(os.path.exists(path + suffix) for suffix in ("", "-wal", "-shm"))
    assert {suffix for suffix in ("", "-wal", "-shm") if os.path.exists(aside + suffix)} == files
    assert Ledger(aside).settled() == {("scotland", "20200101_000000")}


def test_a_ledger_locked_too_long_is_a_clear_error_and_loses_nothing(tmp_path):
    path = str(tmp_path / "l.sqlite3")
    Ledger(path).record([row("20200101_000000", "to_archive", "new_period")], "run-1")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LedgerError, match=r"l\.sqlite3 stayed locked for 0 s .*retry the task"):
            Ledger(path, timeout=0.2).mark_archived("scotland", "20200101_000000", {"bytes": 1}, "run-1")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    ledger = Ledger(path)
    assert ledger.get("scotland", "20200101_000000")["status"] == "to_archive"  # the earlier decision is intact
    ledger.mark_archived("scotland", "20200101_000000", {"bytes": 1}, "run-1")  # and the retry works
    assert ledger.get("scotland", "20200101_000000")["status"] == "archived"


def test_a_crawl_claimed_by_a_live_run_is_not_archived_twice(tmp_path):
    ledger = Ledger(str(tmp_path / "l.sqlite3"))
    with ledger.claim("scotland", "20200101_000000", "scheduled__2026-11-27"):
        with pytest.raises(ClaimedError, match="is being archived by run scheduled__2026-11-27"):
            with ledger.claim("scotland", "20200101_000000", "backfill__2026-11-01"):
                pass  # pragma: no cover
        with ledger.claim("scotland", "20200102_000000", "backfill__2026-11-01"):
            pass  # another crawl is free
        with ledger.claim("scotland", "20200101_000000", "scheduled__2026-11-27"):
            pass  # the same task, in the same process, claiming again
    with ledger.claim("scotland", "20200101_000000", "backfill__2026-11-01"):
        pass  # released when the first run finished


def test_a_claim_left_by_a_dead_process_does_not_block(tmp_path):
    path = str(tmp_path / "l.sqlite3")
    ledger = Ledger(path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "INSERT INTO claim (source_id, data_version, run_id, host, pid, claimed_at) "
            "VALUES ('scotland', '20200101_000000', 'old-run', ?, ?, 0)",
            (socket.gethostname(), int(dead.stdout)),
        )
    with ledger.claim("scotland", "20200101_000000", "new-run"):
        pass


def test_a_retry_never_takes_a_claim_over_from_a_try_that_is_still_running(tmp_path):
    path = str(tmp_path / "l.sqlite3")
    Ledger(path)
    still_running = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        with sqlite3.connect(path) as connection:
            connection.execute(
                "INSERT INTO claim (source_id, data_version, run_id, host, pid, claimed_at) "
                "VALUES ('scotland', '2020-09', 'run-1', ?, ?, ?)",
                (socket.gethostname(), still_running.pid, time.time()),
            )
        with pytest.raises(ClaimedError, match="scotland/2020-09 is being archived by run run-1"):
            with Ledger(path).claim("scotland", "2020-09", "run-1"):
                pass  # pragma: no cover
    finally:
        still_running.communicate(b"")
    with Ledger(path).claim("scotland", "2020-09", "run-1"):
        pass  # once that try has ended, its retry goes on


def test_a_claim_whose_pid_now_belongs_to_another_process_does_not_block(tmp_path):
    """A container restart restarts pids: the claim's pid is alive, but it is not the process that claimed (its
    start time differs), so the claim was left by a process that died."""
    path = str(tmp_path / "l.sqlite3")
    Ledger(path)
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        boot, started = process_identity(live.pid).split("/")
        with sqlite3.connect(path) as connection:
            connection.execute(
                "INSERT INTO claim (source_id, data_version, run_id, host, pid, claimed_at, process) "
                "VALUES ('scotland', '2020-09', 'run-1', ?, ?, ?, ?)",
                (socket.gethostname(), live.pid, time.time(), f"{boot}/{int(started) - 100}"),
            )
        with Ledger(path).claim("scotland", "2020-09", "run-2"):
            pass  # taken over: the holder died, and its pid went to another process
        with sqlite3.connect(path) as connection:
            connection.execute(
                "INSERT INTO claim (source_id, data_version, run_id, host, pid, claimed_at, process) "
                "VALUES ('scotland', '2020-09', 'run-1', ?, ?, ?, ?)",
                (socket.gethostname(), live.pid, time.time(), process_identity(live.pid)),
            )
        with pytest.raises(ClaimedError, match="scotland/2020-09 is being archived by run run-1"):
            with Ledger(path).claim("scotland", "2020-09", "run-2"):
                pass  # pragma: no cover
    finally:
        live.communicate(b"")


def test_a_ledger_from_before_claims_recorded_their_process_is_upgraded(tmp_path):
    path = str(tmp_path / "l.sqlite3")
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE claim (source_id TEXT NOT NULL, data_version TEXT NOT NULL, run_id TEXT, "
            "host TEXT NOT NULL, pid INTEGER NOT NULL, claimed_at REAL NOT NULL, "
            "PRIMARY KEY (source_id, data_version))"
        )
    with Ledger(path).claim("scotland", "2020-09", "run-1"):
        with sqlite3.connect(path) as connection:
            [process] = connection.execute("SELECT process FROM claim").fetchone()
    assert process == process_identity(os.getpid())


def test_an_error_that_is_not_corruption_never_sets_the_ledger_aside(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    path.mkdir()  # unopenable, as a full disk or an I/O error would make it: not evidence of a corrupt file
    with pytest.raises(LedgerError, match=f"The ledger {path} cannot be opened"):
        Ledger(str(path))
    assert path.is_dir() and not list(tmp_path.glob("*.corrupt-*"))


def test_a_late_decision_never_undoes_an_archive_or_a_sweep(tmp_path):
    """An overlapping run decided on an inspection from before the crawl was archived (or swept)."""
    ledger = Ledger(str(tmp_path / "l.sqlite3"))
    ledger.record([row("20200101_000000", "to_archive", "new_period"), row("20200102_000000", "rejected", "x")], "r1")
    ledger.mark_archived("scotland", "20200101_000000", {"bytes": 1}, "r1")
    ledger.mark_swept("scotland", "20200102_000000", "r1")
    late = [row("20200101_000000", "pending", "same_period"), row("20200102_000000", "rejected", "not_finished")]
    ledger.record(late, "r2")
    assert ledger.get("scotland", "20200101_000000")["status"] == "archived"
    assert ledger.get("scotland", "20200102_000000")["status"] == "swept"
