"""The *Decide what to archive* task: the retention policy applied per source and month, against the bucket."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from botocore.exceptions import ClientError

from kingfisher_archive import replacement
from kingfisher_archive.bucket import (
    ArchiveFrozenError,
    Bucket,
    MetadataError,
    MonthIncompleteError,
    parse_month_prefix,
)
from kingfisher_archive.choice import ChecksumFailedError, decide_source
from kingfisher_archive.crawl import may_be_on_disk
from kingfisher_archive.ledger import ClaimedError, Held, Ledger, Status
from kingfisher_archive.mending import finish_deletes, finish_left_aside, settle_gone
from kingfisher_archive.records import Decision, Inspection, crawl_id, decided
from kingfisher_archive.s3.errors import ACCESS_DENIED, REFUSALS, error_code
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)


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
        (:mod:`~kingfisher_archive.mending`), and interrupted replacements of a month the comparison needs.
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
        # Unless it is not on disk now (looked at after the ledger was read): an overlapping run archived or swept it
        # after this run inspected it, and this inspection is of the crawl it deleted.
        deleted_since = {
            f["id"]
            for f in inspected
            if f["id"] in written_again
            and not may_be_on_disk(settings.data_directory, f["source_id"], f["data_version"])
        }
        if deleted_since:
            logger.info(
                "Not deciding %s: archived or swept by another run since this run inspected it", sorted(deleted_since)
            )
            inspected = [f for f in inspected if f["id"] not in deleted_since]
            written_again -= deleted_since
    by_source: dict[str, list[Inspection]] = defaultdict(list)
    for facts in inspected:
        if facts.get("error"):
            decisions.append(decided(facts, Status.HELD, Held.INSPECTION_FAILED, detail=facts["error"]))
        elif facts["reject_reason"]:
            decisions.append(decided(facts, Status.REJECTED, facts["reject_reason"], detail=facts.get("detail")))
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
                decisions.append(decided(failed, Status.HELD, Held.CHECKSUM_FAILED, detail=str(e)))
                source_facts = [f for f in source_facts if f is not failed]
            except ArchiveFrozenError as e:
                held = Held.ARCHIVE_THAWING, "a month it needs is cold", e
                break
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
            source_decisions = [decided(f, Status.HELD, reason, detail=str(error)) for f in source_facts]
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
    source_id, year, month = parse_month_prefix(error.prefix)
    try:
        with ledger.claim(source_id, f"{year:04d}-{month:02d}", run_id):
            done = replacement.recover(
                bucket.client, bucket.name, source_id, year, month, settings.storage_class, settings.metadata_class
            )
    except ClaimedError:
        return False  # another try is writing the month right now: that is why it is incomplete
    except replacement.RecoveryError as e:
        logger.error("%s", e)
        return False
    bucket.forget(source_id, year, month)
    return bool(done)


def record_decisions(ledger: Ledger, decisions: list[Decision], run_id: str | None) -> None:
    """Record every decision; one about a directory written again at the path of a crawl this package deleted
    (``rewritten``: :func:`decide` holds it unless it is to be archived) replaces that crawl's record."""
    rows = []
    for d in decisions:
        facts = {
            k: d[k] for k in ("bytes", "files", "files_count", "errors_count", "checksum") if d.get(k) is not None
        }
        for k in ("detail", "compared_with", "superseded_by", "pending_on", "rewritten", "early_deletion"):
            if d.get(k):
                facts[k] = d[k]
        rows.append({**d, "facts": facts})
    ledger.record(rows, run_id)
