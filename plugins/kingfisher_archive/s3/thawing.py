"""Objects in the archive storage classes: whether one can be read now, and asking S3 to make it readable.

An object in ``GLACIER`` (Flexible Retrieval) or ``DEEP_ARCHIVE`` cannot be read (GET, ranged GET, copy source)
until ``RestoreObject`` has made a temporary copy of it, which takes hours; until then S3 answers 403
``InvalidObjectState`` (:data:`~kingfisher_archive.s3.errors.FROZEN`). Its HEAD, its listing entry and its delete
work as for any object. ``HeadObject``'s ``x-amz-restore`` says whether a restore is running or done, and until
when the copy lasts. See https://docs.aws.amazon.com/AmazonS3/latest/userguide/restoring-objects.html.

Here a restore is called a *thaw*, so that the word *restore* keeps meaning what the package does with an archive
(stream it back to disk, :mod:`kingfisher_archive.restore`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from botocore.exceptions import ClientError

from kingfisher_archive.s3.errors import RESTORE_IN_PROGRESS, error_code

#: The classes whose objects must be thawed before they are read (Intelligent-Tiering's opt-in archive tiers too,
#: which HEAD reports as ``ArchiveStatus``, are not written by this package).
COLD_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
#: The retrieval tiers each cold class offers (https://docs.aws.amazon.com/AmazonS3/latest/userguide/restoring-objects-retrieval-options.html).
TIERS = {"GLACIER": ("Expedited", "Standard", "Bulk"), "DEEP_ARCHIVE": ("Standard", "Bulk")}
#: How long a thaw takes, at most, by class and tier, in hours (the same page): what to tell someone waiting.
HOURS = {
    ("GLACIER", "Expedited"): 0.25,
    ("GLACIER", "Standard"): 5,
    ("GLACIER", "Bulk"): 12,
    ("DEEP_ARCHIVE", "Standard"): 12,
    ("DEEP_ARCHIVE", "Bulk"): 48,
}

READABLE = "readable"  # not in a cold class: read it at once
FROZEN = "frozen"  # cold, no thaw asked (or its copy expired)
THAWING = "thawing"  # a thaw is running
THAWED = "thawed"  # a temporary copy is readable until ``expires``

_ONGOING = re.compile(r'ongoing-request="(?P<ongoing>true|false)"(?:,\s*expiry-date="(?P<expiry>[^"]+)")?')


def is_cold(storage_class: str | None) -> bool:
    """Whether objects of ``storage_class`` must be thawed before they are read (``None``: STANDARD)."""
    return storage_class in COLD_CLASSES


@dataclass(frozen=True)
class Thaw:
    """What a HEAD says of one object: its class, whether it can be read now, and until when a thawed copy lasts."""

    storage_class: str
    state: str  # READABLE, FROZEN, THAWING or THAWED
    expires: datetime | None = None

    @property
    def readable(self) -> bool:
        return self.state in (READABLE, THAWED)


def thaw_of(head: dict) -> Thaw:
    """The :class:`Thaw` a ``head_object`` response describes."""
    storage_class = head.get("StorageClass") or "STANDARD"
    if not is_cold(storage_class):
        return Thaw(storage_class, READABLE)
    match = _ONGOING.match(head.get("Restore") or "")
    if match is None:
        return Thaw(storage_class, FROZEN)
    if match["ongoing"] == "true":
        return Thaw(storage_class, THAWING)
    expires = parsedate_to_datetime(match["expiry"]) if match["expiry"] else None
    return Thaw(storage_class, THAWED, expires)


def thaw_state(client, bucket_name: str, key: str) -> Thaw:
    """Whether the object at ``key`` can be read now (one HEAD); ``ClientError`` if it is not there."""
    return thaw_of(client.head_object(Bucket=bucket_name, Key=key))


def check_tier(storage_class: str, tier: str) -> None:
    """``ValueError`` naming the tier and the class if the class does not offer that retrieval tier."""
    offered = TIERS.get(storage_class)
    if offered is not None and tier not in offered:
        raise ValueError(
            f"the retrieval tier {tier!r} is not offered for {storage_class} objects: "
            f"choose one of {', '.join(offered)}"
        )


def request_thaw(client, bucket_name: str, key: str, days: int, tier: str) -> Thaw:
    """Ask S3 for a readable copy of a cold object for ``days`` days, by ``tier``; return what HEAD then says.

    A thaw already running, or a copy already there (S3 then extends its days), is not an error: asking again is
    how a second caller, or a retry, joins it. An object that is not cold is readable: nothing is asked.
    """
    found = thaw_state(client, bucket_name, key)
    if found.state == READABLE:
        return found
    check_tier(found.storage_class, tier)
    try:
        client.restore_object(
            Bucket=bucket_name, Key=key, RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}}
        )
    except ClientError as e:
        if error_code(e) not in RESTORE_IN_PROGRESS:
            raise
    return thaw_state(client, bucket_name, key)
