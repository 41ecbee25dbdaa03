"""The Airflow adapter: the only module of the package that imports Airflow.

Each task reads the Variables and Connections when it runs (never at import, so the DAG file parses without a
database or network), calls one step of :mod:`kingfisher_archive.steps` (which does the task's ledger work too),
and returns a small JSON-ready value for XCom. Decisions go to the ledger as well, because XComs are wiped when a
task is retried and the ledger is not.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from airflow.sdk import (
    Asset,
    AssetAlias,
    BaseHook,
    BaseOperator,
    TriggerRule,
    Variable,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException

# Airflow 3.3 has no airflow.sdk home for triggers: the triggerer's own base classes are the ones to subclass.
from airflow.triggers.base import BaseTrigger, TriggerEvent

from kingfisher_archive import alerts, errors, metrics, steps
from kingfisher_archive.archive_result import ArchiveResult, Kind
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.crawl import format_data_version
from kingfisher_archive.ledger import Ledger, LedgerCorruptError
from kingfisher_archive.process import loaded_collections
from kingfisher_archive.records import CrawlKey, CrawlRef, Inspection, Plan, Swept
from kingfisher_archive.s3.client import client_config, encrypt_writes
from kingfisher_archive.s3.versions import describe_bucket
from kingfisher_archive.settings import (
    ENCRYPTION,
    PROCESS_CONNECTION,
    RETENTION_DAYS,
    S3_CONNECTION,
    ConfigurationError,
    Settings,
    encryption,
    load,
    probe_writes,
    restore_directory,
    thaw_poll_seconds,
)

logger = logging.getLogger(__name__)

#: Archive tasks read the disk and fill the network; two at a time keeps the Kingfisher host responsive.
MAX_PARALLEL_ARCHIVES = 2
#: Bounds parallel uploads across all runs (a backfill and the daily run together); create it with
#: ``airflow pools set kingfisher_archive 2 "Kingfisher archive uploads"``.
POOL = "kingfisher_archive"
#: The Celery queue of a worker on the Kingfisher Collect host. Every task that reads or deletes the crawls' files,
#: or reads the ledger (a SQLite file on that host; the summary reads it too), must run there; only the audit, which
#: reads the bucket alone, can run anywhere.
HOST_QUEUE = os.environ.get("KINGFISHER_ARCHIVE_QUEUE") or "default"
#: How long an archive task waits for a month that another run is archiving into (then it decides again).
CLAIM_WAIT_SECONDS = float(os.environ.get("KINGFISHER_ARCHIVE_CLAIM_WAIT_SECONDS", "21600"))
#: Every month archived is an asset event of this alias: ``s3://<bucket>/<source_id>/<YYYY>/<MM>`` with the crawl's
#: data version, bytes and checksum as its extra, so that a DAG can be scheduled on new archives.
ARCHIVES = AssetAlias("kingfisher_archive")
#: The first logical date of the scheduled DAGs (fixed, UTC).
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
#: The XCom key under which "decide" leaves every crawl's decision for "summarise".
DECISIONS = "decisions"
#: The XCom key under which "find_crawls" leaves the crawls Kingfisher Process is still loading, for "summarise".
WAITING = "waiting"


def fails_at_once(function):
    """Fail the task without retries on a :class:`~kingfisher_archive.errors.PermanentError`: a retry would find
    the same. Every other error (a :class:`~kingfisher_archive.errors.RetryableError`, S3's, the disk's) is left to
    Airflow's retries."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except errors.PermanentError as e:
            raise AirflowFailException(str(e)) from e

    return run


def _variable(name: str) -> str | None:
    return Variable.get(name, default=None)


def load_settings(on_kingfisher_host: bool = True) -> Settings:
    return load(_variable, on_kingfisher_host=on_kingfisher_host)


def _check_connection(conn_id: str) -> None:
    try:
        BaseHook.get_connection(conn_id)
    except Exception as e:  # the SDK raises its own not-found error; any failure means the same to the operator
        raise ConfigurationError(f"Airflow Connection {conn_id!r} is not defined or unreadable ({e})") from e


