"""The *Archive crawl* task: archive one chosen crawl under a claim on its month, on the decision as it stands."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from functools import partial

from kingfisher_archive import archiver, policy
from kingfisher_archive import crawl as crawls
from kingfisher_archive.bucket import ArchivedCrawl, Bucket
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.records import ArchiveResult, CrawlKey, Plan
from kingfisher_archive.settings import Settings
from kingfisher_archive.steps.decision import month_state

logger = logging.getLogger(__name__)


def archive(settings: Settings, client, plan: Plan) -> ArchiveResult:
    """Archive one chosen crawl, on the decision as it stands now; converge if an earlier try got far.

    Call it under the month's claim (:func:`archive_and_record`): what the month holds then cannot change under it.
    """
    key = CrawlKey.of(plan)
    source_id, data_version = key.source_id, key.data_version
    directory = key.directory(settings.data_directory)
    bucket = Bucket(client, settings.bucket, settings.storage_class)
    archived = bucket.archived(source_id, key.year, key.month)
    gone = not os.path.lexists(directory)
    if gone and archived is not None and archived.data_version == data_version:
        deleted = crawls.delete_local(
            settings.data_directory, settings.logs_directory, source_id, data_version, plan.get("log")
        )
        logger.info("%s is already archived; finished deleting it", plan["id"])
        return {
            "id": plan["id"],
            "bytes": archived.bytes,
            "files": plan["expected"]["files"],
            "compressed_bytes": None,
            "already_archived": True,
            "deleted": deleted,
        }
    expected = archiver.Expected(**plan["expected"])
    metadata = dict(plan["metadata"])
    if gone or month_changed(plan, archived):
        decision, checksum = redecide(settings, bucket, plan, key, directory_gone=gone)
        held = month_state(archived) or "nothing"
        if gone and (archived is None or decision.archive):
            # Gone, not in its month, and the policy still wants it: something removed a crawl to keep.
            raise FileNotFoundError(
                f"{directory} disappeared after it was inspected, and the bucket does not hold {plan['id']}: "
                "nothing was archived; find out what removed it"
            )
        if not decision.archive:
            # Its month holds a crawl it does not beat: another run's, or one that replaced it after an earlier
            # try archived it (and deleted it) without recording so.
            logger.info(
                "%s: its month now holds %s, which it does not beat (%s): not archived%s",
                plan["id"],
                held,
                decision.reason,
                "; its directory is gone" if gone else ", kept on disk",
            )
            return {
                "id": plan["id"],
                "bytes": expected.bytes,
                "files": expected.files,
                "compressed_bytes": None,
                "deleted": [],
                "redecided": {"reason": decision.reason, "compared_with": decision.compared_with, "held": held},
            }
        logger.info("%s: its month now holds %s; decided again: %s", plan["id"], held, decision.reason)
        metadata.update(reason=decision.reason, compared_with=decision.compared_with)
        expected = replace(expected, checksum=expected.checksum or checksum)
    return archiver.archive_crawl(
        client=client,
        bucket=settings.bucket,
        storage_class=settings.storage_class,
        data_directory=settings.data_directory,
        logs_directory=settings.logs_directory,
        source_id=source_id,
        data_version=data_version,
        log_path=plan["log"],
        expected=expected,
        metadata=metadata,
    )


def month_changed(plan: Plan, archived: ArchivedCrawl | None) -> bool:
    """Whether the month no longer holds what the decision saw (and does not hold this crawl either).

    A decision is only as good as the month it was measured against. An archive task can run long after its
    decision: an operator clears a failed one a day later, or a backfill's runs and the daily run choose different
    crawls of one month and archive them in any order. Archiving on the old decision could replace a better crawl,
    the only copy of which is the month's archive.
    """
    if archived is not None and archived.data_version == plan["data_version"]:
        return False  # an earlier try of this crawl got that far: it is rewritten
    return "month_held" not in plan or month_state(archived) != plan["month_held"]


def redecide(
    settings: Settings, bucket: Bucket, plan: Plan, key: CrawlKey, directory_gone: bool = False
) -> tuple[policy.Decision, str | None]:
    """Decide this one crawl again against what the bucket holds now; also return a checksum if one was needed.

    With its directory gone the checksum cannot be computed: a comparison that needs it counts as a win (the crawl
    is then reported missing, never assumed not to matter).
    """
    directory = key.directory(settings.data_directory)

    def checksum() -> str:
        if directory_gone:
            return "(the crawl's directory is gone)"
        return crawls.checksum(directory)

    candidate = policy.Candidate(
        id=plan["id"],
        year=key.year,
        month=key.month,
        bytes=plan["expected"]["bytes"],
        files_count=plan["metadata"]["files_count"],
        errors_count=plan["metadata"]["errors_count"],
        checksum=plan["expected"].get("checksum"),
        _checksum_of=checksum,
    )

    month = partial(bucket.candidate_in, key.source_id)
    [decision] = policy.decide_source([candidate], month, partial(bucket.candidate_before, key.source_id))
    return decision, candidate.checksum


def archive_and_record(
    settings: Settings,
    client,
    plan: Plan,
    ledger: Ledger,
    run_id: str | None,
    claim_wait: float = 0.0,
    on_wait=None,
) -> ArchiveResult:
    """Archive under a claim in the ledger on the crawl's month, and record what happened.

    A backfill's runs and the scheduled run can choose one crawl, or two crawls of one month. The claim makes the
    second wait (up to ``claim_wait`` seconds) until the first has finished; under it, :func:`archive` finds the
    month as the first left it and decides again if that changed anything. A crawl archived by another run is not
    archived twice, and the ledger keeps that run's record of it. Crawls that were waiting for this one to be
    archived (``pending``) are settled once it is.
    """
    key = CrawlKey.of(plan)
    with ledger.claim(key.source_id, key.period, run_id, wait=claim_wait, on_wait=on_wait):
        result = archive(settings, client, plan)
        row = ledger.get(key.source_id, key.data_version)
        if "redecided" in result:
            redecided = result["redecided"]
            facts = {
                "bytes": result["bytes"],
                "files": result["files"],
                "compared_with": redecided["compared_with"],
                "detail": f"decided again when archiving: its month held {redecided['held']}",
            }
            ledger.record(
                [
                    {
                        "source_id": key.source_id,
                        "data_version": key.data_version,
                        "collection_id": plan["metadata"].get("collection_id"),
                        "status": "not_archived",
                        "reason": redecided["reason"],
                        "facts": facts,
                    }
                ],
                run_id,
            )
            return result
        if result.get("already_archived") and row and row["status"] == "archived" and row["result"]:
            by = "an earlier try of this run" if row["run_id"] == run_id else f"run {row['run_id']}"
            logger.info("%s was archived by %s; the ledger keeps that record", plan["id"], by)
            result = {**row["result"], "already_archived": True, "archived_by": row["run_id"], **_deleted(result)}
        else:
            ledger.mark_archived(key.source_id, key.data_version, result, run_id)
        if settled := ledger.settle_pending(plan["id"], run_id):
            logger.info("%s archived: settled %s as not archived", plan["id"], ", ".join(settled))
    return result


def _deleted(result: ArchiveResult) -> dict:
    return {"deleted": result["deleted"]} if result["deleted"] else {}
