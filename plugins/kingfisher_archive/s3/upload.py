"""Uploads: a multipart upload streamed from a file object, a local file, a small object; each verified, each
write optionally conditional on its key being free (``If-None-Match: *``), and what aborts them.

Every part and object carries its MD5 and CRC32, and is proved (:func:`~kingfisher_archive.s3.proof.prove`) once
complete. See docs/safety.md, section 1.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import queue
import threading
import zlib
from contextlib import contextmanager

from botocore.exceptions import ClientError

from kingfisher_archive.s3.errors import PRECONDITION_FAILED, UPLOAD_GONE, VerificationError, error_code
from kingfisher_archive.s3.objects import get_if_any
from kingfisher_archive.s3.proof import READ_SIZE, MiB, Proof, crc32_b64, md5_b64, prove
from kingfisher_archive.s3.thawing import is_cold

logger = logging.getLogger(__name__)

#: 8 MiB, as boto3 uses: small parts shorten the wait for the last ones once the crawl is read (docs/performance.md
#: has the measurements); S3 allows 10,000 parts, so big crawls get bigger parts.
MIN_PART_SIZE = 8 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
#: Leave room under the 10,000-part limit for the codec expanding incompressible data, and tar's headers.
PART_HEADROOM = 0.9
#: Parts uploaded at once: one connection rarely fills the link, and each costs a part of memory.
UPLOAD_THREADS = 3


def choose_part_size(expected_bytes: int, files: int = 0) -> int:
    """A part size (whole MiB) such that even an incompressible crawl fits in S3's 10,000 parts."""
    # LZ4 can expand incompressible input by ~0.4%, zstd by far less (3 bytes per 128 KiB block); tar adds a 512-byte
    # header (and padding) per file.
    upper_bound = expected_bytes * 1.01 + files * 1536 + MiB
    size = max(MIN_PART_SIZE, math.ceil(upper_bound / (MAX_PARTS * PART_HEADROOM) / MiB) * MiB)
    if size > MAX_PART_SIZE:
        raise ValueError(f"a crawl of {expected_bytes} bytes does not fit in one S3 object")
    return size


@contextmanager
def refusing_to_overwrite(bucket_name: str, key: str, exclusive: bool):
    """Turn the server's refusal of a conditional write (``If-None-Match: *``) into a message that says why."""
    try:
        yield
    except ClientError as e:
        if not exclusive or error_code(e) not in PRECONDITION_FAILED:
            raise
        raise VerificationError(
            f"s3://{bucket_name}/{key} appeared while this crawl was being archived into its empty month (another "
            "writer?): it was left alone, this try's upload was abandoned and nothing was deleted locally"
        ) from e


