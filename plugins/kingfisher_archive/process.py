"""Kingfisher Process: which collections have finished loading, so their crawls may leave the disk.

Two generations are deployed: v1 (SQLAlchemy, up to 2021) and v2 (Django, today). The generation is read from
the database on every run, from the columns of its ``collection`` table, so an operator never configures it and
an upgrade of Kingfisher Process needs no change here.

Only the original (untransformed), non-sample, undeleted collections whose loading ended are candidates. A crawl
Process has not finished loading is never returned, so it is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


class ProcessError(Exception):
    """The Kingfisher Process database cannot be read as either generation."""


@dataclass(frozen=True)
class Collection:
    id: int
    source_id: str
    data_version: datetime  # naive UTC
    scrapyd_job: str | None = None


V1_QUERY = """
SELECT id, source_id, data_version, NULL
FROM collection
WHERE sample IS FALSE
  AND store_end_at IS NOT NULL
  AND transform_type = ''
  AND deleted_at IS NULL{loaded_before}
ORDER BY id
"""

# v2 sets store_end_at whatever the close reason, so the reason comes from the spider's close note. Local loads
# (sources ending "_local") have no crawl directory.
V2_QUERY = r"""
SELECT c.id, c.source_id, c.data_version, c.scrapyd_job
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


def detect_schema(connection) -> str:
    """``"v1"`` or ``"v2"``, from the columns of the ``collection`` table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'collection' AND table_schema = ANY (current_schemas(false))"
        )
        columns = {row[0] for row in cursor.fetchall()}
    if not columns:
        raise ProcessError("the database has no 'collection' table: is this the Kingfisher Process database?")
    if "check_data" in columns:
        return "v1"
    if "scrapyd_job" in columns or "completed_at" in columns:
        return "v2"
    raise ProcessError(
        f"the 'collection' table has neither v1 nor v2 columns of Kingfisher Process: {sorted(columns)}"
    )


def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def loaded_collections(connection, loaded_before: datetime | None = None) -> tuple[str, list[Collection]]:
    """The schema generation and the collections whose crawls may be archived.

    ``loaded_before`` (aware or naive UTC) keeps only collections whose loading ended before it: a run for a past
    logical date (a backfill) considers what had been loaded by the end of its data interval, nothing later.
    """
    schema = detect_schema(connection)
    parameters: tuple = ()
    clause = ""
    if loaded_before is not None:
        moment = _naive_utc(loaded_before)
        if schema == "v1":  # timestamp without time zone, holding UTC
            clause, parameters = "\n  AND store_end_at < %s", (moment,)
        else:  # timestamptz
            clause, parameters = "\n  AND c.store_end_at < %s", (moment.replace(tzinfo=UTC),)
    query = (V1_QUERY if schema == "v1" else V2_QUERY).format(loaded_before=clause)
    with connection.cursor() as cursor:
        cursor.execute(query, parameters)
        rows = cursor.fetchall()
    collections = [
        Collection(int(row[0]), row[1], _naive_utc(row[2]), row[3] or None) for row in rows if row[2] is not None
    ]
    return schema, collections
