"""The month's choice: which crawls of a source its months keep, decided against what the bucket holds now.

The *Decide what to archive* step asks it for every acceptable crawl of a source (:func:`decide_source`); the
*Archive crawl* step, under the month's claim, for its one crawl again when the month changed since
(:func:`redecide`). The rules themselves are :mod:`kingfisher_archive.policy`'s; this module reads the bucket for
them and turns their verdicts into the run's records (:class:`~kingfisher_archive.records.Decision`,
:class:`~kingfisher_archive.records.Plan`).
"""

from __future__ import annotations

import logging

from kingfisher_archive import policy, storage_cost
from kingfisher_archive.bucket import ArchivedCrawl, Bucket, MonthIncompleteError, month_state, parse_month_prefix
from kingfisher_archive.crawl import UnsafeCrawlError, checksum
from kingfisher_archive.errors import RetryableError
from kingfisher_archive.ledger import Held, Kept, Status
from kingfisher_archive.month import Holds, look
from kingfisher_archive.problem import describe
from kingfisher_archive.records import CrawlKey, Decision, Inspection, Plan, decided
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)


class ChecksumFailedError(RetryableError):
    """Reading one crawl to compute its checksum failed (the file system refused, or it is not safe to read)."""

    def __init__(self, crawl: str, detail: str) -> None:
        self.crawl = crawl
        super().__init__(f"{crawl}: its checksum cannot be computed: {detail}")


def decide_source(
    settings: Settings, bucket: Bucket, source_id: str, source_facts: list[Inspection], directory_gone: bool = False
) -> tuple[list[Decision], list[Plan]]:
    """Decide one source's acceptable crawls against what the bucket holds now: the one decision of a month.

    :func:`decide` calls it for every crawl of a source; the archive task, under the month's claim, for its one
    crawl again when the month changed since (:func:`redecide`). A crawl its month's ``metadata.json`` names stays
    the month's choice (docs/safety.md, 7).

    :param source_facts: the inspections of acceptable crawls of ``source_id``.
    :param directory_gone: the crawl's directory is gone: a comparison that needs its checksum counts as a win (the
        crawl is then reported missing, never assumed not to matter).
    :returns: a decision for every crawl, and a plan for each chosen one.
    :raises MetadataError: a month the comparison needs cannot be read (``MonthIncompleteError``: it is incomplete).
    :raises OSError: computing a checksum failed.
    """
    decisions, chosen = _decide(settings, bucket, source_id, source_facts, directory_gone)
    plans = [_plan(facts, verdict, month_state(month_as_held(bucket, key))) for facts, verdict, key in chosen]
    return decisions, plans


