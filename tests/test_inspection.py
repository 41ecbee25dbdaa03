"""Inspection of a crawl that Kingfisher Collect reuses for incremental updates (its DatabaseStore is enabled).

Such a crawl is inspected and decided like any other; its inspection only says, with ``reused`` and
``reused_detail``, that its directory must stay on disk.
"""

from __future__ import annotations

import secrets
from datetime import datetime

import pytest

from kingfisher_archive import steps
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.settings import Settings
from scripts.demo_kit.kingfisher_host import KingfisherHost

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


@pytest.fixture
def host(tmp_path):
    return KingfisherHost(str(tmp_path / "host"))


@pytest.fixture
def settings(host, tmp_path):
    return Settings("unused", host.data_directory, host.logs_directory, str(tmp_path / "ledger.sqlite3"), "STANDARD")


@pytest.fixture
def bucket(s3_server):
    name = f"test-{secrets.token_hex(6)}"
    s3_server.create_bucket(name)
    return Bucket(s3_server.client(), name, "STANDARD")


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
