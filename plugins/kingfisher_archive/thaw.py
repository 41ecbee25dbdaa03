"""Make a month in a cold storage class readable before it is restored: ask S3 for a copy, and say when it is ready.

A month whose data object is in ``GLACIER`` or ``DEEP_ARCHIVE`` cannot be read until S3 has made a temporary copy
of it (a *thaw*, :mod:`kingfisher_archive.s3.thawing`), which takes hours: :func:`prepare` asks for one and says
when it will be ready, and :func:`thaw_progress` says whether it is. The restore DAG's first task
(``tasks.ThawMonthOperator``, then its ``ThawTrigger``) and ``kingfisher-archive restore`` call them before
:func:`kingfisher_archive.restore.restore`. Nothing here touches S3 or a database at import: the restore DAG's file
imports the tiers each time the DAG is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from kingfisher_archive.bucket import LOG, METADATA
from kingfisher_archive.crawl import source_id_problem
from kingfisher_archive.errors import PermanentError
from kingfisher_archive.restore import RestoreError, month_metadata, s3_url
from kingfisher_archive.s3 import thawing
from kingfisher_archive.s3.errors import MISSING, error_code


class TierError(PermanentError):
    """The retrieval tier asked for is not one the object's storage class offers."""


#: The retrieval tier a thaw asks for unless told otherwise: the cheapest, and the slowest.
DEFAULT_TIER = "Bulk"
#: How many days a thawed copy lasts unless told otherwise (a copy is billed as Standard storage while it lasts).
DEFAULT_THAW_DAYS = 7
#: Every retrieval tier S3 has, fastest first (each class offers some: :data:`thawing.TIERS`).
ALL_TIERS = ("Expedited", "Standard", "Bulk")


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Preparation:
    """What :func:`prepare` found and asked for a month: whether it can be restored now, and what to tell a person."""

    data_key: str  # the month's data object
    storage_class: str  # the data object's
    keys: tuple[str, ...]  # the month's objects in a cold class (data, log), each asked for a copy
    ready: bool  # every object of the month can be read now
    message: str  # one line: what was found and asked, and when the copy is ready
    tier: str | None = None  # what was asked: None if nothing was
    days: int | None = None
    asked_at: datetime | None = None
    hours: float | None = None  # the most a thaw takes, by class and tier (thawing.HOURS)
    joined: bool = False  # a thaw of the month's data was already running or done when asked


def _hours(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:g} h"


def prepare(
    client,
    bucket_name: str,
    source_id: str,
    year: int,
    month: int,
    *,
    tier: str = DEFAULT_TIER,
    days: int = DEFAULT_THAW_DAYS,
    now: datetime | None = None,
) -> Preparation:
    """Make a month readable for :func:`~kingfisher_archive.restore.restore`: ask S3 for a copy of each of its
    objects in a cold class.

    ``metadata.json`` is never cold (the package writes it in a class that reads at once), so the month's data key
    is found as for a restore; the data object, and ``scrapy.log`` if it is cold too, are asked for a copy lasting
    ``days`` days by ``tier`` (:func:`kingfisher_archive.s3.thawing.request_thaw`: a thaw already running or done
    is joined, not an error). A month in no cold class is ready at once and nothing is asked.

    :raises TierError: if the data object's class does not offer ``tier`` (naming both).
    :raises RestoreError: if the month is not archived or the bucket cannot be read.
    """
    problem = source_id_problem(source_id)
    if problem:
        raise RestoreError(problem)
    if tier not in ALL_TIERS:
        raise TierError(f"the retrieval tier {tier!r} does not exist: choose one of {', '.join(ALL_TIERS)}")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise TierError(f"a thawed copy lasts a whole number of days >= 1, not {days!r}")
    _, archived = month_metadata(client, bucket_name, source_id, year, month)
    data_key = archived.data_key
    found = {}
    for key in (data_key, archived.prefix + LOG):
        try:
            found[key] = thawing.thaw_state(client, bucket_name, key)
        except ClientError as e:
            if error_code(e) in MISSING and key != data_key:
                continue  # a month without a log
            if error_code(e) in MISSING:
                raise RestoreError(
                    f"{s3_url(bucket_name, data_key)} is missing (the month has {METADATA} but no archive)"
                ) from None
            raise RestoreError(f"cannot read {s3_url(bucket_name, key)}: {error_code(e)}") from None
    data = found[data_key]
    where = f"{s3_url(bucket_name, data_key)} is in {data.storage_class}"
    cold = tuple(key for key, thaw in found.items() if thawing.is_cold(thaw.storage_class))
    if not cold:
        return Preparation(data_key, data.storage_class, (), True, f"{where}: readable now")
    try:
        thawing.check_tier(data.storage_class, tier)
    except ValueError as e:
        raise TierError(f"{s3_url(bucket_name, data_key)}: {e}") from None
    asked_at = (now or datetime.now(UTC)).astimezone(UTC)
    after = {}
    for key in cold:
        try:
            after[key] = thawing.request_thaw(client, bucket_name, key, days, tier)
        except ValueError as e:  # the log in a class that does not offer the tier: the data's tier decides
            raise TierError(f"{s3_url(bucket_name, key)}: {e}") from None
        except ClientError as e:
            raise RestoreError(f"cannot ask for a copy of {s3_url(bucket_name, key)}: {error_code(e)}") from None
    ready = all(thaw.readable for thaw in after.values())
    hours = max(thawing.HOURS.get((found[key].storage_class, tier), 0) for key in cold)
    joined = data.state in (thawing.THAWING, thawing.THAWED)
    if ready:
        expires = [thaw.expires for thaw in after.values() if thaw.expires is not None]
        until = f" until {_utc(min(expires))}" if expires else ""
        message = f"{where}: a copy is readable{until} (asked to last {days} days from {_utc(asked_at)})"
    else:
        before = "joined a thaw already running; " if data.state == thawing.THAWING else ""
        message = (
            f"{where}: {before}asked for a copy ({tier}, ready within {_hours(hours)}, asked {_utc(asked_at)}, "
            f"lasting {days} days)"
        )
    return Preparation(data_key, data.storage_class, cold, ready, message, tier, days, asked_at, hours, joined)


def thaw_progress(client, bucket_name: str, keys) -> tuple[bool, str | None]:
    """Whether every object of ``keys`` (a :attr:`Preparation.keys`) can be read now: ``(ready, problem)``.

    ``problem`` says why waiting longer cannot help: an object that is gone, or cold again with no thaw running
    (its copy expired before it was read, or the thaw was never made).
    """
    ready = True
    for key in keys:
        try:
            found = thawing.thaw_state(client, bucket_name, key)
        except ClientError as e:
            if error_code(e) in MISSING:
                return False, f"{s3_url(bucket_name, key)} is gone: it was deleted or replaced while its copy was made"
            raise
        if found.state == thawing.FROZEN:
            return False, (
                f"{s3_url(bucket_name, key)} is in {found.storage_class} with no copy and no thaw running: the copy "
                "expired before it was read, or the thaw was not made; trigger the restore again (and give a "
                "longer 'days')"
            )
        ready = ready and found.readable
    return ready, None
