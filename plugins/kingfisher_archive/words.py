"""A crawl's fate in words: its status, its reason and the crawl it was measured against, as a person reads them.

The codes (:class:`~kingfisher_archive.ledger.Status`, ``Held``, ``Gone``, :class:`~kingfisher_archive.policy.Reject`,
``Comparison`` and :func:`~kingfisher_archive.policy.not_distinct`'s ``<YYYY>_<M>_not_distinct[_maybe]``) stay in
the ledger, XComs, ``--json`` and metadata.json; every output meant for a person (the catalogue page, the command
line's text, the summary's table and log, the alerts) prints :func:`outcome` and :func:`why` instead. Each code's
phrase is defined once, beside the code (:mod:`kingfisher_archive.vocabulary`); this module only puts them together.
"""

from __future__ import annotations

from kingfisher_archive import ledger, policy, storage_cost

#: What an operator does about a held crawl, by the ledger's reason (docs/operating.md says the same).
HELD_ADVICE = {
    ledger.Held.INSPECTION_FAILED: (
        "fix the cause named in the detail (permissions, an unreadable log); the next run looks again"
    ),
    ledger.Held.CHECKSUM_FAILED: "fix the cause named in the detail (an unreadable file); the next run looks again",
    ledger.Held.UNREADABLE_ARCHIVE_METADATA: (
        "the month's metadata.json cannot be read: run `kingfisher-archive audit`, fix the month by hand; the next "
        "run looks again"
    ),
    ledger.Held.MONTH_INCOMPLETE: (
        "restore the month the detail names, then put its metadata.json back or move its objects aside; the next "
        "run looks again"
    ),
    ledger.Held.SMALLER_THAN_ITS_ARCHIVE: (
        "a deletion was interrupted: check the month (`kingfisher-archive audit --verify-data`, or restore it), "
        "then delete what is left on disk by hand"
    ),
    ledger.Held.DIFFERS_FROM_ITS_ARCHIVE: (
        "check the month (`kingfisher-archive audit --verify-data`, or restore it), then delete what is left on "
        "disk by hand"
    ),
    ledger.Held.REJECTION_NO_LONGER_HOLDS: "nothing: the next run decides it again",
    ledger.Held.DISK_ERROR: (
        "fix the file system error the detail names (permissions, a full disk, a failing device); the next run looks "
        "again"
    ),
    ledger.Held.DELETE_FAILED: (
        "its archive is safe in the bucket: fix what stopped the deletion (the detail names it); the next run "
        "finishes it"
    ),
    ledger.Held.SET_ASIDE_DIFFERS: (
        "compare <data_version>.deleting and the folder written since with the month's archive (restore it), keep "
        "what is new, delete the rest by hand"
    ),
    ledger.Held.BUCKET_REFUSED: (
        "the month is locked (Object Lock, a legal hold) or the credentials lack a permission: wait for the "
        "retention to end, or grant what samples/iam-policy.json lists; the next run looks again"
    ),
    ledger.Held.ARCHIVE_THAWING: (
        "nothing: S3 is making a readable copy of the month's cold archive (the detail says how long); the next run "
        "after that continues"
    ),
    ledger.Held.WRITTEN_AGAIN: (
        "Kingfisher Collect (or a person) wrote into the crawl's folder after it was archived and deleted: archive "
        "what is new by hand, or delete it; it is never swept"
    ),
    ledger.Held.LEFT_ASIDE: (
        "compare <data_version>.deleting with the folder at its path and with the month's archive, merge or delete "
        "by hand; the next run looks again"
    ),
}
DEFAULT_ADVICE = "fix the cause named in the detail; the next run looks again"


def advice(held_reason: str | None) -> str:
    """What an operator does about a crawl held for ``held_reason``."""
    return HELD_ADVICE.get(held_reason, DEFAULT_ADVICE)


#: Every StrEnum whose members are reasons, in the order a reason is looked up.
REASONS = (policy.Reject, policy.Comparison, ledger.Held, ledger.Gone, ledger.Kept)
COMPARISONS = frozenset(policy.Comparison)


def reason_phrase(reason: str | None) -> str:
    """The words of any reason code; a code nobody gave words to reads as itself with spaces, never bare."""
    if not reason:
        return ""
    for vocabulary in REASONS:
        try:
            return vocabulary(reason).phrase
        except ValueError:
            continue
    if parsed := policy.parse_not_distinct(reason):
        return policy.not_distinct_phrase(*parsed)
    return str(reason).replace("_", " ")


