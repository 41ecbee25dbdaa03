"""The ledger: a SQLite file recording every crawl's decision, and a cache that saves re-inspecting it.

A record and a cache, never the truth about what is archived (the bucket is): losing it costs time, not
correctness. But it also holds the archive tasks' claims on months, which nothing else holds: a corrupt ledger is
never replaced by an empty one here (:class:`LedgerCorruptError`); a person rebuilds it once no archive task runs
(``kingfisher-archive ledger rebuild``, :mod:`kingfisher_archive.ledger_rebuild`). The statuses a crawl goes through
are :class:`Status`. See docs/retention-policy.md, The ledger.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import quote

from kingfisher_archive.errors import PermanentError, RetryableError
from kingfisher_archive.vocabulary import phrased

logger = logging.getLogger(__name__)


class Status(StrEnum):
    """A crawl's status in the ledger. The settled ones (:data:`SETTLED`) are not inspected again.

    Each member is its code and its ``phrase`` (:mod:`kingfisher_archive.vocabulary`).
    """

    __new__ = phrased

    #: Failed a rule of the retention policy (the reason says which); settled.
    REJECTED = "rejected", "rejected"
    #: Acceptable, but not distinct or not better than an archive in the bucket; settled.
    NOT_ARCHIVED = "not_archived", "not archived"
    #: Acceptable, but not distinct or not better than a crawl this run chose (``facts.pending_on``), which is not in
    #: the bucket yet: settled as ``not_archived`` when that crawl's archive is verified, else decided again, with its
    #: whole month, by the next run.
    PENDING = "pending", "not archived for now"
    #: Could not be decided (say, its month's metadata.json is unreadable); looked at again next run.
    HELD = "held", "held"
    #: Chosen; its archive task has not finished yet. Not settled: the next run looks again.
    TO_ARCHIVE = "to_archive", "chosen, not archived yet"
    #: In the bucket, verified, and being deleted locally (``result`` holds the archive's identity): a later try or
    #: run that finds the month still holding that archive finishes the deletion without reading the crawl again.
    DELETING = "deleting", "archived, being deleted"
    #: In the bucket, verified, deleted locally; settled.
    ARCHIVED = "archived", "archived"
    #: Not archived, and deleted locally by the opt-in retention sweep (the old 90-day cron); settled.
    SWEPT = "swept", "swept"
    #: Its directory disappeared before it was settled, without this package deleting it (by hand); settled.
    GONE = "gone", "gone"
    #: In the bucket, verified, and kept on disk on purpose: Kingfisher Collect writes into it again (its log shows
    #: the ``DatabaseStore`` extension of incremental updates, which re-reads the whole directory); settled.
    KEPT = "kept", "archived, and kept on disk"


class Held(StrEnum):
    """Why a crawl is ``held``: it could not be decided now, and is looked at again next run."""

    __new__ = phrased

    #: Its directory or log could not be read for now, or inspecting it failed (the detail names the error).
    INSPECTION_FAILED = "inspection_failed", "its directory or log could not be read"
    #: Computing the checksum a comparison needed failed.
    CHECKSUM_FAILED = "checksum_failed", "its checksum could not be computed"
    #: A month the comparison needs has a ``metadata.json`` that cannot be read.
    UNREADABLE_ARCHIVE_METADATA = (
        "unreadable_archive_metadata",
        "a month it must be compared with has a metadata.json that cannot be read",
    )
    #: A month the comparison needs holds data without ``metadata.json``, and nothing says how to make it whole.
    MONTH_INCOMPLETE = "month_incomplete", "a month it must be compared with holds data without metadata.json"
    #: Its month's ``metadata.json`` names it, and less is left on disk than that archive holds.
    SMALLER_THAN_ITS_ARCHIVE = (
        "smaller_than_its_archive",
        "its month is archived from this crawl, and less is left on disk than the archive holds",
    )
    #: Its month's ``metadata.json`` names it, and what is on disk is not (all) that archive.
    DIFFERS_FROM_ITS_ARCHIVE = (
        "differs_from_its_archive",
        "its month is archived from this crawl, and what is on disk is not that archive",
    )
    #: The sweep found a crawl rejected earlier acceptable now.
    REJECTION_NO_LONGER_HOLDS = (
        "rejection_no_longer_holds",
        "rejected earlier, acceptable now: decided again by the next run",
    )
    #: A file system call on the crawl failed (EPERM, EACCES, ENOSPC, EDQUOT, EIO, ...; the detail names it) while it
    #: was decided, archived or swept: nothing of it was deleted that was not archived; looked at again next run.
    DISK_ERROR = "disk_error", "the file system refused a call on it"
    #: Its archive is verified, and deleting it locally failed (the detail says why); the next run tries again.
    DELETE_FAILED = "delete_failed", "archived and verified, and deleting it from disk failed"
    #: What was set aside to be deleted is not what was archived, and the crawl's path was written again since:
    #: nothing is deleted until a person merges or deletes the two.
    SET_ASIDE_DIFFERS = (
        "set_aside_differs",
        "what was set aside to be deleted is not what was archived, and its folder was written again since",
    )
    #: The bucket refused to change its month (Object Lock, a legal hold, a policy); the month was left as it was.
    BUCKET_REFUSED = "bucket_refused", "the bucket refused to change or read its month (a lock or a policy)"
    #: Its month's archive is in a cold class (GLACIER, DEEP_ARCHIVE) and its bytes are needed (to learn which crawl
    #: an older archive holds, or to compare it with the crawl on disk): a readable copy was asked for.
    ARCHIVE_THAWING = (
        "archive_thawing",
        "its month's archive is in GLACIER or DEEP_ARCHIVE: a copy was asked for (ready within 48 h); the next run "
        "after that continues",
    )
    #: Its folder was written again after the crawl was archived and deleted (or swept), and what stands there now
    #: would be settled unarchived (rejected, or not better): held instead, so that it is never swept.
    WRITTEN_AGAIN = (
        "written_again",
        "its folder was written again after it was archived and deleted, and what is there now is not archived",
    )
    #: A ``<data_version>.deleting`` directory that no ledger row explains, that its month's archive does not hold,
    #: and that cannot be renamed back because its path is taken: left for a person.
    LEFT_ASIDE = (
        "left_aside",
        "a copy set aside to be deleted that no archive holds, beside a folder written since",
    )


class Gone(StrEnum):
    """Why a crawl is ``gone`` (settled, and no longer on disk)."""

    __new__ = phrased

    #: Its directory disappeared before it was settled, without this package deleting it.
    NOT_ON_DISK = "not_on_disk", "its directory disappeared before it was settled, not deleted by this package"


class Kept(StrEnum):
    """Why a crawl is ``kept``: archived and verified, and on purpose not deleted locally."""

    __new__ = phrased

    #: Its log shows Kingfisher Collect's ``DatabaseStore`` extension (incremental updates), which re-reads the whole
    #: crawl directory at each close: "the data stored in the crawl directory must not be deleted".
    INCREMENTAL_UPDATES = (
        "incremental_updates",
        "Kingfisher Collect writes into it again (incremental updates): its files must stay",
    )


SETTLED = (Status.REJECTED, Status.NOT_ARCHIVED, Status.ARCHIVED, Status.SWEPT, Status.GONE, Status.KEPT)
STATUSES = tuple(Status)
#: What a decision made on an older inspection never overwrites: done since. (A decision about a directory written
#: again at an archived or swept crawl's path, after the crawl was deleted, does: ``rewritten`` in the row.)
DONE = (Status.ARCHIVED, Status.SWEPT, Status.DELETING, Status.KEPT)
#: Not settled, and its month's choice may still change: the month stays open (the sweep leaves its crawls alone).
OPEN = (Status.TO_ARCHIVE, Status.PENDING, Status.HELD, Status.DELETING)

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
CREATE TABLE IF NOT EXISTS claim (
    source_id TEXT NOT NULL,
    data_version TEXT NOT NULL,  -- what is claimed: archive tasks claim their crawl's month, YYYY-MM
    run_id TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    claimed_at REAL NOT NULL,
    process TEXT,  -- what identifies the process beyond its pid: boot id and start time
    PRIMARY KEY (source_id, data_version)
);
CREATE TABLE IF NOT EXISTS waiting (  -- crawls the last run found waiting for Kingfisher Process to load their files
    source_id TEXT NOT NULL,
    data_version TEXT NOT NULL,
    collection_id INTEGER,
    closed_at TEXT,  -- ISO 8601, UTC
    loading TEXT,  -- what Process has recorded and has still to load
    run_id TEXT,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (source_id, data_version)
);
CREATE TABLE IF NOT EXISTS run (  -- what each run's summary found that needs a person
    run_id TEXT PRIMARY KEY,
    finished_at TEXT NOT NULL,
    failed TEXT NOT NULL DEFAULT '[]',  -- crawls chosen and not archived
    failed_tasks TEXT NOT NULL DEFAULT '[]',
    error TEXT  -- the run could not be summarised
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


#: A claim from another host older than this is taken to be left by a process that died.
STALE_CLAIM_SECONDS = 24 * 3600
#: How often an archive task waiting for a month another run is archiving into looks again (how long it waits is
#: the caller's: tasks.CLAIM_WAIT_SECONDS).
CLAIM_POLL_SECONDS = 5.0


class LedgerError(RetryableError):
    """The ledger cannot be used (locked too long, unwritable): the task fails and can be retried."""


class LedgerCorruptError(PermanentError):
    """The ledger file is not a sound SQLite database. It is left as it is: it may hold the claims of archive tasks
    still running, and an empty ledger in its place would let another run archive into their months. A retry would
    find the same; a person rebuilds it (the message says how)."""

    def __init__(self, path: str, problem: object) -> None:
        self.path = path
        super().__init__(
            f"The ledger {path} is corrupt ({problem}). It is not replaced by an empty one, since it may hold the "
            "claims of archive tasks still running: pause the kingfisher_archive DAG and wait until no 'Archive "
            f"crawl' task is running, then run `kingfisher-archive ledger rebuild --ledger {path}`, which moves the "
            "file aside and writes a new ledger from the bucket and the data directory; or put back a copy of the "
            "file from a backup"
        )


class ClaimedError(RetryableError):
    """Another run is archiving this crawl right now; archiving it twice at once could race on the bucket."""


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class Ledger:
    """One SQLite file; every method opens, writes and closes its own short transaction."""

    def __init__(self, path: str, timeout: float = 60.0) -> None:
        """Open the ledger at ``path``, creating it (and its directory) if there is none.

        :raises LedgerError: it is locked or cannot be opened now (retryable).
        :raises LedgerCorruptError: it is not a sound database; it is left where it is, untouched.
        """
        self.path = path
        self.timeout = timeout
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        try:
            self._open()
        except sqlite3.OperationalError as e:
            # Locked, unwritable, a transient I/O error: not evidence of corruption.
            raise self._unusable(e) from e
        except sqlite3.DatabaseError as e:
            # Corrupt: never trusted, and never replaced here. The claims of archive tasks still running may be in
            # it, and only a person can know that none is (docs/operating.md, The ledger is lost or corrupt).
            logger.error("The ledger %s is corrupt (%s): left as it is", path, e)
            raise LedgerCorruptError(path, e) from e

    def _unusable(self, error: sqlite3.OperationalError) -> LedgerError:
        if "locked" in str(error):
            return self._locked(error)
        return LedgerError(f"The ledger {self.path} cannot be opened ({error}): the task fails and can be retried")

    def _open(self) -> None:
        with self._connect() as connection:
            result = connection.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise sqlite3.DatabaseError(f"quick_check says {result}")
            connection.executescript(SCHEMA)
            columns = {row[1] for row in connection.execute("PRAGMA table_info(claim)")}
            if "process" not in columns:  # a ledger from before claims recorded it
                connection.execute("ALTER TABLE claim ADD COLUMN process TEXT")

    def _locked(self, error: Exception) -> LedgerError:
        return LedgerError(
            f"The ledger {self.path} stayed locked for {self.timeout:.0f} s ({error}): another process holds it; "
            "retry the task when it has finished"
        )

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
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise self._locked(e) from e
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    @contextmanager
    def claim(self, source_id: str, key: str, run_id: str | None, wait: float = 0.0, on_wait=None):
        """Hold ``<source_id>/<key>`` (``key``: a month, ``YYYY-MM``) while this run archives into it.

        A claim holds while its process lives (same host) or for a day (another host), whichever run holds it, this
        one included: a retry never takes over from a try still archiving. While another holds it, this waits up to
        ``wait`` seconds (calling ``on_wait`` once with the holder's row), then raises :class:`ClaimedError` naming
        the holder. See docs/safety.md, 10.
        """
        host, pid, process = socket.gethostname(), os.getpid(), process_identity(os.getpid())
        deadline = time.monotonic() + wait
        waiting = False
        while True:
            with self._transaction() as connection:
                row = connection.execute(
                    "SELECT * FROM claim WHERE source_id = ? AND data_version = ?", (source_id, key)
                ).fetchone()
                mine = row is not None and (row["host"], row["pid"], row["process"], row["run_id"]) == (
                    host,
                    pid,
                    process,
                    run_id,
                )
                held = row is not None and not mine and _alive(row, host)
                if not held:
                    connection.execute(
                        "INSERT OR REPLACE INTO claim (source_id, data_version, run_id, host, pid, claimed_at, "
                        "process) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (source_id, key, run_id, host, pid, time.time(), process),
                    )
                    break
            if time.monotonic() >= deadline:
                since = datetime.fromtimestamp(row["claimed_at"], UTC).replace(microsecond=0).isoformat()
                raise ClaimedError(
                    f"{source_id}/{key} is being archived by run {row['run_id']} (host {row['host']}, "
                    f"pid {row['pid']}, since {since}): not archiving into it from two tries at once; clear this "
                    "task once that one has finished"
                )
            if not waiting:
                waiting = True
                logger.info("%s/%s is being archived by run %s: waiting for it", source_id, key, row["run_id"])
                if on_wait is not None:
                    on_wait(dict(row))
            time.sleep(min(CLAIM_POLL_SECONDS, max(deadline - time.monotonic(), 0.01)))
        try:
            yield
        finally:
            with self._transaction() as connection:
                connection.execute(
                    "DELETE FROM claim WHERE source_id = ? AND data_version = ? AND host = ? AND pid = ?",
                    (source_id, key, host, pid),
                )

    def settled(self) -> set[tuple[str, str]]:
        """(source_id, data_version) of every crawl whose decision is final."""
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT source_id, data_version FROM crawl WHERE status IN ({','.join('?' * len(SETTLED))})",
                SETTLED,
            ).fetchall()
        return {(row["source_id"], row["data_version"]) for row in rows}

    def written_again(self) -> set[tuple[str, str]]:
        """(source_id, data_version) of every crawl this package deleted whose path was written again since: those it
        deleted (``archived``, ``swept``), and those decided since as written again (``facts.rewritten``)."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT source_id, data_version FROM crawl WHERE status IN (?, ?) "
                "OR json_extract(facts, '$.rewritten')",
                (Status.ARCHIVED, Status.SWEPT),
            )
            return {(row["source_id"], row["data_version"]) for row in rows.fetchall()}

    def deleted(self) -> set[tuple[str, str]]:
        """(source_id, data_version) of every crawl this package deleted (``archived`` or ``swept``): one found on
        disk again was written again since."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT source_id, data_version FROM crawl WHERE status IN (?, ?)", (Status.ARCHIVED, Status.SWEPT)
            )
            return {(row["source_id"], row["data_version"]) for row in rows.fetchall()}

    def record(self, rows: Iterable[dict], run_id: str | None) -> None:
        """Record decisions: dicts with source_id, data_version, status, reason, and optional facts/collection_id.

        A crawl already ``archived``, ``deleting`` or ``swept`` keeps that record: a decision made on an inspection
        from before (an overlapping run's) cannot undo what was done since.
        """
        now = _now()
        with self._transaction() as connection:
            for row in rows:
                if row["status"] not in STATUSES:
                    raise ValueError(f"unknown ledger status {row['status']!r}")
                done = connection.execute(
                    "SELECT status FROM crawl WHERE source_id = ? AND data_version = ? "
                    f"AND status IN ({','.join('?' * len(DONE))})",
                    (row["source_id"], row["data_version"], *DONE),
                ).fetchone()
                if done and not (row.get("rewritten") and done["status"] in (Status.ARCHIVED, Status.SWEPT)):
                    continue
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
        self._set_status(source_id, data_version, Status.ARCHIVED, result, run_id)

    def _set_status(self, source_id: str, data_version: str, status: str, result: dict, run_id: str | None) -> None:
        now = _now()
        with self._transaction() as connection:
            updated = connection.execute(
                "UPDATE crawl SET status = ?, result = ?, run_id = ?, updated_at = ?, "
                "facts = json_remove(facts, '$.problem') WHERE source_id = ? AND data_version = ?",
                (status, json.dumps(result, sort_keys=True), run_id, now, source_id, data_version),
            ).rowcount
            if not updated:
                connection.execute(
                    "INSERT INTO crawl (source_id, data_version, status, reason, result, run_id, updated_at) "
                    "VALUES (?, ?, ?, NULL, ?, ?, ?)",
                    (source_id, data_version, status, json.dumps(result, sort_keys=True), run_id, now),
                )
            connection.execute(
                "INSERT INTO event (at, run_id, source_id, data_version, status, reason) VALUES (?, ?, ?, ?, ?, NULL)",
                (now, run_id, source_id, data_version, status),
            )

    def mark_kept(self, source_id: str, data_version: str, result: dict, run_id: str | None) -> None:
        """Record a crawl archived and verified, and kept on disk on purpose (:attr:`Status.KEPT`)."""
        self._set_status(source_id, data_version, Status.KEPT, result, run_id)

    def note_problem(self, source_id: str, data_version: str, reason: str, detail: str, run_id: str | None) -> None:
        """Note on a crawl's row what stopped this run from finishing it (``facts.problem``: a
        :class:`Held` reason and a detail), whatever its status: a crawl being deleted stays ``deleting``, so that the
        next run finishes it. The next status recorded for it clears the note."""
        problem = json.dumps({"reason": str(reason), "detail": detail})
        now = _now()
        with self._transaction() as connection:
            updated = connection.execute(
                "UPDATE crawl SET facts = json_set(facts, '$.problem', json(?)), run_id = ?, updated_at = ? "
                "WHERE source_id = ? AND data_version = ?",
                (problem, run_id, now, source_id, data_version),
            ).rowcount
            if updated:
                connection.execute(
                    "INSERT INTO event (at, run_id, source_id, data_version, status, reason) "
                    "SELECT ?, ?, source_id, data_version, status, ? FROM crawl "
                    "WHERE source_id = ? AND data_version = ?",
                    (now, run_id, str(reason), source_id, data_version),
                )

    def mark_deleting(self, source_id: str, data_version: str, result: dict, run_id: str | None) -> None:
        """Record, before the first file is deleted, that the crawl's verified archive is ``result``."""
        self._set_status(source_id, data_version, Status.DELETING, result, run_id)

    def reopen(self, source_id: str, data_version: str, run_id: str | None) -> None:
        """A crawl whose deletion cannot be finished as recorded: back to ``to_archive``, to be decided again."""
        with self._transaction() as connection:
            connection.execute(
                "UPDATE crawl SET status = ?, run_id = ?, updated_at = ? "
                "WHERE source_id = ? AND data_version = ? AND status = ?",
                (Status.TO_ARCHIVE, run_id, _now(), source_id, data_version, Status.DELETING),
            )

    def deleting(self) -> list[dict]:
        """The crawls whose deletion began and has not been recorded as finished."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT * FROM crawl WHERE status = ? ORDER BY source_id, data_version", (Status.DELETING,)
            )
            return [_row(row) for row in rows.fetchall()]

    def settle_pending(self, winner: str, run_id: str | None) -> list[str]:
        """Settle as ``not_archived`` the crawls that were waiting for ``winner`` (an id) to be archived."""
        now = _now()
        with self._transaction() as connection:
            rows = connection.execute(
                "SELECT source_id, data_version, reason FROM crawl "
                "WHERE status = ? AND json_extract(facts, '$.pending_on') = ?",
                (Status.PENDING, winner),
            ).fetchall()
            for row in rows:
                connection.execute(
                    "UPDATE crawl SET status = ?, run_id = ?, updated_at = ? WHERE source_id = ? AND data_version = ?",
                    (Status.NOT_ARCHIVED, run_id, now, row["source_id"], row["data_version"]),
                )
                connection.execute(
                    "INSERT INTO event (at, run_id, source_id, data_version, status, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (now, run_id, row["source_id"], row["data_version"], Status.NOT_ARCHIVED, row["reason"]),
                )
        return [f"{row['source_id']}/{row['data_version']}" for row in rows]

    def mark_swept(self, source_id: str, data_version: str, run_id: str | None) -> None:
        """Record that the retention sweep deleted a crawl that was kept on disk, keeping its old reason."""
        now = _now()
        with self._transaction() as connection:
            connection.execute(
                "UPDATE crawl SET status = ?, run_id = ?, updated_at = ?, facts = json_remove(facts, '$.problem') "
                "WHERE source_id = ? AND data_version = ?",
                (Status.SWEPT, run_id, now, source_id, data_version),
            )
            connection.execute(
                "INSERT INTO event (at, run_id, source_id, data_version, status, reason) VALUES (?, ?, ?, ?, ?, NULL)",
                (now, run_id, source_id, data_version, Status.SWEPT),
            )

    def record_waiting(self, waiting: Iterable[dict], closed_before: datetime | None, run_id: str | None) -> None:
        """Record the crawls a run found waiting for Kingfisher Process (:class:`~kingfisher_archive.records.Waiting`).

        A run sees every crawl closed before ``closed_before`` (its data interval's end; ``None``: every crawl), so
        the crawls closed before it that it did not find waiting no longer wait (loaded since, or gone); those closed
        later are another run's to say.
        """
        waiting = list(waiting)
        cutoff = _naive_utc(closed_before)
        now = _now()
        with self._transaction() as connection:
            for row in connection.execute("SELECT source_id, data_version, closed_at FROM waiting").fetchall():
                closed = _parse_time(row["closed_at"])
                if cutoff is None or closed is None or closed < cutoff:
                    connection.execute(
                        "DELETE FROM waiting WHERE source_id = ? AND data_version = ?",
                        (row["source_id"], row["data_version"]),
                    )
            for item in waiting:
                connection.execute(
                    "INSERT OR REPLACE INTO waiting (source_id, data_version, collection_id, closed_at, loading, "
                    "run_id, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        item["source_id"],
                        item["data_version"],
                        item.get("collection_id"),
                        item.get("closed_at"),
                        item.get("loading") or item.get("detail"),
                        run_id,
                        now,
                    ),
                )

    def record_run(
        self,
        run_id: str | None,
        failed: Iterable[str] = (),
        failed_tasks: Iterable[str] = (),
        error: str | None = None,
    ) -> None:
        """Record what a run's summary found that needs a person: crawls chosen and not archived, failed tasks."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO run (run_id, finished_at, failed, failed_tasks, error) VALUES (?, ?, ?, ?, ?)",
                (run_id or "", _now(), json.dumps(list(failed)), json.dumps(list(failed_tasks)), error),
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

    def record_rebuilt(self, rows: Iterable[dict], run_id: str) -> None:
        """Record crawls found ``archived`` by a rebuild (dicts with source_id, data_version, result, and
        ``updated_at``: when the archive was made, else now), in one transaction, each with its event."""
        now = _now()
        with self._transaction() as connection:
            for row in rows:
                at = row.get("updated_at") or now
                connection.execute(
                    "INSERT INTO crawl (source_id, data_version, status, reason, result, run_id, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        row["source_id"],
                        row["data_version"],
                        Status.ARCHIVED,
                        REBUILT,
                        json.dumps(row["result"], sort_keys=True),
                        run_id,
                        at,
                    ),
                )
                connection.execute(
                    "INSERT INTO event (at, run_id, source_id, data_version, status, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (now, run_id, row["source_id"], row["data_version"], Status.ARCHIVED, REBUILT),
                )


