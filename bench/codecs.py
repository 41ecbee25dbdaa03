"""Codec table: compression ratio and speed of LZ4 and zstd levels on the OCDS-like corpus (bench/corpus.py).

    .venv/bin/python bench/codecs.py                  # the 250 MB corpus, 3 rounds, medians
    .venv/bin/python bench/codecs.py --size 50 --rounds 1 --json bench/out/codecs.json

The crawl is tarred once, in memory, by the archive's own tar writer (``archive_format.write_tar``: the bytes an
archive holds), then each codec compresses that tar, fed 1 MiB at a time into a sink that only counts bytes:

- the package's LZ4 frame writer (``compression.LZ4Writer``) with one compressing thread, and with the two the
  archive step uses;
- the ``lz4`` and ``zstd -1`` command line tools with their defaults but the level (the tar piped from memory;
  their own CPU time, from ``wait4``);
- zstd levels 1, 2, 3, 6 and 9 through the ``zstandard`` package, one thread, content checksum on (as
  ``zstd`` writes by default);
- zstd with ``threads=2`` at levels 1 and 3 (zstd's own worker threads; its speed is wall clock);
- the package's own zstd writer, when it has one (``compression.ZstdWriter``), at levels 1 and 3, as the
  archive step runs it (its default threads: wall clock counts); ``--plugins DIR`` takes the package from
  another checkout's ``plugins/`` (one from before ``compression``: its writers are in ``archive_format``).

Speed is megabytes (10^6 bytes) of tar per CPU-second of the compressing process (user + system, all its threads),
so that other work on a shared machine changes it little; wall-clock MB/s is printed beside it. Each codec runs
``--rounds`` times, in an order that rotates between rounds; the table gives the medians. Then, once each, the
ratios on the corpus's indented and compact publishers apart (``--no-layouts`` to skip).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# --plugins DIR: the package from another checkout's plugins/ (its ZstdWriter, say); read before the imports.
PLUGINS = sys.argv[sys.argv.index("--plugins") + 1] if "--plugins" in sys.argv[:-1] else str(ROOT / "plugins")
if not (Path(PLUGINS) / "kingfisher_archive").is_dir():
    sys.exit(f"--plugins {PLUGINS}: no kingfisher_archive package there")
sys.path[:0] = [PLUGINS, str(Path(__file__).resolve().parent)]

import corpus  # noqa: E402

try:
    import zstandard
except ImportError:
    sys.exit("bench/codecs.py needs the zstandard package: .venv/bin/pip install -i file:///opt/pypi/simple zstandard")

from kingfisher_archive import archive_format  # noqa: E402

try:
    from kingfisher_archive import compression  # noqa: E402
except ImportError:  # --plugins: a checkout from before the codecs left archive_format, which held them
    from kingfisher_archive import archive_format as compression  # noqa: E402

MB = 1_000_000
CHUNK = 1 << 20


class Counter:
    """A sink that counts what is written to it."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data) -> int:
        n = len(data)
        self.bytes += n
        return n


def chunks(data: bytes):
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield view[start : start + CHUNK]


def lz4_writer(threads: int) -> Callable[[bytes], int]:
    def run(data: bytes) -> int:
        sink = Counter()
        writer = compression.LZ4Writer(sink, threads=threads)
        for chunk in chunks(data):
            writer.write(chunk)
        writer.close()
        return sink.bytes

    return run


def zstd(level: int, threads: int = 0) -> Callable[[bytes], int]:
    def run(data: bytes) -> int:
        compressor = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
        sink = Counter()
        with compressor.stream_writer(sink, closefd=False) as writer:
            for chunk in chunks(data):
                writer.write(chunk)
        return sink.bytes

    return run


def package_zstd(level: int) -> Callable[[bytes], int] | None:
    """The package's own zstd writer, if it has one; tried with a ``level`` keyword, then as it comes."""
    writer_class = getattr(compression, "ZstdWriter", None)
    if writer_class is None:
        return None

    def run(data: bytes) -> int:
        sink = Counter()
        try:
            writer = writer_class(sink, level=level)
        except TypeError:
            writer = writer_class(sink)
        for chunk in chunks(data):
            writer.write(chunk)
        writer.close()
        return sink.bytes

    return run


def command(argv: list[str]) -> Callable[[bytes], tuple[int, float]]:
    """A command line compressor fed the tar on stdin; returns (bytes out, its CPU seconds)."""

    def run(data: bytes) -> tuple[int, float]:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        # Feed stdin from a thread of ours while this one counts stdout: neither side blocks the other.
        def feed() -> None:
            for chunk in chunks(data):
                process.stdin.write(chunk)
            process.stdin.close()

        feeder = threading.Thread(target=feed)
        feeder.start()
        out = 0
        while block := process.stdout.read(CHUNK):
            out += len(block)
        feeder.join()
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise RuntimeError(f"{argv} exited {os.waitstatus_to_exitcode(status)}")
        return out, usage.ru_utime + usage.ru_stime

    return run


