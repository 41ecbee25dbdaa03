"""Finding a run's work (no Airflow): which of Kingfisher Process's collections become crawls to inspect, and which
wait for Process to load them."""

from __future__ import annotations

from datetime import datetime

from kingfisher_archive import steps
from kingfisher_archive.process import Collection


def test_ten_thousand_historical_rows_become_only_the_crawls_still_on_disk(host, settings):
    host.add_crawl("scotland", "20200902_052458")
    host.add_crawl("scotland", "20201002_052458")
    host.add_crawl("paraguay", "20201101_000000")
    rows = [Collection(i, "scotland", datetime(2015, 1, 1, 0, i // 60 % 60, i % 60)) for i in range(10_000)]
    rows += [
        Collection(10_001, "scotland", datetime(2020, 9, 2, 5, 24, 58)),
        Collection(10_002, "scotland", datetime(2020, 10, 2, 5, 24, 58)),
        Collection(10_003, "paraguay", datetime(2020, 11, 1)),
        Collection(10_004, "../etc", datetime(2020, 11, 1)),
        Collection(10_005, "a/b", datetime(2020, 11, 1)),
        Collection(10_006, "nul\x00", datetime(2020, 11, 1)),
    ]
    found = steps.find(settings, rows, settled={("scotland", "20201002_052458")}, reevaluate=False)
    assert [c["source_id"] + "/" + c["data_version"] for c in found["crawls"]] == [
        "paraguay/20201101_000000",
        "scotland/20200902_052458",
    ]
    assert found["counts"] == {"not_on_disk": 10_000, "settled": 1}
    assert [m.split(":")[0] for m in found["ignored"]] == ["collection 10004", "collection 10005", "collection 10006"]

    again = steps.find(settings, rows, settled={("scotland", "20201002_052458")}, reevaluate=True)
    assert len(again["crawls"]) == 3


def test_crawls_process_is_still_loading_are_never_work_and_are_listed_as_waiting(host, settings):
    host.add_crawl("scotland", "20240501_000000")
    host.add_crawl("paraguay", "20240502_000000")
    now = datetime(2024, 5, 10, 12, 0, 0)

    def closed(id_, source_id, day, closed_at, stored, expected, pending):
        return Collection(id_, source_id, datetime(2024, 5, day), None, closed_at, False, stored, expected, pending)

    loading = [
        closed(1, "scotland", 1, datetime(2024, 5, 5, 9, 30), stored=40, expected=50, pending=12),
        closed(2, "paraguay", 2, datetime(2024, 5, 10, 11, 15), stored=3, expected=0, pending=3),
        closed(3, "moldova", 3, datetime(2024, 5, 1), stored=0, expected=0, pending=0),  # not on disk: no wait
    ]
    found = steps.find(settings, [], set(), reevaluate=True, loading=loading, now=now)
    assert found["crawls"] == []
    assert [(w["id"], w["collection_id"], w["waited_seconds"], w["detail"]) for w in found["waiting"]] == [
        (
            "scotland/20240501_000000",
            1,
            5 * 86400 + 2 * 3600 + 30 * 60,
            "closed 5 days 2 h ago; 40 of 50 files recorded, 12 still to load",
        ),
        (
            "paraguay/20240502_000000",
            2,
            45 * 60,
            "closed 45 min ago; 3 of an unknown number of files recorded, 3 still to load",
        ),
    ]

    summary = steps.summarise([], {}, False, waiting=found["waiting"], waiting_warning_days=3)
    assert [w["id"] for w in summary["waiting"]] == ["scotland/20240501_000000", "paraguay/20240502_000000"]
    [warning] = summary["warnings"]  # only the one closed more than three days ago
    assert warning.startswith(
        "scotland/20240501_000000 (Kingfisher Process collection 1) has waited for Kingfisher Process to load its "
        "files for longer than 3 days: closed 5 days 2 h ago"
    )
    table = steps.format_table(summary)
    assert "waiting for Kingfisher Process: paraguay/20240502_000000 (collection 2), closed 45 min ago" in table
    assert "2 waiting for Kingfisher Process" in table
    assert steps.summarise([], {}, False, waiting=found["waiting"], waiting_warning_days=6)["warnings"] == []
