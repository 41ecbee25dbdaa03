"""A model of many runs: random sequences of loads, runs, overlaps, faults, retries and sweeps.

Per-fault tests show one failure at a time. This searches over *sequences* (hypothesis's stateful testing): crawls
are loaded (random months, sizes, cleanliness, some identical to the one before), runs decide and archive (some
dry, some overlapping, their archive tasks interleaved), and faults are injected into one archive task: an S3 call
that fails, an S3 call whose response is lost after the server acted, the process "killed" at an S3 call (nothing
it would do afterwards reaches S3 or the disk), a ledger write that fails, or a failure just before a delete.
Failed archive tasks may be cleared and retried.

After every step, in the bucket under test:

- every ``metadata.json`` describes the ``data.tar.lz4`` beside it (same crawl, same size, same checksum);
- every crawl loaded is on disk, or in its month's archive (byte for byte), or was deleted by the policy while its
  month (or the month of the archive it lost to) holds an archive.

At the end, once the faults stop and runs complete, the bucket holds exactly what a shadow world holds that saw
the same loads and runs one after another, with no fault.

The number of sequences is bounded for ``make test``; a longer search:

    KINGFISHER_ARCHIVE_HYPOTHESIS=long .venv/bin/pytest tests/test_model.py
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import lz4.frame
import pytest
import xxhash
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from kingfisher_archive import crawl as crawls
from kingfisher_archive import policy, steps
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.ledger import Ledger, LedgerError
from kingfisher_archive.process import Collection
from kingfisher_archive.s3 import client_config
from kingfisher_archive.settings import Settings
from scripts.demo_kit.kingfisher_host import KingfisherHost, ocds_files

SOURCE = "scotland"
S3_OPERATIONS = (
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "HeadObject",
    "GetObject",
    "PutObject",
    "CopyObject",
    "DeleteObject",
    "ListObjectsV2",
)


class Injected(Exception):
    """The fault this model injected."""


@dataclass(frozen=True)
class Fault:
    kind: str  # "s3-fails", "s3-response-lost", "killed", "ledger", "before-delete"
    operation: str = ""  # the S3 operation or ledger method it strikes
    nth: int = 1  # at its nth call


FAULTS = st.one_of(
    st.builds(
        Fault,
        st.sampled_from(["s3-fails", "s3-response-lost", "killed"]),
        st.sampled_from(S3_OPERATIONS),
        st.integers(1, 3),
    ),  # fmt: skip
    st.builds(Fault, st.just("ledger"), st.sampled_from(["record", "mark_archived", "settle_pending"])),
    st.builds(Fault, st.just("before-delete")),
)


class FaultyLedger(Ledger):
    """The ledger, with one of its writes failing."""

    def __init__(self, path: str, fault: Fault) -> None:
        super().__init__(path)
        self.fault, self.calls = fault, 0

    def _maybe_fail(self, method: str) -> None:
        if method == self.fault.operation:
            self.calls += 1
            if self.calls == self.fault.nth:
                raise LedgerError(f"injected: the ledger's {method} failed")

    def record(self, *args, **kwargs):
        self._maybe_fail("record")
        return super().record(*args, **kwargs)

    def mark_archived(self, *args, **kwargs):
        self._maybe_fail("mark_archived")
        return super().mark_archived(*args, **kwargs)

    def settle_pending(self, *args, **kwargs):
        self._maybe_fail("settle_pending")
        return super().settle_pending(*args, **kwargs)


class World:
    """A Kingfisher host, a bucket and a ledger: the system under test, or its fault-free shadow."""

    def __init__(self, s3_server, root: str) -> None:
        self.s3_server = s3_server
        self.host = KingfisherHost(root)
        self.bucket = f"model-{secrets.token_hex(6)}"
        s3_server.create_bucket(self.bucket)
        self.client = self.new_client()
        self.settings = Settings(
            self.bucket, self.host.data_directory, self.host.logs_directory, f"{root}/ledger.sqlite3", "STANDARD", 1
        )
        self.ledger = Ledger(self.settings.ledger)
        self.loaded: list[Collection] = []
        self.failed: list[tuple[dict, str]] = []
        self.runs = 0

    def new_client(self):
        return self.s3_server.client(config=client_config(Config(s3={"addressing_style": "path"})))

    def load(self, data_version: str, files: dict[str, bytes], errors: int) -> None:
        crawl = self.host.add_crawl(SOURCE, data_version, files, log={"errors": errors})
        self.loaded.append(Collection(len(self.loaded) + 1, SOURCE, crawls.parse_data_version(crawl.data_version)))

    def decide(self, dry: bool = False) -> tuple[str, list[dict]]:
        self.runs += 1
        run_id = f"run-{self.runs}"
        settled = set() if dry else self.ledger.settled()
        work = steps.find(self.settings, self.loaded, settled, False)["crawls"]
        inspected = [steps.inspect(self.settings, crawl) for crawl in work]
        decided = steps.decide(self.settings, Bucket(self.client, self.bucket), inspected)
        if dry:
            return run_id, []
        steps.record_decisions(self.ledger, decided["decisions"], run_id)
        return run_id, decided["to_archive"]

    def archive(self, plan: dict, run_id: str, fault: Fault | None = None) -> None:
        with self.faults(fault) as (client, ledger):
            try:
                steps.archive_and_record(self.settings, client, plan, ledger, run_id)
            except Exception:  # noqa: BLE001 - a failed task: the run goes on, an operator may clear it later
                self.failed.append((plan, run_id))

    def sweep(self, run_id: str) -> None:
        now = datetime(2026, 11, 28)
        loaded = {(c.source_id, crawls.format_data_version(c.data_version)) for c in self.loaded}
        steps.sweep(self.settings, self.ledger, loaded, now, False, run_id, bucket=Bucket(self.client, self.bucket))

    def run(self, fault: Fault | None = None, dry: bool = False, victim: int = 0) -> None:
        run_id, plans = self.decide(dry)
        for i, plan in enumerate(plans):
            self.archive(plan, run_id, fault if i == victim % max(len(plans), 1) else None)
        if not dry:
            self.sweep(run_id)

    @contextmanager
    def faults(self, fault: Fault | None):
        """A client and a ledger for one archive task, with ``fault`` injected into them."""
        if fault is None:
            yield self.client, self.ledger
            return
        client, ledger = self.new_client(), self.ledger
        if fault.kind == "ledger":
            ledger = FaultyLedger(self.settings.ledger, fault)
        calls = {"n": 0, "dead": False}

        def before(model=None, **kwargs):
            name = kwargs.get("event_name", "").rsplit(".", 1)[-1]
            if calls["dead"]:
                raise EndpointConnectionError(endpoint_url="injected: the process is dead")
            if fault.kind in ("s3-fails", "killed") and name == fault.operation:
                calls["n"] += 1
                if calls["n"] == fault.nth:
                    calls["dead"] = fault.kind == "killed"
                    raise EndpointConnectionError(endpoint_url=f"injected: {name} failed")

        def after(**kwargs):
            name = kwargs.get("event_name", "").rsplit(".", 1)[-1]
            if fault.kind == "s3-response-lost" and name == fault.operation:
                calls["n"] += 1
                if calls["n"] == fault.nth:
                    raise EndpointConnectionError(endpoint_url=f"injected: {name}'s response was lost")

        client.meta.events.register("before-call.s3", before)
        client.meta.events.register("after-call.s3", after)
        original = crawls.delete_local

        def delete_local(*args, **kwargs):
            if fault.kind in ("before-delete", "killed") or calls["dead"]:
                raise Injected("injected: the process died just before deleting")
            return original(*args, **kwargs)

        crawls.delete_local = delete_local
        try:
            yield client, ledger
        finally:
            crawls.delete_local = original

    def months(self) -> dict[str, str | None]:
        """Each month prefix of the bucket, and the crawl its metadata.json names (None: no metadata)."""
        found: dict[str, str | None] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                if item["Key"].startswith("staging/"):
                    continue
                prefix, name = item["Key"].rsplit("/", 1)
                found.setdefault(prefix + "/", None)
                if name == "metadata.json":
                    found[prefix + "/"] = json.loads(self._read(item["Key"]))["id"]
        return found

    def _read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def data_names(self, prefix: str) -> str | None:
        """The crawl a month's data.tar.lz4 holds, read from the tar itself (None: no data)."""
        try:
            data = self._read(prefix + "data.tar.lz4")
        except ClientError:
            return None
        with tarfile.open(fileobj=io.BytesIO(lz4.frame.decompress(data))) as tar:
            return tar.next().name

    def check_month(self, prefix: str, crawl_id: str) -> str:
        """Its metadata.json describes its data.tar.lz4: same crawl, size and checksum. Returns the checksum."""
        metadata = json.loads(self._read(prefix + "metadata.json"))
        try:
            data = self._read(prefix + "data.tar.lz4")
        except ClientError as e:
            raise AssertionError(f"{prefix}metadata.json names {crawl_id} but there is no data.tar.lz4") from e
        assert len(data) == metadata["compressed_bytes"], f"{prefix}: data.tar.lz4 is not the size its metadata says"
        hasher = xxhash.xxh3_128()
        with tarfile.open(fileobj=io.BytesIO(lz4.frame.decompress(data))) as tar:
            members = tar.getmembers()
            assert members[0].name == crawl_id, f"{prefix}: the tar holds {members[0].name}, not {crawl_id}"
            for member in members:
                if member.isfile():
                    hasher.update(tar.extractfile(member).read())
        assert hasher.hexdigest() == metadata["checksum"], f"{prefix}: the data is not what metadata.json says"
        return metadata["checksum"]


