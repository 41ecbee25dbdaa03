"""The retention policy: every reject reason, in order, and every comparison rule."""

import pytest

from kingfisher_archive import policy
from kingfisher_archive.policy import Candidate, compare, decide_source

GOOD = dict(
    data_directory_exists=True,
    data_files=3,
    log_found=True,
    finished=True,
    subset=False,
    files_count=10,
    errors_count=0,
)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"data_directory_exists": False, "data_files": 0, "log_found": False}, "no_data_directory"),
        ({"data_directory_safe": False, "data_files": 0}, "unsafe_data_directory"),
        ({"future": True, "data_files": 0, "log_found": False}, "future_data_version"),
        ({"data_files": 0, "log_found": False, "finished": False}, "no_data_files"),
        ({"log_found": False, "finished": False, "subset": True}, "no_log_file"),
        ({"finished": False, "subset": True, "errors_count": 99}, "not_finished"),
        ({"subset": True, "errors_count": 99}, "not_complete"),
        ({"errors_count": 11}, "not_clean_enough"),
        ({"errors_count": 10}, None),  # exactly half failed is still clean
        ({"files_count": 0, "errors_count": 0, "finished": False}, "no_data_files"),  # no items: no data, no 0/0
        ({"files_count": 0, "errors_count": 1}, "not_clean_enough"),
    ],
)
def test_reject_reasons_are_checked_in_order(change, reason):
    assert policy.reject_reason(**{**GOOD, **change}) == reason


def crawl(id, bytes=100, files=10, errors=1, checksum="c" * 32):
    source, version = id.split("/")
    return Candidate(id, int(version[:4]), int(version[4:6]), bytes, files, errors, checksum)


# Same month: a later crawl replaces the choice only with more bytes and (1.5x bytes, 1.5x files or fewer errors).
@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (dict(bytes=150), (True, "same_period_more_bytes")),
        (dict(bytes=149, files=15), (True, "same_period_more_files")),
        (dict(bytes=101, errors=0), (True, "same_period_more_clean")),
        (dict(bytes=101), (False, "same_period")),
        (dict(bytes=100, errors=0, files=100), (False, "same_period")),  # no more bytes: never
        (dict(bytes=99), (False, "same_period")),
    ],
)
def test_same_month(new, expected):
    assert compare(crawl("s/20200915_000000", **new), crawl("s/20200901_000000")) == expected


# Earlier month: identical data is not distinct; less clean with no more files and bytes "maybe" not distinct.
@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (dict(), (False, "2020_1_not_distinct")),
        (dict(checksum="d" * 32), (True, "new_period")),
        (dict(checksum="d" * 32, errors=2), (False, "2020_1_not_distinct_maybe")),
        (dict(checksum="d" * 32, errors=2, bytes=101), (True, "new_period")),
        (dict(checksum="d" * 32, errors=2, files=11), (True, "new_period")),
    ],
)
def test_earlier_month(new, expected):
    assert compare(crawl("s/20200915_000000", **new), crawl("s/20200101_000000")) == expected


def test_the_checksum_is_computed_only_when_the_decision_needs_it():
    calls = []

    def lazy():
        calls.append(1)
        return "c" * 32

    maybe = crawl("s/20200915_000000", errors=2, checksum=None)
    maybe._checksum_of = lazy
    assert compare(maybe, crawl("s/20200101_000000"))[1] == "2020_1_not_distinct_maybe"
    assert calls == []
    same_month = crawl("s/20200115_000000", bytes=500, checksum=None)
    same_month._checksum_of = lazy
    assert compare(same_month, crawl("s/20200101_000000"))[1] == "same_period_more_bytes"
    assert calls == []
    distinct = crawl("s/20200915_000000", checksum=None)
    distinct._checksum_of = lazy
    assert compare(distinct, crawl("s/20200101_000000"))[1] == "2020_1_not_distinct"
    assert calls == [1]


def test_a_2020_archive_without_files_count_or_xxh3_is_never_called_identical():
    old = Candidate("s/2020-01 (archived)", 2020, 1, 100, None, 1, None, archived=True)
    assert compare(crawl("s/20200915_000000"), old) == (True, "new_period")
    assert compare(crawl("s/20200915_000000", errors=2), old) == (False, "2020_1_not_distinct_maybe")
    # Within the month, the files rule cannot fire without a files count: 99 files is not "1.5x unknown".
    assert compare(crawl("s/20200115_000000", bytes=101, files=99), old) == (False, "same_period")


def nothing(year, month):
    return None


def test_first_crawl_of_a_source_is_a_new_period():
    [d] = decide_source([crawl("s/20200901_000000")], nothing, nothing)
    assert (d.archive, d.reason, d.compared_with) == (True, "new_period", None)


def test_a_better_later_crawl_wins_the_month_and_the_loser_is_recorded_as_not_archived():
    first = crawl("s/20200901_000000", bytes=100)
    second = crawl("s/20200920_000000", bytes=200)
    d1, d2 = decide_source([second, first], nothing, nothing)
    assert (d1.id, d1.archive, d1.superseded_by) == ("s/20200901_000000", False, "s/20200920_000000")
    assert (d2.id, d2.archive, d2.reason, d2.compared_with) == (
        "s/20200920_000000",
        True,
        "same_period_more_bytes",
        "s/20200901_000000",
    )


def test_a_worse_later_crawl_loses_to_the_months_archive():
    archived = Candidate("s/20200902_000000", 2020, 9, 100, 10, 1, "a" * 32, archived=True)
    [d] = decide_source([crawl("s/20200920_000000", bytes=120)], lambda y, m: archived, nothing)
    assert (d.archive, d.reason, d.compared_with) == (False, "same_period", "s/20200902_000000")


def test_crawls_of_consecutive_months_compare_with_this_runs_choice():
    january = crawl("s/20200110_000000")
    february = crawl("s/20200210_000000")  # identical data
    d1, d2 = decide_source([january, february], nothing, nothing)
    assert (d1.archive, d1.reason) == (True, "new_period")
    assert (d2.archive, d2.reason, d2.compared_with) == (False, "2020_1_not_distinct", "s/20200110_000000")


def test_the_latest_earlier_month_is_the_bucket_one_when_it_is_later_than_this_runs_choice():
    in_bucket = Candidate("s/20200310_000000", 2020, 3, 100, 10, 1, "b" * 32, archived=True)

    def before(year, month):
        return in_bucket if (year, month) > (2020, 3) else None

    d1, d2 = decide_source(
        [crawl("s/20200110_000000"), crawl("s/20200410_000000", checksum="b" * 32)], nothing, before
    )
    assert (d1.archive, d1.reason) == (True, "new_period")
    assert (d2.archive, d2.reason, d2.compared_with) == (False, "2020_3_not_distinct", "s/20200310_000000")
