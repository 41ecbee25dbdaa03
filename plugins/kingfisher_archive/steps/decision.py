"""The *Decide what to archive* task: the retention policy applied per source and month, against the bucket."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from botocore.exceptions import ClientError

from kingfisher_archive import bucket as layout
from kingfisher_archive import crawl as crawls
from kingfisher_archive import month as months
from kingfisher_archive import policy, replacement
from kingfisher_archive.bucket import ArchivedCrawl, Bucket, MetadataError, MonthIncompleteError, month_state
from kingfisher_archive.errors import RetryableError
from kingfisher_archive.ledger import ClaimedError, Held, Kept, Ledger, Status
from kingfisher_archive.records import CrawlKey, Decision, Inspection, Plan, crawl_id
from kingfisher_archive.s3.errors import ACCESS_DENIED, REFUSALS, error_code
from kingfisher_archive.settings import Settings
from kingfisher_archive.steps.mending import describe, finish_deletes, finish_left_aside, settle_gone

logger = logging.getLogger(__name__)


class ChecksumFailedError(RetryableError):
    """Reading one crawl to compute its checksum failed (the file system refused, or it is not safe to read)."""

    def __init__(self, crawl: str, detail: str) -> None:
        self.crawl = crawl
        super().__init__(f"{crawl}: its checksum cannot be computed: {detail}")


def decide(
    settings: Settings,
    bucket: Bucket,
    inspected: list[Inspection],
    ledger: Ledger | None = None,
    run_id: str | None = None,
) -> dict:
    """Decide every inspected crawl: the plan of the run.

    :param inspected: the run's inspections; failed ones are held, rejected ones recorded as such.
    :param ledger: on a real run (not a dry run), what earlier tries left half-done is finished first
        (:mod:`~kingfisher_archive.steps.mending`), and interrupted replacements of a month the comparison needs.
    :returns: ``{"decisions": [Decision], "to_archive": [Plan]}``; a source whose months cannot be read is held.
        See docs/safety.md, 5 and 8.
    """
    decisions: list[Decision] = []
    written_again: set[str] = set()  # crawls this package deleted, found on disk again
    if ledger is not None:
        finished, problems = finish_deletes(settings, bucket.client, ledger, run_id)
        settle_gone(settings, bucket, ledger, run_id)
        left, more = finish_left_aside(settings, bucket, ledger, run_id)
        problems += more
        deleting = {crawl_id(r["source_id"], r["data_version"]) for r in ledger.deleting()}
        skip = set(finished) | set(left) | deleting | {p.id for p in problems}
        if kept := [f["id"] for f in inspected if f["id"] in skip]:
            logger.info("Not deciding %s now: archived, being deleted, or held by what earlier tries left", kept)
        inspected = [f for f in inspected if f["id"] not in skip]
        decisions.extend(problem.decision() for problem in problems)
        # A crawl on disk that was deleted: its path was written again (remembered in its facts until archived).
        written_again = {crawl_id(*key) for key in ledger.written_again()} & {f["id"] for f in inspected}
    by_source: dict[str, list[Inspection]] = defaultdict(list)
    for facts in inspected:
        if facts.get("error"):
            decisions.append(_decision(facts, Status.HELD, Held.INSPECTION_FAILED, detail=facts["error"]))
        elif facts["reject_reason"]:
            decisions.append(_decision(facts, Status.REJECTED, facts["reject_reason"], detail=facts.get("detail")))
        else:
            by_source[facts["source_id"]].append(facts)

    plans = []
    for source_id, source_facts in sorted(by_source.items()):
        held = None
        recoveries = 0  # each may find, and mend, one more interrupted month
        while True:
            try:
                source_decisions, source_plans = decide_source(settings, bucket, source_id, source_facts)
                break
            except ChecksumFailedError as e:
                # One crawl cannot be read now: it is held, and its source decided without it.
                logger.error("%s: cannot compute its checksum to compare: %s", e.crawl, e)
                failed = next(f for f in source_facts if f["id"] == e.crawl)
                decisions.append(_decision(failed, Status.HELD, Held.CHECKSUM_FAILED, detail=str(e)))
                source_facts = [f for f in source_facts if f is not failed]
            except MonthIncompleteError as e:
                recoveries += 1
                if ledger is None or recoveries == 3 or not _recover(settings, bucket, ledger, run_id, e):
                    held = Held.MONTH_INCOMPLETE, "cannot compare with the bucket", e
                    break
            except MetadataError as e:
                held = Held.UNREADABLE_ARCHIVE_METADATA, "cannot compare with the bucket", e
                break
            except replacement.RecoveryError as e:
                held = Held.MONTH_INCOMPLETE, "a month it needs cannot be mended", e
                break
            except ClientError as e:
                if error_code(e) not in (*REFUSALS, *ACCESS_DENIED):
                    raise  # not this source's: the task fails, and Airflow retries it
                held = Held.BUCKET_REFUSED, "the bucket refused to read a month it needs", e
                break
        if held is not None:
            reason, why, error = held
            logger.error("%s: %s: %s", source_id, why, error)
            source_decisions = [_decision(f, Status.HELD, reason, detail=str(error)) for f in source_facts]
            source_plans = []
        decisions.extend(source_decisions)
        plans.extend(source_plans)
    for d in decisions:
        if d["id"] in written_again:
            d["rewritten"] = True
        if d["id"] in written_again and d["status"] in (Status.REJECTED, Status.NOT_ARCHIVED, Status.PENDING):
            # What was written there since it was deleted would be settled unarchived, and then swept: held.
            was = f"it would be {d['status']} ({d['reason']})" + (f": {d['detail']}" if d.get("detail") else "")
            logger.warning("%s: written again since it was deleted, and not archived: held (%s)", d["id"], was)
            d.update(status=Status.HELD, reason=Held.WRITTEN_AGAIN, detail=was)
    decisions.sort(key=lambda d: d["id"])
    counts = Counter(d["status"] for d in decisions)
    logger.info("Decided %d crawls: %s", len(decisions), ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return {"decisions": decisions, "to_archive": plans}


def _recover(settings: Settings, bucket: Bucket, ledger: Ledger, run_id: str | None, error) -> bool:
    """Finish or undo an interrupted replacement of the month ``error`` names, under its claim; whether one was."""
    source_id, year, month = layout.parse_month_prefix(error.prefix)
    try:
        with ledger.claim(source_id, f"{year:04d}-{month:02d}", run_id):
            done = replacement.recover(bucket.client, bucket.name, source_id, year, month, settings.storage_class)
    except ClaimedError:
        return False  # another try is writing the month right now: that is why it is incomplete
    except replacement.RecoveryError as e:
        logger.error("%s", e)
        return False
    bucket.forget(source_id, year, month)
    return bool(done)


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
    source_facts = list(source_facts)
    facts_by_id = {f["id"]: f for f in source_facts}
    repairs: dict[str, str] = {}  # crawl id -> where the month names it: its metadata.json, or its data
    decisions: list[Decision] = []

    def held_by(y: int, m: int) -> ArchivedCrawl | None:
        """The month's archive; a month holding only what an upload of a crawl being decided left counts as empty
        (not while a journal says a replacement of it was cut short: that is finished or undone first)."""
        found = months.look(bucket, source_id, y, m, facts_by_id)
        if found.holds == months.Holds.OWN_LEFTOVERS:
            repairs[found.leftovers_of] = f"s3://{bucket.name}/{found.prefix}: its data.tar.lz4"
        elif found.holds in (months.Holds.INCOMPLETE, months.Holds.REPLACING):
            raise found.incomplete_error(bucket.name)
        return found.archived

    def month(y: int, m: int):
        found = held_by(y, m)
        return found.candidate() if found else None

    def before(y: int, m: int):
        try:
            found = bucket.archived_before(source_id, y, m)
        except MonthIncompleteError as e:
            _, earlier_year, earlier_month = layout.parse_month_prefix(e.prefix)
            if (found := held_by(earlier_year, earlier_month)) is None:  # raises unless a crawl's own to rewrite
                return before(earlier_year, earlier_month)  # that month is its crawl's to rewrite, if it wins
        return found.candidate() if found else None

    # A crawl still on disk that its month's metadata.json names was chosen, archived, and not yet deleted: it
    # stays the month's choice (never compared with itself, nor, as if the month were empty, with an earlier
    # month), and archiving it finishes the job. Unless less is left on disk than that archive holds.
    named: dict[str, ArchivedCrawl] = {}
    for facts in list(source_facts):
        key = CrawlKey.of(facts)
        found = held_by(key.year, key.month)
        if found is None or found.id != facts["id"]:
            continue
        source_facts.remove(facts)
        if detail := _smaller_than_its_archive(bucket, facts, found):
            logger.warning("%s: %s", facts["id"], detail)
            decisions.append(_decision(facts, Status.HELD, Held.SMALLER_THAN_ITS_ARCHIVE, detail=detail))
            del facts_by_id[facts["id"]]
        else:
            named[facts["id"]] = found
            repairs[facts["id"]] = f"s3://{bucket.name}/{found.prefix}: its metadata.json"
    candidates = [_candidate(settings, f, directory_gone) for f in source_facts]
    outcome = policy.decide_source(candidates, month, before)
    for crawl, found in sorted(named.items()):
        period = CrawlKey.of(facts_by_id[crawl]).period
        rival = next((d for d in outcome if d.archive and CrawlKey.of(facts_by_id[d.id]).period == period), None)
        if rival is not None:
            outcome.append(
                policy.Verdict(
                    crawl, False, policy.Comparison.SAME_PERIOD, compared_with=crawl, superseded_by=rival.id
                )
            )
        else:
            reason = found.raw.get("reason") or policy.Comparison.SAME_PERIOD
            outcome.append(policy.Verdict(crawl, True, reason, compared_with=found.raw.get("compared_with")))
    plans = []
    winners = {d.id: d for d in outcome if d.archive}
    by_id = {d.id: d for d in outcome}
    for decision in outcome:
        facts = facts_by_id[decision.id]
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
        decisions.append(_decision(facts, status, decision.reason, **extra))
        if decision.archive:
            plans.append(_plan(facts, decision, month_state(month_as_held(bucket, CrawlKey.of(facts)))))
    return decisions, plans


def month_as_held(bucket: Bucket, key: CrawlKey):
    """What the crawl's month holds, as a plan records it (its own cut-short upload counts as nothing)."""
    return months.look(bucket, key.source_id, key.year, key.month, {key.id}).archived  # read by the policy already


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


