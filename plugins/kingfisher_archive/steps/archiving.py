"""The *Archive crawl* task: archive one chosen crawl under a claim on its month, if the decision still holds."""

from __future__ import annotations

import logging
import os

from kingfisher_archive import archiver
from kingfisher_archive import bucket as layout
from kingfisher_archive import crawl as crawls
from kingfisher_archive.bucket import ArchivedCrawl, Bucket
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.records import ArchiveResult, CrawlKey, Plan
from kingfisher_archive.settings import Settings
from kingfisher_archive.steps.decision import month_state

logger = logging.getLogger(__name__)


class StaleDecisionError(Exception):
    """The crawl's month no longer holds what the decision to archive the crawl was measured against."""


def archive(settings: Settings, client, plan: Plan) -> ArchiveResult:
    """Archive one chosen crawl; converge if an earlier try already archived and deleted it."""
    key = CrawlKey.of(plan)
    source_id, data_version = key.source_id, key.data_version
    directory = key.directory(settings.data_directory)
    archived = Bucket(client, settings.bucket, settings.storage_class).archived(source_id, key.year, key.month)
    if not os.path.lexists(directory):
        if archived is not None and archived.data_version == data_version:
            deleted = crawls.delete_local(
                settings.data_directory, settings.logs_directory, source_id, data_version, plan.get("log")
            )
            logger.info("%s is already archived (an earlier try got that far); finished deleting it", plan["id"])
            return {
                "id": plan["id"],
                "bytes": archived.bytes,
                "files": plan["expected"]["files"],
                "compressed_bytes": None,
                "already_archived": True,
                "deleted": deleted,
            }
        raise FileNotFoundError(
            f"{directory} disappeared after it was inspected, and the bucket does not hold {plan['id']}: "
            "nothing was archived; find out what removed it"
        )
    check_month_unchanged(plan, archived, settings.bucket)
    expected = archiver.Expected(**plan["expected"])
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
        metadata=plan["metadata"],
    )


def check_month_unchanged(plan: Plan, archived: ArchivedCrawl | None, bucket_name: str) -> None:
    """Refuse to archive on a decision that the bucket has since overtaken; ``archived`` is what the month holds.

    A decision is only as good as the month it was measured against. An archive task can run long after its
    decision: an operator clears a failed one a day later, or a backfill and the daily run choose different crawls
    of one month. If in between another crawl was archived into the month (and, being archived, deleted locally),
    archiving this one would overwrite the only copy of that other crawl. So the month must still hold what the
    decision saw, or this crawl itself (an earlier try of this task got that far).
    """
    if archived is not None and archived.data_version == plan["data_version"]:
        return
    if "month_held" not in plan or month_state(archived) != plan["month_held"]:
        key = CrawlKey.of(plan)
        prefix = f"s3://{bucket_name}/{layout.month_prefix(key.source_id, key.year, key.month)}"
        saw = plan.get("month_held", "(not recorded: the decision was made by an older version)") or "nothing"
        raise StaleDecisionError(
            f"{plan['id']} was chosen when {prefix} held {saw}; it now holds {month_state(archived) or 'nothing'}: "
            "nothing was archived or deleted; the next run decides again with what the bucket holds now"
        )


def archive_and_record(settings: Settings, client, plan: Plan, ledger: Ledger, run_id: str | None) -> ArchiveResult:
    """Archive under a claim in the ledger on the crawl's month.

    A backfill and a scheduled run can choose one crawl, or two crawls of one month; the claim fails the second
    until the first has finished, and :func:`check_month_unchanged`, made under it, then stops the second if the
    first changed the month.
    """
    key = CrawlKey.of(plan)
    with ledger.claim(key.source_id, key.period, run_id):
        result = archive(settings, client, plan)
        ledger.mark_archived(plan["source_id"], plan["data_version"], result, run_id)
    return result
