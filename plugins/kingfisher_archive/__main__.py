"""``python -m kingfisher_archive``: restore, list and audit the archive bucket without Airflow.

For the person who needs a crawl back at the Kingfisher host's shell, or wants to look at a bucket, with nothing
but this package and boto3 at hand. Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws/credentials``, an instance role), not from Airflow.

Exit status: 0 success; 1 an error (one line on stderr, no traceback) or, for ``audit``, a problem left unrepaired;
2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from botocore.exceptions import BotoCoreError, ClientError

from kingfisher_archive.audit import audit
from kingfisher_archive.bucket import Bucket, BucketError, MetadataError
from kingfisher_archive.restore import RestoreError, list_months, restore

PROG = "python -m kingfisher_archive"
BUCKET_ENV = "KINGFISHER_ARCHIVE_BUCKET"
ENDPOINT_ENV = "KINGFISHER_ARCHIVE_ENDPOINT_URL"
DATA_DIRECTORY_ENV = "KINGFISHER_ARCHIVE_DATA_DIRECTORY"

DESCRIPTION = """\
Restore, list and audit a Kingfisher Archive bucket (<source>/<YYYY>/<MM>/data.tar.lz4, metadata.json,
scrapy.log). S3 credentials come from boto3's usual chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
~/.aws/credentials or an instance role.

examples:
  python -m kingfisher_archive list scotland --bucket kingfisher-archive
  python -m kingfisher_archive restore scotland 2020 9 /srv/restored --bucket kingfisher-archive
  python -m kingfisher_archive audit --bucket kingfisher-archive --repair
"""

EPILOG = f"""\
environment:
  {BUCKET_ENV:<34} default for --bucket
  {ENDPOINT_ENV:<34} default for --endpoint-url (MinIO, SeaweedFS, ...)
  {DATA_DIRECTORY_ENV:<34} Kingfisher Collect's FILES_STORE: restore always refuses it

exit status: 0 success; 1 an error, or an audit problem left unrepaired; 2 a usage error
"""


def _month(value: str) -> int:
    try:
        month = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a month number") from None
    if not 1 <= month <= 12:
        raise argparse.ArgumentTypeError(f"{value!r} is not a month between 1 and 12")
    return month


def _year(value: str) -> int:
    if len(value) != 4 or not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a four-digit year")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--bucket",
        default=os.environ.get(BUCKET_ENV) or None,
        help=f"the archive bucket (default: ${BUCKET_ENV})",
    )
    common.add_argument(
        "--endpoint-url",
        default=os.environ.get(ENDPOINT_ENV) or None,
        help=f"an S3-compatible server's URL, e.g. http://minio:9000 (default: ${ENDPOINT_ENV}, else AWS)",
    )
    common.add_argument("--json", action="store_true", help="print the result as JSON instead of text")

    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    command = commands.add_parser(
        "restore",
        parents=[common],
        help="restore one month's crawl into a directory, verified, and print the command that reloads it",
        description=(
            "Stream SOURCE's archive of YEAR-MONTH out of the bucket into TARGET/SOURCE/<data version>/ (the log "
            "beside it, as <data version>.scrapy.log), check its bytes, files and checksum against metadata.json, "
            "and print the Kingfisher Process command that loads it. Nothing is written outside TARGET; a crawl "
            "already in TARGET is never overwritten."
        ),
    )
    command.add_argument("source", metavar="SOURCE", help="the source id (Kingfisher Collect's spider name)")
    command.add_argument("year", metavar="YEAR", type=_year, help="the year of the crawl, e.g. 2020")
    command.add_argument("month", metavar="MONTH", type=_month, help="the month of the crawl, 1 to 12")
    command.add_argument("target", metavar="TARGET", help="the directory to restore into (created if missing)")
    command.add_argument(
        "--data-version", help="the crawl (YYYYMMDD_HHMMSS) you expect: fail if the month holds another one"
    )
    command.add_argument(
        "--forbid",
        metavar="DIR",
        action="append",
        default=[],
        help=(
            f"refuse a TARGET inside DIR (repeatable); ${DATA_DIRECTORY_ENV} is always refused, since a crawl "
            "restored into Kingfisher Collect's FILES_STORE would be archived and deleted again"
        ),
    )
    command.set_defaults(func=_restore)

    command = commands.add_parser(
        "list",
        parents=[common],
        help="list a source's archived months",
        description="List every archived month of SOURCE, with what its metadata.json says and any problem.",
    )
    command.add_argument("source", metavar="SOURCE", help="the source id (Kingfisher Collect's spider name)")
    command.set_defaults(func=_list)

    command = commands.add_parser(
        "audit",
        parents=[common],
        help="check the whole bucket; optionally clear broken uploads",
        description=(
            "Walk the whole bucket and report months with missing or unreadable metadata, missing or wrongly "
            "sized archives, and staging objects and multipart uploads older than --stale-after-hours. Exits 1 "
            "if a problem is left unrepaired."
        ),
    )
    command.add_argument(
        "--repair",
        action="store_true",
        help="delete the stale staging objects and abort the stale multipart uploads (and nothing else)",
    )
    command.add_argument(
        "--verify-data",
        action="store_true",
        help="also download every archive and check its bytes, files and checksum (reads the whole bucket)",
    )
    command.add_argument(
        "--stale-after-hours",
        type=float,
        default=24.0,
        help="age after which a staging object or multipart upload counts as broken off (default: 24)",
    )
    command.set_defaults(func=_audit)
    return parser


def make_client(endpoint_url: str | None):
    """An S3 client from boto3's credential chain; path-style addressing for S3-compatible servers."""
    import boto3
    from botocore.config import Config

    from kingfisher_archive.s3 import client_config

    session = boto3.session.Session()
    if endpoint_url:
        region = session.region_name or "us-east-1"
        return session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=client_config(Config(s3={"addressing_style": "path"})),
        )
    return session.client("s3", config=client_config())


