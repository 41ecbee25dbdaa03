"""The *Decide what to archive* task: the retention policy applied per source and month, against the bucket."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from functools import partial

from kingfisher_archive import bucket as layout
from kingfisher_archive import crawl as crawls
from kingfisher_archive import policy
from kingfisher_archive.bucket import ArchivedCrawl, Bucket, MetadataError
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.records import CrawlKey, Decision, Inspection, Plan
from kingfisher_archive.settings import Settings

logger = logging.getLogger(__name__)

#: A crawl left on disk with fewer bytes than the archive of it: never archived again over that archive.
SMALLER_THAN_ITS_ARCHIVE = "smaller_than_its_archive"


def decide(settings: Settings, bucket: Bucket, inspected: list[Inspection]) -> dict:
    """Apply the retention policy per source and month against the bucket; return decisions and the work.

    Two rules make the outcome independent of what failed before:

    - a month whose ``metadata.json`` names a crawl being decided (still on disk, so never verified and deleted:
      a try that died half-way, or left metadata it could not withdraw) is *repaired*: that crawl is decided as if
      the month were empty, and archiving it rewrites the month; it is never compared with itself. Unless fewer
      bytes are left on disk than the archive holds: then a deletion was interrupted (or files were removed) after
      the archive was verified, and rewriting the month would replace the only complete copy with what is left.
      Such a crawl is ``held``, and the archive kept;
    - a crawl that loses to (or is not distinct from) a crawl this run chose is ``pending``, not settled: it is
      settled as ``not_archived`` only once the winner's archive is verified in the bucket, and if that never
      happens the next run decides the whole month again.
    """
    by_source: dict[str, list[Inspection]] = defaultdict(list)
    decisions: list[Decision] = []
    for facts in inspected:
        if facts.get("error"):
            decisions.append(_decision(facts, "held", "inspection_failed", detail=facts["error"]))
        elif facts["reject_reason"]:
            decisions.append(_decision(facts, "rejected", facts["reject_reason"], detail=facts.get("detail")))
        else:
            by_source[facts["source_id"]].append(facts)

    plans = []
    for source_id, source_facts in sorted(by_source.items()):
        facts_by_id = {f["id"]: f for f in source_facts}
        repairs: dict[str, str] = {}  # crawl id -> the month prefix whose metadata names it

        def month(y: int, m: int, source_id=source_id, facts_by_id=facts_by_id, repairs=repairs):
            found = bucket.archived(source_id, y, m)
            if found is not None and found.id in facts_by_id:
                repairs[found.id] = layout.month_prefix(source_id, y, m)
                return None
            return found.candidate() if found else None

        try:
            for facts in list(source_facts):
                if detail := _smaller_than_its_archive(bucket, facts):
                    logger.warning("%s: %s", facts["id"], detail)
                    decisions.append(_decision(facts, "held", SMALLER_THAN_ITS_ARCHIVE, detail=detail))
                    source_facts.remove(facts)
                    del facts_by_id[facts["id"]]
            candidates = [_candidate(settings, f) for f in source_facts]
            outcome = policy.decide_source(candidates, month, partial(bucket.candidate_before, source_id))
        except MetadataError as e:
            logger.error("%s: cannot compare with the bucket: %s", source_id, e)
            for facts in source_facts:
                decisions.append(_decision(facts, "held", "unreadable_archive_metadata", detail=str(e)))
            continue
        except (OSError, crawls.UnsafeCrawlError) as e:
            # Computing a checksum read the crawl and failed: hold this source, decide the others.
            logger.error("%s: cannot compute a checksum to compare: %s", source_id, e)
            for facts in source_facts:
                decisions.append(_decision(facts, "held", "checksum_failed", detail=str(e)))
            continue
        winners = {d.id: d for d in outcome if d.archive}
        by_id = {d.id: d for d in outcome}
        for decision in outcome:
            facts = facts_by_id[decision.id]
            extra = {"compared_with": decision.compared_with, "superseded_by": decision.superseded_by}
            if decision.archive:
                status = "to_archive"
                if decision.id in repairs:
                    extra["detail"] = f"repairs s3://{bucket.name}/{repairs[decision.id]}: its metadata.json names it"
            else:
                winner = _final_winner(decision, by_id)
                status = "pending" if winner in winners else "not_archived"
                details = [f"superseded by {decision.superseded_by}"] if decision.superseded_by else []
                if status == "pending":
                    extra["pending_on"] = winner
                    details.append(f"settled once {winner} is archived")
                extra["detail"] = "; ".join(details) or None
            decisions.append(_decision(facts, status, decision.reason, **extra))
            if decision.archive:
                key = CrawlKey.of(facts)
                held = bucket.archived(source_id, key.year, key.month)  # read by the policy already
                plans.append(_plan(facts, decision, month_state(held)))
    decisions.sort(key=lambda d: d["id"])
    counts = Counter(d["status"] for d in decisions)
    logger.info("Decided %d crawls: %s", len(decisions), ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return {"decisions": decisions, "to_archive": plans}


def _smaller_than_its_archive(bucket: Bucket, facts: Inspection) -> str | None:
    """Why a crawl must not rewrite its month: the month's archive is of this crawl, and holds more than is left."""
    key = CrawlKey.of(facts)
    archived = bucket.archived(facts["source_id"], key.year, key.month)
    if archived is None or archived.id != facts["id"] or facts["bytes"] >= archived.bytes:
        return None
    return (
        f"s3://{bucket.name}/{archived.key} names this crawl with {archived.bytes} bytes, and {facts['bytes']} are "
        "left on disk (a deletion that was interrupted, or files removed since it was archived): the archive is kept, "
        "and what is on disk is left for an operator to check and delete"
    )


