"""Deleting a crawl once its archive is verified, and comparing a crawl on disk with its month's archive.

A crawl is renamed aside, checked against what was archived, and only then deleted, with its log
(:func:`delete_archived`); a crawl found set aside with no record of what was checked goes only if its month's archive
holds every file of it byte for byte (:func:`delete_set_aside_if_archived`). :func:`missing_from` and :func:`outside`
read an archive back to compare it with a crawl on disk. See docs/safety.md, section 6.
"""

from __future__ import annotations

import logging
import os

from botocore.exceptions import ClientError

from kingfisher_archive import archive_format
from kingfisher_archive.bucket import LOG, ArchivedCrawl, Bucket, open_data
from kingfisher_archive.crawl import (
    DELETING_SUFFIX,
    MiB,
    SetAsideDiffersError,
    checksum,
    crawl_directory,
    measure,
    remove_log,
    remove_set_aside,
    set_aside,
    walk,
)
from kingfisher_archive.records import CrawlKey
from kingfisher_archive.s3.errors import MISSING, error_code
from kingfisher_archive.s3.objects import identity
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)


def delete_archived(
    data_directory: str,
    logs_directory: str,
    source_id: str,
    data_version: str,
    log_path,
    fingerprint: str,
    changed,
    checked=None,
    already_checked: bool = False,
    log_bytes: int | None = None,
) -> list[str]:
    """Delete a crawl whose archive is verified, with its log, only if it is still what was archived.

    The crawl is renamed out of its writers' way (:func:`kingfisher_archive.crawl.set_aside`), or found so by a try
    that stopped, and checked; then only what was set aside and checked is deleted. A directory standing at the
    crawl's own path once it is set aside (Kingfisher Collect resuming the crawl) is a new crawl, never deleted here.

    :param data_directory: Kingfisher Collect's data directory.
    :param logs_directory: Kingfisher Collect's logs directory.
    :param source_id: the crawl's source.
    :param data_version: the crawl's ``YYYYMMDD_HHMMSS``.
    :param log_path: the crawl's log.
    :param fingerprint: the archived crawl's; a crawl with another is renamed back and not deleted.
    :param changed: called with the crawl's :class:`~kingfisher_archive.crawl.Summary` when it differs; returns
        the error raised.
    :param checked: called once the crawl is found to be what was archived, before the first file is deleted.
    :param already_checked: the try that renamed it aside had checked it (files may be gone since): not again.
    :param log_bytes: the size of the log that was archived; a log of another size now is kept.
    :returns: what was deleted.
    :raises kingfisher_archive.crawl.SetAsideDiffersError: what is set aside is not what was archived, and the
        crawl's path was written again meanwhile, so it cannot be renamed back: nothing is deleted.
    """
    directory = crawl_directory(data_directory, source_id, data_version)
    aside = directory + DELETING_SUFFIX
    if os.path.lexists(aside):
        if not already_checked:
            now = measure(aside)
            if now.fingerprint != fingerprint:
                if os.path.lexists(directory):
                    raise SetAsideDiffersError(
                        f"{aside} is not what was archived ({now.files} files and {now.bytes} bytes), and "
                        f"{directory} was written again since it was set aside: nothing was deleted; compare the "
                        "two with the archive and merge or delete them by hand"
                    )
                os.rename(aside, directory)
                raise changed(now)
            if checked is not None:
                checked()
    elif not already_checked and os.path.lexists(directory):
        set_aside(directory, fingerprint, changed)
        if checked is not None:
            checked()
    # Else nothing is aside: deleted by an earlier try (what stands at the path now was written since), or gone.
    deleted = []
    if remove_set_aside(data_directory, source_id, data_version):
        deleted.append(directory)
    removed = remove_log(logs_directory, source_id, log_path, log_bytes)
    if log_path and not removed and os.path.lexists(log_path):
        logger.warning("%s is not the %s-byte log that was archived: kept", log_path, log_bytes)
    if os.path.lexists(directory):
        logger.warning(
            "%s was written again after it was set aside to be deleted: kept, as a new crawl for a later run",
            directory,
        )
    return deleted + removed


