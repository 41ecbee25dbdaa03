"""The values that travel through a run, by name: what one task hands the next.

Airflow passes them between tasks through XCom and the ledger keeps some of them, so they are JSON-ready
``TypedDict`` dictionaries (plain dicts at run time, named and typed for a reader and a type checker) of ids,
paths relative to nothing the next host could not see, numbers and reasons; never anything large. A record that
several rooms make has its one constructor here (:func:`decided`); an archive task's result is
:mod:`kingfisher_archive.archive_result`'s.
:class:`CrawlKey` is a crawl's identity, its data version parsed once per task. Which task hands which record to
which (a crawl still loading goes from find to the summary as a :class:`Waiting`): see docs/architecture.md, One
crawl's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NotRequired, TypedDict

from kingfisher_archive.crawl import crawl_directory, parse_data_version
from kingfisher_archive.ledger import Status
from kingfisher_archive.policy import Reject


@dataclass(frozen=True)
class CrawlKey:
    """A crawl's identity: its source and data version, parsed once, and what follows from them."""

    source_id: str
    data_version: str
    started: datetime  # the data version as a time, naive UTC

    @classmethod
    def of(cls, record) -> CrawlKey:
        """The key of any record that has ``source_id`` and ``data_version``; raises ValueError for a bad one."""
        return cls(record["source_id"], record["data_version"], parse_data_version(record["data_version"]))

    @classmethod
    def parse(cls, record) -> CrawlKey | None:
        """The key of a record, or ``None`` when its data version is not one (a row of a ledger from elsewhere)."""
        try:
            return cls.of(record)
        except (TypeError, ValueError):
            return None

    @property
    def id(self) -> str:
        return crawl_id(self.source_id, self.data_version)

    @property
    def year(self) -> int:
        return self.started.year

    @property
    def month(self) -> int:
        return self.started.month

    @property
    def period(self) -> str:
        """``YYYY-MM``: the month the crawl belongs to, as the ledger's claims name it."""
        return f"{self.year:04d}-{self.month:02d}"

    def directory(self, data_directory: str) -> str:
        return crawl_directory(data_directory, self.source_id, self.data_version)


def crawl_id(source_id: str, data_version: str) -> str:
    return f"{source_id}/{data_version}"


class CrawlRef(TypedDict):
    """find -> inspect: a loaded collection whose crawl directory is on disk."""

    source_id: str
    data_version: str  # YYYYMMDD_HHMMSS
    collection_id: int | None
    scrapyd_job: str | None


class Waiting(TypedDict):
    """find -> summarise: a crawl closed by Kingfisher Collect whose files Kingfisher Process is still loading."""

    id: str
    source_id: str
    data_version: str
    collection_id: int
    closed_at: str | None  # ISO 8601, UTC
    waited_seconds: int
    detail: str  # how long ago it was closed, and what Process has still to load
    loading: NotRequired[str]  # what Process has recorded and has still to load


class Inspection(TypedDict):
    """inspect -> decide: what the crawl's directory and log say, and the reject reason they give (or None).

    A crawl whose inspection failed carries only its identity, ``reject_reason`` None and ``error``.
    """

    id: str
    source_id: str
    data_version: str
    collection_id: int | None
    reject_reason: Reject | None
    error: str | None
    detail: NotRequired[str | None]
    bytes: NotRequired[int]
    files: NotRequired[int]  # every file under the directory
    data_files: NotRequired[int]  # files but scrapyd-job.txt
    fingerprint: NotRequired[str | None]  # names, sizes and times: what archiving must find again
    log: NotRequired[str | None]
    files_count: NotRequired[int]  # File items in the log
    errors_count: NotRequired[int]
    errors_source: NotRequired[str | None]
    finish_reason: NotRequired[str | None]
    #: Kingfisher Collect will write this crawl's directory again (its log has the DatabaseStore extension enabled,
    #: for incremental updates), so it must never be deleted; it is archived as usual. ``reused_detail`` says why.
    reused: NotRequired[bool]
    reused_detail: NotRequired[str | None]
    checksum: NotRequired[str | None]  # set by decide, only when a comparison needed it


class Decision(TypedDict):
    """decide -> ledger and summarise: what was decided for one crawl, and why."""

    id: str
    source_id: str
    data_version: str
    collection_id: int | None
    status: Status  # rejected, not_archived, pending, to_archive or held
    reason: str  # a policy.Reject, a policy.Comparison (or policy.not_distinct), or a ledger.Held
    bytes: int
    files: int
    files_count: int
    errors_count: int
    checksum: str | None
    detail: NotRequired[str | None]
    compared_with: NotRequired[str | None]
    superseded_by: NotRequired[str | None]
    rewritten: NotRequired[bool]  # its path was written again after this package deleted it
    pending_on: NotRequired[str]  # pending: the crawl of this run whose archive settles it
    #: to_archive, replacing a month whose data object is younger than its storage class's minimum duration: what
    #: deleting it early is billed (storage_cost.EarlyDeletion.as_dict: key, storage_class, bytes, days_stored,
    #: minimum_days, days_left, usd); information, the replacement goes ahead
    early_deletion: NotRequired[dict]


def decided(facts: Inspection, status: Status, reason: str, **extra) -> Decision:
    """The decision for one crawl: its identity and figures from its inspection, a status and a reason."""
    return {
        "id": facts["id"],
        "source_id": facts["source_id"],
        "data_version": facts["data_version"],
        "collection_id": facts.get("collection_id"),
        "status": status,
        "reason": reason,
        "bytes": facts.get("bytes", 0),
        "files": facts.get("files", 0),
        "files_count": facts.get("files_count", 0),
        "errors_count": facts.get("errors_count", 0),
        "checksum": facts.get("checksum"),
        **{k: v for k, v in extra.items()},
    }


@dataclass(frozen=True)
class Expected:
    """What inspection saw, which archiving must find again (in a :class:`Plan`: as a dict of these fields)."""

    bytes: int
    files: int
    fingerprint: str
    checksum: str | None = None


class PlanMetadata(TypedDict):
    """Facts from inspection and the decision that go into ``metadata.json``."""

    files_count: int
    errors_count: int
    collection_id: int | None
    reason: str
    compared_with: str | None


class Plan(TypedDict):
    """decide -> archive: one chosen crawl, and what its month held when it was chosen."""

    id: str
    source_id: str
    data_version: str
    log: str
    keep: NotRequired[str | None]  # a ledger.Kept reason: archived, and not deleted locally
    month_held: str | None  # archiving refuses to replace anything else
    inspection: Inspection  # what inspection found (with the checksum, if deciding read it)
    expected: dict  # an Expected's fields
    metadata: PlanMetadata


class Swept(TypedDict):
    """sweep -> summarise: an old crawl deleted (or, on a dry run, to be deleted) by local retention."""

    id: str
    status: Status  # what the ledger said before the sweep: rejected or not_archived
    reason: str
    bytes: int | None
    deleted: list[str]
