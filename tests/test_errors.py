"""One family of errors: every exception of the package says whether a retry can help, and Airflow acts on that."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from airflow.sdk.exceptions import AirflowFailException

import kingfisher_archive
from kingfisher_archive import tasks
from kingfisher_archive.crawl import CrawlChangedError
from kingfisher_archive.errors import KingfisherArchiveError, PermanentError, RetryableError
from kingfisher_archive.ledger import LedgerError

#: The kind of each error, as docs/operating.md's table of what Airflow retries lists it.
KINDS = {
    "archive_format.RefusedMemberError": PermanentError,
    "bucket.BucketError": RetryableError,
    "bucket.MetadataError": RetryableError,
    "bucket.MonthIncompleteError": RetryableError,
    "bucket.ReservedSourceError": PermanentError,
    "cli_settings.ConnectError": RetryableError,
    "cli_settings.SettingsError": PermanentError,
    "compression.ArchiveFormatError": PermanentError,
    "crawl.CrawlChangedError": PermanentError,
    "crawl.CrawlReadError": RetryableError,
    "crawl.SetAsideDiffersError": PermanentError,
    "bucket.ArchiveFrozenError": RetryableError,  # held, and the thaw asked for makes the next run read it
    "choice.ChecksumFailedError": RetryableError,
    "crawl.UnsafeCrawlError": PermanentError,
    "ledger.ClaimedError": RetryableError,
    "ledger.LedgerCorruptError": PermanentError,
    "ledger.LedgerError": RetryableError,
    "ledger_rebuild.RebuildRefusedError": PermanentError,
    "process.ProcessError": PermanentError,
    "replacement.MonthChangedError": RetryableError,
    "replacement.MonthInconsistentError": PermanentError,
    "replacement.RecoveryError": PermanentError,
    "replacement.RefusedError": PermanentError,
    "replacement.ReplacementInProgressError": RetryableError,
    "restore.RestoreError": RetryableError,
    "restore.FrozenError": RetryableError,  # a copy may be made meanwhile: the next try may read it
    "thaw.TierError": PermanentError,
    "s3.probe.ConditionalWritesError": PermanentError,
    "s3.errors.VerificationError": RetryableError,
    "s3.proof.ColdProofError": RetryableError,  # a failed proof; where a read-back was needed, see below
    # The in-place cold upload only a read-back could prove, withdrawn: a retry would upload it again, only to withdraw
    # it again, until the setting changes.
    "archiver.UnprovableColdUploadError": PermanentError,
    "s3.probe.WriteRefusedError": PermanentError,
    "storage_cost.PricesError": PermanentError,
    "scrapy_log.LogError": RetryableError,
    "settings.ConfigurationError": RetryableError,
}


def defined_errors() -> dict[str, type[BaseException]]:
    """Every exception class the package defines, by ``module.Class`` (relative to the package)."""
    found = {}
    for module_info in pkgutil.walk_packages(kingfisher_archive.__path__, "kingfisher_archive."):
        module = importlib.import_module(module_info.name)
        for name, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{module.__name__.removeprefix('kingfisher_archive.')}.{name}"] = value
    return found


def test_every_error_of_the_package_is_retryable_or_permanent():
    errors = {name: cls for name, cls in defined_errors().items() if not name.startswith("errors.")}
    assert errors, "no exception classes found"
    kinds = {
        name: next(kind for kind in (RetryableError, PermanentError) if issubclass(cls, kind))
        for name, cls in errors.items()
        if issubclass(cls, KingfisherArchiveError)
    }
    assert sorted(kinds) == sorted(errors), "these derive from neither RetryableError nor PermanentError"
    both = [n for n, cls in errors.items() if issubclass(cls, RetryableError) and issubclass(cls, PermanentError)]
    assert both == []
    assert kinds == KINDS


def fails(error: BaseException):
    def task_body():
        raise error

    return tasks.fails_at_once(task_body)


def test_a_permanent_error_fails_the_task_without_retries():
    error = CrawlChangedError("scotland/20200920_101010 changed on disk after it was inspected")
    with pytest.raises(AirflowFailException) as raised:
        fails(error)()
    assert str(raised.value) == str(error)
    assert raised.value.__cause__ is error


@pytest.mark.parametrize("error", [LedgerError("the ledger stayed locked"), OSError(5, "Input/output error")])
def test_a_retryable_or_foreign_error_is_left_to_airflows_retries(error):
    with pytest.raises(type(error)) as raised:
        fails(error)()
    assert raised.value is error


def test_every_task_of_the_adapter_maps_the_errors():
    decorated = {
        name: value.function
        for name, value in vars(tasks).items()
        if callable(getattr(value, "function", None)) and hasattr(value, "override")
    }
    assert {"find_crawls", "archive_crawl", "summarise", "restore_month", "audit_bucket"} <= set(decorated)
    mapping = tasks.fails_at_once(len).__code__
    assert [name for name, function in decorated.items() if function.__code__ is not mapping] == []
