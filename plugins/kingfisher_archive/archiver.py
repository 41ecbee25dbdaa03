"""Archive one crawl: read it once into the bucket, verify it there, and only then delete it locally.

Each byte read feeds the XXH3 checksum and the tar (:mod:`kingfisher_archive.archive_format`), which goes through
a zstd stream (:mod:`kingfisher_archive.compression`) into a multipart upload (:mod:`kingfisher_archive.s3.upload`);
nothing is written to local disk. An empty month is written in place (:func:`_archive_in_place`), a month that holds
objects through ``staging/`` (:func:`_archive_through_staging`); either way ``metadata.json`` comes last, and the
upload is completed only if the crawl is unchanged since inspection. See docs/safety.md, sections 2 to 4.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from kingfisher_archive import archive_format, compression, deletion, replacement
from kingfisher_archive.bucket import (
    CODECS,
    CRAWL_METADATA,
    DATA,
    LOG,
    METADATA,
    ArchiveFrozenError,
    MetadataError,
    month_is_empty,
    month_prefix,
    staging_prefix,
)
from kingfisher_archive.crawl import CrawlChangedError, MiB, Summary, check_log_path
from kingfisher_archive.errors import PermanentError
from kingfisher_archive.records import CrawlKey, Expected
from kingfisher_archive.s3.delete import clean_staging, withdraw
from kingfisher_archive.s3.proof import ColdProofError, md5_etag, verify_read_back
from kingfisher_archive.s3.upload import MultipartUpload, abort_uploads, choose_part_size, put_object_once, upload_file
from kingfisher_archive.settings import DEFAULT_COMPRESSION_LEVEL, Settings
from kingfisher_archive.version import ARCHIVER

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 10.0  # seconds between progress lines in the task log


class UnprovableColdUploadError(PermanentError):
    """A crawl's archive written in place in a cold class that only reading it back could prove (the server stores
    no CRC32 and its ETags are not MD5s): withdrawn, and the task fails without retrying, since each retry would
    upload the whole crawl again only to withdraw it, until the data class is changed."""


class Progress:
    """Logs every few seconds how far an archive has got, so a long upload is not twenty minutes of silence.

    Percent and MiB/s are of the crawl's bytes read (what the operator knows the size of); the compressed MiB sent
    say how far the upload follows. The reading thread calls :meth:`read`, the upload threads :meth:`sent`.
    """

    def __init__(self, label: str, expected: int) -> None:
        self.label = label
        self.expected = max(expected, 1)
        self.bytes_read = 0
        self.bytes_sent = 0
        self.start = self.last = time.monotonic()
        self._lock = threading.Lock()
        self._unchecked = 0

    def read(self, n: int) -> None:
        self.bytes_read += n
        self._unchecked += n
        if self._unchecked >= MiB:  # not the clock and the lock at every read of a small file
            self._unchecked = 0
            self._maybe_log()

    def sent(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n
        self._maybe_log()

    def _maybe_log(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self.last < PROGRESS_INTERVAL:
                return
            self.last = now
        logger.info(
            "%s: %.0f%% read (%.1f of %.1f MiB, %.1f MiB/s), %.1f MiB compressed sent",
            self.label,
            min(100.0, 100 * self.bytes_read / self.expected),
            self.bytes_read / MiB,
            self.expected / MiB,
            self.bytes_read / MiB / max(now - self.start, 1e-9),
            self.bytes_sent / MiB,
        )


@dataclass
class StreamResult(archive_format.TarResult):
    compressed_bytes: int
    etag: str  # the server's, whatever it means: the object's identity in conditions and journals
    crc32: str  # of the compressed object, as S3 spells it
    verified_by: str  # how the bucket was found to hold it (s3.proof's BY_CHECKSUM, BY_ETAG, BY_READ_BACK)


@dataclass(frozen=True)
class UploadedLog:
    size: int
    crc32: str
    etag: str
    verified_by: str


def _upload_log(client, bucket_name: str, key: str, path: str, **kwargs) -> UploadedLog:
    size, crc32, proof = upload_file(client, bucket_name, key, path, **kwargs)
    return UploadedLog(size, crc32, proof.etag, proof.method)


def stream_crawl(
    client,
    bucket_name: str,
    key: str,
    directory: str,
    arcname: str,
    part_size: int,
    progress: Progress | None = None,
    *,
    check=None,
    exclusive: bool = False,
    storage_class: str | None = None,
    crawl: str | None = None,
    level: int = DEFAULT_COMPRESSION_LEVEL,
):
    """Upload the crawl at ``directory`` as ``<arcname>/...`` in a tar inside a zstd stream; read each byte once.

    :param client: a boto3 S3 client (see :func:`kingfisher_archive.s3.client.client_config`).
    :param bucket_name: the bucket's name.
    :param key: where the archive goes (``<prefix>data.tar.zst``).
    :param directory: the crawl directory.
    :param arcname: the tar members' prefix, ``<source_id>/<data_version>``.
    :param part_size: the multipart upload's part size (:func:`kingfisher_archive.s3.upload.choose_part_size`).
    :param progress: logs how far the archive has got, if given.
    :param check: called with the :class:`~kingfisher_archive.archive_format.TarResult` after the last byte is
        read and before the upload is completed; if it raises, the upload is aborted and nothing becomes visible
        at ``key``.
    :param exclusive: complete only if ``key`` is still free (see
        :meth:`kingfisher_archive.s3.upload.MultipartUpload.complete`).
    :param storage_class: the final keys' (``None``: the server's default, for staging).
    :param crawl: the crawl's id, written into the object's user metadata (``x-amz-meta-crawl``), where
        :func:`kingfisher_archive.month.crawl_in` reads it by HEAD, never reading a cold archive.
    :param level: the zstd level.
    :returns: a :class:`StreamResult`, the archive verified in the bucket.
    """
    sent = progress.sent if progress else None
    upload = MultipartUpload(
        client,
        bucket_name,
        key,
        part_size,
        progress=sent,
        storage_class=storage_class,
        metadata={CRAWL_METADATA: crawl} if crawl else None,
    )
    try:
        writer = compression.ZstdWriter(upload, level)
        tar = archive_format.write_tar(directory, arcname, writer, progress=progress.read if progress else None)
        writer.close()
        if check is not None:
            check(tar)
        proof = upload.complete(exclusive=exclusive)
    except ColdProofError as e:
        # Completed, and only a read-back could prove it: withdrawn (exactly it), so the month is left as found.
        withdraw(client, bucket_name, {key: e.etag})
        raise UnprovableColdUploadError(
            f"{e}: it was deleted again and nothing was deleted locally; on this server choose a data class that "
            "reads at once (GLACIER_IR, STANDARD_IA) in the Airflow Variable 'kingfisher_archive_storage_class'"
        ) from e
    except BaseException:
        upload.abort()
        raise
    logger.info("s3://%s/%s: verified in the bucket by %s", bucket_name, key, proof.method)
    return StreamResult(
        tar.summary,
        tar.checksum,
        tar.bytes_read,
        compressed_bytes=upload.size,
        etag=proof.etag,
        crc32=upload.crc32,
        verified_by=proof.method,
    )


@dataclass(frozen=True)
class _Crawl:
    """One crawl on its way into the bucket: where it is read from and where it goes."""

    client: object
    bucket_name: str
    storage_class: str  # the data's
    metadata_class: str  # metadata.json's and scrapy.log's: one that reads at once
    compression_level: int
    source_id: str
    data_version: str
    directory: str
    log_path: str
    expected: Expected
    metadata: dict
    label: str
    final: str  # the month's prefix
    staging: str  # this crawl's staging prefix
    month_held: object  # what the caller decided against (see replacement.begin)


@dataclass
class _Archived:
    stream: StreamResult
    log: UploadedLog
    stream_seconds: float  # read, tar, zstd, checksum, upload
    promote_seconds: float  # server-side copies to the final keys (if any), and metadata.json


@dataclass(frozen=True)
class ArchiveRequest:
    """One crawl to archive, as the archive step asks for it (where it goes comes from :class:`Settings`).

    :param key: the crawl's identity; its data version names its month.
    :param log_path: the crawl's log, directly under the settings' ``logs_directory``.
    :param expected: what inspection saw, which the crawl must still be when the upload is completed.
    :param metadata: the facts from inspection (files and errors counts, collection id, reason) that go into
        ``metadata.json`` beside the ones measured here.
    :param keep_on_disk: archive it and do not delete it locally: a crawl the archive step keeps (a
        :class:`~kingfisher_archive.ledger.Kept` reason), and the benchmark, which archives the same crawl again.
    :param month_held: what the caller decided against, :func:`kingfisher_archive.bucket.month_state` of the
        month's ``metadata.json`` (``None``: none); a month that holds anything else is not replaced (see
        :func:`kingfisher_archive.replacement.begin`). :data:`~kingfisher_archive.replacement.UNCHECKED`: not checked.
    """

    key: CrawlKey
    log_path: str
    expected: Expected
    metadata: dict
    keep_on_disk: bool = False
    month_held: object = replacement.UNCHECKED


def archive_crawl(client, settings: Settings, request: ArchiveRequest, before_delete=None) -> dict:
    """Archive one crawl into its month and delete it locally (unless ``request.keep_on_disk``).

    :param client: a boto3 S3 client (see :func:`kingfisher_archive.s3.client.client_config`).
    :param settings: where the crawl is read from (``data_directory``, ``logs_directory``) and where it goes
        (``bucket``, with ``storage_class`` for the month's objects); the ledger is not used here.
    :param request: the crawl, what inspection saw of it, and what its month held when it was chosen.
    :param before_delete: called with the result (the verified archive's identity: checksum, bytes, compressed
        bytes, fingerprint) before the crawl is touched, and again with ``checked: True`` before its first file is
        deleted (see docs/safety.md, section 6).
    :returns: the figures for the run summary.
    :raises kingfisher_archive.crawl.CrawlChangedError: the crawl changed since inspection, or since it was read.
    :raises kingfisher_archive.replacement.ReplacementInProgressError: another replacement holds the month.
    :raises kingfisher_archive.bucket.MonthIncompleteError: the month holds data that is not this crawl's, or a log,
        without ``metadata.json``.
    :raises kingfisher_archive.replacement.MonthChangedError: the month is not what ``request.month_held`` says.
    :raises kingfisher_archive.replacement.MonthInconsistentError: its ``metadata.json`` describes other data.
    :raises kingfisher_archive.replacement.RefusedError: the bucket refused the replacement (a policy, Object Lock).
    """
    key, expected, bucket_name = request.key, request.expected, settings.bucket
    source_id, data_version, log_path = key.source_id, key.data_version, request.log_path
    check_log_path(settings.logs_directory, source_id, log_path, "archive")
    crawl = _Crawl(
        client=client,
        bucket_name=bucket_name,
        storage_class=settings.storage_class,
        metadata_class=settings.metadata_class,
        compression_level=settings.compression_level,
        source_id=source_id,
        data_version=data_version,
        directory=key.directory(settings.data_directory),
        log_path=log_path,
        expected=expected,
        metadata=request.metadata,
        label=key.id,
        final=month_prefix(source_id, key.year, key.month),
        staging=staging_prefix(source_id, data_version),
        month_held=request.month_held,
    )

    # Leftovers of an earlier try of this task: its staging objects, and its uploads to either place (a month's
    # uploads can only be this crawl's: the ledger's claim on the month keeps every other archive task out).
    clean_staging(client, bucket_name, crawl.staging)
    abort_uploads(client, bucket_name, crawl.final)
    in_place = month_is_empty(client, bucket_name, crawl.final)
    started = time.monotonic()
    logger.info(
        "%s: archiving %d bytes in %d files to s3://%s/%s (%s)",
        crawl.label,
        expected.bytes,
        expected.files,
        bucket_name,
        crawl.final,
        "an empty month: written in place" if in_place else "the month holds objects: through staging",
    )
    archived = _archive_in_place(crawl) if in_place else _archive_through_staging(crawl)
    stream = archived.stream
    seconds = time.monotonic() - started

    result = {
        "id": crawl.label,
        "bytes": stream.summary.bytes,
        "files": stream.summary.files,
        "compressed_bytes": stream.compressed_bytes,
        "checksum": stream.checksum,
        "fingerprint": stream.summary.fingerprint,
        "bytes_read": stream.bytes_read,
        "seconds": round(seconds, 3),
        "stream_seconds": round(archived.stream_seconds, 3),
        "promote_seconds": round(archived.promote_seconds, 3),
        "in_place": in_place,  # written straight to the final keys (the month was empty), not through staging
        "prefix": crawl.final,
        "log": log_path,
        "log_bytes": archived.log.size,
        "deleted": [],
    }
    if not request.keep_on_disk:
        if before_delete is not None:
            before_delete(result)
        result["deleted"] = deletion.delete_archived(
            settings.data_directory,
            settings.logs_directory,
            source_id,
            data_version,
            log_path,
            stream.summary.fingerprint,
            lambda now: _changed_since_read(crawl, stream, now),
            checked=(lambda: before_delete({**result, "checked": True})) if before_delete else None,
            log_bytes=archived.log.size,
        )
    logger.info(
        "%s: archived %d bytes as %d (%.1fx) in %.1f s; deleted %s",
        crawl.label,
        stream.summary.bytes,
        stream.compressed_bytes,
        stream.summary.bytes / max(stream.compressed_bytes, 1),
        seconds,
        ", ".join(result["deleted"]) or "nothing",
    )
    return result


def _archive_in_place(crawl: _Crawl) -> _Archived:
    """An empty month: each object straight to its final key, completed only if the key is still free.

    A multipart upload is invisible until completed, and each is completed with ``If-None-Match: *``: the server
    refuses to complete it over anything that appeared meanwhile. From the moment the data is visible, a failure
    withdraws everything this try wrote (each delete conditional on its ETag, so never a stranger's object), and
    the month is left empty, as it was found.
    """
    client, bucket_name, final = crawl.client, crawl.bucket_name, crawl.final
    started = time.monotonic()
    stream = _stream(crawl, final, exclusive=True, storage_class=crawl.storage_class)
    streamed = time.monotonic()
    written = {final + DATA: stream.etag}  # what this try made visible: withdrawn if a later step fails
    try:
        log = _upload_log(
            client, bucket_name, final + LOG, crawl.log_path, exclusive=True, storage_class=crawl.metadata_class
        )
        written[final + LOG] = log.etag
        body = _metadata_json(crawl, stream, log)
        promoting = time.monotonic()
        key = final + METADATA
        # Withdrawn too if this try fails from here on, even when the response to the write is what was lost.
        written[key] = md5_etag(body)  # an encrypted object's ETag is not this: the withdrawal then stops there
        written[key] = put_object_once(client, bucket_name, key, body, crawl.metadata_class)
        verify_read_back(client, bucket_name, key, body, written[key])
    except BaseException:
        withdraw(client, bucket_name, written)
        raise
    return _Archived(stream, log, streamed - started, time.monotonic() - promoting)


def _archive_through_staging(crawl: _Crawl) -> _Archived:
    """A month that holds objects: stage the archive, verify it, then replace the month as a transaction.

    The archive being replaced stays whole until its successor has been verified in staging. Then
    :mod:`kingfisher_archive.replacement` writes a journal beside the staged objects before it takes anything of
    the month away, so that whatever stops this try, the next try or run finishes the replacement or undoes it.
    """
    client, bucket_name, final, staging = crawl.client, crawl.bucket_name, crawl.final, crawl.staging
    started = time.monotonic()
    # Staging objects keep the server's default storage class: they live minutes.
    stream = _stream(crawl, staging, exclusive=False, storage_class=None)
    streamed = time.monotonic()
    log = _upload_log(client, bucket_name, staging + LOG, crawl.log_path)
    promoting = time.monotonic()
    try:
        journal = replacement.begin(
            client,
            bucket_name,
            month=final,
            crawl=crawl.label,
            staging=staging,
            data=(stream.compressed_bytes, stream.etag, stream.crc32),
            log=(log.size, log.etag, log.crc32),
            metadata=_metadata_json(crawl, stream, log),
            month_held=crawl.month_held,
            data_name=DATA,
        )
    except (
        replacement.ReplacementInProgressError,
        replacement.MonthChangedError,
        MetadataError,
        replacement.RecoveryError,
        ArchiveFrozenError,  # the month's data must be read to learn whose it is, and it is cold: held until thawed
    ):
        # The replacement did not begin (its journal is removed): this try's staged archive goes too.
        clean_staging(client, bucket_name, staging)
        raise
    replacement.replace(client, bucket_name, journal, crawl.storage_class, crawl.metadata_class)
    return _Archived(stream, log, streamed - started, time.monotonic() - promoting)


def _changed_since_read(crawl: _Crawl, stream: StreamResult, now: Summary) -> CrawlChangedError:
    """The crawl on disk is no longer the one in the archive: a file added or rewritten after it was read would be
    deleted unarchived. The archive stays (it is verified); the next run finds its metadata naming this crawl
    still on disk, and archives it again."""
    return CrawlChangedError(
        f"{crawl.label} was archived to s3://{crawl.bucket_name}/{crawl.final} but changed on disk after it was read "
        f"({stream.summary.files} files and {stream.summary.bytes} bytes then, {now.files} files and "
        f"{now.bytes} bytes now, or a file was rewritten): it was not deleted; the next run archives it again"
    )


def _stream(crawl: _Crawl, prefix: str, exclusive: bool, storage_class: str | None) -> StreamResult:
    """Upload the crawl's data to ``<prefix>data.tar.zst``, completed only if the crawl is found unchanged."""
    expected = crawl.expected

    def check_unchanged(tar: archive_format.TarResult) -> None:
        changes = []
        if tar.summary.fingerprint != expected.fingerprint:
            changes.append(
                f"it had {expected.files} files and {expected.bytes} bytes, now {tar.summary.files} files and "
                f"{tar.summary.bytes} bytes (or a file was rewritten)"
            )
        if expected.checksum is not None and tar.checksum != expected.checksum:
            changes.append(f"its checksum was {expected.checksum}, now {tar.checksum}")
        if changes:
            raise CrawlChangedError(
                f"{crawl.label} changed on disk since it was inspected ({'; '.join(changes)}): nothing was archived "
                "or deleted; the next run inspects it again"
            )

    return stream_crawl(
        crawl.client,
        crawl.bucket_name,
        prefix + DATA,
        crawl.directory,
        crawl.label,
        choose_part_size(expected.bytes, expected.files),
        progress=Progress(crawl.label, expected.bytes),
        check=check_unchanged,
        exclusive=exclusive,
        storage_class=storage_class,
        crawl=crawl.label,
        level=crawl.compression_level,
    )


def _metadata_json(crawl: _Crawl, stream: StreamResult, log: UploadedLog) -> bytes:
    """``metadata.json``: the 2021 tool's keys with their meanings, then ours."""
    document = {
        "id": crawl.label,
        "source_id": crawl.source_id,
        "data_version": crawl.data_version,
        "bytes": stream.summary.bytes,
        "checksum": stream.checksum,
        "files_count": crawl.metadata.get("files_count"),
        "errors_count": crawl.metadata.get("errors_count"),
        "reject_reason": None,
        "archived": True,
        # Keys the 2021 tool did not write:
        "data_files": stream.summary.files,
        "compressed_bytes": stream.compressed_bytes,
        "storage_class": crawl.storage_class,  # the data object's: GLACIER and DEEP_ARCHIVE need a thaw to be read
        # The data object's name and how it is compressed (none: data.tar.lz4, LZ4, as the older tools wrote).
        "data_object": DATA,
        "codec": CODECS[DATA],
        "compression_level": crawl.compression_level,
        # What the audit checks at rest without downloading, and how the upload was proved in the bucket.
        "checksums": {DATA: {"crc32": stream.crc32}, LOG: {"crc32": log.crc32, "bytes": log.size}},
        "verified_by": {DATA: stream.verified_by, LOG: log.verified_by},
        "tar_prefix": f"{crawl.label}/",
        "archived_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "archiver": ARCHIVER,
        **{k: v for k, v in crawl.metadata.items() if k not in ("files_count", "errors_count")},
    }
    return json.dumps(document, indent=2, sort_keys=False).encode("utf-8")
