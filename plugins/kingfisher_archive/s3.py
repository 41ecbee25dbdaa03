"""The S3 transport: verified uploads, conditional writes, server-side copies, and what undoes them.

Nothing here trusts a write until it is checked: every part and object carries its MD5 and CRC32, :func:`prove`
finds our bytes in the bucket whatever its encryption, a write can be conditional on its key being free
(``If-None-Match: *``), a copy takes only the object verified (``CopySourceIfMatch``) and a delete that undoes our
write only exactly what we wrote (``If-Match``). It knows nothing of tar, LZ4 or the retention policy: it moves
bytes and checks them. See docs/safety.md, sections 1 and 3.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import queue
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from kingfisher_archive import archive_format
from kingfisher_archive.crawl import MiB
from kingfisher_archive.errors import PermanentError, RetryableError

logger = logging.getLogger(__name__)

#: 8 MiB, as boto3 uses: small parts shorten the wait for the last ones once the crawl is read (docs/performance.md
#: has the measurements); S3 allows 10,000 parts, so big crawls get bigger parts.
MIN_PART_SIZE = 8 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
#: The largest object a single CopyObject request may copy.
COPY_OBJECT_LIMIT = 5 * 1024 * MiB
#: Leave room under the 10,000-part limit for LZ4 expanding incompressible data and tar's headers.
PART_HEADROOM = 0.9
#: Parts uploaded at once: one connection rarely fills the link, and each costs a part of memory.
UPLOAD_THREADS = 3
READ_SIZE = MiB
#: What a broken download, a damaged LZ4 frame or a malformed tar raise while an archive streams from the bucket.
STREAM_ERRORS = (*archive_format.FORMAT_ERRORS, BotoCoreError)


class VerificationError(RetryableError):
    """The bucket does not hold what we sent."""


# The S3 error codes, by what they mean to us: every module compares an error's code with these, never a literal.
#: What servers answer for a key that is not there, and for a condition that does not hold.
MISSING = ("NoSuchKey", "404", "NotFound")
PRECONDITION_FAILED = ("PreconditionFailed", "412")
#: A multipart upload that is no longer there: completed, or aborted.
UPLOAD_GONE = ("NoSuchUpload",)
#: A bucket that is not there.
NO_SUCH_BUCKET = ("NoSuchBucket", "404")
#: Credentials the server does not take: wrong keys, or an invalid or expired session token.
CREDENTIALS_REFUSED = ("SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken")
#: Credentials taken, access not granted: a policy, or a bucket that refuses everyone.
ACCESS_DENIED = ("AccessDenied", "403", "AllAccessDisabled")
#: What a server answers a change it will not make: a policy, or an Object Lock retention or legal hold.
REFUSALS = ("AccessDenied", "InvalidRequest", "ObjectLocked", "MethodNotAllowed")


def error_code(error: ClientError) -> str:
    """The error's code, as S3 names it (``NoSuchKey``), or the bare HTTP status of a HEAD (``404``)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def client_config(base: Config | None = None) -> Config:
    """``base`` (a connection's botocore configuration, or none) for an archiving client: no hash botocore adds.

    Payload signing off (no SHA-256 of the body over plain HTTP) and ``request_checksum_calculation`` only
    ``when_required`` (no CRC32 of botocore's): our own ``Content-MD5`` and CRC32 protect every body. Settings in
    ``base`` (the connection's ``config_kwargs``) win. See docs/safety.md, section 1.
    """
    base = base or Config()
    ours = {"s3": {"payload_signing_enabled": False, **(base.s3 or {})}}  # merge() replaces s3 whole
    if base.request_checksum_calculation is None:
        ours["request_checksum_calculation"] = "when_required"
    return base.merge(Config(**ours))


#: The write parameters of server-side encryption, as boto3 names them (and S3Hook's ``extra_args``).
ENCRYPTION_PARAMETERS = ("ServerSideEncryption", "SSEKMSKeyId", "BucketKeyEnabled")
ENCRYPTION_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")
#: The operations that create an object, each of which must carry the encryption settings.
WRITES = ("PutObject", "CreateMultipartUpload", "CopyObject")


