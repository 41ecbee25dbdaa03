"""The *Archive crawl* task: archive one chosen crawl under a claim on its month, on the decision as it stands."""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from kingfisher_archive import archive_result, archiver, deletion, replacement
from kingfisher_archive.archive_result import ArchiveResult, Kind
from kingfisher_archive.bucket import ArchivedCrawl, ArchiveFrozenError, Bucket, month_prefix, month_state
from kingfisher_archive.choice import ChecksumFailedError, month_changed, redecide
from kingfisher_archive.crawl import (
    DELETING_SUFFIX,
    CrawlChangedError,
    CrawlReadError,
    SetAsideDiffersError,
    UnsafeCrawlError,
    checksum,
    may_be_on_disk,
)
from kingfisher_archive.deletion import delete_set_aside_if_archived, missing_from
from kingfisher_archive.ledger import Held, Ledger, Status
from kingfisher_archive.mending import finish_deleting, month_now
from kingfisher_archive.month import Month
from kingfisher_archive.problem import Problem
from kingfisher_archive.records import CrawlKey, Expected, Plan
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)


def archive(settings: Settings, client, plan: Plan, before_delete=None) -> ArchiveResult:
    """Archive one chosen crawl, on the decision as it stands now; converge if an earlier try got far.

    Call it under the month's claim (:func:`archive_and_record`): what the month holds then cannot change under it.
    A replacement of the month that an earlier try left half-done is finished or undone first.

    :param before_delete: see :func:`kingfisher_archive.archiver.archive_crawl`.
    """
    key = CrawlKey.of(plan)
    bucket, month = month_now(settings, client, key)
    return _archive(settings, bucket, month, plan, key, before_delete)


def _archive(
    settings: Settings, bucket: Bucket, month: Month, plan: Plan, key: CrawlKey, before_delete
) -> ArchiveResult:
    """:func:`archive`, in the crawl's month as it stands (:func:`~kingfisher_archive.mending.month_now`)."""
    data_version = key.data_version
    directory = key.directory(settings.data_directory)
    archived = month.for_its_crawl(bucket.name)
    gone = not os.path.lexists(directory)
    if gone and archived is not None and archived.data_version == data_version:
        # Set aside by a try the ledger has no record of: deleted only if the archive holds it byte for byte.
        deleted = delete_set_aside_if_archived(settings, bucket, key, archived, plan.get("log"))
        if deleted is not None:
            logger.info("%s is already archived; finished deleting it", plan["id"])
            figures = {
                "id": plan["id"],
                "bytes": archived.bytes,
                "files": plan["expected"]["files"],
                "compressed_bytes": None,
                "deleted": deleted,
            }
            return archive_result.already_archived(figures)
        os.rename(directory + DELETING_SUFFIX, directory)
        logger.warning("%s: found set aside, and not its month's archive byte for byte: renamed back", plan["id"])
        gone = False
    expected = Expected(**plan["expected"])
    metadata = dict(plan["metadata"])
    if archived is not None and archived.data_version == data_version:
        repaired = _repair(settings, bucket, plan, key, archived, before_delete)
        if repaired is not None:
            return repaired
    elif gone or month_changed(plan, archived):
        decision = redecide(settings, bucket, plan, directory_gone=gone)
        chosen = decision["status"] == Status.TO_ARCHIVE
        held = month_state(archived) or "nothing"
        if gone and (archived is None or chosen):
            # Gone, not in its month, and the policy still wants it: something removed a crawl to keep.
            raise FileNotFoundError(
                f"{directory} disappeared after it was inspected, and the bucket does not hold {plan['id']}: "
                "nothing was archived; find out what removed it"
            )
        if not chosen:
            # Its month holds a crawl it does not beat: another run's, or one that replaced it after an earlier
            # try archived it (and deleted it) without recording so.
            logger.info(
                "%s: its month now holds %s, which it does not beat (%s): not archived%s",
                plan["id"],
                held,
                decision["reason"],
                "; its directory is gone" if gone else ", kept on disk",
            )
            return archive_result.decided_again(plan, decision["reason"], decision.get("compared_with"), held)
        logger.info("%s: its month now holds %s; decided again: %s", plan["id"], held, decision["reason"])
        metadata.update(reason=decision["reason"], compared_with=decision.get("compared_with"))
        expected = replace(expected, checksum=expected.checksum or decision["checksum"])
    keep = plan.get("keep")
    if keep:
        metadata["kept_on_disk"] = keep
    request = archiver.ArchiveRequest(
        key,
        plan["log"],
        expected,
        metadata,
        keep_on_disk=bool(keep),
        month_held=month_state(archived),  # a replacement begins only from the month this crawl was chosen against
    )
    result = archiver.archive_crawl(bucket.client, settings, request, before_delete=before_delete)
    if keep:
        logger.info("%s: archived and kept on disk (%s)", plan["id"], keep)
    return archive_result.archived(result, keep)


