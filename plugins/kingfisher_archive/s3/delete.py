"""Deletes: conditional on the ETag we wrote (``If-Match``), the withdrawal of a failed try's writes, and the
package's own leftovers under ``staging/`` (objects, noncurrent versions, delete markers, multipart uploads).

Nothing here deletes an object of a month but by the ETag of what this package wrote there. See docs/safety.md,
sections 1 and 3.
"""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError

from kingfisher_archive.s3.errors import MISSING, POLICY_DENIED, PRECONDITION_FAILED, error_code
from kingfisher_archive.s3.objects import exists
from kingfisher_archive.s3.upload import abort_uploads
from kingfisher_archive.s3.versions import lock_note, versioning

logger = logging.getLogger(__name__)


def delete_if_match(client, bucket_name: str, key: str, etag: str | None) -> None:
    """Delete ``key`` only if it holds the object with ``etag``; a key already gone (a retried delete) is fine."""
    try:
        client.delete_object(Bucket=bucket_name, Key=key, **({"IfMatch": etag} if etag else {}))
    except ClientError as e:
        if error_code(e) in MISSING or (error_code(e) in PRECONDITION_FAILED and not exists(client, bucket_name, key)):
            return
        raise


def clean_staging(client, bucket_name: str, prefix: str) -> int:
    """Delete the objects and abort the multipart uploads under one crawl's staging prefix.

    In a versioned bucket every version and delete marker under the prefix goes too: staging objects are this
    package's own temporary copies, and a noncurrent version of one would be stored and billed for ever.
    """
    _require_staging(prefix, "clean_staging")
    removed = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket_name, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket_name, Delete={"Objects": keys, "Quiet": True})
            removed += len(keys)
    purge_versions(client, bucket_name, prefix)
    return removed + abort_uploads(client, bucket_name, prefix)


def _require_staging(prefix: str, what: str) -> None:
    """Refuse to point a deletion of the package's own leftovers anywhere but under ``staging/``: never at a month."""
    if not prefix.startswith("staging/") or len(prefix) <= len("staging/"):
        raise ValueError(f"{what} deletes only under staging/<source_id>/..., not under {prefix!r}")


def purge_versions(client, bucket_name: str, prefix: str) -> int:
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
    if versioning(client, bucket_name) == "Off":
        return 0
    versions: list[dict] = []
    markers: list[dict] = []
    current: set[str] = set()  # keys whose latest is a version: it stays, and so does everything it hides nothing of
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket_name, Prefix=prefix):
        for v in page.get("Versions", []):
            if v.get("IsLatest"):
                current.add(v["Key"])
            else:
                versions.append({"Key": v["Key"], "VersionId": v["VersionId"]})
        markers += [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in page.get("DeleteMarkers", [])]
    removed, left = _delete_versions(client, bucket_name, versions)
    left |= current
    more, _ = _delete_versions(client, bucket_name, [m for m in markers if m["Key"] not in left])
    return removed + more


def _delete_versions(client, bucket_name: str, versions: list[dict]) -> tuple[int, set[str]]:
    """Delete these versions (or delete markers); return how many went, and the keys of those that did not."""
    removed, left = 0, set()
    for start in range(0, len(versions), 1000):  # DeleteObjects takes up to 1,000 keys
        batch = versions[start : start + 1000]
        errors = client.delete_objects(Bucket=bucket_name, Delete={"Objects": batch, "Quiet": True}).get("Errors", [])
        removed += len(batch) - len(errors)
        for error in errors:
            left.add(error.get("Key"))
            logger.warning(
                "Left version %s of s3://%s/%s: %s (%s)%s",
                error.get("VersionId"),
                bucket_name,
                error.get("Key"),
                error.get("Code"),
                error.get("Message"),
                lock_note(client, bucket_name) if error.get("Code") in POLICY_DENIED else "",
            )
    return removed, left


def withdraw(client, bucket_name: str, written: dict[str, str]) -> None:
    """Delete what this try wrote into a month it found empty, so that a failed try leaves the month empty.

    ``written`` maps keys, in the order they were written, to the ETags of what we wrote there; each delete is
    conditional on that ETag (``If-Match``), so an object that is not exactly ours is never deleted, and a key
    already gone is no error.
    """
    # metadata.json first, then the log, then the data; and what cannot be deleted stops the withdrawal: so it leaves
    # data without a metadata.json, or the month whole, never a metadata.json without its data.
    for key, etag in reversed(written.items()):
        try:
            delete_if_match(client, bucket_name, key, etag)
        except Exception:  # noqa: BLE001 - the original error matters more; the next try repairs the month
            left = list(written)[: list(written).index(key) + 1]
            logger.warning(
                "Left %s in s3://%s/: %s could not be deleted, or it is not what this try wrote",
                ", ".join(left),
                bucket_name,
                key,
            )
            return
        logger.warning(
            "Deleted s3://%s/%s again: this try wrote it into an empty month, then failed", bucket_name, key
        )
