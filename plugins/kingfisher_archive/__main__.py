"""``python -m kingfisher_archive``: restore, list and audit the archive bucket without Airflow.

For a person at the Kingfisher host's shell, or looking at a bucket, with nothing but this package and boto3;
from a checkout, ``bin/kingfisher-archive``. Its settings are found by :mod:`kingfisher_archive.cli_settings`.
Every error is one line on stderr, naming what was wrong and what to do, never a traceback. Exit status: 0
success; 1 an error, or an audit problem left unrepaired; 2 a usage error (a setting that cannot be understood
included); 75 (EX_TEMPFAIL) a restore of a month in a cold storage class whose copy S3 is still making (asked for,
or joined): run it again later. See docs/restore-and-audit.md, The command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from botocore.exceptions import BotoCoreError, ClientError

from kingfisher_archive import cli_settings, storage_cost
from kingfisher_archive.audit import audit
from kingfisher_archive.bucket import CODECS
from kingfisher_archive.catalogue import catalogue, read_ledger_or_why
from kingfisher_archive.cli_settings import (
    AIRFLOW_BUCKET_ENV,
    AIRFLOW_CONNECTION_ENV,
    AIRFLOW_STORAGE_PRICES_ENV,
    BUCKET_ENV,
    DATA_DIRECTORY_ENV,
    ENDPOINT_ENV,
    STORAGE_PRICES_ENV,
    SettingsError,
)
from kingfisher_archive.errors import KingfisherArchiveError
from kingfisher_archive.ledger import read_state
from kingfisher_archive.restore import RestoreError, check_target, list_months, restore
from kingfisher_archive.settings import (
    DEFAULT_WAITING_WARNING_DAYS,
    LEDGER,
    LEDGER_FILE,
    RETENTION_DAYS,
    WAITING_WARNING_DAYS,
    ledger_path,
)
from kingfisher_archive.thaw import ALL_TIERS, DEFAULT_THAW_DAYS, DEFAULT_TIER, prepare, thaw_progress
from kingfisher_archive.version import __version__

PROG = "python -m kingfisher_archive"
#: Errors that are not ours but are reported the same way, in one line: S3's answers, botocore's, the disk's.
EXTERNAL_ERRORS = (ClientError, BotoCoreError, OSError)

DESCRIPTION = """\
Restore, list and audit a Kingfisher Archive bucket (<source>/<YYYY>/<MM>/data.tar.zst or data.tar.lz4,
metadata.json, scrapy.log).

Where the bucket, endpoint and credentials come from, first found wins: the flags; the KINGFISHER_ARCHIVE_*
environment variables below; the DAGs' Airflow settings in the environment (AIRFLOW_VAR_KINGFISHER_ARCHIVE_BUCKET,
and AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3 for the endpoint and credentials, JSON or URI form, unless an endpoint is
given otherwise); else boto3's usual chain for credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
~/.aws/credentials or an instance role. What came from Airflow's settings is said on stderr.

examples:
  %(prog)s list scotland --bucket kingfisher-archive
  %(prog)s list --bucket kingfisher-archive --json
  %(prog)s restore scotland 2020 9 /srv/restored --bucket kingfisher-archive
  %(prog)s audit --bucket kingfisher-archive --endpoint-url http://minio:9000 --repair
  %(prog)s ledger rebuild --ledger /srv/airflow/kingfisher_archive.sqlite3 --data-directory /srv/data --dry-run
"""

LEDGER_ENV = f"AIRFLOW_VAR_{LEDGER.upper()}"
RETENTION_DAYS_ENV = f"AIRFLOW_VAR_{RETENTION_DAYS.upper()}"
WAITING_WARNING_DAYS_ENV = f"AIRFLOW_VAR_{WAITING_WARNING_DAYS.upper()}"

EPILOG = f"""\
environment:
  {BUCKET_ENV:<38} default for --bucket
  {ENDPOINT_ENV:<38} default for --endpoint-url (MinIO, SeaweedFS, ...)
  {DATA_DIRECTORY_ENV:<38} Kingfisher Collect's FILES_STORE: restore always refuses it
  {AIRFLOW_BUCKET_ENV:<38} the DAGs' bucket Variable: read after the two above
  {AIRFLOW_CONNECTION_ENV:<38} the DAGs' S3 Connection: its endpoint and credentials
  {LEDGER_ENV:<38} list: the DAG's ledger (else $AIRFLOW_HOME/{LEDGER_FILE})
  {STORAGE_PRICES_ENV:<38} list: the storage prices, JSON (else ${AIRFLOW_STORAGE_PRICES_ENV})
  {"AIRFLOW_VAR_KINGFISHER_ARCHIVE_*_DIRECTORY":<38} the DAGs' data and logs directories: restore refuses them

