"""Archive one crawl with the code path of the DAG's archive task, keeping the crawl (so it can run again).

With a 13th argument ``delete``, the crawl is deleted once verified, as the DAG's task does (bench/in_airflow.py
``--memory``: the task's peak memory on a crawl of 1,000,000 files, in a process of its own; bench/run.py
``--delete``).

``--codec NAME`` (anywhere on the line; ``lz4``, ``zstd``, ``zstd:3``, ...) passes the codec, and a level after a
colon, to whatever setting the package offers for them: a field of :class:`Settings` whose name has ``codec`` in
it, and one with ``level`` in it for the level. A package with no codec setting writes the one codec it knows
(zstd if ``compression``, or before it ``archive_format``, has a ``ZstdWriter``, else LZ4); asked for another, this
exits 3 with a one-line message (bench/run.py shows such a column as "not yet"). Without ``--codec`` the package's
defaults are used.

``--plugins DIR`` imports the package from ``DIR`` (a checkout's ``plugins/``) instead of this one's: bench/run.py
compares the archive step of two versions of the package that way (today's LZ4 one and a zstd one).

What inspection saw (bytes, files, fingerprint) comes on the command line, as the DAG's archive task gets it from
the decision: inspecting is another task, and it is not timed here.

Prints a JSON line with what the archive reported. Run by bench/run.py in a process of its own, so that its peak
memory and its temporary files are its own.
"""

import dataclasses
import json
import sys
from pathlib import Path


def option(argv: list[str], name: str) -> str | None:
    """Take ``name VALUE`` out of ``argv``; the value, or None."""
    if name not in argv:
        return None
    at = argv.index(name)
    if at + 1 >= len(argv):
        sys.exit(f"{name} needs a value")
    value = argv[at + 1]
    del argv[at : at + 2]
    return value


argv = sys.argv[1:]
codec = option(argv, "--codec")
plugins = option(argv, "--plugins") or str(Path(__file__).resolve().parents[1] / "plugins")
if not (Path(plugins) / "kingfisher_archive").is_dir():
    sys.exit(f"--plugins {plugins}: no kingfisher_archive package there")
sys.path.insert(0, plugins)

import boto3  # noqa: E402

from kingfisher_archive import archiver  # noqa: E402
from kingfisher_archive.records import CrawlKey  # noqa: E402
from kingfisher_archive.s3.client import client_config  # noqa: E402
from kingfisher_archive.settings import Settings  # noqa: E402

try:
    from kingfisher_archive import compression  # noqa: E402
except ImportError:  # --plugins: a checkout from before the codecs left archive_format, which held them
    from kingfisher_archive import archive_format as compression  # noqa: E402

NOT_OFFERED = 3


def with_codec(settings: Settings, codec: str | None) -> Settings:
    """``settings`` with ``codec`` (``NAME[:LEVEL]``) put into the package's codec setting, if it has one."""
    if codec is None:
        return settings
    name, _, level = codec.partition(":")
    fields = {field.name: field for field in dataclasses.fields(Settings)}
    codec_field = next((f for f in fields if "codec" in f), None)
    level_field = next((f for f in fields if "level" in f), None)
    changes = {}
    if codec_field is None:
        writes = "zstd" if hasattr(compression, "ZstdWriter") else "lz4"
        if name != writes:
            print(f"this package writes {writes} and has no codec setting, so it cannot archive as {codec!r}")
            sys.exit(NOT_OFFERED)
    else:
        changes[codec_field] = name
    if level:
        if level_field is None:
            print(f"this package offers no codec level setting (Settings has none), so it cannot use {codec!r}")
            sys.exit(NOT_OFFERED)
        changes[level_field] = int(level)
    return dataclasses.replace(settings, **changes)


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
