"""The steps of one run, as plain functions, one module per task of the DAG.

=========================  ============================================  ========================================
task in the Airflow UI     module                                        function
=========================  ============================================  ========================================
Find loaded crawls         :mod:`~kingfisher_archive.steps.finding`      :func:`find_and_record` (:func:`find`)
Inspect crawl              :mod:`~kingfisher_archive.steps.inspection`   :func:`inspect`
Decide what to archive     :mod:`~kingfisher_archive.steps.decision`     :func:`decide`, :func:`record_decisions`
Archive crawl              :mod:`~kingfisher_archive.steps.archiving`    :func:`archive_and_record`
Sweep old crawls           :mod:`~kingfisher_archive.steps.retention`    :func:`sweep`
Summarise the run          :mod:`~kingfisher_archive.steps.summary`      :func:`recorded`, :func:`summarise`
=========================  ============================================  ========================================

The summary's table for the task log is :func:`format_table`. Before deciding, and under an archive task's claim,
:mod:`~kingfisher_archive.mending` finishes what earlier tries left half-done. :mod:`kingfisher_archive.tasks`
calls these from Airflow tasks; tests and the command line call them directly.
What crosses from one step to the next is one of the records of :mod:`kingfisher_archive.records`.
"""

from kingfisher_archive.inspection import FUTURE_TOLERANCE
from kingfisher_archive.records import crawl_id
from kingfisher_archive.steps.archiving import archive, archive_and_record
from kingfisher_archive.steps.decision import decide, record_decisions
from kingfisher_archive.steps.finding import MAX_CRAWLS_PER_RUN, find, find_and_record, format_duration
from kingfisher_archive.steps.inspection import inspect
from kingfisher_archive.steps.retention import sweep
from kingfisher_archive.steps.summary import format_table, recorded, summarise

__all__ = [
    "FUTURE_TOLERANCE",
    "MAX_CRAWLS_PER_RUN",
    "archive",
    "archive_and_record",
    "crawl_id",
    "decide",
    "find",
    "find_and_record",
    "format_duration",
    "format_table",
    "inspect",
    "record_decisions",
    "recorded",
    "summarise",
    "sweep",
]
