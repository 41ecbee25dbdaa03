"""Audit the bucket: is every month whole and described truthfully, and did any upload break off?

:func:`audit` reports *problems* (an archive is wrong, or storage is wasted) and *warnings* (unusual, not wrong).
It repairs only what is safe to: with ``repair``, stale staging objects and multipart uploads. Every other problem
needs a person, since the crawl may exist nowhere else. Verifying an archive streams it, writing nothing to disk.

See docs/restore-and-audit.md, What the audit reports.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import xxhash
from botocore.exceptions import ClientError

from kingfisher_archive import replacement
from kingfisher_archive.archive_format import (
    READ_SIZE,
    CrawlMembers,
    RefusedMemberError,
    open_archive,
    walk_key,
)
from kingfisher_archive.bucket import (
    DATA_NAMES,
    LOG,
    METADATA,
    STAGING,
    STREAM_ERRORS,
    THAW_DAYS,
    THAW_TIER,
    ArchivedCrawl,
    MetadataError,
    month_prefix,
    parse_metadata,
    parse_month_key,
    reserved_source_problem,
)
from kingfisher_archive.compression import drain
from kingfisher_archive.crawl import source_id_problem
from kingfisher_archive.month import JOURNAL, is_journal
from kingfisher_archive.records import CrawlKey
from kingfisher_archive.s3.errors import UPLOAD_GONE, error_code
from kingfisher_archive.s3.objects import get_if_any, stream
from kingfisher_archive.s3.thawing import HOURS, is_cold, request_thaw, thaw_state

#: Most reads of one archive to verify its checksum when its tar order is not the checksum's order: the first,
#: one to learn the order, then one per run (a crawl in hex folders has two runs: the root files, the folders).
MAX_READS = 4
#: delete_objects accepts at most 1,000 keys per request.
DELETE_BATCH = 1000


class _Report:
    def __init__(self) -> None:
        self.problems: list[dict] = []
        self.warnings: list[dict] = []
        self.at_rest = 0  # objects whose stored CRC32 was compared with metadata.json
        self.not_at_rest = 0  # objects with no recorded or no stored CRC32
        self.thawing: list[dict] = []  # cold archives a verification needs to read: a thaw was asked for

    def problem(self, key: str, problem: str, detail: str = "") -> dict:
        entry = {"key": key, "problem": problem, "detail": detail, "repaired": False}
        self.problems.append(entry)
        return entry

    def warning(self, key: str, warning: str, detail: str = "") -> None:
        self.warnings.append({"key": key, "warning": warning, "detail": detail})


def audit(
    client,
    bucket_name: str,
    *,
    now: datetime | None = None,
    repair: bool = False,
    verify_data: bool = False,
    sample: float | None = None,
    stale_after: timedelta = timedelta(days=1),
) -> dict:
    """Walk the whole bucket and report its problems; with ``repair``, clear stale staging objects and uploads.

    :param now: when staleness is measured from (naive means UTC); default: now.
    :param verify_data: check every archive's contents against ``metadata.json``.
    :param sample: otherwise check that share (0 to 1) of the months, drawn at random.
    :param stale_after: the age from which staging objects and uploads are stale.
    :returns: ``{"bucket", "months", "verified", "at_rest", "not_at_rest", "problems", "warnings", "repaired",
        "unrepaired"}``; a problem is ``{key, problem, detail, repaired}``, a warning ``{key, warning, detail}``.
        ``verified`` counts the archives whose contents were checked, ``at_rest`` the objects whose stored CRC32 was
        compared with ``metadata.json``, ``not_at_rest`` those that could not be. ``thawing`` lists the archives to
        verify that are cold (``GLACIER``, ``DEEP_ARCHIVE``) and not yet readable: a thaw was asked for, and each is
        ``{key, storage_class, detail}`` ("thawing: verify again after ..."), neither verified nor a problem. Nothing
        else reads a data object: the audit at rest HEADs it and reads ``metadata.json``, which is never cold.
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    cutoff = now - stale_after
    report = _Report()

    months: dict[str, dict[str, dict]] = defaultdict(dict)
    spellings: dict[tuple[str, int, int], list[str]] = defaultdict(list)
    stale: list[dict] = []
    journals: dict[str, str] = {}  # journal -> the staging prefix of a replacement the next run finishes or undoes
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket_name):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.startswith(STAGING + "/"):
                if is_journal(key):
                    journals[key] = _staged_by(client, bucket_name, key)
                if item["LastModified"] < cutoff:
                    stale.append(item)
                continue
            match = parse_month_key(key)
            if match is None or source_id_problem(match.source_id) or reserved_source_problem(match.source_id):
                report.warning(key, "unexpected object", "not part of the archive layout; left alone")
                continue
            if match.prefix not in months:
                spellings[(match.source_id, match.year, match.month)].append(match.prefix)
            months[match.prefix][match.name] = item

    for (source_id, year, month), prefixes in sorted(spellings.items()):
        if len(prefixes) > 1:
            report.warning(
                month_prefix(source_id, year, month),
                "month spelled twice",
                f"{', '.join(sorted(prefixes))}: {month_prefix(source_id, year, month)} is the one read",
            )
    verified = 0
    if sample is not None and not 0 < sample <= 1:
        raise ValueError(f"sample must be a share of the months between 0 and 1, not {sample!r}")
    drawn = set(months) if verify_data else set()
    if sample is not None and not verify_data and months:
        drawn = set(random.sample(sorted(months), max(1, round(len(months) * sample))))
    for prefix in sorted(months):
        verified += _audit_month(client, bucket_name, prefix, months[prefix], report, prefix in drawn)

    for key in sorted(journals):
        report.problem(
            key,
            "interrupted replacement",
            "a month's replacement was cut short; the next run of the archive DAG finishes or undoes it (left alone)",
        )
    kept = (*journals, *journals.values())  # a journal and its staged archive: what finishing needs
    _stale_staging(client, bucket_name, [i for i in stale if not i["Key"].startswith(kept)], report, repair)
    _stale_uploads(client, bucket_name, cutoff, report, repair)

    repaired = sum(1 for entry in report.problems if entry["repaired"])
    return {
        "bucket": bucket_name,
        "months": len(months),
        "verified": verified,
        "at_rest": report.at_rest,
        "not_at_rest": report.not_at_rest,
        "problems": report.problems,
        "warnings": report.warnings,
        "thawing": report.thawing,
        "repaired": repaired,
        "unrepaired": len(report.problems) - repaired,
    }


