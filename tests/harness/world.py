"""A Kingfisher host, a bucket on the session's real SeaweedFS and a ledger, driven by the package's own steps.

Shared by the stateful model (``tests/test_model.py``) and the crash-point explorer (``tests/test_crash_points.py``):
a run is find, inspect, decide, record, an archive task per plan (each a :class:`~tests.harness.crashes.Try`,
which may crash), then the retention sweep.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from datetime import datetime

import lz4.frame
import xxhash
from botocore.config import Config
from botocore.exceptions import ClientError

from kingfisher_archive import crawl as crawls
from kingfisher_archive import policy, steps
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.process import Collection
from kingfisher_archive.s3 import client_config
from kingfisher_archive.settings import Settings
from scripts.demo_kit.kingfisher_host import KingfisherHost
from tests.harness.crashes import Crash, Killed, Try

SOURCE = "scotland"
#: What the sweep takes as now: every crawl of 2020 is older than its retention.
NOW = datetime(2026, 11, 28)


def month_of(crawl_id: str) -> str:
    source_id, data_version = crawl_id.split("/")
    return f"{source_id}/{data_version[:4]}/{data_version[4:6]}/"


class World:
    """A Kingfisher host, a bucket and a ledger: the system under test, or its fault-free shadow."""

    def __init__(self, s3_server, root: str, retention_days: int | None = 1) -> None:
        self.s3_server = s3_server
        self.host = KingfisherHost(root)
        self.bucket = f"model-{secrets.token_hex(6)}"
        s3_server.create_bucket(self.bucket)
        self.client = self.new_client()
        self.settings = Settings(
            self.bucket,
            self.host.data_directory,
            self.host.logs_directory,
            f"{root}/ledger.sqlite3",
            "STANDARD",
            retention_days,
        )
        self.ledger = Ledger(self.settings.ledger)
        self.loaded: list[Collection] = []
        self.checksums: dict[str, str] = {}  # every crawl loaded, by id: the checksum of its files
        self.failed: list[tuple[dict, str]] = []
        self.runs = 0

    def new_client(self):
        return self.s3_server.client(config=client_config(Config(s3={"addressing_style": "path"})))

    def load(self, data_version: str, files: dict[str, bytes], errors: int) -> str:
        crawl = self.host.add_crawl(SOURCE, data_version, files, log={"errors": errors})
        self.loaded.append(Collection(len(self.loaded) + 1, SOURCE, crawls.parse_data_version(crawl.data_version)))
        self.checksums[crawl.id] = crawls.checksum(crawl.directory)
        return crawl.id

    def decide(self, dry: bool = False) -> tuple[str, list[dict]]:
        self.runs += 1
        run_id = f"run-{self.runs}"
        settled = set() if dry else self.ledger.settled()
        work = steps.find(self.settings, self.loaded, settled, False)["crawls"]
        inspected = [steps.inspect(self.settings, crawl) for crawl in work]
        decided = steps.decide(self.settings, Bucket(self.client, self.bucket), inspected)
        if dry:
            return run_id, []
        steps.record_decisions(self.ledger, decided["decisions"], run_id)
        return run_id, decided["to_archive"]

    def archive(self, plan: dict, run_id: str, crash: Crash | None = None) -> Try:
        """One try of the plan's archive task; a failed one is kept in :attr:`failed` (``attempt.error``)."""
        attempt = Try(self, crash)
        attempt.error = None
        try:
            attempt.run(steps.archive_and_record, self.settings, attempt.client, plan, attempt.ledger, run_id)
        except (Exception, Killed) as e:  # noqa: BLE001 - a failed task: the run goes on, an operator may clear it
            attempt.error = e
            self.failed.append((plan, run_id))
        return attempt

    def sweep(self, run_id: str) -> None:
        loaded = {(c.source_id, crawls.format_data_version(c.data_version)) for c in self.loaded}
        steps.sweep(self.settings, self.ledger, loaded, NOW, False, run_id, bucket=Bucket(self.client, self.bucket))

    def run(self, crash: Crash | None = None, dry: bool = False, victim: int = 0) -> None:
        run_id, plans = self.decide(dry)
        failed = len(self.failed)
        for i, plan in enumerate(plans):
            self.archive(plan, run_id, crash if i == victim % max(len(plans), 1) else None)
        if not dry and len(self.failed) == failed:  # the sweep waits for every archive task (none_failed)
            self.sweep(run_id)

    # -- what an operator sees

    def months(self) -> dict[str, str | None]:
        """Each month prefix of the bucket, and the crawl its metadata.json names (None: no metadata)."""
        found: dict[str, str | None] = {}
        for key in self.keys():
            if key.startswith("staging/"):
                continue
            prefix, name = key.rsplit("/", 1)
            found.setdefault(prefix + "/", None)
            if name == "metadata.json":
                found[prefix + "/"] = json.loads(self._read(key))["id"]
        return found

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def uploads(self) -> list[str]:
        """The keys of the bucket's incomplete multipart uploads."""
        return sorted(u["Key"] for u in self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []))

    def _read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def data(self, prefix: str) -> tuple[str, str] | None:
        """The crawl a month's data.tar.lz4 holds (its tar's first member) and the checksum of its files."""
        try:
            data = self._read(prefix + "data.tar.lz4")
        except ClientError:
            return None
        hasher = xxhash.xxh3_128()
        with tarfile.open(fileobj=io.BytesIO(lz4.frame.decompress(data))) as tar:
            members = tar.getmembers()
            for member in members:
                if member.isfile():
                    hasher.update(tar.extractfile(member).read())
        return members[0].name, hasher.hexdigest()

    def data_names(self, prefix: str) -> str | None:
        """The crawl a month's data.tar.lz4 holds, read from the tar itself (None: no data)."""
        found = self.data(prefix)
        return found[0] if found else None

    def check_month(self, prefix: str, crawl_id: str) -> str:
        """Its metadata.json describes its data.tar.lz4: same crawl, size and checksum. Returns the checksum."""
        metadata = json.loads(self._read(prefix + "metadata.json"))
        try:
            size = self.client.head_object(Bucket=self.bucket, Key=prefix + "data.tar.lz4")["ContentLength"]
        except ClientError as e:
            raise AssertionError(f"{prefix}metadata.json names {crawl_id} but there is no data.tar.lz4") from e
        assert size == metadata["compressed_bytes"], f"{prefix}: data.tar.lz4 is not the size its metadata says"
        name, checksum = self.data(prefix)
        assert name == crawl_id, f"{prefix}: the tar holds {name}, not {crawl_id}"
        assert checksum == metadata["checksum"], f"{prefix}: the data is not what metadata.json says"
        return metadata["checksum"]

    def end_state(self) -> dict:
        """What an operator compares: the months, their consistency, leftovers, the crawls on disk, the ledger."""
        months = self.months()
        consistent = {}
        for prefix, crawl_id in months.items():
            try:
                consistent[prefix] = crawl_id is not None and bool(self.check_month(prefix, crawl_id))
            except AssertionError as e:
                consistent[prefix] = str(e)
        return {
            "months": months,
            "metadata describes its data": consistent,
            "staging": self.keys("staging/"),
            "incomplete uploads": self.uploads(),
            "on disk": sorted(crawl_id for crawl_id in self.checksums if self.host.exists(crawl_id)),
            "ledger": {f"{r['source_id']}/{r['data_version']}": r["status"] for r in self.ledger.all()},
        }

    def unsafe(self) -> list[str]:
        """The crawls loaded that are lost: not on disk, not in their month's archive, and not deleted while the
        archive they lost to is in the bucket. (A promotion cut short may leave a month's data.tar.lz4 without its
        metadata.json: that data is a whole archive, restorable by hand, and counts for the crawl it holds.)"""
        months = self.months()
        problems = []
        for crawl_id, checksum in self.checksums.items():
            if self.host.exists(crawl_id):
                continue
            prefix = month_of(crawl_id)
            held = self.data(prefix) if prefix in months else None
            if held == (crawl_id, checksum):
                continue  # in its month's data.tar.lz4, byte for byte (with or without its metadata.json)
            if held is not None and months.get(prefix) not in (None, crawl_id):
                continue  # its month holds a whole archive of another crawl, which replaced it (or it lost to)
            row = self.ledger.get(*crawl_id.split("/")) or {}
            facts = row.get("facts") or {}
            if row.get("status") == "swept" and row.get("reason") in policy.REJECT_REASONS:
                continue  # rejected: the policy never wanted it
            winner = facts.get("pending_on") or facts.get("superseded_by") or facts.get("compared_with")
            if row.get("status") in ("swept", "not_archived") and winner and months.get(month_of(winner)) == winner:
                continue  # lost to an archive that is in the bucket
            problems.append(
                f"{crawl_id} is lost: gone from disk, its month {prefix} holds {self._describe(prefix, months)}, "
                f"the ledger says {row.get('status')} ({row.get('reason')}, lost to {winner})"
            )
        return problems

    def _describe(self, prefix: str, months: dict) -> str:
        if prefix not in months:
            return "nothing"
        held = self.data(prefix)
        return f"metadata naming {months[prefix]} and data of {held[0] if held else None}"
