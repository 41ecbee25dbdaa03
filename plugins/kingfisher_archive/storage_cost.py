"""What storage costs: a dated price table per storage class, the bytes a listing holds in each, the monthly bill
they make, and the early-deletion charge of deleting an object before its class's minimum storage duration.

The default table is Amazon S3's in us-east-1 (USD per GB-month), as of :data:`AS_OF`, from
https://aws.amazon.com/s3/pricing/ (storage only: requests, retrievals, transfers and lifecycle transitions are not
counted), and the minimum storage durations from the S3 user guide's page on storage classes, "minimum storage
duration" (https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-class-intro.html). ``INTELLIGENT_TIERING``
is priced at its Frequent Access tier (what a new object pays for its first 30 days; the estimate is an upper bound
for objects that have moved to its cheaper tiers). An operator in another region, or with other prices, sets the
Airflow Variable :data:`VARIABLE` (the command line: ``$KINGFISHER_ARCHIVE_STORAGE_PRICES``, else the DAGs'
``$AIRFLOW_VAR_KINGFISHER_ARCHIVE_STORAGE_PRICES``); see :func:`parse`.

How it counts, as AWS bills (its pricing page's notes): a GB is 2**30 bytes; a month is 30 days; Standard-IA,
One Zone-IA and Glacier Instant Retrieval bill at least 128 KB (131,072 bytes) per object. A listing entry with no
``StorageClass`` is ``STANDARD``: that is what S3 means by leaving it out. Plain Python: no Airflow, no S3.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kingfisher_archive.errors import PermanentError

#: The Airflow Variable that overrides the price table (JSON; :func:`parse`).
VARIABLE = "kingfisher_archive_storage_prices"
#: What S3 means by a listing entry without ``StorageClass``.
DEFAULT_CLASS = "STANDARD"
#: The date the default prices were read from https://aws.amazon.com/s3/pricing/ (check it: they change rarely).
AS_OF = "2026-12-07"
REGION = "us-east-1"
SOURCE = "https://aws.amazon.com/s3/pricing/"
GB = 2**30
DAYS_PER_MONTH = 30
#: The smallest size a class bills for one object (the pricing page: "minimum billable object size of 128 KB").
MINIMUM_BILLABLE_BYTES = {"STANDARD_IA": 128 * 1024, "ONEZONE_IA": 128 * 1024, "GLACIER_IR": 128 * 1024}

#: USD per GB-month, us-east-1, first 50 TB, as of :data:`AS_OF`.
DEFAULT_PRICES = {
    "STANDARD": 0.023,
    "STANDARD_IA": 0.0125,
    "ONEZONE_IA": 0.01,
    "INTELLIGENT_TIERING": 0.023,  # its Frequent Access tier: the most an object in it pays
    "GLACIER_IR": 0.004,
    "GLACIER": 0.0036,  # Glacier Flexible Retrieval
    "DEEP_ARCHIVE": 0.00099,
}
#: Days an object of the class is billed for at least (deleted, overwritten or moved earlier: the rest is billed).
DEFAULT_MINIMUM_DAYS = {"STANDARD_IA": 30, "ONEZONE_IA": 30, "GLACIER_IR": 90, "GLACIER": 90, "DEEP_ARCHIVE": 180}

#: The keys :data:`VARIABLE`'s JSON object may have.
KEYS = ("region", "as_of", "usd_per_gb_month", "minimum_days")
_CLASS = re.compile(r"[A-Z][A-Z0-9_]*")


class PricesError(PermanentError):
    """The price table's setting cannot be understood; the message names the setting and the bad key or value."""


@dataclass(frozen=True)
class Prices:
    """A price table: USD per GB-month and minimum storage days by storage class, the region and date they hold for."""

    region: str = REGION
    as_of: str = AS_OF
    usd_per_gb_month: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    minimum_days: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MINIMUM_DAYS))
    source: str = SOURCE  # where they come from: AWS's page, or the setting that changed them

    def describe(self) -> str:
        """``us-east-1 prices as of 2026-12-07 (https://aws.amazon.com/s3/pricing/)``."""
        return f"{self.region} prices as of {self.as_of} ({self.source})"


DEFAULT = Prices()