class MultipartUpload:
    """A write-only file object that streams into one S3 multipart upload.

    Parts are uploaded by a few background threads while the next part fills, so reading and compressing overlap
    with the network; at most :data:`UPLOAD_THREADS` parts are in flight, one waits for a thread and one is filling,
    so memory stays at a few parts whatever the size of the crawl.
    """

    def __init__(
        self,
        client,
        bucket_name: str,
        key: str,
        part_size: int,
        progress=None,
        storage_class: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.bucket_name = bucket_name
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
        self._crc32 = 0  # of the whole object, in the order written
        #: The whole object's CRC32 (S3's spelling), once :meth:`complete` has been called.
        self.crc32: str | None = None
        #: The object's class: a proof never reads back an object of a cold one (see :func:`prove`).
        self.storage_class = storage_class
        extra = {"StorageClass": storage_class} if storage_class else {}
        if metadata:
            extra["Metadata"] = metadata  # x-amz-meta-*: copied with the object (CopyObject's MetadataDirective COPY)
        self.upload_id = client.create_multipart_upload(
            Bucket=bucket_name, Key=key, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT", **extra
        )["UploadId"]
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
                crc32 = crc32_b64(zlib.crc32(data))
                response = self.client.upload_part(
                    Bucket=self.bucket_name,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=md5_b64(digest),
                    ChecksumAlgorithm="CRC32",
                    ChecksumCRC32=crc32,
                )
                # The server checked both headers; a checksum it reports must be ours. An encrypted part's ETag is
                # not its MD5 (SSE-KMS, SSE-C), so the ETag is only compared when no checksum is reported and the
                # object is proved as a whole after completion either way.
                if response.get("ChecksumCRC32", crc32) != crc32:
                    raise VerificationError(f"part {number} of {self.key}: the server's CRC32 is not ours")
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
        self._crc32 = zlib.crc32(data, self._crc32)
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

    def complete(self, exclusive: bool = False) -> Proof:
        """Finish the upload and prove (:func:`prove`) that the key holds exactly these bytes.

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
        combined = hashlib.md5(b"".join(self._digests[n] for n in numbers), usedforsecurity=False).hexdigest()
        etag = f'"{combined}-{len(numbers)}"'
        self.crc32 = crc32_b64(self._crc32)
        try:
            with refusing_to_overwrite(self.bucket_name, self.key, exclusive):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket_name,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": self._etags[n]} for n in numbers]},
                    ChecksumCRC32=self.crc32,
                    ChecksumType="FULL_OBJECT",
                    **({"IfNoneMatch": "*"} if exclusive else {}),
                )
        except (ClientError, VerificationError) as e:
            # A completion the server applied whose response was lost: the retry is answered 412 (the key is taken,
            # by us) or NoSuchUpload (the upload is complete). The key then holds exactly our bytes.
            code = error_code(e) if isinstance(e, ClientError) else "412"
            if code not in (*PRECONDITION_FAILED, *UPLOAD_GONE):
                raise
            try:
                proof = self._prove(etag)
            except (ClientError, VerificationError):
                raise e from None
            logger.warning(
                "%s: the server had completed this upload already (a lost response); it holds our bytes", self.key
            )
            return proof
        return self._prove(etag)

    def _prove(self, etag: str) -> Proof:
        return prove(
            self.client,
            self.bucket_name,
            self.key,
            self.size,
            self.crc32,
            etag,
            readable=not is_cold(self.storage_class),
        )

    def abort(self) -> None:
        """Give the upload up: nothing becomes visible, and the server frees the parts."""
        self._error = self._error or RuntimeError("aborted")
        self._stop_workers(timeout=60)
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket_name, Key=self.key, UploadId=self.upload_id)
        except Exception:  # noqa: BLE001 - the audit finds what an abort could not remove
            logger.warning("Could not abort the multipart upload of %s", self.key, exc_info=True)


def upload_file(
    client, bucket_name: str, key: str, path: str, exclusive: bool = False, storage_class: str | None = None
) -> tuple[int, str, Proof]:
    """Upload a local file (a log) through the same verified multipart path; return (size, CRC32, proof)."""
    size = os.path.getsize(path)
    upload = MultipartUpload(client, bucket_name, key, choose_part_size(size), storage_class=storage_class)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(READ_SIZE):
                upload.write(chunk)
        proof = upload.complete(exclusive=exclusive)
    except BaseException:
        upload.abort()
        raise
    return upload.size, upload.crc32, proof


def put_object(client, bucket_name: str, key: str, body: bytes, storage_class: str, exclusive: bool = False) -> str:
    """Write a small object (``metadata.json``) with its MD5 and CRC32; return the ETag the server reported for it.

    ``exclusive`` asks the server to refuse the write (412) if the key holds an object by then.
    """
    md5 = hashlib.md5(body, usedforsecurity=False).digest()
    with refusing_to_overwrite(bucket_name, key, exclusive):
        response = client.put_object(
            Bucket=bucket_name,
            Key=key,
            Body=body,
            ContentMD5=md5_b64(md5),
            ChecksumAlgorithm="CRC32",
            ChecksumCRC32=crc32_b64(zlib.crc32(body)),
            ContentType="application/json",
            StorageClass=storage_class,
            **({"IfNoneMatch": "*"} if exclusive else {}),
        )
    return response["ETag"]


def put_object_once(client, bucket_name: str, key: str, body: bytes, storage_class: str) -> str:
    """Write ``body`` at a key that must be free, or find exactly ``body`` there (a retry of a write the server had
    applied, whose response was lost); return the ETag the server reports for it."""
    try:
        return put_object(client, bucket_name, key, body, storage_class, exclusive=True)
    except VerificationError:
        there = get_if_any(client, bucket_name, key)
        if there is None or there[0] != body:
            raise
        return there[1]


def abort_uploads(client, bucket_name: str, prefix: str) -> int:
    """Abort the incomplete multipart uploads under ``prefix`` (invisible, but stored); return how many.

    It deletes no object, so it may be pointed at a month (an upload cut short of a try into the empty month): an
    upload is invisible until completed, and one aborted under a try still writing makes that try fail, having
    written nothing."""
    uploads = client.list_multipart_uploads(Bucket=bucket_name, Prefix=prefix).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket_name, Key=upload["Key"], UploadId=upload["UploadId"])
    return len(uploads)
