"""Benchmark: moving a crawl (archive, verify, delete) inside a real Airflow task vs ``tar | lz4 | upload && rm -rf``.

    .venv/bin/python bench/in_airflow.py                      # 1 GiB in 28,000 files and 300,000 files of 200 B
    .venv/bin/python bench/in_airflow.py --rounds 5 --only small
    .venv/bin/python bench/in_airflow.py --only ocds          # the 1 GiB crawl of 100 KB files
    .venv/bin/python bench/in_airflow.py --memory             # peak RSS on 1,000,000 files (only that)

Ours is the DAG's *Archive crawl* task run by ``airflow dags test`` (a throwaway AIRFLOW_HOME on sqlite, a
Kingfisher Process database on PostgreSQL, SeaweedFS on loopback, all started here): its duration is the one
Airflow records for the task instance (``task_instance.duration``), so it includes what the task does around
archiving (its claim in the ledger, looking at the bucket, cleaning leftovers) but not Airflow's start-up or the
other tasks. Each round starts from a fresh AIRFLOW_HOME and ledger and an empty month, so the crawl is written in
place (the usual case), verified and deleted.

The pipeline is ``tar -cf - -C DATA SOURCE/VERSION | lz4 -1 -c | python bench/upload_stdin.py`` (boto3
``upload_fileobj`` from stdin, its defaults) to the same server, then ``rm -rf`` of the crawl, each timed from
outside (wall clock); its time is the two together.

Both sides start from the same state: the crawl freshly copied from ``bench/out`` (``cp -a``, untimed, so its
pages are in the page cache) and ``sync`` (no dirty pages left to write back). The order alternates every round.
Ratio: the median over rounds of (pipeline + rm -rf) / ours.

``--memory`` also archives and deletes the crawl of 1,000,000 files of 200 bytes with ``bench/archive_one.py`` (the
archive task's code path, deletion included, in a process of its own) and reports its peak RSS (``ru_maxrss``): the
task's own memory, without the few hundred MB that Airflow's task process holds whatever the task.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "plugins")]

from run import DATASETS, MiB, dataset, pipeline_command, run_measured  # noqa: E402

from scripts.demo_kit.airflow_dag import AirflowHome, archive_connections, archive_variables, migrate  # noqa: E402
from scripts.demo_kit.kingfisher_host import KingfisherHost  # noqa: E402
from scripts.demo_kit.servers import start_postgres, start_seaweedfs  # noqa: E402

VERSION = "20240101_000000"


def fresh_copy(source: Path, target: Path) -> None:
    """The crawl as both sides find it: just copied (in the page cache), nothing left to write back."""
    if target.exists():
        shutil.rmtree(target)
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    os.sync()


class Bench:
    def __init__(self, work: Path, postgres, s3) -> None:
        self.work, self.postgres, self.s3 = work, postgres, s3
        self.template = str(work / "airflow-template")
        migrate(self.template)

    def host(self, name: str, files: int) -> tuple[KingfisherHost, str]:
        database = f"kfa_bench_{secrets.token_hex(3)}"
        dsn = self.postgres.create_database(database, schema="v1")
        host = KingfisherHost(str(self.work / name / "kingfisher"), dsn=dsn)
        crawl = host.add_crawl(name, VERSION, files={}, log={"files": files})
        os.rmdir(crawl.directory)  # copied in from bench/out before each round
        return host, database

    def ours(self, name: str, host: KingfisherHost, database: str, source: Path, log: dict[str, bytes], n: int):
        crawl = host.crawls[f"{name}/{VERSION}"]
        bucket = f"bench-{name}-{n}"
        self.s3.create_bucket(bucket)
        home = AirflowHome.from_template(
            self.template,
            str(self.work / name / f"airflow-{n}"),
            connections=archive_connections(self.postgres, database, self.s3),
            variables=archive_variables(bucket, host),
        )
        for path, content in log.items():
            Path(path).write_bytes(content)
        fresh_copy(source, Path(crawl.directory))
        started = time.perf_counter()
        run = home.run(logical_date="2026-11-27", timeout=3600)
        wall = time.perf_counter() - started
        (ROOT / "bench" / "out" / f"in_airflow-{name}.log").write_text(run.output)  # the last round's, to look at
        if not run.succeeded or os.path.exists(crawl.directory):
            raise RuntimeError(f"airflow dags test did not archive and delete {name}:\n{run.output[-4000:]}")
        with sqlite3.connect(os.path.join(home.home, "airflow.db")) as db:
            rows = db.execute("SELECT duration, state FROM task_instance WHERE task_id = 'archive_crawl'").fetchall()
        if len(rows) != 1 or rows[0][1] != "success":
            raise RuntimeError(f"expected one successful archive_crawl task instance, found {rows}")
        shutil.rmtree(home.home)
        return {"seconds": rows[0][0], "wall": wall}

    def pipeline(self, name: str, host: KingfisherHost, source: Path, n: int) -> dict:
        directory = Path(host.crawls[f"{name}/{VERSION}"].directory)
        fresh_copy(source, directory)
        bucket = f"bench-pipeline-{name}-{n}"
        self.s3.create_bucket(bucket)
        command = pipeline_command(self.s3, host.data_directory, f"{name}/{VERSION}", bucket, f"{name}.tar.lz4")
        # fresh_copy has just flushed; the rm -rf follows the upload at once, as the archive task's delete does.
        upload_seconds = run_measured(command, flush_first=False)[0]
        rm_seconds = run_measured(["rm", "-rf", str(directory)], flush_first=False)[0]
        return {"seconds": upload_seconds + rm_seconds, "upload": upload_seconds, "rm": rm_seconds}


def memory(work: Path, s3) -> dict:
    """Peak RSS and time of the archive task's code path (deletion included) on the crawl of 1,000,000 files."""
    from kingfisher_archive import crawl as crawls

    data, source_id, version = dataset("million")
    host = KingfisherHost(str(work / "million"))
    target = Path(host.data_directory) / source_id / version
    target.parent.mkdir(parents=True)
    fresh_copy(data / source_id / version, target)
    log = Path(host.logs_directory) / source_id / "job.log"
    log.parent.mkdir(parents=True)
    log.write_text("log\n")
    summary = crawls.measure(str(target))  # inspection's figures: another task, not timed
    s3.create_bucket("bench-million")
    command = [
        sys.executable, str(ROOT / "bench" / "archive_one.py"), s3.endpoint_url, s3.access_key, s3.secret_key,
        "bench-million", host.data_directory, os.path.dirname(log.parent), source_id, version, str(log),
        str(summary.bytes), str(summary.files), summary.fingerprint, "delete",
    ]  # fmt: skip
    seconds, rss, _, _ = run_measured(command)
    if target.exists():
        raise RuntimeError("the crawl of 1,000,000 files was not deleted")
    return {"files": summary.files, "bytes": summary.bytes, "seconds": seconds, "rss": rss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=sorted(DATASETS), action="append")
    parser.add_argument("--memory", action="store_true", help="peak RSS on a crawl of 1,000,000 files")
    parser.add_argument("--postgres", default=os.environ.get("KINGFISHER_ARCHIVE_TEST_POSTGRES"))
    args = parser.parse_args()
    if args.postgres:
        os.environ["KINGFISHER_ARCHIVE_TEST_POSTGRES"] = args.postgres
    names = args.only or ([] if args.memory else ["small", "tiny"])
    sets = {name: dataset(name) for name in names}

    work = Path(tempfile.mkdtemp(prefix="kfa-bench-airflow-", dir=ROOT / "bench" / "out"))  # same file system
    postgres = start_postgres(work / "postgres")
    s3 = None
    rows = []
    measured = None
    try:
        s3 = start_seaweedfs(work / "seaweedfs")
        if args.memory:
            measured = memory(work, s3)
        bench = Bench(work, postgres, s3)
        for name, (data, source_id, version) in sets.items():
            source = data / source_id / version
            files = sum(len(f) for _, _, f in os.walk(source))
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(source) for f in fs)
            host, database = bench.host(name, files)
            crawl = host.crawls[f"{name}/{VERSION}"]
            log = {path: Path(path).read_bytes() for path in (crawl.log, crawl.log + ".stats") if os.path.exists(path)}
            runs = {"ours": [], "pipeline": []}
            for n in range(args.rounds):
                order = ["ours", "pipeline"] if n % 2 == 0 else ["pipeline", "ours"]
                for side in order:
                    if side == "ours":
                        runs["ours"].append(bench.ours(name, host, database, source, log, n))
                    else:
                        runs["pipeline"].append(bench.pipeline(name, host, source, n))
                ours, pipe = runs["ours"][-1], runs["pipeline"][-1]
                print(
                    f"{name} round {n + 1}: ours {ours['seconds']:.2f} s (task; dags test {ours['wall']:.1f} s); "
                    f"pipeline {pipe['upload']:.2f} s + rm -rf {pipe['rm']:.2f} s = {pipe['seconds']:.2f} s; "
                    f"ratio {pipe['seconds'] / ours['seconds']:.2f}; load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            ratios = [p["seconds"] / o["seconds"] for o, p in zip(runs["ours"], runs["pipeline"], strict=True)]
            rows.append((name, files, size, runs, statistics.median(ratios)))
            postgres.drop_database(database)
    finally:
        if s3 is not None:
            s3.stop()
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)

    def median(runs, key):
        return statistics.median(r[key] for r in runs)

    print()
    print("| crawl | files | size | ours: archive task | pipeline && rm -rf | of which rm -rf | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, files, size, runs, ratio in rows:
        print(
            f"| {DATASETS[name][0]} | {files:,} | {size / MiB:,.0f} MiB | {median(runs['ours'], 'seconds'):.2f} s "
            f"| {median(runs['pipeline'], 'seconds'):.2f} s | {median(runs['pipeline'], 'rm'):.2f} s | "
            f"**{ratio:.2f}** |"
        )
    print(f"{args.rounds} rounds; times are medians; ratio above 1.00: the task is faster than pipeline + rm -rf")
    if measured:
        print(
            f"\narchive task's code path (bench/archive_one.py, deletion included) on {measured['files']:,} files "
            f"({measured['bytes'] / MiB:.0f} MiB): peak RSS {measured['rss'] / MiB:.0f} MiB, "
            f"{measured['seconds']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