def encrypt_writes(client, encryption: dict) -> None:
    """Send ``encryption`` (:data:`ENCRYPTION_PARAMETERS`) on every write and copy ``client`` makes.

    Registered once on the client, so no write, present or future, can leave the headers out.
    """
    if not encryption:
        return

    def add(params, **kwargs):
        for name, value in encryption.items():
            params.setdefault(name, value)

    for operation in WRITES:
        client.meta.events.register(f"before-parameter-build.s3.{operation}", add)


def describe_bucket(client, bucket: str) -> str:
    """The bucket's versioning and Object Lock, in words, for the first task's log (``unknown`` if not allowed)."""
    parts = []
    for name, ask in (("versioning", versioning), ("Object Lock", object_lock)):
        try:
            parts.append(f"{name} {ask(client, bucket) or 'off'}")
        except ClientError as e:
            parts.append(f"{name} unknown ({error_code(e)})")
    return ", ".join(parts)


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
        if not exclusive or error_code(e) not in PRECONDITION_FAILED:
            raise
        raise VerificationError(
            f"s3://{bucket}/{key} appeared while this crawl was being archived into its empty month (another "
            "writer?): it was left alone, this try's upload was abandoned and nothing was deleted locally"
        ) from e


def md5_etag(body: bytes) -> str:
    """The ETag a server reports for a single-part object holding ``body`` (unencrypted, or SSE-S3)."""
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'


def _md5_b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def crc32_b64(value: int) -> str:
    """A CRC32 as S3 spells it (``x-amz-checksum-crc32``): the four big-endian bytes, in base64."""
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


#: How :func:`prove` found an object to hold our bytes, as the log and ``metadata.json`` name it.
BY_CHECKSUM = "crc32"  # the full-object CRC32 the server stored and returned (ChecksumMode=ENABLED)
BY_ETAG = "etag-md5"  # the ETag equals the MD5 we computed (unencrypted or SSE-S3 objects)
BY_READ_BACK = "read-back"  # neither: the object was downloaded and its CRC32 computed


@dataclass(frozen=True)
class Proof:
    """An object proved to hold our bytes: its ETag (its identity from now on: conditions and journals use it,
    whatever it means) and how it was proved (:data:`BY_CHECKSUM`, :data:`BY_ETAG` or :data:`BY_READ_BACK`)."""

    etag: str
    method: str


