"""The bucket: one per Kingfisher Collect installation, at most one crawl per source and calendar month.

Layout, exactly as the older tools wrote it (real buckets hold years of it)::

    <source_id>/<YYYY>/<MM>/data.tar.zst    tar of the crawl directory, in zstd frames (new archives)
    <source_id>/<YYYY>/<MM>/data.tar.lz4    or in an LZ4 frame (the older tools, this package before 2.0)
    <source_id>/<YYYY>/<MM>/metadata.json   what was archived
    <source_id>/<YYYY>/<MM>/scrapy.log      the crawl's log
    staging/...                             in-flight uploads; leftovers mean an upload broke

Months written by hand may be ``1`` for ``01``: listing reads both, writing uses two digits. Both metadata
generations (2021: XXH3 ``checksum``; late 2020: ``data_md5``/``data_size``) read into one :class:`ArchivedCrawl`,
what a generation lacks left unknown rather than guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from kingfisher_archive.archive_format import FORMAT_ERRORS
from kingfisher_archive.errors import PermanentError, RetryableError
from kingfisher_archive.policy import Candidate
from kingfisher_archive.s3.errors import ACCESS_DENIED, CREDENTIALS_REFUSED, NO_SUCH_BUCKET, error_code
from kingfisher_archive.s3.objects import exists, get_if_any, identity, stream
from kingfisher_archive.s3.thawing import HOURS, Thaw, request_thaw, thaw_of

DATA_LZ4 = "data.tar.lz4"
DATA_ZST = "data.tar.zst"
#: Every name a month's data object has had: LZ4 (the older tools, and this package before 2.0), zstd.
DATA_NAMES = (DATA_LZ4, DATA_ZST)
#: The name new archives are written as.
DATA = DATA_ZST
#: The codec of each data object's name, as ``metadata.json`` (``codec``) and ``list`` say it.
CODECS = {DATA_LZ4: "lz4", DATA_ZST: "zstd"}
METADATA = "metadata.json"
#: The user metadata (``x-amz-meta-crawl``) of a data object written since 2.0: the crawl it holds, read by HEAD.
CRAWL_METADATA = "crawl"
#: What is asked for when a cold archive's bytes are needed (by the archive path or the audit): the cheapest tier,
#: and a copy lasting long enough for the daily run after it is ready.
THAW_TIER = "Bulk"
THAW_DAYS = 7
LOG = "scrapy.log"
STAGING = "staging"
#: The names under which the package writes its own objects (not a month's), each refused as a source id: ``staging``
#: at the top of the bucket, and the probe's folder inside it (:data:`kingfisher_archive.s3.probe.PROBE_PREFIX`),
#: which a source of that name would share its staging prefix with.
RESERVED = {STAGING: f"the bucket's {STAGING}/ folder", "_probe": f"the probe's {STAGING}/_probe/ folder"}
#: What a broken download, a damaged LZ4 frame or zstd stream, or a malformed tar raise while an archive streams
#: from the bucket.
STREAM_ERRORS = (*FORMAT_ERRORS, BotoCoreError)

_MONTH_KEY = re.compile(
    r"(?P<prefix>(?P<source>[^/]+)/(?P<year>\d{4})/(?P<month>\d{1,2})/)(?P<name>metadata\.json|data\.tar\.lz4|data\.tar\.zst|scrapy\.log)"
)


@dataclass(frozen=True)
class MonthKey:
    """One object of a month, as its key spells it (``1`` or ``01``)."""

    source_id: str
    year: int
    month: int
    name: str  # one of DATA_NAMES, METADATA or LOG
    prefix: str  # <source_id>/<YYYY>/<M or MM>/, as spelled


def parse_month_key(key: str) -> MonthKey | None:
    """The month object ``key`` is (``<source_id>/<YYYY>/<MM>/`` and one of :data:`DATA_NAMES`, :data:`METADATA`,
    :data:`LOG`; a month ``1`` to ``12``, spelled with one digit or two), or ``None`` for anything else. The one
    reader of a month's keys: the bucket's listing, the audit and ``list`` go through it."""
    match = _MONTH_KEY.fullmatch(key)
    if not match or not 1 <= int(match["month"]) <= 12:
        return None
    return MonthKey(match["source"], int(match["year"]), int(match["month"]), match["name"], match["prefix"])


class BucketError(RetryableError):  # retried: also raised when S3 is unreachable
    """The bucket cannot be used (missing, forbidden, wrong credentials): fail before touching any crawl."""


class MetadataError(RetryableError):  # retried: MonthIncompleteError can be a run's upload
    """A month's metadata.json exists but cannot be understood; that month cannot be compared with."""