exit status: 0 success; 1 an error, or an audit problem left unrepaired; 2 a usage error; 75 (EX_TEMPFAIL)
  restore: the month is in a cold storage class and its copy is being made: run it again later, or add --wait
"""

#: The exit status of a restore that asked S3 for a cold month's copy (or found one being made): sysexits.h's
#: EX_TEMPFAIL, "a temporary failure: the user is invited to retry".
EX_TEMPFAIL = 75


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, saying where the help is, instead of the usage block and the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _month(value: str) -> int:
    try:
        month = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a month number, 1 to 12") from None
    if not 1 <= month <= 12:
        raise argparse.ArgumentTypeError(f"{value!r} is not a month between 1 and 12")
    return month


def _year(value: str) -> int:
    if len(value) != 4 or not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a four-digit year, e.g. 2020")
    return int(value)


def _hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of hours") from None
    if not hours >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of hours >= 0")
    return hours


def _whole_days(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of days >= 1")
    return int(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not seconds > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds > 0")
    return seconds


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--bucket", help=f"the archive bucket (default: ${BUCKET_ENV}, else ${AIRFLOW_BUCKET_ENV})")
    common.add_argument(
        "--endpoint-url",
        help=(
            f"an S3-compatible server's URL, e.g. http://minio:9000 (default: ${ENDPOINT_ENV}, else the endpoint "
            f"of ${AIRFLOW_CONNECTION_ENV}, else AWS)"
        ),
    )
    common.add_argument(
        "--no-airflow",
        action="store_true",
        help="ignore the DAGs' AIRFLOW_VAR_* and AIRFLOW_CONN_* settings and the ledger under $AIRFLOW_HOME",
    )
    common.add_argument("--json", action="store_true", help="print the result as JSON instead of text")

    parser = _Parser(
        prog=prog, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    command = commands.add_parser(
        "restore",
        parents=[common],
        help="restore one month's crawl into a directory, verified, and print the command that reloads it",
        description=(
            "Stream SOURCE's archive of YEAR-MONTH out of the bucket into TARGET/SOURCE/<data version>/ (the log "
            "beside it, as <data version>.scrapy.log), check its bytes, files and checksum against metadata.json, "
            "and print the Kingfisher Process command that loads it. Nothing is written outside TARGET; a crawl "
            "already in TARGET is never overwritten; a restore that fails removes what it wrote."
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
            f"refuse a TARGET inside DIR (repeatable); ${DATA_DIRECTORY_ENV} and the DAGs' data and logs "
            "directories are always refused, since a crawl restored into Kingfisher Collect's FILES_STORE would be "
            "archived and deleted again"
        ),
    )
    command.add_argument(
        "--tier",
        choices=ALL_TIERS,
        default=DEFAULT_TIER,
        help=(
            "a month in GLACIER or DEEP_ARCHIVE: how fast S3 makes its readable copy (default: %(default)s, the "
            "cheapest: up to 12 h for GLACIER, 48 h for DEEP_ARCHIVE; Standard: 5 h, 12 h; Expedited: GLACIER only, "
            "minutes)"
        ),
    )
    command.add_argument(
        "--days",
        type=_whole_days,
        default=DEFAULT_THAW_DAYS,
        help="a cold month: how many days S3 keeps the readable copy (default: %(default)s)",
    )
    command.add_argument(
        "--wait",
        action="store_true",
        help=f"a cold month: wait until its copy is ready, then restore (else exit {EX_TEMPFAIL} at once)",
    )
    command.add_argument(
        "--poll-seconds",
        type=_seconds,
        help=(
            "with --wait: how often to ask whether the copy is ready (default: "
            f"${cli_settings.AIRFLOW_THAW_POLL_ENV}, else 600)"
        ),
    )
    command.set_defaults(func=_restore, before_connecting=_restore_settings)

    command = commands.add_parser(
        "list",
        parents=[common],
        help="list a source's archived months, or every source's",
        description=(
            "List every archived month of SOURCE, with what its metadata.json says and any problem. Without SOURCE, "
            "print what the Airflow UI's catalogue page shows: first what needs a person (held crawls, crawls "
            "waiting too long for Kingfisher Process, broken months, the last run's failures), then every source "
            "in the bucket with its months, sizes and problems, the crawls waiting, held or kept on the Kingfisher "
            "host, and the bytes archived and freed (--json: the whole catalogue, month by month). The crawls on "
            "the host come from the DAG's ledger, found where the DAG finds it."
        ),
    )
    command.add_argument(
        "source", metavar="SOURCE", nargs="?", help="the source id (Kingfisher Collect's spider name); default: all"
    )
    command.add_argument(
        "--ledger",
        metavar="FILE",
        help=(
            f"the DAG's SQLite ledger, opened read-only; only without SOURCE (default: where the DAG keeps it, "
            f"${LEDGER_ENV}, else $AIRFLOW_HOME/{LEDGER_FILE}, ~/airflow without $AIRFLOW_HOME; "
            "none with --no-airflow)"
        ),
    )
    command.set_defaults(func=_list, before_connecting=_list_settings)

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
        "--sample",
        type=_share,
        metavar="N%",
        help="download and check a random N%% of the months only (a weekly audit of a large bucket)",
    )
    command.add_argument(
        "--stale-after-hours",
        type=_hours,
        default=24.0,
        help="age after which a staging object or multipart upload counts as broken off (default: 24)",
    )
    command.set_defaults(func=_audit)
    _add_ledger_command(commands, common)
    return parser


# -- ledger rebuild ------------------------------------------------------------------------------------------------


def _add_ledger_command(commands, common) -> None:
    command = commands.add_parser(
        "ledger",
        help="rebuild the DAG's ledger from the bucket and the data directory (when it is lost or corrupt)",
        description="Work on the DAG's SQLite ledger. See docs/operating.md, The ledger is lost or corrupt.",
    )
    actions = command.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    rebuild = actions.add_parser(
        "rebuild",
        parents=[common],
        help="write a new ledger from the bucket and the data directory",
        description=(
            "Write a new ledger: every crawl a month's metadata.json names that is not on disk is recorded "
            "archived; crawls on disk get no row (the next run inspects them); <data_version>.deleting directories "
            "are reported with what to do. Run it only while no archive task runs (pause the DAG): the claims in a "
            "lost ledger cannot be read back. A corrupt ledger is moved aside (FILE.corrupt-<time>); a readable one "
            "is replaced only with --force (moved to FILE.old-<time>). Nothing in the bucket or the data directory "
            "is changed."
        ),
    )
    rebuild.add_argument(
        "--ledger",
        metavar="FILE",
        help=(
            f"the DAG's ledger file (default: ${cli_settings.AIRFLOW_LEDGER_ENV}, else "
            "$AIRFLOW_HOME/kingfisher_archive.sqlite3); its directory must exist"
        ),
    )
    rebuild.add_argument(
        "--data-directory",
        metavar="DIR",
        help=(
            f"Kingfisher Collect's FILES_STORE (default: ${DATA_DIRECTORY_ENV}, else "
            f"${cli_settings.AIRFLOW_DATA_DIRECTORY_ENV}); only read"
        ),
    )
    rebuild.add_argument("--dry-run", action="store_true", help="say what would be written, and write nothing")
    rebuild.add_argument("--force", action="store_true", help="replace a readable ledger (moved aside, not deleted)")
    rebuild.set_defaults(func=_ledger_rebuild, before_connecting=_ledger_rebuild_check)


def _ledger_rebuild_check(args) -> None:
    """What can be refused before connecting: the paths, and a ledger that must not be replaced."""
    from kingfisher_archive import ledger_rebuild

    use_airflow = not args.no_airflow
    args.ledger, args.ledger_source = cli_settings.find_ledger(args.ledger, use_airflow=use_airflow)
    args.data_directory, _ = cli_settings.data_directory(args.data_directory, use_airflow=use_airflow)
    args.ledger_state = ledger_rebuild.state_of(args.ledger)
    if not args.dry_run:
        ledger_rebuild.refuse(args.ledger, args.ledger_state, args.force)


def _ledger_rebuild(client, args) -> int:
    from kingfisher_archive import ledger_rebuild

    found = ledger_rebuild.survey(client, args.bucket, args.data_directory)
    state, aside, run = args.ledger_state["state"], None, ledger_rebuild.run_id()
    if not args.dry_run:
        aside = ledger_rebuild.install(args.ledger, found["rows"], run, args.ledger_state, args.force)
    counts = found["counts"]
    result = {
        "ledger": args.ledger,
        "dry_run": args.dry_run,
        "run_id": None if args.dry_run else run,
        "previous": {"state": state, "problem": args.ledger_state["problem"], "moved_to": aside},
        "bucket": args.bucket,
        "data_directory": args.data_directory,
        "archived": [f"{row['source_id']}/{row['data_version']}" for row in found["rows"]],
        "counts": counts,
        "needs_a_person": found["needs_a_person"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    where = f"from s3://{args.bucket}/ and {args.data_directory}"
    if args.dry_run:
        print(f"Dry run: nothing written. A rebuild of {args.ledger} {where} would write:")
        if state == "corrupt":
            print(f"  (the corrupt ledger would be moved to {args.ledger}.corrupt-<time>)")
        elif state == "readable":
            print(
                f"  (the ledger exists and can be read: a rebuild needs --force, which moves it to "
                f"{args.ledger}.old-<time>)"
            )
    else:
        print(f"Rebuilt the ledger {args.ledger} {where} (run id {run}):")
        if aside:
            what = "corrupt" if state == "corrupt" else "old"
            print(f"  the {what} ledger was moved to {aside}")
    print(
        f"  {plural(counts['months'], 'month')} in the bucket: {counts['archived']} recorded archived, "
        f"{counts['on_disk']} whose crawl is still on disk, {counts['unnamed']} naming no crawl (2020 generation)"
    )
    print(
        f"  {plural(counts['crawls_on_disk'], 'crawl')} on disk, left for the next run to inspect; "
        f"{counts['deleting']} being deleted"
    )
    for item in found["needs_a_person"]:
        print(f"needs a person  {item['id']}: {item['problem']}; {item['what_to_do']}")
    if not args.dry_run:
        print("Unpause the DAG when the lines above, if any, are dealt with.")
    return 0


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 month``, ``2 months``."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"


def _forbidden(args) -> list[str]:
    return list(args.forbid) + [path for path, _ in cli_settings.forbidden_directories()]


def _thaw(client, args) -> bool:
    """Ask for a readable copy of a month in a cold class; wait for it with ``--wait``. Whether to restore now."""
    prepared = prepare(client, args.bucket, args.source, args.year, args.month, tier=args.tier, days=args.days)
    if prepared.ready:
        if prepared.keys:
            print(f"{args.command_name}: {prepared.message}", file=sys.stderr, flush=True)
        return True
    if not args.wait:
        if args.json:
            print(json.dumps({"restored": False, "data_key": prepared.data_key, "message": prepared.message}))
        else:
            print(f"{prepared.message}; run this again then, or add --wait")
        return False
    poll = args.poll
    print(f"{args.command_name}: {prepared.message}; waiting (asking every {poll:g} s)", file=sys.stderr, flush=True)
    while True:
        ready, problem = thaw_progress(client, args.bucket, prepared.keys)
        if problem is not None:
            raise RestoreError(problem)
        if ready:
            return True
        time.sleep(poll)


def _restore_settings(args) -> None:
    """With ``--wait``, how often to ask whether a cold month's copy is ready: refused (not a number of seconds)
    before a copy is asked for."""
    args.poll = cli_settings.poll_seconds(args.poll_seconds, use_airflow=not args.no_airflow) if args.wait else None


def _restore(client, args) -> int:
    if not _thaw(client, args):
        return EX_TEMPFAIL
    result = restore(
        client,
        args.bucket,
        args.source,
        args.year,
        args.month,
        args.target,
        forbidden_directories=_forbidden(args),
        data_version=args.data_version,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"Restored {result['source_id']}/{result['data_version']} from {result['archive']}")
    print(
        f"  crawl: {result['directory']} ({plural(result['files'], 'file')}, {plural(result['bytes'], 'byte')}; "
        f"verified: {', '.join(result['verified'])})"
    )
    print(f"  log:   {result['log'] or '(the month has no scrapy.log)'}")
    if result["note"]:
        print(f"  note:  {result['note']}")
    print("Load it into Kingfisher Process, from Kingfisher Process's directory:")
    print(f"  {result['reload_command']}")
    return 0


def _list_settings(args) -> None:
    """What ``list`` reads of its settings, refused (a bad price table) before anything is asked of the bucket."""
    args.prices = cli_settings.storage_prices(use_airflow=not args.no_airflow)


def _list(client, args) -> int:
    if args.source is None:
        return _catalogue(client, args)
    rows = list_months(client, args.bucket, args.source)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"No archived months of {args.source} in s3://{args.bucket}/")
        return 0
    header = ("MONTH", "PREFIX", "DATA VERSION", "BYTES", "COMPRESSED", "CODEC", "LOG", "GEN", "PROBLEM")
    table = [header]
    for row in rows:
        table.append(
            (
                f"{row['year']:04d}-{row['month']:02d}",
                row["prefix"],
                row["data_version"] or "-",
                "-" if row["bytes"] is None else str(row["bytes"]),
                "-" if row["compressed_bytes"] is None else str(row["compressed_bytes"]),
                "-" if row["compressed_bytes"] is None else CODECS[row["data_object"]],
                "yes" if row["log"] else "no",
                row["generation"] or "-",
                row["problem"] or "",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    stored = storage_cost.merge(row["stored"] for row in rows)
    print(f"Stored by class: {storage_cost.bill_phrase(storage_cost.bill(stored, args.prices))}")
    return 0


def _size(value: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)  # not reached


def _ledger(args) -> tuple[str | None, str, bool]:
    """The ledger ``list`` reads: ``(path or None, where it came from, whether it was named)``."""
    if args.ledger:
        return args.ledger, "--ledger", True
    if args.no_airflow:
        return None, "--no-airflow", False
    variable = os.environ.get(LEDGER_ENV, "").strip()
    path = ledger_path(variable)
    if variable:
        return path, f"${LEDGER_ENV}", True
    where = "$AIRFLOW_HOME" if os.environ.get("AIRFLOW_HOME") else "~/airflow, as $AIRFLOW_HOME is not set"
    return path, f"the DAG's default, under {where}", False


def _days(args, name: str, default: int | None) -> int | None:
    """A whole number of days from the DAG's Variable in the environment (unless --no-airflow), else ``default``."""
    value = "" if args.no_airflow else os.environ.get(name, "").strip()
    try:
        return int(value) if int(value) >= 1 else default
    except ValueError:
        return default


