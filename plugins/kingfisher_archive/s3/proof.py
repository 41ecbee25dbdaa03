"""Checksums and proofs: how the transport finds that the bucket holds exactly the bytes it sent.

An object is proved (:func:`prove`) by the CRC32 the server stored, else an ETag equal to our MD5, else read back;
the ETag is never trusted to be an MD5. See docs/safety.md, section 1.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import zlib
from dataclasses import dataclass

from kingfisher_archive.s3.errors import VerificationError

logger = logging.getLogger(__name__)

MiB = 1 << 20
#: How much of an object is read at once (reading one back, or a local file to upload).
READ_SIZE = MiB


def md5_etag(body: bytes) -> str:
    """The ETag a server reports for a single-part object holding ``body`` (unencrypted, or SSE-S3)."""
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'


def md5_b64(digest: bytes) -> str:
    """An MD5 digest as ``Content-MD5`` spells it: in base64."""
    return base64.b64encode(digest).decode("ascii")


def crc32_b64(value: int) -> str:
    """A CRC32 as S3 spells it (``x-amz-checksum-crc32``): the four big-endian bytes, in base64."""
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


#: How :func:`prove` found an object to hold our bytes, as the log and ``metadata.json`` name it.
BY_CHECKSUM = "crc32"  # the full-object CRC32 the server stored and returned (ChecksumMode=ENABLED)
BY_ETAG = "etag-md5"  # the ETag equals the MD5 we computed (unencrypted or SSE-S3 objects)
BY_READ_BACK = "read-back"  # neither: the object was downloaded and its CRC32 computed


BY_COPY = "copy-of-verified"  # a server-side copy of an object proved so, found the same size; nothing read back


class ColdProofError(VerificationError):
    """The object is in a cold class and only reading it back could prove it (the server stores no CRC32 and its
    ETag is not an MD5): it is not read, since S3 refuses the read until it is thawed, hours later."""


@dataclass(frozen=True)
class Proof:
    """An object proved to hold our bytes: its ETag (its identity from now on: conditions and journals use it,
    whatever it means) and how it was proved (:data:`BY_CHECKSUM`, :data:`BY_ETAG` or :data:`BY_READ_BACK`)."""

    etag: str
    method: str


def prove(
    client,
    bucket_name: str,
    key: str,
    size: int,
    crc32: str | None,
    md5_etag: str | None = None,
    *,
    readable: bool = True,
) -> Proof:
    """Check that ``key`` holds exactly ``size`` bytes whose CRC32 is ``crc32``, not trusting the ETag to be an MD5.

    By the stored full-object CRC32 (``ChecksumMode=ENABLED``; it holds under SSE-S3, SSE-KMS and SSE-C), else an
    ETag equal to ``md5_etag`` (unencrypted or SSE-S3), else the object read back; a stored checksum of another
    algorithm or a composite one (``...-N``) falls through. Raises :class:`VerificationError` if it does not, and
    :class:`ColdProofError` instead of reading back an object that is not ``readable`` (GLACIER, DEEP_ARCHIVE).
    """
    where = f"s3://{bucket_name}/{key}"
    head = client.head_object(Bucket=bucket_name, Key=key, ChecksumMode="ENABLED")
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
    if not readable:
        error = ColdProofError(
            f"{where} is in {head.get('StorageClass') or 'a cold class'}, and this server stores no CRC32 and gives "
            "ETags that are not MD5s (encryption?): only reading it back could prove it, and a cold object cannot be "
            "read for hours"
        )
        error.etag = head["ETag"]
        raise error
    value, read = 0, 0
    body = client.get_object(Bucket=bucket_name, Key=key, IfMatch=head["ETag"])["Body"]
    while chunk := body.read(READ_SIZE):
        value = zlib.crc32(chunk, value)
        read += len(chunk)
    if (read, crc32_b64(value)) != (size, crc32):
        raise VerificationError(f"{where} reads back as {read} bytes with CRC32 {crc32_b64(value)}, we sent {crc32}")
    logger.info("%s: the server stores no CRC32 and its ETag is not an MD5 (encrypted?): read back to verify", where)
    return Proof(head["ETag"], BY_READ_BACK)


def verify_read_back(client, bucket_name: str, key: str, body: bytes, etag: str) -> None:
    """Check a small object written by :func:`put_object`: its size, its ETag, and its bytes read back."""
    verify_object(client, bucket_name, key, len(body), etag)
    if client.get_object(Bucket=bucket_name, Key=key)["Body"].read() != body:
        raise VerificationError(f"s3://{bucket_name}/{key} does not read back as written")


def verify_object(client, bucket_name: str, key: str, size: int, etag: str | None = None) -> None:
    """Check that ``key`` holds ``size`` bytes (and, when given, exactly the bytes with ``etag``)."""
    head = client.head_object(Bucket=bucket_name, Key=key)
    if head["ContentLength"] != size:
        raise VerificationError(f"s3://{bucket_name}/{key} holds {head['ContentLength']} bytes, we sent {size}")
    if etag is not None and head["ETag"] != etag:
        raise VerificationError(f"s3://{bucket_name}/{key} has ETag {head['ETag']}, our bytes give {etag}")