def _candidate(settings: Settings, facts: Inspection, directory_gone: bool) -> policy.Candidate:
    key = CrawlKey.of(facts)
    directory = key.directory(settings.data_directory)

    def checksum() -> str:
        if directory_gone:
            return "(the crawl's directory is gone)"
        logger.info("%s: computing the checksum to compare with an earlier month", facts["id"])
        try:
            facts["checksum"] = crawls.checksum(directory)
        except (OSError, crawls.UnsafeCrawlError) as e:
            raise ChecksumFailedError(facts["id"], describe(e)) from e
        return facts["checksum"]

    return policy.Candidate.of(key, facts, checksum_of=checksum)


def redecide(settings: Settings, bucket: Bucket, plan: Plan, directory_gone: bool = False) -> Decision:
    """Decide a planned crawl again, alone, against what its month holds now (:func:`decide_source`).

    :param directory_gone: see :func:`decide_source`.
    """
    facts: Inspection = {
        "id": plan["id"],
        "source_id": plan["source_id"],
        "data_version": plan["data_version"],
        "collection_id": plan["metadata"].get("collection_id"),
        "reject_reason": None,
        "error": None,
        "log": plan["log"],
        "reused": bool(plan.get("keep")),
        **plan["expected"],
        "files_count": plan["metadata"]["files_count"],
        "errors_count": plan["metadata"]["errors_count"],
    }
    [decision], _ = decide_source(settings, bucket, plan["source_id"], [facts], directory_gone)
    return decision


def _decision(facts: Inspection, status: Status, reason: str, **extra) -> Decision:
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


def record_decisions(ledger: Ledger, decisions: list[Decision], run_id: str | None) -> None:
    """Record every decision; one about a directory written again at the path of a crawl this package deleted
    (``rewritten``: :func:`decide` holds it unless it is to be archived) replaces that crawl's record."""
    rows = []
    for d in decisions:
        facts = {
            k: d[k] for k in ("bytes", "files", "files_count", "errors_count", "checksum") if d.get(k) is not None
        }
        for k in ("detail", "compared_with", "superseded_by", "pending_on", "rewritten"):
            if d.get(k):
                facts[k] = d[k]
        rows.append({**d, "facts": facts})
    ledger.record(rows, run_id)
