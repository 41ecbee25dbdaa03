"""Settings: the Airflow Variables and Connections the package reads, gathered into one frozen object.

The Variables are read inside tasks (never at DAG-file import), through a getter the caller passes in, so
``AIRFLOW_VAR_<NAME>`` environment variables work and this module needs no Airflow to be tested. Every missing or
wrong setting is reported at once, by name, by the run's first task.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from kingfisher_archive import storage_cost
from kingfisher_archive.compression import ZSTD_LEVELS
from kingfisher_archive.errors import RetryableError

PROCESS_CONNECTION = "kingfisher_process"
S3_CONNECTION = "kingfisher_archive_s3"

BUCKET = "kingfisher_archive_bucket"
DATA_DIRECTORY = "kingfisher_archive_data_directory"
LOGS_DIRECTORY = "kingfisher_archive_logs_directory"
LEDGER = "kingfisher_archive_ledger"
STORAGE_CLASS = "kingfisher_archive_storage_class"
#: The class of each month's ``metadata.json`` and ``scrapy.log``: read by every decision, so never a cold one.
METADATA_STORAGE_CLASS = "kingfisher_archive_metadata_storage_class"
RETENTION_DAYS = "kingfisher_archive_retention_days"
WAITING_WARNING_DAYS = "kingfisher_archive_waiting_warning_days"
#: The storage price table, as JSON (:func:`kingfisher_archive.storage_cost.parse`); unset: us-east-1's, dated.
STORAGE_PRICES = storage_cost.VARIABLE
#: The zstd level new archives are compressed at (1-19).
COMPRESSION_LEVEL = "kingfisher_archive_compression_level"
#: Server-side encryption sent on every write and copy, as JSON with boto3's names; the S3 connection's extra may
#: hold the same under "encryption" (the Variable wins).
ENCRYPTION = "kingfisher_archive_encryption"
#: The one directory the restore DAG writes under; read by the restore task only (see :func:`restore_directory`).
RESTORE_DIRECTORY = "kingfisher_archive_restore_directory"
#: How often, in seconds, the restore DAG (and ``restore --wait``) asks whether a cold month's copy is ready.
THAW_POLL_SECONDS = "kingfisher_archive_thaw_poll_seconds"
DEFAULT_THAW_POLL_SECONDS = 600.0

REQUIRED = (BUCKET, DATA_DIRECTORY, LOGS_DIRECTORY)
DEFAULT_STORAGE_CLASS = "STANDARD_IA"
#: S3's storage classes (the ``StorageClass`` of ``PutObject``), as the S3 API reference lists them.
KNOWN_STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "SNOW",
    "EXPRESS_ONEZONE",
)
#: The classes whose objects cannot be read until a restore has made a copy (hours): never the metadata's.
COLD_STORAGE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
LEDGER_FILE = "kingfisher_archive.sqlite3"
#: Loading a big crawl takes Kingfisher Process hours, rarely more than a day; three days means something is stuck.
DEFAULT_WAITING_WARNING_DAYS = 3
#: zstd level 1: the archive step as fast as today's LZ4 one and as ``tar | zstd -1 | upload``, the same crawl in
#: about 42% fewer bytes than LZ4; level 3 saves 9% more but was slower than LZ4 in 3 runs of 4 (docs/performance.md,
#: Codecs).
DEFAULT_COMPRESSION_LEVEL = 1


class ConfigurationError(RetryableError):  # retried: also raised when Kingfisher Process is unreachable
    """A Variable or Connection is missing or unusable; the message names each one."""


@dataclass(frozen=True)
class Settings:
    bucket: str
    data_directory: str
    logs_directory: str
    ledger: str
    storage_class: str = DEFAULT_STORAGE_CLASS
    retention_days: int | None = None  # None: local retention is off
    #: Warn when a crawl has waited longer than this for Kingfisher Process to load its files.
    waiting_warning_days: int = DEFAULT_WAITING_WARNING_DAYS
    #: The zstd level of new archives (``data.tar.zst``).
    compression_level: int = DEFAULT_COMPRESSION_LEVEL
    #: The Variable :data:`STORAGE_PRICES` as given (JSON, checked by :func:`load`; ``""``: the defaults), kept as
    #: text so that the settings stay plain values.
    storage_prices: str = ""

    #: ``metadata.json``'s and ``scrapy.log``'s class; ``None``: :func:`metadata_class_for` the data's class.
    metadata_storage_class: str | None = None

    @property
    def metadata_class(self) -> str:
        """The class ``metadata.json`` and ``scrapy.log`` are written in."""
        return self.metadata_storage_class or metadata_class_for(self.storage_class)

    @cached_property
    def prices(self) -> storage_cost.Prices:
        """The price table the catalogue's bill and a replacement's early-deletion charge are counted with (parsed
        once per settings)."""
        return storage_cost.parse(self.storage_prices, f"Airflow Variable {STORAGE_PRICES!r}")


def metadata_class_for(storage_class: str) -> str:
    """The metadata's class when its Variable is not set: the data's, if that reads at once (so a server that knows
    only ``STANDARD`` is asked for nothing else), else :data:`DEFAULT_STORAGE_CLASS`."""
    return DEFAULT_STORAGE_CLASS if storage_class in COLD_STORAGE_CLASSES else storage_class


def storage_class_problems(
    storage_class: str, metadata_storage_class: str, where: str = "Airflow Variable"
) -> list[str]:
    """What is wrong with the two classes, one message each, naming the setting (empty: nothing)."""
    problems = []
    for name, value in ((STORAGE_CLASS, storage_class), (METADATA_STORAGE_CLASS, metadata_storage_class)):
        if value and value not in KNOWN_STORAGE_CLASSES:
            problems.append(
                f"{where} {name!r} is {value!r}, not a storage class S3 knows: one of "
                + ", ".join(KNOWN_STORAGE_CLASSES)
            )
    if metadata_storage_class in COLD_STORAGE_CLASSES:
        problems.append(
            f"{where} {METADATA_STORAGE_CLASS!r} is {metadata_storage_class!r}, which cannot be read for hours after "
            "a write: metadata.json and scrapy.log are read by every run; choose a class that reads at once "
            "(STANDARD_IA, GLACIER_IR, ...)"
        )
    return problems


def encryption(variable: str | None, extra: object = None) -> dict:
    """The encryption settings from the Variable :data:`ENCRYPTION` (JSON) or the connection's extra
    ``"encryption"``: ``ServerSideEncryption`` (``AES256``, ``aws:kms`` or ``aws:kms:dsse``), with ``aws:kms`` an
    optional ``SSEKMSKeyId`` and ``BucketKeyEnabled``. ``{}`` when neither is set (the bucket's default applies)."""
    from kingfisher_archive.s3.client import ENCRYPTION_ALGORITHMS, ENCRYPTION_PARAMETERS

    where, value = (
        (f"Airflow Variable {ENCRYPTION!r}", variable)
        if (variable or "").strip()
        else (
            'the S3 connection\'s extra "encryption"',
            extra,
        )
    )
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise ConfigurationError(f"{where} is not JSON ({e}): {value!r}") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where} must be a JSON object, not {value!r}")
    unknown = sorted(set(value) - set(ENCRYPTION_PARAMETERS))
    if unknown:
        raise ConfigurationError(f"{where} has {unknown}: the keys it may have are {list(ENCRYPTION_PARAMETERS)}")
    algorithm = value.get("ServerSideEncryption")
    if algorithm not in ENCRYPTION_ALGORITHMS:
        raise ConfigurationError(
            f"{where} has ServerSideEncryption {algorithm!r}: it must be one of {list(ENCRYPTION_ALGORITHMS)}"
        )
    if not algorithm.startswith("aws:kms") and set(value) - {"ServerSideEncryption"}:
        raise ConfigurationError(f"{where}: SSEKMSKeyId and BucketKeyEnabled go with aws:kms only")
    if not isinstance(value.get("BucketKeyEnabled", False), bool):
        raise ConfigurationError(f"{where} has BucketKeyEnabled {value['BucketKeyEnabled']!r}: true or false")
    return dict(value)