def parse(value: str | None, where: str = f"Airflow Variable {VARIABLE!r}") -> Prices:
    """The price table from its setting's JSON, or :data:`DEFAULT` when it is empty.

    A JSON object with any of :data:`KEYS`: ``region`` and ``as_of`` (strings: what the table says it holds for),
    ``usd_per_gb_month`` (storage class -> USD per GB-month, >= 0) and ``minimum_days`` (storage class -> whole days,
    >= 0). The classes it names replace the defaults' figures; the others keep them. E.g.
    ``{"region": "eu-west-1", "as_of": "2026-11-01", "usd_per_gb_month": {"DEEP_ARCHIVE": 0.0018}}``.

    :param where: the setting, as a message names it.
    :raises PricesError: one line naming ``where`` and the bad key or value.
    """
    if not (value or "").strip():
        return DEFAULT
    try:
        data = json.loads(value)
    except ValueError as e:
        raise PricesError(f"{where} is not JSON ({e}): {value!r}") from None
    if not isinstance(data, dict):
        raise PricesError(f"{where} must be a JSON object with keys among {list(KEYS)}, not {data!r}")
    if unknown := sorted(set(data) - set(KEYS)):
        raise PricesError(f"{where} has {unknown}: the keys it may have are {list(KEYS)}")
    for key in ("region", "as_of"):
        if key in data and (not isinstance(data[key], str) or not data[key].strip()):
            raise PricesError(f"{where} has {key} {data[key]!r}: a non-empty string")
    prices = dict(DEFAULT_PRICES)
    prices.update(_by_class(data, "usd_per_gb_month", where, float, "a price in USD per GB-month >= 0"))
    minimum_days = dict(DEFAULT_MINIMUM_DAYS)
    minimum_days.update(_by_class(data, "minimum_days", where, int, "a whole number of days >= 0"))
    return Prices(
        region=data.get("region", REGION).strip(),
        as_of=data.get("as_of", "(not given)").strip(),
        usd_per_gb_month=prices,
        minimum_days=minimum_days,
        source=where,
    )


def _by_class(data: dict, key: str, where: str, kind: type, what: str) -> dict:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise PricesError(f"{where} has {key} {table!r}: a JSON object of storage class -> {what}")
    for name, number in table.items():
        if not _CLASS.fullmatch(name):
            raise PricesError(f"{where} has {key} {name!r}: not a storage class name (such as DEEP_ARCHIVE)")
        ok = not isinstance(number, bool) and isinstance(number, int if kind is int else (int, float))
        if not ok or number < 0 or (kind is float and not math.isfinite(number)):
            raise PricesError(f"{where} has {key} {name}: {number!r}, not {what}")
    return {name: kind(number) for name, number in table.items()}


def storage_class(entry: dict) -> str:
    """The storage class of a ``list_objects_v2`` entry (or a HEAD's answer): ``STANDARD`` when it names none."""
    return entry.get("StorageClass") or DEFAULT_CLASS


def billable_bytes(storage_class_: str, size: int) -> int:
    """The bytes one object of ``size`` is billed for in its class (at least 128 KB in the IA classes)."""
    return max(size, MINIMUM_BILLABLE_BYTES.get(storage_class_, 0))


def stored(entries) -> dict[str, dict[str, int]]:
    """Objects, bytes and billable bytes by storage class, of ``list_objects_v2`` entries (``Size``,
    ``StorageClass``): ``{"STANDARD_IA": {"objects": 3, "bytes": ..., "billable_bytes": ...}}``."""
    found: dict[str, dict[str, int]] = {}
    for entry in entries:
        name = storage_class(entry)
        add(found, name, int(entry.get("Size") or 0))
    return found


def add(found: dict[str, dict[str, int]], name: str, size: int, objects: int = 1, billable: int | None = None) -> None:
    """Add ``objects`` objects of ``size`` bytes in class ``name`` to a :func:`stored` table."""
    row = found.setdefault(name, {"objects": 0, "bytes": 0, "billable_bytes": 0})
    row["objects"] += objects
    row["bytes"] += size
    row["billable_bytes"] += billable_bytes(name, size) if billable is None else billable


def merge(tables) -> dict[str, dict[str, int]]:
    """:func:`stored` tables added together."""
    found: dict[str, dict[str, int]] = {}
    for table in tables:
        for name, row in (table or {}).items():
            add(found, name, row["bytes"], row["objects"], row["billable_bytes"])
    return found


