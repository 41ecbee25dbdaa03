"""
# Kingfisher Archive: restore

Gets one month's archived crawl back out of the bucket, to reload it into Kingfisher Process.

Trigger it with the **source id** and the **year and month** (or the crawl's **data version**, `YYYYMMDD_HHMMSS`),
and a **target directory** under the restore directory, the Airflow Variable `kingfisher_archive_restore_directory`
(relative to it, or an absolute path inside it; empty: the restore directory itself). It streams the month's
`data.tar.zst` (or, for a month written before 2.0, `data.tar.lz4`) through zstd (or LZ4) and tar into
`<target>/<source_id>/<data_version>/` (no temporary copy), puts the log beside it as `<data_version>.scrapy.log`,
and verifies the restored files against `metadata.json` (bytes, files, and the XXH3 checksum when the archive has
one). The task log ends with the Kingfisher Process command to run next.

It writes nothing outside the restore directory and never through a symbolic link, and refuses to run while the
Variable is unset; it never restores over a crawl already in the target. It refuses to restore into Kingfisher
Collect's data or logs directories (the files would be archived again), and refuses hostile archives (absolute
paths, `..`, links, device files).

A month whose archive is in a cold storage class (`GLACIER`, `DEEP_ARCHIVE`) cannot be read until S3 has made a
temporary copy of it. The first task, *Make a cold month readable*, asks for that copy (the **retrieval tier**:
Bulk, the default and cheapest, Standard, or Expedited where the class offers it; the copy lasts **days** days) and
then *defers*: a trigger in the triggerer, holding no worker slot, asks S3 every
`kingfisher_archive_thaw_poll_seconds` seconds (an Airflow Variable, default 600) whether the copy is ready, and the
restore runs when it is. S3 takes up to 12 h (GLACIER, Bulk) or 48 h (DEEP_ARCHIVE, Bulk) to make it. A thaw
already running (asked by someone else, or by `kingfisher-archive restore`) is joined. A month in any other class
goes straight through. See docs/restore-and-audit.md, Restoring from a cold storage class.
"""

from airflow.sdk import Param, dag

from kingfisher_archive import tasks
from kingfisher_archive.thaw import ALL_TIERS, DEFAULT_THAW_DAYS, DEFAULT_TIER


@dag(
    dag_id="kingfisher_archive_restore",
    dag_display_name="Kingfisher Archive: restore",
    description="Restore one month's archived crawl from the bucket and verify it",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["kingfisher"],
    params={
        "source_id": Param("", type="string", minLength=1, title="Source id", description="The spider's name."),
        "year": Param(None, type=["null", "integer"], title="Year", description="The archive's year."),
        "month": Param(
            None, type=["null", "integer"], minimum=1, maximum=12, title="Month", description="The archive's month."
        ),
        "data_version": Param(
            "",
            type=["null", "string"],
            title="Data version",
            description="Instead of year and month: the crawl's YYYYMMDD_HHMMSS, which the month must hold.",
        ),
        "tier": Param(
            DEFAULT_TIER,
            type="string",
            enum=list(ALL_TIERS),
            title="Retrieval tier (cold months only)",
            description=(
                "For a month in GLACIER or DEEP_ARCHIVE: how fast S3 makes the readable copy. Bulk (cheapest; up to "
                "12 h for GLACIER, 48 h for DEEP_ARCHIVE), Standard (up to 5 h, 12 h), Expedited (GLACIER only, "
                "minutes; refused for DEEP_ARCHIVE). Ignored for any other class."
            ),
        ),
        "days": Param(
            DEFAULT_THAW_DAYS,
            type="integer",
            minimum=1,
            title="Days the copy lasts (cold months only)",
            description=(
                "How long S3 keeps the readable copy of a cold month (billed as Standard storage meanwhile); "
                "the restore itself needs it only until it is done."
            ),
        ),
        "target_directory": Param(
            "",
            type="string",
            title="Target directory",
            description=(
                "Where to restore, relative to the Airflow Variable kingfisher_archive_restore_directory (empty: "
                "that directory itself), or an absolute path inside it; no '..', no symbolic links."
            ),
        ),
    },
)
def kingfisher_archive_restore():
    thaw = tasks.ThawMonthOperator(
        task_id="thaw_month", task_display_name="Make a cold month readable", queue=tasks.HOST_QUEUE
    )
    thaw >> tasks.restore_month()


kingfisher_archive_restore()
