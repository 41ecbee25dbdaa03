"""A small Kingfisher host for tests and the demo: crawl directories, Scrapyd logs, and collection rows.

It writes what Kingfisher Collect and Scrapyd write (SPEC section 1) and inserts the rows Kingfisher Process
would (SPEC section 3), so the DAG meets the same shapes it meets in production.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg2

from kingfisher_archive import crawl as crawls
from scripts.demo_kit.kingfisher_process import ProcessV2
from scripts.demo_kit.scrapy_logs import write_log

FORMAT = "%Y%m%d_%H%M%S"
#: When the harness's Kingfisher Process loads and closes collections, unless told otherwise.
PROCESS_CLOCK = datetime(2026, 1, 1)


def ocds_files(seed: str, count: int, size: int = 2000) -> dict[str, bytes]:
    """OCDS-like release packages in 3-hex-digit subfolders, deterministic for a seed."""
    rng = random.Random(seed)
    files = {}
    for i in range(count):
        release = {
            "ocid": f"ocds-213czf-{seed}-{i}",
            "id": f"{i}",
            "date": f"2020-0{1 + i % 9}-01T00:00:00Z",
            "tag": ["tender"],
            "tender": {"title": " ".join(rng.choice(["road", "school", "supplies", "water"]) for _ in range(8))},
        }
        body = json.dumps({"releases": [release], "padding": "x" * rng.randint(0, size)}).encode()
        name = hashlib.md5(f"{seed}{i}".encode(), usedforsecurity=False).hexdigest()
        files[f"{name[:3].upper()}/{name}.json"] = body
    return files


@dataclass
class Crawl:
    source_id: str
    data_version: str
    directory: str
    log: str | None
    collection_id: int | None = None

    @property
    def id(self) -> str:
        return f"{self.source_id}/{self.data_version}"


@dataclass
class KingfisherHost:
    """FILES_STORE and Scrapyd's project logs directory under one root, plus a Process database (v1 or v2)."""

    root: str
    dsn: str | None = None
    schema: str = "v1"
    crawls: dict[str, Crawl] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_directory = os.path.join(self.root, "data")
        self.logs_directory = os.path.join(self.root, "logs", "kingfisher")
        os.makedirs(self.data_directory, exist_ok=True)
        os.makedirs(self.logs_directory, exist_ok=True)

    def add_crawl(
        self,
        source_id: str,
        data_version: str,
        files: dict[str, bytes] | None = None,
        *,
        log: dict | None = None,
        with_log: bool = True,
        job: str | None = None,
        loaded: bool = True,
        collection: bool = True,
        **row,
    ) -> Crawl:
        """A crawl directory with ``files``, a matching log and a collection row.

        ``log`` holds keyword arguments for :func:`write_log`.
        """
        start = datetime.strptime(data_version, FORMAT)
        directory = os.path.join(self.data_directory, source_id, data_version)
        os.makedirs(directory, exist_ok=True)
        job = job or hashlib.md5(f"{source_id}{data_version}".encode(), usedforsecurity=False).hexdigest()
        if files is None:
            files = ocds_files(f"{source_id}{data_version}", 5)
        for relpath, content in files.items():
            path = os.path.join(directory, relpath)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content)
        log_path = None
        if with_log:
            options = {"files": sum(1 for name in files if name != "scrapyd-job.txt"), **(log or {})}
            log_path = os.path.join(self.logs_directory, source_id, f"{job}.log")
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            started = options.pop("start_time", start + timedelta(microseconds=250_000))
            write_log(log_path, spider=source_id, job=job, start_time=started, **options)
        crawl = Crawl(source_id, data_version, directory, log_path)
        if collection and self.dsn:
            # v2 notes the spider's close reason, which the log also records.
            row.setdefault("close_reason", (log or {}).get("finish_reason", "finished") or "running")
            data_files = [os.path.join(source_id, data_version, name) for name in files if name != "scrapyd-job.txt"]
            crawl.collection_id = self.insert_collection(
                source_id, start, loaded=loaded, job=job, files=data_files, **row
            )
        self.crawls[crawl.id] = crawl
        return crawl

    def insert_collection(
        self,
        source_id: str,
        data_version: datetime,
        *,
        loaded: bool = True,
        loading: bool = False,
        sample: bool = False,
        deleted: bool = False,
        transform_type: str = "",
        job: str | None = None,
        close_reason: str | None = "finished",
        files: list[str] = (),
        upgrade: bool = False,
        compile: bool = False,  # noqa: A002 - Process's own name for the option
        check: bool = False,
        closed_at: datetime = PROCESS_CLOCK,
    ) -> int:
        """The collection row(s) of one crawl as Kingfisher Process writes them; returns the root collection's id.

        v1 loaded a crawl's files before it set ``store_end_at`` (``loaded``). v2 goes through Process's lifecycle
        (:class:`ProcessV2`): created with its derived children, one collection file per crawl file (``files``,
        relative to the data directory), closed with ``close_reason`` (None: closed without one, as Process's
        ``load`` command does) unless the crawl is still running (``loaded`` false, or the reason ``running``)
        or was shut down (Kingfisher Collect does not close those); then every file loaded and the collection
        completed, unless ``loading``.
        ``transform_type`` inserts a lone derived row (v1 only: v2 never has one without its parent). Process's
        clock reads ``closed_at`` throughout.
        """
        if self.schema == "v1":
            return self._insert_v1(source_id, data_version, loaded, sample, deleted, transform_type)
        if transform_type:
            raise ValueError("v2 derived rows come with their parent: use upgrade=True or compile=True")
        process = ProcessV2(self.dsn, self.data_directory, now=closed_at)
        ids = process.create(
            source_id, data_version, sample=sample, upgrade=upgrade, compile=compile, check=check, job=job or ""
        )
        for path in files:
            process.add_file(ids.root, path)
        if loaded and close_reason not in ("shutdown", "running"):
            stats = {"kingfisher_process_expected_files_count": len(files), "finish_reason": close_reason}
            process.close(ids.root, close_reason, stats)
            if not loading:
                process.load_all(ids.root)
                process.check_all(ids.root)
        if deleted:
            process.delete(ids.root)
        return ids.root

    def _insert_v1(self, source_id, data_version, loaded, sample, deleted, transform_type) -> int:
        now = PROCESS_CLOCK
        with psycopg2.connect(self.dsn) as connection, connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO collection (source_id, data_version, store_start_at, store_end_at, sample, "
                "check_data, check_older_data_with_schema_version_1_1, transform_type, deleted_at) "
                "VALUES (%s, %s, %s, %s, %s, true, false, %s, %s) RETURNING id",
                (
                    source_id,
                    data_version,
                    now,
                    now if loaded else None,
                    sample,
                    transform_type,
                    now if deleted else None,
                ),
            )
            collection_id = cursor.fetchone()[0]
        connection.close()
        return collection_id

    def exists(self, crawl_id: str) -> bool:
        return os.path.isdir(self.crawls[crawl_id].directory)

    def log_exists(self, crawl_id: str) -> bool:
        log = self.crawls[crawl_id].log
        return bool(log) and os.path.exists(log)


