"""`make demo` as a newcomer meets it: its closing lines lead to commands that work, and `demo-stop` stops it all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from scripts.demo_kit.airflow_dag import REPOSITORY

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DEMO = str(REPOSITORY / "scripts" / "demo.py")


def demo(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KINGFISHER_ARCHIVE", "AWS_"))}
    env["SHELL"] = "/bin/sh"
    return subprocess.run(
        [sys.executable, DEMO, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPOSITORY
    )


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # ended, not yet reaped by init
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def home():
    """Outside pytest's basetemp: each pytest session makes pytest-of-<user> private again (mode 0700), which locks
    the embedded PostgreSQL's system user (under root) out of a data directory below it."""
    directory = Path(tempfile.mkdtemp(prefix="kingfisher-archive-test-demo-"))
    yield directory / "demo-home"
    shutil.rmtree(directory)


def test_the_demo_leaves_a_bucket_to_explore_with_the_commands_it_prints_and_stops(home):
    postgres = os.environ.get("KINGFISHER_ARCHIVE_TEST_POSTGRES")
    try:
        run = demo("--home", str(home), *(["--postgres", postgres] if postgres else []))
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        out = run.stdout

        # The table names what each crawl was compared with, and that comparison is in the bucket.
        assert (
            f"{'uk/20201201_000000':<32} {'not archived':<13} the same data as the archive of 2020-11 "
            "(20201105_000000); uk/20201105_000000 (archived in s3://kingfisher-archive-demo/uk/2020/11/)"
        ) in out
        assert (
            f"{'scotland/20200902_052458':<32} {'not archived':<13} lost to 20200920_101010: same month, more data"
        ) in out
        assert "s3://kingfisher-archive-demo/uk/2020/11/data.tar.zst" in out

        # The demo's shell has the DAG's own defaults: no run timeout or deadline setting is needed for the
        # `airflow dags test` it prints (below) to exit 0.
        settings = json.loads((home / "demo.json").read_text())["environment"]
        timeouts = ("KINGFISHER_ARCHIVE_DEADLINE", "KINGFISHER_ARCHIVE_RUN_TIMEOUT")
        assert not [name for name in settings if name.startswith(timeouts)], settings

        # The commands the closing lines show, run as shown in `make demo-shell`.
        assert "    make demo-shell\n" in out and out.rstrip().endswith("    make demo-stop")
        block = out[out.index("and in it,") :].split("\n\n")[1]
        commands = [line.split("#")[0].strip() for line in block.splitlines()]
        assert commands[:3] == [
            "kingfisher-archive list uk",
            f"kingfisher-archive restore uk 2020 11 {home / 'restored'}",
            "kingfisher-archive audit --verify-data",
        ]
        assert commands[-1] == "exit"
        assert "airflow dags test kingfisher_archive 2026-11-28" in commands
        results = {command: demo("shell", "--home", str(home), "-c", command) for command in commands[:-1]}
        for command, result in results.items():
            assert result.returncode == 0, (command, result.stdout, result.stderr)
        listed = results[commands[0]].stdout.splitlines()
        assert listed[1].split()[:3] == ["2020-11", "uk/2020/11/", "20201105_000000"]
        assert results[commands[0]].stderr == (
            "kingfisher-archive list: using bucket 'kingfisher-archive-demo' from "
            "$AIRFLOW_VAR_KINGFISHER_ARCHIVE_BUCKET; endpoint http://127.0.0.1:"
            f"{results[commands[0]].stderr.split('http://127.0.0.1:')[1].split()[0]} and credentials from "
            "$AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3\n"
        )
        assert (home / "restored" / "uk" / "20201105_000000").is_dir()
        assert results[commands[2]].stdout.splitlines()[-1] == (
            "3 months in s3://kingfisher-archive-demo/: 0 problems (0 repaired, 0 unrepaired), 0 warnings, "
            "6 objects checked at rest, 3 archives verified"
        )
    finally:
        state = home / "demo.json"
        left = json.loads(state.read_text()) if state.exists() else None
        stopped = demo("stop", "--home", str(home))
    assert stopped.returncode == 0, stopped.stderr
    assert "Stopped the demo's SeaweedFS and PostgreSQL" in stopped.stdout
    assert gone(left["seaweedfs"]["pid"])
    if "pgdata" in left["postgres"]:
        assert not (Path(left["postgres"]["pgdata"]) / "postmaster.pid").exists(), stopped.stderr
    else:
        import psycopg2

        with psycopg2.connect(postgres) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (left["postgres"]["database"],))
            assert cursor.fetchone() == (0,)
        connection.close()
    assert not (home / "demo.json").exists()
    again = demo("stop", "--home", str(home))
    assert (again.returncode, again.stdout.startswith("No demo is running")) == (0, True)
    nothing = demo("shell", "--home", str(home), "-c", "true")
    assert (nothing.returncode, nothing.stderr) == (1, f"No demo is running from {home}: run `make demo` first.\n")