#: The reason of a crawl a rebuild recorded ``archived``: its month's metadata.json names it and it is not on disk.
REBUILT = "rebuilt_from_bucket"


def examine(path: str, timeout: float = 10.0) -> list[dict] | None:
    """Whether the ledger at ``path`` can be used, read-only (nothing is created or changed).

    :returns: ``None`` if there is no file; else the claims it holds (rows of ``claim``, each with ``live``: whether
        its process still holds it, as :meth:`Ledger.claim` judges).
    :raises LedgerCorruptError: the file is not a sound database.
    :raises LedgerError: it is locked (someone is using it) or cannot be read now.
    """
    if not os.path.lexists(path):
        return None
    if not os.path.isfile(path):
        raise LedgerError(f"The ledger {path} is not a file: move it away or give another path")
    try:
        uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=timeout)) as connection:
            connection.row_factory = sqlite3.Row
            result = connection.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise sqlite3.DatabaseError(f"quick_check says {result}")
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            claims = [dict(row) for row in connection.execute("SELECT * FROM claim")] if "claim" in tables else []
    except sqlite3.OperationalError as e:
        if "locked" in str(e):
            raise LedgerError(f"The ledger {path} is locked ({e}): something is using it; try again later") from e
        raise LedgerError(f"The ledger {path} cannot be read ({e})") from e
    except sqlite3.DatabaseError as e:
        raise LedgerCorruptError(path, e) from e
    host = socket.gethostname()
    for claim in claims:
        claim.setdefault("process", None)
        claim["live"] = _alive(claim, host)
    return claims


