"""Every crash, wherever it lands in an archive, ends where the fault-free run ends (issue 21).

A systematic crash-point explorer, in the spirit of ALICE and CrashMonkey. For each scenario of one archive (into
an empty month; replacing a month, with an earlier month present; the same with the months archived as before 2.0, in
``data.tar.lz4``, so that the replacement changes the data object's name; a new month after an earlier one; with the
retention sweep on and a loser waiting for the winner), the archive task is first run fault-free while recording
every mutating call it makes, in order: its S3 calls (CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
PutObject, CopyObject, UploadPartCopy, DeleteObject, DeleteObjects, AbortMultipartUpload), its ledger writes, and
its local deletes and renames (of a run of unlinks, the first, the middle and the last). Then, for every point,
the scenario is rebuilt from scratch on the real SeaweedFS and the archive crashes there
(``tests/harness/crashes.py``):

- ``before``: killed just before the call (nothing of the try reaches S3, the ledger or the disk afterwards);
- ``lost``: the server applied it, the response was lost, botocore's retry re-sent it and its answer (412, 404,
  ``NoSuchUpload``, or success) is what the call returns;
- ``lost-killed``: the same, then the process dies;
- ``5xx``: the server applied it, the client gets a 500;
- ``after`` (ledger writes and local calls): it applied, then the process died.

Then recovery happens as in production: the failed archive task is retried (a new try of the same plan and run),
the run's sweep runs once its archive tasks succeeded, and the next two runs (find, inspect, decide, record,
archive, sweep) run fault-free. After every step no crawl is lost (on disk, or in its month's archive byte for
byte, or deleted while the archive it lost to is in the bucket); at the end the bucket's months (each
``metadata.json`` describing the data object it names, the month's only one), ``staging/``, the incomplete multipart
uploads, the crawls on disk and the ledger's statuses are what the fault-free run left. A deterministic sample of
pairs (a crash in the first try, then one in the retry, at a point the retry reaches) is explored too.

Slow (``make test-all``, not ``make test``). To stay within a few minutes, ``make test-all`` crashes at every
point killed ``before`` it and one other way (the ways taken in turn along the points), and explores 8 pairs per
scenario (a deterministic sample); every way at every point and 40 pairs per scenario (about four times as long):

    KINGFISHER_ARCHIVE_CRASH_POINTS=all .venv/bin/pytest -m "not e2e" -rP tests/test_crash_points.py

``-rP`` shows how many crash states each scenario explored (a failure's message says it too, and lists each failed
state: the crash, and how its end differs from the fault-free one).
"""

from __future__ import annotations

import os
import random
from contextlib import nullcontext
from dataclasses import dataclass

import pytest

from kingfisher_archive import policy
from scripts.demo_kit.kingfisher_host import ocds_files
from tests.harness.crashes import WHENS, Crash, Killed, Point, explorable
from tests.harness.world import SOURCE, World, month_of, writing_lz4

EXHAUSTIVE = os.environ.get("KINGFISHER_ARCHIVE_CRASH_POINTS") == "all"
#: Pairs of crashes explored per scenario (a deterministic sample).
PAIRS_PER_SCENARIO = 40 if EXHAUSTIVE else 8


@dataclass(frozen=True)
class Crawl:
    data_version: str
    seed: str
    files: int
    size: int = 2000
    errors: int = 0

    @property
    def id(self) -> str:
        return f"{SOURCE}/{self.data_version}"


# January's E is big and clean; February's A is small; B beats A (more than 1.5 times its bytes) but is less clean
# than E with no more files and no more bytes: compared with January instead of February, B is "not distinct".
E = Crawl("20200110_000000", "e", 8, size=4000)
A = Crawl("20200205_000000", "a", 2)
B = Crawl("20200220_000000", "b", 4, errors=1)
# A later crawl of February, worse than B (fewer bytes: "same_period"), distinct from January's E.
C = Crawl("20200227_000000", "c", 3)
# A loser and its winner of one month, decided in one run: L waits (pending) for W's archive, then may be swept.
L = Crawl("20200203_000000", "l", 2)
W = Crawl("20200225_000000", "w", 6)


