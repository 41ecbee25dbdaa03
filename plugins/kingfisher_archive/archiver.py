"""Archive one crawl: disk -> tar -> LZ4 -> S3 -> verify -> delete locally.

The crawl is read once. Each file's bytes go through one reader that feeds the XXH3 checksum and the tar
stream together; the tar stream goes through an LZ4 frame compressor into a multipart upload whose parts are
sent by background threads while the next part fills. Nothing is written to local disk, and memory holds at
most a few parts whatever the crawl's size.

Where the archive is written depends on what the month already holds:

- *an empty month* (no object under ``<source_id>/<YYYY>/<MM>/``, the usual case): straight to the final keys.
  A multipart upload is invisible until it is completed, and it is completed only after the crawl has been
  found unchanged, with ``If-None-Match: *`` (the server refuses to complete it over anything written meanwhile).
  If a check after that fails, the objects this try wrote are deleted again, so the month is left empty, as it
  was found;
- *a month that holds something* (an earlier crawl being replaced, or what a killed try left): under
  ``staging/`` first, then copied over the final keys once verified, so the archive being replaced stays whole
  until its successor has been checked.

The bucket becomes the only copy, so every step is checked before the next one is trusted:

- each part is sent with its MD5 (``Content-MD5``), so the server refuses a part that arrived damaged;
- the crawl must not have changed on disk since it was inspected (same names, sizes, times; same checksum
  when one was computed), checked before the upload is completed: else it is abandoned, nothing becomes visible
  and nothing is deleted;
- the uploaded object's ETag must equal the multipart ETag computed from the bytes we produced, and its size the
  bytes we counted;
- a promotion copies only that object (``CopySourceIfMatch``) and the final object's size must match;
- ``metadata.json`` is written last, with its MD5, and read back;
- only then are the crawl directory, its log and the log's ``.stats`` deleted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import queue
import struct
import tarfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import lz4.block
import xxhash
from botocore.config import Config
from botocore.exceptions import ClientError

from kingfisher_archive import bucket as layout
from kingfisher_archive import crawl as crawls

logger = logging.getLogger(__name__)

MiB = 1 << 20
#: 8 MiB, as boto3 uses: smaller parts shorten the wait for the last ones once the crawl is read (16 MiB parts
#: measured 10 to 30% slower on a 200 MiB crawl); S3 allows 10,000 parts, so big crawls get bigger parts.
MIN_PART_SIZE = 8 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
#: The largest object a single CopyObject request may copy.
COPY_OBJECT_LIMIT = 5 * 1024 * MiB
#: Leave room under the 10,000-part limit for LZ4 expanding incompressible data and tar's headers.
PART_HEADROOM = 0.9
READ_SIZE = MiB
#: Threads compressing LZ4 blocks; on 2 cores two keep both busy while the main thread reads and tars.
COMPRESS_THREADS = 2
LZ4_BLOCK_SIZE = 4 * MiB
LZ4_MAGIC = b"\x04\x22\x4d\x18"
#: Parts uploaded at once: one connection rarely fills the link, and each costs a part of memory.
UPLOAD_THREADS = 3
PROGRESS_INTERVAL = 10.0  # seconds between progress lines in the task log


class CrawlChangedError(Exception):
    """The crawl on disk is not the one that was inspected: archiving it would archive something undecided."""


class CrawlReadError(Exception):
    """A file of the crawl cannot be read: nothing is archived or deleted until it can."""


class VerificationError(Exception):
    """The bucket does not hold what we sent."""


def client_config(base: Config | None = None) -> Config:
    """``base`` (a connection's botocore configuration, or none) for an archiving client: one checksum per byte.

    Every part and every object we write carries its MD5 (``Content-MD5``, a signed header, so it cannot be
    swapped in transit), the server refuses a body that does not match it, and the ETag checks compare the
    server's MD5s with ours. By default botocore would hash each body twice more: a CRC32 header on every upload
    and, over plain HTTP (MinIO or SeaweedFS on a LAN, the tests, the benchmark), a SHA-256 of the body for the
    signature, which the server then computes again to check. On this machine SHA-256 runs at 350 MiB/s, slower
    than LZ4, and it was the largest cost of an upload after compression; neither adds safety to the MD5. (Over
    HTTPS botocore already leaves the SHA-256 out when a checksum is sent.) Settings given in the connection's
    ``config_kwargs`` win: ``{"s3": {"payload_signing_enabled": true}}``, ``request_checksum_calculation``.
    """
    base = base or Config()
    ours = {"s3": {"payload_signing_enabled": False, **(base.s3 or {})}}  # merge() replaces s3 whole
    if base.request_checksum_calculation is None:
        ours["request_checksum_calculation"] = "when_required"
    return base.merge(Config(**ours))


def choose_part_size(expected_bytes: int, files: int = 0) -> int:
    """A part size (whole MiB) such that even an incompressible crawl fits in S3's 10,000 parts."""
    # LZ4 can expand incompressible input by ~0.4%; tar adds a 512-byte header (and padding) per file.
    upper_bound = expected_bytes * 1.01 + files * 1536 + MiB
    size = max(MIN_PART_SIZE, math.ceil(upper_bound / (MAX_PARTS * PART_HEADROOM) / MiB) * MiB)
    if size > MAX_PART_SIZE:
        raise ValueError(f"a crawl of {expected_bytes} bytes does not fit in one S3 object")
    return size


@contextmanager
def refusing_to_overwrite(bucket: str, key: str, exclusive: bool):
    """Turn the server's refusal of a conditional write (``If-None-Match: *``) into a message that says why."""
    try:
        yield
    except ClientError as e:
        if not exclusive or e.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
            raise
        raise VerificationError(
            f"s3://{bucket}/{key} appeared while this crawl was being archived into its empty month (another "
            "writer?): it was left alone, this try's upload was abandoned and nothing was deleted locally"
        ) from e


def _md5_b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class MultipartUpload:
    """A write-only file object that streams into one S3 multipart upload.

    Parts are uploaded by a few background threads while the next part fills, so reading and compressing overlap
    with the network; at most :data:`UPLOAD_THREADS` parts are in flight, one waits for a thread and one is filling,
    so memory stays at a few parts whatever the size of the crawl.
    """

    def __init__(
        self, client, bucket: str, key: str, part_size: int, progress=None, storage_class: str | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self.size = 0
        self._chunks: list[memoryview] = []
        self._filled = 0
        self._digests: dict[int, bytes] = {}
        self._etags: dict[int, str] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=1)  # a part ready when a thread is
        self._error: BaseException | None = None
        self._progress = progress
        self._lock = threading.Lock()
        self._sent = 0
        extra = {"StorageClass": storage_class} if storage_class else {}
        self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
        self._threads = [
            threading.Thread(target=self._worker, name=f"upload {key} #{n}", daemon=True)
            for n in range(UPLOAD_THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            number, data = item
            if self._error is not None:
                continue  # drain: the main thread will raise
            try:
                digest = hashlib.md5(data, usedforsecurity=False).digest()
                response = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=_md5_b64(digest),
                )
                if response["ETag"].strip('"') != digest.hex():
                    raise VerificationError(f"part {number} of {self.key}: the server's ETag is not our MD5")
                with self._lock:
                    self._digests[number] = digest
                    self._etags[number] = response["ETag"]
                if self._progress:
                    self._progress(len(data))
            except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
                self._error = e

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data) -> int:
        # Chunks are kept as views and joined once per part (one copy). Every part but the last is exactly
        # part_size: equal sizes let the allocator hand each part's memory back when it is freed, where parts of
        # varying sizes fragment the heap and memory grows with the crawl's size.
        if not isinstance(data, bytes):
            data = bytes(data)  # the caller may reuse its buffer
        size = len(data)
        self.size += size
        view = memoryview(data)
        while view:
            take = min(len(view), self.part_size - self._filled)
            self._chunks.append(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.part_size:
                self._enqueue(b"".join(self._chunks))
                self._chunks, self._filled = [], 0
        return size

    def _enqueue(self, data: bytes) -> None:
        self._raise_if_failed()
        self._sent += 1
        self._queue.put((self._sent, data))

    def _stop_workers(self, timeout: float | None = None) -> None:
        for _ in [thread for thread in self._threads if thread.is_alive()]:  # none left after complete()
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                pass
        for thread in self._threads:
            thread.join(timeout)

    def complete(self, exclusive: bool = False) -> str:
        """Finish the upload and return the ETag S3 must report for exactly these bytes.

        ``exclusive`` asks the server to refuse (412 Precondition Failed) if the key holds an object by then.
        """
        if self._chunks or not self._sent:
            self._enqueue(b"".join(self._chunks))
            self._chunks, self._filled = [], 0
        self._stop_workers()
        self._raise_if_failed()
        numbers = sorted(self._etags)
        if numbers != list(range(1, self._sent + 1)):
            raise VerificationError(f"{self.key}: parts {numbers} were uploaded, {self._sent} were sent")
        with refusing_to_overwrite(self.bucket, self.key, exclusive):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": self._etags[n]} for n in numbers]},
                **({"IfNoneMatch": "*"} if exclusive else {}),
            )
        combined = hashlib.md5(b"".join(self._digests[n] for n in numbers), usedforsecurity=False).hexdigest()
        return f'"{combined}-{len(numbers)}"'

    def abort(self) -> None:
        """Give the upload up: nothing becomes visible, and the server frees the parts."""
        self._error = self._error or RuntimeError("aborted")
        self._stop_workers(timeout=60)
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception:  # noqa: BLE001 - the audit finds what an abort could not remove
            logger.warning("Could not abort the multipart upload of %s", self.key, exc_info=True)


def _frame_header() -> bytes:
    """An LZ4 frame header: version 1, independent blocks, block checksums, 4 MiB blocks (LZ4 frame format 1.6)."""
    descriptor = bytes([0b0111_0000, 0x70])  # FLG: version 01, B.Indep, B.Checksum; BD: block max size 4 MiB
    header_checksum = (xxhash.xxh32_intdigest(descriptor) >> 8) & 0xFF
    return LZ4_MAGIC + descriptor + bytes([header_checksum])


def _compress_block(chunk) -> tuple[bytes, bytes, bytes]:
    """One independent block: its size word, its bytes (as they are when LZ4 cannot shrink them), its checksum.

    The stored bytes never share memory with ``chunk``, so the block can be reused as soon as this returns (an
    incompressible block is copied here, on a compressing thread, rather than by the thread that reads).
    """
    compressed = lz4.block.compress(chunk, mode="default", store_size=False)
    if len(compressed) < len(chunk):
        size, stored = len(compressed), compressed
    else:
        size, stored = len(chunk) | 0x8000_0000, bytes(chunk)
    return struct.pack("<I", size), stored, struct.pack("<I", xxhash.xxh32_intdigest(stored))


class LZ4Writer:
    """The uncompressed side of one standard LZ4 frame: the tar is written here, compressed bytes go to ``sink``.

    LZ4 is the most expensive step of archiving, so the frame is written by hand with *independent* blocks that
    threads compress in parallel (python-lz4 and xxhash release the GIL) and that are written in order. The result
    is one ordinary LZ4 frame: ``unlz4``, ``lz4 -d`` and ``lz4.frame.decompress`` all read it and check each block's
    checksum. Blocks carry checksums rather than the frame carrying one content checksum because a content checksum
    is one sequential pass over every uncompressed byte on the thread that writes the tar, which was the bottleneck;
    block checksums are computed by the compressing threads over the (smaller) stored bytes, and the uncompressed
    content is checked on restore against the XXH3 checksum in ``metadata.json`` anyway. File data is read from
    disk straight into the current block (:meth:`reserve`, :meth:`commit`), tar headers are copied in, and a full
    block is handed to a thread whole and reused once it has been compressed, so no byte is copied on its way in
    and no fresh memory is faulted in per block. Memory: a few 4 MiB blocks in flight.
    """

    def __init__(self, sink, threads: int = COMPRESS_THREADS) -> None:
        self.sink = sink
        self._free: list[bytearray] = []  # blocks whose compression is done, for reuse (no fresh pages to fault in)
        self._new_block()
        self._threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lz4")
        self._pending: deque = deque()
        self.sink.write(_frame_header())

    def _new_block(self) -> None:
        self._block = self._free.pop() if self._free else bytearray(LZ4_BLOCK_SIZE)
        self._view = memoryview(self._block)
        self._filled = 0

    def write(self, data) -> int:
        size = len(data)
        if self._filled + size < LZ4_BLOCK_SIZE:  # the common case: a tar header or padding fits in the block
            self._block[self._filled : self._filled + size] = data
            self._filled += size
            return size
        view = memoryview(data).cast("B")
        while view:
            space = self.reserve()
            take = min(len(view), len(space))
            space[:take] = view[:take]
            self.commit(take)
            view = view[take:]
        return size

    def reserve(self) -> memoryview:
        """The free space of the current block (at least one byte), to read into directly; then :meth:`commit`."""
        return self._view[self._filled :]

    def commit(self, n: int) -> None:
        """Count ``n`` bytes written into the space :meth:`reserve` gave."""
        self._filled += n
        if self._filled == LZ4_BLOCK_SIZE:
            self._submit(self._block)
            self._new_block()

    def _submit(self, chunk) -> None:
        self._pending.append((self._pool.submit(_compress_block, chunk), chunk))
        while len(self._pending) > 2 * self._threads:
            self._write_oldest()

    def _write_oldest(self) -> None:
        future, chunk = self._pending.popleft()
        parts = future.result()
        for part in parts:
            self.sink.write(part)
        if isinstance(chunk, bytearray):  # a full block: free again (the stored bytes are a copy or compressed)
            self._free.append(chunk)

    def close(self) -> None:
        try:
            if self._filled:
                self._submit(bytes(self._view[: self._filled]))
                self._filled = 0
            while self._pending:
                self._write_oldest()
            self.sink.write(struct.pack("<I", 0))  # end mark
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class TarResult:
    summary: crawls.Summary
    checksum: str
    bytes_read: int


@dataclass
class StreamResult(TarResult):
    compressed_bytes: int
    etag: str


def _tarinfo(entry: crawls.Entry, name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = entry.mtime_ns // 1_000_000_000
    info.mode = entry.mode & 0o7777
    if entry.is_dir:
        info.type = tarfile.DIRTYPE
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size
    return info


#: Octal fields of a ustar header hold up to 11 digits; beyond that (8 GiB files) tarfile writes base-256.
_OCTAL_LIMIT = 8**11
_HEADER_TAIL = tarfile.NUL * 100 + tarfile.GNU_MAGIC + tarfile.NUL * (32 + 32 + 8 + 8 + 155 + 12)


def _header(entry: crawls.Entry, name: str) -> bytes:
    """The GNU tar header of one entry: the bytes :meth:`tarfile.TarInfo.tobuf` makes, built without its overhead.

    Names over 100 bytes (a GNU long-name record first) and numbers too big for octal go through tarfile itself.
    """
    encoded = (f"{name}/" if entry.is_dir else name).encode("utf-8", "surrogateescape")
    mtime = entry.mtime_ns // 1_000_000_000
    if len(encoded) > tarfile.LENGTH_NAME or not (0 <= mtime < _OCTAL_LIMIT and entry.size < _OCTAL_LIMIT):
        return _tarinfo(entry, name).tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    block = b"".join(
        (
            encoded.ljust(tarfile.LENGTH_NAME, tarfile.NUL),
            b"%07o\x00" % (entry.mode & 0o7777),
            b"0000000\x00" * 2,  # uid, gid
            b"%011o\x00" % (0 if entry.is_dir else entry.size),
            b"%011o\x00" % mtime,
            b"        ",  # the checksum field counts as spaces in the checksum
            tarfile.DIRTYPE if entry.is_dir else tarfile.REGTYPE,
            _HEADER_TAIL,
        )
    )
    return block[:148] + b"%06o\x00" % sum(block) + block[155:]


def write_tar(directory: str, arcname: str, sink, progress=None) -> TarResult:
    """Write the crawl at ``directory`` to ``sink`` as a GNU tar of ``<arcname>/...``; read each byte once.

    The bytes are exactly those of :class:`tarfile.TarFile` writing the same members (a test compares them): each
    header (see :func:`_header`), then the file's bytes and NUL padding to 512 bytes, and at the end two NUL blocks
    and padding to tar's 10,240-byte record. ``TarFile.addfile`` is not used because on crawls of many small files
    its per-member costs made it the bottleneck of archiving: a copy of every ``TarInfo``, a header built field by
    field, a fresh buffer for every read, and a list of every member kept until the end, which also grows memory
    with the number of files and makes the garbage collector walk it again and again. Here each read goes straight
    into the sink's LZ4 block (or one reused buffer) and feeds the XXH3 checksum and the sink in the same pass.
    ``progress``, when given, is called with the size of each read.
    """
    hasher = xxhash.xxh3_128()
    builder = crawls.FingerprintBuilder()
    reserve = getattr(sink, "reserve", None)  # read straight into the LZ4 block when the sink offers it
    view = None if reserve else memoryview(bytearray(READ_SIZE))  # else one buffer, reused for every read
    bytes_read = 0
    offset = 0
    for entry in crawls.walk(directory):
        builder.add(entry)
        name = f"{arcname}/{entry.relpath}" if entry.relpath else arcname
        header = _header(entry, name)
        sink.write(header)
        offset += len(header)
        if entry.is_dir:
            continue
        try:
            f = open(entry.path, "rb", buffering=0)
        except OSError as e:
            raise CrawlReadError(
                f"cannot read {entry.relpath!r} in the crawl ({e.strerror}): nothing was archived or deleted"
            ) from e
        with f:
            remaining = entry.size
            while remaining:
                target = reserve() if reserve else view
                try:
                    n = f.readinto(target[: min(remaining, READ_SIZE, len(target))])
                except OSError as e:
                    raise CrawlReadError(
                        f"cannot read {entry.relpath!r} in the crawl ({e.strerror or e}): "
                        "nothing was archived or deleted"
                    ) from e
                if not n:
                    raise CrawlChangedError(f"{entry.relpath!r} changed while it was being read: it became shorter")
                chunk = target[:n]
                hasher.update(chunk)
                if reserve:
                    sink.commit(n)
                else:
                    sink.write(chunk)
                remaining -= n
                bytes_read += n
                if progress:
                    progress(n)
            after = os.fstat(f.fileno())
            if after.st_size != entry.size or after.st_mtime_ns != entry.mtime_ns:
                raise CrawlChangedError(f"{entry.relpath!r} changed while it was being read")
        offset += entry.size
        if padding := -entry.size % tarfile.BLOCKSIZE:
            sink.write(tarfile.NUL * padding)
            offset += padding
    end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)
    offset += len(end)
    sink.write(end + tarfile.NUL * (-offset % tarfile.RECORDSIZE))
    return TarResult(builder.summary(), hasher.hexdigest(), bytes_read)


def stream_crawl(
    client,
    bucket: str,
    key: str,
    directory: str,
    arcname: str,
    part_size: int,
    progress: Progress | None = None,
    *,
    check=None,
    exclusive: bool = False,
    storage_class: str | None = None,
):
    """Upload the crawl at ``directory`` as ``<arcname>/...`` in a tar inside an LZ4 frame; read each byte once.

    ``check(tar_result)`` runs after the last byte is read and before the upload is completed: if it raises, the
    upload is aborted and nothing ever becomes visible at ``key``. ``exclusive``: see
    :meth:`MultipartUpload.complete`. ``storage_class``: the final keys' (None: the server's default, for staging).
    """
    sent = progress.sent if progress else None
    upload = MultipartUpload(client, bucket, key, part_size, progress=sent, storage_class=storage_class)
    try:
        lz4_writer = LZ4Writer(upload)
        tar = write_tar(directory, arcname, lz4_writer, progress=progress.read if progress else None)
        lz4_writer.close()
        if check is not None:
            check(tar)
        etag = upload.complete(exclusive=exclusive)
    except BaseException:
        upload.abort()
        raise
    return StreamResult(tar.summary, tar.checksum, tar.bytes_read, compressed_bytes=upload.size, etag=etag)


def upload_file(
    client, bucket: str, key: str, path: str, exclusive: bool = False, storage_class: str | None = None
) -> tuple[int, str]:
    """Upload a local file (a log) through the same verified multipart path; return (size, expected ETag)."""
    size = os.path.getsize(path)
    upload = MultipartUpload(client, bucket, key, choose_part_size(size), storage_class=storage_class)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(READ_SIZE):
                upload.write(chunk)
        etag = upload.complete(exclusive=exclusive)
    except BaseException:
        upload.abort()
        raise
    return upload.size, etag


def _head(client, bucket: str, key: str) -> dict:
    return client.head_object(Bucket=bucket, Key=key)


def verify_object(client, bucket: str, key: str, size: int, etag: str | None = None) -> None:
    """Check that ``key`` holds ``size`` bytes (and, when given, exactly the bytes with ``etag``)."""
    head = _head(client, bucket, key)
    if head["ContentLength"] != size:
        raise VerificationError(f"s3://{bucket}/{key} holds {head['ContentLength']} bytes, we sent {size}")
    if etag is not None and head["ETag"] != etag:
        raise VerificationError(f"s3://{bucket}/{key} has ETag {head['ETag']}, our bytes give {etag}")


def promote(client, bucket: str, source: str, target: str, size: int, etag: str, storage_class: str) -> None:
    """Copy the verified staging object to its final key and check the result.

    One ``CopyObject`` up to S3's 5 GiB limit for it (about a third faster than boto3's managed copy, which first
    asks for the object's size and then copies it in 8 MiB ranges); the managed copy, in parts, beyond.
    """
    extra = {"CopySourceIfMatch": etag, "StorageClass": storage_class}
    if size <= COPY_OBJECT_LIMIT:
        client.copy_object(CopySource={"Bucket": bucket, "Key": source}, Bucket=bucket, Key=target, **extra)
    else:
        client.copy({"Bucket": bucket, "Key": source}, bucket, target, ExtraArgs=extra)
    verify_object(client, bucket, target, size)


def abort_uploads(client, bucket: str, prefix: str) -> int:
    """Abort the incomplete multipart uploads under ``prefix`` (invisible, but stored); return how many."""
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return len(uploads)


def clean_staging(client, bucket: str, prefix: str) -> int:
    """Delete the objects and abort the multipart uploads under one crawl's staging prefix."""
    removed = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            removed += len(keys)
    return removed + abort_uploads(client, bucket, prefix)


def month_is_empty(client, bucket: str, prefix: str) -> bool:
    """Whether no object at all lies under a month's prefix (incomplete multipart uploads are not objects)."""
    return not client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("Contents")


def withdraw(client, bucket: str, written: dict[str, str]) -> None:
    """Delete what this try wrote into a month it found empty, so that a failed try leaves the month empty.

    ``written`` maps keys to the ETags of what we wrote there; each delete is conditional on that ETag
    (``If-Match``), so an object that is not exactly ours is never deleted.
    """
    for key, etag in written.items():
        try:
            client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
            logger.warning("Deleted s3://%s/%s again: this try wrote it into an empty month, then failed", bucket, key)
        except Exception:  # noqa: BLE001 - the original error matters more; the next try goes through staging
            logger.warning("Left s3://%s/%s: it could not be deleted, or it is not what this try wrote", bucket, key)


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


@dataclass(frozen=True)
class Expected:
    """What inspection saw, which archiving must find again."""

    bytes: int
    files: int
    fingerprint: str
    checksum: str | None = None


def archive_crawl(
    *,
    client,
    bucket: str,
    storage_class: str,
    data_directory: str,
    logs_directory: str,
    source_id: str,
    data_version: str,
    log_path: str,
    expected: Expected,
    metadata: dict,
    delete_local_files: bool = True,
) -> dict:
    """Archive one crawl and delete it locally. Returns the figures for the run summary.

    ``metadata`` carries the facts from inspection (files and errors counts, collection id, reason) that go into
    ``metadata.json`` beside the ones measured here.
    """
    directory = crawls.crawl_directory(data_directory, source_id, data_version)
    check_log_path(logs_directory, source_id, log_path, "archive")
    year, month = int(data_version[:4]), int(data_version[4:6])
    final = layout.month_prefix(source_id, year, month)
    staging = layout.staging_prefix(source_id, data_version)
    label = f"{source_id}/{data_version}"

    # Leftovers of an earlier try of this task: its staging objects, and its uploads to either place (a month's
    # uploads can only be this crawl's: the ledger's claim on the month keeps every other archive task out).
    clean_staging(client, bucket, staging)
    abort_uploads(client, bucket, final)
    in_place = month_is_empty(client, bucket, final)
    target = final if in_place else staging
    final_class = storage_class if in_place else None  # staging objects keep the default class: they live minutes
    started = time.monotonic()
    logger.info(
        "%s: archiving %d bytes in %d files to s3://%s/%s (%s)",
        label,
        expected.bytes,
        expected.files,
        bucket,
        final,
        "an empty month: written in place" if in_place else "the month holds objects: through staging",
    )

    def check_unchanged(tar: TarResult) -> None:
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
                f"{label} changed on disk since it was inspected ({'; '.join(changes)}): nothing was archived or "
                "deleted; the next run inspects it again"
            )

    stream = stream_crawl(
        client,
        bucket,
        target + layout.DATA,
        directory,
        label,
        choose_part_size(expected.bytes, expected.files),
        progress=Progress(label, expected.bytes),
        check=check_unchanged,
        exclusive=in_place,
        storage_class=final_class,
    )
    streamed = time.monotonic()
    summary = stream.summary
    written = {target + layout.DATA: stream.etag}  # what this try wrote: taken back if it fails in place
    try:
        verify_object(client, bucket, target + layout.DATA, stream.compressed_bytes, stream.etag)
        log_size, log_etag = upload_file(
            client, bucket, target + layout.LOG, log_path, exclusive=in_place, storage_class=final_class
        )
        written[target + layout.LOG] = log_etag
        verify_object(client, bucket, target + layout.LOG, log_size, log_etag)

        document = {
            "id": label,
            "source_id": source_id,
            "data_version": data_version,
            "bytes": summary.bytes,
            "checksum": stream.checksum,
            "files_count": metadata.get("files_count"),
            "errors_count": metadata.get("errors_count"),
            "reject_reason": None,
            "archived": True,
            # Keys the 2021 tool did not write:
            "data_files": summary.files,
            "compressed_bytes": stream.compressed_bytes,
            "tar_prefix": f"{label}/",
            "archived_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "archiver": "kingfisher-archive (Airflow)",
            **{k: v for k, v in metadata.items() if k not in ("files_count", "errors_count")},
        }
        body = json.dumps(document, indent=2, sort_keys=False).encode("utf-8")

        promoting = time.monotonic()
        if not in_place:
            size = stream.compressed_bytes
            promote(client, bucket, staging + layout.DATA, final + layout.DATA, size, stream.etag, storage_class)
            promote(client, bucket, staging + layout.LOG, final + layout.LOG, log_size, log_etag, storage_class)
        md5 = hashlib.md5(body, usedforsecurity=False).digest()
        with refusing_to_overwrite(bucket, final + layout.METADATA, in_place):
            client.put_object(
                Bucket=bucket,
                Key=final + layout.METADATA,
                Body=body,
                ContentMD5=_md5_b64(md5),
                ContentType="application/json",
                StorageClass=storage_class,
                **({"IfNoneMatch": "*"} if in_place else {}),
            )
        written[final + layout.METADATA] = f'"{md5.hex()}"'
        verify_object(client, bucket, final + layout.METADATA, len(body), f'"{md5.hex()}"')
        if json.loads(client.get_object(Bucket=bucket, Key=final + layout.METADATA)["Body"].read()) != document:
            raise VerificationError(f"s3://{bucket}/{final}{layout.METADATA} does not read back as written")
    except BaseException:
        if in_place:  # an empty month is left empty; a month being replaced is rewritten by the next try
            withdraw(client, bucket, written)
        raise
    promoted = time.monotonic()
    if not in_place:
        clean_staging(client, bucket, staging)

    seconds = time.monotonic() - started
    deleted = []
    if delete_local_files:  # only the benchmark keeps them, to archive the same crawl again
        deleted = delete_local(data_directory, logs_directory, source_id, data_version, log_path)
    logger.info(
        "%s: archived %d bytes as %d (%.1fx) in %.1f s; deleted %s",
        label,
        summary.bytes,
        stream.compressed_bytes,
        summary.bytes / max(stream.compressed_bytes, 1),
        seconds,
        ", ".join(deleted) or "nothing",
    )
    return {
        "id": label,
        "bytes": summary.bytes,
        "files": summary.files,
        "compressed_bytes": stream.compressed_bytes,
        "checksum": stream.checksum,
        "bytes_read": stream.bytes_read,
        "seconds": round(seconds, 3),
        "stream_seconds": round(streamed - started, 3),  # read, tar, LZ4, checksum, upload
        "promote_seconds": round(promoted - promoting, 3),  # server-side copies to the final keys (if any), metadata
        "in_place": in_place,  # written straight to the final keys (the month was empty), not through staging
        "prefix": final,
        "deleted": deleted,
    }


