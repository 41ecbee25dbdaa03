"""Archive one crawl with the code path of the DAG's archive task, keeping the crawl (so it can run again).

With a 13th argument ``delete``, the crawl is deleted once verified, as the DAG's task does (bench/in_airflow.py
``--memory``: the task's peak memory on a crawl of 1,000,000 files, in a process of its own; bench/run.py
``--delete``).

``--codec NAME`` (anywhere on the line; ``lz4``, ``zstd``, ``zstd:3``, ...) passes the codec, and a level after a
colon, to whatever setting the package offers for them: a field of :class:`Settings` whose name has ``codec`` in
it, and one with ``level`` in it for the level. Without ``--codec`` the package's default is used. A package that
offers no codec setting archives as it always does; asked for another codec than that, this exits 3 with a
one-line message (bench/run.py shows such a column as "not yet").

What inspection saw (bytes, files, fingerprint) comes on the command line, as the DAG's archive task gets it from
the decision: inspecting is another task, and it is not timed here.

Prints a JSON line with what the archive reported. Run by bench/run.py in a process of its own, so that its peak
memory and its temporary files are its own.
"""

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import boto3  # noqa: E402

from kingfisher_archive import archiver  # noqa: E402
from kingfisher_archive.records import CrawlKey  # noqa: E402
from kingfisher_archive.s3.client import client_config  # noqa: E402
from kingfisher_archive.settings import Settings  # noqa: E402

NOT_OFFERED = 3


def with_codec(settings: Settings, codec: str | None) -> Settings:
    """``settings`` with ``codec`` (``NAME[:LEVEL]``) put into the package's codec setting, if it has one."""
    if codec is None:
        return settings
    name, _, level = codec.partition(":")
    fields = {field.name: field for field in dataclasses.fields(Settings)}
    codec_field = next((f for f in fields if "codec" in f), None)
    level_field = next((f for f in fields if "level" in f), None)
    if codec_field is None:
        if name == "lz4" and not level:  # what the package writes when it knows no other codec
            return settings
        print(f"this package offers no codec setting (Settings has none), so it cannot archive as {codec!r}")
        sys.exit(NOT_OFFERED)
    changes = {codec_field: name}
    if level:
        if level_field is None:
            print(f"this package offers no codec level setting (Settings has none), so it cannot use {codec!r}")
            sys.exit(NOT_OFFERED)
        changes[level_field] = int(level)
    return dataclasses.replace(settings, **changes)


argv = sys.argv[1:]
codec = None
if "--codec" in argv:
    at = argv.index("--codec")
    if at + 1 >= len(argv):
        sys.exit("--codec needs a value: lz4, zstd or zstd:LEVEL")
    codec = argv[at + 1]
    del argv[at : at + 2]
endpoint, key_id, secret, bucket, data, logs, source_id, data_version, log, size, files, fingerprint = argv[:12]
settings = with_codec(Settings(bucket, data, logs, "", "STANDARD"), codec)  # no ledger
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
    keep_on_disk=argv[12:13] != ["delete"],
)
result = archiver.archive_crawl(client, settings, request)
print(json.dumps(result))
