"""Server-side copies: a verified staging object promoted to its final key, only if it is still the one verified."""

from __future__ import annotations

from kingfisher_archive.s3.proof import MiB, Proof, prove, verify_object

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
    """
    extra = {"CopySourceIfMatch": etag, "StorageClass": storage_class}
    if size <= COPY_OBJECT_LIMIT:
        client.copy_object(CopySource={"Bucket": bucket_name, "Key": source}, Bucket=bucket_name, Key=target, **extra)
    else:
        client.copy({"Bucket": bucket_name, "Key": source}, bucket_name, target, ExtraArgs=extra)
    if crc32 is None:  # a journal written before CRC32s were recorded: the size, as then
        verify_object(client, bucket_name, target, size)
        return Proof(client.head_object(Bucket=bucket_name, Key=target)["ETag"], "size")
    return prove(client, bucket_name, target, size, crc32, etag)