@dataclass(frozen=True)
class Scenario:
    history: tuple[tuple[Crawl, ...], ...]  # loads, each batch followed by a fault-free run
    loads: tuple[Crawl, ...]  # then loaded, for the run under test
    target: Crawl  # the crawl whose archive task crashes
    retention_days: int | None = None
    lz4_history: bool = False  # the history archived as before 2.0: data.tar.lz4 months, which the target replaces


SCENARIOS = {
    "into an empty month": Scenario((), (E,), E),
    "replacing a month": Scenario(((E,), (A,)), (B,), B),
    "replacing an LZ4 month by a zstd archive": Scenario(((E,), (A,)), (B,), B, lz4_history=True),
    "a new month after an earlier one": Scenario(((E,),), (A,), A),
    "with the retention sweep on": Scenario(((E,),), (L, W), W, retention_days=1),
}


def load(world: World, crawl: Crawl) -> None:
    world.load(crawl.data_version, ocds_files(crawl.seed, crawl.files, crawl.size), crawl.errors)


def build(s3_server, tmp_path_factory, scenario: Scenario, history: World | None = None) -> World:
    """The scenario's world, ready for the run under test; a copy of ``history`` (its history run) if given."""
    if history is not None:
        return history.clone(str(tmp_path_factory.mktemp("crash")))
    world = World(s3_server, str(tmp_path_factory.mktemp("crash")), scenario.retention_days)
    for batch in scenario.history:
        for crawl in batch:
            load(world, crawl)
        with writing_lz4() if scenario.lz4_history else nullcontext():
            world.run()
        assert world.failed == [], "the scenario's history must run without failures"
    if scenario.lz4_history:
        assert {key.rsplit("/", 1)[1] for key in world.keys() if "/data.tar." in key} == {"data.tar.lz4"}
    for crawl in scenario.loads:
        load(world, crawl)
    return world


@dataclass
class Outcome:
    end_state: dict
    problems: list[str]  # what went wrong on the way (a lost crawl after a step, a fault-free task failing)
    tries: list  # the target's tries (tests.harness.crashes.Try)

    @property
    def struck(self) -> bool:
        return all(attempt.struck for attempt in self.tries if attempt.crash is not None)


def crash_and_recover(world: World, scenario: Scenario, *crashes: Crash | None) -> Outcome:
    """The run under test with ``crashes[0]`` in the target's archive task and ``crashes[1]`` (if any) in its
    retry; then the run's sweep (if its archive tasks succeeded) and two fault-free runs."""
    problems: list[str] = []

    def check(step: str) -> None:
        problems.extend(f"after {step}: {problem}" for problem in world.unsafe())

    run_id, plans = world.decide()
    [plan] = [p for p in plans if p["id"] == scenario.target.id]
    others_failed = any(world.archive(other, run_id).error for other in plans if other is not plan)
    tries = [world.archive(plan, run_id, crashes[0])]
    check(f"the crashed try of {run_id}")
    retry = crashes[1] if len(crashes) > 1 else None
    if tries[-1].error is not None:
        tries.append(world.archive(plan, run_id, retry))
        check(f"the retry of {run_id}")
        if tries[-1].error is not None and not tries[-1].struck:
            problems.append(f"the fault-free retry failed: {tries[-1].error!r}")
    world.failed = []  # the run's failed tries, retried or not: what follows is fault-free
    if tries[-1].error is None and not others_failed:  # the sweep waits for the archive tasks (none_failed)
        world.sweep(run_id)
        check(f"the sweep of {run_id}")
    for _ in range(2):
        world.run()
        check(f"run-{world.runs}")
    problems.extend(f"run {r}'s archive task of {p['id']} failed" for p, r in world.failed)
    return Outcome(world.end_state(), problems, tries)


def differences(got: dict, want: dict) -> list[str]:
    return [f"{key}: {got[key]} (fault-free: {want[key]})" for key in want if got[key] != want[key]]