def check_log_path(logs_directory: str, source_id: str, log_path: str, action: str) -> None:
    """Refuse a log path that is not a plain file directly in ``<logs_directory>/<source_id>/``."""
    folder = os.path.realpath(os.path.join(logs_directory, source_id))
    if os.path.dirname(os.path.realpath(log_path)) != folder or os.path.islink(log_path):
        raise crawls.UnsafeCrawlError(f"refusing to {action} {log_path}: it is not a log in {folder}")


def delete_local(
    data_directory: str, logs_directory: str, source_id: str, data_version: str, log_path: str | None
) -> list[str]:
    """Delete a crawl's directory, its log and the log's ``.stats``; return what was there to delete.

    The log must be a file directly in ``<logs_directory>/<source_id>/``: a path from anywhere else (an edited
    XCom, say) is refused, so nothing outside the configured directories is ever deleted.
    """
    if log_path:
        check_log_path(logs_directory, source_id, log_path, "delete")
    deleted = []
    if crawls.delete(data_directory, source_id, data_version):
        deleted.append(crawls.crawl_directory(data_directory, source_id, data_version))
    if log_path:
        for path in (log_path, log_path + ".stats"):
            try:
                os.remove(path)
                deleted.append(path)
            except FileNotFoundError:
                pass
    return deleted