class Runs(RuleBasedStateMachine):
    def __init__(self, s3_server, tmp_path_factory) -> None:
        super().__init__()
        self.s3_server, self.tmp = s3_server, tmp_path_factory
        self.checksums: dict[str, str] = {}  # every crawl loaded, by id: the checksum of its files
        self.clock = datetime(2020, 1, 1)

    @initialize()
    def worlds(self):
        self.world = World(self.s3_server, str(self.tmp.mktemp("world")))
        self.shadow = World(self.s3_server, str(self.tmp.mktemp("shadow")))
        self.previous_files: dict[str, bytes] | None = None

    @precondition(lambda self: self.clock < datetime(2020, 5, 1))
    @rule(
        days=st.integers(1, 25),
        files=st.integers(1, 4),
        seed=st.integers(0, 50),
        errors=st.sampled_from([0, 0, 1, 9]),
        same_as_before=st.booleans(),
    )
    def load_a_crawl(self, days, files, seed, errors, same_as_before):
        """Kingfisher Collect crawls and Process loads, in time order (as crawls are)."""
        self.clock += timedelta(days=days, seconds=seed)
        data_version = crawls.format_data_version(self.clock)
        content = self.previous_files if same_as_before and self.previous_files else ocds_files(f"s{seed}", files)
        self.previous_files = content
        for world in (self.world, self.shadow):
            world.load(data_version, dict(content), errors)
        self.checksums[f"{SOURCE}/{data_version}"] = crawls.checksum(
            crawls.crawl_directory(self.world.host.data_directory, SOURCE, data_version)
        )

    @rule(fault=st.none() | FAULTS, dry=st.booleans(), victim=st.integers(0, 3))
    def a_run(self, fault, dry, victim):
        self.world.run(fault, dry, victim)
        self.shadow.run(dry=dry)

    @rule(fault=st.none() | FAULTS, order=st.randoms(use_true_random=False))
    def two_overlapping_runs(self, fault, order):
        """A backfill's runs for two days: both decide before either archives; their tasks run in any order."""
        first, first_plans = self.world.decide()
        second, second_plans = self.world.decide()
        tasks = [(plan, first) for plan in first_plans] + [(plan, second) for plan in second_plans]
        order.shuffle(tasks)
        for i, (plan, run_id) in enumerate(tasks):
            self.world.archive(plan, run_id, fault if i == 0 else None)
        self.world.sweep(second)
        self.shadow.run()
        self.shadow.run()

    @precondition(lambda self: self.world.failed)
    @rule()
    def clear_the_failed_tasks(self):
        """An operator clears the failed archive tasks; each runs again on its own run's decision."""
        failed, self.world.failed = self.world.failed, []
        for plan, run_id in failed:
            self.world.archive(plan, run_id)

    @invariant()
    def every_metadata_describes_the_data_beside_it(self):
        for prefix, crawl_id in self.world.months().items():
            if crawl_id is not None:
                self.world.check_month(prefix, crawl_id)

    @invariant()
    def every_crawl_is_on_disk_or_archived_or_deleted_for_an_archive_in_the_bucket(self):
        months = self.world.months()
        for crawl_id, checksum in self.checksums.items():
            source_id, data_version = crawl_id.split("/")
            if self.world.host.exists(crawl_id):
                continue
            prefix = f"{source_id}/{data_version[:4]}/{data_version[4:6]}/"
            if months.get(prefix) == crawl_id:
                assert self.world.check_month(prefix, crawl_id) == checksum, f"{crawl_id}'s archive is not its bytes"
                continue
            row = self.world.ledger.get(source_id, data_version) or {}
            facts = row.get("facts") or {}
            winner = facts.get("pending_on") or facts.get("superseded_by") or facts.get("compared_with") or crawl_id
            if row.get("status") == "swept" and row.get("reason") in policy.REJECT_REASONS:
                continue  # rejected: the policy never wanted it
            winner_prefix = f"{SOURCE}/{winner.split('/')[1][:4]}/{winner.split('/')[1][4:6]}/"
            assert row.get("status") in ("swept", "archived"), f"{crawl_id} is gone, and the ledger says {row}"
            # A promotion cut short leaves a month's data without its metadata.json (never with another crawl's):
            # that data is still a whole archive, restorable by hand, of this crawl or of the one replacing it.
            assert any(months.get(p) or (p in months and self.world.data_names(p)) for p in (prefix, winner_prefix)), (
                f"{crawl_id} is gone ({row.get('status')}, lost to {winner}) and no archive stands for it"
            )

    def teardown(self):
        if not hasattr(self, "world"):
            return
        # The faults stop; failed tasks are cleared; runs complete. Then the bucket is what the shadow holds.
        if self.world.failed:
            self.clear_the_failed_tasks()
        for _ in range(2):
            self.world.run()
            self.shadow.run()
        assert self.world.failed == []
        assert self.world.months() == self.shadow.months()


