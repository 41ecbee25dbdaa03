"""Replacing a month's archive: a transaction over three objects that any later try finishes or undoes.

:func:`begin` writes the month's journal (``staging/<source_id>/<YYYY>-<MM>.replacing.json``,
:func:`kingfisher_archive.month.journal_key`)
before anything of the month is taken away, with ``If-None-Match: *``: the bucket itself lets one replacement of a
month begin at a time, whatever the ledger's claims say (a ledger set aside and started afresh, a second
AIRFLOW_HOME). Under its journal, :func:`begin` reads the month again and refuses to start from anything but what
the caller decided against. :func:`replace` carries the replacement out; and :func:`recover` takes a month whose
replacement was cut short to one of its two whole states, or raises :class:`RecoveryError`, never guessing. Journals
written before 2.0 lie beside their staged archive (``staging/<source_id>/<data_version>/replacing.json``) and are
recovered all the same. See docs/safety.md, section 4.

The month's data object may change its name (an LZ4 month, ``data.tar.lz4``, replaced by a zstd archive,
``data.tar.zst``): the journal records the staged data's name and the old data's name (journals written before 2.0
have neither: both were ``data.tar.lz4``). The old data under another name is deleted, conditional on its ETag, only
once the new ``metadata.json`` is in place; an undo deletes the promoted copy under the new name before it puts the
old ``metadata.json`` back. So beside a ``metadata.json`` there is one data object, but for the moments a journal
covers.

What :func:`begin` and :func:`replace` raise, for the archive task to act on:

- :class:`ReplacementInProgressError` (retryable): another replacement's journal holds the month; nothing of the
  month was touched.
- :class:`kingfisher_archive.bucket.MonthIncompleteError` (retryable): under the journal, the month holds a
  data object (not this crawl's, or two) or a ``scrapy.log`` but no ``metadata.json``: it is never a starting point.
- :class:`MonthChangedError` (retryable): the month's ``metadata.json`` is not the one the caller decided against.
- :class:`MonthInconsistentError` (permanent): the month's ``metadata.json`` does not describe the data beside it
  (another size, or a second data object under the other name).
- :class:`RefusedError` (permanent): the bucket refused a change (a policy, Object Lock); the month is as it was,
  with ``reason``, ``lock`` and ``code`` to hold the crawl by.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, fields
from dataclasses import replace as with_fields

from botocore.exceptions import ClientError

from kingfisher_archive.bucket import (
    DATA,
    DATA_LZ4,
    DATA_NAMES,
    LOG,
    METADATA,
    STAGING,
    MetadataError,
    MonthIncompleteError,
    ReservedSourceError,
    month_prefix,
    month_state,
    parse_metadata,
    parse_month_prefix,
    staging_prefix,
)
from kingfisher_archive.errors import PermanentError, RetryableError
from kingfisher_archive.month import JOURNAL, crawl_in, is_journal, journal_key, journal_period, journals
from kingfisher_archive.s3.copies import promote
from kingfisher_archive.s3.delete import delete_if_match, purge_versions
from kingfisher_archive.s3.errors import REFUSALS, VerificationError, error_code
from kingfisher_archive.s3.objects import get_if_any, identity
from kingfisher_archive.s3.proof import verify_read_back
from kingfisher_archive.s3.upload import put_object_once
from kingfisher_archive.s3.versions import object_lock

logger = logging.getLogger(__name__)


class _Unchecked:
    def __repr__(self) -> str:
        return "UNCHECKED"


#: :func:`begin`'s ``month_held`` when the caller does not say what it decided against (only the month's
#: completeness is checked then).
UNCHECKED = _Unchecked()


class RecoveryError(PermanentError):
    """A month's replacement was interrupted in a state that neither finishing nor undoing it can mend."""


class MonthInconsistentError(RecoveryError):
    """The month's ``metadata.json`` does not describe the data object beside it: nothing is written over it."""


