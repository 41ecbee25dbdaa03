"""The production layout, run for real: docker-compose.yaml's Airflow with Celery workers standing for two hosts.

``make e2e``. The API server, scheduler, dag-processor, triggerer and two Celery workers are started from the
compose file's own commands and settings (scripts/demo_kit/deployment.py), with PostgreSQL as the metadata
database and result backend and this machine's Redis (or RabbitMQ) as the broker. The worker on the
``kingfisher_collect_host`` queue sees the Kingfisher host's directories; the worker on ``default`` sees an empty
file system where they are, as another machine would. Through the REST API and the scheduler this test runs a
scheduled run, a dry run, a backfill with the API's defaults, a failed mapped task cleared and run again, and the
audit; then it reads from Airflow's records which host ran each task, and checks the bucket and the disk. The
bucket's server is SeaweedFS started with the compose file's seaweedfs command.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from scripts.demo_kit.airflow_dag import REPOSITORY, archive_connections
from scripts.demo_kit.airflow_standalone import (
    DAG_ID,
    Api,
    CheckFailed,
    format_states,
    healthy,
    task_states,
    wait_for,
)
from scripts.demo_kit.deployment import (
    Deployment,
    broker_url,
    namespaces_problem,
    read_env_file,
    s3_service_flags,
    unique_name,
)
from scripts.demo_kit.kingfisher_host import KingfisherHost, ocds_files
from scripts.demo_kit.servers import start_seaweedfs
from tests.harness.stripping_proxy import StrippingProxy

pytestmark = pytest.mark.e2e

AUDIT_DAG_ID = "kingfisher_archive_audit"
PROBE_DAG_ID = "kingfisher_archive_misrouted"
START_DEADLINE = 180.0
RUN_DEADLINE = 600.0
HOST_QUEUE = read_env_file()["KINGFISHER_ARCHIVE_QUEUE"]
FORMAT = "%Y%m%d_%H%M%S"
HALF = timedelta(hours=12)

#: A DAG that sends the first host-bound task to the default queue on purpose: it must fail there, not find nothing.
PROBE_DAG = textwrap.dedent(
    f'''
    """Test only: the archive DAG's first task sent to the default queue, which the Kingfisher host does not serve."""
    from airflow.sdk import dag

    from kingfisher_archive import tasks


    @dag(dag_id="{PROBE_DAG_ID}", schedule=None, params={{"dry_run": True, "reevaluate": False}})
    def misrouted():
        tasks.find_crawls.override(task_id="find_crawls_on_default", queue="default", retries=0)()


    misrouted()
    '''
)


def show(run_id: str, rows: list[tuple]) -> None:
    """Which host ran each task of a run, from Airflow's records (make e2e prints it)."""
    print(f"\n{run_id}:")
    for task, label, state, queue, hostname in rows:
        print(f"  {task:<24} {label:<28} {state:<8} queue={queue:<24} host={hostname}")


def skip_or_fail(reason: str) -> None:
    """CI (KINGFISHER_ARCHIVE_E2E_REQUIRED=1) must not pass by skipping; elsewhere, say why and skip."""
    if os.environ.get("KINGFISHER_ARCHIVE_E2E_REQUIRED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def day(midnight: datetime, days: float) -> datetime:
    return (midnight + timedelta(days=days)).replace(tzinfo=None)


@pytest.fixture
def s3_server(tmp_path):
    """The bucket's server as docker-compose.yaml's seaweedfs service runs it: the wheel's weed with that service's
    own flags (so what this test proves is the server compose starts), not the session's SeaweedFS."""
    server = start_seaweedfs(tmp_path / "compose-seaweedfs", s3_service_flags())
    yield server
    server.stop()


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_compose_topology_routes_every_crawl_task_to_the_kingfisher_host(
    tmp_path, postgres_server, s3_server, process_database
):
    broker, why = broker_url()
    if broker is None:
        skip_or_fail(why)
    if problem := namespaces_problem():
        skip_or_fail(problem)

    # -- the Kingfisher host, Process, the bucket (behind a proxy that can refuse a prefix, as a policy would) ----
    dsn = process_database("v2")
    kingfisher = tmp_path / "kingfisher"
    host = KingfisherHost(str(kingfisher), dsn=dsn, schema="v2")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)  # the scheduled run's date
    base = day(today, -10).replace(hour=1)  # the crawls of "this month" start after it; same month for all

    def version(hours: int) -> str:
        return (base + timedelta(hours=hours)).strftime(FORMAT)

    earlier = host.add_crawl(
        "paraguay", day(today, -45).strftime(FORMAT), ocds_files("a", 3), closed_at=day(today, -40)
    )
    first = host.add_crawl("scotland", version(0), ocds_files("b", 4), closed_at=day(today, -9))
    bucket = f"test-{secrets.token_hex(6)}"
    s3_server.create_bucket(bucket)
    database = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    metadata = unique_name("airflow_e2e")
    postgres_server.create_database(metadata, schema=None)

    proxy = StrippingProxy(
        s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key, s3_server.region, drop=()
    )
    connections = archive_connections(postgres_server, database, s3_server)
    connections["kingfisher_archive_s3"]["extra"]["endpoint_url"] = proxy.endpoint_url
    dags = [REPOSITORY / "dags" / name for name in sorted(os.listdir(REPOSITORY / "dags")) if name.endswith(".py")]
    probe = tmp_path / f"{PROBE_DAG_ID}.py"
    probe.write_text(PROBE_DAG)
    ledger = kingfisher / "ledger" / "kingfisher_archive.sqlite3"
    ledger.parent.mkdir()
    home = tmp_path / "airflow"
    home.mkdir()
    deployment = Deployment(
        home=home,
        kingfisher_directory=kingfisher,
        metadata_url=postgres_server.dsn(metadata, scheme="postgresql+psycopg2"),
        broker=broker,
        connections={conn_id: json.dumps(conn) for conn_id, conn in connections.items()},
        variables={
            "kingfisher_archive_bucket": bucket,
            "kingfisher_archive_data_directory": host.data_directory,
            "kingfisher_archive_logs_directory": host.logs_directory,
            "kingfisher_archive_ledger": str(ledger),
            "kingfisher_archive_storage_class": "STANDARD",
        },
        dags=[*dags, probe],
        settings={
            # A failed task fails now (the test clears it), instead of retrying after five minutes.
            "KINGFISHER_ARCHIVE_RETRIES": "0",
            "KINGFISHER_ARCHIVE_RETRY_DELAY_SECONDS": "0",
            # This test's own keys on a broker other tests or runs may share.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": f"{metadata}:",
        },
    )
    host_worker, other_worker = deployment.worker(holds_crawls=True), deployment.worker(holds_crawls=False)
    assert host_worker.queues == [HOST_QUEUE] and other_worker.queues == ["default"]
    api = Api(deployment.base_url)

    def wait(what, condition, seconds=RUN_DEADLINE):
        try:
            return wait_for(what, seconds, condition, deployment)
        except CheckFailed as e:
            pytest.fail(str(e))

    def finished(run_id, dag_id=DAG_ID):
        run = api.ok("GET", f"dags/{dag_id}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    def instances(run_id, dag_id=DAG_ID):
        return api.ok("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]

    def where(run_id, dag_id=DAG_ID):
        """(task, map label, state, queue, host) of each task instance that ran: Airflow's own record."""
        return sorted(
            (ti["task_id"], ti.get("rendered_map_index") or "", ti["state"], ti["queue"], ti["hostname"])
            for ti in instances(run_id, dag_id)
            if ti["state"] in ("success", "failed")
        )

    def assert_succeeded_on_the_host(run):
        ran = where(run["dag_run_id"])
        show(run["dag_run_id"], ran)
        assert run["state"] == "success", f"run {run['dag_run_id']} {run['state']}:\n" + "\n".join(map(str, ran))
        assert ran and {(queue, hostname) for *_, queue, hostname in ran} == {(HOST_QUEUE, host_worker.hostname)}
        return ran

    def months():
        client = s3_server.client()
        found = {}
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            if item["Key"].endswith("/metadata.json"):
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                found[item["Key"].removesuffix("/metadata.json")] = json.loads(body)["id"]
        return found

    def month(crawl):
        return f"{crawl.source_id}/{crawl.data_version[:4]}/{crawl.data_version[4:6]}"

    with proxy:
        try:
            deployment.prepare()
            deployment.start()
            wait("the API server, scheduler, dag-processor and triggerer", lambda: healthy(api), START_DEADLINE)
            for dag_id in (DAG_ID, AUDIT_DAG_ID, PROBE_DAG_ID):
                wait(f"the DAG {dag_id} to be parsed", lambda d=dag_id: api.request("GET", f"dags/{d}")[0] == 200)

            # 1. Unpaused, the @daily DAG gets its scheduled run for today's midnight: what Process closed before.
            api.ok("PATCH", f"dags/{DAG_ID}", {"is_paused": False})
            scheduled = wait(
                "the scheduled run to finish",
                lambda: [
                    run
                    for run in api.ok("GET", f"dags/{DAG_ID}/dagRuns?run_type=scheduled")["dag_runs"]
                    if run["state"] in ("success", "failed")
                ],
            )[0]
            assert scheduled["logical_date"].startswith(today.strftime("%Y-%m-%dT00:00:00"))
            ran = assert_succeeded_on_the_host(scheduled)
            assert {task for task, *_ in ran} >= {"find_crawls", "inspect_crawl", "decide", "archive_crawl"}
            assert months() == {month(earlier): earlier.id, month(first): first.id}
            assert not os.path.exists(earlier.directory) and not os.path.exists(first.directory)

            # 2. A dry run through the REST API: reports the two crawls Process has closed since, changes nothing.
            better = host.add_crawl("scotland", version(2), ocds_files("c", 10), closed_at=day(today, -6) + HALF)
            other = host.add_crawl("paraguay", version(3), ocds_files("e", 3), closed_at=day(today, -5) + HALF)
            dry_run = {"dag_run_id": "dry", "logical_date": None, "conf": {"dry_run": True}}
            api.ok("POST", f"dags/{DAG_ID}/dagRuns", dry_run)
            dry = wait("the dry run to finish", lambda: finished("dry"))
            assert_succeeded_on_the_host(dry)
            summary = api.ok("GET", f"dags/{DAG_ID}/dagRuns/dry/taskInstances/summarise/xcomEntries/return_value")
            outcome = {row["id"]: row["status"] for row in summary["value"]["rows"]}
            assert outcome == {better.id: "would_archive", other.id: "would_archive"}
            assert months() == {month(earlier): earlier.id, month(first): first.id}
            assert os.path.isdir(better.directory) and os.path.isdir(other.directory)

            # 3. A backfill over four past days, with the REST API's defaults (its runs start together).
            api.ok(
                "POST",
                "backfills",
                {"dag_id": DAG_ID, "from_date": iso(today - timedelta(7)), "to_date": iso(today - timedelta(4))},
            )
            backfill = wait(
                "the backfill's four runs to finish",
                lambda: (
                    runs
                    if len(runs := api.ok("GET", f"dags/{DAG_ID}/dagRuns?run_type=backfill")["dag_runs"]) == 4
                    and all(run["state"] in ("success", "failed") for run in runs)
                    else None
                ),
            )
            for run in backfill:
                assert_succeeded_on_the_host(run)
            assert months() == {month(earlier): earlier.id, month(first): better.id, month(other): other.id}
            assert not os.path.exists(better.directory) and not os.path.exists(other.directory)
            events = api.ok("GET", "assets/events?limit=100")["asset_events"]
            assert {f"s3://{bucket}/{month(crawl)}" for crawl in (earlier, first, better, other)} == {
                event["uri"] for event in events
            }

            # 4. One mapped archive task fails (the bucket refuses one source's prefix); fixed, it is cleared alone.
            refused = host.add_crawl("moldova", version(4), ocds_files("g", 3), closed_at=day(today, -3))
            fine = host.add_crawl("kenya", version(5), ocds_files("h", 3), closed_at=day(today, -3))
            proxy.refuse = lambda method, path: method in ("PUT", "POST") and path.startswith(f"/{bucket}/moldova/")
            api.ok("POST", f"dags/{DAG_ID}/dagRuns", {"dag_run_id": "cleared", "logical_date": None, "conf": {}})
            run = wait("the run with a refused upload to finish", lambda: finished("cleared"))
            assert run["state"] == "failed", format_states(task_states(api, "cleared"))
            failures = [ti for ti in instances("cleared") if ti["state"] == "failed"]
            assert sorted((ti["task_id"], ti.get("rendered_map_index")) for ti in failures) == [
                ("archive_crawl", refused.id),
                ("summarise", None),
            ]
            [failed] = [ti for ti in failures if ti["task_id"] == "archive_crawl"]
            assert failed["hostname"] == host_worker.hostname
            assert os.path.isdir(refused.directory) and month(refused) not in months()
            assert months()[month(fine)] == fine.id and not os.path.exists(fine.directory)
            proxy.refuse = None
            api.ok(
                "POST",
                f"dags/{DAG_ID}/clearTaskInstances",
                {
                    "dry_run": False,
                    "dag_run_id": "cleared",
                    "task_ids": [["archive_crawl", failed["map_index"]]],
                    "include_downstream": True,
                    "only_failed": False,
                },
            )
            run = wait(
                "the cleared run to finish again",
                lambda: r if (r := finished("cleared")) and r["end_date"] != run["end_date"] else None,
            )
            ran = assert_succeeded_on_the_host(run)
            [again] = [
                ti
                for ti in instances("cleared")
                if (ti["task_id"], ti["map_index"]) == ("archive_crawl", failed["map_index"])
            ]
            assert (again["state"], again["try_number"]) == ("success", 2)
            assert months()[month(refused)] == refused.id and not os.path.exists(refused.directory)

            # 5. The other host: the audit runs there; a crawl task sent there fails, naming what it cannot see.
            api.ok("PATCH", f"dags/{AUDIT_DAG_ID}", {"is_paused": False})
            audit = wait(
                "the audit's scheduled run to finish",
                lambda: [
                    r
                    for r in api.ok("GET", f"dags/{AUDIT_DAG_ID}/dagRuns")["dag_runs"]
                    if r["state"] in ("success", "failed")
                ],
            )[0]
            assert audit["state"] == "success", where(audit["dag_run_id"], AUDIT_DAG_ID)
            show(audit["dag_run_id"], where(audit["dag_run_id"], AUDIT_DAG_ID))
            assert where(audit["dag_run_id"], AUDIT_DAG_ID) == [
                ("audit_bucket", "", "success", "default", other_worker.hostname)
            ]
            api.ok("PATCH", f"dags/{PROBE_DAG_ID}", {"is_paused": False})
            api.ok("POST", f"dags/{PROBE_DAG_ID}/dagRuns", {"dag_run_id": "misrouted", "logical_date": None})
            wait("the misrouted run to finish", lambda: finished("misrouted", PROBE_DAG_ID))
            show("misrouted (a crawl task sent to the default queue on purpose)", where("misrouted", PROBE_DAG_ID))
            assert where("misrouted", PROBE_DAG_ID) == [
                ("find_crawls_on_default", "", "failed", "default", other_worker.hostname)
            ]
            [log] = glob.glob(str(home / "logs" / f"dag_id={PROBE_DAG_ID}" / "**" / "*.log"), recursive=True)
            assert (
                f"names {host.data_directory!r}, which is not a directory on this host ({other_worker.hostname})"
                in Path(log).read_text()
            )
        finally:
            deployment.stop()
            postgres_server.drop_database(metadata)

    # The disks: every crawl was archived and is gone from the Kingfisher host.
    assert glob.glob(os.path.join(host.data_directory, "*", "*")) == []
    assert months() == {
        month(earlier): earlier.id,
        month(first): better.id,
        month(other): other.id,
        month(refused): refused.id,
        month(fine): fine.id,
    }
    client = s3_server.client()
    assert not [i["Key"] for i in client.list_objects_v2(Bucket=bucket).get("Contents", []) if "staging/" in i["Key"]]
