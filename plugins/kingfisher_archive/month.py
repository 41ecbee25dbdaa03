"""A month of the bucket, ``<source_id>/<YYYY>/<MM>/``: what it holds now, asked of this one module.

A month is in one of five states (:class:`Holds`): empty; whole (a ``metadata.json`` naming a crawl, beside its
data); holding the leftovers of an upload by a crawl being decided or archived (data or a log, no ``metadata.json``:
a try into the empty month cut short, which that crawl rewrites); incomplete (data or a log without
``metadata.json``, and nothing says whose); or being replaced (a journal of a replacement, interrupted or in
progress). :func:`look` tells which. The decide and archive steps, mending, the audit and the catalogue ask it (or
:class:`~kingfisher_archive.bucket.Bucket`, which reads a month's ``metadata.json``); the replacement journals' keys
and the first members of a month's tar (:func:`crawl_in`) are read here and nowhere else. How a month changes from
one whole state to another is :mod:`kingfisher_archive.replacement`'s transaction, begun only from the state the
change was decided against. See docs/safety.md, sections 3 to 5.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum

from botocore.exceptions import ClientError

from kingfisher_archive import archive_format
from kingfisher_archive.bucket import (
    CRAWL_METADATA,
    DATA_NAMES,
    STAGING,
    STREAM_ERRORS,
    ArchivedCrawl,
    Bucket,
    MonthIncompleteError,
    month_prefix,
    month_state,
    open_data,
    parse_month_prefix,
)
from kingfisher_archive.records import CrawlKey
from kingfisher_archive.s3.errors import MISSING, error_code

#: The name of a journal written before 2.0, beside its staged archive: ``staging/<source_id>/<data_version>/``.
JOURNAL = "replacing.json"
#: The end of a month's journal's key: ``staging/<source_id>/<YYYY>-<MM>.replacing.json`` (:func:`journal_key`).
MONTH_JOURNAL_SUFFIX = ".replacing.json"
_MONTH_JOURNAL = re.compile(
    rf"{STAGING}/(?P<source>[^/]+)/(?P<year>\d{{4}})-(?P<month>\d{{2}}){re.escape(MONTH_JOURNAL_SUFFIX)}"
)
_LEGACY_JOURNAL = re.compile(rf"{STAGING}/(?P<source>[^/]+)/(?P<version>[^/]+)/{re.escape(JOURNAL)}")


class Holds(StrEnum):
    """What a month holds."""

    EMPTY = "empty"
    WHOLE = "whole"  # a metadata.json (whose data the audit checks beside it)
    OWN_LEFTOVERS = "own_leftovers"  # data or a log, no metadata.json, of a crawl the caller is deciding or archiving
    INCOMPLETE = "incomplete"  # data or a log, no metadata.json, and nothing says whose
    REPLACING = "replacing"  # a journal of a replacement of it is there


@dataclass(frozen=True)
class Month:
    """One month as :func:`look` found it."""

    source_id: str
    year: int
    month: int
    holds: Holds
    archived: ArchivedCrawl | None = None  # its metadata.json, when it has one
    names: tuple[str, ...] = ()  # the objects it holds without a metadata.json
    leftovers_of: str | None = None  # the crawl whose upload left them, as its data's tar names it
    journals: tuple[str, ...] = field(default=())  # the journals of its replacement (REPLACING)

    @property
    def prefix(self) -> str:
        return month_prefix(self.source_id, self.year, self.month)

    @property
    def state(self) -> str | None:
        """What a decision saw of it, in a few words (:func:`kingfisher_archive.bucket.month_state`): an archive, or
        ``None`` for a month that counts as empty (its own leftovers included)."""
        return month_state(self.archived)

    def archive(self, bucket: str) -> ArchivedCrawl | None:
        """Its archive, as :meth:`~kingfisher_archive.bucket.Bucket.archived` reads it: ``None`` for an empty month;
        :class:`~kingfisher_archive.bucket.MonthIncompleteError` for one that holds objects but no metadata.json."""
        if self.holds in (Holds.EMPTY, Holds.WHOLE):
            return self.archived
        raise self.incomplete_error(bucket)

    def for_its_crawl(self, bucket: str) -> ArchivedCrawl | None:
        """What the month holds for the crawl :func:`look` was asked about (:func:`archived_for`)."""
        if self.holds == Holds.INCOMPLETE and self.leftovers_of is None and not set(DATA_NAMES) & set(self.names):
            return None  # a log alone, which the upload of this crawl rewrites
        if self.holds in (Holds.INCOMPLETE, Holds.REPLACING):
            raise self.incomplete_error(bucket, whose=True)
        return self.archived

    def incomplete_error(self, bucket: str, whose: bool = False) -> MonthIncompleteError:
        """The error of a month that cannot be taken as it is; ``whose`` adds whose data it holds."""
        names = [*self.names]
        if whose:
            names.append(f"(the data is {self.leftovers_of or 'not an archive of this source'})")
        return MonthIncompleteError(bucket, self.prefix, names)


def look(bucket: Bucket, source_id: str, year: int, month: int, crawls: Collection[str] = ()) -> Month:
    """What the month holds now.

    :param crawls: the crawls (ids) the caller is deciding or archiving: a month holding data that an upload of one
        of them (of this month) left is :attr:`Holds.OWN_LEFTOVERS`, which that crawl rewrites.
    :raises kingfisher_archive.bucket.MetadataError: its ``metadata.json`` cannot be read.
    """
    try:
        archived = bucket.archived(source_id, year, month)
    except MonthIncompleteError as e:
        names = tuple(e.names)
        if found := _journals_of(bucket, source_id, year, month):
            return Month(source_id, year, month, Holds.REPLACING, names=names, journals=found)
        # Whose data it is, by every data object's tar (an LZ4 and a zstd one of different crawls: nobody's).
        holders = {
            crawl_in(bucket.client, bucket.name, e.prefix + name, source_id) for name in DATA_NAMES if name in names
        }
        holds = holders.pop() if len(holders) == 1 else None
        period = f"{source_id}/{year:04d}{month:02d}"
        if holds is not None and holds in crawls and holds.startswith(period):
            return Month(source_id, year, month, Holds.OWN_LEFTOVERS, names=names, leftovers_of=holds)
        return Month(source_id, year, month, Holds.INCOMPLETE, names=names, leftovers_of=holds)
    if archived is None:
        return Month(source_id, year, month, Holds.EMPTY)
    return Month(source_id, year, month, Holds.WHOLE, archived=archived)


def _journals_of(bucket: Bucket, source_id: str, year: int, month: int) -> tuple[str, ...]:
    period = f"{year:04d}{month:02d}"
    return tuple(key for key in journals(bucket.client, bucket.name, source_id) if journal_period(key) == period)


def journal_key(month: str) -> str:
    """The key of the journal of any replacement of ``month`` (``<source_id>/<YYYY>/<MM>/``): one per month.

    Directly under ``staging/<source_id>/``, so no crawl's staging prefix (``staging/<source_id>/<data_version>/``)
    holds it, and cleaning one crawl's staging never removes it."""
    source_id, year, month_ = parse_month_prefix(month)
    return f"{STAGING}/{source_id}/{year:04d}-{month_:02d}{MONTH_JOURNAL_SUFFIX}"