def _catalogue(client, args) -> int:
    path, where, named = _ledger(args)
    state = {"crawls": [], "waiting": [], "last_run": None}
    note = None
    if path and os.path.isfile(path):
        rows, why = read_ledger_or_why(path)
        if why:  # the bucket is still worth listing
            note = why
            print(f"{getattr(args, 'command_name', 'list')}: warning: {why}", file=sys.stderr, flush=True)
        else:
            state = read_state(path)
    elif named:
        raise RestoreError(f"no ledger at {path} ({where}): give the DAG's kingfisher_archive_ledger file")
    elif path:
        note = f"no ledger at {path} ({where}): crawls on the Kingfisher host are not shown; give --ledger FILE"
    else:
        note = "no ledger (--no-airflow): crawls on the Kingfisher host are not shown; give --ledger FILE"
    found = catalogue(
        client,
        args.bucket,
        ledger_rows=state["crawls"],
        waiting=state["waiting"],
        last_run=state["last_run"],
        retention_days=_days(args, RETENTION_DAYS_ENV, None),
        waiting_warning_days=_days(args, WAITING_WARNING_DAYS_ENV, DEFAULT_WAITING_WARNING_DAYS),
        prices=args.prices,
    )
    found["ledger"] = path if path and not note else None
    found["ledger_note"] = note
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print_attention(found["attention"])
    print()
    if not found["sources"]:
        print(f"No archived months in s3://{args.bucket}/")
    else:
        table = [("SOURCE", "MONTHS", "FIRST", "LAST", "BYTES", "COMPRESSED", "PROBLEMS")]
        for source in found["sources"]:
            periods = [row["period"] for row in source["months"]]
            table.append(
                (
                    source["source_id"],
                    str(len(set(periods))),
                    periods[0] if periods else "-",
                    periods[-1] if periods else "-",
                    str(source["bytes"]),
                    str(source["compressed_bytes"]),
                    str(len(source["problems"])),
                )
            )
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
        for line in table:
            print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        for source in found["sources"]:
            for problem in source["problems"]:
                print(f"problem  {source['source_id']} {problem}")
    on_disk = found["on_disk"]
    if note:
        print(note)
    else:
        print(f"On the Kingfisher host (ledger {path}, {where}):")
        if not any(on_disk.values()):
            print("  nothing waiting, held or kept")
    for item in on_disk["waiting"]:
        late = "; longer than the warning" if item["overdue"] else ""
        print(
            f"waiting  {item['id']}: for Kingfisher Process to load its files, {item['waited_days']:g} days since it "
            f"was closed{late} (collection {item['collection_id']}: {item['detail'] or 'no detail'})"
        )
    for item in on_disk["held"]:
        print(f"held     {item['id']}: {item['why']}")
    for item in on_disk["kept"]:
        swept = f"; swept from {item['swept_from']}" if item["swept_from"] else ""
        print(f"kept     {item['id']}: {item['outcome']}, {item['why']}{swept}")
    totals = found["totals"]
    print(
        f"{plural(len(found['sources']), 'source')}, "
        f"{plural(sum(len(s['months']) for s in found['sources']), 'month')} in s3://{args.bucket}/: "
        f"{_size(totals['bytes_archived'])} archived as {_size(totals['compressed_bytes'])}"
        + (f"; {_size(totals['bytes_freed'])} freed on the Kingfisher host" if not note else "")
    )
    print(f"Stored by class: {storage_cost.bill_phrase(found['storage'])}")
    return 0


