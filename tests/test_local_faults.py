"""The crash-point explorer on the local side and the ledger (issue 30).

One scenario runs every step of a run: January's E is archived already; February's L and W are loaded, W beats L
(L waits, ``pending``, for W's archive), W is archived and deleted, and the retention sweep (one day) deletes L. That
run is first made fault-free, recording every file system call the package makes on a crawl's paths (its directory
and what is inside, its ``<data_version>.deleting``, its log), by step: find, inspect, decide (which mends first),
record, each archive task, the sweep (``tests/harness/crashes.py``, ``FileSystem``). Then, on a copy of the world
each time:

- **a call fails**: once, or for good (that call on that crawl's paths fails in every later step and run), with
  EPERM, EACCES, ENOSPC, EIO or ENOTEMPTY;
- **a writer re-creates the crawl's path** just after a call that left it free (Kingfisher Collect resuming it);
- **the ledger is reset** (the file and its ``-wal`` and ``-shm`` deleted) before any step, or after the archive task
  was killed at any of its local calls (so what it set aside is unknown to the ledger); or **corrupted** before a step;
- **two tries run with no claim**: the archive task runs up to one of its calls and pauses, a second try of the same
  plan with a ledger of its own (so it sees no claim) runs whole, then the first goes on.

Then two fault-free runs (a fault "for good" stays). After every step no crawl is lost (``World.unsafe``: on disk, in
its month's archive byte for byte, set aside whole, or deleted by the policy while the archive it lost to stands) and
what a writer re-created is still there; no task fails (a fault holds its crawl); at the end each crawl is where the
fault-free run left it, or held and named (status ``held`` with a ``Held`` reason, or ``deleting`` with
``facts.problem``), and a crawl of the same month as a held one may stay on disk, not settled (the sweep never
touches an open month); every month the held crawls do not touch is as the fault-free run left it, staging and
incomplete uploads alike. After a reset, nothing the bucket held is uploaded again.

Slow (``make test-all``, not ``make test``). ``make test-all`` explores a deterministic sample (every group of
calls: the first and the last of each step's calls of one name on one crawl's path, each failed one way, the ways taken
in turn); every call, every way:

    KINGFISHER_ARCHIVE_CRASH_POINTS=all .venv/bin/pytest -m "not e2e" -rP tests/test_local_faults.py

``-rP`` prints how many states each test explored.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass

import pytest

from kingfisher_archive import steps
from kingfisher_archive.ledger import Held, Ledger
from tests.harness.crashes import ERRNOS, Crash, FileSystem, FsFault, FsPoint, Killed, Try, explorable
from tests.harness.world import World, month_of
from tests.test_crash_points import SCENARIOS, Scenario, build

pytestmark = pytest.mark.slow

EXHAUSTIVE = os.environ.get("KINGFISHER_ARCHIVE_CRASH_POINTS") == "all"
SCENARIO: Scenario = SCENARIOS["with the retention sweep on"]
HELD = {str(reason) for reason in Held}


def logs_of(world: World) -> dict[str, str]:
    return {crawl.log: crawl.id for crawl in world.host.crawls.values() if crawl.log}


def reset_ledger(world: World) -> None:
    """The ledger is gone (deleted, or a new disk): the next task opens a new, empty one."""
    world.at_reset = (world.objects(), world.months())
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(world.settings.ledger + suffix):
            os.remove(world.settings.ledger + suffix)
    world.ledger = Ledger(world.settings.ledger)


def uploaded_again(world: World) -> list[str]:
    """The objects of a month that held the same crawl's archive when the ledger was reset and holds it still,
    written again since (a new ETag or time): what the bucket held, uploaded again."""
    if not hasattr(world, "at_reset"):
        return []
    objects, months = world.at_reset
    now, months_now = world.objects(), world.months()
    return [
        f"{key} was written again after the ledger was reset"
        for key, identity in objects.items()
        if not key.startswith("staging/")
        and (month := key.rsplit("/", 1)[0] + "/") in months
        and months[month] is not None
        and months_now.get(month) == months[month]
        and now.get(key) != identity
    ]


def corrupt_ledger(world: World) -> None:
    """The ledger's first page is overwritten with garbage."""
    with open(world.settings.ledger, "r+b") as f:
        f.write(b"this is not a SQLite file" * 40)
    with contextlib.suppress(Exception):  # a ledger that refuses to open: the tasks fail until a person looks
        world.ledger = Ledger(world.settings.ledger)