def _audit_month(
    client, bucket_name: str, prefix: str, objects: dict[str, dict], report: _Report, verify: bool
) -> int:
    """Check one month's objects; return 1 if its archive's contents were verified."""
    source_id, year, month = prefix.split("/")[:3]
    year, month = int(year), int(month)
    metadata_key, log_key = prefix + METADATA, prefix + LOG
    if METADATA not in objects:
        present = ", ".join(sorted(objects))
        report.problem(metadata_key, "metadata missing", f"{present} without {METADATA}")
        return 0
    try:
        body = client.get_object(Bucket=bucket_name, Key=metadata_key)["Body"].read()
        archived = parse_metadata(metadata_key, source_id, year, month, body)
    except MetadataError as e:
        report.problem(metadata_key, "metadata unreadable", str(e))
        return 0
    except ClientError as e:
        report.problem(metadata_key, "metadata unreadable", error_code(e))
        return 0
    data, data_key = archived.data_name, archived.data_key  # the name metadata.json gives (none: data.tar.lz4)
    for other in DATA_NAMES:
        if other != data and other in objects:
            report.problem(
                prefix + other,
                "second data object",
                f"{METADATA} describes {data}; this may be the only copy of another crawl (left alone)",
            )

    named_source = archived.raw.get("source_id")
    if isinstance(named_source, str) and named_source != source_id:
        report.problem(metadata_key, "metadata does not match its key", f"it names source {named_source!r}")
    elif archived.data_version and _month_of(source_id, archived.data_version) != (year, month):
        report.problem(
            metadata_key,
            "metadata does not match its key",
            f"it names crawl {archived.data_version}, of another month",
        )

    if data not in objects:
        report.problem(data_key, "data object missing", f"{METADATA} describes an archive that is not there")
    else:
        size = objects[data]["Size"]
        expected = archived.raw.get("compressed_bytes")
        if isinstance(expected, int) and not isinstance(expected, bool) and expected != size:
            report.problem(
                data_key, "data size does not match metadata", f"{size} bytes, compressed_bytes says {expected}"
            )

    checksums = archived.raw.get("checksums") if isinstance(archived.raw.get("checksums"), dict) else {}
    for name in (data, LOG):
        if name in objects:
            _check_at_rest(client, bucket_name, prefix + name, checksums.get(name), report)

    if LOG not in objects and not (
        archived.generation == "2020" and archived.raw.get("scrapy_log_file_found") is False
    ):
        report.warning(log_key, "log missing", "the crawl's log was not archived; the data can still be restored")

    if verify and data in objects and is_cold(objects[data].get("StorageClass")):
        thaw = thaw_state(client, bucket_name, data_key)
        if not thaw.readable:
            thaw = request_thaw(client, bucket_name, data_key, THAW_DAYS, THAW_TIER)
            hours = HOURS.get((thaw.storage_class, THAW_TIER))
            after = f"{hours:g} h" if hours else "a few hours"
            report.thawing.append(
                {
                    "key": data_key,
                    "storage_class": thaw.storage_class,
                    "detail": f"thawing: verify again after {after} (a {THAW_TIER} copy of this "
                    f"{thaw.storage_class} archive was asked for, kept {THAW_DAYS} days)",
                }
            )
            return 0
    if verify and data in objects:
        problems, warnings = verify_archive(client, bucket_name, data_key, archived)
        for problem, detail in problems:
            report.problem(data_key, problem, detail)
        for warning, detail in warnings:
            report.warning(data_key, warning, detail)
        return 1
    return 0