class MonthIncompleteError(MetadataError):
    """A month holds a data object (``data.tar.zst``, ``data.tar.lz4``) or ``scrapy.log`` but no ``metadata.json``: it
    is not empty, and it cannot be compared with until it is made whole (see :mod:`kingfisher_archive.replacement`)."""

    def __init__(self, bucket: str, prefix: str, names: list[str]) -> None:
        self.prefix = prefix
        self.names = names
        super().__init__(
            f"s3://{bucket}/{prefix} holds {' and '.join(names)} but no metadata.json (a replacement or an upload "
            "that was cut short): it is neither empty nor comparable until it is made whole"
        )


class ArchiveFrozenError(RetryableError):
    """A month's data is in a cold class (``GLACIER``, ``DEEP_ARCHIVE``) and its bytes are needed: a thaw was asked
    for (:func:`open_data`), and whoever needs them holds until it is ready."""

    def __init__(self, bucket: str, key: str, thaw: Thaw) -> None:
        self.key = key
        self.thaw = thaw
        self.hours = HOURS.get((thaw.storage_class, THAW_TIER))
        within = f"ready within {self.hours:g} h" if self.hours else "ready in hours"
        super().__init__(
            f"s3://{bucket}/{key} is in {thaw.storage_class}: a readable copy was asked for ({THAW_TIER} tier, "
            f"{within}, kept {THAW_DAYS} days); the next run after that continues"
        )


def open_data(client, bucket_name: str, key: str, head: dict | None = None):
    """The stream of a month's data object, if it can be read now (one HEAD first, unless the caller's ``head`` is
    that: a cold object is never GET).

    A cold one not thawed gets a thaw asked for (:data:`THAW_TIER`; one already running is joined), and raises
    :class:`ArchiveFrozenError`; ``ClientError`` (:data:`~kingfisher_archive.s3.errors.MISSING`) if it is not there.
    """
    thaw = thaw_of(head if head is not None else client.head_object(Bucket=bucket_name, Key=key))
    if not thaw.readable:
        raise ArchiveFrozenError(bucket_name, key, request_thaw(client, bucket_name, key, THAW_DAYS, THAW_TIER))
    return stream(client, bucket_name, key)


class ReservedSourceError(PermanentError):
    """A source id is one of the names the package writes its own objects under (:data:`RESERVED`)."""


def reserved_source_problem(source_id: str) -> str | None:
    """Why ``source_id`` cannot have months in the bucket (it is a name the package writes under), or ``None``."""
    if source_id in RESERVED:
        return (
            f"the source id {source_id!r} is reserved: its months would lie in {RESERVED[source_id]}, where this "
            "package writes its own objects (and deletes them); it cannot be archived into this bucket"
        )
    return None


def _refuse_reserved(source_id: str) -> None:
    if problem := reserved_source_problem(source_id):
        raise ReservedSourceError(f"{problem}: nothing was written")


def month_prefix(source_id: str, year: int, month: int) -> str:
    """``<source_id>/<YYYY>/<MM>/``; :class:`ReservedSourceError` for a source id the package writes under."""
    _refuse_reserved(source_id)
    return f"{source_id}/{year:04d}/{month:02d}/"


def staging_prefix(source_id: str, data_version: str) -> str:
    """Where one crawl's uploads wait: per crawl, so two crawls of one month never share staging keys.

    Raises :class:`ReservedSourceError` for a source id the package writes under."""
    _refuse_reserved(source_id)
    return f"{STAGING}/{source_id}/{data_version}/"


def parse_month_prefix(prefix: str) -> tuple[str, int, int]:
    """``<source_id>/<YYYY>/<MM>/`` back into its parts; ``ValueError`` naming it if it is not one."""
    key = parse_month_key(prefix + METADATA)  # the one reader of a month's keys
    if key is None:
        raise ValueError(f"{prefix!r} is not a month prefix (<source_id>/<YYYY>/<MM>/)")
    return key.source_id, key.year, key.month


