"""Inspecting a crawl (no Airflow): each reject reason with its detail, and reads that fail for now.

A crawl that Kingfisher Collect reuses for incremental updates (its DatabaseStore is enabled) is inspected and decided
like any other; its inspection only says, with ``reused`` and ``reused_detail``, that its directory must stay on disk.
"""

from __future__ import annotations

import errno
import os
import shutil
from datetime import datetime

import pytest

from kingfisher_archive import steps
from kingfisher_archive.bucket import Bucket

# What Kingfisher Collect's Scrapy lists when DATABASE_URL is set (its settings name the extension at this path).
INCREMENTAL = [
    "scrapy.extensions.corestats.CoreStats",
    "scrapy.extensions.logcount.LogCount",
    "scrapy.extensions.memusage.MemoryUsage",
    "scrapy.extensions.logstats.LogStats",
    "kingfisher_scrapy.extensions.FilesStore",
    "kingfisher_scrapy.extensions.KingfisherProcessAPI2",
    "kingfisher_scrapy.extensions.ItemCount",
    "kingfisher_scrapy.extensions.DatabaseStore",
]


def inspect(settings, crawl_id):
    source_id, data_version = crawl_id.split("/")
    return steps.inspect(settings, {"source_id": source_id, "data_version": data_version})


def test_a_crawl_whose_log_enables_database_store_is_reused_and_acceptable(host, settings):
    host.add_crawl(
        "honduras_portal",
        "20240101_000000",
        log={"extensions": INCREMENTAL, "crawl_time_argument": datetime(2024, 1, 1)},
    )

    facts = inspect(settings, "honduras_portal/20240101_000000")

    assert facts["reused"] is True
    assert facts["reused_detail"] == (
        "the log's enabled extensions include kingfisher_scrapy.extensions.DatabaseStore (incremental updates): "
        "Kingfisher Collect reads the crawl directory again at each close, so it must not be deleted; its crawl_time "
        "argument (2024-01-01T00:00:00) pins the directory that later crawls write into"
    )
    # Nothing else changes: it is acceptable, with the facts any crawl has.
    assert facts["reject_reason"] is None
    assert facts["detail"] is None
    assert facts["error"] is None
    assert (facts["files_count"], facts["errors_count"], facts["finish_reason"]) == (5, 0, "finished")


def test_a_crawl_without_database_store_is_not_reused(host, settings):
    host.add_crawl("honduras_portal", "20240101_000000")  # the writer's usual extensions
    host.add_crawl("honduras_portal", "20240102_000000", log={"extensions": INCREMENTAL[:-1]})
    for crawl_id in ("honduras_portal/20240101_000000", "honduras_portal/20240102_000000"):
        facts = inspect(settings, crawl_id)
        assert (facts["reused"], facts["reused_detail"], facts["reject_reason"]) == (False, None, None)


def test_the_extension_under_its_module_path_and_without_crawl_time(host, settings):
    path = "kingfisher_scrapy.extensions.database_store.DatabaseStore"
    host.add_crawl("honduras_portal", "20240101_000000", log={"extensions": [path]})

    facts = inspect(settings, "honduras_portal/20240101_000000")

    assert facts["reused"] is True
    assert facts["reused_detail"] == (
        f"the log's enabled extensions include {path} (incremental updates): Kingfisher Collect reads the crawl "
        "directory again at each close, so it must not be deleted"
    )


def test_a_name_that_is_not_a_dotted_path_is_not_repeated_in_the_detail(host, settings):
    host.add_crawl("a", "20240101_000000", log={"extensions": ["evil\nINJECTED <b>.DatabaseStore"]})
    facts = inspect(settings, "a/20240101_000000")
    assert facts["reused"] is True
    assert facts["reused_detail"].startswith("the log's enabled extensions include DatabaseStore (incremental")
    assert "INJECTED" not in facts["reused_detail"]


@pytest.mark.parametrize(
    ("log", "reason"),
    [
        ({"finish_reason": "shutdown"}, "not_finished"),
        ({"spider_arguments": {"from_date": "2024-01-01"}}, "not_complete"),
        ({"files": 1, "errors": 2}, "not_clean_enough"),
    ],
)
def test_reuse_changes_no_reject_reason_and_no_detail(host, settings, log, reason):
    host.add_crawl("a", "20240101_000000", log=log)
    host.add_crawl("a", "20240102_000000", log={**log, "extensions": INCREMENTAL})

    plain = inspect(settings, "a/20240101_000000")
    reused = inspect(settings, "a/20240102_000000")

    assert plain["reject_reason"] == reused["reject_reason"] == reason
    assert plain["detail"] == reused["detail"]
    assert (plain["reused"], reused["reused"]) == (False, True)


def test_a_crawl_without_a_log_is_not_known_to_be_reused(host, settings):
    host.add_crawl("a", "20240101_000000", with_log=False)
    facts = inspect(settings, "a/20240101_000000")
    assert (facts["reject_reason"], facts["reused"], facts["reused_detail"]) == ("no_log_file", False, None)


