"""A bucket's versioning and Object Lock, as the transport asks them and the first task's log names them."""

from __future__ import annotations

from botocore.exceptions import ClientError

from kingfisher_archive.s3.errors import NO_OBJECT_LOCK, error_code


def describe_bucket(client, bucket_name: str) -> str:
    """The bucket's versioning and Object Lock, in words, for the first task's log (``unknown`` if not allowed)."""
    parts = []
    for name, ask in (("versioning", versioning), ("Object Lock", object_lock)):
        try:
            parts.append(f"{name} {ask(client, bucket_name) or 'off'}")
        except ClientError as e:
            parts.append(f"{name} unknown ({error_code(e)})")
    return ", ".join(parts)


def versioning(client, bucket_name: str) -> str:
    """The bucket's versioning state: ``"Enabled"``, ``"Suspended"`` or ``"Off"`` (never enabled)."""
    return client.get_bucket_versioning(Bucket=bucket_name).get("Status") or "Off"


def object_lock(client, bucket_name: str) -> str | None:
    """The bucket's Object Lock, in words (``"Enabled (GOVERNANCE, 30 days by default)"``), or ``None``."""
    try:
        config = client.get_object_lock_configuration(Bucket=bucket_name)["ObjectLockConfiguration"]
    except ClientError as e:
        if error_code(e) in NO_OBJECT_LOCK:
            return None
        raise
    if config.get("ObjectLockEnabled") != "Enabled":
        return None
    retention = config.get("Rule", {}).get("DefaultRetention", {})
    if not retention:
        return "Enabled (no default retention)"
    period = f"{retention['Days']} days" if "Days" in retention else f"{retention.get('Years')} years"
    return f"Enabled ({retention.get('Mode')}, {period} by default)"


def lock_note(client, bucket_name: str) -> str:
    """``"; the bucket's Object Lock is ..."``: what a warning about a refused delete adds, to name the lock."""
    return f"; the bucket's Object Lock is {object_lock(client, bucket_name) or 'off'}"