def _decide(
    settings: Settings, bucket: Bucket, source_id: str, source_facts: list[Inspection], directory_gone: bool
) -> tuple[list[Decision], list[tuple[Inspection, policy.Verdict, CrawlKey]]]:
    """:func:`decide_source`'s decisions, and the inspection, verdict and key of each chosen crawl."""
    source_facts = list(source_facts)
    facts_by_id = {f["id"]: f for f in source_facts}
    keys = {f["id"]: CrawlKey.of(f) for f in source_facts}  # each crawl's data version, parsed once
    repairs: dict[str, str] = {}  # crawl id -> where the month names it: its metadata.json, or its data

    def held_by(y: int, m: int) -> ArchivedCrawl | None:
        """The month's archive; a month holding only what an upload of a crawl being decided left counts as empty
        (not while a journal says a replacement of it was cut short: that is finished or undone first)."""
        found = look(bucket, source_id, y, m, facts_by_id)
        if found.holds == Holds.OWN_LEFTOVERS:
            repairs[found.leftovers_of] = f"s3://{bucket.name}/{found.prefix}: its data object"
        elif found.holds in (Holds.INCOMPLETE, Holds.REPLACING):
            raise found.incomplete_error(bucket.name)
        return found.archived

    def month(y: int, m: int):
        found = held_by(y, m)
        return found.candidate() if found else None

    def before(y: int, m: int):
        try:
            found = bucket.archived_before(source_id, y, m)
        except MonthIncompleteError as e:
            _, earlier_year, earlier_month = parse_month_prefix(e.prefix)
            if (found := held_by(earlier_year, earlier_month)) is None:  # raises unless a crawl's own to rewrite
                return before(earlier_year, earlier_month)  # that month is its crawl's to rewrite, if it wins
        return found.candidate() if found else None

    # A crawl still on disk that its month's metadata.json names was chosen, archived, and not yet deleted: it
    # stays the month's choice (never compared with itself, nor, as if the month were empty, with an earlier
    # month), and archiving it finishes the job. Unless less is left on disk than that archive holds.
    named: dict[str, ArchivedCrawl] = {}
    smaller: list[tuple[Inspection, str]] = []  # held: a crawl its month names with more than is left of it
    for facts in list(source_facts):
        key = keys[facts["id"]]
        found = held_by(key.year, key.month)
        if found is None or found.id != facts["id"]:
            continue
        source_facts.remove(facts)
        if detail := _smaller_than_its_archive(bucket, facts, found):
            logger.warning("%s: %s", facts["id"], detail)
            smaller.append((facts, detail))
            del facts_by_id[facts["id"]]
        else:
            named[facts["id"]] = found
            repairs[facts["id"]] = f"s3://{bucket.name}/{found.prefix}: its metadata.json"
    candidates = [_candidate(settings, f, keys[f["id"]], directory_gone) for f in source_facts]
    outcome = policy.decide_source(candidates, month, before)
    for crawl, found in sorted(named.items()):
        period = keys[crawl].period
        rival = next((d for d in outcome if d.archive and keys[d.id].period == period), None)
        outcome.append(
            policy.named_by_its_month(
                crawl, found.raw.get("reason"), found.raw.get("compared_with"), rival.id if rival else None
            )
        )
    winners, by_id = {d.id for d in outcome if d.archive}, {d.id: d for d in outcome}
    statuses = [(facts_by_id[d.id], *_status(d, winners, by_id, repairs)) for d in outcome]
    for facts, status, _, extra in statuses:
        if status == Status.TO_ARCHIVE and (early := _early_deletion(settings, bucket, keys[facts["id"]])):
            extra["early_deletion"] = early
    decisions = [decided(facts, Status.HELD, Held.SMALLER_THAN_ITS_ARCHIVE, detail=d) for facts, d in smaller]
    decisions += [decided(facts, status, reason, **extra) for facts, status, reason, extra in statuses]
    return decisions, [(facts_by_id[d.id], d, keys[d.id]) for d in outcome if d.archive]


def _status(
    decision: policy.Verdict, winners: set[str], by_id: dict[str, policy.Verdict], repairs: dict[str, str]
) -> tuple[str, str, dict]:
    """A verdict's status, reason and what else its decision records: chosen, pending on a crawl of this run that
    is chosen (``winners``), or not archived."""
    extra = {"compared_with": decision.compared_with, "superseded_by": decision.superseded_by}
    if decision.archive:
        status = Status.TO_ARCHIVE
        if decision.id in repairs:
            extra["detail"] = f"repairs {repairs[decision.id]} names it"
    else:
        winner = _final_winner(decision, by_id)
        status = Status.PENDING if winner in winners else Status.NOT_ARCHIVED
        details = [f"superseded by {decision.superseded_by}"] if decision.superseded_by else []
        if status == Status.PENDING:
            extra["pending_on"] = winner
            details.append(f"settled once {winner} is archived")
        extra["detail"] = "; ".join(details) or None
    return status, decision.reason, extra


def _early_deletion(settings: Settings, bucket: Bucket, key: CrawlKey) -> dict | None:
    """What replacing the crawl's month pays for deleting its data object before its storage class's minimum
    duration (:func:`kingfisher_archive.storage_cost.early_deletion`, an ``EarlyDeletion.as_dict``), or ``None``.

    Read from the source's listing (the object's ``LastModified``, ``Size`` and ``StorageClass``), which the bucket
    lists once per run: no request per object. Information, never a refusal: the replacement goes ahead.
    """
    try:
        found = bucket.archived(key.source_id, key.year, key.month)  # read by the decision already
    except MonthIncompleteError:
        return None
    if found is None or found.id == key.id:  # an empty month, or this crawl's own archive rewritten
        return None
    entry = next((item for _, item in bucket.listing(key.source_id) if item["Key"] == found.data_key), None)
    if entry is None:
        return None
    early = storage_cost.early_deletion(f"s3://{bucket.name}/{found.data_key}", entry, settings.prices)
    return early.as_dict() if early else None


