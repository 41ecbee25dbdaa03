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
"""

from airflow.sdk import Param, dag

from kingfisher_archive import tasks


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
    tasks.restore_month()


kingfisher_archive_restore()