def explore(s3_server, tmp_path_factory, name: str) -> None:
    scenario = SCENARIOS[name]
    history = build(s3_server, tmp_path_factory, scenario)  # each crash state starts from a copy of it
    baseline = crash_and_recover(build(s3_server, tmp_path_factory, scenario, history), scenario, None)
    assert baseline.problems == [], f"{name}: the fault-free run has problems: {baseline.problems}"
    expected = baseline.end_state
    points = explorable(baseline.tries[0].calls)
    singles = [Crash(point, when) for point in points for when in WHENS[point.kind]]
    if not EXHAUSTIVE:  # every point killed before it, and one other way each, in turn
        singles = [
            crash
            for n, point in enumerate(points)
            for crash in (
                Crash(point, "before"),
                Crash(point, WHENS[point.kind][1 + n % (len(WHENS[point.kind]) - 1)]),
            )
        ]

    explored, failed, missed = 0, [], []
    pairs = []

    def trial(*crashes: Crash) -> Outcome | None:
        nonlocal explored
        outcome = crash_and_recover(build(s3_server, tmp_path_factory, scenario, history), scenario, *crashes)
        label = " then ".join(str(c) for c in crashes)
        if not outcome.struck:
            missed.append(label)
            return None
        explored += 1
        found = outcome.problems + differences(outcome.end_state, expected)
        if found:
            failed.append(f"[{label}] " + "; ".join(found))
        return outcome

    for crash in singles:
        outcome = trial(crash)
        if outcome is not None and len(outcome.tries) > 1:
            retried = explorable(outcome.tries[1].calls)
            pairs.extend((crash, Crash(point, when)) for point in retried for when in WHENS[point.kind])
    pairs = random.Random(name).sample(pairs, min(PAIRS_PER_SCENARIO, len(pairs)))
    for first, second in pairs:
        trial(first, second)

    report = (
        f"{name}: {len(points)} crash points in the fault-free archive ({', '.join(map(str, points))}); explored "
        f"{explored} crash states ({len(singles)} single, {len(pairs)} pairs), {len(failed)} failed"
    )
    print(report)
    if missed:
        print(f"{name}: {len(missed)} crashes did not strike (the try never got there): {missed}")
    assert not failed, report + ":\n" + "\n".join(failed)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_crash_point_of_one_archive_ends_where_the_fault_free_run_ends(s3_server, tmp_path_factory, name):
    explore(s3_server, tmp_path_factory, name)


def test_the_scenarios_crawls_compare_as_their_comments_say():
    def candidate(crawl: Crawl) -> policy.Candidate:
        files = ocds_files(crawl.seed, crawl.files, crawl.size)
        year, month = int(crawl.data_version[:4]), int(crawl.data_version[4:6])
        size = sum(map(len, files.values()))
        return policy.Candidate(crawl.id, year, month, size, crawl.files, crawl.errors, checksum=crawl.seed)

    e, a, b, c, loser, winner = map(candidate, (E, A, B, C, L, W))
    assert policy.compare(a, e) == (True, "new_period")
    assert policy.compare(b, a) == (True, "same_period_more_bytes")
    assert policy.compare(b, e) == (False, "2020_1_not_distinct_maybe")  # B compared with January by mistake
    assert policy.compare(c, b) == (False, "same_period")
    assert policy.compare(c, e) == (True, "new_period")  # C compared with January by mistake
    assert policy.compare(loser, e) == (True, "new_period")
    assert policy.compare(winner, loser) == (True, "same_period_more_bytes")


