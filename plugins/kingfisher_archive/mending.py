"""What earlier tries left half-done, finished first: deletions of verified crawls, and crawls gone from disk.

The *Decide what to archive* task calls :func:`finish_deletes` and :func:`settle_gone` before it decides; the
*Archive crawl* task calls :func:`finish_deleting` under its month's claim. Why this converges: ``docs/safety.md``.
"""

from __future__ import annotations

import logging
import os

from kingfisher_archive import deletion, replacement, scrapy_log
from kingfisher_archive.archive_result import ArchiveResult, already_archived
from kingfisher_archive.bucket import ArchiveFrozenError, Bucket, month_state
from kingfisher_archive.crawl import (
    DELETING_SUFFIX,
    CrawlChangedError,
    SetAsideDiffersError,
    UnsafeCrawlError,
    on_disk,
    source_id_problem,
)
from kingfisher_archive.ledger import ClaimedError, Gone, Held, Ledger, Status
from kingfisher_archive.month import Month, look
from kingfisher_archive.problem import Problem, describe
from kingfisher_archive.records import CrawlKey
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)

#: The reason recorded for a crawl whose directory disappeared before it was settled, without this package deleting it.
GONE = Gone.NOT_ON_DISK


def month_now(settings: Settings, client, key: CrawlKey) -> tuple[Bucket, Month]:
    """The crawl's month as it stands, once a replacement of it that an earlier try left half-done is finished or
    undone; call it under the month's claim, and the month cannot change under the caller."""
    replacement.recover(
        client, settings.bucket, key.source_id, key.year, key.month, settings.storage_class, settings.metadata_class
    )
    bucket = Bucket(client, settings.bucket, settings.storage_class)
    return bucket, look(bucket, key.source_id, key.year, key.month, {key.id})


def finish_deleting(
    settings: Settings, bucket: Bucket, month: Month, ledger: Ledger, key: CrawlKey, row: dict, run_id: str | None
) -> ArchiveResult | None:
    """Finish deleting a crawl whose verified archive's deletion was cut short (status ``deleting``); call it under
    the month's claim.

    :param month: the crawl's month, :func:`month_now`.
    :param key: the crawl's.
    :param row: the crawl's ledger row, whose ``result`` is the verified archive's identity.
    :returns: the archive result, the crawl recorded ``archived``; or ``None``, the crawl given back to be decided
        again, when its month no longer holds that archive (nor a better one) or the crawl changed since. Nothing of
        the crawl is read again. See docs/safety.md, 6.
    """
    verified = row["result"]
    archived = month.archive(bucket.name)
    if archived is None:
        logger.error("%s: its month is empty, though its archive was verified; not deleting it", key.id)
        # Given back to the run under its own name, to be decided again.
        directory = key.directory(settings.data_directory)
        if os.path.lexists(directory + DELETING_SUFFIX) and not os.path.lexists(directory):
            os.rename(directory + DELETING_SUFFIX, directory)
        gone = True
    elif archived.data_version == key.data_version:
        gone = archived.checksum != verified["checksum"] or bucket.data_size(archived) != verified["compressed_bytes"]
        if gone:
            logger.error(
                "%s: s3://%s/%s is not the archive recorded; not deleting it", key.id, bucket.name, archived.key
            )
    else:
        logger.info("%s: its month now holds %s, which replaced it", key.id, archived.id)
        gone = False
    if gone:  # the archive verified is gone: given back to the run, to be decided again
        ledger.reopen(key.source_id, key.data_version, run_id)
        return None
    try:
        deleted = deletion.delete_archived(
            settings.data_directory,
            settings.logs_directory,
            key.source_id,
            key.data_version,
            verified.get("log"),
            verified["fingerprint"],
            lambda now: CrawlChangedError(f"{key.id} changed on disk after its archive was verified"),
            checked=lambda: ledger.mark_deleting(
                key.source_id, key.data_version, {**verified, "checked": True}, row["run_id"]
            ),
            already_checked=bool(verified.get("checked")),
            log_bytes=verified.get("log_bytes"),
        )
    except CrawlChangedError as e:
        logger.warning("%s: %s; it is decided again", key.id, e)
        ledger.reopen(key.source_id, key.data_version, run_id)
        return None
    logger.info("%s: finished deleting it (its archive was verified by run %s): %s", key.id, row["run_id"], deleted)
    verified = {k: v for k, v in verified.items() if k != "checked"}
    ledger.mark_archived(key.source_id, key.data_version, {**verified, "deleted": deleted}, row["run_id"])
    if settled := ledger.settle_pending(key.id, run_id):
        logger.info("%s archived: settled %s as not archived", key.id, ", ".join(settled))
    return already_archived({**verified, "deleted": deleted, "archived_by": row["run_id"]})