def is_journal(key: str) -> bool:
    """Whether ``key`` is a replacement's journal: a month's, or one written before 2.0 beside its staged archive."""
    return bool(_MONTH_JOURNAL.fullmatch(key) or _LEGACY_JOURNAL.fullmatch(key))


def journals(client, bucket: str, source_id: str) -> list[str]:
    """The keys of every replacement journal of a source (interrupted or in progress): the months' journals, and
    journals written before 2.0 beside their staged archives."""
    paginator = client.get_paginator("list_objects_v2")
    prefix = f"{STAGING}/{source_id}/"
    return [
        item["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if is_journal(item["Key"]) and item["Key"].startswith(prefix)
    ]


def journal_period(key: str) -> str:
    """``YYYYMM`` of the month a journal's key names (its own, or its crawl's data version's)."""
    if match := _MONTH_JOURNAL.fullmatch(key):
        return match["year"] + match["month"]
    return key.split("/")[2][:6]


def interrupted(client, bucket: str, source_id: str, year: int, month: int) -> bool:
    """Whether a journal of a replacement of this month is there (named by its month, or by its crawl's)."""
    period = f"{year:04d}{month:02d}"
    return any(journal_period(key) == period for key in journals(client, bucket, source_id))


def crawl_in(client, bucket: str, key: str, source_id: str) -> str | None:
    """The crawl an archive holds, ``<source_id>/<data_version>``: from the data object's user metadata
    (``x-amz-meta-crawl``, one HEAD), else, for an archive written before 2.0, from its first members (the tar names
    it); a cold one of those gets a thaw asked for instead, and raises
    :class:`~kingfisher_archive.bucket.ArchiveFrozenError`.

    :param client: a boto3 S3 client.
    :param bucket: the bucket's name.
    :param key: the archive's key (``<month>data.tar.zst`` or ``<month>data.tar.lz4``: either codec is read).
    :param source_id: the source whose crawl it must hold.
    :returns: ``None`` if the object is not there or is not an archive of a crawl of ``source_id``.
    """
    members = archive_format.CrawlMembers(source_id)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if error_code(e) in MISSING:
            return None
        raise
    if named := (head.get("Metadata") or {}).get(CRAWL_METADATA):
        return named if named.startswith(f"{source_id}/") and "/" not in named[len(source_id) + 1 :] else None
    try:
        with archive_format.open_archive(open_data(client, bucket, key, head)) as (tar, _):
            for member in tar:
                if members.relpath(member) is not None:
                    return f"{source_id}/{members.data_version}"
    except ClientError as e:
        if error_code(e) in MISSING:
            return None
        raise
    except (*STREAM_ERRORS, archive_format.RefusedMemberError):
        return None
    return None


def archived_for(bucket: Bucket, key: CrawlKey) -> ArchivedCrawl | None:
    """What the crawl's month holds; a month holding only what an upload of *this* crawl left (data or a log without
    ``metadata.json``: a try into the empty month cut short) counts as empty, since archiving rewrites it.

    Raises :class:`~kingfisher_archive.bucket.MonthIncompleteError` for a month holding another crawl's data
    without ``metadata.json`` and no journal to finish or undo: nothing is written over that.
    """
    return look(bucket, key.source_id, key.year, key.month, {key.id}).for_its_crawl(bucket.name)
