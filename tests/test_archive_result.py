"""An archive task's result: each constructor gives its kind, and the ledger keeps all of it but the kind."""

import json

from kingfisher_archive import archive_result
from kingfisher_archive.archive_result import Kind
from kingfisher_archive.ledger import Held, Kept

PLAN = {
    "id": "scotland/20200902_052458",
    "source_id": "scotland",
    "data_version": "20200902_052458",
    "log": "/logs/scotland/job.log",
    "month_held": None,
    "expected": {"bytes": 1200, "files": 6, "fingerprint": "f", "checksum": None},
    "metadata": {"files_count": 5, "errors_count": 0, "collection_id": 7, "reason": "new_period"},
}

FIGURES = {
    "id": "scotland/20200902_052458",
    "bytes": 1200,
    "files": 6,
    "compressed_bytes": 300,
    "checksum": "abc",
    "prefix": "scotland/2020/09/",
    "deleted": ["/data/scotland/20200902_052458", "/logs/scotland/job.log"],
}


def test_a_crawl_archived_by_this_try_is_archived_or_kept():
    assert archive_result.archived(FIGURES) == {**FIGURES, "kind": "archived"}
    assert archive_result.archived(FIGURES, Kept.INCREMENTAL_UPDATES) == {
        **FIGURES,
        "kept": "incremental_updates",
        "kind": "kept",
    }


def test_a_crawl_an_earlier_try_archived_says_so():
    result = archive_result.already_archived({**FIGURES, "compressed_bytes": None, "deleted": []})

    assert result["kind"] == Kind.ALREADY_ARCHIVED
    assert (result["already_archived"], result["compressed_bytes"], result["deleted"]) == (True, None, [])


def test_a_crawl_decided_again_says_what_its_month_held_and_deletes_nothing():
    result = archive_result.decided_again(PLAN, "not_distinct", "scotland/20200901_000000", "scotland/20200901_000000")

    assert result == {
        "kind": "decided_again",
        "id": "scotland/20200902_052458",
        "bytes": 1200,
        "files": 6,
        "compressed_bytes": None,
        "deleted": [],
        "redecided": {
            "reason": "not_distinct",
            "compared_with": "scotland/20200901_000000",
            "held": "scotland/20200901_000000",
        },
    }


def test_a_held_crawl_says_why_and_deletes_nothing():
    result = archive_result.held(PLAN, Held.DIFFERS_FROM_ITS_ARCHIVE, "what is on disk differs")

    assert result == {
        "kind": "held",
        "id": "scotland/20200902_052458",
        "bytes": 1200,
        "files": 6,
        "compressed_bytes": None,
        "deleted": [],
        "held": {"reason": "differs_from_its_archive", "detail": "what is on disk differs"},
    }


def test_the_ledger_keeps_the_figures_without_the_kind_as_it_always_has():
    for result in (
        archive_result.archived(FIGURES),
        archive_result.archived(FIGURES, Kept.INCREMENTAL_UPDATES),
        archive_result.already_archived(FIGURES),
        archive_result.held(PLAN, Held.DIFFERS_FROM_ITS_ARCHIVE, "what is on disk differs"),
    ):
        kept = archive_result.figures(result)
        assert "kind" not in kept
        assert {**kept, "kind": result["kind"]} == result
    assert archive_result.figures(archive_result.archived(FIGURES)) == FIGURES
    assert json.loads(json.dumps(archive_result.archived(FIGURES)))["kind"] == "archived"  # crosses XCom as a string