def bill(by_class: dict[str, dict[str, int]], prices: Prices = DEFAULT) -> dict:
    """The estimated monthly storage bill of a :func:`stored` table, JSON-ready::

        {"region", "as_of", "source", "usd_per_month", "bytes",
         "classes": [{"storage_class", "objects", "bytes", "billable_bytes", "usd_per_gb_month", "usd_per_month"}],
         "unpriced": [storage class, ...]}   # classes the table has no price for: left out of usd_per_month

    Classes most expensive first; ``usd_per_gb_month`` and ``usd_per_month`` are ``None`` for an unpriced class.
    """
    classes = []
    for name, row in by_class.items():
        price = prices.usd_per_gb_month.get(name)
        usd = None if price is None else row["billable_bytes"] / GB * price
        classes.append({"storage_class": name, **row, "usd_per_gb_month": price, "usd_per_month": usd})
    classes.sort(key=lambda c: (-(c["usd_per_month"] or 0), c["storage_class"]))
    return {
        "region": prices.region,
        "as_of": prices.as_of,
        "source": prices.source,
        "usd_per_month": sum(c["usd_per_month"] or 0 for c in classes),
        "bytes": sum(c["bytes"] for c in classes),
        "classes": classes,
        "unpriced": sorted(c["storage_class"] for c in classes if c["usd_per_month"] is None),
    }


def usd(amount: float | None) -> str:
    """Dollars for a person: two decimals, four under a cent (``$0.0042``), ``under $0.0001`` for less but not
    nothing, ``-`` for unknown."""
    if amount is None:
        return "-"
    if 0 < amount < 0.0001:
        return "under $0.0001"
    if 0 < amount < 0.01:
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


def bill_phrase(found: dict) -> str:
    """A :func:`bill` in one line: ``STANDARD_IA 1.2 GiB ($0.02), ...: about $0.03 a month at us-east-1 prices as of
    ... (storage only)``."""
    parts = [f"{c['storage_class']} {_gib(c['bytes'])} ({usd(c['usd_per_month'])})" for c in found["classes"]]
    unpriced = f"; no price for {', '.join(found['unpriced'])}" if found["unpriced"] else ""
    total = usd(found["usd_per_month"])
    return (
        f"{', '.join(parts) or 'nothing'}: {'' if total.startswith('under') else 'about '}{total} a month at "
        f"{found['region']} prices as "
        f"of {found['as_of']} (storage only{unpriced})"
    )


def _gib(size: int) -> str:
    return f"{size / GB:.2f} GiB" if size >= GB / 100 else f"{size / 2**20:.2f} MiB"


@dataclass(frozen=True)
class EarlyDeletion:
    """What deleting one object before its class's minimum storage duration is billed (:func:`early_deletion`)."""

    key: str  # the object, as a person reads it: s3://<bucket>/<key>
    storage_class: str
    bytes: int
    days_stored: int
    minimum_days: int
    days_left: int
    usd: float

    def as_dict(self) -> dict:
        """JSON-ready, for a decision, the ledger and the summary (codes and numbers; :func:`phrase` for words)."""
        return dict(vars(self))


def early_deletion(
    key: str, entry: dict, prices: Prices = DEFAULT, now: datetime | None = None
) -> EarlyDeletion | None:
    """The charge of deleting (or overwriting) the object a ``list_objects_v2`` entry describes (``Size``,
    ``LastModified``, ``StorageClass``) now; ``None`` if its class has no minimum duration, or it has been kept that
    long.

    Prorated as AWS's pricing page says ("a pro-rated charge ... for the remaining days"): the days left of the
    minimum, counting whole days stored (a day begun is not yet stored), times the class's price per GB-month over a
    30-day month, on the object's billable bytes. An object stored 29.5 days of Glacier's 90 has 61 days left.
    """
    name = storage_class(entry)
    minimum = prices.minimum_days.get(name, 0)
    modified = entry.get("LastModified")
    if not minimum or not isinstance(modified, datetime):
        return None
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    days_stored = max(0, (now - modified).days)
    days_left = minimum - days_stored
    if days_left <= 0:
        return None
    size = int(entry.get("Size") or 0)
    price = prices.usd_per_gb_month.get(name, 0.0)
    charge = billable_bytes(name, size) / GB * price * days_left / DAYS_PER_MONTH
    return EarlyDeletion(key, name, size, days_stored, minimum, days_left, charge)


def phrase(early: dict) -> str:
    """An :meth:`EarlyDeletion.as_dict` in words: ``replacing s3://b/k pays $0.42 early-deletion: 61 days left of
    GLACIER's 90-day minimum``."""
    return (
        f"replacing {early['key']} pays {usd(early['usd'])} early-deletion: {early['days_left']} days left of "
        f"{early['storage_class']}'s {early['minimum_days']}-day minimum"
    )
