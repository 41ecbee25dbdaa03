"""Get a crawl back: stream one month's archive out of the bucket into a directory, verify it, say how to reload it.

The archive is read once, as a stream (``get_object`` -> zstd or LZ4 -> ``tarfile`` in stream mode ``r|`` -> disk): no
copy of it is written anywhere, so restoring a 100 GB crawl needs the disk space of the crawl and nothing more. For
``restore(..., target_directory=T)`` of source ``S`` whose archived crawl is ``V``::

    T/S/V/...               the crawl directory, byte for byte what was archived
    T/S/V.scrapy.log        the crawl's log, when the month has one: beside the crawl directory, not inside it,
                            so the restored crawl directory is exactly the archived one (and its checksum matches)
    T/S/V.incomplete        the crawl directory while it is written, before it is verified

A crawl directory under its real name is always a verified one, and nothing is written outside the target. See
docs/safety.md, section 14.

A month whose data object is in a cold storage class (``GLACIER``, ``DEEP_ARCHIVE``) is read only once S3 has made
a copy of it, which :mod:`kingfisher_archive.thaw` asks for; a restore that meets a cold object without a copy raises
:class:`FrozenError` naming its class, its key and what to do.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tarfile

from botocore.exceptions import BotoCoreError, ClientError

from kingfisher_archive import storage_cost
from kingfisher_archive.archive_format import READ_SIZE, CrawlMembers, RefusedMemberError, open_archive
from kingfisher_archive.bucket import (
    DATA,
    DATA_NAMES,
    LOG,
    METADATA,
    STREAM_ERRORS,
    ArchivedCrawl,
    Bucket,
    MetadataError,
    month_prefix,
    parse_metadata,
)
from kingfisher_archive.compression import drain
from kingfisher_archive.crawl import checksum, measure, parse_data_version, source_id_problem
from kingfisher_archive.errors import RetryableError
from kingfisher_archive.s3 import thawing
from kingfisher_archive.s3.errors import FROZEN, MISSING, error_code
from kingfisher_archive.s3.objects import stream
from kingfisher_archive.settings import RESTORE_DIRECTORY

#: Suffix of the crawl directory while it is being written and before it is verified.
INCOMPLETE = ".incomplete"
#: Suffix of the restored log, beside the crawl directory.
LOG_SUFFIX = ".scrapy.log"


class RestoreError(RetryableError):  # retried: also raised when a read of the bucket fails
    """The month cannot be restored as asked, or what came out of the archive is not what was archived."""


class FrozenError(RestoreError):
    """An object of the month is in a cold storage class (``GLACIER``, ``DEEP_ARCHIVE``) with no readable copy."""


def s3_url(bucket_name: str, key: str) -> str:
    """``s3://<bucket_name>/<key>``: how a message names an object."""
    return f"s3://{bucket_name}/{key}"


