"""Kingfisher Process: which crawls it no longer needs on disk, so they may be archived and deleted.

The generation, v1 or v2, is read from the database on every run: nobody configures it, and an upgrade of Process
needs no change here. v2 loads a crawl's files from its directory after the collection is closed, so a closed v2
crawl is released only once every file is loaded; until then it is *waiting*: reported, never touched.
See docs/compatibility.md, Kingfisher Process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from kingfisher_archive.crawl import naive_utc
from kingfisher_archive.errors import PermanentError


class ProcessError(PermanentError):
    """The Kingfisher Process database cannot be read as either generation."""


@dataclass(frozen=True)
class Collection:
    """A root collection of one crawl that Kingfisher Collect closed with the reason ``finished`` (v2), or loaded."""

    id: int
    source_id: str
    data_version: datetime  # naive UTC
    scrapyd_job: str | None = None
    #: ``store_end_at``, naive UTC: when the crawl was closed (v2) or loaded (v1).
    closed_at: datetime | None = None
    #: Kingfisher Process has loaded every file it was sent, so it will never open the crawl's files again.
    files_loaded: bool = True
    #: While loading (v2): files Process has recorded, files Kingfisher Collect said it sent, steps still to run.
    files_stored: int | None = None
    files_expected: int | None = None
    loads_pending: int | None = None

    def loading_detail(self) -> str:
        """What Process still has to do, in a few words: for the run summary."""
        expected = f"{self.files_expected}" if self.files_expected else "an unknown number of"
        return f"{self.files_stored or 0} of {expected} files recorded, {self.loads_pending or 0} still to load"


@dataclass(frozen=True)
class Schema:
    """The generation of a Kingfisher Process database and what its tables can tell."""

    generation: str  # "v1" or "v2"
    #: The newest Django migration of the ``process`` app (v2), when the database records them.
    migration: str | None = None
    columns: frozenset[str] = field(default_factory=frozenset)
    tables: frozenset[str] = field(default_factory=frozenset)

    def __str__(self) -> str:
        return f"{self.generation} (migration {self.migration})" if self.migration else self.generation


@dataclass(frozen=True)
class Found:
    schema: Schema
    #: Crawls whose files Process no longer needs: the run's candidates.
    loaded: list[Collection]
    #: Crawls closed with ``finished`` whose files Process is still loading (v2 only): left alone, reported.
    loading: list[Collection]


# Columns that only v2 has ever had. Early v2 (2019-2020) has v1's columns exactly; its ``django_migrations`` rows
# tell it apart. Between 2021 and mid-2022 (migrations 0023 to 0026) v2 has ``check_data`` as v1 does.
V2_COLUMNS = frozenset({"completed_at", "scrapyd_job", "expected_files_count", "steps", "options", "data_type"})
V1_COLUMNS = frozenset({"check_data", "store_end_at", "transform_type", "sample", "deleted_at"})
TABLES = ("collection", "collection_note", "collection_file", "processing_step", "django_migrations")
#: Steps that open the crawl's files: the file worker's ``LOAD`` (and ``UPGRADE``, which 2021 databases list).
FILE_STEPS = ("LOAD", "UPGRADE")

V1_QUERY = """
SELECT id, source_id, data_version, NULL, store_end_at
FROM collection
WHERE sample IS FALSE
  AND store_end_at IS NOT NULL
  AND transform_type = ''
  AND deleted_at IS NULL{loaded_before}
ORDER BY id
"""

# The close note is on the root collection only, and only when Kingfisher Collect sent a reason: a collection closed
# by Process's own `load` or `closecollection` commands, or kept open, has none and is left alone. Local loads
# (sources ending "_local") have no crawl directory. The counts are computed only for collections not completed.
V2_QUERY = r"""
SELECT c.id, c.source_id, c.data_version, {scrapyd_job}, c.store_end_at, {completed} AS completed,
       CASE WHEN {completed} THEN NULL ELSE (
           SELECT count(*) FROM processing_step s LEFT JOIN collection_file f ON f.id = s.collection_file_id
           WHERE s.name IN ({file_steps})
             AND (s.collection_id = c.id OR f.collection_id = c.id OR s.collection_id IN (
                 SELECT u.id FROM collection u WHERE u.transform_from_collection_id = c.id
             ))
       ) END AS loads_pending,
       CASE WHEN {completed} THEN NULL ELSE (
           SELECT count(*) FROM collection_file f WHERE f.collection_id = c.id
       ) END AS files_stored,
       c.expected_files_count
