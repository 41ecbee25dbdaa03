"""A Kingfisher host, a bucket on the session's real SeaweedFS and a ledger, driven by the package's own steps.

Shared by the stateful model (``tests/test_model.py``) and the crash-point explorer (``tests/test_crash_points.py``):
a run is find, inspect, decide, record, an archive task per plan (each a :class:`~tests.harness.crashes.Try`,
which may crash), then the retention sweep.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import secrets
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime

import lz4.frame
import pytest
import xxhash
import zstandard
from botocore.config import Config
from botocore.exceptions import ClientError

from kingfisher_archive import crawl as crawls
from kingfisher_archive import policy, steps
from kingfisher_archive.bucket import DATA_LZ4, DATA_NAMES, Bucket
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.process import Collection
from kingfisher_archive.s3.client import client_config
from kingfisher_archive.settings import Settings
from scripts.demo_kit.kingfisher_host import KingfisherHost
from tests.harness.crashes import Crash, Killed, Try, failing_reads, list_bucket

SOURCE = "scotland"
#: What the sweep takes as now: every crawl of 2020 is older than its retention.
NOW = datetime(2026, 11, 28)


@contextmanager
def writing_lz4() -> Iterator[None]:
    """Archive as this package did before 2.0 (the older tools' format): ``data.tar.lz4`` in one LZ4 frame, and a
    ``metadata.json`` that names no data object, codec or level. For histories whose months later runs replace."""
    from kingfisher_archive import archiver, compression

    metadata_json = archiver._metadata_json

    def older_metadata(*args) -> bytes:
        document = json.loads(metadata_json(*args))
        for key in ("data_object", "codec", "compression_level"):  # checksums and verified_by: keyed by DATA_LZ4
            del document[key]
        return json.dumps(document, indent=2).encode("utf-8")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(archiver, "DATA", DATA_LZ4)
        patch.setattr(archiver, "_metadata_json", older_metadata)
        patch.setattr(compression, "ZstdWriter", lambda sink, level: compression.LZ4Writer(sink))
        yield


def decompress(data: bytes) -> bytes:
    """An archive's tar, by the stock libraries (not the package's reader): LZ4 or zstd, as the first bytes say."""
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
    return lz4.frame.decompress(data)


def month_of(crawl_id: str) -> str:
    source_id, data_version = crawl_id.split("/")
    return f"{source_id}/{data_version[:4]}/{data_version[4:6]}/"


class World:
    """A Kingfisher host, a bucket and a ledger: the system under test, or its fault-free shadow."""

    def __init__(self, s3_server, root: str, retention_days: int | None = 1) -> None:
        self.s3_server = s3_server
        self.host = KingfisherHost(root)
        self.bucket = f"model-{secrets.token_hex(6)}"
        s3_server.create_bucket(self.bucket)
        self.client = self.new_client()  # the runs' (find, decide, sweep); archive tasks have their own
        self.calls: list[tuple[str, str]] = []  # (operation, key) of every S3 call of the runs' client
        self.client.meta.events.register("before-parameter-build.s3", self._note)
        self.look = self.new_client()  # what the checks below read with: never counted as the system's reads
        self.settings = Settings(
            self.bucket,
            self.host.data_directory,
            self.host.logs_directory,
            f"{root}/ledger.sqlite3",
            "STANDARD",
            retention_days,
        )
        self.ledger = Ledger(self.settings.ledger)
        self.loaded: list[Collection] = []
        self.checksums: dict[str, str] = {}  # every crawl loaded, by id: the checksum of its files
        self.failed: list[tuple[dict, str]] = []
        self.tries: list[Try] = []  # every archive task's try, in order
        self.snapshot: list[dict] = []  # the bucket's listing before the last archive try
        self._view: dict | None = None  # see _viewing
        self._cache: dict = {}
        self.runs = 0
        #: Watches (and fails) the file system calls of each step (tests/harness/crashes.py, FileSystem); and is
        #: called with each step's name before it runs (a ledger reset, say, between two steps).
        self.fs = None
        self.between_steps = None
        #: Crawls whose path a writer re-created after they were set aside or deleted: what stands there is not them.
        self.recreated: set[str] = set()

    def _note(self, params, model, **kwargs) -> None:
        self.calls.append((model.name, params.get("Key", "")))

    def clone(self, root: str) -> World:
        """A world in the same state under ``root``, with a bucket of its own: the host's files (and the ledger)
        copied with their times, the bucket's objects copied server-side. Faster than replaying the history."""
        shutil.copytree(self.host.root, root, dirs_exist_ok=True)
        world = World(self.s3_server, root, self.settings.retention_days)
        for crawl in self.host.crawls.values():
            moved = {"directory": crawl.directory.replace(self.host.root, root, 1)}
            if crawl.log:
                moved["log"] = crawl.log.replace(self.host.root, root, 1)
            world.host.crawls[crawl.id] = dataclasses.replace(crawl, **moved)
        for key in self.keys():
            source = {"Bucket": self.bucket, "Key": key}
            world.look.copy_object(CopySource=source, Bucket=world.bucket, Key=key, StorageClass="STANDARD")
        world.loaded, world.checksums, world.runs = list(self.loaded), dict(self.checksums), self.runs
        return world

    def new_client(self):
        return self.s3_server.client(config=client_config(Config(s3={"addressing_style": "path"})))

    def load(self, data_version: str, files: dict[str, bytes], errors: int) -> str:
        crawl = self.host.add_crawl(SOURCE, data_version, files, log={"errors": errors})
        self.loaded.append(Collection(len(self.loaded) + 1, SOURCE, crawls.parse_data_version(crawl.data_version)))
        self.checksums[crawl.id] = crawls.checksum(crawl.directory)
        return crawl.id

    def decide(self, dry: bool = False, read_error: tuple[int, int] | None = None) -> tuple[str, list[dict]]:
        """Find, inspect, decide and record; ``read_error`` (nth, errno): that read of inspection or decision fails."""
        self.runs += 1
        run_id = f"run-{self.runs}"
        with self.step("find"):
            settled = set() if dry else self.ledger.settled()
            # As the DAG's find task: a crawl archived and deleted that is on disk again was written again since.
            deleted = set() if dry else self.ledger.deleted()
            work = steps.find(self.settings, self.loaded, settled, False, deleted=deleted)["crawls"]
        with failing_reads(*read_error) if read_error else nullcontext():
            with self.step("inspect"):
                inspected = [steps.inspect(self.settings, crawl) for crawl in work]
            # As the DAG's decide task: a real run first mends what earlier tries left; a dry run mends nothing.
            with self.step("decide"):
                ledger = None if dry else self.ledger
                decided = steps.decide(self.settings, Bucket(self.client, self.bucket), inspected, ledger, run_id)
        if dry:
            return run_id, []
        with self.step("record"):
            steps.record_decisions(self.ledger, decided["decisions"], run_id)
        return run_id, decided["to_archive"]

    @contextmanager
    def step(self, name: str):
        """One step of a run (its file system calls watched as ``name``, if :attr:`fs` is set)."""
        if self.between_steps is not None:
            self.between_steps(name)
        with self.fs.in_step(name) if self.fs is not None else nullcontext():
            yield

    def archive(self, plan: dict, run_id: str, crash: Crash | None = None) -> Try:
        """One try of the plan's archive task; a failed one is kept in :attr:`failed` (``attempt.error``)."""
        with self.step(f"archive {plan['id']}"):
            attempt = Try(self, crash, snapshot=self.snapshot)
            attempt.error = None
            self.tries.append(attempt)
            self.snapshot = list_bucket(self.look, self.bucket)  # before this try's writes: a stale listing's
            try:
                attempt.run(steps.archive_and_record, self.settings, attempt.client, plan, attempt.ledger, run_id)
            except (Exception, Killed) as e:  # noqa: BLE001 - a failed task: the run goes on, it may be cleared
                attempt.error = e
                self.failed.append((plan, run_id))
        return attempt

    def sweep(self, run_id: str) -> None:
        loaded = {(c.source_id, crawls.format_data_version(c.data_version)) for c in self.loaded}
        with self.step("sweep"):
            self._sweep(loaded, run_id)

    def _sweep(self, loaded, run_id: str) -> None:
        steps.sweep(self.settings, self.ledger, loaded, NOW, False, run_id, bucket=Bucket(self.client, self.bucket))

    def run(self, crash: Crash | None = None, dry: bool = False, victim: int = 0, read_error=None) -> None:
        run_id, plans = self.decide(dry, read_error)
        failed = len(self.failed)
        for i, plan in enumerate(plans):
            self.archive(plan, run_id, crash if i == victim % max(len(plans), 1) else None)
        if not dry and len(self.failed) == failed:  # the sweep waits for every archive task (none_failed)
            self.sweep(run_id)

    # -- what an operator sees

    @contextmanager
    def _viewing(self):
        """Within, objects are read once per ETag: one listing, and a GET only for what changed since the last."""
        if self._view is not None:
            yield
            return
        pages = self.look.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        self._view = {item["Key"]: (item["ETag"], item["Size"]) for page in pages for item in page.get("Contents", [])}
        try:
            yield
        finally:
            self._view = None

    def months(self) -> dict[str, str | None]:
        """Each month prefix of the bucket, and the crawl its metadata.json names (None: no metadata)."""
        found: dict[str, str | None] = {}
        with self._viewing():
            for key in sorted(self._view):
                if key.startswith("staging/"):
                    continue
                prefix, name = key.rsplit("/", 1)
                found.setdefault(prefix + "/", None)
                if name == "metadata.json":
                    found[prefix + "/"] = json.loads(self._read(key))["id"]
        return found

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.look.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def uploads(self) -> list[str]:
        """The keys of the bucket's incomplete multipart uploads."""
        return sorted(u["Key"] for u in self.look.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []))

    def _read(self, key: str) -> bytes:
        seen = self._view.get(key) if self._view is not None else None
        if seen is not None and (key, seen[0]) in self._cache:
            return self._cache[(key, seen[0])]
        response = self.look.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"].read()
        self._cache[(key, response["ETag"])] = body
        return body

    def _data_objects(self, prefix: str) -> list[str]:
        """The names of the month's data objects (``data.tar.zst``, ``data.tar.lz4``) that are there."""
        if self._view is not None:
            return [name for name in DATA_NAMES if prefix + name in self._view]
        found = []
        for name in DATA_NAMES:
            try:
                self.look.head_object(Bucket=self.bucket, Key=prefix + name)
            except ClientError:
                continue
            found.append(name)
        return found

    def _named(self, prefix: str) -> str | None:
        """The data object the month's metadata.json names (none named: data.tar.lz4), if it has one."""
        if self._view is not None and prefix + "metadata.json" not in self._view:
            return None
        try:
            name = json.loads(self._read(prefix + "metadata.json")).get("data_object", DATA_LZ4)
        except (ClientError, ValueError, AttributeError):
            return None
        return name if name in DATA_NAMES else DATA_LZ4

    def data(self, prefix: str, name: str | None = None) -> tuple[str, str] | None:
        """The crawl a month's data object holds (its tar's first member) and the checksum of its files: the object
        ``name``, else the one its metadata.json names, else the one there (zstd first)."""
        if name is None:
            there = self._data_objects(prefix)
            named = self._named(prefix)
            name = named if named in there else next(iter(there), None)
            if name is None:
                return None
        if self._view is not None and prefix + name not in self._view:
            return None
        try:
            data = self._read(prefix + name)
        except ClientError:
            return None
        if ("tar", data) in self._cache:
            return self._cache[("tar", data)]
        hasher = xxhash.xxh3_128()
        with tarfile.open(fileobj=io.BytesIO(decompress(data))) as tar:
            members = tar.getmembers()
            for member in members:
                if member.isfile():
                    hasher.update(tar.extractfile(member).read())
        self._cache[("tar", data)] = found = (members[0].name, hasher.hexdigest())
        return found

    def every_data(self, prefix: str) -> list[tuple[str, str]]:
        """What each of the month's data objects holds (two only while a replacement across names is under way)."""
        return [found for name in self._data_objects(prefix) if (found := self.data(prefix, name))]

    def data_names(self, prefix: str) -> str | None:
        """The crawl a month's data object holds, read from the tar itself (None: no data)."""
        found = self.data(prefix)
        return found[0] if found else None

    def check_month(self, prefix: str, crawl_id: str) -> str:
        """Its metadata.json describes the data object it names: same crawl, size and checksum. Returns the
        checksum."""
        metadata = json.loads(self._read(prefix + "metadata.json"))
        named = metadata.get("data_object", DATA_LZ4)
        try:
            if self._view is not None and prefix + named in self._view:
                size = self._view[prefix + named][1]
            else:
                size = self.look.head_object(Bucket=self.bucket, Key=prefix + named)["ContentLength"]
        except ClientError as e:
            raise AssertionError(f"{prefix}metadata.json names {crawl_id} but there is no {named}") from e
        assert size == metadata["compressed_bytes"], f"{prefix}: {named} is not the size its metadata says"
        name, checksum = self.data(prefix, named)
        assert name == crawl_id, f"{prefix}: the tar holds {name}, not {crawl_id}"
        assert checksum == metadata["checksum"], f"{prefix}: the data is not what metadata.json says"
        return metadata["checksum"]

    def objects(self, prefix: str = "") -> dict[str, tuple[str, object]]:
        """Each object's ETag and time of writing: what changes if anything rewrites it."""
        pages = self.look.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {
            item["Key"]: (item["ETag"], item["LastModified"]) for page in pages for item in page.get("Contents", [])
        }

    def end_state(self) -> dict:
        """What an operator compares: the months, their consistency, leftovers, the crawls on disk, the ledger."""
        with self._viewing():
            return self._end_state()

    def _end_state(self) -> dict:
        months = self.months()
        consistent = {}
        for prefix, crawl_id in months.items():
            try:
                consistent[prefix] = crawl_id is not None and bool(self.check_month(prefix, crawl_id))
                if crawl_id is not None and len(there := self._data_objects(prefix)) != 1:
                    consistent[prefix] = f"{prefix} holds {there} beside its metadata.json"
            except AssertionError as e:
                consistent[prefix] = str(e)
        return {
            "months": months,
            "metadata describes its data": consistent,
            "staging": self.keys("staging/"),
            "incomplete uploads": self.uploads(),
            "on disk": sorted(crawl_id for crawl_id in self.checksums if self.host.exists(crawl_id)),
            "ledger": {f"{r['source_id']}/{r['data_version']}": r["status"] for r in self.ledger.all()},
        }

    def unsafe(self) -> list[str]:
        """What breaks the safety invariants now: a ``metadata.json`` that does not describe the data beside it, and
        a crawl loaded that is lost: not on disk, not in its month's archive byte for byte, and not deleted while the
        archive it lost to is in the bucket. (A promotion cut short may leave a month's data object without its
        metadata.json, or beside another under the other name: each is a whole archive, restorable by hand, and
        counts for the crawl it holds.)"""
        with self._viewing():
            return self._unsafe()

    def _unsafe(self) -> list[str]:
        months = self.months()
        problems = []
        for prefix, crawl_id in months.items():
            if crawl_id is not None:
                try:
                    self.check_month(prefix, crawl_id)
                except AssertionError as e:
                    problems.append(f"{prefix}metadata.json does not describe its data: {e}")
        for crawl_id, checksum in self.checksums.items():
            if self.host.exists(crawl_id) and crawl_id not in self.recreated:
                continue
            aside = self.host.crawls[crawl_id].directory + crawls.DELETING_SUFFIX
            if os.path.isdir(aside) and crawls.checksum(aside) == checksum:
                continue  # set aside to be deleted, whole
            prefix = month_of(crawl_id)
            held = self.data(prefix) if prefix in months else None
            if prefix in months and (crawl_id, checksum) in self.every_data(prefix):
                continue  # in its month's data object, byte for byte (with or without its metadata.json)
            if held is not None and months[prefix] in (None, held[0]):
                continue  # its month holds a whole archive of another crawl, which replaced it (or it lost to)
            row = self.ledger.get(*crawl_id.split("/")) or {}
            facts = row.get("facts") or {}
            if row.get("status") == "swept" and row.get("reason") in policy.REJECT_REASONS:
                continue  # rejected: the policy never wanted it
            winner = facts.get("pending_on") or facts.get("superseded_by") or facts.get("compared_with")
            if row.get("status") in ("swept", "not_archived") and winner and months.get(month_of(winner)) == winner:
                continue  # lost to an archive that is in the bucket
            problems.append(
                f"{crawl_id} is lost: gone from disk, its month {prefix} holds {self._describe(prefix, months)}, "
                f"the ledger says {row.get('status')} ({row.get('reason')}, lost to {winner})"
            )
        return problems

    def _describe(self, prefix: str, months: dict) -> str:
        if prefix not in months:
            return "nothing"
        held = self.data(prefix)
        return f"metadata naming {months[prefix]} and data of {held[0] if held else None}"