def prove(client, bucket: str, key: str, size: int, crc32: str | None, md5_etag: str | None = None) -> Proof:
    """Check that ``key`` holds exactly ``size`` bytes whose CRC32 is ``crc32``, not trusting the ETag to be an MD5.

    By the stored full-object CRC32 (``ChecksumMode=ENABLED``; it holds under SSE-S3, SSE-KMS and SSE-C), else an
    ETag equal to ``md5_etag`` (unencrypted or SSE-S3), else the object read back; a stored checksum of another
    algorithm or a composite one (``...-N``) falls through. Raises :class:`VerificationError` if it does not.
    """
    where = f"s3://{bucket}/{key}"
    head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    if head["ContentLength"] != size:
        raise VerificationError(f"{where} holds {head['ContentLength']} bytes, we sent {size}")
    stored = head.get("ChecksumCRC32")
    if crc32 is not None and stored and "-" not in stored and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
        if stored != crc32:
            raise VerificationError(f"{where} has the stored CRC32 {stored}, our bytes give {crc32}")
        return Proof(head["ETag"], BY_CHECKSUM)
    if md5_etag is not None and head["ETag"] == md5_etag:
        return Proof(head["ETag"], BY_ETAG)
    if crc32 is None:
        raise VerificationError(f"{where}: nothing to prove it by (no CRC32 of ours and its ETag is not our MD5)")
    value, read = 0, 0
    body = client.get_object(Bucket=bucket, Key=key, IfMatch=head["ETag"])["Body"]
    while chunk := body.read(READ_SIZE):
        value = zlib.crc32(chunk, value)
        read += len(chunk)
    if (read, crc32_b64(value)) != (size, crc32):
        raise VerificationError(f"{where} reads back as {read} bytes with CRC32 {crc32_b64(value)}, we sent {crc32}")
    logger.info("%s: the server stores no CRC32 and its ETag is not an MD5 (encrypted?): read back to verify", where)
    return Proof(head["ETag"], BY_READ_BACK)


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
        self._crc32 = 0  # of the whole object, in the order written
        #: The whole object's CRC32 (S3's spelling), once :meth:`complete` has been called.
        self.crc32: str | None = None
        extra = {"StorageClass": storage_class} if storage_class else {}
        self.upload_id = client.create_multipart_upload(
            Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT", **extra
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
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=_md5_b64(digest),
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
            with refusing_to_overwrite(self.bucket, self.key, exclusive):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
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
                proof = prove(self.client, self.bucket, self.key, self.size, self.crc32, etag)
            except (ClientError, VerificationError):
                raise e from None
            logger.warning(
                "%s: the server had completed this upload already (a lost response); it holds our bytes", self.key
            )
            return proof
        return prove(self.client, self.bucket, self.key, self.size, self.crc32, etag)

    def abort(self) -> None:
        """Give the upload up: nothing becomes visible, and the server frees the parts."""
        self._error = self._error or RuntimeError("aborted")
        self._stop_workers(timeout=60)
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception:  # noqa: BLE001 - the audit finds what an abort could not remove
            logger.warning("Could not abort the multipart upload of %s", self.key, exc_info=True)


def upload_file(
    client, bucket: str, key: str, path: str, exclusive: bool = False, storage_class: str | None = None
) -> tuple[int, str, Proof]:
    """Upload a local file (a log) through the same verified multipart path; return (size, CRC32, proof)."""
    size = os.path.getsize(path)
    upload = MultipartUpload(client, bucket, key, choose_part_size(size), storage_class=storage_class)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(READ_SIZE):
                upload.write(chunk)
        proof = upload.complete(exclusive=exclusive)
    except BaseException:
        upload.abort()
        raise
    return upload.size, upload.crc32, proof


def put_object(client, bucket: str, key: str, body: bytes, storage_class: str, exclusive: bool = False) -> str:
    """Write a small object (``metadata.json``) with its MD5 and CRC32; return the ETag the server reported for it.

    ``exclusive`` asks the server to refuse the write (412) if the key holds an object by then.
    """
    md5 = hashlib.md5(body, usedforsecurity=False).digest()
    with refusing_to_overwrite(bucket, key, exclusive):
        response = client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentMD5=_md5_b64(md5),
            ChecksumAlgorithm="CRC32",
            ChecksumCRC32=crc32_b64(zlib.crc32(body)),
            ContentType="application/json",
            StorageClass=storage_class,
            **({"IfNoneMatch": "*"} if exclusive else {}),
        )
    return response["ETag"]


def put_object_once(client, bucket: str, key: str, body: bytes, storage_class: str) -> str:
    """Write ``body`` at a key that must be free, or find exactly ``body`` there (a retry of a write the server had
    applied, whose response was lost); return the ETag the server reports for it."""
    try:
        return put_object(client, bucket, key, body, storage_class, exclusive=True)
    except VerificationError:
        there = get_if_any(client, bucket, key)
        if there is None or there[0] != body:
            raise
        return there[1]


def delete_if_match(client, bucket: str, key: str, etag: str | None) -> None:
    """Delete ``key`` only if it holds the object with ``etag``; a key already gone (a retried delete) is fine."""
    try:
        client.delete_object(Bucket=bucket, Key=key, **({"IfMatch": etag} if etag else {}))
    except ClientError as e:
        if error_code(e) in MISSING or (error_code(e) in PRECONDITION_FAILED and not _exists(client, bucket, key)):
            return
        raise


def verify_read_back(client, bucket: str, key: str, body: bytes, etag: str) -> None:
    """Check a small object written by :func:`put_object`: its size, its ETag, and its bytes read back."""
    verify_object(client, bucket, key, len(body), etag)
    if client.get_object(Bucket=bucket, Key=key)["Body"].read() != body:
        raise VerificationError(f"s3://{bucket}/{key} does not read back as written")


def _head(client, bucket: str, key: str) -> dict:
    return client.head_object(Bucket=bucket, Key=key)


