"""Archive one crawl in a process of its own, so a test can kill it or take its privileges away.

    python -m tests.harness.archive_once < job.json

``job.json`` holds ``settings`` (the Settings fields), ``plan`` (as the decide step makes it), ``s3``
(endpoint_url, access_key, secret_key) and optionally ``die``: ``"before_metadata"`` or ``"after_metadata"``, and
the process SIGKILLs itself just before ``metadata.json`` is sent, or right after it reached the bucket (before
anything local is deleted), as a worker killed by the OOM killer or a reboot would be.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import boto3

from kingfisher_archive import steps
from kingfisher_archive.s3.client import client_config
from kingfisher_archive.settings import Settings


def main() -> None:
    job = json.load(sys.stdin)
    client = boto3.client(
        "s3",
        endpoint_url=job["s3"]["endpoint_url"],
        aws_access_key_id=job["s3"]["access_key"],
        aws_secret_access_key=job["s3"]["secret_key"],
        region_name="us-east-1",
        config=client_config(),  # as the archive task's client
    )
    if job.get("die"):
        sending = {}

        def note(params, **kwargs):
            sending["metadata"] = params.get("Key", "").endswith("/metadata.json")
            if sending["metadata"] and job["die"] == "before_metadata":
                os.kill(os.getpid(), signal.SIGKILL)

        def die(**kwargs):
            if sending.get("metadata") and job["die"] == "after_metadata":
                os.kill(os.getpid(), signal.SIGKILL)

        client.meta.events.register("before-parameter-build.s3.PutObject", note)
        client.meta.events.register("after-call.s3.PutObject", die)
    result = steps.archive(Settings(**job["settings"]), client, job["plan"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
