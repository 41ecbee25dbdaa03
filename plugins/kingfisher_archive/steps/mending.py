"""What earlier tries left half-done, finished first: deletions of verified crawls, and crawls gone from disk.

The *Decide what to archive* task calls :func:`finish_deletes` and :func:`settle_gone` before it decides; the
*Archive crawl* task calls :func:`finish_deleting` under its month's claim. Why this converges: ``docs/safety.md``.
"""

from __future__ import annotations

import logging
import os

from kingfisher_archive import archiver, replacement
from kingfisher_archive import crawl as crawls
from kingfisher_archive.bucket import Bucket, MetadataError, month_state
from kingfisher_archive.ledger import ClaimedError, Gone, Ledger, Status
from kingfisher_archive.records import ArchiveResult, CrawlKey
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)

#: The reason recorded for a crawl whose directory disappeared before it was settled, without this package deleting it.
GONE = Gone.NOT_ON_DISK


def finish_deleting(settings: Settings, client, ledger: Ledger, row: dict, run_id: str | None) -> ArchiveResult | None:
    """Finish deleting a crawl whose verified archive's deletion was cut short (status ``deleting``); call it under
    the month's claim.

    :param row: the crawl's ledger row, whose ``result`` is the verified archive's identity.
    :returns: the archive result, the crawl recorded ``archived``; or ``None``, the crawl given back to be decided
        again, when its month no longer holds that archive (nor a better one) or the crawl changed since. Nothing of
        the crawl is read again. See docs/safety.md, 6.
    """
    key = CrawlKey.of(row)
    verified = row["result"]
    replacement.recover(client, settings.bucket, key.source_id, key.year, key.month, settings.storage_class)
    bucket = Bucket(client, settings.bucket, settings.storage_class)
    archived = bucket.archived(key.source_id, key.year, key.month)
    if archived is None:
        logger.error("%s: its month is empty, though its archive was verified; not deleting it", key.id)
        _reopen(settings, ledger, key, run_id)
        return None
    if archived.data_version == key.data_version:
        if archived.checksum != verified["checksum"] or bucket.data_size(archived) != verified["compressed_bytes"]:
            logger.error(
                "%s: s3://%s/%s is not the archive recorded; not deleting it", key.id, bucket.name, archived.key
            )
            ledger.reopen(key.source_id, key.data_version, run_id)
            return None
    else:
        logger.info("%s: its month now holds %s, which replaced it", key.id, archived.id)
    try:
        deleted = archiver.delete_archived(
            settings.data_directory,
            settings.logs_directory,
            key.source_id,
            key.data_version,
            verified.get("log"),
            verified["fingerprint"],
            lambda now: crawls.CrawlChangedError(f"{key.id} changed on disk after its archive was verified"),
            checked=lambda: ledger.mark_deleting(
                key.source_id, key.data_version, {**verified, "checked": True}, row["run_id"]
            ),
            already_checked=bool(verified.get("checked")),
        )
    except crawls.CrawlChangedError as e:
        logger.warning("%s: %s; it is decided again", key.id, e)
        ledger.reopen(key.source_id, key.data_version, run_id)
        return None
    logger.info("%s: finished deleting it (its archive was verified by run %s): %s", key.id, row["run_id"], deleted)
    verified = {k: v for k, v in verified.items() if k != "checked"}
    result = {**verified, "deleted": deleted, "already_archived": True, "archived_by": row["run_id"]}
    ledger.mark_archived(key.source_id, key.data_version, {**verified, "deleted": deleted}, row["run_id"])
    if settled := ledger.settle_pending(key.id, run_id):
        logger.info("%s archived: settled %s as not archived", key.id, ", ".join(settled))
    return result


def _reopen(settings: Settings, ledger: Ledger, key: CrawlKey, run_id: str | None) -> None:
    """Give a crawl whose deletion cannot be finished back to the run: under its own name, to be decided again."""
    directory = key.directory(settings.data_directory)
    if os.path.lexists(directory + crawls.DELETING_SUFFIX) and not os.path.lexists(directory):
        os.rename(directory + crawls.DELETING_SUFFIX, directory)
    ledger.reopen(key.source_id, key.data_version, run_id)


def finish_deletes(settings: Settings, client, ledger: Ledger, run_id: str | None) -> list[str]:
    """Finish every deletion that was cut short, each under its month's claim (a month another try holds now is
    left for that try, or the next run). Returns the ids finished."""
    finished = []
    for row in ledger.deleting():
        key = CrawlKey.of(row)
        try:
            with ledger.claim(key.source_id, key.period, run_id):
                if (ledger.get(key.source_id, key.data_version) or {}).get("status") == Status.DELETING:
                    if finish_deleting(settings, client, ledger, row, run_id) is not None:
                        finished.append(key.id)
        except ClaimedError:
            logger.info("%s: its month is being archived by another try; left for it", key.id)
    return finished


def settle_gone(settings: Settings, bucket: Bucket, ledger: Ledger, run_id: str | None) -> list[str]:
    """Settle the crawls the ledger still expects to decide or archive whose directory is gone from disk (deleted by
    hand, or the last file of a deletion removed just before a kill): ``archived`` if their month holds their
    archive, else ``gone``. Returns their ids. Nothing of them is left to keep a month open."""
    settled = []
    for row in ledger.all():
        if row["status"] not in (Status.TO_ARCHIVE, Status.PENDING, Status.HELD):
            continue
        try:
            key = CrawlKey.of(row)
            if crawls.on_disk(settings.data_directory, key.source_id, key.data_version):
                continue
        except (ValueError, OSError, crawls.UnsafeCrawlError):
            continue  # not a crawl's name, or cannot be looked at now: not gone
        try:
            archived = bucket.archived(key.source_id, key.year, key.month)
        except MetadataError:
            continue  # decided with its month, once that can be read
        if archived is not None and archived.data_version == key.data_version:
            result = {"id": key.id, "bytes": archived.bytes, "checksum": archived.checksum, "deleted": []}
            ledger.mark_archived(key.source_id, key.data_version, result, run_id)
            ledger.settle_pending(key.id, run_id)
        else:
            held = month_state(archived) or "nothing"
            detail = f"its directory is gone, though it was {row['status']}; its month holds {held}"
            facts = {**(row["facts"] or {}), "detail": detail}
            ledger.record(
                [{**row, "status": Status.GONE, "reason": GONE, "facts": facts}],
                run_id,
            )
        logger.warning("%s: %s; settled", key.id, "its directory is gone")
        settled.append(key.id)
    return settled