def load(
    get: Callable[[str], str | None], airflow_home: str | None = None, *, on_kingfisher_host: bool = True
) -> Settings:
    """Build the settings from a Variable getter that returns ``None`` for a missing Variable.

    ``on_kingfisher_host``: the caller reads the crawls, so their directories must be here. A task that finds
    them missing is on the wrong host (a Celery worker without the crawls), and says so instead of finding nothing.
    """
    names = (
        *REQUIRED,
        LEDGER,
        STORAGE_CLASS,
        METADATA_STORAGE_CLASS,
        RETENTION_DAYS,
        WAITING_WARNING_DAYS,
        STORAGE_PRICES,
        COMPRESSION_LEVEL,
    )
    values = {name: (get(name) or "").strip() for name in names}
    problems = [f"Airflow Variable {name!r} is not set" for name in REQUIRED if not values[name]]
    problems += storage_class_problems(values[STORAGE_CLASS], values[METADATA_STORAGE_CLASS])
    days = {}
    for name in (RETENTION_DAYS, WAITING_WARNING_DAYS):
        if values[name]:
            try:
                days[name] = int(values[name])
            except ValueError:
                days[name] = 0
            if days[name] < 1:
                problems.append(f"Airflow Variable {name!r} is {values[name]!r}, not a whole number of days >= 1")
    level = DEFAULT_COMPRESSION_LEVEL
    if values[COMPRESSION_LEVEL]:
        try:
            level = int(values[COMPRESSION_LEVEL])
        except ValueError:
            level = 0
        if level not in ZSTD_LEVELS:
            problems.append(
                f"Airflow Variable {COMPRESSION_LEVEL!r} is {values[COMPRESSION_LEVEL]!r}, not a zstd level from "
                f"{ZSTD_LEVELS.start} to {ZSTD_LEVELS.stop - 1}"
            )
    for name in (DATA_DIRECTORY, LOGS_DIRECTORY) if on_kingfisher_host else ():
        path = values[name]
        if path and not os.path.isdir(path):
            problems.append(
                f"Airflow Variable {name!r} names {path!r}, which is not a directory on this host "
                f"({socket.gethostname()}): the tasks that read crawls must run on the Kingfisher Collect host's "
                "worker, the one serving the queue named by KINGFISHER_ARCHIVE_QUEUE"
            )
    try:
        storage_cost.parse(values[STORAGE_PRICES], f"Airflow Variable {STORAGE_PRICES!r}")
    except storage_cost.PricesError as e:
        problems.append(str(e))
    if problems:
        raise ConfigurationError("; ".join(problems))
    return Settings(
        bucket=values[BUCKET],
        data_directory=os.path.abspath(values[DATA_DIRECTORY]),
        logs_directory=os.path.abspath(values[LOGS_DIRECTORY]),
        ledger=ledger_path(values[LEDGER], airflow_home),
        storage_class=values[STORAGE_CLASS] or DEFAULT_STORAGE_CLASS,
        metadata_storage_class=values[METADATA_STORAGE_CLASS] or None,
        retention_days=days.get(RETENTION_DAYS),
        waiting_warning_days=days.get(WAITING_WARNING_DAYS, DEFAULT_WAITING_WARNING_DAYS),
        storage_prices=values[STORAGE_PRICES],
        compression_level=level,
    )


