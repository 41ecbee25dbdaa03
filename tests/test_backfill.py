"""A backfill over five days, started through Airflow's REST API with its defaults, on a real scheduler; and a run
that hangs, failed by the scheduler at the DAG's run timeout and reported through the notifier.

The run timeout is the DAG's ``dagrun_timeout``: the scheduler fails the run and the DAG processor calls the DAG's
``on_failure_callback``, which sends the alert through the notifier, here to a mail server on loopback.

Airflow starts a backfill's runs up to ten at once whatever ``max_active_runs`` says, so the runs for five days
decide before any of them archives, and their archive tasks of one month run in any order. The runs must all
succeed, and the bucket must be what the five days would have made one after another.
"""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import sqlite3
from datetime import datetime

import psycopg2
import pytest

from kingfisher_archive.ledger import Ledger
from scripts.demo_kit.airflow_standalone import (
    DAG_ID,
    HOST,
    Api,
    CheckFailed,
    airflow_environment,
    format_states,
    free_port,
    start_airflow,
    task_states,
    trigger_and_wait,
    wait_for,
)
from scripts.demo_kit.kingfisher_host import KingfisherHost, ocds_files
from tests.test_dag import NOTIFIER, SmtpServer

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

BACKFILL_DEADLINE = 900.0
ALERT_DEADLINE = 120.0
#: The hanging run's timeout: long enough for its archive task to start on a busy machine, and wait.
RUN_TIMEOUT_SECONDS = 60


def closed(day: int) -> datetime:
    """Noon UTC on a day of March 2026: when Kingfisher Collect closed the crawl and Process loaded it."""
    return datetime(2026, 3, day, 12)