FROM collection c
WHERE c.sample IS FALSE
  AND c.store_end_at IS NOT NULL
  AND c.transform_type = ''
  AND c.deleted_at IS NULL
  AND c.source_id NOT LIKE '%%\_local'
  AND EXISTS (
      SELECT 1 FROM collection_note n
      WHERE n.collection_id = c.id AND n.note = 'Spider close reason: finished'
  ){loaded_before}
ORDER BY c.id
"""


def detect_schema(connection) -> Schema:
    """The generation of the database, from its migrations and the columns of its ``collection`` table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_name = ANY (%s) AND table_schema = ANY (current_schemas(false))",
            (list(TABLES),),
        )
        tables = frozenset(row[0] for row in cursor.fetchall())
        cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'collection' AND table_schema = ANY (current_schemas(false))"
        )
        columns = frozenset(row[0] for row in cursor.fetchall())
        migration = None
        if "django_migrations" in tables:
            cursor.execute("SELECT max(name) FROM django_migrations WHERE app = 'process'")
            migration = cursor.fetchone()[0]
    if "collection" not in tables or not columns:
        raise ProcessError("the database has no 'collection' table: is this the Kingfisher Process database?")
    if migration or columns & V2_COLUMNS:
        schema = Schema("v2", migration, columns, tables)
        missing = [t for t in ("collection_note", "collection_file", "processing_step") if t not in tables]
        if missing or "expected_files_count" not in columns:
            what = ", ".join(f"no '{t}' table" for t in missing) or "no 'expected_files_count' column"
            raise ProcessError(
                f"this Kingfisher Process v2 database ({schema}) has {what}, so it cannot tell when a crawl's files "
                "are loaded; upgrade Kingfisher Process (migration 0023 or later) before archiving"
            )
        return schema
    if V1_COLUMNS <= columns:
        return Schema("v1", None, columns, tables)
    raise ProcessError(
        f"the 'collection' table has neither v1 nor v2 columns of Kingfisher Process: {sorted(columns)}"
    )


def loaded_collections(connection, loaded_before: datetime | None = None) -> Found:
    """The schema, the collections whose crawls may be archived, and those Process is still loading (v2).

    ``loaded_before`` (aware or naive UTC) keeps only collections closed before it: a run for a past logical date
    (a backfill) considers what had been closed by the end of its data interval, nothing later.
    """
    schema = detect_schema(connection)
    parameters: tuple = ()
    clause = ""
    if loaded_before is not None:
        moment = naive_utc(loaded_before)
        if schema.generation == "v1":  # timestamp without time zone, holding UTC
            clause, parameters = "\n  AND store_end_at < %s", (moment,)
        else:  # timestamptz
            clause, parameters = "\n  AND c.store_end_at < %s", (moment.replace(tzinfo=UTC),)
    if schema.generation == "v1":
        query = V1_QUERY.format(loaded_before=clause)
    else:
        query = V2_QUERY.format(
            loaded_before=clause,
            file_steps=", ".join(f"'{step}'" for step in FILE_STEPS),
            scrapyd_job="c.scrapyd_job" if "scrapyd_job" in schema.columns else "NULL",
            completed="(c.completed_at IS NOT NULL)" if "completed_at" in schema.columns else "false",
        )
    with connection.cursor() as cursor:
        cursor.execute(query, parameters)
        rows = cursor.fetchall()
    loaded, loading = [], []
    for row in rows:
        if row[2] is None:
            continue
        collection = _collection(row) if schema.generation == "v2" else _v1_collection(row)
        (loaded if collection.files_loaded else loading).append(collection)
    return Found(schema, loaded, loading)


def _v1_collection(row) -> Collection:
    return Collection(int(row[0]), row[1], naive_utc(row[2]), None, row[4] and naive_utc(row[4]))


def _collection(row) -> Collection:
    """A v2 row: loaded once completed, or once no file step is left and every file Collect sent is recorded."""
    id_, source_id, data_version, job, closed_at, completed, pending, stored, expected = row
    files_loaded = bool(completed) or (pending == 0 and stored >= (expected or 0))
    return Collection(
        int(id_),
        source_id,
        naive_utc(data_version),
        job or None,
        closed_at and naive_utc(closed_at),
        files_loaded,
        None if files_loaded else stored,
        None if files_loaded else expected,
        None if files_loaded else pending,
    )