def ledger_path(variable: str | None, airflow_home: str | None = None, environ=os.environ) -> str:
    """Where the DAG keeps its ledger: the Variable :data:`LEDGER`, else ``$AIRFLOW_HOME/kingfisher_archive.sqlite3``
    (``~/airflow`` without ``AIRFLOW_HOME``, as Airflow itself defaults). The DAG's settings and the command line
    both ask this one function."""
    if (variable or "").strip():
        return os.path.abspath(os.path.expanduser(variable.strip()))
    home = airflow_home or environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.abspath(os.path.expanduser(os.path.join(home, LEDGER_FILE)))


def restore_directory(get: Callable[[str], str | None]) -> str:
    """The restore DAG's root, from the Variable :data:`RESTORE_DIRECTORY`: an absolute path to an existing directory.

    Unset, the restore DAG refuses to run: anyone who may trigger a DAG could otherwise make the worker write an
    archive's contents anywhere its account can write.
    """
    value = (get(RESTORE_DIRECTORY) or "").strip()
    if not value:
        raise ConfigurationError(
            f"Airflow Variable {RESTORE_DIRECTORY!r} is not set, and the restore DAG writes only under it: set it to "
            "a directory on the Kingfisher Collect host's worker that only the worker's account can write, outside "
            "Kingfisher Collect's data and logs directories (`airflow variables set "
            f"{RESTORE_DIRECTORY} /srv/kingfisher-restored`, or the environment variable "
            f"AIRFLOW_VAR_{RESTORE_DIRECTORY.upper()})"
        )
    if not os.path.isabs(value):
        raise ConfigurationError(
            f"Airflow Variable {RESTORE_DIRECTORY!r} is {value!r}, not an absolute path: give the full path"
        )
    if not os.path.isdir(value):
        raise ConfigurationError(
            f"Airflow Variable {RESTORE_DIRECTORY!r} names {value!r}, which is not a directory on this host "
            f"({socket.gethostname()}): create it (writable by the worker's account only), or fix the Variable"
        )
    return os.path.normpath(value)


def thaw_poll_seconds(get: Callable[[str], str | None]) -> float:
    """The Variable :data:`THAW_POLL_SECONDS`: a number of seconds > 0 (default :data:`DEFAULT_THAW_POLL_SECONDS`)."""
    value = (get(THAW_POLL_SECONDS) or "").strip()
    if not value:
        return DEFAULT_THAW_POLL_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:  # also refuses nan
        raise ConfigurationError(
            f"Airflow Variable {THAW_POLL_SECONDS!r} is {value!r}, not a number of seconds > 0 "
            f"(default {DEFAULT_THAW_POLL_SECONDS:g})"
        )
    return seconds


def probe_writes(client, bucket_name: str, encryption: dict | None = None) -> None:
    """The probe of conditional writes (:func:`kingfisher_archive.s3.probe.probe_conditional_writes`), whose
    :class:`~kingfisher_archive.s3.probe.WriteRefusedError` also says how to fix a refused write: the settings that
    send an encryption header (:data:`ENCRYPTION`, or the S3 connection's extra), or the permission to grant."""
    from kingfisher_archive.s3.probe import WriteRefusedError, probe_conditional_writes

    try:
        probe_conditional_writes(client, bucket_name, encryption)
    except WriteRefusedError as e:
        raise WriteRefusedError(
            f"{e}: if the bucket's policy demands an encryption header, set it in the Airflow Variable {ENCRYPTION!r} "
            '(or the S3 connection\'s extra "encryption"), e.g. {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": '
            '"<key ARN>"}; otherwise give the connection\'s credentials s3:PutObject on the bucket '
            "(samples/iam-policy.json); nothing was archived or deleted"
        ) from e