def month_as_held(bucket: Bucket, key: CrawlKey):
    """What the crawl's month holds, as a plan records it (its own cut-short upload counts as nothing)."""
    return look(bucket, key.source_id, key.year, key.month, {key.id}).archived  # read by the policy already


def _smaller_than_its_archive(bucket: Bucket, facts: Inspection, archived: ArchivedCrawl) -> str | None:
    """Why a crawl must not rewrite its month, whose archive is of this crawl: it holds more than is left."""
    if facts["bytes"] >= archived.bytes:
        return None
    return (
        f"s3://{bucket.name}/{archived.key} names this crawl with {archived.bytes} bytes, and {facts['bytes']} are "
        "left on disk (a deletion that was interrupted, or files removed since it was archived): the archive is kept, "
        "and what is on disk is left for an operator to check and delete"
    )


def _final_winner(decision: policy.Verdict, by_id: dict[str, policy.Verdict]) -> str | None:
    """The crawl this one finally lost to: the end of its chain of "superseded by", or what it was compared with."""
    winner = decision.superseded_by or decision.compared_with
    seen = set()
    while winner in by_id and by_id[winner].superseded_by and winner not in seen:
        seen.add(winner)
        winner = by_id[winner].superseded_by
    return winner


def _candidate(settings: Settings, facts: Inspection, key: CrawlKey, directory_gone: bool) -> policy.Candidate:
    directory = key.directory(settings.data_directory)

    def compute_checksum() -> str:
        if directory_gone:
            return "(the crawl's directory is gone)"
        logger.info("%s: computing the checksum to compare with an earlier month", facts["id"])
        try:
            facts["checksum"] = checksum(directory)
        except (OSError, UnsafeCrawlError) as e:
            raise ChecksumFailedError(facts["id"], describe(e)) from e
        return facts["checksum"]

    return policy.Candidate.of(key, facts, checksum_of=compute_checksum)


def redecide(settings: Settings, bucket: Bucket, plan: Plan, directory_gone: bool = False) -> Decision:
    """Decide a planned crawl again, alone, against what its month holds now (:func:`decide_source`), on what its
    inspection found (the plan carries it).

    :param directory_gone: see :func:`decide_source`.
    """
    [decision], _ = _decide(settings, bucket, plan["source_id"], [dict(plan["inspection"])], directory_gone)
    return decision


def _plan(facts: Inspection, decision: policy.Verdict, month_held: str | None) -> Plan:
    return {
        "id": facts["id"],
        "source_id": facts["source_id"],
        "data_version": facts["data_version"],
        "log": facts["log"],
        # Kingfisher Collect writes into it again: archived, and kept on disk.
        "keep": Kept.INCREMENTAL_UPDATES if facts.get("reused") else None,
        # What the crawl's month held when it was chosen: archiving refuses to replace anything else.
        "month_held": month_held,
        "inspection": dict(facts),  # what it is decided again on, if its month changes before it is archived
        "expected": {
            "bytes": facts["bytes"],
            "files": facts["files"],
            "fingerprint": facts["fingerprint"],
            "checksum": facts.get("checksum"),
        },
        "metadata": {
            "files_count": facts["files_count"],
            "errors_count": facts["errors_count"],
            "collection_id": facts.get("collection_id"),
            "reason": decision.reason,
            "compared_with": decision.compared_with,
        },
    }


def month_changed(plan: Plan, archived: ArchivedCrawl | None) -> bool:
    """Whether the month no longer holds what the decision saw (and does not hold this crawl either).

    A decision is only as good as the month it was measured against, and an archive task can run long after it (a
    cleared task, a backfill): then it is decided again (docs/safety.md, 10).
    """
    if archived is not None and archived.data_version == plan["data_version"]:
        return False  # an earlier try of this crawl got that far: it is rewritten
    return "month_held" not in plan or month_state(archived) != plan["month_held"]
