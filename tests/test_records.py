"""The records a run hands from task to task: a crawl's key, parsed once, and the decision for one crawl."""

from datetime import datetime

import pytest

from kingfisher_archive import records
from kingfisher_archive.ledger import Held, Status
from kingfisher_archive.policy import Comparison
from kingfisher_archive.records import CrawlKey


def test_a_crawl_key_of_a_record_names_its_crawl_month_and_directory():
    key = CrawlKey.of({"source_id": "scotland", "data_version": "20200902_052458", "bytes": 10})

    assert key.id == "scotland/20200902_052458"
    assert key.started == datetime(2020, 9, 2, 5, 24, 58)
    assert (key.year, key.month, key.period) == (2020, 9, "2020-09")
    assert key.directory("/data") == "/data/scotland/20200902_052458"
    assert records.crawl_id("scotland", "20200902_052458") == key.id


def test_the_period_of_a_january_crawl_has_two_digits_for_its_month():
    assert CrawlKey.of({"source_id": "a", "data_version": "20210105_000000"}).period == "2021-01"


@pytest.mark.parametrize("data_version", ["2020-09-02", "20200931_000000", "20200902", "", None])
def test_a_bad_data_version_has_no_key(data_version):
    record = {"source_id": "scotland", "data_version": data_version}

    with pytest.raises(ValueError, match="is not a data version"):
        CrawlKey.of(record)
    assert CrawlKey.parse(record) is None  # a row of a ledger from elsewhere: skipped, not an error


def test_parse_gives_the_same_key_as_of_for_a_good_data_version():
    record = {"source_id": "scotland", "data_version": "20200902_052458"}

    assert CrawlKey.parse(record) == CrawlKey.of(record)


INSPECTED = {
    "id": "scotland/20200902_052458",
    "source_id": "scotland",
    "data_version": "20200902_052458",
    "collection_id": 7,
    "reject_reason": None,
    "error": None,
    "bytes": 1200,
    "files": 6,
    "files_count": 5,
    "errors_count": 1,
    "checksum": "abc",
    "log": "/logs/scotland/job.log",  # not part of a decision
}


def test_the_decision_for_a_chosen_crawl_carries_its_figures_from_inspection():
    decision = records.decided(INSPECTED, Status.TO_ARCHIVE, Comparison.NEW_PERIOD)

    assert decision == {
        "id": "scotland/20200902_052458",
        "source_id": "scotland",
        "data_version": "20200902_052458",
        "collection_id": 7,
        "status": "to_archive",
        "reason": "new_period",
        "bytes": 1200,
        "files": 6,
        "files_count": 5,
        "errors_count": 1,
        "checksum": "abc",
    }


def test_the_decision_for_a_held_crawl_whose_inspection_failed_has_zero_figures_and_its_detail():
    failed = {
        "id": "scotland/20200902_052458",
        "source_id": "scotland",
        "data_version": "20200902_052458",
        "collection_id": None,
        "reject_reason": None,
        "error": "PermissionError",
    }

    decision = records.decided(failed, Status.HELD, Held.INSPECTION_FAILED, detail="the log could not be read")

    assert decision == {
        "id": "scotland/20200902_052458",
        "source_id": "scotland",
        "data_version": "20200902_052458",
        "collection_id": None,
        "status": "held",
        "reason": "inspection_failed",
        "bytes": 0,
        "files": 0,
        "files_count": 0,
        "errors_count": 0,
        "checksum": None,
        "detail": "the log could not be read",
    }
