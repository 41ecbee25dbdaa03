"""docs/architecture.md draws one crawl's path through the rooms; a real crawl takes that path, in that order.

The test archives a crawl into a month that already holds an earlier crawl's archive (so that every room of the
path is entered: the replacement too), from find to its deletion, records the order in which it first enters each
module of the package, and compares it with the order in which "One crawl's path" names them.
"""

from __future__ import annotations

import itertools
import pathlib
import re
import sys
from datetime import datetime

from kingfisher_archive import steps
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.process import Collection
from scripts.demo_kit.kingfisher_host import ocds_files
from tests.test_convergence import fresh_bucket

ARCHITECTURE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
PLUGINS = ARCHITECTURE.parent.parent / "plugins" / "kingfisher_archive"
PACKAGE = "kingfisher_archive."
#: Drawn on the path, and not driven here: Kingfisher Process's database (tests/test_process.py), and what the
#: adapter sends from the summary (tests/test_metrics.py, tests/test_dag.py).
NOT_DRIVEN = {"process", "metrics", "alerts"}


def modules() -> set[str]:
    """The package's modules as the doc names them: ``crawl``, ``steps.decision``, ``s3.upload`` (a package's
    ``__init__`` is not a module of its own: ``s3`` alone names none)."""
    return {p.stem for p in PLUGINS.glob("*.py")} | {
        f"{package}.{p.stem}" for package in ("steps", "s3") for p in (PLUGINS / package).glob("*.py")
    } - {"__init__", "__main__", "steps.__init__", "s3.__init__"}


def drawn_path() -> list[str]:
    """The package's modules in the order the numbered list of "One crawl's path" first names them: a dotted name
    names its longest prefix that is a module (``steps.decision.decide`` names ``steps.decision``,
    ``s3.proof.prove`` names ``s3.proof``; ``Ledger.claim`` names nothing). ``tasks``, which names each stage, is
    the adapter the test stands in for."""
    section = ARCHITECTURE.read_text().split("## One crawl's path", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("1. "))
    stages = list(itertools.takewhile(lambda line: re.match(r"\d+\. |   ", line), lines[first:]))
    known, order = modules(), []
    for name in re.findall(r"`([a-z_0-9.]+)", "\n".join(stages)):
        parts = name.split(".")
        module = next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in known), None)
        if module and module not in order and module != "tasks":
            order.append(module)
    return order


def entered(run) -> list[str]:
    """The package's modules in the order ``run()``'s steps first call into each (the test's own calls count only
    into a step, as the adapter's do)."""
    order = []

    def profile(frame, event, arg):
        if event != "call" or frame.f_back is None:
            return
        callee, caller = frame.f_globals.get("__name__", ""), frame.f_back.f_globals.get("__name__", "")
        if callee.startswith(PACKAGE + "steps") or (callee.startswith(PACKAGE) and caller.startswith(PACKAGE)):
            if (module := callee[len(PACKAGE) :]) not in order:
                order.append(module)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return order


def test_a_crawl_takes_the_path_architecture_md_draws(host, settings, s3_server):
    client = s3_server.client()
    ledger = Ledger(settings.ledger)
    host.add_crawl("scotland", "20200902_052458", ocds_files("small", 4))
    host.add_crawl("scotland", "20200920_101010", ocds_files("big", 12))
    loaded = {
        version: Collection(number, "scotland", datetime.strptime(version, "%Y%m%d_%H%M%S"))
        for number, version in enumerate(("20200902_052458", "20200920_101010"), 1)
    }

    def run_once(version):
        found = steps.find(settings, [loaded[version]], set(), False)
        inspected = [steps.inspect(settings, ref) for ref in found["crawls"]]
        decided = steps.decide(settings, fresh_bucket(client, settings), inspected, ledger, "run")
        steps.record_decisions(ledger, decided["decisions"], "run")
        results = [steps.archive_and_record(settings, client, plan, ledger, "run") for plan in decided["to_archive"]]
        assert [r["id"] for r in results if r["deleted"]] == [f"scotland/{version}"]
        swept = steps.sweep(
            settings, ledger, set(), datetime(2026, 12, 2), False, bucket=fresh_bucket(client, settings)
        )
        return steps.summarise(decided["decisions"], {r["id"]: r for r in results}, False, swept)

    run_once("20200902_052458")  # the month's first archive: the path below replaces it
    path = entered(lambda: run_once("20200920_101010"))

    drawn = [m for m in drawn_path() if m not in NOT_DRIVEN]
    assert [m for m in path if m in drawn] == drawn, f"entered: {path}"