@dataclass
class Outcome:
    end_state: dict
    problems: list[str]
    struck: bool
    rows: dict  # crawl id -> its ledger row at the end
    held: set  # the crawls held (and named) after some step
    recreated: set  # the crawls whose path a writer re-created


class Driver:
    """The run under test and its recovery, on one copy of the world, with one fault."""

    def __init__(self, world: World, fs: FileSystem) -> None:
        self.world, self.fs = world, fs
        self.problems: list[str] = []
        self.held: set[str] = set()  # every crawl held (and named) after some step
        self.tolerate_failures = False  # a kill, a corrupt ledger: a task may fail (and be cleared)

    def check(self, step: str) -> None:
        world = self.world
        world.recreated = set(self.fs.recreated)
        self.problems.extend(f"after {step}: {problem}" for problem in world.unsafe())
        try:
            rows = world.ledger.all()
        except sqlite3.DatabaseError:
            rows = []  # a corrupted ledger: what the tasks make of it is what is checked
        self.held.update(f"{r['source_id']}/{r['data_version']}" for r in rows if is_held(r))
        for crawl, (path, content) in self.fs.recreated.items():
            try:
                with open(path, "rb") as f:
                    same = f.read() == content
            except OSError:
                same = False
            if not same:
                self.problems.append(f"after {step}: what a writer re-created at {crawl}'s path was deleted")

    def task(self, what: str, function, *args):
        try:
            return function(*args)
        except Exception as e:  # noqa: BLE001 - a failed task is a finding, unless a kill or a corrupt ledger
            if not self.tolerate_failures:
                self.problems.append(f"{what} failed: {e!r}")
            return None
        finally:
            self.check(what)

    def run(self, crash: Crash | None = None, target: str | None = None, after_crash=None, pause=None) -> None:
        world = self.world
        with self.fs.watching():
            world.fs = self.fs
            decided = self.task("the decide task", world.decide)
            run_id, plans = decided or (None, [])
            failed = False
            for plan in plans:
                mine = crash if plan["id"] == target else None
                if pause is not None and plan["id"] == target:
                    attempt = pause(plan, run_id)
                else:
                    attempt = world.archive(plan, run_id, mine)
                self.check(f"the archive task of {plan['id']}")
                if attempt.error is not None and mine is not None and attempt.struck:
                    if after_crash is not None:
                        after_crash(world)
                    attempt = world.archive(plan, run_id)  # the task's retry
                    self.check(f"the retry of {plan['id']}")
                if attempt.error is not None:
                    failed = True
                    if not self.tolerate_failures:
                        self.problems.append(f"the archive task of {plan['id']} failed: {attempt.error!r}")
            world.failed = []
            if decided and not failed:
                self.task("the sweep", world.sweep, run_id)
            self.fs.prefix = "then "
            for n in range(2):
                self.task(f"run {n + 1} after", world.run)
                if world.failed and not self.tolerate_failures:
                    self.problems.extend(f"{p['id']}'s archive task failed in {r}" for p, r in world.failed)
                world.failed = []
            world.fs = None
        world.between_steps = None

    def outcome(self) -> Outcome:
        rows = {f"{r['source_id']}/{r['data_version']}": r for r in self.world.ledger.all()}
        return Outcome(
            self.world.end_state(), self.problems, bool(self.fs.struck), rows, self.held, set(self.fs.recreated)
        )


def is_held(row: dict | None) -> bool:
    if not row:
        return False
    problem = (row.get("facts") or {}).get("problem") or {}
    return (row["status"] == "held" and row["reason"] in HELD) or problem.get("reason") in HELD


