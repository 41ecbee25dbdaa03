"""Server-side copies: a verified staging object promoted to its final key, only if it is still the one verified."""

from __future__ import annotations

import logging

from kingfisher_archive.s3.proof import BY_COPY, ColdProofError, MiB, Proof, prove, verify_object
from kingfisher_archive.s3.thawing import is_cold

logger = logging.getLogger(__name__)

#: The largest object a single CopyObject request may copy.
COPY_OBJECT_LIMIT = 5 * 1024 * MiB


def promote(
    client,
    bucket_name: str,
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

    The source is never in a cold class (staging objects keep the server's default class); the target may be. The
    source's user metadata (``x-amz-meta-*``: the crawl it holds) goes with it: ``CopyObject`` copies it
    (``MetadataDirective`` ``COPY``, the default), and the managed copy is handed it. A cold copy on a server that
    stores no CRC32 and gives ETags that are not MD5s is not read back (S3 would refuse for hours): it is a copy,
    made by the server, of exactly the object proved in staging (``CopySourceIfMatch``), and is found the same size
    (:data:`~kingfisher_archive.s3.proof.BY_COPY`; docs/safety.md, section 1a).
    """
    extra = {"CopySourceIfMatch": etag, "StorageClass": storage_class}
    if size <= COPY_OBJECT_LIMIT:
        client.copy_object(CopySource={"Bucket": bucket_name, "Key": source}, Bucket=bucket_name, Key=target, **extra)
    else:
        metadata = client.head_object(Bucket=bucket_name, Key=source, IfMatch=etag).get("Metadata") or {}
        client.copy(
            {"Bucket": bucket_name, "Key": source}, bucket_name, target, ExtraArgs={**extra, "Metadata": metadata}
        )
    if crc32 is None:  # a journal written before CRC32s were recorded: the size, as then
        verify_object(client, bucket_name, target, size)
        return Proof(client.head_object(Bucket=bucket_name, Key=target)["ETag"], "size")
    try:
        return prove(client, bucket_name, target, size, crc32, etag, readable=not is_cold(storage_class))
    except ColdProofError:
        verify_object(client, bucket_name, target, size)
        copied = client.head_object(Bucket=bucket_name, Key=target)["ETag"]
        logger.info(
            "s3://%s/%s: a %s copy of the verified %s, not read back", bucket_name, target, storage_class, source
        )
        return Proof(copied, BY_COPY)
