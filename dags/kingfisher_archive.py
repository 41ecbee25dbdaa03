"""
# Kingfisher Archive

Moves the crawls that [Kingfisher Collect](https://kingfisher-collect.readthedocs.io/) downloaded into the S3
bucket, once [Kingfisher Process](https://kingfisher-process.readthedocs.io/) has loaded them, and deletes them
from the Kingfisher host. The bucket keeps **one good crawl per source per calendar month** (tar +
zstd, `data.tar.zst`, or LZ4 for months written before 2.0, `data.tar.lz4`; `metadata.json`, the Scrapy log)
under `<source_id>/<YYYY>/<MM>/`.

Each run:

1. **Find loaded crawls**: checks the settings, the bucket (and that its server honours conditional writes) and
   Kingfisher Process, then lists the crawls still on disk whose files Process has finished loading. A crawl
   Process is still loading is left alone and listed in the summary as waiting for Kingfisher Process.
2. **Inspect crawl** (one per crawl): matches its Scrapy log and applies the reject reasons
   (`no_data_files`, `no_log_file`, `not_finished`, `not_complete`, `not_clean_enough`, ...).
3. **Decide what to archive**: compares each acceptable crawl with what its month (or the latest earlier month)
   holds in the bucket, and records every decision and its reason in the ledger.
4. **Archive crawl** (one per chosen crawl): streams it to the bucket, verifies it there, then deletes the
   crawl directory and its log. If another run (a backfill) is archiving into the same month, it waits, then
   decides again against what the month holds. Each archive is an event of the asset alias `kingfisher_archive`.
5. **Sweep old crawls** (opt-in, Variable `kingfisher_archive_retention_days`): deletes crawls that Process loaded
   and this package decided not to keep, once older than that many days (the old 90-day cron).
6. **Summarise the run**: one line per crawl with its outcome, reason and figures, and what was swept; fails if a
   chosen crawl was not archived.

Everything else (rejected crawls, crawls that lost to a better one, crawls not yet loaded) stays on disk.

**Try a dry run first**: trigger with `dry_run` on to see what would happen; nothing is written or deleted.
Any failed task can be cleared and run again.

Settings: Connections `kingfisher_process` and `kingfisher_archive_s3`; Variables `kingfisher_archive_bucket`,
`kingfisher_archive_data_directory`, `kingfisher_archive_logs_directory`, and optionally
`kingfisher_archive_ledger`, `kingfisher_archive_storage_class`, `kingfisher_archive_retention_days` and
`kingfisher_archive_waiting_warning_days` (see docs/installing.md, Settings). A run still going after 12 hours
(`KINGFISHER_ARCHIVE_RUN_TIMEOUT_SECONDS`) is failed and reported through the notifier.
"""

import os
from datetime import timedelta

from airflow.sdk import Param, dag

from kingfisher_archive import tasks


@dag(
    dag_id="kingfisher_archive",
    dag_display_name="Kingfisher Archive",
    description="Archive loaded Kingfisher Collect crawls to S3, verify them, delete them locally",
    schedule="@daily",
    start_date=tasks.START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["kingfisher"],
    dagrun_timeout=tasks.RUN_TIMEOUT,
    on_failure_callback=tasks.run_timed_out,
    default_args={
        "retries": int(os.environ.get("KINGFISHER_ARCHIVE_RETRIES", "2")),
        "retry_delay": timedelta(seconds=int(os.environ.get("KINGFISHER_ARCHIVE_RETRY_DELAY_SECONDS", "300"))),
    },
    params={
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Find, inspect and decide, and report what would be archived, without writing to the "
            "bucket, deleting anything or recording decisions. Recommended before a first real run.",
        ),
        "reevaluate": Param(
            False,
            type="boolean",
            title="Re-evaluate settled crawls",
            description="Ignore the decisions cached in the ledger and inspect every crawl still on disk again "
            "(the old --invalidate-cache).",
        ),
    },
)
def kingfisher_archive():
    crawls = tasks.find_crawls()
    inspected = tasks.inspect_crawl.expand(crawl=crawls)
    chosen = tasks.decide(inspected)
    archived = tasks.archive_crawl.expand(plan=chosen)
    swept = tasks.sweep_old_crawls(archived)  # after the archives: it reads what they recorded in the ledger
    # ALL_DONE: a failed task's XCom as argument would fail it unreported, so it reads decisions, waiting, outcomes
    tasks.summarise(swept)


kingfisher_archive()
