"""The DAG file parses, makes no connections at import, and keeps the contract deployments rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scripts.demo_kit.airflow_dag import REPOSITORY, base_environment

PROBE = """
import json, socket, sys
def refuse(*args, **kwargs):
    raise RuntimeError("the DAG file opened a network connection at import")
socket.socket.connect = refuse
socket.create_connection = refuse
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("kingfisher_archive")
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}}
if dag is not None:
    out.update(
        schedule=str(dag.schedule),
        catchup=dag.catchup,
        max_active_runs=dag.max_active_runs,
        start_date=dag.start_date.isoformat(),
        doc_md=bool(dag.doc_md),
        params={k: {"default": v.value, "title": v.schema.get("title"), "description": v.description}
                for k, v in dag.params.items()},
        tasks={t.task_id: {"retries": t.retries, "retry_delay": t.retry_delay.total_seconds(),
                           "downstream": sorted(t.downstream_task_ids), "pool": t.pool, "queue": t.queue,
                           "max_active_tis_per_dagrun": t.max_active_tis_per_dagrun} for t in dag.tasks},
    )
print(json.dumps(out))
"""


def load(tmp_path, **env) -> dict:
    environment = base_environment(str(tmp_path))
    environment.pop("KINGFISHER_ARCHIVE_RETRIES")
    environment.pop("KINGFISHER_ARCHIVE_RETRY_DELAY_SECONDS")
    environment["PYTHONPATH"] = str(REPOSITORY / "plugins")
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPOSITORY / "dags")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_dag_parses_without_database_or_network_and_keeps_its_contract(tmp_path):
    dag = load(tmp_path)
    assert dag["errors"] == {}
    assert (dag["schedule"], dag["catchup"], dag["max_active_runs"]) == ("@daily", False, 1)
    assert dag["start_date"] == "2026-01-01T00:00:00+00:00"
    assert dag["doc_md"]
    assert dag["params"]["dry_run"]["default"] is False
    assert dag["params"]["reevaluate"]["default"] is False
    for param in dag["params"].values():
        assert param["title"] and param["description"]
    assert dag["tasks"]["find_crawls"]["downstream"] == ["inspect_crawl"]
    assert dag["tasks"]["archive_crawl"]["downstream"] == ["sweep_old_crawls"]
    assert dag["tasks"]["sweep_old_crawls"]["downstream"] == ["summarise"]
    # Parallel uploads are bounded within a run and, through the pool, across runs (a backfill and the daily run).
    assert dag["tasks"]["archive_crawl"]["pool"] == "kingfisher_archive"
    assert dag["tasks"]["archive_crawl"]["max_active_tis_per_dagrun"] == 2
    assert {t["retries"] for t in dag["tasks"].values()} == {2}
    assert {t["retry_delay"] for t in dag["tasks"].values()} == {300}


def test_retries_and_the_host_queue_come_from_the_environment(tmp_path):
    dag = load(
        tmp_path,
        KINGFISHER_ARCHIVE_RETRIES="0",
        KINGFISHER_ARCHIVE_RETRY_DELAY_SECONDS="7",
        KINGFISHER_ARCHIVE_QUEUE="kingfisher_collect_host",
    )
    assert {t["retries"] for t in dag["tasks"].values()} == {0}
    assert {t["retry_delay"] for t in dag["tasks"].values()} == {7}
    # Whatever touches the crawls' files or the ledger (the summary reads it) runs on the Kingfisher host's worker.
    assert {name: t["queue"] for name, t in dag["tasks"].items()} == {
        "find_crawls": "kingfisher_collect_host",
        "inspect_crawl": "kingfisher_collect_host",
        "decide": "kingfisher_collect_host",
        "archive_crawl": "kingfisher_collect_host",
        "sweep_old_crawls": "kingfisher_collect_host",
        "summarise": "kingfisher_collect_host",
    }


def test_only_the_adapter_the_catalogue_page_and_the_dag_import_airflow():
    package = Path(REPOSITORY, "plugins", "kingfisher_archive")
    importing = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if "from airflow" in p.read_text() or "import airflow" in p.read_text()
    )
    assert importing == ["catalogue_page.py", "tasks.py"]
    assert os.path.exists(REPOSITORY / "dags" / "kingfisher_archive.py")