def _inside(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


def _check_forbidden(path: str, shown: str, forbidden: list[str]) -> None:
    real = os.path.realpath(path)
    for directory in forbidden:
        if directory and _inside(real, os.path.realpath(directory)):
            raise RestoreError(
                f"refusing to restore into {shown}: it is inside {directory}, where restored files would be "
                "archived (and deleted) again; choose a directory outside it"
            )


def _root_problem(root: str) -> str:
    return (
        f"the restore DAG writes only under the Airflow Variable {RESTORE_DIRECTORY!r} ({root}), never through a "
        "symbolic link"
    )


def _check_no_link(path: str, root: str) -> None:
    """Refuse ``path`` if it is not under ``root`` (a real path) or if it or any existing folder between is a link."""
    if not _inside(os.path.abspath(path), root):
        raise RestoreError(f"refusing to restore to {path}: it is outside {root}; {_root_problem(root)}")
    relpath = os.path.relpath(os.path.abspath(path), root)
    current = root
    for part in [] if relpath == os.curdir else relpath.split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise RestoreError(f"refusing to restore to {path}: {current} is a symbolic link; {_root_problem(root)}")
        if not os.path.lexists(current):
            break
    if not _inside(os.path.realpath(path), root):  # only a link could lead it out, and there is none: a race
        raise RestoreError(f"refusing to restore to {path}: it resolves outside {root}; {_root_problem(root)}")


def confine(target_directory: str, restore_directory: str) -> str:
    """The restore DAG's target, under ``restore_directory`` (the Variable :data:`RESTORE_DIRECTORY`): its path.

    :param target_directory: relative to the restore directory (empty: the restore directory itself), or an
        absolute path inside it.
    :param restore_directory: resolved once (it is the operator's choice, and may be reached through a link).
    :raises RestoreError: for ``..``, an absolute path outside, and any symbolic link from the restore directory
        down.
    """
    root = os.path.realpath(restore_directory)
    given = target_directory.strip()
    if os.pardir in given.split(os.sep):
        raise RestoreError(
            f"refusing to restore to {given!r}: it holds '..'; give a directory under the Airflow Variable "
            f"{RESTORE_DIRECTORY!r} ({restore_directory}), relative to it or as an absolute path inside it"
        )
    if os.path.isabs(given):
        normal = os.path.normpath(given)
        for base in (os.path.normpath(restore_directory), root):
            if _inside(normal, base):
                given = os.path.relpath(normal, base)
                break
        else:
            raise RestoreError(
                f"refusing to restore to {normal}: it is outside the Airflow Variable {RESTORE_DIRECTORY!r} "
                f"({restore_directory}), the only directory the restore DAG writes under; give a directory "
                "relative to it"
            )
    target = os.path.normpath(os.path.join(root, given))
    _check_no_link(target, root)
    return target


def _destination(
    target: str, source_id: str, data_version: str, forbidden: list[str], root: str | None = None
) -> tuple[str, str]:
    """The crawl directory and log path a restore writes; refuse if they exist or are forbidden.

    ``root``: the restore DAG's restore directory (a real path), which none of them may leave, even by a link.
    """
    directory = os.path.join(target, source_id, data_version)
    log_path = directory + LOG_SUFFIX
    real_target = os.path.realpath(target)
    for path in (directory, log_path, directory + INCOMPLETE, log_path + INCOMPLETE):
        _check_forbidden(path, path, forbidden)
        if root is not None:
            _check_no_link(path, root)
        if not _inside(os.path.realpath(path), real_target):
            raise RestoreError(f"refusing to restore to {path}: a symbolic link leads it outside {target}")
        if not path.endswith(INCOMPLETE) and os.path.lexists(path):
            raise RestoreError(
                f"{path} already exists: refusing to overwrite it; restore into another directory or move it away"
            )
    return directory, log_path


def _time(data_version: str) -> str:
    parsed = parse_data_version(data_version)
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def reload_command(source_id: str, data_version: str, directory: str, note: str) -> str:
    """The Kingfisher Process (v2) command, run in Process's directory, that loads a restored crawl.

    ``python manage.py load --source --time --note <directory>``, which works as printed (see docs/safety.md,
    section 14); a source whose spider no longer exists in Scrapyd also needs ``--force``.

    :param source_id: the crawl's source.
    :param data_version: the crawl's ``YYYYMMDD_HHMMSS``.
    :param directory: the restored crawl directory.
    :param note: the collection's note.
    """
    return shlex.join(
        [
            "python",
            "manage.py",
            "load",
            "--source",
            source_id,
            "--time",
            _time(data_version),
            "--note",
            note,
            directory,
        ]
    )


def month_metadata(client, bucket_name: str, source_id: str, year: int, month: int) -> tuple[str, ArchivedCrawl]:
    """The key of the month's ``metadata.json`` and what it says (a restore's, and a thaw's, first read).

    :raises RestoreError: if the month is not archived, or its metadata cannot be listed, read or understood.
    """
    try:
        key = Bucket(client, bucket_name).months(source_id).get((year, month))
    except ClientError as e:
        raise RestoreError(f"cannot list {s3_url(bucket_name, source_id + '/')}: {error_code(e)}") from None
    if key is None:
        where = s3_url(bucket_name, month_prefix(source_id, year, month))
        raise RestoreError(
            f"no archive of {source_id} for {year:04d}-{month:02d}: {where} has no {METADATA}; listing "
            f"{source_id}'s months shows which are archived"
        )
    try:
        body = client.get_object(Bucket=bucket_name, Key=key)["Body"].read()
    except ClientError as e:
        raise RestoreError(f"cannot read {s3_url(bucket_name, key)}: {error_code(e)}") from None
    try:
        return key, parse_metadata(key, source_id, year, month, body)
    except MetadataError as e:
        raise RestoreError(f"cannot restore from {s3_url(bucket_name, key)}: {e}") from None


def check_target(target_directory: str, forbidden_directories=(), *, restore_directory: str | None = None) -> str:
    """The target's absolute path, checked for what can be known before the bucket is read.

    The command line and the restore task call it before connecting.

    :param target_directory: where to restore.
    :param forbidden_directories: directories the target must not be in.
    :param restore_directory: the restore DAG's, which the target must be under (see :func:`confine`).
    :raises RestoreError: if the target is a file or inside a forbidden directory.
    """
    if restore_directory is not None:
        target = confine(target_directory, restore_directory)
    else:
        target = os.path.abspath(target_directory)
    _check_forbidden(target, target, [str(directory) for directory in forbidden_directories if directory])
    if os.path.lexists(target) and not os.path.isdir(target):
        raise RestoreError(
            f"the target {target_directory} is a file, not a directory: give a directory to restore into "
            "(it is created if missing)"
        )
    return target


def restore(
    client,
    bucket_name: str,
    source_id: str,
    year: int,
    month: int,
    target_directory: str,
    *,
    forbidden_directories=(),
    data_version: str | None = None,
    restore_directory: str | None = None,
) -> dict:
    """Restore the crawl archived for ``source_id`` in ``year``-``month`` under ``target_directory``; verify it.

    :param client: a boto3 S3 client.
    :param bucket_name: the bucket's name.
    :param source_id: the crawl's source.
    :param year: the month's year.
    :param month: the month, 1 to 12.
    :param target_directory: where ``<source_id>/<data_version>/`` is written (created if missing).
    :param forbidden_directories: directories the target must not be in (the DAG passes Kingfisher Collect's
        FILES_STORE).
    :param data_version: the crawl the caller expects; the restore fails if the month holds another one.
    :param restore_directory: the restore DAG's Variable :data:`RESTORE_DIRECTORY`, which nothing is written
        outside of or through a symbolic link below (see :func:`confine`); the command line passes none.
    :returns: what was restored, where, what was verified, and the :func:`reload_command`.
    :raises RestoreError: with a message for a person; what the restore wrote is removed (see docs/safety.md,
        section 14).
    """
    problem = source_id_problem(source_id)
    if problem:
        raise RestoreError(problem)
    if data_version is not None:
        try:
            parse_data_version(data_version)
        except ValueError as e:
            raise RestoreError(str(e)) from None
    forbidden = [str(directory) for directory in forbidden_directories if directory]
    target = check_target(target_directory, forbidden, restore_directory=restore_directory)
    root = None if restore_directory is None else os.path.realpath(restore_directory)

    metadata_key, archived = month_metadata(client, bucket_name, source_id, year, month)
    prefix, data_key = archived.prefix, archived.data_key
    if data_version is not None and archived.data_version is not None and archived.data_version != data_version:
        raise RestoreError(
            f"{s3_url(bucket_name, metadata_key)} names crawl {archived.data_version}, not {data_version}: "
            "the month holds another crawl"
        )
    expected_version = data_version or archived.data_version
    if expected_version is not None:
        _destination(target, source_id, expected_version, forbidden, root)

    written = _Written(_missing_directories(os.path.join(target, source_id)))
    try:
        os.makedirs(target, exist_ok=True)
    except OSError as e:
        raise RestoreError(
            f"cannot create the target directory {target_directory} ({e.strerror or e}): choose another one"
        ) from None
    try:
        directory, version, summary, verified, restored_log = _extract(
            client, bucket_name, source_id, target, prefix, archived, expected_version, forbidden, written, root
        )
    except BaseException:
        written.remove()
        raise

    note = f"Restored from {s3_url(bucket_name, data_key)}"
    return {
        "source_id": source_id,
        "data_version": version,
        "year": year,
        "month": month,
        "archive": s3_url(bucket_name, data_key),
        "generation": archived.generation,
        "directory": directory,
        "log": restored_log,
        "bytes": summary.bytes,
        "files": summary.files,
        "checksum": archived.checksum,
        "checksum_verified": archived.checksum is not None,
        "verified": verified,
        "note": None if archived.checksum else "late-2020 metadata: only the size (data_size) was verified",
        "reload_command": reload_command(source_id, version, directory, note),
    }


def _extract(client, bucket_name, source_id, target, prefix, archived, expected_version, forbidden, written, root):
    """Stream the archive into ``<source_id>/<version>.incomplete`` under ``target``, verify it, rename it."""
    data_key = archived.data_key
    members = CrawlMembers(source_id, expected_version)
    staging = directory = log_path = None
    try:
        with open_archive(stream(client, bucket_name, data_key)) as (tar, compressed):
            for member in tar:
                relpath = members.relpath(member)
                if relpath is None:
                    continue
                if staging is None:
                    directory, log_path = _destination(target, source_id, members.data_version, forbidden, root)
                    staging = directory + INCOMPLETE
                    # What an earlier restore of this crawl that did not finish left: ours, by its name.
                    if os.path.isdir(staging) and not os.path.islink(staging):
                        shutil.rmtree(staging)
                    elif os.path.lexists(staging):
                        os.remove(staging)
                    os.makedirs(staging)
                    written.staging = staging
                name = os.path.relpath(staging, target) + (f"/{relpath}" if relpath else "")
                try:
                    tar.extract(member.replace(name=name, deep=False), path=target, filter="data")
                except tarfile.FilterError as e:
                    CrawlMembers.refuse(member.name, str(e))
            drain(compressed)
    except (RestoreError, RefusedMemberError) as e:
        raise RestoreError(f"{s3_url(bucket_name, data_key)}: {e}") from None
    except ClientError as e:
        code = error_code(e)
        if code in MISSING:
            raise RestoreError(
                f"{s3_url(bucket_name, data_key)} is missing (the month has {METADATA} but no archive)"
            ) from None
        if code in FROZEN:
            raise frozen_error(client, bucket_name, data_key) from None
        raise RestoreError(f"cannot read {s3_url(bucket_name, data_key)}: {code}") from None
    except STREAM_ERRORS as e:
        raise RestoreError(f"{s3_url(bucket_name, data_key)} is unreadable ({e})") from None
    except OSError as e:
        raise RestoreError(f"cannot write the crawl restored from {s3_url(bucket_name, data_key)}: {e}") from e
    if staging is None:
        raise RestoreError(f"{s3_url(bucket_name, data_key)} holds no crawl of {source_id}")

    version = members.data_version
    summary = measure(staging)
    verified = []
    differences = []
    if summary.bytes != archived.bytes:
        differences.append(f"{summary.bytes} bytes, the metadata says {archived.bytes}")
    verified.append("bytes")
    data_files = archived.raw.get("data_files")
    if isinstance(data_files, int) and not isinstance(data_files, bool):
        if summary.files != data_files:
            differences.append(f"{summary.files} files, the metadata says {data_files}")
        verified.append("files")
    if archived.checksum is not None:
        actual = checksum(staging)
        if actual != archived.checksum:
            differences.append(f"checksum {actual}, the metadata says {archived.checksum}")
        verified.append("checksum")
    if differences:
        written.keep_staging = True  # read whole but not what was archived: left for inspection
        raise RestoreError(
            f"the crawl restored from {s3_url(bucket_name, data_key)} does not match {METADATA}: "
            f"{'; '.join(differences)}{_left(staging)}"
        )

    written.log = log_path + INCOMPLETE
    restored_log = _restore_log(client, bucket_name, prefix + LOG, log_path)
    if os.path.lexists(directory):
        written.keep_staging = True
        raise RestoreError(f"{directory} appeared while restoring: the verified crawl is left in {staging}")
    os.rename(staging, directory)
    return directory, version, summary, verified, restored_log


def _missing_directories(path: str) -> list[str]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


class _Written:
    """What a restore has written so far: removed if it fails."""

    def __init__(self, created: list[str]) -> None:
        self.created = created  # directories this restore may create, deepest first
        self.staging: str | None = None
        self.keep_staging = False
        self.log: str | None = None

    def remove(self) -> None:
        if self.log and os.path.isfile(self.log) and not os.path.islink(self.log):
            os.remove(self.log)
        if self.staging and not self.keep_staging and os.path.isdir(self.staging) and not os.path.islink(self.staging):
            shutil.rmtree(self.staging, ignore_errors=True)
        for directory in self.created:
            try:
                os.rmdir(directory)  # only when empty: never what someone else put there meanwhile
            except FileNotFoundError:
                continue
            except OSError:
                break


def _left(staging: str | None) -> str:
    if staging and os.path.lexists(staging):
        return f"; what was restored is left in {staging}"
    return ""


def _restore_log(client, bucket_name: str, key: str, log_path: str) -> str | None:
    """Download the month's scrapy.log beside the crawl directory; ``None`` if the month has no log."""
    try:
        response = client.get_object(Bucket=bucket_name, Key=key)
    except ClientError as e:
        if error_code(e) in MISSING:
            return None
        if error_code(e) in FROZEN:
            raise frozen_error(client, bucket_name, key) from None
        raise RestoreError(f"cannot read {s3_url(bucket_name, key)}: {error_code(e)}") from None
    partial = log_path + INCOMPLETE
    if os.path.lexists(partial):  # what an earlier restore of this crawl that did not finish left: ours, by its name
        os.remove(partial)
    try:
        # O_EXCL: a file or link put there meanwhile is an error, never followed or written through.
        with open(partial, "xb") as f:
            shutil.copyfileobj(response["Body"], f, READ_SIZE)
            size = f.tell()
    except BotoCoreError as e:
        raise RestoreError(f"cannot read {s3_url(bucket_name, key)} ({e})") from None
    if size != response["ContentLength"]:
        raise RestoreError(f"{s3_url(bucket_name, key)} holds {response['ContentLength']} bytes, {size} arrived")
    os.rename(partial, log_path)
    return log_path


# -- cold storage classes: what a restore says when it meets one (asking for a copy: kingfisher_archive.thaw) ---------

#: What to do about a month in a cold class, for a person.
THAW_HOW = (
    "ask for a readable copy first: trigger the restore DAG (it asks and waits), or run `kingfisher-archive restore` "
    "(it asks and says when to come back; --wait waits)"
)


def frozen_error(client, bucket_name: str, key: str) -> FrozenError:
    """The error for a GET of ``key`` refused because it is cold: its class, its key, and what to do (one HEAD)."""
    try:
        found = thawing.thaw_state(client, bucket_name, key)
    except ClientError:
        storage_class, state = "a cold storage class", thawing.FROZEN
    else:
        storage_class, state = found.storage_class, found.state
    now = (
        "a copy is being made (a thaw is running): restore again when it is ready"
        if state == thawing.THAWING
        else THAW_HOW
    )
    return FrozenError(f"{s3_url(bucket_name, key)} is in {storage_class} and has no readable copy: {now}")


def list_months(client, bucket_name: str, source_id: str, read=None) -> list[dict]:
    """Every month of a source in the bucket, oldest first, with what its metadata says; never raises for one month.

    :param client: a boto3 S3 client.
    :param bucket_name: the bucket's name.
    :param source_id: the source.
    :param read: ``read(key, etag)`` returns a metadata.json's bytes (default: a GET), so that a long-lived caller
        (the catalogue page) can keep what it read by ETag.
    :returns: one row per month: ``year``, ``month``, ``prefix``, ``data_version``, ``bytes``, ``files``
        (``data_files``, ours only), ``data_object`` (the data object's name: the one ``metadata.json`` names, else
        the one there), ``compressed_bytes`` (of that object, ``None`` if missing), ``log``
        (whether ``scrapy.log`` is there), ``archived_at`` (ours only), ``generation`` (``"2021"``, also ours, or
        ``"2020"``), ``reason`` and ``compared_with`` (why it was kept, as its metadata.json says: ours only) and
        ``problem`` (``None`` if the month can be restored), ``stored`` (its objects' bytes by storage class:
        :func:`kingfisher_archive.storage_cost.stored`).
    :raises RestoreError: for a source id that cannot name a folder.
    """
    problem = source_id_problem(source_id)
    if problem:
        raise RestoreError(problem)
    bucket = Bucket(client, bucket_name)
    months: dict[str, dict[str, int]] = {}
    periods: dict[str, tuple[int, int]] = {}
    etags: dict[str, str] = {}
    entries: dict[str, list[dict]] = {}
    for match, item in bucket.listing(source_id):
        months.setdefault(match.prefix, {})[match.name] = item["Size"]
        entries.setdefault(match.prefix, []).append(item)
        periods[match.prefix] = (match.year, match.month)
        etags[item["Key"]] = item.get("ETag", "")
    if read is None:

        def read(key, etag):
            return _read(client, bucket_name, key)

    chosen = bucket.months(source_id)
    rows = []
    for prefix, objects in months.items():
        year, month = periods[prefix]
        # The data object: the one metadata.json names (set below); without one, whichever is there.
        data = next((name for name in DATA_NAMES if name in objects), DATA)
        row = {
            "year": year,
            "month": month,
            "prefix": prefix,
            "data_version": None,
            "bytes": None,
            "files": None,
            "data_object": data,
            "compressed_bytes": objects.get(data),
            "log": LOG in objects,
            "archived_at": None,
            "generation": None,
            "reason": None,
            "compared_with": None,
            "problem": None,
            # Objects, bytes and billable bytes by storage class, from the same listing (storage_cost.stored).
            "stored": storage_cost.stored(entries[prefix]),
        }
        problems = []
        if METADATA in objects:
            key = prefix + METADATA
            try:
                archived = parse_metadata(key, source_id, year, month, read(key, etags.get(key, "")))
            except MetadataError as e:
                problems.append(f"metadata unreadable: {e}")
            except ClientError as e:
                problems.append(f"metadata unreadable: {error_code(e)}")
            else:
                data_files = archived.raw.get("data_files")
                archived_at = archived.raw.get("archived_at")
                reason, compared_with = archived.raw.get("reason"), archived.raw.get("compared_with")
                data = archived.data_name
                row.update(
                    data_object=data,
                    compressed_bytes=objects.get(data),
                    reason=reason if isinstance(reason, str) else None,
                    compared_with=compared_with if isinstance(compared_with, str) else None,
                    archived_at=archived_at if isinstance(archived_at, str) else None,
                    data_version=archived.data_version,
                    bytes=archived.bytes,
                    files=data_files if isinstance(data_files, int) else None,
                    generation=archived.generation,
                )
            if chosen.get((year, month)) not in (None, key):
                problems.append(f"not restored: {chosen[(year, month)][: -len(METADATA)]} is the same month")
        else:
            problems.append("metadata missing")
        if data not in objects:
            problems.append("data object missing")
        row["problem"] = "; ".join(problems) or None
        rows.append(row)
    rows.sort(key=lambda row: (row["year"], row["month"], row["prefix"]))
    return rows


def _read(client, bucket_name: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket_name, Key=key)["Body"].read()