def mixed_host(
    root: str, dsn: str | None, schema: str = "v1", waiting_since: datetime = PROCESS_CLOCK
) -> tuple[KingfisherHost, KingfisherHost]:
    """The host of the DAG tests and the demo: something of every kind; and the crawls an earlier run archived.

    The second host (under ``<root>/earlier``, outside the first's data and logs directories) holds what the bucket
    must hold before the run: pass it to :func:`archive_all`. v2's crawl still being loaded was closed at
    ``waiting_since``.
    """
    host = KingfisherHost(root, dsn=dsn, schema=schema)
    # Two crawls in one month: the second has twice the bytes and wins; the first stays on disk.
    host.add_crawl("scotland", "20200902_052458", ocds_files("a", 4))
    host.add_crawl("scotland", "20200920_101010", ocds_files("b", 12))
    # One of each reject reason (no_data_directory cannot be on disk; it is covered by the unit tests).
    host.add_crawl("paraguay", "20201001_000000", with_log=False)
    host.add_crawl("paraguay", "20201002_000000", log={"finish_reason": "shutdown"})
    host.add_crawl("paraguay", "20201003_000000", log={"spider_arguments": {"from_date": "2020-01-01"}})
    host.add_crawl("paraguay", "20201004_000000", log={"files": 2, "errors": 5})
    host.add_crawl("paraguay", "20201005_000000", {"scrapyd-job.txt": b"job"})
    # Never touched: not loaded, unknown to Process, a sample, a deleted collection.
    host.add_crawl("moldova", "20201101_000000", loaded=False)
    host.add_crawl("moldova", "20201102_000000", collection=False)
    host.add_crawl("moldova_sample", "20201103_000000", sample=True)
    host.add_crawl("moldova", "20201104_000000", deleted=True)
    if schema == "v2":
        # A local load (no crawl directory of its own in Process's eyes) and a log found only by its job id,
        # since its crawl time is an hour off the directory's name.
        host.add_crawl("moldova_local", "20201105_000000")
        # Upgraded and compiled by Process: three collection rows, one crawl.
        host.add_crawl(
            "kenya", "20201201_000000", log={"start_time": datetime(2020, 12, 1, 1, 0, 0)}, upgrade=True, compile=True
        )
        # Closed by Kingfisher Collect, its files not yet loaded by Process: waits on disk, untouched.
        host.add_crawl("ecuador", "20210105_000000", loading=True, closed_at=waiting_since)
    # Identical (same files, same checksum) to the November crawl an earlier run archived: not distinct.
    host.add_crawl("uk", "20201201_000000", ocds_files("uk", 3))
    earlier = KingfisherHost(os.path.join(root, "earlier"))
    earlier.add_crawl("uk", "20201105_000000", ocds_files("uk", 3))
    return host, earlier