def print_attention(items: list[dict]) -> None:
    """The "needs attention" block: what needs a person and what to do, or that nothing does."""
    if not items:
        print("Needs attention: nothing.")
        return
    print(f"Needs attention ({plural(len(items), 'item')}):")
    for item in items:
        print(f"  - {item['what']}")
        print(f"    what to do: {item['what_to_do']}")


def _share(value: str) -> float:
    """``--sample``'s ``N%`` (or ``N``), as a share between 0 and 1."""
    try:
        share = float(value.strip().removesuffix("%")) / 100
    except ValueError:
        share = 0
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a percentage above 0 and at most 100, such as 10%")
    return share


def _audit(client, args) -> int:
    from datetime import timedelta

    result = audit(
        client,
        args.bucket,
        repair=args.repair,
        verify_data=args.verify_data,
        sample=args.sample,
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
        for entry in result["thawing"]:
            print(f"thawing  {entry['key']}: not verified yet: {entry['detail']}")
        print(
            f"{plural(result['months'], 'month')} in s3://{args.bucket}/: "
            f"{plural(len(result['problems']), 'problem')} "
            f"({result['repaired']} repaired, {result['unrepaired']} unrepaired), "
            f"{plural(len(result['warnings']), 'warning')}"
            + f", {plural(result['at_rest'], 'object')} checked at rest"
            + (f", {plural(result['verified'], 'archive')} verified" if args.verify_data or args.sample else "")
            + (f", {plural(len(result['thawing']), 'cold archive')} thawing" if result["thawing"] else "")
        )
    return 1 if result["unrepaired"] else 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The command line; ``prog`` defaults to how it was started (the ``kingfisher-archive`` script, or ``-m``)."""
    if prog is None:
        started_as = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        prog = PROG if started_as in ("", "__main__.py", "-c") else started_as
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    command = args.command_name = f"{prog} {args.command}"
    try:
        if args.command == "restore":  # what can be refused before connecting
            check_target(args.target, _forbidden(args))
        if (before_connecting := getattr(args, "before_connecting", None)) is not None:
            before_connecting(args)
        found = cli_settings.resolve(args.bucket, args.endpoint_url, use_airflow=not args.no_airflow)
        args.bucket = found.bucket
        client = cli_settings.connect(found)
        if note := found.note():
            print(f"{command}: {note}", file=sys.stderr, flush=True)
        return args.func(client, args)
    except SettingsError as e:
        print(f"{command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining while it flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (KingfisherArchiveError, *EXTERNAL_ERRORS) as e:
        print(f"{command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