def finish_deletes(settings: Settings, client, ledger: Ledger, run_id: str | None) -> tuple[list[str], list[Problem]]:
    """Finish every deletion that was cut short, each under its month's claim (a month another try holds now is
    left for that try, or the next run).

    :returns: the ids finished, and a :class:`Problem` for each crawl whose deletion failed again (noted on its
        ledger row, which stays ``deleting`` for the next run): one crawl's trouble never stops the others.
    """
    finished, problems = [], []
    for row in ledger.deleting():
        key = CrawlKey.of(row)
        try:
            with ledger.claim(key.source_id, key.period, run_id):
                if (ledger.get(key.source_id, key.data_version) or {}).get("status") == Status.DELETING:
                    bucket, month = month_now(settings, client, key)
                    if finish_deleting(settings, bucket, month, ledger, key, row, run_id) is not None:
                        finished.append(key.id)
        except ClaimedError:
            logger.info("%s: its month is being archived by another try; left for it", key.id)
        except Exception as e:  # one crawl's trouble, whatever it is, stays that crawl's
            problem = Problem.of(key.id, e, deleting=True)
            logger.error("%s: finishing its deletion failed: %s", key.id, problem.detail)
            ledger.note_problem(key.source_id, key.data_version, problem.reason, problem.detail, run_id)
            problems.append(problem)
    return finished, problems


def settle_gone(settings: Settings, bucket: Bucket, ledger: Ledger, run_id: str | None) -> list[str]:
    """Settle the crawls the ledger still expects to decide or archive whose directory is gone from disk (deleted by
    hand, or the last file of a deletion removed just before a kill): ``archived`` if their month holds their
    archive, else ``gone``. Returns their ids. Nothing of them is left to keep a month open; a crawl that cannot be
    settled now (its month cannot be read) is left for the next run."""
    settled = []
    for row in ledger.all():
        if row["status"] not in (Status.TO_ARCHIVE, Status.PENDING, Status.HELD):
            continue
        try:
            key = CrawlKey.of(row)
            if on_disk(settings.data_directory, key.source_id, key.data_version):
                continue
        except (ValueError, OSError, UnsafeCrawlError):
            continue  # not a crawl's name, or cannot be looked at now: not gone
        try:
            archived = bucket.archived(key.source_id, key.year, key.month)
        except Exception as e:  # MetadataError, or the bucket refusing: decided once it can be read
            logger.warning("%s: its directory is gone, and its month cannot be read now (%s)", key.id, describe(e))
            continue
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