def test_a_reused_crawl_is_decided_and_planned_as_usual(host, settings, bucket):
    host.add_crawl("honduras_portal", "20240101_000000", log={"extensions": INCREMENTAL})
    host.add_crawl("scotland", "20240101_000000")
    inspected = [inspect(settings, "honduras_portal/20240101_000000"), inspect(settings, "scotland/20240101_000000")]
    assert [facts["reused"] for facts in inspected] == [True, False]

    decided = steps.decide(settings, bucket, inspected)

    statuses = {d["id"]: (d["status"], d["reason"]) for d in decided["decisions"]}
    assert statuses["honduras_portal/20240101_000000"] == statuses["scotland/20240101_000000"]
    assert sorted(p["id"] for p in decided["to_archive"]) == [
        "honduras_portal/20240101_000000",
        "scotland/20240101_000000",
    ]


def test_inspection_gives_each_reject_reason_with_a_detail(host, settings):
    cases = {
        "a/20200101_000000": dict(with_log=False),
        "a/20200102_000000": dict(log={"finish_reason": "closespider_errorcount"}),
        "a/20200103_000000": dict(log={"spider_arguments": {"until_date": "2020-01-01"}}),
        "a/20200104_000000": dict(log={"files": 1, "errors": 2}),
        "a/20200105_000000": dict(files={"scrapyd-job.txt": b"x"}),
        "a/20200106_000000": dict(log={"finish_reason": None, "stats": False}),  # still running
        "a/20200107_000000": dict(log={"sigint": True, "finish_reason": None, "stats": False}),
        "a/20200108_000000": dict(),
        "a/20200111_000000": dict(log={"files": 0}),
    }
    for crawl_id, options in cases.items():
        host.add_crawl(*crawl_id.split("/"), **options)
    os.symlink("/etc", os.path.join(host.data_directory, "a", "20200109_000000"))
    cases["a/20200109_000000"] = {}
    results = {}
    for crawl_id in cases:
        source_id, version = crawl_id.split("/")
        facts = steps.inspect(settings, {"source_id": source_id, "data_version": version})
        results[crawl_id] = (facts["reject_reason"], facts["detail"])
    assert results == {
        "a/20200101_000000": ("no_log_file", None),
        "a/20200102_000000": ("not_finished", "the log's finish reason is 'closespider_errorcount'"),
        "a/20200103_000000": ("not_complete", "spider arguments: until_date=2020-01-01"),
        "a/20200104_000000": ("not_clean_enough", "2 errors (fileerror_count) for 1 files"),
        "a/20200105_000000": ("no_data_files", None),
        "a/20200106_000000": ("not_finished", "the log's finish reason is None"),
        "a/20200107_000000": ("not_finished", "the log's finish reason is None"),
        "a/20200108_000000": (None, None),
        "a/20200111_000000": ("no_data_files", "the log records no File items and no errors"),
        "a/20200109_000000": (
            "unsafe_data_directory",
            f"the crawl directory {host.data_directory}/a/20200109_000000 is a symbolic link",
        ),
    }
    gone = steps.inspect(settings, {"source_id": "a", "data_version": "20200110_000000"})
    assert gone["reject_reason"] == "no_data_directory"


def test_a_data_version_in_the_future_is_rejected_with_the_reason(host, settings):
    host.add_crawl("scotland", "20990101_000000")
    facts = steps.inspect(
        settings, {"source_id": "scotland", "data_version": "20990101_000000"}, now=datetime(2026, 11, 28, 12)
    )
    assert facts["reject_reason"] == "future_data_version"
    assert facts["detail"] == "the crawl claims to start at 2099-01-01 00:00:00, after now (2026-11-28 12:00:00 UTC)"


def test_a_spider_log_folder_that_is_a_file_means_no_log(host, settings):
    host.add_crawl("scotland", "20200902_052458")
    broken = os.path.join(host.logs_directory, "scotland")
    shutil.rmtree(broken)
    with open(broken, "w") as f:
        f.write("not a folder")
    facts = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200902_052458"})
    assert facts["reject_reason"] == "no_log_file"


@pytest.mark.parametrize("error", [errno.EACCES, errno.EIO, errno.EMFILE, errno.ENOENT])
@pytest.mark.parametrize("when", ["matching the log", "reading the log"])
def test_a_log_that_cannot_be_read_for_now_holds_the_crawl_and_never_rejects_it(
    host, settings, monkeypatch, error, when
):
    """A read that fails for a moment (permissions, an I/O error, too many open files, the file vanishing while it is
    read) must never settle a crawl as rejected (``no_log_file``): a rejected crawl is never archived and may be
    swept."""
    from kingfisher_archive import scrapy_log

    crawl = host.add_crawl("a", "20200101_000000")
    calls = []

    def failing_open(path, *args, **kwargs):
        if path == crawl.log:
            calls.append(path)
            if len(calls) == (1 if when == "matching the log" else 2):
                raise OSError(error, os.strerror(error), path)
        return open(path, *args, **kwargs)

    # Matching opens the log to read its crawl time; reading opens it again to parse it.
    monkeypatch.setattr(scrapy_log, "open", failing_open, raising=False)
    facts = steps.inspect(settings, {"source_id": "a", "data_version": "20200101_000000"})
    assert facts["reject_reason"] is None and calls
    assert facts["error"] and os.strerror(error) in facts["error"]
    monkeypatch.undo()
    [decision] = steps.decide(settings, Bucket(None, "unused"), [facts])["decisions"]
    assert (decision["status"], decision["reason"]) == ("held", "inspection_failed")
    assert steps.inspect(settings, {"source_id": "a", "data_version": "20200101_000000"})["reject_reason"] is None
