"""Which crawls deserve archiving: Open Contracting's data retention policy as pure functions.

Keep newly collected data that is complete, finished, clean, distinct and periodic (one crawl per source per
calendar month). No I/O: the caller passes the facts in, and a callable for the one expensive fact (a crawl's
checksum), asked for only when a decision depends on it. See docs/retention-policy.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from kingfisher_archive.vocabulary import phrased


class Reject(StrEnum):
    """Why a crawl is not even compared, in the order the rules are checked (the older tool's strings)."""

    __new__ = phrased

    NO_DATA_DIRECTORY = "no_data_directory", "its crawl directory is gone"
    UNSAFE_DATA_DIRECTORY = "unsafe_data_directory", "its crawl directory is, or holds, a link or a special file"
    FUTURE_DATA_VERSION = "future_data_version", "its data version is in the future: not a real crawl time"
    NO_DATA_FILES = "no_data_files", "it collected no data"
    NO_LOG_FILE = "no_log_file", "no Scrapy log matches the crawl"
    NOT_FINISHED = "not_finished", "log shows the crawl did not finish"
    NOT_COMPLETE = "not_complete", "a sample or a subset (a spider argument limited it)"
    NOT_CLEAN_ENOUGH = "not_clean_enough", "more than half of its files failed"


REJECT_REASONS = tuple(Reject)


class Comparison(StrEnum):
    """The outcome of comparing an acceptable crawl with its month's choice or an earlier month's archive.

    Two more name the earlier month they were compared with: :func:`not_distinct`.
    """

    __new__ = phrased

    NEW_PERIOD = "new_period", "first of its month, and distinct from the latest earlier archive"
    SAME_PERIOD = "same_period", "same month, without enough more data or fewer errors"
    SAME_PERIOD_MORE_BYTES = "same_period_more_bytes", "same month, at least 1.5 times the bytes"
    SAME_PERIOD_MORE_FILES = "same_period_more_files", "same month, more bytes and at least 1.5 times the files"
    SAME_PERIOD_MORE_CLEAN = "same_period_more_clean", "same month, more bytes and fewer errors"


def not_distinct(year: int, month: int, maybe: bool = False) -> str:
    """``<YYYY>_<M>_not_distinct`` (identical by checksum) or ``..._not_distinct_maybe`` (less clean, no bigger)."""
    return f"{year}_{month}_not_distinct{'_maybe' if maybe else ''}"


_NOT_DISTINCT = re.compile(r"(?P<year>\d{4})_(?P<month>\d{1,2})_not_distinct(?P<maybe>_maybe)?")


def parse_not_distinct(reason: str | None) -> tuple[int, int, bool] | None:
    """``(year, month, maybe)`` of a :func:`not_distinct` reason; ``None`` for any other reason."""
    match = _NOT_DISTINCT.fullmatch(reason or "")
    return (int(match["year"]), int(match["month"]), bool(match["maybe"])) if match else None


def not_distinct_phrase(year: int, month: int, maybe: bool = False) -> str:
    """The words of :func:`not_distinct`'s reasons."""
    if maybe:
        return f"no better than the archive of {year:04d}-{month:02d}: less clean, no more files, no more bytes"
    return f"the same data as the archive of {year:04d}-{month:02d}"


#: A crawl is clean when at most this share of its files failed.
MAX_ERROR_RATE = 0.5
#: Within a month, a later crawl must be this much bigger (in bytes or files) to replace the choice...
GROWTH = 1.5


def error_rate(files_count: int, errors_count: int) -> float:
    """FileError / (File + FileError); 0 for a log with neither (such a log is "no data", see reject_reason)."""
    total = files_count + errors_count
    return errors_count / total if total else 0.0


def reject_reason(
    *,
    data_directory_exists: bool,
    data_directory_safe: bool = True,
    future: bool = False,
    data_files: int,
    log_found: bool,
    finished: bool,
    subset: bool,
    files_count: int,
    errors_count: int,
) -> Reject | None:
    """The first reason in :class:`Reject` that applies to a crawl, or ``None`` if none does."""
    if not data_directory_exists:
        return Reject.NO_DATA_DIRECTORY
    if not data_directory_safe:
        return Reject.UNSAFE_DATA_DIRECTORY
    if future:
        return Reject.FUTURE_DATA_VERSION
    if data_files == 0:
        return Reject.NO_DATA_FILES
    if not log_found:
        return Reject.NO_LOG_FILE
    if files_count == 0 and errors_count == 0:
        return Reject.NO_DATA_FILES  # the log records no File and no error: nothing was collected
    if not finished:
        return Reject.NOT_FINISHED
    if subset:
        return Reject.NOT_COMPLETE
    if error_rate(files_count, errors_count) > MAX_ERROR_RATE:
        return Reject.NOT_CLEAN_ENOUGH
    return None


@dataclass
class Candidate:
    """A crawl (or an archive already in the bucket) as the retention comparison sees it.

    ``files_count``, ``errors_count`` and ``checksum`` may be unknown (``None``) for archives written in 2020,
    whose metadata has no files count and an MD5 instead of an XXH3 checksum: a rule that needs an unknown
    value does not fire, so an unknown never makes two crawls look identical.
    """

    id: str  # "<source_id>/<data_version>"
    year: int
    month: int
    bytes: int
    files_count: int | None
    errors_count: int | None
    checksum: str | None = None
    archived: bool = False  # True for what the bucket already holds
    _checksum_of: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, key, facts: Mapping, *, archived: bool = False, checksum_of: Callable[[], str] | None = None):
        """The one way a crawl on disk (its inspection) or an archive (its metadata) becomes a candidate.

        :param key: gives ``id``, ``year`` and ``month``: a :class:`~kingfisher_archive.records.CrawlKey`, or the
            archive itself (its month is where it lies).
        :param facts: ``bytes``, and ``files_count``, ``errors_count`` and ``checksum`` where known.
        :param checksum_of: computes the checksum when a comparison first needs it.
        """
        return cls(
            id=key.id,
            year=key.year,
            month=key.month,
            bytes=facts["bytes"],
            files_count=facts.get("files_count"),
            errors_count=facts.get("errors_count"),
            checksum=facts.get("checksum"),
            archived=archived,
            _checksum_of=checksum_of,
        )

    def get_checksum(self) -> str | None:
        """The checksum, computed on first use when the candidate knows how."""
        if self.checksum is None and self._checksum_of is not None:
            self.checksum = self._checksum_of()
        return self.checksum

    @property
    def period(self) -> tuple[int, int]:
        return (self.year, self.month)


