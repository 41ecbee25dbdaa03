"""The run's summary: outcomes counted, and the table an operator reads."""

from __future__ import annotations

from kingfisher_archive import steps


def test_the_summary_counts_outcomes_and_fails_nothing_on_a_dry_run():
    decisions = [
        {"id": "a/1", "status": "to_archive", "reason": "new_period"},
        {"id": "a/2", "status": "rejected", "reason": "not_finished", "detail": "x"},
        {"id": "b/1", "status": "to_archive", "reason": "new_period"},
        {"id": "b/2", "status": "not_archived", "reason": "same_period"},
    ]
    decisions[3]["compared_with"] = "b/0"
    results = {"a/1": {"bytes": 7_000_000, "compressed_bytes": 1_000_000, "seconds": 2.0}}
    summary = steps.summarise(decisions, results, dry_run=False)
    assert (summary["archived"], summary["failed"], summary["rejected"], summary["not_archived"]) == (
        1,
        ["b/1"],
        {"not_finished": 1},
        1,
    )
    assert (summary["bytes_archived"], summary["compressed_bytes"], summary["bytes_freed"]) == (
        7_000_000,
        1_000_000,
        7_000_000,
    )
    archived = summary["rows"][0]
    assert (archived["status"], archived["ratio"], archived["mb_per_second"]) == ("archived", 7.0, 3.5)
    table = steps.format_table(summary)
    assert "a/1" in table and "7.0" in table and "3.5" in table
    # What a kept crawl was measured against, and why, in words; the codes stay in the summary's rows.
    assert "lost to 0: same month, without enough more data or fewer errors" in table
    assert "a/2" in table and "log shows the crawl did not finish" in table
    assert "chosen, and its archive task failed" in table
    assert "not_finished" not in table and "same_period" not in table
    dry = steps.summarise(decisions, {}, dry_run=True)
    assert (dry["would_archive"], dry["failed"]) == (2, [])
    assert "would be archived" in steps.format_table(dry)


def test_a_replacement_that_deleted_data_early_says_what_it_paid_in_words_and_keeps_the_figures():
    early = {
        "key": "s3://b/a/2020/09/data.tar.zst",
        "storage_class": "GLACIER",
        "bytes": 60 * 2**30,
        "days_stored": 29,
        "minimum_days": 90,
        "days_left": 61,
        "usd": 0.4392,
    }
    decisions = [
        {"id": "a/1", "status": "to_archive", "reason": "same_period_more_bytes", "early_deletion": early},
        {"id": "b/1", "status": "to_archive", "reason": "same_period_more_bytes", "early_deletion": early},
    ]
    results = {"a/1": {"bytes": 7, "compressed_bytes": 1, "seconds": 1.0}}  # b/1's task failed: it paid nothing

    summary = steps.summarise(decisions, results, dry_run=False)

    assert summary["early_deletions"] == [early] and summary["early_deletion_usd"] == 0.4392
    phrase = (
        "replacing s3://b/a/2020/09/data.tar.zst pays $0.44 early-deletion: 61 days left of GLACIER's 90-day minimum"
    )
    lines = steps.format_table(summary).splitlines()
    assert lines[1].startswith("a/1") and lines[1].endswith(phrase)
    assert not lines[2].endswith(phrase)  # b/1 failed
    assert phrase + " (information: the replacement went ahead)" in lines
    assert "early_deletion" not in "\n".join(lines)