def verify_object(client, bucket: str, key: str, size: int, etag: str | None = None) -> None:
    """Check that ``key`` holds ``size`` bytes (and, when given, exactly the bytes with ``etag``)."""
    head = _head(client, bucket, key)
    if head["ContentLength"] != size:
        raise VerificationError(f"s3://{bucket}/{key} holds {head['ContentLength']} bytes, we sent {size}")
    if etag is not None and head["ETag"] != etag:
        raise VerificationError(f"s3://{bucket}/{key} has ETag {head['ETag']}, our bytes give {etag}")


def promote(
    client,
    bucket: str,
    source: str,
    target: str,
    size: int,
    etag: str,
    crc32: str | None = None,
    *,
    storage_class: str,
) -> Proof:
    """Copy the verified staging object with ``etag`` to its final key (``CopySourceIfMatch``), and prove the copy.

    One ``CopyObject`` up to its 5 GiB limit (boto3's managed copy would ask the size, then copy 8 MiB ranges, a
    request each); the managed copy, in parts, beyond. Copying again is harmless. See docs/safety.md, section 1.
    """
    extra = {"CopySourceIfMatch": etag, "StorageClass": storage_class}
    if size <= COPY_OBJECT_LIMIT:
        client.copy_object(CopySource={"Bucket": bucket, "Key": source}, Bucket=bucket, Key=target, **extra)
    else:
        client.copy({"Bucket": bucket, "Key": source}, bucket, target, ExtraArgs=extra)
    if crc32 is None:  # a journal written before CRC32s were recorded: the size, as then
        verify_object(client, bucket, target, size)
        return Proof(_head(client, bucket, target)["ETag"], "size")
    return prove(client, bucket, target, size, crc32, etag)


def abort_uploads(client, bucket: str, prefix: str) -> int:
    """Abort the incomplete multipart uploads under ``prefix`` (invisible, but stored); return how many.

    It deletes no object, so it may be pointed at a month (an upload cut short of a try into the empty month): an
    upload is invisible until completed, and one aborted under a try still writing makes that try fail, having
    written nothing."""
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return len(uploads)


def clean_staging(client, bucket: str, prefix: str) -> int:
    """Delete the objects and abort the multipart uploads under one crawl's staging prefix.

    In a versioned bucket every version and delete marker under the prefix goes too: staging objects are this
    package's own temporary copies, and a noncurrent version of one would be stored and billed for ever.
    """
    _require_staging(prefix, "clean_staging")
    removed = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            removed += len(keys)
    purge_versions(client, bucket, prefix)
    return removed + abort_uploads(client, bucket, prefix)


def versioning(client, bucket: str) -> str:
    """The bucket's versioning state: ``"Enabled"``, ``"Suspended"`` or ``"Off"`` (never enabled)."""
    return client.get_bucket_versioning(Bucket=bucket).get("Status") or "Off"


def object_lock(client, bucket: str) -> str | None:
    """The bucket's Object Lock, in words (``"Enabled (GOVERNANCE, 30 days by default)"``), or ``None``."""
    try:
        config = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except ClientError as e:
        if error_code(e) in ("ObjectLockConfigurationNotFoundError", "NotImplemented", *MISSING):
            return None
        raise
    if config.get("ObjectLockEnabled") != "Enabled":
        return None
    retention = config.get("Rule", {}).get("DefaultRetention", {})
    if not retention:
        return "Enabled (no default retention)"
    period = f"{retention['Days']} days" if "Days" in retention else f"{retention.get('Years')} years"
    return f"Enabled ({retention.get('Mode')}, {period} by default)"


def _lock_note(client, bucket: str) -> str:
    return f"; the bucket's Object Lock is {object_lock(client, bucket) or 'off'}"


def _require_staging(prefix: str, what: str) -> None:
    """Refuse to point a deletion of the package's own leftovers anywhere but under ``staging/``: never at a month."""
    if not prefix.startswith("staging/") or len(prefix) <= len("staging/"):
        raise ValueError(f"{what} deletes only under staging/<source_id>/..., not under {prefix!r}")