def missing_from(client, bucket_name: str, key: str, source_id: str, data_version: str, directory: str) -> str | None:
    """Why the crawl at ``directory`` does not hold every file of the archive at ``key`` byte for byte, if it does not.

    :param client: a boto3 S3 client.
    :param bucket_name: the bucket's name.
    :param key: the archive's key (:attr:`~kingfisher_archive.bucket.ArchivedCrawl.data_key`: either codec).
    :param source_id: the archived crawl's source.
    :param data_version: the archived crawl's ``YYYYMMDD_HHMMSS``.
    :param directory: the crawl on disk.
    :returns: ``None`` if it holds them all (it may hold more), or there is no archive: then archiving it again
        loses nothing of that archive.
    """
    members = archive_format.CrawlMembers(source_id, data_version)
    try:
        opened = archive_format.open_archive(open_data(client, bucket_name, key))
    except ClientError as e:
        if error_code(e) in MISSING:
            return None  # metadata.json without its data: no archive, nothing of it to lose
        raise
    with opened as (tar, _):
        for member in tar:
            relpath = members.relpath(member)
            if not relpath or not member.isreg():
                continue
            try:
                if why := _differs(tar, member, os.path.join(directory, *relpath.split("/")), relpath):
                    return why
            except FileNotFoundError:
                return f"{relpath} is archived but not on disk"
    return None


def _differs(tar, member, path: str, relpath: str) -> str | None:
    """Why the file at ``path`` is not the archived ``member`` byte for byte, if it is not."""
    with open(path, "rb") as local:
        if (size := os.fstat(local.fileno()).st_size) != member.size:
            return f"{relpath} is {size} bytes on disk, {member.size} archived"
        archived = tar.extractfile(member)
        while chunk := archived.read(MiB):
            if local.read(len(chunk)) != chunk:
                return f"{relpath} on disk is not the archived file"
    return None


def outside(client, bucket_name: str, key: str, source_id: str, data_version: str, directory: str) -> str | None:
    """Why not every file at ``directory`` is in the archive at ``key`` byte for byte, if one is not: the other way
    round from :func:`missing_from`. ``None`` means what is on disk is a part of that archive (a deletion cut short
    left it), and deleting it loses nothing.

    :raises UnsafeCrawlError: ``directory`` holds a link or a special file.
    """
    members = archive_format.CrawlMembers(source_id, data_version)
    on_disk = {entry.relpath: entry for entry in walk(directory) if not entry.is_dir}
    matched = set()
    try:
        opened = archive_format.open_archive(open_data(client, bucket_name, key))
    except ClientError as e:
        if error_code(e) in MISSING:
            return f"there is no archive at {key}"
        raise
    with opened as (tar, _):
        for member in tar:
            relpath = members.relpath(member)
            if not relpath or not member.isreg() or relpath not in on_disk:
                continue
            if why := _differs(tar, member, on_disk[relpath].path, relpath):
                return why
            matched.add(relpath)
    if extra := sorted(set(on_disk) - matched):
        return f"{extra[0]} is on disk and not in the archive" + (f" (and {len(extra) - 1} more)" if extra[1:] else "")
    return None


def _part_of(settings: Settings, bucket: Bucket, key: CrawlKey, archived: ArchivedCrawl) -> bool:
    """Whether every file set aside is in the month's archive byte for byte (the archive read back)."""
    aside = key.directory(settings.data_directory) + DELETING_SUFFIX
    why = outside(bucket.client, bucket.name, archived.data_key, key.source_id, key.data_version, aside)
    if why:
        logger.info("%s: set aside, and not a part of its month's archive: %s", key.id, why)
    return why is None


def delete_set_aside_if_archived(
    settings: Settings,
    bucket: Bucket,
    key: CrawlKey,
    archived: ArchivedCrawl,
    log: str | None,
) -> list[str] | None:
    """Delete a crawl found set aside with no record of what was checked, if its month's archive holds every file of
    it byte for byte (the same checksum, read from disk now, or, for what a deletion cut short left, each file found
    in the archive read back; and the archive's data whole): with its log, if the log is the size that was archived.
    Returns what was deleted, or ``None`` (nothing deleted) if the archive does not hold it."""
    size = archived.raw.get("compressed_bytes")
    aside = key.directory(settings.data_directory) + DELETING_SUFFIX
    if os.path.lexists(aside):
        if isinstance(size, int) and bucket.data_size(archived) != size:
            return None
        # The whole crawl (its checksum); else what a deletion cut short left, a part of the archive (read back).
        if checksum(aside) != archived.checksum and not _part_of(settings, bucket, key, archived):
            return None
    log_bytes = archived.log_bytes
    if log_bytes is None and (stored := identity(bucket.client, bucket.name, archived.prefix + LOG)):
        log_bytes = stored[0]  # an archive from before metadata.json recorded its log's size
    deleted = []
    if remove_set_aside(settings.data_directory, key.source_id, key.data_version):
        deleted.append(key.directory(settings.data_directory))
    if log_bytes is not None:  # else no archived log to compare it with: kept
        deleted += remove_log(settings.logs_directory, key.source_id, log, log_bytes)
    if log and os.path.lexists(log):
        logger.warning("%s: kept %s: not known to be the log that was archived", key.id, log)
    return deleted
