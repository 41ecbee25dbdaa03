"""The ledger: decisions survive, settle, and take concurrent writers."""

import sqlite3
import threading

from kingfisher_archive.ledger import Ledger


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
