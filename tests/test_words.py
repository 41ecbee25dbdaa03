"""Words for people, codes for machines: every code of the vocabulary has a phrase beside it, and no code stands
bare in what a person reads (the summary's table, the alerts, the catalogue page and ``list``'s text).

Generated from the vocabulary: a member added to ``ledger.Status``, ``ledger.Held``, ``ledger.Gone``,
``policy.Reject`` or ``policy.Comparison`` without a phrase fails here (a run still works: its phrase is then the
code with spaces).
"""

from __future__ import annotations

import re

import pytest

from kingfisher_archive import alerts, catalogue, ledger, policy, steps, words
from kingfisher_archive.mending import GONE
from kingfisher_archive.steps import summary as summaries
from tests.test_restore import archive, put_month

VOCABULARIES = (
    ledger.Status,
    ledger.Held,
    ledger.Gone,
    ledger.Kept,
    policy.Reject,
    policy.Comparison,
    summaries.Outcome,
)
NOT_DISTINCT = (policy.not_distinct(2020, 11), policy.not_distinct(2020, 11, maybe=True))
REASONS = (*policy.Reject, *policy.Comparison, *ledger.Held, *ledger.Gone, *ledger.Kept, *NOT_DISTINCT)
#: What must never appear bare: every code that is not already an English word.
CODES = sorted({code for code in (*REASONS, *ledger.Status, *summaries.Outcome) if "_" in code}, key=len)


def bare_codes(text: str) -> list[str]:
    return [code for code in CODES if re.search(rf"(?<![\w/.-]){re.escape(code)}(?![\w])", text)]


@pytest.mark.parametrize("member", [m for v in VOCABULARIES for m in v], ids=lambda m: f"{type(m).__name__}.{m.name}")
def test_every_member_has_its_own_phrase(member):
    assert member.has_phrase, f"{type(member).__name__}.{member.name} needs a phrase beside its code"
    assert member.phrase and "_" not in member.phrase and member.phrase != member.value or " " not in member.value


def test_a_member_without_a_phrase_still_works_at_run_time():
    from enum import StrEnum

    from kingfisher_archive.vocabulary import phrased

    class Later(StrEnum):
        __new__ = phrased
        NEW_REASON = "new_reason"

    assert Later.NEW_REASON == "new_reason" and Later("new_reason") is Later.NEW_REASON
    assert (Later.NEW_REASON.phrase, Later.NEW_REASON.has_phrase) == ("new reason", False)


def test_the_codes_are_unchanged():
    assert (
        ledger.Status.NOT_ARCHIVED == "not_archived"
        and ledger.Held("month_incomplete") is ledger.Held.MONTH_INCOMPLETE
    )
    assert GONE == "not_on_disk" and policy.Comparison.NEW_PERIOD.value == "new_period"


@pytest.mark.parametrize("reason", REASONS)
def test_every_reason_reads_as_words(reason):
    phrase = words.reason_phrase(reason)
    assert phrase and not bare_codes(phrase), phrase
    for status in ledger.Status:
        said = words.why(status, reason, crawl_id="uk/20201201_000000", compared_with="uk/20201105_000000")
        assert said and not bare_codes(said), (status, reason, said)


def test_the_examples_people_asked_for():
    assert (
        words.why(
            ledger.Status.NOT_ARCHIVED,
            policy.Comparison.NEW_PERIOD,
            crawl_id="scotland/20200902_052458",
            superseded_by="scotland/20200920_101010",
        )
        == "lost to 20200920_101010: same month, more data"
    )
    assert words.reason_phrase(policy.Reject.NOT_FINISHED) == "log shows the crawl did not finish"
    assert words.why(ledger.Status.NOT_ARCHIVED, "2020_11_not_distinct", compared_with="uk/20201105_000000") == (
        "the same data as the archive of 2020-11 (uk/20201105_000000)"
    )


def every_decision() -> list[dict]:
    """One decision per status and reason of the vocabulary."""
    decisions = []
    for number, (status, reason) in enumerate(
        [(s, r) for s in (ledger.Status.REJECTED,) for r in policy.Reject]
        + [
            (s, r)
            for s in (ledger.Status.NOT_ARCHIVED, ledger.Status.PENDING)
            for r in (*policy.Comparison, *NOT_DISTINCT)
        ]
        + [(ledger.Status.HELD, r) for r in ledger.Held]
        + [(ledger.Status.TO_ARCHIVE, r) for r in policy.Comparison]
    ):
        decisions.append(
            {
                "id": f"a/2020{number:04d}_000000",
                "source_id": "a",
                "data_version": f"2020{number:04d}_000000",
                "status": status,
                "reason": reason,
                "detail": None,
                "compared_with": "a/20190101_000000",
                "bytes": 10,
            }
        )
    return decisions