def test_any_sequence_of_runs_faults_and_overlaps_ends_in_the_bucket_a_fault_free_history_makes(
    s3_server, tmp_path_factory
):
    run_state_machine_as_test(lambda: Runs(s3_server, tmp_path_factory))


@pytest.mark.parametrize("kind", ["s3-fails", "killed", "s3-response-lost"])
@pytest.mark.parametrize("operation", ["PutObject", "CopyObject", "DeleteObject", "CompleteMultipartUpload"])
def test_one_fault_at_each_place_leaves_a_consistent_month_and_converges(s3_server, tmp_path_factory, kind, operation):
    """The same checks over a fixed sequence: archive, a better crawl replaces it with a fault, then clean runs."""
    world = World(s3_server, str(tmp_path_factory.mktemp("world")))
    shadow = World(s3_server, str(tmp_path_factory.mktemp("shadow")))
    for target in (world, shadow):
        target.load("20200902_052458", ocds_files("small", 2), 0)
        target.run()
        target.load("20200920_101010", ocds_files("big", 8), 0)
    world.run(Fault(kind, operation, 1))
    shadow.run()
    for prefix, crawl_id in world.months().items():
        if crawl_id is not None:
            world.check_month(prefix, crawl_id)
    for plan, run_id in world.failed:
        world.archive(plan, run_id)
    world.run()
    shadow.run()
    assert world.months() == shadow.months() == {"scotland/2020/09/": "scotland/20200920_101010"}