def move_aside(path: str, label: str) -> str:
    """Rename the ledger at ``path`` (with its ``-wal`` and ``-shm`` files) to ``<path>.<label>-<time>``, never over
    another file; return the new name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    aside = f"{path}.{label}-{stamp}"
    n = 1
    while any(os.path.lexists(aside + suffix) for suffix in ("", "-wal", "-shm")):
        n += 1
        aside = f"{path}.{label}-{stamp}-{n}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.lexists(path + suffix):
            os.rename(path + suffix, aside + suffix)
    return aside


def _row(row: sqlite3.Row) -> dict:
    data = dict(row)
    data["facts"] = json.loads(data["facts"] or "{}")
    data["result"] = json.loads(data["result"]) if data["result"] else None
    return data


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _parse_time(value: str | None) -> datetime | None:
    try:
        return _naive_utc(datetime.fromisoformat(value)) if value else None
    except ValueError:
        return None


def read_state(path: str) -> dict:
    """What a reader shows of the ledger at ``path``, opened read-only (a reader never changes the file):

    ``{"crawls": [row as Ledger.all gives it], "waiting": [waiting row], "last_run": run row or None}``; a ledger
    from before the waiting and run tables has neither. (:class:`Ledger` itself rebuilds a corrupt file, which is
    for the DAG to do.)
    """
    uri = f"file:{path}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=10)) as connection:
        connection.row_factory = sqlite3.Row
        crawls = [_row(row) for row in connection.execute("SELECT * FROM crawl ORDER BY source_id, data_version")]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        waiting, last_run = [], None
        if "waiting" in tables:
            waiting = [dict(row) for row in connection.execute("SELECT * FROM waiting ORDER BY closed_at, source_id")]
        if "run" in tables:
            row = connection.execute("SELECT * FROM run ORDER BY finished_at DESC, rowid DESC LIMIT 1").fetchone()
            if row is not None:
                last_run = dict(row)
                last_run["failed"] = json.loads(last_run["failed"] or "[]")
                last_run["failed_tasks"] = json.loads(last_run["failed_tasks"] or "[]")
    return {"crawls": crawls, "waiting": waiting, "last_run": last_run}


def process_identity(pid: int) -> str | None:
    """What tells a process from a later one with the same pid: the boot's id and the process's start time.

    A container restart restarts pids (the compose workers keep their host name, and the ledger is on a volume),
    so a claim's pid can belong to a live process that is not the one that claimed. ``None`` where ``/proc`` is
    not there to ask.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return f"{boot}/{fields[19]}"  # field 22 of stat(5): start time in clock ticks after boot


def _alive(row: sqlite3.Row, host: str) -> bool:
    if row["host"] == host:
        try:
            os.kill(row["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        recorded = row["process"]
        return recorded is None or recorded == process_identity(row["pid"])
    return time.time() - row["claimed_at"] < STALE_CLAIM_SECONDS