@dataclass(frozen=True)
class ArchivedCrawl:
    """What a month's metadata.json says, whatever its generation."""

    key: str
    source_id: str
    year: int
    month: int
    data_version: str | None
    bytes: int
    files_count: int | None
    errors_count: int | None
    checksum: str | None  # XXH3-128 hex; None for 2020 archives (their MD5 is not comparable)
    generation: str  # "2021" (also what this package writes) or "2020"
    raw: dict

    @property
    def prefix(self) -> str:
        """The month's prefix as this metadata.json spells it (``1`` or ``01``), where its data and log lie."""
        return self.key[: -len(METADATA)]

    @property
    def data_name(self) -> str:
        """The name of the month's data object, as metadata.json records it (``data_object``); archives written
        before zstd (this package before 2.0, the older tools) have none and are :data:`DATA_LZ4`."""
        name = self.raw.get("data_object")
        return name if name in DATA_NAMES else DATA_LZ4

    @property
    def data_key(self) -> str:
        """The key of the month's data object beside this metadata.json."""
        return self.prefix + self.data_name

    @property
    def log_bytes(self) -> int | None:
        """The size of the archived ``scrapy.log``, as this package's ``metadata.json`` records it (else ``None``)."""
        log = (self.raw.get("checksums") or {}).get(LOG) if isinstance(self.raw.get("checksums"), dict) else None
        size = log.get("bytes") if isinstance(log, dict) else None
        return size if isinstance(size, int) and not isinstance(size, bool) else None

    @property
    def id(self) -> str:
        if self.data_version:
            return f"{self.source_id}/{self.data_version}"
        return f"{self.source_id}/{self.year:04d}-{self.month:02d} (archived)"

    def candidate(self) -> Candidate:
        return Candidate.of(self, vars(self), archived=True)


def _int(data: dict, key: str, required: bool) -> int | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MetadataError(f"{key!r} is {value!r}, not a count")
    return value


