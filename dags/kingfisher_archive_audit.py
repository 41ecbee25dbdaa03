"""
# Kingfisher Archive: audit

Walks the whole bucket and reports, by key: a month whose `metadata.json` is missing or unreadable, whose
data object (the one `metadata.json` names: `data.tar.zst`, or `data.tar.lz4` before 2.0) is missing or not the size
its metadata says, or has a second data object beside it, leftovers under `staging/` older than a day, and
incomplete multipart uploads older than a day. The run fails when it finds a problem it did not repair.

- `repair` deletes the stale staging objects and aborts the stale multipart uploads, and nothing else.
- `verify_data` downloads every archive, decompresses it and recomputes its checksum (slow: it reads the whole
  bucket).
"""

from airflow.sdk import Param, dag

from kingfisher_archive import tasks


@dag(
    dag_id="kingfisher_archive_audit",
    dag_display_name="Kingfisher Archive: audit",
    description="Check that the bucket still matches its metadata; optionally clean stale uploads",
    schedule="@weekly",
    start_date=tasks.START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["kingfisher"],
    params={
        "repair": Param(
            False,
            type="boolean",
            title="Repair",
            description="Delete staging objects and abort multipart uploads older than a day. Nothing else.",
        ),
        "verify_data": Param(
            False,
            type="boolean",
            title="Verify data",
            description="Download and decompress every archive and recompute its checksum (reads the whole bucket).",
        ),
        "sample_percent": Param(
            0,
            type="integer",
            minimum=0,
            maximum=100,
            title="Sample (%)",
            description="Without Verify data: download and check this share of the months, drawn at random (0: none). "
            "Every run compares the CRC32 the server stores with metadata.json's without downloading.",
        ),
    },
)
def kingfisher_archive_audit():
    tasks.audit_bucket()


kingfisher_archive_audit()