class ReplacementInProgressError(RetryableError):
    """Another replacement of the month holds its journal: this one did not begin, and touched nothing of the month.

    The holder is running (another run or try that believes it holds the month), or was cut short and is left for
    :func:`recover`. ``journal`` is the journal's key, ``holder`` the crawl it names (``None`` if it could not be
    read), ``month`` the month's prefix, ``crawl`` the crawl that was refused.
    """

    def __init__(self, bucket_name: str, month: str, crawl: str, journal: str, holder: str | None) -> None:
        self.month, self.crawl, self.journal, self.holder = month, crawl, journal, holder
        super().__init__(
            f"s3://{bucket_name}/{month} is being replaced by "
            f"{holder or 'another crawl (its journal cannot be read)'}: its journal s3://{bucket_name}/{journal} "
            "holds the month (a replacement in progress, or cut short and left "
            f"for the next try to finish or undo). {crawl} was not archived, the month was not touched and nothing "
            "was deleted locally; a later try decides again"
        )


class MonthChangedError(RetryableError):
    """The month is not what the caller decided against: ``expected`` (what it saw) and ``found`` (what is there),
    each a :func:`kingfisher_archive.bucket.month_state` or ``None`` for a month without ``metadata.json``."""

    def __init__(self, bucket_name: str, month: str, crawl: str, expected, found, why: str = "") -> None:
        self.month, self.crawl, self.expected, self.found = month, crawl, expected, found
        super().__init__(
            f"s3://{bucket_name}/{month} holds {found or 'no metadata.json'}, not {expected or 'nothing'} as when "
            f"{crawl} was chosen to replace it{why}: it was not replaced, nothing was deleted locally; decide again"
        )


class RefusedError(PermanentError):
    """The bucket refused to change the month (a policy, Object Lock); the month was left as it was.

    ``reason`` is :data:`REFUSED_BY_OBJECT_LOCK` when the bucket has Object Lock, else
    :data:`REFUSED_BY_BUCKET`; ``lock`` the bucket's Object Lock in words (``None``: off, ``"unknown"``: it could not
    be read); ``code`` the S3 error code; ``month`` and ``crawl`` what was refused. The crawl's staged archive and the
    journal are removed, so the month needs no recovery.
    """

    def __init__(self, message: str, *, month: str, crawl: str, code: str, lock: str | None) -> None:
        self.month, self.crawl, self.code, self.lock = month, crawl, code, lock
        self.reason = REFUSED_BY_BUCKET if lock is None else REFUSED_BY_OBJECT_LOCK
        super().__init__(message)


#: :attr:`RefusedError.reason`: the bucket has Object Lock (its retention or a legal hold refused the change).
REFUSED_BY_OBJECT_LOCK = "refused_by_object_lock"
#: :attr:`RefusedError.reason`: no Object Lock: a policy refused the change (``AccessDenied``).
REFUSED_BY_BUCKET = "refused_by_bucket"