def purge_versions(client, bucket: str, prefix: str) -> int:
    """Delete the noncurrent versions and delete markers under ``prefix`` (a versioned bucket's leftovers of
    objects already deleted, under ``staging/`` only); return how many. A bucket that never had versioning is not
    asked twice.

    The versions go first, then the delete markers of the keys none of whose versions is left: a delete marker hides
    the versions under it, and removing it while one is left would make that version current again (a journal or a
    staged object would come back). A version Object Lock protects is refused (``AccessDenied``): it is left, its
    delete marker kept above it, with a warning naming the lock, for its retention and the bucket's lifecycle rules
    to remove (samples/lifecycle.json).
    """
    _require_staging(prefix, "purge_versions")
    if versioning(client, bucket) == "Off":
        return 0
    versions: list[dict] = []
    markers: list[dict] = []
    current: set[str] = set()  # keys whose latest is a version: it stays, and so does everything it hides nothing of
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            if v.get("IsLatest"):
                current.add(v["Key"])
            else:
                versions.append({"Key": v["Key"], "VersionId": v["VersionId"]})
        markers += [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in page.get("DeleteMarkers", [])]
    removed, left = _delete_versions(client, bucket, versions)
    left |= current
    more, _ = _delete_versions(client, bucket, [m for m in markers if m["Key"] not in left])
    return removed + more


def _delete_versions(client, bucket: str, versions: list[dict]) -> tuple[int, set[str]]:
    """Delete these versions (or delete markers); return how many went, and the keys of those that did not."""
    removed, left = 0, set()
    for start in range(0, len(versions), 1000):  # DeleteObjects takes up to 1,000 keys
        batch = versions[start : start + 1000]
        errors = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True}).get("Errors", [])
        removed += len(batch) - len(errors)
        for error in errors:
            left.add(error.get("Key"))
            logger.warning(
                "Left version %s of s3://%s/%s: %s (%s)%s",
                error.get("VersionId"),
                bucket,
                error.get("Key"),
                error.get("Code"),
                error.get("Message"),
                _lock_note(client, bucket) if error.get("Code") == "AccessDenied" else "",
            )
    return removed, left


def month_is_empty(client, bucket: str, prefix: str, names=("metadata.json", "data.tar.lz4", "scrapy.log")) -> bool:
    """Whether none of a month's objects exists, asked of each key (HEAD), not of a listing that may lag writes."""
    return not any(_exists(client, bucket, prefix + name) for name in names)


def withdraw(client, bucket: str, written: dict[str, str]) -> None:
    """Delete what this try wrote into a month it found empty, so that a failed try leaves the month empty.

    ``written`` maps keys, in the order they were written, to the ETags of what we wrote there; each delete is
    conditional on that ETag (``If-Match``), so an object that is not exactly ours is never deleted, and a key
    already gone is no error.
    """
    # metadata.json first, then the log, then the data; and what cannot be deleted stops the withdrawal: so it leaves
    # data without a metadata.json, or the month whole, never a metadata.json without its data.
    for key, etag in reversed(written.items()):
        try:
            delete_if_match(client, bucket, key, etag)
        except Exception:  # noqa: BLE001 - the original error matters more; the next try repairs the month
            left = list(written)[: list(written).index(key) + 1]
            logger.warning(
                "Left %s in s3://%s/: %s could not be deleted, or it is not what this try wrote",
                ", ".join(left),
                bucket,
                key,
            )
            return
        logger.warning("Deleted s3://%s/%s again: this try wrote it into an empty month, then failed", bucket, key)


class ConditionalWritesError(PermanentError):
    """The S3 server ignores the conditional requests archiving relies on."""


class WriteRefusedError(ConditionalWritesError):
    """The bucket refuses the probe's write: most often a policy that demands an encryption header."""


def _refused_write(bucket: str, key: str, error: ClientError, encryption: dict | None) -> WriteRefusedError:
    sent = (encryption or {}).get("ServerSideEncryption")
    header = f"x-amz-server-side-encryption: {sent}" if sent else "no x-amz-server-side-encryption header"
    if sent == "aws:kms" and (encryption or {}).get("SSEKMSKeyId"):
        header += f" with x-amz-server-side-encryption-aws-kms-key-id: {encryption['SSEKMSKeyId']}"
    message = error.response.get("Error", {}).get("Message", "")
    return WriteRefusedError(
        f"The bucket {bucket!r} refused to write s3://{bucket}/{key} ({error_code(error)}: {message}). The "
        f"request carried {header}: if the bucket's policy demands an encryption header, set it in the Airflow "
        "Variable 'kingfisher_archive_encryption' (or the S3 connection's extra \"encryption\"), e.g. "
        '{"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "<key ARN>"}; otherwise give the connection\'s '
        "credentials s3:PutObject on the bucket (samples/iam-policy.json); nothing was archived or deleted"
    )


