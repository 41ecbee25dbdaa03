"""The *Inspect crawl* task: everything the decision needs to know about one crawl, without reading its data.

What a crawl's directory and log say is :mod:`kingfisher_archive.inspection`'s (the sweep asks it again of an old
crawl); this step is the task's entry to it.
"""

from __future__ import annotations

from datetime import datetime

from kingfisher_archive import inspection
from kingfisher_archive.records import CrawlRef, Inspection
from kingfisher_archive.settings import Settings


def inspect(settings: Settings, crawl: CrawlRef, now: datetime | None = None) -> Inspection:
    """One found crawl's :class:`~kingfisher_archive.records.Inspection`: see
    :func:`kingfisher_archive.inspection.inspect`, whose contract it keeps (it never raises for a problem of this
    crawl alone)."""
    return inspection.inspect(settings, crawl, now)