def outcome(status: str | None) -> str:
    """The words of a status (``not_archived`` is "not archived")."""
    if not status:
        return ""
    try:
        return ledger.Status(status).phrase
    except ValueError:
        return str(status).replace("_", " ")


def short(other: str | None, crawl_id: str | None = None) -> str:
    """``other`` (a crawl's id), by its data version alone when it is of the same source as ``crawl_id``."""
    if not other:
        return ""
    if crawl_id and "/" in crawl_id and other.startswith(crawl_id.split("/", 1)[0] + "/"):
        return other.split("/", 1)[1]
    return other


def why(
    status: str | None,
    reason: str | None,
    *,
    crawl_id: str | None = None,
    compared_with: str | None = None,
    superseded_by: str | None = None,
    pending_on: str | None = None,
    detail: str | None = None,
    early_deletion: dict | None = None,
) -> str:
    """Why a crawl is where it is, in one phrase: "lost to 20200920_101010: same month, more data".

    :param status: its :class:`~kingfisher_archive.ledger.Status` (or a summary's ``would_archive``/``failed``).
    :param reason: its reason code (reject, comparison, held or gone), as recorded.
    :param crawl_id: the crawl itself, so that a crawl of the same source is named by its data version.
    :param compared_with: the crawl or archive it was measured against.
    :param superseded_by: the later crawl of its month that beat it after it had won its own comparison.
    :param pending_on: the crawl of the same run it lost to, whose archive is not verified yet.
    :param detail: what the step that decided it said (an error, the files left): added in parentheses.
    :param early_deletion: what replacing its month pays for deleting the data object before its storage class's
        minimum duration (a decision's ``early_deletion``): added after a semicolon, "replacing s3://... pays $0.42
        early-deletion: 61 days left of GLACIER's 90-day minimum".
    """
    said = _why(status, reason, crawl_id, compared_with, superseded_by, pending_on, detail)
    return f"{said}; {storage_cost.phrase(early_deletion)}" if early_deletion else said


def _why(status, reason, crawl_id, compared_with, superseded_by, pending_on, detail) -> str:
    extra = f" ({detail})" if detail and not str(detail).startswith("superseded by") else ""
    lost = status in (ledger.Status.NOT_ARCHIVED, ledger.Status.PENDING, ledger.Status.SWEPT)
    if superseded_by and lost:
        # It won its comparison, then a later crawl of its month won: its own reason is the one it won with.
        return f"lost to {short(superseded_by, crawl_id)}: same month, more data" + _unverified(status)
    phrase = reason_phrase(reason)
    other = short(compared_with or pending_on, crawl_id)
    if reason == policy.Comparison.NEW_PERIOD:
        if lost:  # recorded before "superseded by" was
            return "lost to a later crawl of its month" + _unverified(status) + extra
        if other:
            return f"first of its month, and not the same as {other}, the latest earlier archive" + extra
        return "the first archive of its source, or of its month" + extra
    if reason in COMPARISONS:
        if lost and other:
            return f"lost to {other}: {phrase}" + _unverified(status) + extra
        if lost:
            return f"lost to its month's choice: {phrase}" + _unverified(status) + extra
        if other:
            return f"better than {other}: {phrase}" + extra
        return phrase + extra
    if policy.parse_not_distinct(reason) and other:
        return f"{phrase} ({other})" + _unverified(status) + extra
    return phrase + extra


def early_deletion(early: dict, dry_run: bool = False) -> str:
    """A replacement's early-deletion charge as its own line: "replacing s3://... pays $0.42 early-deletion: 61 days
    left of GLACIER's 90-day minimum (information: the replacement went ahead)"."""
    went = "goes ahead on a real run" if dry_run else "went ahead"
    return f"{storage_cost.phrase(early)} (information: the replacement {went})"


def _unverified(status: str | None) -> str:
    return "; not settled until that archive is verified" if status == ledger.Status.PENDING else ""


def sentence(row: dict) -> str:
    """:func:`why` of a record with ``status``, ``reason`` and (or in its ``facts``) the other crawls and detail."""
    facts = row.get("facts") or {}

    def get(key):
        return row.get(key) or facts.get(key)

    return why(
        row.get("status"),
        row.get("reason"),
        crawl_id=row.get("id") or (f"{row['source_id']}/{row['data_version']}" if "source_id" in row else None),
        compared_with=get("compared_with"),
        superseded_by=get("superseded_by"),
        pending_on=get("pending_on"),
        detail=get("detail"),
        early_deletion=get("early_deletion"),
    )