def _repair(
    settings: Settings, bucket: Bucket, plan: Plan, key: CrawlKey, archived: ArchivedCrawl, before_delete
) -> ArchiveResult | None:
    """The month's ``metadata.json`` names this crawl, still on disk: an earlier try got as far as the archive.

    If the crawl on disk is that archive (same checksum), only the deletion is left to do. If it holds every file of
    that archive byte for byte (and more), archiving it again loses nothing: ``None``, archive it. Anything else is
    held: the archive may be the only whole copy.
    """
    directory = key.directory(settings.data_directory)
    where = f"s3://{bucket.name}/{archived.key}"
    data_key = archived.data_key
    if checksum(directory) == archived.checksum:
        size = archived.raw.get("compressed_bytes")
        if isinstance(size, int) and bucket.data_size(archived) == size:
            figures = {
                "id": plan["id"],
                "bytes": archived.bytes,
                "files": plan["expected"]["files"],
                "compressed_bytes": size,
                "checksum": archived.checksum,
            }
            if plan.get("keep"):
                logger.info("%s: %s already holds this crawl, byte for byte; kept on disk", plan["id"], where)
                return archive_result.already_archived({**figures, "kept": plan["keep"], "deleted": []})
            result = {
                **figures,
                "fingerprint": plan["expected"]["fingerprint"],
                "prefix": month_prefix(key.source_id, key.year, key.month),
                "log": plan["log"],
                "in_place": False,
                "deleted": [],
            }
            logger.info("%s: %s already holds this crawl, byte for byte; deleting it", plan["id"], where)
            if before_delete is not None:
                before_delete(result)
            result["deleted"] = deletion.delete_archived(
                settings.data_directory,
                settings.logs_directory,
                key.source_id,
                key.data_version,
                plan["log"],
                plan["expected"]["fingerprint"],
                lambda now: CrawlChangedError(
                    f"{plan['id']} changed on disk since it was inspected: nothing was deleted; the next run "
                    "inspects it again"
                ),
                checked=(lambda: before_delete({**result, "checked": True})) if before_delete else None,
                log_bytes=archived.log_bytes,
            )
            return archive_result.archived(result)
    why = missing_from(bucket.client, bucket.name, data_key, key.source_id, key.data_version, directory)
    if why is None:
        logger.info(
            "%s: %s names it, and the crawl on disk holds all of that archive: archiving it again",
            *(plan["id"], where),
        )
        return None
    detail = (
        f"{where} names this crawl, but what is on disk differs from that archive ({why}): the archive is kept, and "
        "what is on disk is left for an operator to compare and delete"
    )
    logger.warning("%s: %s", plan["id"], detail)
    return archive_result.held(plan, Held.DIFFERS_FROM_ITS_ARCHIVE, detail)


def archive_and_record(
    settings: Settings,
    client,
    plan: Plan,
    ledger: Ledger,
    run_id: str | None,
    claim_wait: float = 0.0,
    on_wait=None,
) -> ArchiveResult:
    """Archive one planned crawl under the ledger's claim on its month, and record what happened.

    :param plan: one of :func:`~kingfisher_archive.steps.decision.decide`'s plans.
    :param claim_wait: how long to wait for a month another run is archiving into (then decide again under it).
    :param on_wait: called while waiting (a log line, say).
    :returns: what was done, by its ``kind`` (:class:`~kingfisher_archive.archive_result.Kind`): the archive's figures,
        or why it was not archived (``redecided`` or ``held``). A crawl another run archived is not archived twice;
        the crawls ``pending`` on this one are settled. See docs/safety.md, 10.
    :raises ClaimedError: the month was still claimed after ``claim_wait``.
    """
    key = CrawlKey.of(plan)
    with ledger.claim(key.source_id, key.period, run_id, wait=claim_wait, on_wait=on_wait):
        row = ledger.get(key.source_id, key.data_version)
        month = None
        if row and row["status"] == Status.DELETING:
            bucket, month = month_now(settings, client, key)
            result = finish_deleting(settings, bucket, month, ledger, key, row, run_id)
            if result is not None:
                return result
        try:
            if month is None:  # else read above, and unchanged since: finish_deleting changes no object
                bucket, month = month_now(settings, client, key)
            result = _archive(
                settings,
                bucket,
                month,
                plan,
                key,
                before_delete=lambda verified: ledger.mark_deleting(key.source_id, key.data_version, verified, run_id),
            )
        except HOLDS as e:
            result = e
        return _record(ledger, plan, key, result, run_id, settings.data_directory)