def test_a_backfill_over_five_days_succeeds_and_leaves_the_bucket_the_days_make_in_turn(
    tmp_path, process_database, postgres_server, s3_server
):
    dsn = process_database("v2")
    host = KingfisherHost(str(tmp_path / "host"), dsn=dsn, schema="v2")
    small = host.add_crawl("scotland", "20260210_000000", ocds_files("small", 3), closed_at=closed(1))
    big = host.add_crawl("scotland", "20260215_000000", ocds_files("big", 12), closed_at=closed(2))  # replaces it
    other = host.add_crawl("paraguay", "20260201_000000", ocds_files("other", 4), closed_at=closed(2))
    not_better = host.add_crawl("scotland", "20260220_000000", ocds_files("close", 13), closed_at=closed(3))
    march = host.add_crawl("scotland", "20260301_000000", ocds_files("march", 5), closed_at=closed(4))
    bucket = f"test-{secrets.token_hex(6)}"
    s3_server.create_bucket(bucket)
    database = psycopg2.extensions.parse_dsn(dsn)["dbname"]

    port = free_port()
    env = airflow_environment(tmp_path, postgres_server, database, s3_server, bucket, host, port)
    api = Api(f"http://{HOST}:{port}")
    standalone = start_airflow(env, tmp_path / "airflow", api)
    try:
        # The REST API's defaults, as the UI's backfill form and `airflow backfill create` use them. On SQLite,
        # Airflow answers 503 "Database is locked" while the scheduler holds the database: asked again, as a
        # user would, until it answers otherwise (any other refusal fails the test at once).
        def backfill_created():
            body = {"dag_id": DAG_ID, "from_date": "2026-03-02T00:00:00Z", "to_date": "2026-03-06T00:00:00Z"}
            status, payload = api.request("POST", "backfills", body)
            if status == 503 and "locked" in str(payload):
                return None
            if status >= 300:
                raise CheckFailed(f"POST /api/v2/backfills answered {status}: {payload}")
            return payload

        try:
            wait_for("Airflow to accept the backfill", 120, backfill_created, standalone)
        except CheckFailed as e:
            pytest.fail(str(e))

        def all_finished():
            runs = api.ok("GET", f"dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]
            done = [run for run in runs if run["state"] in ("success", "failed")]
            return runs if len(runs) == 5 and len(done) == 5 else None

        try:
            runs = wait_for("the backfill's five runs to finish", BACKFILL_DEADLINE, all_finished, standalone)
        except CheckFailed as e:
            pytest.fail(str(e))
        states = {run["dag_run_id"]: run["state"] for run in runs}
        failed = {
            run_id: format_states(task_states(api, run_id)) for run_id, state in states.items() if state != "success"
        }
        assert not failed, "runs failed:\n" + "\n".join(f"{run}:\n{tasks}" for run, tasks in failed.items())
        assert sorted(run["logical_date"][:10] for run in runs) == [f"2026-03-0{d}" for d in range(2, 7)]
        # Each run considers what was closed before its logical date, as the run due at that midnight would: one
        # collection for 2 March, three for 3 March, four for 4 March, five from 5 March on.
        logs = glob.glob(str(tmp_path / "airflow" / "logs" / "**" / "*.log"), recursive=True)
        loaded = {}
        for run in runs:
            [log] = [p for p in logs if f"run_id={run['dag_run_id']}" in p and "task_id=find_crawls" in p]
            with open(log) as f:
                loaded[run["logical_date"][:10]] = re.search(r"(\d+) collections loaded;", f.read()).group(1)
        assert loaded == {
            "2026-03-02": "1",
            "2026-03-03": "3",
            "2026-03-04": "4",
            "2026-03-05": "5",
            "2026-03-06": "5",
        }
        # Each archive is an asset event a downstream DAG can be scheduled on, with the crawl in its extra.
        events = api.ok("GET", "assets/events?limit=100")["asset_events"]
        announced = {(event["uri"], event["extra"]["data_version"]) for event in events}
        assert {
            (f"s3://{bucket}/paraguay/2026/02", "20260201_000000"),
            (f"s3://{bucket}/scotland/2026/02", "20260215_000000"),
            (f"s3://{bucket}/scotland/2026/03", "20260301_000000"),
        } <= announced
        assert announced <= {*announced, (f"s3://{bucket}/scotland/2026/02", "20260210_000000")}
        assert all(isinstance(event["extra"]["bytes"], int) and event["extra"]["checksum"] for event in events)

    finally:
        standalone.kill()

    client = s3_server.client()
    months = {}
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        assert not item["Key"].startswith("staging/"), item["Key"]
        if item["Key"].endswith("metadata.json"):
            months[item["Key"]] = json.loads(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())["id"]
    assert months == {
        "paraguay/2026/02/metadata.json": "paraguay/20260201_000000",
        "scotland/2026/02/metadata.json": "scotland/20260215_000000",
        "scotland/2026/03/metadata.json": "scotland/20260301_000000",
    }
    assert not any(os.path.exists(crawl.directory) for crawl in (big, other, march))
    assert os.path.isdir(not_better.directory)  # same month as the big crawl, and not better: kept on disk
    # The small crawl was either archived and then replaced (as the days in turn would), or its task found the big
    # one already there and kept it on disk, settled as not archived: either way the bucket is the same.
    with sqlite3.connect(tmp_path / "airflow" / "kingfisher_archive.sqlite3") as ledger:
        [(status,)] = ledger.execute("SELECT status FROM crawl WHERE data_version = '20260210_000000'").fetchall()
    assert status == ("not_archived" if os.path.isdir(small.directory) else "archived")


def test_a_run_that_hangs_is_failed_at_the_run_timeout_and_the_notifier_says_so(
    tmp_path, process_database, postgres_server, s3_server
):
    """A run whose archive task waits for another run's claim on its month (what usually holds a run that long)."""
    dsn = process_database("v2")
    host = KingfisherHost(str(tmp_path / "host"), dsn=dsn, schema="v2")
    crawl = host.add_crawl("paraguay", "20260201_000000", ocds_files("other", 4), closed_at=closed(2))
    bucket = f"test-{secrets.token_hex(6)}"
    s3_server.create_bucket(bucket)
    database = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    port = free_port()
    env = airflow_environment(tmp_path, postgres_server, database, s3_server, bucket, host, port)
    smtp = SmtpServer()
    env.update(
        AIRFLOW_CONN_ALERT_MAIL=json.dumps(smtp.connection()),
        AIRFLOW_VAR_KINGFISHER_ARCHIVE_NOTIFIER=json.dumps(NOTIFIER),
        KINGFISHER_ARCHIVE_RUN_TIMEOUT_SECONDS=str(RUN_TIMEOUT_SECONDS),
    )
    api = Api(f"http://{HOST}:{port}")
    # Another run holds the month's claim for as long as this test lives: the run's archive task waits for it.
    ledger = Ledger(str(tmp_path / "airflow" / "kingfisher_archive.sqlite3"))
    try:
        with ledger.claim("paraguay", "2026-02", "another-run"):
            standalone = start_airflow(env, tmp_path / "airflow", api)
            try:
                state, seconds = trigger_and_wait(api, standalone, "hangs")
                states = {task: state for task, _, state in task_states(api, "hangs")}

                def timed_out():
                    subjects = [subject for subject, _ in smtp.bodies()]
                    return subjects if subjects else None

                try:
                    subjects = wait_for("the run's timeout alert", ALERT_DEADLINE, timed_out, standalone)
                except CheckFailed as e:
                    pytest.fail(str(e))
            finally:
                standalone.kill()
    finally:
        smtp.controller.stop()

    assert state == "failed" and seconds >= RUN_TIMEOUT_SECONDS, (state, seconds)
    # The scheduler skipped what had not finished: the archive task that waited, and the tasks after it.
    assert (states["archive_crawl"], states["summarise"]) == ("skipped", "skipped"), states
    assert subjects == [f"Kingfisher Archive: {DAG_ID} run hangs timed out"]
    body = smtp.bodies()[0][1]
    assert f"had not finished after {RUN_TIMEOUT_SECONDS} s: Airflow failed it" in body
    assert "(the last one started was archive_crawl[0])" in body
    assert f"{api.base_url}/dags/{DAG_ID}/runs/hangs" in body
    # Nothing was archived or deleted.
    assert os.path.isdir(crawl.directory)
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