def s3_encryption() -> dict:
    """The server-side encryption every write and copy carries (the Variable, else the connection's extra)."""
    extra = BaseHook.get_connection(S3_CONNECTION).extra_dejson.get("encryption")
    return encryption(_variable(ENCRYPTION), extra)


def s3_client():
    """A boto3 S3 client from the ``kingfisher_archive_s3`` connection (``extra.endpoint_url`` for other servers),
    sending the configured encryption on every write and copy."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    _check_connection(S3_CONNECTION)
    hook = S3Hook(aws_conn_id=S3_CONNECTION)
    client = hook.get_client_type(region_name=hook.region_name, config=client_config(hook.config))
    encrypt_writes(client, s3_encryption())
    return client


def process_connection():
    """A DB-API connection to Kingfisher Process (an empty password lets libpq's ~/.pgpass apply)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    _check_connection(PROCESS_CONNECTION)
    try:
        return PostgresHook(postgres_conn_id=PROCESS_CONNECTION).get_conn()
    except Exception as e:
        raise ConfigurationError(
            f"Cannot connect to Kingfisher Process with the Airflow Connection {PROCESS_CONNECTION!r}: {e}"
        ) from e


def _bucket(settings: Settings, client=None) -> Bucket:
    return Bucket(client or s3_client(), settings.bucket, settings.storage_class, S3_CONNECTION)


def _checked_client(settings: Settings):
    """A client of the settings' bucket, once the bucket answers (:meth:`Bucket.check`: its name and credentials)."""
    client = s3_client()
    _bucket(settings, client).check()
    return client


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _params() -> tuple[dict, str | None]:
    context = get_current_context()
    return context["params"], context.get("run_id")


def _label(crawl: CrawlRef | Plan) -> None:
    """Name the mapped task instance after its crawl in the UI (see ``map_index_template``)."""
    get_current_context()["crawl_label"] = f"{crawl['source_id']}/{crawl['data_version']}"


@task(task_display_name="Find loaded crawls", queue=HOST_QUEUE)
@fails_at_once
def find_crawls() -> list[CrawlRef]:
    """Check the settings, the bucket and Kingfisher Process; list the loaded crawls still on disk."""
    context = get_current_context()
    params = context["params"]
    settings = load_settings()
    bucket = _bucket(settings)
    bucket.check()
    logger.info("Bucket %s: %s", bucket.name, describe_bucket(bucket.client, bucket.name))
    if not params.get("dry_run"):
        probe_writes(bucket.client, bucket.name, s3_encryption())
    # A run for a past logical date (a backfill) considers only what was loaded by the end of its data interval;
    # a manual run without a logical date considers everything loaded.
    loaded_before = context.get("data_interval_end")
    connection = process_connection()
    try:
        found = loaded_collections(connection, loaded_before)
    finally:
        connection.close()
    logger.info("Kingfisher Process schema %s; collections closed before %s", found.schema, loaded_before or "now")
    dry_run = bool(params.get("dry_run"))
    ledger = None if dry_run and not os.path.exists(settings.ledger) else Ledger(settings.ledger)
    reevaluate = bool(params.get("reevaluate"))
    work = steps.find_and_record(
        settings, found.loaded, found.loading, ledger, reevaluate, loaded_before, context.get("run_id"), dry_run
    )
    context["ti"].xcom_push(key=WAITING, value=work["waiting"])
    return work["crawls"]


@task(task_display_name="Inspect crawl", map_index_template="{{ crawl_label }}", queue=HOST_QUEUE)
@fails_at_once
def inspect_crawl(crawl: CrawlRef) -> Inspection:
    """Match the crawl's log, count its files and bytes, and apply the reject reasons."""
    _label(crawl)
    return steps.inspect(load_settings(), crawl)


@task(task_display_name="Decide what to archive", trigger_rule=TriggerRule.NONE_FAILED, queue=HOST_QUEUE)
@fails_at_once
def decide(inspected: list[Inspection] | None = None) -> list[Plan]:
    """Compare each acceptable crawl with its month and the latest earlier month in the bucket.

    Returns the crawls to archive (the archive task is mapped over them); every crawl's decision goes to the
    ledger and, for the summary, to the XCom key ``decisions``. First finishes what earlier tries left half-done
    (deletions of verified crawls, replacements of a month).
    """
    context = get_current_context()
    params, run_id = context["params"], context.get("run_id")
    settings = load_settings()
    ledger = None if params.get("dry_run") else Ledger(settings.ledger)  # a dry run mends nothing either
    decided = steps.decide(settings, _bucket(settings), list(inspected or []), ledger, run_id)
    context["ti"].xcom_push(key=DECISIONS, value=decided["decisions"])
    if ledger is None:
        logger.info("Dry run: %d crawls would be archived; nothing recorded", len(decided["to_archive"]))
        return []
    steps.record_decisions(ledger, decided["decisions"], run_id)
    return decided["to_archive"]


@task(
    task_display_name="Archive crawl",
    map_index_template="{{ crawl_label }}",
    max_active_tis_per_dagrun=MAX_PARALLEL_ARCHIVES,
    pool=POOL,
    queue=HOST_QUEUE,
    outlets=[ARCHIVES],
)
@fails_at_once
def archive_crawl(plan: Plan) -> ArchiveResult:
    """Stream the crawl to the bucket, verify it there, then delete it locally; announce the month's new archive."""
    _label(plan)
    _, run_id = _params()
    settings = load_settings()
    ledger = Ledger(settings.ledger)
    result = steps.archive_and_record(settings, s3_client(), plan, ledger, run_id, claim_wait=CLAIM_WAIT_SECONDS)
    if result["kind"] in (Kind.ARCHIVED, Kind.KEPT):  # a month's new archive
        prefix = result["prefix"].rstrip("/")
        event = {"data_version": plan["data_version"], "bytes": result["bytes"], "checksum": result.get("checksum")}
        asset = Asset(uri=f"s3://{settings.bucket}/{prefix}/", name=f"{settings.bucket}/{prefix}", group="kingfisher")
        get_current_context()["outlet_events"][ARCHIVES].add(asset, extra=event)
    return result


@task(task_display_name="Sweep old crawls (local retention)", queue=HOST_QUEUE, trigger_rule=TriggerRule.NONE_FAILED)
@fails_at_once
def sweep_old_crawls(archived: Sequence[ArchiveResult] | None = None) -> list[Swept]:
    """Opt-in: delete old crawls that were loaded but not archived (Variable kingfisher_archive_retention_days).

    ``archived`` (the archive tasks' results) only orders the sweep after them: it reads what they recorded in the
    ledger, which also holds what earlier runs recorded.
    """
    context = get_current_context()
    params, run_id = context["params"], context.get("run_id")
    settings = load_settings()
    if not settings.retention_days:
        logger.info("Local retention is off (Variable %r is not set)", RETENTION_DAYS)
        return []
    if params.get("dry_run") and not os.path.exists(settings.ledger):
        return []
    connection = process_connection()
    try:
        collections = loaded_collections(connection).loaded
    finally:
        connection.close()
    loaded = {(c.source_id, format_data_version(c.data_version)) for c in collections}
    now = datetime.now(UTC).replace(tzinfo=None)
    ledger = Ledger(settings.ledger)
    return steps.sweep(settings, ledger, loaded, now, bool(params.get("dry_run")), run_id, bucket=_bucket(settings))


@task(task_display_name="Summarise the run", trigger_rule=TriggerRule.ALL_DONE, queue=HOST_QUEUE)
@fails_at_once
def summarise(swept: list[Swept] | None = None) -> dict:
    """Report every crawl's outcome; fail the run if a chosen crawl was not archived.

    ``swept`` is the sweep's result: ``None`` when the sweep failed or did not run (nothing swept, as far as the
    summary can tell).
    """
    context = get_current_context()
    params, run_id = context["params"], context.get("run_id")
    dry_run = bool(params.get("dry_run"))
    decisions = context["ti"].xcom_pull(task_ids="decide", key=DECISIONS)
    if decisions is None:
        error = "The 'Decide what to archive' task left no decisions: it failed or did not run"
        failed_tasks = _failed_tasks(context)
        if not dry_run:
            _record_run(run_id, [], failed_tasks, error)
        _notify(context, alerts.from_run(None, _run_url(context), *_run(context), failed_tasks, error))
        raise AirflowFailException(error)  # a retry would find the same: one failure, one alert
    settings = load_settings()
    results, now = {}, {}
    if not dry_run and decisions:
        try:
            ledger = Ledger(settings.ledger)
        except LedgerCorruptError as e:  # found corrupt since "decide" wrote it: say so in the alert, then fail
            _notify(context, alerts.from_run(None, _run_url(context), *_run(context), _failed_tasks(context), str(e)))
            raise AirflowFailException(str(e)) from e
        results, now = steps.recorded(ledger, decisions)
    swept = list(swept or [])
    waiting = context["ti"].xcom_pull(task_ids="find_crawls", key=WAITING) or []
    summary = steps.summarise(decisions, results, dry_run, swept, waiting, settings.waiting_warning_days, now)
    logger.info("Summary of run %s:\n%s", run_id, steps.format_table(summary))
    _send_metrics(summary, results)
    failed_tasks = _failed_tasks(context)
    if not dry_run:
        _record_run(run_id, summary["failed"], failed_tasks)
    _notify(context, alerts.from_run(summary, _run_url(context), *_run(context), failed_tasks))
    for warning in summary["warnings"]:
        logger.warning(warning)
    if summary["failed"]:
        # Retrying the summary cannot archive them: fail now, and say what to clear.
        raise AirflowFailException(
            f"{len(summary['failed'])} crawls were chosen but not archived: {', '.join(summary['failed'])}. "
            "They stay on disk; clear their 'Archive crawl' tasks to retry."
        )
    return summary


def _record_run(run_id: str | None, failed: list[str], failed_tasks: list[str], error: str | None = None) -> None:
    """What the run leaves for a person, in the ledger, where the catalogue and `kingfisher-archive list` read it
    (best effort: the run's own outcome and its alert stand either way). A run that failed before any ledger was
    made (a first run with a broken setting) makes none: it touches nothing, and its alert says what failed."""
    try:
        path = load_settings().ledger
        if not os.path.exists(path):
            logger.info("No ledger at %s yet: the run's failures are in its alert and its log only", path)
            return
        Ledger(path).record_run(run_id, failed, failed_tasks, error)
    except Exception as e:
        logger.warning("Could not record the run's failures in the ledger (%s)", e)


def _send_metrics(summary: dict, results: dict) -> None:
    """The run's figures through Airflow's stats client (StatsD or OpenTelemetry as configured; else nothing)."""
    from airflow.sdk.observability.stats import Stats

    sent = metrics.from_summary(summary, results)
    for kind, name, value in sent:
        getattr(Stats, kind)(name, value)
    if sent:
        logger.info("Metrics sent: %s", ", ".join(f"{name}={value}" for _, name, value in sent))


#: The environment variable (read when the DAG file is parsed, by the DAG processor) that bounds a run's length.
RUN_TIMEOUT_VARIABLE = "KINGFISHER_ARCHIVE_RUN_TIMEOUT_SECONDS"


def run_timeout(environ=os.environ) -> timedelta | None:
    """The DAG's ``dagrun_timeout``: 12 hours unless :data:`RUN_TIMEOUT_VARIABLE` says otherwise; ``0`` turns it off.

    A run still going this long after it started (a claim wait, a stuck upload) is failed by the scheduler, which
    skips its unfinished tasks and has the DAG processor call :func:`run_timed_out`. See docs/operating.md, A run that
    hangs.
    """
    value = environ.get(RUN_TIMEOUT_VARIABLE, "").strip() or str(12 * 3600)
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigurationError(
            f"{RUN_TIMEOUT_VARIABLE}={value!r}: give a number of seconds (0 turns the run timeout off)"
        ) from None
    return timedelta(seconds=seconds) if seconds > 0 else None


#: The archive DAG's ``dagrun_timeout`` (``None``: off).
RUN_TIMEOUT = run_timeout()


def run_timed_out(context) -> None:
    """The archive DAG's ``on_failure_callback``: a run the scheduler failed for its ``dagrun_timeout`` is reported
    through the notifier, once.

    Airflow 3.3 calls it in the DAG processor for a run failed by the timeout (``reason`` ``timed_out``), and for a
    run that failed otherwise (``task_failure``; ``airflow dags test`` calls it itself): those are reported by
    *Summarise the run*, which runs whatever failed, so this sends nothing for them.
    """
    if context.get("reason") != "timed_out":
        return
    from airflow.sdk.configuration import conf

    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or "kingfisher_archive"
    run_id = context.get("run_id") or "?"
    dag_run = context.get("dag_run")
    started = getattr(dag_run, "start_date", None)
    ti = context.get("ti")
    last_task = None
    if ti is not None:
        map_index = getattr(ti, "map_index", -1)
        last_task = ti.task_id + (f"[{map_index}]" if map_index is not None and map_index >= 0 else "")
    limit = dag.dagrun_timeout if dag is not None and dag.dagrun_timeout else RUN_TIMEOUT
    url = alerts.run_url(conf.get("api", "base_url", fallback="http://localhost:8080/"), dag_id, run_id)
    alert = alerts.timed_out(
        dag_id,
        run_id,
        started.isoformat() if started else None,
        f"{limit.total_seconds():.0f} s" if limit else "?",
        last_task,
        url,
    )
    _notify(context, alert)


def _run(context) -> tuple[str, str]:
    return context["ti"].dag_id, context["ti"].run_id


def _run_url(context) -> str:
    from airflow.sdk.configuration import conf

    return alerts.run_url(conf.get("api", "base_url", fallback="http://localhost:8080/"), *_run(context))


def _failed_tasks(context) -> list[str]:
    """The run's task instances that failed, as ``task_id`` or ``task_id[map_index]`` (best effort: never raises)."""
    ti = context["ti"]
    try:
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    except Exception as e:  # an alert must not fail because Airflow could not say which tasks failed
        logger.warning("Could not read the run's task states (%s): the alert lists what the summary knows", e)
        return []
    return sorted(task for task, state in states.items() if state == "failed")


def _notify(context, alert: dict | None) -> None:
    """Send the alert through the notifier the Variable ``kingfisher_archive_notifier`` names; never fails the task.

    Without the Variable nothing is sent. A notifier that cannot be built or cannot send is logged as an error: the
    run's own outcome (and its summary) stands either way.
    """
    if alert is None:
        return
    from airflow.sdk import BaseNotifier
    from airflow.sdk.module_loading import import_string

    try:
        spec = alerts.parse_notifier(_variable(alerts.NOTIFIER))
        if spec is None:
            logger.info("No notifier (Variable %r is not set): alert not sent: %s", alerts.NOTIFIER, alert["subject"])
            return
        path, kwargs = spec
        try:
            cls = import_string(path)
        except ImportError as e:
            raise ConfigurationError(f"Airflow Variable {alerts.NOTIFIER!r}: cannot import {path} ({e})") from e
        if not (isinstance(cls, type) and issubclass(cls, BaseNotifier)):
            raise ConfigurationError(f"Airflow Variable {alerts.NOTIFIER!r}: {path} is not a BaseNotifier")
        notifier = cls(**alerts.with_defaults(kwargs, cls.template_fields))
        notifier({**context, alerts.CONTEXT_KEY: alert})
    except Exception as e:
        logger.error("The alert was not sent (%s): %s\n%s", e, alert["subject"], alert["text"])
        return
    logger.info("Alert sent through %s: %s", path, alert["subject"])


# -- restore and audit ---------------------------------------------------------------------------------------------


def _restore_request() -> dict:
    """What the restore DAG's trigger form asks, checked as far as it can be before the bucket is read."""
    from kingfisher_archive import restore

    params = get_current_context()["params"]
    # First: without it the DAG would write wherever its trigger form says, so it refuses to run at all.
    restore_root = restore_directory(_variable)
    settings = load_settings()
    source_id = (params.get("source_id") or "").strip()
    year, month = params.get("year"), params.get("month")
    data_version = (params.get("data_version") or "").strip() or None
    if data_version:
        key = CrawlKey.of({"source_id": source_id, "data_version": data_version})
        year, month = key.year, key.month
    if not year or not month:
        raise ConfigurationError("Give 'year' and 'month', or a 'data_version' (YYYYMMDD_HHMMSS)")
    # Files restored into Kingfisher Collect's directories would be archived again, or taken for a crawl's log.
    forbidden = [settings.data_directory, settings.logs_directory]
    # Relative to the restore directory (empty: the restore directory itself), or an absolute path inside it.
    target = restore.check_target(params.get("target_directory") or "", forbidden, restore_directory=restore_root)
    return {
        "settings": settings,
        "params": params,
        "restore_root": restore_root,
        "forbidden": forbidden,
        "target": target,
        "source_id": source_id,
        "year": int(year),
        "month": int(month),
        "data_version": data_version,
    }


class ThawTrigger(BaseTrigger):
    """Runs in the triggerer while a cold month's copy is made: asks S3 (HEAD) every ``poll_seconds`` whether every
    object of ``keys`` can be read, from a thread (boto3 blocks), and fires once: ``{"status": "ready"}``, or
    ``{"status": "failed", "message": ...}`` when waiting cannot help (an object gone, a copy expired), or
    ``{"status": "error", "message": ...}`` when the bucket could not be asked (the task's retries apply)."""

    def __init__(self, bucket: str, keys: list[str], poll_seconds: float) -> None:
        super().__init__()
        self.bucket = bucket
        self.keys = list(keys)
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"bucket": self.bucket, "keys": self.keys, "poll_seconds": self.poll_seconds},
        )

    async def run(self):
        from kingfisher_archive import thaw

        try:
            client = await asyncio.to_thread(s3_client)
        except Exception as e:  # the connection: reported by the task, which Airflow retries
            yield TriggerEvent({"status": "error", "message": f"cannot reach the bucket: {e}"})
            return
        polls = 0
        while True:
            try:
                ready, problem = await asyncio.to_thread(thaw.thaw_progress, client, self.bucket, self.keys)
            except Exception as e:  # S3's answer or the network: reported by the task, which Airflow retries
                yield TriggerEvent({"status": "error", "message": f"cannot ask s3://{self.bucket} ({e})"})
                return
            polls += 1
            if problem is not None:
                yield TriggerEvent({"status": "failed", "message": problem, "polls": polls})
                return
            if ready:
                yield TriggerEvent({"status": "ready", "keys": self.keys, "polls": polls})
                return
            self.log.info("Not readable yet: %s; asking again in %g s", ", ".join(self.keys), self.poll_seconds)
            await asyncio.sleep(self.poll_seconds)


