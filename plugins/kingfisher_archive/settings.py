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

from kingfisher_archive.errors import RetryableError

PROCESS_CONNECTION = "kingfisher_process"
S3_CONNECTION = "kingfisher_archive_s3"

BUCKET = "kingfisher_archive_bucket"
DATA_DIRECTORY = "kingfisher_archive_data_directory"
LOGS_DIRECTORY = "kingfisher_archive_logs_directory"
LEDGER = "kingfisher_archive_ledger"
STORAGE_CLASS = "kingfisher_archive_storage_class"
RETENTION_DAYS = "kingfisher_archive_retention_days"
WAITING_WARNING_DAYS = "kingfisher_archive_waiting_warning_days"
#: The zstd level new archives are compressed at (1-19).
COMPRESSION_LEVEL = "kingfisher_archive_compression_level"
#: Server-side encryption sent on every write and copy, as JSON with boto3's names; the S3 connection's extra may
#: hold the same under "encryption" (the Variable wins).
ENCRYPTION = "kingfisher_archive_encryption"
#: The one directory the restore DAG writes under; read by the restore task only (see :func:`restore_directory`).
RESTORE_DIRECTORY = "kingfisher_archive_restore_directory"

REQUIRED = (BUCKET, DATA_DIRECTORY, LOGS_DIRECTORY)
DEFAULT_STORAGE_CLASS = "STANDARD_IA"
LEDGER_FILE = "kingfisher_archive.sqlite3"
#: Loading a big crawl takes Kingfisher Process hours, rarely more than a day; three days means something is stuck.
DEFAULT_WAITING_WARNING_DAYS = 3
#: zstd's own default level: about LZ4's speed, the same crawl in about half LZ4's bytes (docs/performance.md).
DEFAULT_COMPRESSION_LEVEL = 3
#: The levels the Variable may name (zstd's, without the ``--ultra`` ones, which need far more memory).
COMPRESSION_LEVELS = range(1, 20)


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
    names = (*REQUIRED, LEDGER, STORAGE_CLASS, RETENTION_DAYS, WAITING_WARNING_DAYS, COMPRESSION_LEVEL)
    values = {name: (get(name) or "").strip() for name in names}
    problems = [f"Airflow Variable {name!r} is not set" for name in REQUIRED if not values[name]]
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
        if level not in COMPRESSION_LEVELS:
            problems.append(
                f"Airflow Variable {COMPRESSION_LEVEL!r} is {values[COMPRESSION_LEVEL]!r}, not a zstd level from "
                f"{COMPRESSION_LEVELS.start} to {COMPRESSION_LEVELS.stop - 1}"
            )
    for name in (DATA_DIRECTORY, LOGS_DIRECTORY) if on_kingfisher_host else ():
        path = values[name]
        if path and not os.path.isdir(path):
            problems.append(
                f"Airflow Variable {name!r} names {path!r}, which is not a directory on this host "
                f"({socket.gethostname()}): the tasks that read crawls must run on the Kingfisher Collect host's "
                "worker, the one serving the queue named by KINGFISHER_ARCHIVE_QUEUE"
            )
    if problems:
        raise ConfigurationError("; ".join(problems))
    return Settings(
        bucket=values[BUCKET],
        data_directory=os.path.abspath(values[DATA_DIRECTORY]),
        logs_directory=os.path.abspath(values[LOGS_DIRECTORY]),
        ledger=ledger_path(values[LEDGER], airflow_home),
        storage_class=values[STORAGE_CLASS] or DEFAULT_STORAGE_CLASS,
        retention_days=days.get(RETENTION_DAYS),
        waiting_warning_days=days.get(WAITING_WARNING_DAYS, DEFAULT_WAITING_WARNING_DAYS),
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