def _record(
    ledger: Ledger,
    plan: Plan,
    key: CrawlKey,
    result: ArchiveResult | BaseException,
    run_id: str | None,
    data_directory: str,
) -> ArchiveResult:
    """Record what the archive task did with its crawl, by the result's kind, and settle the crawls ``pending`` on an
    archived one. Returns the result, or, for a crawl the ledger already records as archived, the ledger's record.

    :param result: or one of :data:`HOLDS` the crawl raised: the crawl is held, with the reason and detail it names.
    """
    row = ledger.get(key.source_id, key.data_version)
    deleting = bool(row) and row["status"] == Status.DELETING
    problem, kept_by_ledger = None, False
    if isinstance(result, BaseException):  # noted on a row being deleted, which the next run finishes
        problem = Problem.of(plan["id"], result, deleting=deleting)
        logger.error("%s: held (%s): %s", plan["id"], problem.reason, problem.detail)
        result = archive_result.held(plan, problem.reason, problem.detail)
    elif result["kind"] == Kind.ALREADY_ARCHIVED and row and row["status"] == Status.ARCHIVED and row["result"]:
        by = "an earlier try of this run" if row["run_id"] == run_id else f"run {row['run_id']}"
        logger.info("%s was archived by %s; the ledger keeps that record", plan["id"], by)
        deleted = {"deleted": result["deleted"]} if result["deleted"] else {}
        result = archive_result.already_archived({**row["result"], "archived_by": row["run_id"], **deleted})
        kept_by_ledger = True
    kind = result["kind"]
    if kind == Kind.HELD and deleting:  # its archive is verified; the ledger keeps that, and what stopped it
        if problem is not None:
            ledger.note_problem(key.source_id, key.data_version, problem.reason, problem.detail, run_id)
        return result
    if kind in (Kind.HELD, Kind.DECIDED_AGAIN):
        ledger.record([_not_archived(plan, key, result, row, data_directory)], run_id)
        return result
    if not kept_by_ledger:
        mark = ledger.mark_kept if result.get("kept") else ledger.mark_archived
        mark(key.source_id, key.data_version, archive_result.figures(result), run_id)
    if settled := ledger.settle_pending(plan["id"], run_id):
        logger.info("%s archived: settled %s as not archived", plan["id"], ", ".join(settled))
    return result


def _not_archived(plan: Plan, key: CrawlKey, result: ArchiveResult, row: dict | None, data_directory: str) -> dict:
    """The ledger row of a crawl its archive task held or decided again (``row``: the ledger's row of it now)."""
    if result["kind"] == Kind.HELD:
        status, reason, detail = Status.HELD, result["held"]["reason"], result["held"]["detail"]
        compared_with = None
    else:
        redecided = result["redecided"]
        status, reason, compared_with = Status.NOT_ARCHIVED, redecided["reason"], redecided["compared_with"]
        detail = f"decided again when archiving: its month held {redecided['held']}"
    # A crawl this package deleted, chosen again: what stands at its path was written since. Nothing standing there
    # (looked at after the row was read): another run archived or swept it after this run planned it, and the
    # ledger keeps that record.
    written_again = bool(row) and (
        (
            row["status"] in (Status.ARCHIVED, Status.SWEPT)
            and may_be_on_disk(data_directory, key.source_id, key.data_version)
        )
        or bool((row["facts"] or {}).get("rewritten"))
    )
    if written_again and status == Status.NOT_ARCHIVED:  # never settled unarchived, so never swept
        status, reason, detail = (
            Status.HELD,
            Held.WRITTEN_AGAIN,
            f"it would be not archived ({reason}): {detail}",
        )
    facts = {"bytes": result["bytes"], "files": result["files"], "detail": detail}
    if written_again:
        facts["rewritten"] = True
    if compared_with:
        facts["compared_with"] = compared_with
    return {
        "source_id": key.source_id,
        "data_version": key.data_version,
        "collection_id": plan["metadata"].get("collection_id"),
        "status": status,
        "reason": reason,
        "facts": facts,
        "rewritten": written_again,
    }


#: What holds one crawl (never fails its task): the file system refusing a call on it (EPERM, EACCES, ENOSPC, EDQUOT,
#: EIO, ENOTEMPTY, a directory gone; a file of the crawl that cannot be read while the tar is written, which
#: :class:`~kingfisher_archive.crawl.CrawlReadError` wraps), a path that is not safe, a set-aside crawl that differs,
#: the bucket refusing to change its month. Errors Airflow should retry (the S3 server away, the ledger locked) still
#: fail the task.
HOLDS = (
    ArchiveFrozenError,
    OSError,
    CrawlReadError,
    ChecksumFailedError,
    UnsafeCrawlError,
    SetAsideDiffersError,
    replacement.RefusedError,
)