#: Where the probe of conditional writes leaves its one small object, for as long as the probe lasts.
PROBE_PREFIX = "staging/_probe/"


def probe_conditional_writes(client, bucket: str, encryption: dict | None = None) -> None:
    """Check that the server honours ``If-None-Match: *`` on writes and ``If-Match`` on deletes, or fail naming it.

    Only one object under :data:`PROBE_PREFIX` is written, overwritten conditionally (by ``PutObject`` and by
    ``CompleteMultipartUpload``), deleted conditionally, then deleted. Raises :class:`ConditionalWritesError`
    naming what the server ignores, :class:`WriteRefusedError` if it refuses the first write (``AccessDenied``).
    See docs/safety.md, section 3.
    """
    key = f"{PROBE_PREFIX}{os.urandom(8).hex()}"
    lacking = []
    try:
        try:
            put_object(client, bucket, key, b"probe", "STANDARD")
        except ClientError as e:
            if error_code(e) != "AccessDenied":
                raise
            raise _refused_write(bucket, key, e, encryption) from e
        try:
            put_object(client, bucket, key, b"other", "STANDARD", exclusive=True)
            lacking.append("If-None-Match: * on PutObject (it overwrote an existing object)")
        except VerificationError:
            pass  # refused with 412, as it must be
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        try:
            part = client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload,
                PartNumber=1,
                Body=b"other",
                ContentMD5=_md5_b64(hashlib.md5(b"other", usedforsecurity=False).digest()),
            )
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
                IfNoneMatch="*",
            )
            lacking.append("If-None-Match: * on CompleteMultipartUpload (it completed over an existing object)")
        except ClientError as e:
            if error_code(e) not in PRECONDITION_FAILED:
                raise
        finally:
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
            except ClientError:
                pass  # completed (the server ignored the condition), or already gone
        try:
            client.delete_object(Bucket=bucket, Key=key, IfMatch='"00000000000000000000000000000000"')
        except ClientError as e:
            if error_code(e) not in PRECONDITION_FAILED:
                raise
        else:
            if not _exists(client, bucket, key):
                lacking.append("If-Match on DeleteObject (it deleted an object whose ETag did not match)")
    finally:
        try:
            client.delete_object(Bucket=bucket, Key=key)
            purge_versions(client, bucket, key)  # a versioned bucket keeps each write of it otherwise
        except Exception:  # noqa: BLE001 - a leftover probe under staging/ is removed by the audit
            logger.warning("Could not delete the probe s3://%s/%s", bucket, key)
    if lacking:
        raise ConditionalWritesError(
            f"The S3 server of bucket {bucket!r} ignores {' and '.join(lacking)}: archiving relies on them so that "
            "it never overwrites or deletes an object it did not write. Use a server (or a release of it) that "
            "honours them; nothing was archived or deleted"
        )


def _exists(client, bucket: str, key: str) -> bool:
    return identity(client, bucket, key) is not None


def get_if_any(client, bucket: str, key: str) -> tuple[bytes, str] | None:
    """``(bytes, ETag)`` of a small object, or ``None`` if there is none."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if error_code(e) in MISSING:
            return None
        raise
    return response["Body"].read(), response["ETag"]


def identity(client, bucket: str, key: str) -> tuple[int, str] | None:
    """``(size, ETag)`` of the object at ``key``, or ``None`` if there is none."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if error_code(e) in MISSING:
            return None
        raise
    return head["ContentLength"], head["ETag"]


def open_archive(client, bucket: str, key: str) -> archive_format.open_archive:
    """Stream the archive at ``key``: ``with open_archive(...) as (tar, compressed):`` (see the format's reader)."""
    return archive_format.open_archive(client.get_object(Bucket=bucket, Key=key)["Body"])
