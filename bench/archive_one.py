"""Archive one crawl with the code path of the DAG's archive task, keeping the crawl (so it can run again).

With a 13th argument ``delete``, the crawl is deleted once verified, as the DAG's task does (bench/in_airflow.py
``--memory``: the task's peak memory on a crawl of 1,000,000 files, in a process of its own).

What inspection saw (bytes, files, fingerprint) comes on the command line, as the DAG's archive task gets it from
the decision: inspecting is another task, and it is not timed here.

Prints a JSON line with what the archive reported. Run by bench/run.py in a process of its own, so that its peak
memory and its temporary files are its own.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import boto3  # noqa: E402

from kingfisher_archive import archiver  # noqa: E402
from kingfisher_archive.records import CrawlKey  # noqa: E402
from kingfisher_archive.s3.client import client_config  # noqa: E402
from kingfisher_archive.settings import Settings  # noqa: E402

endpoint, key_id, secret, bucket, data, logs, source_id, data_version, log, size, files, fingerprint = sys.argv[1:13]
client = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=key_id,
    aws_secret_access_key=secret,
    region_name="us-east-1",
    config=client_config(),
)
request = archiver.ArchiveRequest(
    CrawlKey.of({"source_id": source_id, "data_version": data_version}),
    log_path=log,
    expected=archiver.Expected(int(size), int(files), fingerprint),
    metadata={"files_count": int(files), "errors_count": 0},
    keep_on_disk=sys.argv[13:14] != ["delete"],
)
result = archiver.archive_crawl(client, Settings(bucket, data, logs, "", "STANDARD"), request)  # no ledger
print(json.dumps(result))
