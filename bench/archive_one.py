"""Archive one crawl with the code path of the DAG's archive task, keeping the crawl (so it can run again).

Prints a JSON line with what the archive reported. Run by bench/run.py in a process of its own, so that its peak
memory and its temporary files are its own.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import boto3  # noqa: E402

from kingfisher_archive import archiver, crawl  # noqa: E402

endpoint, key_id, secret, bucket, data, logs, source_id, data_version, log = sys.argv[1:10]
client = boto3.client(
    "s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret, region_name="us-east-1"
)
summary = crawl.summarise(crawl.crawl_directory(data, source_id, data_version))
result = archiver.archive_crawl(
    client=client,
    bucket=bucket,
    storage_class="STANDARD",
    data_directory=data,
    logs_directory=logs,
    source_id=source_id,
    data_version=data_version,
    log_path=log,
    expected=archiver.Expected(summary.bytes, summary.files, summary.fingerprint),
    metadata={"files_count": summary.files, "errors_count": 0},
    delete_local_files=False,
)
print(json.dumps(result))