def judge(got: Outcome, want: Outcome, may_hold: set[str] | None, lost_rows_ok: bool = False) -> list[str]:
    """How ``got`` ends other than the fault-free ``want``, beyond what a held crawl explains.

    :param may_hold: the crawls a fault may hold (None: any).
    :param lost_rows_ok: a reset ledger: a crawl not on disk may have no row (its record went with the ledger).
    """
    found = list(got.problems)
    g, w = got.end_state, want.end_state
    for key in ("staging", "incomplete uploads"):
        if g[key] != w[key]:
            found.append(f"{key}: {g[key]} (fault-free: {w[key]})")
    if not all(value is True for value in g["metadata describes its data"].values()):
        found.append(f"a month is inconsistent: {g['metadata describes its data']}")
    held = set()
    for crawl in sorted(set(w["ledger"]) | set(g["ledger"])):
        on_disk, wanted_on_disk = crawl in g["on disk"], crawl in w["on disk"]
        status, wanted = g["ledger"].get(crawl), w["ledger"].get(crawl)
        if (status, on_disk) == (wanted, wanted_on_disk):
            continue
        if crawl in got.recreated and status == wanted and on_disk:
            continue  # what a writer put at its path is kept (never found again: a swept crawl is settled)
        if (may_hold is None or crawl in may_hold) and is_held(got.rows.get(crawl)):
            held.add(crawl)
        elif lost_rows_ok and status is None and not on_disk and not wanted_on_disk:
            continue
    # A crawl held for a run (or for good) changes its month's choice meanwhile: the other crawls of that month may
    # end otherwise (archived, then replaced; kept on disk while the month is open), never lost (checked after
    # every step).
    held_months = {month_of(crawl) for crawl in held | {c for c in got.held if may_hold is None or c in may_hold}}
    for crawl in sorted(set(w["ledger"]) | set(g["ledger"])):
        on_disk, wanted_on_disk = crawl in g["on disk"], crawl in w["on disk"]
        status, wanted = g["ledger"].get(crawl), w["ledger"].get(crawl)
        if crawl in held or (status, on_disk) == (wanted, wanted_on_disk):
            continue
        if crawl in got.recreated and status == wanted and on_disk:
            continue
        if lost_rows_ok and status is None and not on_disk and not wanted_on_disk:
            continue
        if month_of(crawl) in held_months and crawl not in got.held:
            continue
        found.append(
            f"{crawl}: {status}, {'on disk' if on_disk else 'not on disk'} (fault-free: {wanted}, "
            f"{'on disk' if wanted_on_disk else 'not on disk'})"
        )
    for month, crawl in w["months"].items():
        if g["months"].get(month) != crawl and month not in held_months:
            found.append(f"{month} holds {g['months'].get(month)} (fault-free: {crawl})")
    return found


class Explorer:
    """The scenario's history, built once; each state starts from a copy of it."""

    def __init__(self, s3_server, tmp_path_factory) -> None:
        self.s3_server, self.tmp = s3_server, tmp_path_factory
        self.history = build(s3_server, tmp_path_factory, SCENARIO)
        self.explored = Counter()
        self.missed: list[str] = []
        self.failed: list[str] = []
        self.endings = Counter()  # how the explored states ended: "as fault-free", or held
        baseline = self.state()
        baseline.run()
        self.calls = list(baseline.fs.calls)
        self.baseline = baseline.outcome()
        assert self.baseline.problems == [], self.baseline.problems
        self.steps = list(dict.fromkeys(p.step for p in self.calls if not p.step.startswith("then ")))

    def state(self, fault: FsFault | None = None) -> Driver:
        world = build(self.s3_server, self.tmp, SCENARIO, self.history)
        return Driver(world, FileSystem(world.host.data_directory, world.host.logs_directory, logs_of(world), fault))

    def explore(self, kind: str, label: str, driver: Driver, may_hold, lost_rows_ok=False, **run) -> None:
        driver.run(**run)
        got = driver.outcome()
        if not got.struck:
            self.missed.append(label)
            return
        self.explored[kind] += 1
        found = judge(got, self.baseline, may_hold, lost_rows_ok)
        if found:
            self.failed.append(f"[{label}] " + "; ".join(found))
        else:
            self.endings["as fault-free" if got.end_state == self.baseline.end_state else "held"] += 1
        shutil.rmtree(driver.world.host.root, ignore_errors=True)

    def report(self, name: str) -> None:
        total = sum(self.explored.values())
        text = (
            f"{name}: {len(self.calls)} file system calls in the fault-free run "
            f"({len([c for c in self.calls if not c.step.startswith('then ')])} in the run under test); explored "
            f"{total} states ({dict(self.explored)}), ended {dict(self.endings)}, {len(self.failed)} failed"
        )
        print(text)
        if self.missed:
            print(f"{name}: {len(self.missed)} did not strike: {self.missed[:20]}")
        assert not self.failed, text + ":\n" + "\n".join(self.failed)


