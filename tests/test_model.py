"""A model of many runs: random sequences of loads, runs, overlaps, faults, retries and sweeps.

Per-fault tests show one failure at a time. This searches over *sequences* (hypothesis's stateful testing): crawls
are loaded (random months, sizes, cleanliness, some identical to the one before), runs decide and archive (some
dry, some overlapping, their archive tasks interleaved), and faults are injected into one archive task: an S3 call
that fails, an S3 call whose response is lost after the server acted, the process "killed" at an S3 call (nothing
it would do afterwards reaches S3 or the disk), a ledger write that fails, or a failure just before a delete.
Failed archive tasks may be cleared and retried.

After every step, in the bucket under test:

- every ``metadata.json`` describes the data object it names (same crawl, same size, same checksum);
- every crawl loaded is on disk, or in its month's archive (byte for byte), or was deleted by the policy while its
  month (or the month of the archive it lost to) holds an archive.

At the end, once the faults stop and runs complete, the bucket holds exactly what a shadow world holds that saw
the same loads and runs one after another, with no fault.

Slow (``make test-all``, not ``make test``). The number of sequences is bounded there; a longer search:

    KINGFISHER_ARCHIVE_HYPOTHESIS=long .venv/bin/pytest -m "not e2e" tests/test_model.py
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import time
from datetime import datetime, timedelta

import pytest
from hypothesis import Phase, settings
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
from scripts.demo_kit.kingfisher_host import ocds_files
from tests.harness.crashes import Crash, Point
from tests.harness.world import World

pytestmark = pytest.mark.slow

S3_OPERATIONS = (
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "HeadObject",
    "GetObject",
    "PutObject",
    "CopyObject",
    "DeleteObject",
    "DeleteObjects",
    "AbortMultipartUpload",
    "ListObjectsV2",
)
S3_WHENS = ("error", "before", "lost", "lost-error", "lost-killed", "5xx")
LEDGER_WRITES = ("Ledger.claim", "Ledger.record", "Ledger.mark_archived", "Ledger.settle_pending")


def _crash(kind: str, name: str, nth: int, when: str) -> Crash:
    return Crash(Point(kind, name, nth), when)


# Faults injected into one archive task (tests/harness/crashes.py says what each "when" does): an S3 call that
# fails, is applied and its response lost (botocore's retry answering, or not), applied and answered with a 500, or
# the process killed before or after it (a server-side copy among them); a listing answered from before the last
# write; a ledger write that fails or is the last thing the process does; a delete that fails, or the process
# killed after k of a crawl's unlinks or rmdirs.
FAULTS = st.one_of(
    st.builds(_crash, st.just("s3"), st.sampled_from(S3_OPERATIONS), st.integers(1, 3), st.sampled_from(S3_WHENS)),
    st.builds(_crash, st.just("s3"), st.just("ListObjectsV2"), st.integers(1, 3), st.just("stale")),
    st.builds(
        _crash,
        st.just("ledger"),
        st.sampled_from(LEDGER_WRITES),
        st.just(1),
        st.sampled_from(["error", "before", "after"]),
    ),
    st.builds(
        _crash,
        st.just("local"),
        st.sampled_from(["os.unlink", "os.rmdir", "os.remove"]),
        st.integers(1, 4),
        st.sampled_from(["error", "before", "after"]),
    ),
)
#: A transient error reading the crawls during inspection and decision: the nth open or scandir, and its errno.
READ_ERRORS = st.tuples(st.integers(1, 12), st.sampled_from([errno.EACCES, errno.EIO, errno.EMFILE]))


class Runs(RuleBasedStateMachine):
    def __init__(self, s3_server, tmp_path_factory) -> None:
        super().__init__()
        self.s3_server, self.tmp = s3_server, tmp_path_factory
        self.clock = datetime(2020, 1, 1)

    @initialize()
    def worlds(self):
        self.world = World(self.s3_server, str(self.tmp.mktemp("world")))
        self.shadow = World(self.s3_server, str(self.tmp.mktemp("shadow")))
        self.previous_files: dict[str, bytes] | None = None
        # An earlier month is in the bucket: January, archived first.
        self.clock = datetime(2020, 1, 5)
        for world in (self.world, self.shadow):
            world.load(crawls.format_data_version(self.clock), ocds_files("january", 3), 0)
            world.run()

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

    @rule(fault=st.none() | FAULTS, dry=st.booleans(), victim=st.integers(0, 3), reads=st.none() | READ_ERRORS)
    def a_run(self, fault, dry, victim, reads):
        self.world.run(fault, dry, victim, read_error=reads)
        self.shadow.run(dry=dry)

    @precondition(lambda self: self.world.loaded)
    @rule(which=st.integers(0, 20))
    def a_claim_left_by_a_process_whose_pid_is_now_another(self, which):
        """A container restarted: the ledger holds a claim on a month from before, by a pid that is alive again
        (this very process), with another run id and an older claim time. It is not a live holder."""
        crawl = self.world.loaded[which % len(self.world.loaded)]
        row = {
            "source_id": crawl.source_id,
            "data_version": crawl.data_version.strftime("%Y-%m"),
            "run_id": "a run before the restart",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "claimed_at": time.time() - 3600,
        }
        with sqlite3.connect(self.world.settings.ledger) as connection:
            columns = {c[1] for c in connection.execute("PRAGMA table_info(claim)")}
            row = {k: v for k, v in row.items() if k in columns}
            connection.execute(
                f"INSERT OR REPLACE INTO claim ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )

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
        assert self.world.unsafe() == []

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
        assert self.world.keys("staging/") == [] and self.world.uploads() == []


def test_any_sequence_of_runs_faults_and_overlaps_ends_in_the_bucket_a_fault_free_history_makes(
    s3_server, tmp_path_factory
):
    # The bounded search (profile "ci") does not shrink a failing sequence: shrinking sequences of real runs took
    # over five minutes. The long search shrinks.
    bounded = settings.get_profile("ci") if settings._current_profile == "ci" else None
    no_shrink = settings(phases=[Phase.explicit, Phase.reuse, Phase.generate]) if bounded else settings()
    run_state_machine_as_test(lambda: Runs(s3_server, tmp_path_factory), settings=no_shrink)


@pytest.mark.parametrize("kind", ["error", "before", "lost"])
@pytest.mark.parametrize("operation", ["PutObject", "CopyObject", "DeleteObject", "CompleteMultipartUpload"])
def test_one_fault_at_each_place_leaves_a_consistent_month_and_converges(s3_server, tmp_path_factory, kind, operation):
    """The same checks over a fixed sequence: archive, a better crawl replaces it with a fault, then clean runs."""
    world = World(s3_server, str(tmp_path_factory.mktemp("world")))
    shadow = World(s3_server, str(tmp_path_factory.mktemp("shadow")))
    for target in (world, shadow):
        target.load("20200902_052458", ocds_files("small", 2), 0)
        target.run()
        target.load("20200920_101010", ocds_files("big", 8), 0)
    world.run(Crash(Point("s3", operation, 1), kind))
    shadow.run()
    for prefix, crawl_id in world.months().items():
        if crawl_id is not None:
            world.check_month(prefix, crawl_id)
    for plan, run_id in world.failed:
        world.archive(plan, run_id)
    world.run()
    shadow.run()
    assert world.months() == shadow.months() == {"scotland/2020/09/": "scotland/20200920_101010"}