def archive_all(host: KingfisherHost, client, bucket: str) -> None:
    """Archive every crawl of ``host`` into ``bucket`` with the package's own archiver, which deletes it locally.

    The bucket then holds what an earlier run left: ``data.tar.zst``, ``metadata.json`` and ``scrapy.log`` per month.
    """
    from kingfisher_archive import archiver
    from kingfisher_archive.records import CrawlKey
    from kingfisher_archive.settings import Settings

    settings = Settings(
        bucket, host.data_directory, host.logs_directory, "", "STANDARD"
    )  # the archiver keeps no ledger
    for crawl in host.crawls.values():
        summary = crawls.measure(crawl.directory)
        request = archiver.ArchiveRequest(
            CrawlKey.of({"source_id": crawl.source_id, "data_version": crawl.data_version}),
            log_path=crawl.log,
            expected=archiver.Expected(summary.bytes, summary.files, summary.fingerprint),
            metadata={"files_count": summary.data_files, "errors_count": 0, "reason": "new_period"},
        )
        archiver.archive_crawl(client, settings, request)


def tree(directory) -> dict:
    """Every folder (None) and file (its bytes) under ``directory``, by relative path in bytes: to compare trees."""
    found = {}
    base = os.fsencode(directory)
    for root, dirs, files in os.walk(base):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), base)] = None
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, base)] = f.read()
    return found


def make_crawl(data, files):
    """A crawl directory ``scotland/20200902_052458`` under ``data`` holding ``files`` (None: a folder)."""
    directory = data / "scotland" / "20200902_052458"
    for relpath, content in files.items():
        path = directory / os.fsdecode(relpath)
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return str(directory)


#: One file of each kind a crawl can hold, for round trips.
FILES = {
    "scrapyd-job.txt": b"3487b29602b311ebaad50c9d92c523cb",
    "000/a.json": b'{"releases": []}' * 100,
    "000/b.json": b"",
    "FFF/c.json": os.urandom(300_000),
    "old-flat-file.json": b'{"x": 1}',
    "data.zip": os.urandom(1000),
    "empty-folder": None,
    b"caf\xe9.json": b"latin-1 name",  # not UTF-8: kept byte for byte
}