#: Beyond the most a thaw takes (thawing.HOURS), how long the thaw task waits before it fails.
THAW_MARGIN = timedelta(hours=24)


class ThawMonthOperator(BaseOperator):
    """The restore DAG's first task: ask S3 for a readable copy of a month in a cold storage class, and wait for it
    without holding a worker slot (deferred to :class:`ThawTrigger`). A month in no cold class, or whose copy is
    readable already, goes straight through."""

    def execute(self, context):
        from kingfisher_archive import thaw

        try:
            asked = _restore_request()
            params, settings = asked["params"], asked["settings"]
            poll_seconds = thaw_poll_seconds(_variable)  # refused before anything is asked of S3
            prepared = thaw.prepare(
                _checked_client(settings),
                settings.bucket,
                asked["source_id"],
                asked["year"],
                asked["month"],
                tier=params.get("tier") or thaw.DEFAULT_TIER,
                days=int(params.get("days") or thaw.DEFAULT_THAW_DAYS),
            )
        except errors.PermanentError as e:
            raise AirflowFailException(str(e)) from e
        logger.info("%s", prepared.message)
        result = {
            "data_key": prepared.data_key,
            "storage_class": prepared.storage_class,
            "tier": prepared.tier,
            "days": prepared.days,
            "asked_at": prepared.asked_at.isoformat() if prepared.asked_at else None,
            "message": prepared.message,
        }
        if prepared.ready:
            return {**result, "deferred": False}
        logger.info(
            "Deferring until the copy is ready: the triggerer asks every %g s (Airflow Variable %r)",
            poll_seconds,
            "kingfisher_archive_thaw_poll_seconds",
        )
        self.defer(
            trigger=ThawTrigger(settings.bucket, list(prepared.keys), poll_seconds),
            method_name="execute_complete",
            timeout=timedelta(hours=prepared.hours or 0) + THAW_MARGIN,
        )

    def execute_complete(self, context, event=None):
        from kingfisher_archive import restore

        event = event or {}
        if event.get("status") == "failed":
            raise AirflowFailException(event["message"])
        if event.get("status") != "ready":
            raise restore.RestoreError(event.get("message") or f"the thaw's trigger ended without an answer: {event}")
        logger.info("The copy is readable (asked %d times while deferred): restoring next", event.get("polls", 0))
        return {"data_keys": event.get("keys"), "deferred": True}