def _final_winner(decision: policy.Decision, by_id: dict[str, policy.Decision]) -> str | None:
    """The crawl this one finally lost to: the end of its chain of "superseded by", or what it was compared with."""
    winner = decision.superseded_by or decision.compared_with
    seen = set()
    while winner in by_id and by_id[winner].superseded_by and winner not in seen:
        seen.add(winner)
        winner = by_id[winner].superseded_by
    return winner


def _candidate(settings: Settings, facts: Inspection) -> policy.Candidate:
    key = CrawlKey.of(facts)
    directory = key.directory(settings.data_directory)

    def checksum() -> str:
        logger.info("%s: computing the checksum to compare with an earlier month", facts["id"])
        facts["checksum"] = crawls.checksum(directory)
        return facts["checksum"]

    return policy.Candidate(
        id=facts["id"],
        year=key.year,
        month=key.month,
        bytes=facts["bytes"],
        files_count=facts["files_count"],
        errors_count=facts["errors_count"],
        checksum=facts.get("checksum"),
        _checksum_of=checksum,
    )


def _decision(facts: Inspection, status: str, reason: str, **extra) -> Decision:
    return {
        "id": facts["id"],
        "source_id": facts["source_id"],
        "data_version": facts["data_version"],
        "collection_id": facts.get("collection_id"),
        "status": status,
        "reason": reason,
        "bytes": facts.get("bytes", 0),
        "files": facts.get("files", 0),
        "files_count": facts.get("files_count", 0),
        "errors_count": facts.get("errors_count", 0),
        "checksum": facts.get("checksum"),
        **{k: v for k, v in extra.items()},
    }


def month_state(archived: ArchivedCrawl | None) -> str | None:
    """What a month of the bucket holds, in a few words: what a decision saw, and what archiving must find again."""
    if archived is None:
        return None
    return f"{archived.id} ({archived.bytes} bytes, checksum {archived.checksum or 'none'})"


def _plan(facts: Inspection, decision: policy.Decision, month_held: str | None) -> Plan:
    return {
        "id": facts["id"],
        "source_id": facts["source_id"],
        "data_version": facts["data_version"],
        "log": facts["log"],
        # What the crawl's month held when it was chosen: archiving refuses to replace anything else.
        "month_held": month_held,
        "expected": {
            "bytes": facts["bytes"],
            "files": facts["files"],
            "fingerprint": facts["fingerprint"],
            "checksum": facts.get("checksum"),
        },
        "metadata": {
            "files_count": facts["files_count"],
            "errors_count": facts["errors_count"],
            "collection_id": facts.get("collection_id"),
            "reason": decision.reason,
            "compared_with": decision.compared_with,
        },
    }


def record_decisions(ledger: Ledger, decisions: list[Decision], run_id: str | None) -> None:
    rows = []
    for d in decisions:
        facts = {
            k: d[k] for k in ("bytes", "files", "files_count", "errors_count", "checksum") if d.get(k) is not None
        }
        for k in ("detail", "compared_with", "superseded_by", "pending_on"):
            if d.get(k):
                facts[k] = d[k]
        rows.append({**d, "facts": facts})
    ledger.record(rows, run_id)
