"""Replacing a month's archive: a transaction over three objects that any later try finishes or undoes.

:func:`begin` writes a journal beside the verified staged archive (``staging/<source_id>/<data_version>/`` +
:data:`JOURNAL`) before anything of the month is taken away; :func:`replace` carries the replacement out; and
:func:`recover` takes a month whose replacement was cut short to one of its two whole states, or raises
:class:`RecoveryError`, never guessing. Callers hold the month's claim
(:meth:`kingfisher_archive.ledger.Ledger.claim`), so no other try writes the month meanwhile. See docs/safety.md,
section 4.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from botocore.exceptions import ClientError

from kingfisher_archive import bucket as layout
from kingfisher_archive import s3
from kingfisher_archive.errors import PermanentError

logger = logging.getLogger(__name__)

JOURNAL = "replacing.json"


class RecoveryError(PermanentError):
    """A month's replacement was interrupted in a state that neither finishing nor undoing it can mend."""


class RefusedError(PermanentError):
    """The bucket refused to change the month (a policy, Object Lock); the month was left as it was."""


@dataclass(frozen=True)
class Journal:
    """What a later try needs to finish or undo one replacement; written before the month is touched."""

    month: str  # the month's prefix, <source_id>/<YYYY>/<MM>/
    crawl: str  # the crawl replacing it, <source_id>/<data_version>
    staging: str  # where its verified archive waits
    data: tuple  # the staged data.tar.lz4: size, ETag, CRC32 (journals written before 1.1 have no CRC32)
    log: tuple  # the staged scrapy.log: the same
    metadata: str  # the new metadata.json, as written
    old_metadata: str | None  # the month's metadata.json before, as it was (None: there was none)
    old_metadata_etag: str | None
    old_data: tuple[int, str] | None  # the month's data.tar.lz4 before: size, ETag (None: there was none)

    @property
    def key(self) -> str:
        return self.staging + JOURNAL

    def body(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def parse(cls, key: str, body: bytes) -> Journal:
        try:
            data = json.loads(body)
            fields = {name: data[name] for name in cls.__dataclass_fields__}
            for name in ("data", "log", "old_data"):
                fields[name] = tuple(fields[name]) if fields[name] is not None else None
            journal = cls(**fields)
        except (ValueError, KeyError, TypeError) as e:
            raise RecoveryError(f"the journal s3://…/{key} cannot be read ({e}): the month needs a person") from None
        if journal.key != key:
            raise RecoveryError(f"the journal {key} names the staging prefix {journal.staging}")
        return journal


def begin(client, bucket: str, *, month: str, crawl: str, staging: str, data, log, metadata: bytes) -> Journal:
    """Write the journal of a replacement of ``month`` by the archive staged at ``staging``; return it."""
    old = s3.get_if_any(client, bucket, month + layout.METADATA)
    journal = Journal(
        month=month,
        crawl=crawl,
        staging=staging,
        data=tuple(data),
        log=tuple(log),
        metadata=metadata.decode("utf-8"),
        old_metadata=old[0].decode("utf-8", "surrogateescape") if old else None,
        old_metadata_etag=old[1] if old else None,
        old_data=s3.identity(client, bucket, month + layout.DATA),
    )
    body = journal.body()
    s3.verify_read_back(
        client, bucket, journal.key, body, s3.put_object(client, bucket, journal.key, body, "STANDARD")
    )
    return journal


def replace(client, bucket: str, journal: Journal, storage_class: str) -> None:
    """Take the old ``metadata.json`` away, copy the staged archive over the month, write the new one, clean up.

    If the server refuses to copy the data (an ``AccessDenied``, a lock), the month is put back as it was and the
    error raised. Any other failure leaves the journal for :func:`recover`.
    """
    try:
        if journal.old_metadata is not None:
            s3.delete_if_match(client, bucket, journal.month + layout.METADATA, journal.old_metadata_etag)
        _finish(client, bucket, journal, storage_class, undo_if_refused=True)
    except ClientError as e:
        if s3.error_code(e) not in s3.REFUSALS or s3.identity(client, bucket, journal.month + layout.DATA) != (
            journal.old_data
        ):
            raise
        try:
            lock = s3.object_lock(client, bucket)
        except ClientError:
            lock = "unknown"
        message = e.response.get("Error", {}).get("Message", "")
        raise RefusedError(
            f"The bucket {bucket!r} refused to replace s3://{bucket}/{journal.month} with {journal.crawl} "
            f"({s3.error_code(e)} on {e.operation_name}: {message}; the bucket's Object Lock is {lock or 'off'}): "
            "the month was left as it was and nothing was deleted locally. A locked month cannot be replaced until "
            "its retention ends; otherwise grant the connection's credentials what samples/iam-policy.json lists"
        ) from e


def _finish(client, bucket: str, journal: Journal, storage_class: str, undo_if_refused: bool = False) -> None:
    """Copy the staged data and log over the month, write the new metadata.json last, then clean staging."""
    month, staging = journal.month, journal.staging
    try:
        s3.promote(
            client, bucket, staging + layout.DATA, month + layout.DATA, *journal.data, storage_class=storage_class
        )
    except ClientError:
        if undo_if_refused:  # refused, so the month's data is as it was
            _undo(client, bucket, journal, storage_class)
        raise
    s3.promote(client, bucket, staging + layout.LOG, month + layout.LOG, *journal.log, storage_class=storage_class)
    key, body = month + layout.METADATA, journal.metadata.encode("utf-8")
    s3.verify_read_back(client, bucket, key, body, s3.put_object_once(client, bucket, key, body, storage_class))
    _clean(client, bucket, journal)


def _undo(client, bucket: str, journal: Journal, storage_class: str) -> None:
    """Put the month back as it was: only while its data is still the old one (same size and ETag)."""
    if s3.identity(client, bucket, journal.month + layout.DATA) != journal.old_data:
        raise RecoveryError(
            f"s3://{bucket}/{journal.month}data.tar.lz4 is neither the archive being replaced nor "
            f"{journal.crawl}'s staged one, and {journal.staging} no longer holds that: the month needs a person"
        )
    if journal.old_metadata is not None:
        body = journal.old_metadata.encode("utf-8", "surrogateescape")
        key = journal.month + layout.METADATA
        s3.verify_read_back(client, bucket, key, body, s3.put_object_once(client, bucket, key, body, storage_class))
        logger.warning("Put s3://%s/%s back as it was", bucket, key)
    _clean(client, bucket, journal)


def _clean(client, bucket: str, journal: Journal) -> None:
    """The staged objects, then the journal: a journal without its staged archive can still undo, never half-do."""
    for name in (layout.DATA, layout.LOG):
        client.delete_object(Bucket=bucket, Key=journal.staging + name)
    client.delete_object(Bucket=bucket, Key=journal.key)
    s3.purge_versions(client, bucket, journal.staging)  # a versioned bucket's copies of them, and their markers


def journals(client, bucket: str, source_id: str) -> list[str]:
    """The keys of every replacement journal of a source (interrupted or in progress)."""
    paginator = client.get_paginator("list_objects_v2")
    prefix = f"{layout.STAGING}/{source_id}/"
    return [
        item["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if item["Key"].endswith("/" + JOURNAL)
    ]


def interrupted(client, bucket: str, source_id: str, year: int, month: int) -> bool:
    """Whether a journal of a replacement of this month is there (named by its crawl's data version's month)."""
    period = f"{year:04d}{month:02d}"
    return any(key.split("/")[2].startswith(period) for key in journals(client, bucket, source_id))


def recover(client, bucket: str, source_id: str, year: int, month: int, storage_class: str) -> list[str]:
    """Finish or undo every interrupted replacement of one month; return what was done, in words.

    Call it under the month's claim. Raises :class:`RecoveryError` for a month that neither can mend.
    """
    prefix = layout.month_prefix(source_id, year, month)
    done = []
    for key in journals(client, bucket, source_id):
        found = s3.get_if_any(client, bucket, key)
        if found is None:
            continue
        journal = Journal.parse(key, found[0])
        if journal.month != prefix:
            continue
        done.append(f"{journal.crawl}: {_recover(client, bucket, journal, storage_class)}")
        logger.warning("s3://%s/%s: an interrupted replacement by %s", bucket, prefix, done[-1])
    return done


def _recover(client, bucket: str, journal: Journal, storage_class: str) -> str:
    current = s3.get_if_any(client, bucket, journal.month + layout.METADATA)
    if current is not None:
        text = current[0].decode("utf-8", "surrogateescape")
        if text == journal.metadata:
            _clean(client, bucket, journal)
            return "it had completed; its staging objects were removed"
        if text == journal.old_metadata:
            _clean(client, bucket, journal)
            return "it had not begun to change the month; its staging objects were removed"
        raise RecoveryError(
            f"s3://{bucket}/{journal.month}metadata.json is neither the one {journal.crawl} replaced nor its own: "
            "the month needs a person"
        )
    staged = (
        s3.identity(client, bucket, journal.staging + layout.DATA) == journal.data[:2]
        and s3.identity(client, bucket, journal.staging + layout.LOG) == journal.log[:2]
    )
    if staged:
        _finish(client, bucket, journal, storage_class)
        return "finished: the month now holds it"
    _undo(client, bucket, journal, storage_class)
    return "undone: the month holds what it held before"