def left_aside(data_directory: str) -> list[CrawlKey]:
    """Every ``<source_id>/<data_version>.deleting`` directory (not a link) under the data directory: a crawl renamed
    aside to be deleted. A folder that cannot be listed is skipped with a warning (it is looked at again next run)."""
    found = []
    try:
        sources = sorted(os.listdir(data_directory))
    except OSError as e:
        logger.warning("Cannot list %s for crawls left aside: %s", data_directory, describe(e))
        return []
    for source_id in sources:
        if source_id_problem(source_id):
            continue
        try:
            names = sorted(os.listdir(os.path.join(data_directory, source_id)))
        except NotADirectoryError:
            continue
        except OSError as e:
            logger.warning("Cannot list %s for crawls left aside: %s", source_id, describe(e))
            continue
        for name in names:
            path = os.path.join(data_directory, source_id, name)
            if name.endswith(DELETING_SUFFIX) and os.path.isdir(path) and not os.path.islink(path):
                key = CrawlKey.parse({"source_id": source_id, "data_version": name[: -len(DELETING_SUFFIX)]})
                if key is not None:
                    found.append(key)
    return found


def finish_left_aside(
    settings: Settings, bucket: Bucket, ledger: Ledger, run_id: str | None
) -> tuple[list[str], list[Problem]]:
    """Finish what a deletion left aside that the ledger does not know of (a ledger lost, reset or rebuilt since).

    Under the month's claim: a crawl set aside whose month's archive holds every file of it byte for byte
    (:func:`~kingfisher_archive.deletion.delete_set_aside_if_archived`) is deleted, with its log if the log is the
    size that was archived, and recorded ``archived``; one whose path is free is renamed back, for the run to find
    and decide as any crawl;
    anything else is held (:attr:`~kingfisher_archive.ledger.Held.LEFT_ASIDE`) for a person, and nothing of it
    deleted.

    :returns: the ids deleted or renamed back, and a :class:`Problem` for each crawl held.
    """
    done, problems = [], []
    for key in left_aside(settings.data_directory):
        row = ledger.get(key.source_id, key.data_version)
        if row is not None and row["status"] == Status.DELETING:
            continue  # finish_deletes' (with the identity the ledger recorded)
        try:
            with ledger.claim(key.source_id, key.period, run_id):
                if (what := _finish_left_aside(settings, bucket, ledger, key, run_id)) is not None:
                    done.append(key.id)
                    logger.warning("%s: found set aside, unknown to the ledger: %s", key.id, what)
        except ClaimedError:
            logger.info("%s: set aside, and its month is being archived by another try; left for it", key.id)
        except Exception as e:  # one crawl's trouble stays that crawl's
            if isinstance(e, (OSError, ArchiveFrozenError)):  # the file system, or its month's archive thawing
                problem = Problem.of(key.id, e)
            else:
                problem = Problem(key.id, Held.LEFT_ASIDE, describe(e))
            logger.error("%s: set aside, and it could not be finished: %s", key.id, problem.detail)
            problems.append(problem)
    return done, problems


def _finish_left_aside(settings: Settings, bucket: Bucket, ledger: Ledger, key: CrawlKey, run_id) -> str | None:
    directory = key.directory(settings.data_directory)
    bucket.forget(key.source_id, key.year, key.month)
    archived = bucket.archived(key.source_id, key.year, key.month)
    if archived is not None and archived.data_version == key.data_version:
        log = scrapy_log.find(settings.logs_directory, key.source_id, key.started)
        deleted = deletion.delete_set_aside_if_archived(settings, bucket, key, archived, log)
        if deleted is not None:
            result = {"id": key.id, "bytes": archived.bytes, "checksum": archived.checksum, "deleted": deleted}
            ledger.mark_archived(key.source_id, key.data_version, result, run_id)
            ledger.settle_pending(key.id, run_id)
            return f"s3://{bucket.name}/{archived.key} holds every file of it byte for byte: deleted"
    if not os.path.lexists(directory):
        os.rename(directory + DELETING_SUFFIX, directory)
        return f"its month does not hold it byte for byte: renamed back to {directory}, to be decided"
    held = f"{archived.id}'s archive" if archived is not None else "nothing"
    raise SetAsideDiffersError(
        f"{directory}{DELETING_SUFFIX} is not in its month's archive (the month holds {held}), and "
        f"{directory} was written again since it was set aside: nothing was deleted; compare the two and merge or "
        "delete them by hand"
    )