@pytest.mark.slow
@pytest.mark.parametrize("when", ["error", "before", "lost-killed"])
def test_a_replacement_whose_copy_of_the_data_breaks_ends_with_the_crawl_that_won(s3_server, tmp_path_factory, when):
    """January holds E, February holds A, and a bigger B of February wins. Promotion takes A's metadata.json away,
    then the CopyObject of B's data from staging breaks: a connection error (not a ClientError, so nothing puts
    A's metadata back), or the process is killed just before the copy or just after it. February is left with a
    data.tar.zst and no metadata.json. What must not follow: the retry compares B with January instead
    (``2020_1_not_distinct_maybe``), the sweep deletes B, and a later, worse C of February replaces the data
    unchecked. February must end holding B (A may be superseded: that is what B winning means)."""
    world = World(s3_server, str(tmp_path_factory.mktemp("copy")), retention_days=1)
    for crawl in (E, A):
        load(world, crawl)
        world.run()
    load(world, B)
    run_id, [plan] = world.decide()
    first = world.archive(plan, run_id, Crash(Point("s3", "CopyObject", 1), when))
    assert first.struck and first.error is not None
    assert "metadata.json" not in " ".join(world.keys("scotland/2020/02/")), "A's metadata.json was taken away"
    world.failed = []
    retry = world.archive(plan, run_id)
    if retry.error is None:
        world.sweep(run_id)
    world.failed = []
    load(world, C)
    for _ in range(2):
        world.run()
        assert world.unsafe() == []

    rows = {r["data_version"]: (r["status"], r["reason"]) for r in world.ledger.all()}
    assert world.months() == {month_of(E.id): E.id, month_of(B.id): B.id}, f"the ledger says {rows}"
    assert world.check_month(month_of(B.id), B.id) == world.checksums[B.id]
    assert world.ledger.get(SOURCE, B.data_version)["status"] == "archived"
    assert not world.host.exists(B.id)
    assert world.host.exists(C.id) or world.ledger.get(SOURCE, C.data_version)["status"] == "swept"
    assert world.keys("staging/") == [] and world.uploads() == []


@pytest.mark.slow
@pytest.mark.parametrize("recovery", ["the retry", "the next run"])
def test_an_interrupted_delete_is_finished_without_reading_or_uploading_the_crawl_again(
    s3_server, tmp_path_factory, recovery
):
    """The worker is killed half-way through deleting a verified crawl (after 4 of its 8 unlinks), before the ledger
    hears of it. The next try (or run) must finish the delete from what the bucket holds: no GetObject of the data,
    no upload, the month unchanged, the crawl ``archived`` and gone from disk, never ``held``."""
    world = World(s3_server, str(tmp_path_factory.mktemp("delete")), retention_days=None)
    load(world, E)
    run_id, [plan] = world.decide()
    first = world.archive(plan, run_id, Crash(Point("local", "os.unlink", 4), "after"))
    assert first.struck and isinstance(first.error, Killed)
    directory = os.path.join(world.host.data_directory, *E.id.split("/"))
    # Half the crawl is still on disk: renamed aside (before the last walk) as <data_version>.deleting.
    assert os.path.isdir(directory + ".deleting") and not world.host.exists(E.id), "half the crawl is still on disk"
    month = world.objects(month_of(E.id))
    assert set(month) == {month_of(E.id) + name for name in ("data.tar.zst", "metadata.json", "scrapy.log")}
    world.failed, tries, calls = [], len(world.tries), len(world.calls)

    if recovery == "the retry":
        world.archive(plan, run_id)
    world.run()

    recovered = world.tries[tries:]
    assert [repr(t.error) for t in recovered if t.error is not None] == [], "a fault-free try failed"
    made = [str(point) for attempt in recovered for point in attempt.calls if point.kind == "s3"]
    uploads = [call for call in made if "Upload" in call or "PutObject" in call or "CopyObject" in call]
    assert uploads == [], f"the crawl was uploaded again: {made}"
    read = [*(call for attempt in recovered for call in attempt.reads), *world.calls[calls:]]
    got = [key for operation, key in read if operation == "GetObject" and key.endswith("data.tar.zst")]
    assert got == [], "the archive's data was read again"
    row = world.ledger.get(SOURCE, E.data_version)
    assert (row["status"], row["reason"]) not in (("held", "smaller_than_its_archive"),)
    assert row["status"] == "archived"
    assert not world.host.exists(E.id) and not os.path.exists(directory + ".deleting")
    assert world.objects(month_of(E.id)) == month
