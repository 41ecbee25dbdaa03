"""What stopped one crawl, and only it, in a run: a :class:`~kingfisher_archive.ledger.Held` reason and a detail.

The steps that finish earlier tries, archive and sweep hold one crawl on an error of its own with a
:class:`Problem`; :func:`describe` says any error in one line.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from kingfisher_archive.bucket import ArchiveFrozenError
from kingfisher_archive.crawl import SetAsideDiffersError
from kingfisher_archive.ledger import Held, Status
from kingfisher_archive.records import Decision, decided
from kingfisher_archive.replacement import RefusedError


@dataclass(frozen=True)
class Problem:
    """What stopped one crawl (and only it) in this run: a :class:`~kingfisher_archive.ledger.Held` reason and a
    detail naming the error, for the ledger, the summary and the alert."""

    id: str
    reason: Held
    detail: str

    @classmethod
    def of(cls, crawl: str, error: BaseException, deleting: bool = False) -> Problem:
        """The reason an error gives: its month's archive cold and thawing, the bucket refusing its month, a set-aside
        crawl that differs, a file system call failing (a deletion's, when ``deleting``), or anything else while
        deleting."""
        if isinstance(error, ArchiveFrozenError):
            reason = Held.ARCHIVE_THAWING
        elif isinstance(error, SetAsideDiffersError):
            reason = Held.SET_ASIDE_DIFFERS
        elif isinstance(error, RefusedError):
            reason = Held.BUCKET_REFUSED
        elif deleting:
            reason = Held.DELETE_FAILED
        else:
            reason = Held.DISK_ERROR
        return cls(crawl, reason, describe(error))

    def decision(self) -> Decision:
        """The crawl's row in the run's decisions (and so in the summary and the alert): ``held``, with why."""
        source_id, data_version = self.id.split("/", 1)
        crawl = {"id": self.id, "source_id": source_id, "data_version": data_version}
        return decided(crawl, Status.HELD, self.reason, detail=self.detail)


def describe(error: BaseException) -> str:
    """An error in one line: an ``OSError``'s call, errno name and path, else its message."""
    if isinstance(error, OSError) and error.errno is not None:
        name = errno.errorcode.get(error.errno, str(error.errno))
        where = " ".join(str(p) for p in (error.filename, error.filename2) if p)
        return f"{name} ({error.strerror}){': ' + where if where else ''}"
    return f"{type(error).__name__}: {error}"
