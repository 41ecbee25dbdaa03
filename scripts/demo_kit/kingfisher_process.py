"""Kingfisher Process v2 as its own code writes the database, one call at a time (SPEC section 3).

Each method stands for one thing Process does, in the order a crawl meets them: Kingfisher Collect's create call
when the spider opens (the root collection, and an upgraded and a compiled child when asked), one API message per
file while it crawls (a ``collection_file`` and a pending ``LOAD`` step), the close call when the spider closes
(``store_end_at`` and ``expected_files_count`` on the root and its upgraded child, the close-reason and stats notes
on the root only), the file worker (deletes each ``LOAD`` step, records the upgraded file, queues a ``CHECK``), the
checker, and the finisher (``completed_at`` once no step is left and every expected file is recorded).

Tests drive a crawl to any point of that lifecycle, so the archive DAG meets the states Process really passes
through, including "closed, files still loading", which a harness that wrote finished rows in one go never showed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime

import psycopg2

UPGRADE = "upgrade-1-0-to-1-1"
COMPILE = "compile-releases"


@dataclass(frozen=True)
class Collections:
    """The ids Process's create call returns."""

    root: int
    upgraded: int | None = None
    compiled: int | None = None


class ProcessV2:
    """Writes a v2 database (``kingfisher_process_v2.sql`` or its mid-2022 form) the way Process does."""

    def __init__(self, dsn: str, files_store: str, now: datetime = datetime(2026, 1, 1)) -> None:
        self.dsn = dsn
        self.files_store = files_store
        #: Process writes ``now()``; the harness writes this clock, so a test can say when things happened.
        self.now = now
        with self._cursor() as cursor:
            cursor.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'collection' "
                "AND table_schema = ANY (current_schemas(false))"
            )
            self.columns = {row[0] for row in cursor.fetchall()}

    def _cursor(self):
        return _Cursor(self.dsn)

    # -- Kingfisher Collect's calls ------------------------------------------------------------------------------

    def create(
        self,
        source_id: str,
        data_version: datetime,
        *,
        sample: bool = False,
        upgrade: bool = False,
        compile: bool = False,  # noqa: A002 - Process's own name for the option
        check: bool = False,
        job: str = "",
    ) -> Collections:
        """The create call: the root, then an upgraded child, then a compiled child of the upgraded or the root.

        Children carry the root's ``source_id``, ``data_version``, ``sample`` and ``scrapyd_job``.
        """
        steps = ["check"] if check else []
        steps += ["upgrade"] if upgrade else (["compile"] if compile else [])
        with self._cursor() as cursor:
            root = self._insert(cursor, source_id, data_version, sample, job, steps, None, "")
            upgraded = compiled = None
            if upgrade:
                upgraded = self._insert(
                    cursor, source_id, data_version, sample, job, ["compile"] if compile else [], root, UPGRADE
                )
            if compile:
                compiled = self._insert(cursor, source_id, data_version, sample, job, [], upgraded or root, COMPILE)
        return Collections(root, upgraded, compiled)

    def add_file(self, collection_id: int, path: str, url: str = "") -> int:
        """The API loader, for one message Kingfisher Collect published: a collection file and its LOAD step."""
        with self._cursor() as cursor:
            cursor.execute(
                "INSERT INTO collection_file (collection_id, filename, url) VALUES (%s, %s, %s) RETURNING id",
                (collection_id, os.path.join(self.files_store, path), url or f"https://example.com/{path}"),
            )
            file_id = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO processing_step (collection_id, collection_file_id, name) VALUES (%s, %s, 'LOAD')",
                (collection_id, file_id),
            )
        return file_id

    def close(self, collection_id: int, reason: str | None = "finished", stats: dict | None = None) -> None:
        """The close call: ``store_end_at`` and the expected file count on the root and its upgraded child.

        The close-reason note only when a reason is sent, the stats note only when stats are, both on the root.
        """
        expected = (stats or {}).get("kingfisher_process_expected_files_count", 0)
        with self._cursor() as cursor:
            cursor.execute(
                "UPDATE collection SET store_end_at = %s, expected_files_count = %s "
                "WHERE id = %s OR (transform_from_collection_id = %s AND transform_type = %s)",
                (self.now, expected, collection_id, collection_id, UPGRADE),
            )
            if reason:
                self._note(cursor, collection_id, f"Spider close reason: {reason}", {})
            if stats:
                self._note(cursor, collection_id, "Spider stats", stats)

    # -- Kingfisher Process's workers ------------------------------------------------------------------------------

    def load_file(self, collection_file_id: int) -> None:
        """The file worker, for one file: the data is stored, the LOAD step deleted, CHECK steps queued if asked."""
        with self._cursor() as cursor:
            cursor.execute(
                "SELECT f.collection_id, f.filename, f.url, c.steps FROM collection_file f "
                "JOIN collection c ON c.id = f.collection_id WHERE f.id = %s",
                (collection_file_id,),
            )
            collection_id, filename, url, steps = cursor.fetchone()
            if not os.path.exists(filename):
                # What Process does when a file is gone: an error note, and the collection never completes.
                self._note(cursor, collection_id, f"{filename} has disappeared", {}, code="ERROR")
                return
            cursor.execute(
                "DELETE FROM processing_step WHERE name = 'LOAD' AND collection_file_id = %s", (collection_file_id,)
            )
            checks = [collection_file_id] if "check" in (steps or []) else []
            cursor.execute(
                "SELECT id, steps FROM collection WHERE transform_from_collection_id = %s AND transform_type = %s",
                (collection_id, UPGRADE),
            )
            if upgraded := cursor.fetchone():
                cursor.execute(
                    "INSERT INTO collection_file (collection_id, filename, url) VALUES (%s, %s, %s) RETURNING id",
                    (upgraded[0], filename, url),
                )
                if checks:
                    checks.append(cursor.fetchone()[0])
            for file_id in checks:
                cursor.execute(
                    "INSERT INTO processing_step (collection_id, collection_file_id, name) "
                    "SELECT collection_id, id, 'CHECK' FROM collection_file WHERE id = %s",
                    (file_id,),
                )

    def load_all(self, collection_id: int) -> None:
        """The file worker, for every file of the root still to load, then the finisher."""
        with self._cursor() as cursor:
            cursor.execute(
                "SELECT collection_file_id FROM processing_step WHERE name = 'LOAD' AND collection_id = %s "
                "ORDER BY id",
                (collection_id,),
            )
            pending = [row[0] for row in cursor.fetchall()]
        for file_id in pending:
            self.load_file(file_id)
        self.finish(collection_id)

    def check_all(self, collection_id: int) -> None:
        """The checker, for every file of the root and its upgraded child, then the finisher."""
        with self._cursor() as cursor:
            cursor.execute(
                "DELETE FROM processing_step WHERE name = 'CHECK' AND collection_id IN "
                "(SELECT id FROM collection WHERE id = %s OR transform_from_collection_id = %s)",
                (collection_id, collection_id),
            )
        self.finish(collection_id)

    def finish(self, collection_id: int) -> bool:
        """The finisher: ``completed_at`` on the root (and its upgraded child) once nothing is left to do."""
        with self._cursor() as cursor:
            cursor.execute(
                "SELECT store_end_at, completed_at, expected_files_count, "
                "(SELECT count(*) FROM processing_step WHERE collection_id = c.id), "
                "(SELECT count(*) FROM collection_file WHERE collection_id = c.id) FROM collection c WHERE id = %s",
                (collection_id,),
            )
            closed, completed, expected, steps, files = cursor.fetchone()
            if closed is None or completed is not None or steps or (expected and expected > files):
                return False
            cursor.execute(
                "UPDATE collection SET completed_at = %s WHERE completed_at IS NULL AND (id = %s OR "
                "(transform_from_collection_id = %s AND transform_type = %s))",
                (self.now, collection_id, collection_id, UPGRADE),
            )
        return True

    def delete(self, collection_id: int) -> None:
        """``cancelcollection``: ``deleted_at`` on the root and its children (the wiper later deletes the rows)."""
        with self._cursor() as cursor:
            cursor.execute(
                "UPDATE collection SET deleted_at = %s WHERE id = %s OR transform_from_collection_id = %s OR "
                "transform_from_collection_id IN (SELECT id FROM collection WHERE transform_from_collection_id = %s)",
                (self.now, collection_id, collection_id, collection_id),
            )

    # -- rows ------------------------------------------------------------------------------------------------------

    def _insert(self, cursor, source_id, data_version, sample, job, steps, parent, transform_type) -> int:
        columns = ["source_id", "data_version", "sample", "steps", "transform_from_collection_id", "transform_type"]
        values = [source_id, data_version, sample, json.dumps(steps), parent, transform_type]
        if "scrapyd_job" in self.columns:
            columns.append("scrapyd_job")
            values.append(job)
        columns.append("store_start_at")
        values.append(self.now)
        cursor.execute(
            f"INSERT INTO collection ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
            values,
        )
        return cursor.fetchone()[0]

    def _note(self, cursor, collection_id: int, note: str, data: dict, code: str = "INFO") -> None:
        cursor.execute(
            "INSERT INTO collection_note (collection_id, note, data, code, stored_at) VALUES (%s, %s, %s, %s, %s)",
            (collection_id, note, json.dumps(data), code, self.now),
        )


class _Cursor:
    """One transaction on a fresh connection, closed afterwards."""

    def __init__(self, dsn: str) -> None:
        self.connection = psycopg2.connect(dsn)

    def __enter__(self):
        self.cursor = self.connection.cursor()
        return self.cursor

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self.connection.commit()
            else:
                self.connection.rollback()
        finally:
            self.connection.close()