def compare(crawl: Candidate, best: Candidate) -> tuple[bool, str]:
    """Whether ``crawl`` should replace ``best`` (the month's choice, or the latest earlier month's archive)."""
    if best.period == crawl.period:
        if crawl.bytes > best.bytes:
            if crawl.bytes >= best.bytes * GROWTH:
                return True, Comparison.SAME_PERIOD_MORE_BYTES
            if (
                crawl.files_count is not None
                and best.files_count is not None
                and crawl.files_count >= best.files_count * GROWTH
            ):
                return True, Comparison.SAME_PERIOD_MORE_FILES
            if (
                crawl.errors_count is not None
                and best.errors_count is not None
                and crawl.errors_count < best.errors_count
            ):
                return True, Comparison.SAME_PERIOD_MORE_CLEAN
        return False, Comparison.SAME_PERIOD

    if best.period > crawl.period:
        raise ValueError(f"{crawl.id} cannot be compared with the later {best.id}")

    less_clean = (
        crawl.errors_count is not None and best.errors_count is not None and crawl.errors_count > best.errors_count
    )
    no_more_files = best.files_count is None or (
        crawl.files_count is not None and crawl.files_count <= best.files_count
    )
    if less_clean and no_more_files and crawl.bytes <= best.bytes:
        return False, not_distinct(best.year, best.month, maybe=True)
    # ``best`` may be a crawl this run chose for an earlier month (a backlog seen at once), whose checksum is then
    # computed too: compared as its archive would be by a later run.
    if (best_checksum := best.get_checksum()) is not None and crawl.get_checksum() == best_checksum:
        return False, not_distinct(best.year, best.month)
    return True, Comparison.NEW_PERIOD


@dataclass(frozen=True)
class Verdict:
    """The policy's outcome for one crawl: archive it, or keep it on disk, and why (the decide step records it)."""

    id: str
    archive: bool
    reason: str
    compared_with: str | None = None  # the id of the crawl or archive it was measured against
    superseded_by: str | None = None  # set when it won a comparison, then lost to a later crawl of its month


def named_by_its_month(crawl: str, reason: str | None, compared_with: str | None, rival: str | None) -> Verdict:
    """The verdict for a crawl its month's ``metadata.json`` names (archived, and not yet deleted).

    :param reason: why it was archived, as its ``metadata.json`` says (``None``: not said).
    :param compared_with: what it was measured against then.
    :param rival: a crawl of its month this run chose over the month's archive, if any.
    :returns: archive it (again) for the reason it was chosen; or, when ``rival`` won its month, not, superseded by it.
    """
    if rival is not None:
        return Verdict(crawl, False, Comparison.SAME_PERIOD, compared_with=crawl, superseded_by=rival)
    return Verdict(crawl, True, reason or Comparison.SAME_PERIOD, compared_with=compared_with)


def decide_source(
    crawls: Iterable[Candidate],
    archived_month: Callable[[int, int], Candidate | None],
    archived_before: Callable[[int, int], Candidate | None],
) -> list[Verdict]:
    """Decide every (non-rejected) crawl of one source, oldest first.

    :param archived_month: ``(y, m)`` -> what the bucket holds for that month.
    :param archived_before: ``(y, m)`` -> the latest archive of an earlier month.

    Crawls chosen here count as their month's archives for later months, as they will be by the time anyone looks.
    A crawl that won its comparison, then lost to a later crawl of its month, is not archived and names the winner.
    """
    ordered = sorted(crawls, key=lambda c: c.id)
    chosen: dict[tuple[int, int], Candidate] = {}
    decisions: dict[str, Verdict] = {}
    for crawl in ordered:
        best = chosen.get(crawl.period) or archived_month(*crawl.period)
        if best is None:
            earlier_chosen = [c for period, c in chosen.items() if period < crawl.period]
            best = max(earlier_chosen, key=lambda c: c.period) if earlier_chosen else None
            in_bucket = archived_before(*crawl.period)
            if in_bucket is not None and (best is None or in_bucket.period > best.period):
                best = in_bucket
        if best is None:
            archive, reason = True, Comparison.NEW_PERIOD
        else:
            archive, reason = compare(crawl, best)
        if archive:
            previous = chosen.get(crawl.period)
            if previous is not None:
                old = decisions[previous.id]
                decisions[previous.id] = Verdict(
                    previous.id, False, old.reason, compared_with=old.compared_with, superseded_by=crawl.id
                )
            chosen[crawl.period] = crawl
        decisions[crawl.id] = Verdict(crawl.id, archive, reason, compared_with=best.id if best else None)
    return [decisions[c.id] for c in ordered]