@dataclass(frozen=True)
class Journal:
    """What a later try needs to finish or undo one replacement; written before the month is touched."""

    month: str  # the month's prefix, <source_id>/<YYYY>/<MM>/
    crawl: str  # the crawl replacing it, <source_id>/<data_version>
    staging: str  # where its verified archive waits
    data: tuple  # the staged data object: size, ETag, CRC32 (journals written before 2.0 have no CRC32)
    log: tuple  # the staged scrapy.log: the same
    metadata: str  # the new metadata.json, as written
    old_metadata: str | None  # the month's metadata.json before, as it was (None: there was none)
    old_metadata_etag: str | None
    old_data: tuple[int, str] | None  # the month's data object before: size, ETag (None: there was none)
    token: str | None = None  # the try that wrote it (journals written before 2.0 have none)
    data_name: str = DATA_LZ4  # the staged data's name, staged and in the month (journals before 2.0: LZ4)
    old_data_name: str = DATA_LZ4  # the month's data object's name before (journals before 2.0: LZ4)
    # Not written: where the journal was read or written (a month's key, or one beside its staged archive before
    # 1.2), and its ETag there, which its removal is conditional on.
    at: str | None = field(default=None, compare=False)
    etag: str | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return self.at or journal_key(self.month)

    def body(self) -> bytes:
        document = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("at", "etag")}
        return json.dumps(document, indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def parse(cls, key: str, body: bytes, etag: str | None = None) -> Journal:
        optional = ("token", "data_name", "old_data_name", "at", "etag")
        required = [f.name for f in fields(cls) if f.name not in optional]
        try:
            data = json.loads(body)
            values = {name: data[name] for name in required}
            for name in ("data", "log", "old_data"):
                values[name] = tuple(values[name]) if values[name] is not None else None
            names = {name: data.get(name, DATA_LZ4) for name in ("data_name", "old_data_name")}
            if not set(names.values()) <= set(DATA_NAMES):
                raise ValueError(f"data object names {sorted(names.values())}, not among {list(DATA_NAMES)}")
            journal = cls(**values, token=data.get("token"), **names, at=key, etag=etag)
            source_id, data_version = journal.crawl.split("/")
            staging = staging_prefix(source_id, data_version)
            month_key = journal_key(journal.month)
        except (ValueError, KeyError, TypeError, AttributeError, ReservedSourceError) as e:
            raise RecoveryError(f"the journal s3://…/{key} cannot be read ({e}): the month needs a person") from None
        if journal.staging != staging or key not in (month_key, staging + JOURNAL):
            raise RecoveryError(
                f"the journal {key} names the staging prefix {journal.staging} and the month {journal.month}"
            )
        return journal


def _month_now(client, bucket_name: str, month: str):
    """The month's ``metadata.json`` (bytes, ETag), its data objects' (each name of
    :data:`~kingfisher_archive.bucket.DATA_NAMES` present, with its size and ETag) and its log's (size, ETag), each
    ``None`` (or, for the data, empty) if absent."""
    data = {name: found for name in DATA_NAMES if (found := identity(client, bucket_name, month + name))}
    return get_if_any(client, bucket_name, month + METADATA), data, identity(client, bucket_name, month + LOG)


def _check_start(client, bucket_name: str, month: str, crawl: str, now, month_held) -> str:
    """Refuse to replace a month holding data without metadata.json (unless this crawl's own upload, under one
    name), one whose metadata.json is not the one the caller decided against, or one whose metadata.json describes
    other data (another size, or a second data object beside it). Return the name of the month's data object (the
    one its metadata.json names; without one, the one there; :data:`DATA_LZ4` if none)."""
    metadata, data, log = now
    source_id, year, month_ = parse_month_prefix(month)
    if metadata is None:
        if (
            len(data) > 1
            or any(crawl_in(client, bucket_name, month + name, source_id) != crawl for name in data)
            or (not data and log is not None)
        ):
            raise MonthIncompleteError(bucket_name, month, [*data, *([LOG] if log else [])])
        return next(iter(data), DATA_LZ4)
    try:
        archived = parse_metadata(month + METADATA, source_id, year, month_, metadata[0])
    except MetadataError as e:
        raise MonthChangedError(bucket_name, month, crawl, month_held, f"an unreadable metadata.json ({e})") from None
    found, name = month_state(archived), archived.data_name
    size = archived.raw.get("compressed_bytes")
    if name in data and isinstance(size, int) and not isinstance(size, bool) and data[name][0] != size:
        raise MonthInconsistentError(
            f"s3://{bucket_name}/{month}metadata.json describes {archived.id} with {size} compressed bytes, and "
            f"the {name} beside it holds {data[name][0]}: it is another archive, maybe the only copy of its "
            f"crawl. {crawl} was not archived and nothing was deleted locally; the month needs a person (restore "
            f"its {name} to see which crawl it holds)"
        )
    if strays := [other for other in data if other != name]:
        raise MonthInconsistentError(
            f"s3://{bucket_name}/{month}metadata.json describes {archived.id} in {name}, and the month also holds "
            f"{' and '.join(strays)}: maybe the only copy of another crawl. {crawl} was not archived and nothing was "
            f"deleted locally; the month needs a person (restore {' and '.join(strays)} to see which crawl it holds)"
        )
    if month_held is not UNCHECKED and found != month_held:
        raise MonthChangedError(bucket_name, month, crawl, month_held, found)
    return name


def begin(
    client,
    bucket_name: str,
    *,
    month: str,
    crawl: str,
    staging: str,
    data,
    log,
    metadata: bytes,
    month_held=UNCHECKED,
    data_name: str = DATA,
) -> Journal:
    """Write the journal of a replacement of ``month`` by the archive staged at ``staging``; return it.

    The journal's key is the month's (:func:`kingfisher_archive.month.journal_key`), written only if free
    (``If-None-Match: *``): a second replacement of the month, whatever it believes about claims, raises
    :class:`ReplacementInProgressError`. Then the month is read again under the journal and must be the one the
    journal recorded, and a starting point:

    :param month_held: what the caller decided against: :func:`kingfisher_archive.bucket.month_state` of the month's
        ``metadata.json`` (``None``: a month without one, holding at most this crawl's own cut-short upload);
        :data:`UNCHECKED` checks only that the month is a starting point.
    :raises ReplacementInProgressError: another replacement's journal holds the month.
    :raises kingfisher_archive.bucket.MonthIncompleteError: the month holds data (not this crawl's) or a log, but no
        ``metadata.json``.
    :raises MonthChangedError: the month's ``metadata.json`` is not what ``month_held`` says.
    :raises MonthInconsistentError: the month's ``metadata.json`` does not describe the data beside it.
    :param data_name: the staged data object's name (``staging + data_name``), the name it gets in the month.

    Whatever is raised, the month is untouched and this try's journal removed (conditional on its ETag).
    """
    source_id, data_version = crawl.split("/")
    if staging != staging_prefix(source_id, data_version) or month != month_prefix(*parse_month_prefix(month)):
        raise ValueError(f"{crawl} stages at {staging_prefix(source_id, data_version)}, not {staging}")
    before = _month_now(client, bucket_name, month)
    old_data_name = _check_start(client, bucket_name, month, crawl, before, month_held)  # before anything is written
    old = before[0]
    journal = Journal(
        month=month,
        crawl=crawl,
        staging=staging,
        data=tuple(data),
        log=tuple(log),
        metadata=metadata.decode("utf-8"),
        old_metadata=old[0].decode("utf-8", "surrogateescape") if old else None,
        old_metadata_etag=old[1] if old else None,
        old_data=before[1].get(old_data_name),
        token=os.urandom(12).hex(),
        data_name=data_name,
        old_data_name=old_data_name,
    )
    key, body = journal.key, journal.body()
    try:
        # A write the server applied whose response was lost is retried by botocore and answered 412: the key
        # then holds exactly this body (its token is this try's), and it is ours.
        etag = put_object_once(client, bucket_name, key, body, "STANDARD")
    except VerificationError as e:
        raise ReplacementInProgressError(bucket_name, month, crawl, key, _holder(client, bucket_name, key)) from e
    journal = with_fields(journal, at=key, etag=etag)
    try:
        verify_read_back(client, bucket_name, key, body, etag)
        now = _month_now(client, bucket_name, month)
        if (now[0], now[1]) != (before[0], before[1]):
            raise MonthChangedError(
                bucket_name, month, crawl, month_held, "other objects", " (it changed while its journal was written)"
            )
        _check_start(client, bucket_name, month, crawl, now, month_held)
    except BaseException:
        _drop_journal(client, bucket_name, journal)
        raise
    return journal


def _holder(client, bucket_name: str, key: str) -> str | None:
    """The crawl the journal at ``key`` names, or ``None`` if it is gone or cannot be read."""
    try:
        found = get_if_any(client, bucket_name, key)
        return Journal.parse(key, found[0]).crawl if found else None
    except (ClientError, RecoveryError):
        return None


def _drop_journal(client, bucket_name: str, journal: Journal) -> None:
    """Remove this try's journal of a replacement that did not begin (only if it is still exactly ours)."""
    try:
        delete_if_match(client, bucket_name, journal.key, journal.etag)
        purge_versions(client, bucket_name, journal.key)
    except Exception:  # noqa: BLE001 - the error that stopped the replacement matters more
        logger.warning(
            "Could not remove the journal s3://%s/%s of a replacement that did not begin", bucket_name, journal.key
        )


def replace(client, bucket_name: str, journal: Journal, storage_class: str, metadata_storage_class: str) -> None:
    """Take the old ``metadata.json`` away, copy the staged archive over the month, write the new one, clean up.

    If the server refuses to copy the data (an ``AccessDenied``, a lock), the month is put back as it was and the
    error raised. Any other failure leaves the journal for :func:`recover`. The data goes into ``storage_class``,
    the log and ``metadata.json`` into ``metadata_storage_class`` (one that reads at once); nothing cold is read or
    copied from.
    """
    classes = _Classes(storage_class, metadata_storage_class)
    try:
        if journal.old_metadata is not None:
            delete_if_match(client, bucket_name, journal.month + METADATA, journal.old_metadata_etag)
        _finish(client, bucket_name, journal, classes, undo_if_refused=True)
    except ClientError as e:
        if error_code(e) not in REFUSALS or not _old_data_there(client, bucket_name, journal):
            raise
        try:
            lock = object_lock(client, bucket_name)
        except ClientError:
            lock = "unknown"
        _clean_if_untouched(client, bucket_name, journal)
        message = e.response.get("Error", {}).get("Message", "")
        raise RefusedError(
            f"The bucket {bucket_name!r} refused to replace s3://{bucket_name}/{journal.month} with {journal.crawl} "
            f"({error_code(e)} on {e.operation_name}: {message}; the bucket's Object Lock is {lock or 'off'}): "
            "the month was left as it was and nothing was deleted locally. A locked month cannot be replaced until "
            "its retention ends; otherwise grant the connection's credentials what samples/iam-policy.json lists",
            month=journal.month,
            crawl=journal.crawl,
            code=error_code(e),
            lock=lock,
        ) from e


def _clean_if_untouched(client, bucket_name: str, journal: Journal) -> None:
    """After a refusal: remove the staged archive and the journal if the month holds its old metadata.json again
    (the refusal came before it was taken away, or the undo put it back), so no later try meets the journal."""
    try:
        current = get_if_any(client, bucket_name, journal.month + METADATA)
        text = current[0].decode("utf-8", "surrogateescape") if current else None
        if text == journal.old_metadata and _old_data_there(client, bucket_name, journal):
            _clean(client, bucket_name, journal)
    except Exception:  # noqa: BLE001 - the refusal matters more; recover() finds the journal otherwise
        logger.warning(
            "Could not remove the journal s3://%s/%s after a refusal", bucket_name, journal.key, exc_info=True
        )


@dataclass(frozen=True)
class _Classes:
    data: str
    metadata: str  # metadata.json's and scrapy.log's


def _finish(client, bucket_name: str, journal: Journal, classes: _Classes, undo_if_refused: bool = False) -> None:
    """Copy the staged data and log over the month, write the new metadata.json last, then clean staging.

    Each copy's source is a staged object (never cold); the old month's objects are only deleted or overwritten."""
    month, staging, name = journal.month, journal.staging, journal.data_name
    try:
        promote(client, bucket_name, staging + name, month + name, *journal.data, storage_class=classes.data)
    except ClientError:
        if undo_if_refused:  # refused, so the month's data is as it was
            _undo(client, bucket_name, journal, classes)
        raise
    promote(client, bucket_name, staging + LOG, month + LOG, *journal.log, storage_class=classes.metadata)
    key, body = month + METADATA, journal.metadata.encode("utf-8")
    verify_read_back(client, bucket_name, key, body, put_object_once(client, bucket_name, key, body, classes.metadata))
    _drop_old_data(client, bucket_name, journal)
    _clean(client, bucket_name, journal)


def _renamed(journal: Journal) -> bool:
    """Whether the month's data changes its name (an LZ4 month replaced by a zstd archive)."""
    return journal.data_name != journal.old_data_name


def _old_data_there(client, bucket_name: str, journal: Journal) -> bool:
    """Whether the month's data is still the old one (same size and ETag; none if there was none)."""
    return identity(client, bucket_name, journal.month + journal.old_data_name) == journal.old_data


def _drop_old_data(client, bucket_name: str, journal: Journal) -> None:
    """Once the new metadata.json is in place: delete the old data left under its other name, only if it is still
    the object the journal recorded (``If-Match``; already gone is fine)."""
    if _renamed(journal) and journal.old_data is not None:
        delete_if_match(client, bucket_name, journal.month + journal.old_data_name, journal.old_data[1])


def _drop_promoted(client, bucket_name: str, journal: Journal) -> None:
    """Undoing a renamed replacement: delete the copy of the staged data promoted under its new name (the journal
    held the month, and :func:`begin` found no object under that name), only if it is that size."""
    if not _renamed(journal):
        return
    key = journal.month + journal.data_name
    found = identity(client, bucket_name, key)
    if found is None:
        return
    if found[0] != journal.data[0]:
        raise RecoveryError(
            f"s3://{bucket_name}/{key} is not the copy of {journal.crawl}'s staged archive ({found[0]} bytes, not "
            f"{journal.data[0]}): the month needs a person"
        )
    delete_if_match(client, bucket_name, key, found[1])


def _undo(client, bucket_name: str, journal: Journal, classes: _Classes) -> None:
    """Put the month back as it was: only while its data is still the old one (same size and ETag)."""
    if not _old_data_there(client, bucket_name, journal):
        raise RecoveryError(
            f"s3://{bucket_name}/{journal.month}{journal.old_data_name} is neither the archive being replaced nor "
            f"{journal.crawl}'s staged one, and {journal.staging} no longer holds that: the month needs a person"
        )
    _drop_promoted(client, bucket_name, journal)
    if journal.old_metadata is not None:
        body = journal.old_metadata.encode("utf-8", "surrogateescape")
        key = journal.month + METADATA
        verify_read_back(
            client, bucket_name, key, body, put_object_once(client, bucket_name, key, body, classes.metadata)
        )
        logger.warning("Put s3://%s/%s back as it was", bucket_name, key)
    _clean(client, bucket_name, journal)


def _clean(client, bucket_name: str, journal: Journal) -> None:
    """The staged objects, then the journal: a journal without its staged archive can still undo, never half-do.

    The journal goes only if it is the one this replacement wrote or read (``If-Match`` on its ETag): never another
    try's journal of the month. Nothing of a month is deleted here: the staged keys lie under the crawl's staging
    prefix (checked when the journal was written or read)."""
    if not journal.staging.startswith(STAGING + "/") or not is_journal(journal.key):
        raise RecoveryError(f"refusing to clean {journal.staging} and {journal.key}: not under {STAGING}/")
    for name in (journal.data_name, LOG):
        client.delete_object(Bucket=bucket_name, Key=journal.staging + name)
    delete_if_match(client, bucket_name, journal.key, journal.etag)
    purge_versions(client, bucket_name, journal.staging)  # a versioned bucket's copies of them, and their markers
    if not journal.key.startswith(journal.staging):
        purge_versions(client, bucket_name, journal.key)


def recover(
    client,
    bucket_name: str,
    source_id: str,
    year: int,
    month: int,
    storage_class: str,
    metadata_storage_class: str,
) -> list[str]:
    """Finish or undo every interrupted replacement of one month; return what was done, in words.

    The data goes into ``storage_class``, the log and ``metadata.json`` into ``metadata_storage_class``, as
    :func:`replace` puts them.

    Call it under the month's claim. Raises :class:`RecoveryError` for a month that neither can mend.
    """
    classes = _Classes(storage_class, metadata_storage_class)
    prefix = month_prefix(source_id, year, month)
    done = []
    for key in journals(client, bucket_name, source_id):
        if journal_period(key) != f"{year:04d}{month:02d}":
            continue
        found = get_if_any(client, bucket_name, key)
        if found is None:
            continue
        journal = Journal.parse(key, *found)
        if journal.month != prefix:
            continue
        done.append(f"{journal.crawl}: {_recover(client, bucket_name, journal, classes)}")
        logger.warning("s3://%s/%s: an interrupted replacement by %s", bucket_name, prefix, done[-1])
    return done


def _recover(client, bucket_name: str, journal: Journal, classes: _Classes) -> str:
    current = get_if_any(client, bucket_name, journal.month + METADATA)
    if current is not None:
        text = current[0].decode("utf-8", "surrogateescape")
        if text == journal.metadata:
            _drop_old_data(client, bucket_name, journal)
            _clean(client, bucket_name, journal)
            return "it had completed; its staging objects were removed"
        if text == journal.old_metadata:
            _drop_promoted(client, bucket_name, journal)
            _clean(client, bucket_name, journal)
            return "it had not begun to change the month; its staging objects were removed"
        raise RecoveryError(
            f"s3://{bucket_name}/{journal.month}metadata.json is neither the one {journal.crawl} replaced nor its "
            "own: the month needs a person"
        )
    staged = (
        identity(client, bucket_name, journal.staging + journal.data_name) == journal.data[:2]
        and identity(client, bucket_name, journal.staging + LOG) == journal.log[:2]
    )
    if staged:
        _finish(client, bucket_name, journal, classes)
        return "finished: the month now holds it"
    _undo(client, bucket_name, journal, classes)
    return "undone: the month holds what it held before"