def groups(calls: list[FsPoint]) -> list[FsPoint]:
    """The calls worth failing: every one (exhaustive), else the first and the last of each step's calls of one name
    on one crawl's path."""
    under_test = [p for p in calls if not p.step.startswith("then ")]
    if EXHAUSTIVE:
        return under_test
    by_key: dict = {}
    for point in under_test:
        by_key.setdefault((point.step, point.name, point.crawl, point.role), []).append(point)
    return [p for run in by_key.values() for p in dict.fromkeys([run[0], run[-1]])]


@pytest.fixture(scope="module")
def explorers(s3_server, tmp_path_factory):
    return Explorer(s3_server, tmp_path_factory)


@pytest.fixture
def explorer(explorers):
    """The module's explorer (its history and fault-free run made once), its counts fresh for each test."""
    explorers.explored, explorers.endings, explorers.missed, explorers.failed = Counter(), Counter(), [], []
    return explorers


def test_every_file_system_call_failing_once_or_for_good_holds_only_its_crawl(explorer):
    """Each call of the run under test fails (once, or for good: every later call of that name on that crawl's
    paths of that kind) with EPERM, EACCES, ENOSPC, EIO or ENOTEMPTY."""
    faults = []
    for n, point in enumerate(groups(explorer.calls)):
        ways = [(code, good) for code in ERRNOS for good in (False, True)]
        if point.crawl is None or point.role == "log":
            ways = [(code, False) for code in ERRNOS]  # shared: once (for good it stops every crawl of the source)
        faults += [FsFault(point, code, good) for code, good in (ways if EXHAUSTIVE else [ways[n % len(ways)]])]
    for fault in faults:
        may_hold = {fault.point.crawl} if fault.point.crawl and fault.point.role != "log" else None
        explorer.explore("fails", str(fault), explorer.state(fault), may_hold)
    explorer.report("a call fails")


def test_a_writer_recreating_the_crawls_path_between_any_two_calls_keeps_what_it_wrote(explorer):
    """Just after a call on a crawl's paths, a writer puts a new file at the crawl's original path, if nothing
    stands there then: what it wrote is never deleted, and the crawl set aside is deleted only once archived."""
    points = [p for p in groups(explorer.calls) if p.crawl is not None and p.role in ("crawl", "aside")]
    for point in points:
        fault = FsFault(point, recreate=True)
        explorer.explore("recreated", str(fault), explorer.state(fault), {point.crawl})
    explorer.report("the path re-created")


def _tries_of_w(explorer) -> list:
    driver = explorer.state()
    tries = []
    driver.run()
    tries = [t for t in driver.world.tries if t.calls and any("Ledger.mark_deleting" == p.name for p in t.calls)]
    shutil.rmtree(driver.world.host.root, ignore_errors=True)
    return tries[0].calls