def _check_at_rest(client, bucket_name: str, key: str, recorded, report: _Report) -> None:
    """Compare the CRC32 the server stores for ``key`` with the one ``metadata.json`` recorded, without a download."""
    crc32 = recorded.get("crc32") if isinstance(recorded, dict) else None
    if not isinstance(crc32, str):
        report.not_at_rest += 1
        return
    try:
        head = client.head_object(Bucket=bucket_name, Key=key, ChecksumMode="ENABLED")
    except ClientError as e:
        report.problem(key, "stored checksum does not match metadata", f"it cannot be asked for ({error_code(e)})")
        return
    stored = head.get("ChecksumCRC32")
    if not stored or "-" in stored:
        report.not_at_rest += 1
        return
    report.at_rest += 1
    if stored != crc32:
        report.problem(
            key, "stored checksum does not match metadata", f"the server stores CRC32 {stored}, metadata says {crc32}"
        )


@dataclass
class _Pass:
    """What one read of an archive saw."""

    files: int = 0
    bytes: int = 0
    in_order: bool = True  # every file came after the previous one in checksum order (so no file twice)
    order: list[str] | None = None  # the files' paths in tar order, when asked for


def _read_files(client, bucket_name: str, key: str, archived: ArchivedCrawl, hasher=None, wanted=None, collect=False):
    """Stream the archive once, feeding ``hasher`` the contents of every file (or of those in ``wanted``) in tar order.

    Memory stays flat unless ``collect`` asks for the list of paths.
    """
    members = CrawlMembers(archived.source_id, archived.data_version)
    seen = _Pass(order=[] if collect else None)
    previous = None
    with open_archive(stream(client, bucket_name, key)) as (tar, compressed):
        for member in tar:
            relpath = members.relpath(member)
            if relpath is None or member.isdir():
                continue
            seen.files += 1
            seen.bytes += member.size
            current = walk_key(relpath)
            if previous is not None and current <= previous:
                seen.in_order = False
            previous = current
            if collect:
                seen.order.append(relpath)
            if hasher is not None and (wanted is None or relpath in wanted):
                f = tar.extractfile(member)
                while chunk := f.read(READ_SIZE):
                    hasher.update(chunk)
        drain(compressed)
    return seen


def _runs(order: list[str]) -> list[list[str]]:
    """Split the checksum order of ``order``'s files into runs that appear in increasing tar position."""
    position = {relpath: i for i, relpath in enumerate(order)}
    runs: list[list[str]] = []
    last = -1
    for relpath in sorted(order, key=walk_key):
        if not runs or position[relpath] < last:
            runs.append([])
        runs[-1].append(relpath)
        last = position[relpath]
    return runs


def _unreadable(error: Exception) -> tuple[str, str]:
    if isinstance(error, RefusedMemberError):
        return ("archive member refused", str(error))
    if isinstance(error, ClientError):
        return ("archive unreadable", error_code(error))
    return ("archive unreadable", str(error) or type(error).__name__)


