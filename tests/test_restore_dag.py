"""The restore DAG on a month in a cold storage class, run by Airflow itself against the tests' imitation of Amazon
S3's archive classes: with `airflow dags test`, which runs the deferred task's trigger in line, and once on a whole
Airflow (`airflow standalone`), whose triggerer process runs the trigger."""

from __future__ import annotations

import json

import psycopg2
import pytest

from scripts.demo_kit.airflow_dag import AirflowHome
from scripts.demo_kit.airflow_standalone import (
    HOST,
    Api,
    CheckFailed,
    airflow_environment,
    free_port,
    start_airflow,
    wait_for,
)
from scripts.demo_kit.kingfisher_host import KingfisherHost, tree
from tests.test_restore import SOURCE, VERSION
from tests.test_restore_cold import plant_cold

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

CONF = {"source_id": SOURCE, "year": 2020, "month": 9, "target_directory": "restored"}


@pytest.fixture
def restore_airflow(airflow_template, aws_like, s3_server, bucket, tmp_path):
    """An AIRFLOW_HOME whose S3 Connection points at the proxy; the trigger asks every second."""
    proxy, _ = aws_like
    host = KingfisherHost(str(tmp_path / "host"))
    restore_directory = tmp_path / "restore-directory"
    restore_directory.mkdir()
    airflow = AirflowHome.from_template(
        airflow_template,
        str(tmp_path / "airflow"),
        connections={
            "kingfisher_archive_s3": {
                "conn_type": "aws",
                "login": s3_server.access_key,
                "password": s3_server.secret_key,
                "extra": {"endpoint_url": proxy.endpoint_url, "region_name": s3_server.region},
            }
        },
        variables={
            "kingfisher_archive_bucket": bucket,
            "kingfisher_archive_data_directory": host.data_directory,
            "kingfisher_archive_logs_directory": host.logs_directory,
            "kingfisher_archive_storage_class": "GLACIER",
            "kingfisher_archive_restore_directory": str(restore_directory),
            "kingfisher_archive_thaw_poll_seconds": "1",
        },
    )
    return airflow, restore_directory / "restored"


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3)
def test_a_cold_month_is_asked_for_waited_for_in_the_triggerer_and_restored_byte_for_byte(
    aws_like, restore_airflow, client, bucket, tmp_path
):
    proxy, _ = aws_like
    airflow, target = restore_airflow
    before, key = plant_cold(client, bucket, tmp_path / "crawl")
    run = airflow.run(dag_id="kingfisher_archive_restore", conf={**CONF, "tier": "Standard", "days": 2})
    assert run.succeeded, run.output[-5000:]
    assert f"s3://{bucket}/{key} is in GLACIER: asked for a copy (Standard, ready within 5 h" in run.output
    assert "Deferring until the copy is ready: the triggerer asks every 1 s" in run.output
    assert "running trigger in line" in run.output  # `airflow dags test` runs the deferred task's trigger
    assert "The copy is readable" in run.output
    assert proxy.restores == [(key, 2, "Standard")]
    assert tree(target / SOURCE / VERSION) == before
    assert "python manage.py load --source scotland" in run.output


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_a_thaw_asked_by_someone_else_is_joined_and_a_ready_copy_or_a_month_not_cold_does_not_defer(
    aws_like, restore_airflow, client, bucket, tmp_path
):
    proxy, through = aws_like
    airflow, target = restore_airflow
    before, key = plant_cold(client, bucket, tmp_path / "crawl")
    # Someone else asked for a copy, which S3 has made: joined (asked again, which S3 answers 200), no deferral.
    through.restore_object(
        Bucket=bucket, Key=key, RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Bulk"}}
    )
    proxy.finish_restores()
    run = airflow.run(dag_id="kingfisher_archive_restore", conf=CONF, logical_date="2026-11-28")
    assert run.succeeded, run.output[-5000:]
    assert "a copy is readable until" in run.output
    assert "Deferring" not in run.output
    assert [tier for _, _, tier in proxy.restores] == ["Bulk", "Bulk"]
    assert tree(target / SOURCE / VERSION) == before

    # A month in no cold class: nothing asked, no deferral.
    client.put_object(Bucket=bucket, Key=key, Body=client.get_object(Bucket=bucket, Key=key)["Body"].read())
    conf = {**CONF, "target_directory": "again"}
    run = airflow.run(dag_id="kingfisher_archive_restore", conf=conf, logical_date="2026-11-29")
    assert run.succeeded, run.output[-5000:]
    assert "is in STANDARD: readable now" in run.output and "Deferring" not in run.output
    assert len(proxy.restores) == 2
    assert tree(target.parent / "again" / SOURCE / VERSION) == before


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_a_tier_the_class_does_not_offer_fails_at_once_naming_both(
    aws_like, restore_airflow, client, bucket, tmp_path
):
    proxy, _ = aws_like
    airflow, target = restore_airflow
    plant_cold(client, bucket, tmp_path / "crawl", "DEEP_ARCHIVE")
    run = airflow.run(dag_id="kingfisher_archive_restore", conf={**CONF, "tier": "Expedited"})
    assert not run.succeeded
    assert "the retrieval tier 'Expedited' is not offered for DEEP_ARCHIVE objects" in run.output
    assert proxy.restores == []
    assert not target.exists()