def test_a_ledger_reset_or_corrupted_between_any_two_steps_loses_nothing(explorer):
    """The ledger is deleted (with its -wal and -shm) before each step of the run under test, or after the archive
    task was killed at each of its local calls (what it set aside is then unknown to the ledger); or corrupted before
    each step (then only: nothing lost, nothing deleted unarchived)."""
    target = SCENARIO.target.id
    for n, step in enumerate([*explorer.steps, "then find"]):
        for what, action in (("reset", reset_ledger), ("corrupt", corrupt_ledger)):
            if what == "corrupt" and not EXHAUSTIVE and n % 2:
                continue
            driver = explorer.state()
            seen = Counter()

            def between(name, step=step, action=action, seen=seen, world=driver.world):
                seen[name] += 1
                if name == step and seen[name] == 1 and not seen["done"]:
                    seen["done"] += 1
                    action(world)

            driver.world.between_steps = lambda name, f=between, d=driver: f(d.fs.prefix + name)
            driver.tolerate_failures = what == "corrupt"
            driver.fs.struck.append("reset")
            label = f"ledger {what} before {step}"
            if what == "reset":
                explorer.explore("ledger reset", label, driver, None, lost_rows_ok=True)
                if again := uploaded_again(driver.world):
                    explorer.failed.append(f"[{label}] " + "; ".join(again))
            else:
                driver.run()
                explorer.explored["ledger corrupt"] += 1
                unsafe = [p for p in driver.problems if "lost" in p or "re-created" in p or "describe" in p]
                if unsafe:
                    explorer.failed.append(f"[{label}] " + "; ".join(unsafe))
    local = [p for p in explorable(_tries_of_w(explorer)) if p.kind == "local"]
    for point in local:
        for when in ("before", "after") if EXHAUSTIVE else ("after",):
            driver = explorer.state()
            crash = Crash(point, when)
            driver.tolerate_failures = True  # the killed try is the task's first; its retry must not fail
            driver.run(crash=crash, target=target, after_crash=reset_ledger)
            got = driver.outcome()
            explorer.explored["killed, then ledger reset"] += 1
            found = judge(got, explorer.baseline, None, lost_rows_ok=True) + uploaded_again(driver.world)
            if found:
                explorer.failed.append(f"[{crash}, then the ledger reset] " + "; ".join(found))
    explorer.report("the ledger reset or corrupted")


def test_two_tries_with_no_claim_interleaved_at_any_call_end_as_one(explorer):
    """The archive task of W runs up to one of its calls and waits there; a second try of the same plan, with a
    ledger of its own (a copy: it sees no claim), runs whole; then the first goes on. The world's ledger is the
    first try's."""
    target = SCENARIO.target.id
    points = explorable(_tries_of_w(explorer))
    if not EXHAUSTIVE:
        points = random.Random("no claim").sample(points, min(8, len(points)))
    for point in points:
        driver = explorer.state()
        world = driver.world
        paused = []

        def interleaved(plan, run_id, point=point, world=world, paused=paused, driver=driver):
            first = Try(world, None)
            first.error = None
            here, go_on = threading.Event(), threading.Event()
            main = []

            def on_point(p):
                if (p.name, p.nth) == (point.name, point.nth) and threading.current_thread() is main[0]:
                    paused.append(str(p))
                    here.set()
                    go_on.wait(60)

            first.on_point = on_point

            def body():
                try:
                    first.run(steps.archive_and_record, world.settings, first.client, plan, first.ledger, run_id)
                except (Exception, Killed) as e:  # noqa: BLE001
                    first.error = e
                finally:
                    here.set()

            thread = threading.Thread(target=body)
            main.append(thread)
            thread.start()
            here.wait(120)
            if paused:
                copy = world.settings.ledger + ".other"
                other = World.__new__(World)
                other.__dict__.update(world.__dict__)
                shutil.copy(world.settings.ledger, copy)
                other.ledger = Ledger(copy)
                second = Try(other, None)
                try:
                    second.run(steps.archive_and_record, world.settings, second.client, plan, second.ledger, run_id)
                except (Exception, Killed) as e:  # noqa: BLE001
                    driver.problems.append(f"the second try failed: {e!r}")
                driver.check("the second try, with no claim")
            go_on.set()
            thread.join(120)
            return first

        driver.fs.struck.append("interleaved")
        driver.tolerate_failures = True  # a try that meets the other's writes may fail (conditional writes refuse)
        driver.run(target=target, pause=interleaved)
        if not paused:
            explorer.missed.append(str(point))
            continue
        got = driver.outcome()
        explorer.explored["no claim"] += 1
        found = judge(got, explorer.baseline, {target})
        if found:
            explorer.failed.append(f"[no claim, the first try paused at {point}] " + "; ".join(found))
    explorer.report("two tries with no claim")


def test_the_local_fault_kinds_strike_where_they_are_aimed(explorer):
    """The harness itself: a fault aimed at a recorded call strikes there, and a writer's re-creation lands."""
    rename = next(p for p in explorer.calls if p.name == "os.rename" and p.crawl == SCENARIO.target.id)
    driver = explorer.state(FsFault(rename, errno.EPERM))
    driver.run()
    assert driver.fs.struck == [str(rename)]
    assert driver.problems == []