def verify_archive(client, bucket_name: str, key: str, archived: ArchivedCrawl):
    """Check an archive's contents against its metadata without extracting it.

    Returns ``(problems, warnings)``, each a list of ``(what, detail)``.
    """
    hasher = xxhash.xxh3_128()
    try:
        first = _read_files(client, bucket_name, key, archived, hasher)
    except (RefusedMemberError, ClientError, *STREAM_ERRORS) as e:
        return [_unreadable(e)], []

    differences = []
    if first.bytes != archived.bytes:
        differences.append(f"{first.bytes} bytes, the metadata says {archived.bytes}")
    data_files = archived.raw.get("data_files")
    if isinstance(data_files, int) and not isinstance(data_files, bool) and first.files != data_files:
        differences.append(f"{first.files} files, the metadata says {data_files}")
    problems = [("archive does not match metadata", "; ".join(differences))] if differences else []
    if archived.checksum is None:
        return problems, []

    if not first.in_order:
        # A 2021-tool tar of a crawl with subfolders: learn the order, then hash one run of files per read.
        try:
            order = _read_files(client, bucket_name, key, archived, collect=True).order
            if len(set(order)) != len(order):
                return [*problems, ("archive does not match metadata", "a file appears more than once in the tar")], []
            runs = _runs(order)
            if 2 + len(runs) > MAX_READS:
                detail = (
                    f"the tar's file order is not the checksum's ({len(runs)} runs); restore the month to verify it"
                )
                return problems, [("checksum not verified", detail)]
            hasher = xxhash.xxh3_128()
            for run in runs:
                again = _read_files(client, bucket_name, key, archived, hasher, wanted=set(run))
                if (again.files, again.bytes) != (first.files, first.bytes):
                    return [*problems, ("archive unreadable", "the archive changed while it was being verified")], []
        except (RefusedMemberError, ClientError, *STREAM_ERRORS) as e:
            return [*problems, _unreadable(e)], []
    actual = hasher.hexdigest()
    if actual != archived.checksum:
        problems.append(
            ("checksum mismatch", f"the archive's files give {actual}, the metadata says {archived.checksum}")
        )
    return problems, []


def _staged_by(client, bucket_name: str, key: str) -> str:
    """The staging prefix whose objects a journal's replacement needs: beside it (before 2.0), or named in it; the
    whole source's staging folder if it cannot be read (nothing of it is then repaired)."""
    if key.endswith("/" + JOURNAL):
        return key[: -len(JOURNAL)]
    try:
        found = get_if_any(client, bucket_name, key)
        if found is not None:
            return replacement.Journal.parse(key, *found).staging
    except (ClientError, replacement.RecoveryError):
        pass
    return key.rsplit("/", 1)[0] + "/"


def _stale_staging(client, bucket_name: str, stale: list[dict], report: _Report, repair: bool) -> None:
    entries = {}
    for item in stale:
        when = item["LastModified"].astimezone(UTC).isoformat()
        entries[item["Key"]] = report.problem(
            item["Key"], "stale staging object", f"last modified {when}: an upload that broke off"
        )
    if not repair:
        return
    keys = list(entries)
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        if not all(key.startswith(STAGING + "/") for key in batch):  # nothing else is ever deleted
            raise RuntimeError("refusing to delete objects outside staging/")
        response = client.delete_objects(
            Bucket=bucket_name, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
        )
        failed = {error["Key"]: error.get("Code", "") for error in response.get("Errors", [])}
        for key in batch:
            if key in failed:
                entries[key]["detail"] += f" (could not delete it: {failed[key]})"
            else:
                entries[key]["repaired"] = True


def _stale_uploads(client, bucket_name: str, cutoff: datetime, report: _Report, repair: bool) -> None:
    paginator = client.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=bucket_name):
        for upload in page.get("Uploads", []):
            if upload["Initiated"] >= cutoff:
                continue
            when = upload["Initiated"].astimezone(UTC).isoformat()
            entry = report.problem(
                upload["Key"],
                "stale multipart upload",
                f"upload {upload['UploadId']} initiated {when} was never completed",
            )
            if not repair:
                continue
            try:
                client.abort_multipart_upload(Bucket=bucket_name, Key=upload["Key"], UploadId=upload["UploadId"])
            except ClientError as e:
                if error_code(e) not in UPLOAD_GONE:  # already gone: what repair wanted
                    entry["detail"] += f" (could not abort it: {error_code(e)})"
                    continue
            entry["repaired"] = True


def _month_of(source_id: str, data_version: str) -> tuple[int, int] | None:
    key = CrawlKey.parse({"source_id": source_id, "data_version": data_version})
    return (key.year, key.month) if key else None
