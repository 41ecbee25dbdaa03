"""An archive task's result: one type whose :class:`Kind` says what the task did with its crawl.

Built only by the constructors here, one per kind; a reader switches on ``kind``. It crosses XCom, so it is a
JSON-ready dictionary; the ledger keeps its :func:`figures` (all of it but its kind), as it always has.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NotRequired, TypedDict


class Kind(StrEnum):
    """What an archive task did with its crawl."""

    ARCHIVED = "archived"  # archived by this try (or its archive, written by an earlier try, finished)
    KEPT = "kept"  # archived by this try, and kept on disk (a ledger.Kept reason)
    ALREADY_ARCHIVED = "already_archived"  # archived by an earlier try or run; what was left of it done
    DECIDED_AGAIN = "decided_again"  # not archived: its month now holds a crawl it does not beat
    HELD = "held"  # not archived: an error of its own, or its month's archive names it and differs


class ArchiveResult(TypedDict):
    """archive -> ledger -> summarise: what was archived, and what it cost; or why it was not."""

    kind: Kind
    id: str
    bytes: int
    files: int
    compressed_bytes: int | None  # None when an earlier try had archived it
    deleted: list[str]
    already_archived: NotRequired[bool]
    checksum: NotRequired[str]
    bytes_read: NotRequired[int]
    seconds: NotRequired[float]
    stream_seconds: NotRequired[float]  # read, tar, zstd, checksum, upload
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


def archived(figures: dict, kept: str | None = None) -> ArchiveResult:
    """A crawl this try archived: the archiver's figures; with ``kept`` (a ledger.Kept reason), kept on disk."""
    if kept:
        return {**figures, "kept": kept, "kind": Kind.KEPT}
    return {**figures, "kind": Kind.ARCHIVED}


def already_archived(figures: dict) -> ArchiveResult:
    """A crawl an earlier try or run archived: the figures known of its archive, what this try deleted, and, when
    the ledger keeps its record, ``archived_by``: the run that archived it."""
    return {**figures, "already_archived": True, "kind": Kind.ALREADY_ARCHIVED}


def decided_again(plan: dict, reason: str, compared_with: str | None, held: str) -> ArchiveResult:
    """A planned crawl (a records.Plan) decided again under its month's claim, and not archived: its month holds
    ``held``, which it does not beat (``reason``, ``compared_with``: the comparison's)."""
    why = {"reason": reason, "compared_with": compared_with, "held": held}
    return _not_archived(plan, Kind.DECIDED_AGAIN, redecided=why)


def held(plan: dict, reason: str, detail: str) -> ArchiveResult:
    """A planned crawl (a records.Plan) held (a ledger.Held reason, and a detail): nothing archived by this try,
    nothing deleted."""
    return _not_archived(plan, Kind.HELD, held={"reason": reason, "detail": detail})


def _not_archived(plan: dict, kind: Kind, **why: dict) -> ArchiveResult:
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