def parse_metadata(key: str, source_id: str, year: int, month: int, body: bytes) -> ArchivedCrawl:
    """Read either generation of metadata.json; raise :class:`MetadataError` saying what is wrong."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise MetadataError(f"{key} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise MetadataError(f"{key} is not a JSON object")
    try:
        if "checksum" in data or "bytes" in data:
            checksum = data.get("checksum")
            if not isinstance(checksum, str) or not re.fullmatch(r"[0-9a-f]{32}", checksum):
                raise MetadataError(f"'checksum' is {checksum!r}, not 32 hex digits")
            data_version = data.get("data_version")
            return ArchivedCrawl(
                key=key,
                source_id=source_id,
                year=year,
                month=month,
                data_version=data_version if isinstance(data_version, str) else None,
                bytes=_int(data, "bytes", True),
                files_count=_int(data, "files_count", False),
                errors_count=_int(data, "errors_count", False),
                checksum=checksum,
                generation="2021",
                raw=data,
            )
        if "data_size" in data or "data_md5" in data:
            return ArchivedCrawl(
                key=key,
                source_id=source_id,
                year=year,
                month=month,
                data_version=None,
                bytes=_int(data, "data_size", True),
                files_count=None,
                errors_count=_int(data, "errors_count", False),
                checksum=None,
                generation="2020",
                raw=data,
            )
    except MetadataError as e:
        raise MetadataError(f"{key}: {e}") from None
    raise MetadataError(f"{key} has neither 'bytes' and 'checksum' (2021) nor 'data_size' (2020)")


class Bucket:
    """The archive bucket, through a boto3 S3 client (from the ``kingfisher_archive_s3`` connection)."""

    def __init__(self, client, name: str, storage_class: str = "STANDARD_IA", connection_id: str = "") -> None:
        self.client = client
        self.name = name
        self.storage_class = storage_class
        self.connection_id = connection_id
        self._months: dict[str, dict[tuple[int, int], str]] = {}
        self._incomplete: dict[str, dict[tuple[int, int], list[str]]] = {}
        self._listed: dict[str, list[tuple[MonthKey, dict]]] = {}
        self._archived: dict[tuple[str, int, int], ArchivedCrawl | None] = {}

    def check(self) -> None:
        """Fail fast, naming the bucket and connection, if we cannot list the bucket."""
        where = f"bucket {self.name!r}" + (f" (connection {self.connection_id!r})" if self.connection_id else "")
        try:
            self.client.head_bucket(Bucket=self.name)
            self.client.list_objects_v2(Bucket=self.name, MaxKeys=1)
        except ClientError as e:
            error, code = e.response.get("Error", {}), error_code(e)
            if code in NO_SUCH_BUCKET:
                raise BucketError(f"The {where} does not exist") from None
            if code in (*CREDENTIALS_REFUSED, *ACCESS_DENIED):
                raise BucketError(f"The {where} refused our credentials ({code}): check the connection") from None
            raise BucketError(f"The {where} cannot be used: {code} {error.get('Message', '')}".strip()) from None
        except Exception as e:  # endpoint down, DNS, TLS: say where we tried to go
            raise BucketError(f"The {where} cannot be reached: {e}") from None

    def months(self, source_id: str) -> dict[tuple[int, int], str]:
        """Every month of a source that has a metadata.json, mapped to its key (paginated; cached per run)."""
        if source_id not in self._months:
            found: dict[tuple[int, int], str] = {}
            others: dict[tuple[int, int], set[str]] = {}
            listed: list[tuple[MonthKey, dict]] = []
            prefix = f"{source_id}/"
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
                for item in page.get("Contents", []):
                    match = parse_month_key(item["Key"])
                    if match is None or match.source_id != source_id:
                        continue
                    listed.append((match, item))
                    period = (match.year, match.month)
                    if match.name != METADATA:
                        others.setdefault(period, set()).add(match.name)
                    # Two spellings of one month: prefer the two-digit one, which we write.
                    elif period not in found or match.prefix == month_prefix(source_id, *period):
                        found[period] = item["Key"]
            self._months[source_id] = found
            self._listed[source_id] = listed
            self._incomplete[source_id] = {p: sorted(names) for p, names in others.items() if p not in found}
        return self._months[source_id]

    def listing(self, source_id: str) -> list[tuple[MonthKey, dict]]:
        """The objects of a source's months, each with its ``list_objects_v2`` entry (``Key``, ``Size``, ``ETag``), in
        the listing's order: the one listing :meth:`months` reads."""
        self.months(source_id)
        return self._listed[source_id]

    def incomplete(self, source_id: str) -> dict[tuple[int, int], list[str]]:
        """The months of a source, as listed, that hold a data object or a log but no metadata.json."""
        self.months(source_id)
        return self._incomplete[source_id]

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def archived(self, source_id: str, year: int, month: int) -> ArchivedCrawl | None:
        """The month's archive, or ``None`` for an empty month. Raises :class:`MetadataError` if its metadata is
        unreadable, and :class:`MonthIncompleteError` if the month holds objects but no metadata.json.

        The month's own keys are asked for (GET, HEAD), not inferred from the listing, which some servers let lag
        behind their writes. Read once per run, like the listing: deciding a source compares several crawls with
        the same months; :meth:`forget` reads a month afresh.
        """
        period = (source_id, year, month)
        if period not in self._archived:
            ours = month_prefix(source_id, year, month)
            key, body = ours + METADATA, get_if_any(self.client, self.name, ours + METADATA)
            if body is None and (listed := self.months(source_id).get((year, month))) not in (None, key):
                key, body = listed, get_if_any(self.client, self.name, listed)  # spelled by hand with one digit
            if body is not None:
                body = body[0]
            if body is None:
                names = [name for name in (*DATA_NAMES, LOG) if identity(self.client, self.name, ours + name)]
                if names:
                    raise MonthIncompleteError(self.name, ours, names)
                self._archived[period] = None
            else:
                self._archived[period] = parse_metadata(key, source_id, year, month, body)
        return self._archived[period]

    def data_size(self, archived: ArchivedCrawl) -> int | None:
        """The size of the data object its metadata.json names (:attr:`ArchivedCrawl.data_key`), or ``None`` if
        there is none."""
        found = identity(self.client, self.name, archived.data_key)
        return found[0] if found else None

    def forget(self, source_id: str, year: int, month: int) -> None:
        """Read this month afresh next time (it was just made whole, or changed)."""
        self._archived.pop((source_id, year, month), None)
        self._months.pop(source_id, None)

    def archived_before(self, source_id: str, year: int, month: int) -> ArchivedCrawl | None:
        """The latest archive of a month before the given one; :class:`MonthIncompleteError` if that latest
        month holds objects without metadata.json (it is never skipped for an older one)."""
        earlier = [p for p in (*self.months(source_id), *self.incomplete(source_id)) if p < (year, month)]
        if not earlier:
            return None
        return self.archived(source_id, *max(earlier))


def month_is_empty(client, bucket_name: str, prefix: str) -> bool:
    """Whether none of the month's objects (:data:`METADATA`, each of :data:`DATA_NAMES`, :data:`LOG`) exists under
    ``prefix``, asked of each key (HEAD), not of a listing that may lag writes."""
    return not any(exists(client, bucket_name, prefix + name) for name in (METADATA, *DATA_NAMES, LOG))


def month_state(archived: ArchivedCrawl | None) -> str | None:
    """What a month of the bucket holds, in a few words: what a decision saw, and what archiving must find again."""
    if archived is None:
        return None
    return f"{archived.id} ({archived.bytes} bytes, checksum {archived.checksum or 'none'})"