def codecs() -> list[tuple[str, Callable, bool]]:
    """(label, function, wall: whether the speed that counts is wall-clock rather than per CPU-second)."""
    table = [
        ("LZ4 frame, compression.LZ4Writer, 1 thread", lz4_writer(1), False),
        ("LZ4 frame, compression.LZ4Writer, 2 threads (as archived today)", lz4_writer(2), True),
        ("lz4 CLI, default (level 1)", command(["lz4", "-c"]), False),
        ("zstd CLI -1 (the reference pipeline)", command(["zstd", "-1", "-c", "-q"]), False),
    ]
    table += [(f"zstd level {level}", zstd(level), False) for level in (1, 2, 3, 6, 9)]
    table += [(f"zstd level {level}, threads=2", zstd(level, threads=2), True) for level in (1, 3)]
    for level in (1, 3):
        run = package_zstd(level)
        if run:
            table.append((f"compression.ZstdWriter, level {level}", run, True))
    return table


def measure(run: Callable, data: bytes) -> dict:
    cpu, start = time.process_time(), time.perf_counter()
    result = run(data)
    wall = time.perf_counter() - start
    out, cpu = (result[0], result[1]) if isinstance(result, tuple) else (result, time.process_time() - cpu)
    return {"out": out, "cpu": cpu, "wall": wall}


def tar_of(directory: Path, arcname: str, only: set[str] | None = None) -> bytes:
    """The archive's tar of ``directory``, or (``only``: relative paths) a tar of just those files."""
    buffer = io.BytesIO()
    if only is None:
        archive_format.write_tar(str(directory), arcname, buffer)
    else:
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for relpath in sorted(only):
                tar.add(directory / relpath, arcname=f"{arcname}/{relpath}")
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=250, help="the corpus's megabytes (bench/corpus.py); 250")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-layouts", action="store_true", help="skip the indented / compact ratios")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plugins", type=Path, help="import the package from this checkout's plugins/")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    data_dir, source, version = corpus.ensure(args.size * MB, args.seed)
    crawl = data_dir / source / version
    data = tar_of(crawl, f"{source}/{version}")
    print(f"corpus: {crawl}, tar of {len(data) / MB:.1f} MB; {args.rounds} rounds", flush=True)

    table = codecs()
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in table}
    for round_ in range(args.rounds):
        shift = round_ % len(table)
        for label, run, _ in table[shift:] + table[:shift]:
            result = measure(run, data)
            runs[label].append(result)
            print(
                f"  round {round_ + 1}: {label}: {len(data) / result['out']:.2f}x, "
                f"{len(data) / MB / result['cpu']:.0f} MB/CPU-s, {len(data) / MB / result['wall']:.0f} MB/s wall",
                flush=True,
            )

    rows = []
    for label, _, wall in table:
        results = runs[label]
        rows.append(
            {
                "codec": label,
                "ratio": len(data) / statistics.median(r["out"] for r in results),
                "mb_per_cpu_s": statistics.median(len(data) / MB / r["cpu"] for r in results),
                "mb_per_s_wall": statistics.median(len(data) / MB / r["wall"] for r in results),
                "cpu_s": statistics.median(r["cpu"] for r in results),
                "wall_counts": wall,
            }
        )

    layouts = []
    if not args.no_layouts:
        files = corpus.manifest()
        for name, indented in (("indented (indent=2)", True), ("compact", False)):
            subset = tar_of(crawl, f"{source}/{version}", {f["path"] for f in files if f["indented"] == indented})
            ratios = {}
            for label, run, _ in table:
                if "threads=2" in label or "2 threads" in label or "CLI" in label:
                    continue
                ratios[label] = len(subset) / measure(run, subset)["out"]
            layouts.append({"layout": name, "mb": len(subset) / MB, "ratios": ratios})

    print()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, zstandard {zstandard.__version__} (libzstd "
        f"{'.'.join(map(str, zstandard.ZSTD_VERSION))}), tar {len(data) / MB:.1f} MB, medians of {args.rounds}"
    )
    print("| codec | ratio | compress MB/s per CPU-second | MB/s wall | CPU s |")
    print("|---|---|---|---|---|")
    for row in rows:
        wall = f"**{row['mb_per_s_wall']:.0f}**" if row["wall_counts"] else f"{row['mb_per_s_wall']:.0f}"
        print(f"| {row['codec']} | {row['ratio']:.2f} | {row['mb_per_cpu_s']:.0f} | {wall} | {row['cpu_s']:.2f} |")
    if layouts:
        labels = list(layouts[0]["ratios"])
        print()
        print("| layout | MB | " + " | ".join(labels) + " |")
        print("|---|---|" + "---|" * len(labels))
        for layout in layouts:
            cells = " | ".join(f"{layout['ratios'][label]:.2f}" for label in labels)
            print(f"| {layout['layout']} | {layout['mb']:.1f} | {cells} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"tar_bytes": len(data), "rows": rows, "layouts": layouts}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