def test_the_summary_table_and_the_alert_say_every_reason_in_words():
    decisions = every_decision()
    summary = steps.summarise(decisions, {}, dry_run=False)
    assert {row["reason"] for row in summary["rows"]} >= set(REASONS) - {*ledger.Gone, *ledger.Kept}  # codes stay
    table = steps.format_table(summary)
    assert not bare_codes(table), table
    dry = steps.format_table(steps.summarise(decisions, {}, dry_run=True))
    assert not bare_codes(dry), dry

    alert = alerts.from_run(summary, "http://airflow/run", "kingfisher_archive", "run-1", ["archive_crawl[0]"])
    assert len([item for item in alert["items"] if " is held: " in item]) == len(ledger.Held)
    assert not bare_codes(alert["text"]) and not bare_codes(alert["html"]), alert["text"]


def ledger_rows_of_every_reason() -> list[dict]:
    rows = [{**d, "facts": {"compared_with": d["compared_with"], "bytes": 10}} for d in every_decision()]
    rows.append(
        {
            "source_id": "a",
            "data_version": "20210101_000000",
            "status": ledger.Status.GONE,
            "reason": GONE,
            "facts": {},
        }
    )
    rows.append(
        {
            "source_id": "scotland",
            "data_version": "20200902_052458",
            "status": ledger.Status.NOT_ARCHIVED,
            "reason": policy.Comparison.NEW_PERIOD,
            "facts": {"superseded_by": "scotland/20200920_101010", "bytes": 10},
        }
    )
    return rows


def test_the_catalogue_page_says_every_reason_in_words(client, bucket, tmp_path, monkeypatch):
    page = pytest.importorskip("kingfisher_archive.catalogue_page")
    archive(client, bucket, tmp_path, {"a.json": b"[]"})  # its metadata.json says nothing of why
    put_month(client, bucket, "uk/2020/12/", data=b"orphan")
    waiting = [
        {
            "source_id": "ecuador",
            "data_version": "20210105_000000",
            "collection_id": 7,
            "closed_at": "2020-01-01T00:00:00",
            "loading": "5 of 5 files recorded, 5 still to load",
        }
    ]
    last_run = {
        "run_id": "run-1",
        "failed": ["a/20200001_000000"],
        "failed_tasks": ["archive_crawl[0]"],
        "error": None,
    }
    found = catalogue.catalogue(
        client,
        bucket,
        ledger_rows=ledger_rows_of_every_reason(),
        waiting=waiting,
        last_run=last_run,
        retention_days=90,
    )
    kinds = [item["kind"] for item in found["attention"]]
    assert kinds[:2] == ["failed_crawl", "failed_task"]
    assert kinds.count("held") == len(ledger.Held) and "waiting" in kinds and kinds[-1] == "broken"
    monkeypatch.setattr(page, "load", lambda refresh=False: found)

    body = page.catalogue_page(page=1, refresh=False).body.decode()
    text = re.sub(r"<(style|script)\b.*?</\1>|<[^>]+>", " ", body, flags=re.S)
    assert "Needs attention (" in text and "lost to 20200920_101010: same month, more data" in text
    assert "not recorded in its metadata.json" in text  # scotland 2020-09: no reason in its metadata.json
    assert not bare_codes(text), bare_codes(text)
    assert "month of the data" in text and "month of the runs" in text  # which month each table means


def test_nothing_needs_attention_is_said():
    assert catalogue.attention([], {"waiting": [], "held": [], "kept": []}, None) == []
    page = pytest.importorskip("kingfisher_archive.catalogue_page")
    assert "Nothing: no held crawl" in page.attention_block([])


def test_a_command_in_the_words_is_shown_as_code_on_the_page():
    page = pytest.importorskip("kingfisher_archive.catalogue_page")
    advice = words.HELD_ADVICE[ledger.Held.SMALLER_THAN_ITS_ARCHIVE]
    item = {"kind": "held", "what": "a <held> crawl", "what_to_do": advice}
    block = page.attention_block([item])
    assert "<code>kingfisher-archive audit --verify-data</code>" in block and "`" not in block
    assert "a &lt;held&gt; crawl" in block  # still escaped