@task(task_display_name="Restore a month's archive", queue=HOST_QUEUE)
@fails_at_once
def restore_month() -> dict:
    """Stream one month's archive into the target directory, verify it, and print the reload command."""
    from kingfisher_archive import restore

    asked = _restore_request()
    settings = asked["settings"]
    result = restore.restore(
        _checked_client(settings),
        settings.bucket,
        asked["source_id"],
        asked["year"],
        asked["month"],
        asked["target"],
        forbidden_directories=asked["forbidden"],
        data_version=asked["data_version"],
        restore_directory=asked["restore_root"],
    )
    logger.info(
        "Restored %s/%s (%d files, %d bytes%s) into %s\nTo load it into Kingfisher Process, run:\n%s",
        result["source_id"],
        result["data_version"],
        result["files"],
        result["bytes"],
        ", checksum verified" if result["checksum_verified"] else ", checksum not verifiable for this archive",
        result["directory"],
        result["reload_command"],
    )
    return result


@task(task_display_name="Audit the bucket")
@fails_at_once
def audit_bucket() -> dict:
    """Check every month against its metadata; with ``repair``, remove stale staging objects and uploads only."""
    from kingfisher_archive import audit

    params = get_current_context()["params"]
    settings = load_settings(on_kingfisher_host=False)  # the audit reads the bucket only: any worker
    client = _checked_client(settings)
    share = int(params.get("sample_percent") or 0) / 100
    report = audit.audit(
        client,
        settings.bucket,
        repair=bool(params.get("repair")),
        verify_data=bool(params.get("verify_data")),
        sample=share or None,
    )
    lines = [
        f"{p['key']}: {p['problem']}{' (' + p['detail'] + ')' if p.get('detail') else ''}"
        f"{' - repaired' if p['repaired'] else ''}"
        for p in report["problems"]
    ]
    lines += [f"{w['key']}: warning: {w['warning']} {w.get('detail') or ''}".rstrip() for w in report["warnings"]]
    lines += [f"{t['key']}: not verified yet: {t['detail']}" for t in report["thawing"]]
    logger.info(
        "Audited %s of s3://%s: %s (%d repaired), %s, %s\n%s",
        _plural(report["months"], "month"),
        settings.bucket,
        _plural(len(report["problems"]), "problem"),
        report["repaired"],
        _plural(len(report["warnings"]), "warning"),
        _plural(len(report["thawing"]), "cold archive") + " thawing (verify again later)",
        "\n".join(lines) or "nothing to report",
    )
    if report["unrepaired"]:
        context = get_current_context()
        _notify(context, alerts.from_audit(report, _run_url(context), *_run(context)))
        raise RuntimeError(
            f"The audit found {_plural(report['unrepaired'], 'problem')} it did not repair; each is listed above "
            "by key"
        )
    return report