def _restore(client, args) -> int:
    forbidden = list(args.forbid)
    if os.environ.get(DATA_DIRECTORY_ENV):
        forbidden.append(os.environ[DATA_DIRECTORY_ENV])
    result = restore(
        client,
        args.bucket,
        args.source,
        args.year,
        args.month,
        args.target,
        forbidden_directories=forbidden,
        data_version=args.data_version,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"Restored {result['source_id']}/{result['data_version']} from {result['archive']}")
    print(
        f"  crawl: {result['directory']} ({result['files']} files, {result['bytes']} bytes; "
        f"verified: {', '.join(result['verified'])})"
    )
    print(f"  log:   {result['log'] or '(the month has no scrapy.log)'}")
    if result["note"]:
        print(f"  note:  {result['note']}")
    print("Load it into Kingfisher Process, from Kingfisher Process's directory:")
    print(f"  {result['reload_command']}")
    return 0


def _list(client, args) -> int:
    rows = list_months(client, args.bucket, args.source)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"No archived months of {args.source} in s3://{args.bucket}/")
        return 0
    header = ("MONTH", "PREFIX", "DATA VERSION", "BYTES", "COMPRESSED", "LOG", "GEN", "PROBLEM")
    table = [header]
    for row in rows:
        table.append(
            (
                f"{row['year']:04d}-{row['month']:02d}",
                row["prefix"],
                row["data_version"] or "-",
                "-" if row["bytes"] is None else str(row["bytes"]),
                "-" if row["compressed_bytes"] is None else str(row["compressed_bytes"]),
                "yes" if row["log"] else "no",
                row["generation"] or "-",
                row["problem"] or "",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0


def _audit(client, args) -> int:
    from datetime import timedelta

    result = audit(
        client,
        args.bucket,
        repair=args.repair,
        verify_data=args.verify_data,
        stale_after=timedelta(hours=args.stale_after_hours),
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for entry in result["problems"]:
            state = " [repaired]" if entry["repaired"] else ""
            detail = f" ({entry['detail']})" if entry["detail"] else ""
            print(f"problem  {entry['key']}: {entry['problem']}{detail}{state}")
        for entry in result["warnings"]:
            detail = f" ({entry['detail']})" if entry["detail"] else ""
            print(f"warning  {entry['key']}: {entry['warning']}{detail}")
        print(
            f"{result['months']} months in s3://{args.bucket}/: {len(result['problems'])} problems "
            f"({result['repaired']} repaired, {result['unrepaired']} unrepaired), {len(result['warnings'])} warnings"
            + (f", {result['verified']} archives verified" if args.verify_data else "")
        )
    return 1 if result["unrepaired"] else 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.bucket:
        parser.error(f"no bucket: pass --bucket or set ${BUCKET_ENV}")
    try:
        client = make_client(args.endpoint_url)
        Bucket(client, args.bucket).check()
        return args.func(client, args)
    except (RestoreError, BucketError, MetadataError, ClientError, BotoCoreError, OSError) as e:
        print(f"{PROG} {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
