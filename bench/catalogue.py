"""How long the catalogue (``kingfisher-archive list``, the UI's catalogue page) takes to read a large bucket.

    .venv/bin/python bench/catalogue.py                      # 300 sources x 60 months on SeaweedFS (loopback)
    .venv/bin/python bench/catalogue.py --sources 30 --months 12

Writes ``metadata.json``, a small ``data.tar.lz4`` and ``scrapy.log`` for every month into a bucket of a SeaweedFS
started from its wheel, then times :func:`kingfisher_archive.catalogue.catalogue` over the whole bucket (what a
first page load costs; later loads within the cache's lifetime cost nothing), then again with every metadata.json
already known by its ETag (a load after the cache expired: listings only), and checks that it found every month.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPOSITORY), str(REPOSITORY / "plugins")]

from kingfisher_archive.catalogue import MetadataCache, catalogue  # noqa: E402
from scripts.demo_kit.servers import start_seaweedfs  # noqa: E402


def source_name(index: int) -> str:
    """Source ids as Process accepts them (letters and underscores): aa, ab, ..."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return f"source_{letters[index // 26 % 26]}{letters[index % 26]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=300)
    parser.add_argument("--months", type=int, default=60)
    parser.add_argument("--workers", type=int, default=8, help="sources read at once (catalogue.WORKERS)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kfa-bench-catalogue-") as home:
        s3 = start_seaweedfs(Path(home) / "seaweedfs")
        try:
            client = s3.client()
            bucket = "catalogue-bench"
            s3.create_bucket(bucket)
            months = [
                (source_name(i), 2020 + m // 12, m % 12 + 1) for i in range(args.sources) for m in range(args.months)
            ]

            def put(month):
                source_id, year, number = month
                prefix = f"{source_id}/{year:04d}/{number:02d}/"
                version = f"{year:04d}{number:02d}01_000000"
                metadata = {
                    "id": f"{source_id}/{version}",
                    "source_id": source_id,
                    "data_version": version,
                    "bytes": 1000,
                    "checksum": "0" * 32,
                    "files_count": 1,
                    "errors_count": 0,
                    "archived_at": f"{year:04d}-{number:02d}-02T00:00:00+00:00",
                }
                client.put_object(Bucket=bucket, Key=prefix + "metadata.json", Body=json.dumps(metadata).encode())
                client.put_object(Bucket=bucket, Key=prefix + "data.tar.lz4", Body=b"x" * 100)
                client.put_object(Bucket=bucket, Key=prefix + "scrapy.log", Body=b"log")

            started = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(put, months))
            print(f"Wrote {len(months)} months ({3 * len(months)} objects) in {time.monotonic() - started:.1f} s")

            cache = MetadataCache()
            started = time.monotonic()
            found = catalogue(client, bucket, workers=args.workers, cache=cache)
            seconds = time.monotonic() - started
            started = time.monotonic()
            again = catalogue(client, bucket, workers=args.workers, cache=cache)
            print(
                f"catalogue() again, every metadata.json known by its ETag (the page after its cache expires): "
                f"{time.monotonic() - started:.1f} s"
            )
            assert again["sources"] == found["sources"]
            counted = sum(len(source["months"]) for source in found["sources"])
            problems = sum(len(source["problems"]) for source in found["sources"])
            print(
                f"catalogue(): {len(found['sources'])} sources, {counted} months, {problems} problems in "
                f"{seconds:.1f} s ({args.workers} sources at a time)"
            )
            if counted != len(months) or problems:
                print("MISMATCH: the catalogue did not find every month whole", file=sys.stderr)
                return 1
        finally:
            s3.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
