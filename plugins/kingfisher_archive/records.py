"""The values that travel through a run, by name: what one task hands the next.

Airflow passes them between tasks through XCom and the ledger keeps some of them, so they are JSON-ready
``TypedDict`` dictionaries (plain dicts at run time, named and typed for a reader and a type checker) of ids,
paths relative to nothing the next host could not see, numbers and reasons; never anything large. A record that
several rooms make has its one constructor here (:func:`decided`; an :class:`ArchiveResult`'s, one per kind).
:class:`CrawlKey` is a crawl's identity, its data version parsed once per task. Which task hands which record to
which (a crawl still loading goes from find to the summary as a :class:`Waiting`): see docs/architecture.md, One
crawl's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
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


class Outcome(StrEnum):
    """What an archive task did with its crawl: the ``kind`` of its :class:`ArchiveResult`."""

    ARCHIVED = "archived"  # archived by this try (or its archive, written by an earlier try, finished)
    KEPT = "kept"  # archived by this try, and kept on disk (a ledger.Kept reason)
    ALREADY_ARCHIVED = "already_archived"  # archived by an earlier try or run; what was left of it done
    DECIDED_AGAIN = "decided_again"  # not archived: its month now holds a crawl it does not beat
    HELD = "held"  # not archived: an error of its own, or its month's archive names it and differs


class ArchiveResult(TypedDict):
    """archive -> ledger -> summarise: what was archived, and what it cost; or why it was not.

    Built only by the constructors below, one per :class:`Outcome`; a reader switches on ``kind``. The ledger keeps
    its :func:`figures` (the result without its kind).
    """

    kind: Outcome
    id: str
    bytes: int
    files: int
    compressed_bytes: int | None  # None when an earlier try had archived it
    deleted: list[str]
    already_archived: NotRequired[bool]
    checksum: NotRequired[str]
    bytes_read: NotRequired[int]
    seconds: NotRequired[float]
    stream_seconds: NotRequired[float]  # read, tar, LZ4, checksum, upload
    promote_seconds: NotRequired[float]  # server-side copies to the final keys (if any), and metadata.json
    in_place: NotRequired[bool]  # written straight to the final keys (the month was empty), not through staging
    prefix: NotRequired[str]
    #: Decided again under the month's claim, and not archived: the month held something it does not beat.
    redecided: NotRequired[dict]
    #: Held, not archived (reason, detail): an error of its own, or its month's metadata.json names it and the crawl on
    #: disk is not that archive.
    held: NotRequired[dict]
    kept: NotRequired[str]  # archived and kept on disk: a ledger.Kept reason
    log_bytes: NotRequired[int]  # the size of the log that was archived
    fingerprint: NotRequired[str]  # what the crawl's listing was when it was read: what its deletion checks
    log: NotRequired[str | None]
    archived_by: NotRequired[str]  # already archived: the run whose record the ledger keeps


class Swept(TypedDict):
    """sweep -> summarise: an old crawl deleted (or, on a dry run, to be deleted) by local retention."""

    id: str
    status: Status  # what the ledger said before the sweep: rejected or not_archived
    reason: str
    bytes: int | None
    deleted: list[str]


def archived(figures: dict, kept: str | None = None) -> ArchiveResult:
    """A crawl this try archived: the archiver's figures; with ``kept`` (a ledger.Kept reason), kept on disk."""
    if kept:
        return {**figures, "kept": kept, "kind": Outcome.KEPT}
    return {**figures, "kind": Outcome.ARCHIVED}


def already_archived(figures: dict) -> ArchiveResult:
    """A crawl an earlier try or run archived: the figures known of its archive, what this try deleted, and, when
    the ledger keeps its record, ``archived_by``: the run that archived it."""
    return {**figures, "already_archived": True, "kind": Outcome.ALREADY_ARCHIVED}


def decided_again(plan: Plan, reason: str, compared_with: str | None, held: str) -> ArchiveResult:
    """A planned crawl decided again under its month's claim, and not archived: its month holds ``held``, which it
    does not beat (``reason``, ``compared_with``: the comparison's)."""
    why = {"reason": reason, "compared_with": compared_with, "held": held}
    return _not_archived(plan, Outcome.DECIDED_AGAIN, redecided=why)


def held(plan: Plan, reason: str, detail: str) -> ArchiveResult:
    """A planned crawl held (a ledger.Held reason, and a detail): nothing archived by this try, nothing deleted."""
    return _not_archived(plan, Outcome.HELD, held={"reason": reason, "detail": detail})


def _not_archived(plan: Plan, kind: Outcome, **why: dict) -> ArchiveResult:
    return {
        "kind": kind,
        "id": plan["id"],
        "bytes": plan["expected"]["bytes"],
        "files": plan["expected"]["files"],
        "compressed_bytes": None,
        "deleted": [],
        **why,
    }


def figures(result: ArchiveResult) -> dict:
    """What the ledger keeps of an archive task's result: all of it but its kind."""
    return {k: v for k, v in result.items() if k != "kind"}
