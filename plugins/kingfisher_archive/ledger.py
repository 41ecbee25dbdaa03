"""The ledger: a SQLite file recording every crawl's decision, and a cache that saves re-inspecting it.

It is a record and a cache, never the truth about what is archived (the bucket is): losing it costs time, not
correctness. Mapped archive tasks write it at the same time, so it runs in WAL mode with a busy timeout and
short transactions. Airflow's XComs are wiped when a task retries; the ledger is not, which is why decisions
live here.

Statuses:

- ``rejected``: failed a rule of the retention policy (the reason says which); settled.
- ``not_archived``: acceptable, but not distinct or not better than what its month holds; settled.
- ``held``: could not be decided (say, its month's metadata.json is unreadable); looked at again next run.
- ``to_archive``: chosen; its archive task has not finished yet. Not settled: the next run looks again.
- ``archived``: in the bucket, verified, deleted locally; settled.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from contextlib import closing, contextmanager
from datetime import UTC, datetime

SETTLED = ("rejected", "not_archived", "archived")
STATUSES = ("rejected", "not_archived", "to_archive", "held", "archived")

SCHEMA = """
CREATE TABLE IF NOT EXISTS crawl (
    source_id TEXT NOT NULL,
    data_version TEXT NOT NULL,
    collection_id INTEGER,
    status TEXT NOT NULL,
    reason TEXT,
    facts TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    run_id TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source_id, data_version)
);
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    run_id TEXT,
    source_id TEXT NOT NULL,
    data_version TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT
);
"""


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class Ledger:
    """One SQLite file; every method opens, writes and closes its own short transaction."""

    def __init__(self, path: str, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        with self._connect() as connection:
            connection.executescript(SCHEMA)

    @contextmanager
    def _connect(self):
        with closing(sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)) as connection:
            connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.row_factory = sqlite3.Row
            yield connection

    @contextmanager
    def _transaction(self):
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def settled(self) -> set[tuple[str, str]]:
        """(source_id, data_version) of every crawl whose decision is final."""
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT source_id, data_version FROM crawl WHERE status IN ({','.join('?' * len(SETTLED))})",
                SETTLED,
            ).fetchall()
        return {(row["source_id"], row["data_version"]) for row in rows}

    def record(self, rows: Iterable[dict], run_id: str | None) -> None:
        """Record decisions: dicts with source_id, data_version, status, reason, and optional facts/collection_id."""
        now = _now()
        with self._transaction() as connection:
            for row in rows:
                if row["status"] not in STATUSES:
                    raise ValueError(f"unknown ledger status {row['status']!r}")
                connection.execute(
                    """
                    INSERT INTO crawl (source_id, data_version, collection_id, status, reason, facts, run_id,
                                       updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (source_id, data_version) DO UPDATE SET
                        collection_id = excluded.collection_id, status = excluded.status,
                        reason = excluded.reason, facts = excluded.facts, run_id = excluded.run_id,
                        updated_at = excluded.updated_at
                    """,
                    (
                        row["source_id"],
                        row["data_version"],
                        row.get("collection_id"),
                        row["status"],
                        row.get("reason"),
                        json.dumps(row.get("facts") or {}, sort_keys=True),
                        run_id,
                        now,
                    ),
                )
                connection.execute(
                    "INSERT INTO event (at, run_id, source_id, data_version, status, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (now, run_id, row["source_id"], row["data_version"], row["status"], row.get("reason")),
                )

    def mark_archived(self, source_id: str, data_version: str, result: dict, run_id: str | None) -> None:
        now = _now()
        with self._transaction() as connection:
            updated = connection.execute(
                "UPDATE crawl SET status = 'archived', result = ?, run_id = ?, updated_at = ? "
                "WHERE source_id = ? AND data_version = ?",
                (json.dumps(result, sort_keys=True), run_id, now, source_id, data_version),
            ).rowcount
            if not updated:
                connection.execute(
                    "INSERT INTO crawl (source_id, data_version, status, reason, result, run_id, updated_at) "
                    "VALUES (?, ?, 'archived', NULL, ?, ?, ?)",
                    (source_id, data_version, json.dumps(result, sort_keys=True), run_id, now),
                )
            connection.execute(
                "INSERT INTO event (at, run_id, source_id, data_version, status, reason) "
                "VALUES (?, ?, ?, ?, 'archived', NULL)",
                (now, run_id, source_id, data_version),
            )

    def get(self, source_id: str, data_version: str) -> dict | None:
        with self._connect() as connection:
            row = connection.execute(
                "SELECT * FROM crawl WHERE source_id = ? AND data_version = ?", (source_id, data_version)
            ).fetchone()
        return _row(row) if row else None

    def all(self) -> list[dict]:
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM crawl ORDER BY source_id, data_version").fetchall()
        return [_row(row) for row in rows]


def _row(row: sqlite3.Row) -> dict:
    data = dict(row)
    data["facts"] = json.loads(data["facts"] or "{}")
    data["result"] = json.loads(data["result"]) if data["result"] else None
    return data