RESTORE_DAG = "kingfisher_archive_restore"


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_a_whole_airflows_triggerer_waits_for_the_copy_and_the_restore_runs_when_it_is_ready(
    aws_like, client, bucket, tmp_path, postgres_server, process_database, s3_server
):
    """Triggered through the REST API: the thaw task defers, the triggerer process (not the worker) asks S3 every
    second, and only once S3's copy is ready does the restore task run and restore the crawl byte for byte."""
    proxy, _ = aws_like
    before, key = plant_cold(client, bucket, tmp_path / "crawl")
    host = KingfisherHost(str(tmp_path / "host"))
    database = psycopg2.extensions.parse_dsn(process_database("v2"))["dbname"]
    port = free_port()
    env = airflow_environment(tmp_path, postgres_server, database, s3_server, bucket, host, port)
    connection = json.loads(env["AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3"])
    connection["extra"]["endpoint_url"] = proxy.endpoint_url  # the bucket as Amazon S3 would answer
    env["AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3"] = json.dumps(connection)
    restore_directory = tmp_path / "restore-directory"
    restore_directory.mkdir()
    env.update(
        AIRFLOW_VAR_KINGFISHER_ARCHIVE_STORAGE_CLASS="GLACIER",
        AIRFLOW_VAR_KINGFISHER_ARCHIVE_RESTORE_DIRECTORY=str(restore_directory),
        AIRFLOW_VAR_KINGFISHER_ARCHIVE_THAW_POLL_SECONDS="1",
    )
    api = Api(f"http://{HOST}:{port}")
    standalone = start_airflow(env, tmp_path / "airflow", api)
    try:
        run_id = "restore-from-glacier"
        conf = {**CONF, "tier": "Standard", "days": 2}

        def parsed() -> bool:
            return api.request("GET", f"dags/{RESTORE_DAG}")[0] == 200

        def thaw_state() -> str | None:
            return api.ok("GET", f"dags/{RESTORE_DAG}/dagRuns/{run_id}/taskInstances/thaw_month")["state"]

        def finished() -> str | None:
            state = api.ok("GET", f"dags/{RESTORE_DAG}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        try:
            wait_for(f"the DAG {RESTORE_DAG} to be parsed", 60, parsed, standalone)
            api.ok("PATCH", f"dags/{RESTORE_DAG}", {"is_paused": False})
            api.ok("POST", f"dags/{RESTORE_DAG}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
            # The copy takes an hour on the proxy's clock: the task waits, deferred, until the test finishes it.
            wait_for("the thaw task to defer", 180, lambda: thaw_state() == "deferred" or finished(), standalone)
            assert thaw_state() == "deferred"
            assert proxy.restores == [(key, 2, "Standard")]
            assert not (restore_directory / "restored").exists()
            proxy.finish_restores()
            state = wait_for("the restore run to finish", 300, finished, standalone)
        except CheckFailed as e:
            pytest.fail(f"{e}\n{standalone.last_lines()}")
    finally:
        standalone.kill()
    assert state == "success", standalone.last_lines()
    assert tree(restore_directory / "restored" / SOURCE / VERSION) == before
    assert proxy.restores == [(key, 2, "Standard")]  # asked once; the triggerer only looked
    # The thaw task resumed on the triggerer's event (its log, after the deferral).
    logs = [path.read_text() for path in (tmp_path / "airflow").rglob("*.log") if "task_id=thaw_month" in str(path)]
    assert any("The copy is readable (asked" in text for text in logs), logs
