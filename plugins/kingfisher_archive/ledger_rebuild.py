"""A new ledger from the bucket and the data directory: ``kingfisher-archive ledger rebuild``.

For a ledger that is lost or corrupt (:class:`~kingfisher_archive.ledger.LedgerCorruptError`), once no archive task
runs: its claims cannot be read back, so only a person can say that none is live. What it writes, in a new file that
takes the ledger's place only when it is complete:

- ``archived`` (reason ``rebuilt_from_bucket``, with the archive's bytes and checksum as its result) for every month
  whose ``metadata.json`` names a crawl (``data_version``) that is not on disk, and whose data object (the one it
  names: ``data.tar.zst``, or ``data.tar.lz4``) is there;
- nothing for a crawl directory on disk: it is unsettled, and the next run inspects it (one its month names is
  deleted only if it has the archive's checksum: docs/safety.md, 7);
- nothing for a ``<data_version>.deleting`` directory (a deletion cut short): the DAG does not look at it without
  its ledger row, so it is reported, with what to do.

Months that cannot be read, and months that hold data without ``metadata.json``, are reported too. Nothing in the
bucket or the data directory is changed; an existing ledger is moved aside (``<path>.corrupt-<time>``, or with
``force`` ``<path>.old-<time>``), never deleted. See docs/operating.md, The ledger is lost or corrupt.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from datetime import UTC, datetime

from kingfisher_archive.bucket import Bucket, MetadataError, month_prefix
from kingfisher_archive.catalogue import sources
from kingfisher_archive.crawl import DELETING_SUFFIX, crawl_directory, parse_data_version, source_id_problem
from kingfisher_archive.errors import PermanentError
from kingfisher_archive.ledger import Ledger, LedgerCorruptError, examine, move_aside

MISSING, READABLE, CORRUPT = "missing", "readable", "corrupt"


class RebuildRefusedError(PermanentError):
    """The rebuild would replace a ledger that may still be wanted, or in use: nothing was changed."""


def state_of(path: str) -> dict:
    """What is at ``path`` now: ``{"state": missing|readable|corrupt, "problem", "claims"}``; changes nothing.

    :raises LedgerError: it is locked or cannot be read now (something uses it: try again later).
    """
    try:
        claims = examine(path)
    except LedgerCorruptError as e:
        return {"state": CORRUPT, "problem": str(e.__cause__ or e), "claims": []}
    return {"state": MISSING if claims is None else READABLE, "problem": None, "claims": claims or []}


def refuse(path: str, found: dict, force: bool) -> None:
    """Raise :class:`RebuildRefusedError` if a rebuild must not replace what is at ``path`` (see :func:`state_of`)."""
    if found["state"] != READABLE:
        return
    if not force:
        raise RebuildRefusedError(
            f"the ledger {path} exists and can be read: a rebuild would replace it; pass --force to move it aside "
            f"first (to {path}.old-<time>), or give another --ledger"
        )
    live = [claim for claim in found["claims"] if claim["live"]]
    if live:
        held = ", ".join(
            f"{c['source_id']}/{c['data_version']} by run {c['run_id']} (host {c['host']}, pid {c['pid']}, since "
            f"{datetime.fromtimestamp(c['claimed_at'], UTC).replace(microsecond=0).isoformat()})"
            for c in live
        )
        raise RebuildRefusedError(
            f"the ledger {path} holds claims of archive tasks that may still be running: {held}; pause the DAG, let "
            "them finish, then rebuild"
        )


def _on_disk(data_directory: str) -> dict[tuple[str, str], set[str]]:
    """Every crawl under the data directory, by (source_id, data_version): ``{"directory"}``, ``{"deleting"}`` or
    both. Only names a crawl can have count (a data version, with or without the ``.deleting`` suffix)."""
    found: dict[tuple[str, str], set[str]] = {}
    for source in sorted(os.listdir(data_directory)):
        folder = os.path.join(data_directory, source)
        if source_id_problem(source) or os.path.islink(folder) or not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            kind = "deleting" if name.endswith(DELETING_SUFFIX) else "directory"
            version = name.removesuffix(DELETING_SUFFIX)
            try:
                parse_data_version(version)
            except ValueError:
                continue
            found.setdefault((source, version), set()).add(kind)
    return found


def survey(client, bucket_name: str, data_directory: str) -> dict:
    """Read the bucket and the data directory (nothing changed); return the rows to write and what to report.

    :returns: ``{"rows": [...], "counts": {...}, "needs_a_person": [{"id", "problem", "what_to_do"}]}``.
    """
    bucket = Bucket(client, bucket_name)
    disk = _on_disk(data_directory)
    rows, people = [], []
    counts = {"months": 0, "archived": 0, "on_disk": 0, "unnamed": 0, "crawls_on_disk": 0, "deleting": 0}
    audit = "run `kingfisher-archive audit` and mend the month as it says; the next run looks again"
    for source in sources(client, bucket_name):
        for (year, month), names in sorted(bucket.incomplete(source).items()):
            people.append(
                {
                    "id": month_prefix(source, year, month),
                    "problem": f"holds {' and '.join(names)} but no metadata.json",
                    "what_to_do": audit,
                }
            )
        for year, month in sorted(bucket.months(source)):
            counts["months"] += 1
            prefix = month_prefix(source, year, month)
            try:
                archived = bucket.archived(source, year, month)
            except MetadataError as e:
                people.append({"id": prefix, "problem": f"metadata.json cannot be read ({e})", "what_to_do": audit})
                continue
            if archived is None:  # gone since it was listed
                continue
            if archived.data_version is None:
                counts["unnamed"] += 1  # a 2020 archive: names no crawl, so no crawl's row to write
                continue
            try:
                parse_data_version(archived.data_version)
            except ValueError:
                people.append(
                    {
                        "id": prefix,
                        "problem": f"metadata.json names data_version {archived.data_version!r}, not a crawl's",
                        "what_to_do": audit,
                    }
                )
                continue
            where = disk.get((source, archived.data_version), set())
            if where:
                counts["on_disk"] += 1  # left for the next run (a .deleting one is reported below)
                continue
            compressed = bucket.data_size(archived)
            if compressed is None:
                people.append(
                    {
                        "id": archived.id,
                        "problem": f"{archived.key} names it, but {archived.data_key} is missing; not recorded",
                        "what_to_do": audit,
                    }
                )
                continue
            at = archived.raw.get("archived_at")
            rows.append(
                {
                    "source_id": source,
                    "data_version": archived.data_version,
                    "updated_at": at if isinstance(at, str) else None,
                    "result": {
                        "id": archived.id,
                        "bytes": archived.bytes,
                        "checksum": archived.checksum,
                        "compressed_bytes": compressed,
                        "deleted": [],
                        "rebuilt_from": archived.key,
                    },
                }
            )
    counts["archived"] = len(rows)
    for (source, version), kinds in sorted(disk.items()):
        directory = crawl_directory(data_directory, source, version)
        if "directory" in kinds:
            counts["crawls_on_disk"] += 1
        if "deleting" in kinds:
            counts["deleting"] += 1
            aside = directory + DELETING_SUFFIX
            if "directory" in kinds:
                what = (
                    f"both {directory} and {aside} are there: compare them by hand; keep the one that is the crawl "
                    "(rename it to its own name) before the next run"
                )
            else:
                what = (
                    f"rename it back (`mv {aside} {directory}`): the next run inspects it and compares it with its "
                    "month, and deletes it only if the month holds its archive byte for byte"
                )
            people.append(
                {
                    "id": f"{source}/{version}{DELETING_SUFFIX}",
                    "problem": "a deletion was cut short; without its ledger row no run finishes it",
                    "what_to_do": what,
                }
            )
    return {"rows": rows, "counts": counts, "needs_a_person": people}


def install(path: str, rows: list[dict], run_id: str, expected: dict, force: bool) -> str | None:
    """Write ``rows`` into a new ledger beside ``path`` and put it in ``path``'s place; return where the old ledger
    was moved, or ``None`` when there was none.

    :param expected: :func:`state_of` as it was checked: if what is at ``path`` changed since, nothing is done.
    :raises RebuildRefusedError: ``path`` changed since it was checked, or appeared while writing.
    """
    now = state_of(path)
    if now["state"] != expected["state"]:
        raise RebuildRefusedError(
            f"the ledger {path} changed while the bucket was read (it was {expected['state']}, it is "
            f"{now['state']}): is the DAG running? Pause it, then rebuild again"
        )
    refuse(path, now, force)
    directory, name = os.path.split(os.path.abspath(path))
    new = os.path.join(directory, f".{name}.rebuild-{os.getpid()}")
    for suffix in ("", "-wal", "-shm"):
        if os.path.lexists(new + suffix):
            os.unlink(new + suffix)  # a rebuild of this pid that was cut short
    Ledger(new).record_rebuilt(rows, run_id)
    with closing(sqlite3.connect(new, isolation_level=None)) as connection:
        connection.execute("PRAGMA journal_mode = DELETE")  # everything in the one file, which is what is moved
    aside = None
    if now["state"] != MISSING:
        aside = move_aside(path, "corrupt" if now["state"] == CORRUPT else "old")
    try:
        os.link(new, path)  # never over a file: one a task created meanwhile is not replaced
    except FileExistsError:
        raise RebuildRefusedError(
            f"a new {path} appeared while the ledger was rebuilt (a task of the DAG opened it?): pause the DAG; the "
            f"rebuilt ledger is at {new}" + (f", the old one at {aside}" if aside else "")
        ) from None
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            raise RebuildRefusedError(f"a new {path} appeared while the ledger was rebuilt: pause the DAG") from None
        os.rename(new, path)
    else:
        os.unlink(new)
    return aside


def run_id() -> str:
    """The run id the rebuilt rows and their events carry."""
    return f"ledger-rebuild-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
