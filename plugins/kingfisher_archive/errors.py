"""The package's errors: one base, and whether another try can help.

Every exception the package raises on purpose derives from :class:`KingfisherArchiveError`, through one of two
kinds, which is all the callers need to know about it:

- :class:`RetryableError`: Airflow retries the task (a later try may succeed);
- :class:`PermanentError`: the Airflow adapter fails the task at once, without retries (a retry would find the same).

The command line reports any of them as one line on stderr (see :mod:`kingfisher_archive.__main__`). Their messages
are written for the operator: what failed, and what to do.
"""

from __future__ import annotations


class KingfisherArchiveError(Exception):
    """An error of Kingfisher Archive; its message names what failed and what to do."""


class RetryableError(KingfisherArchiveError):
    """A later try may succeed: the server, the network, the disk, or another run's claim may have changed by then.

    Airflow retries the task (``KINGFISHER_ARCHIVE_RETRIES``). A class raised for causes of both kinds is one of
    these, so that a passing failure is never left without its retries.
    """


class PermanentError(KingfisherArchiveError):
    """A retry would find the same: fix the input, the settings or the bucket, or trigger a new run.

    Airflow fails the task without retrying it: one failure, one alert, and no hours spent on tries that cannot
    succeed.
    """
