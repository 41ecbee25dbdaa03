"""The whole DAG, run by Airflow itself (`airflow dags test`) against real PostgreSQL and S3 servers.

A mixed Kingfisher host: crawls to archive, one of each reject reason, crawls Process has not loaded or does not
know, a sample, a deleted collection, two crawls in one month, and one identical to an earlier month's archive.
Assertions are on what an operator would look at: the bucket, the disk and the ledger.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import zlib
from urllib.parse import quote

import psycopg2
import pytest

from kingfisher_archive import policy
from scripts.demo_kit.airflow_dag import AIRFLOW, AirflowHome, archive_connections, archive_variables
from scripts.demo_kit.kingfisher_host import KingfisherHost, archive_all, mixed_host, ocds_files, tree
from scripts.demo_kit.kingfisher_process import ProcessV2

pytestmark = pytest.mark.airflow


@pytest.fixture(params=["v1", "v2"])
def schema(request):
    """Every DAG test runs against both generations of Kingfisher Process."""
    return request.param


@pytest.fixture
def mixed(tmp_path, airflow_template, process_database, postgres_server, s3_server, schema):
    dsn = process_database(schema)
    host, earlier = mixed_host(str(tmp_path / "host"), dsn, schema)
    bucket = f"test-{secrets.token_hex(6)}"
    s3_server.create_bucket(bucket)
    client = s3_server.client()
    archive_all(earlier, client, bucket)
    database = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    airflow = AirflowHome.from_template(
        airflow_template,
        str(tmp_path / "airflow"),
        connections=archive_connections(postgres_server, database, s3_server),
        variables=archive_variables(bucket, host),
    )
    return host, airflow, client, bucket


def objects(client, bucket) -> dict[str, str]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = item["ETag"]
    return found


def disk(host: KingfisherHost) -> dict[str, bool]:
    return {crawl_id: host.exists(crawl_id) for crawl_id in host.crawls}


def ledger_rows(airflow: AirflowHome) -> dict[str, tuple[str, str | None]]:
    path = os.path.join(airflow.home, "kingfisher_archive.sqlite3")
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT source_id, data_version, status, reason FROM crawl").fetchall()
    return {f"{s}/{v}": (status, reason) for s, v, status, reason in rows}


EXPECTED_V1 = {
    "scotland/20200902_052458": ("not_archived", "new_period"),  # won, then superseded in its month
    "scotland/20200920_101010": ("archived", "same_period_more_bytes"),
    "paraguay/20201001_000000": ("rejected", "no_log_file"),
    "paraguay/20201002_000000": ("rejected", "not_finished"),
    "paraguay/20201003_000000": ("rejected", "not_complete"),
    "paraguay/20201004_000000": ("rejected", "not_clean_enough"),
    "paraguay/20201005_000000": ("rejected", "no_data_files"),
    "uk/20201201_000000": ("not_archived", "2020_11_not_distinct"),
}
# v2 notes the close reason, so Process never offers the crawl that shut down; a log named by the collection's
# scrapyd_job is found even when its crawl time does not match.
EXPECTED_V2 = {k: v for k, v in EXPECTED_V1.items() if k != "paraguay/20201002_000000"} | {
    "kenya/20201201_000000": ("archived", "new_period"),
}
EXPECTED = {"v1": EXPECTED_V1, "v2": EXPECTED_V2}
# v2: closed by Kingfisher Collect while Process is still loading its files.
WAITING = "ecuador/20210105_000000"
# What an earlier run archived: uk/20201105_000000, identical to uk/20201201_000000 on the host.
EARLIER = ["uk/2020/11/data.tar.zst", "uk/2020/11/metadata.json", "uk/2020/11/scrapy.log"]


@pytest.mark.slow
def test_a_run_archives_what_deserves_it_and_leaves_everything_else(mixed, schema):
    host, airflow, client, bucket = mixed
    expected = EXPECTED[schema]

    run = airflow.run()
    assert run.succeeded, run.output[-5000:]

    archived_prefixes = ["kenya/2020/12/"] if schema == "v2" else []
    assert sorted(objects(client, bucket)) == [
        *(prefix + name for prefix in archived_prefixes for name in ("data.tar.zst", "metadata.json", "scrapy.log")),
        "scotland/2020/09/data.tar.zst",
        "scotland/2020/09/metadata.json",
        "scotland/2020/09/scrapy.log",
        *EARLIER,
    ]
    metadata = json.loads(client.get_object(Bucket=bucket, Key="scotland/2020/09/metadata.json")["Body"].read())
    assert (metadata["id"], metadata["files_count"], metadata["errors_count"]) == ("scotland/20200920_101010", 12, 0)

    on_disk = disk(host)
    assert on_disk.pop("scotland/20200920_101010") is False
    if schema == "v2":
        assert on_disk.pop("kenya/20201201_000000") is False
    assert not host.log_exists("scotland/20200920_101010")
    assert all(on_disk.values()), on_disk  # everything else is still there
    assert host.log_exists("scotland/20200902_052458")

    assert ledger_rows(airflow) == expected
    # The summary's table says why in words: the first crawl of the month lost to the bigger second one.
    assert "scotland/20200902_052458" in run.output
    assert "lost to 20200920_101010: same month, more data" in run.output

    # The UI labels each mapped task with its crawl (read back from Airflow's own metadata database).
    with sqlite3.connect(os.path.join(airflow.home, "airflow.db")) as connection:
        labels = connection.execute(
            "SELECT task_id, rendered_map_index FROM task_instance WHERE dag_id = 'kingfisher_archive'"
            " AND map_index >= 0"
        ).fetchall()
    assert sorted(label for task, label in labels if task == "inspect_crawl") == sorted(expected)
    assert sorted(label for task, label in labels if task == "archive_crawl") == sorted(
        crawl_id for crawl_id, (status, _) in expected.items() if status == "archived"
    )

    if schema == "v2":
        # Closed by Kingfisher Collect, still being loaded by Process: untouched, listed, and (closed long ago) warned
        # about, without failing the run.
        assert host.exists(WAITING) and host.log_exists(WAITING)
        assert f"waiting for Kingfisher Process: {WAITING} (collection" in run.output
        assert "5 of 5 files recorded, 5 still to load" in run.output
        assert f"{WAITING} (Kingfisher Process collection" in run.output
        assert "has waited for Kingfisher Process to load its files for longer than 3 days" in run.output
        assert WAITING not in ledger_rows(airflow)
        # Process loads its files; the next run archives it.
        ProcessV2(host.dsn, host.data_directory).load_all(host.crawls[WAITING].collection_id)
        expected = expected | {WAITING: ("archived", "new_period")}

    # A second run finds nothing else new and changes nothing else.
    before_bucket, before_disk = objects(client, bucket), disk(host)
    second = airflow.run(logical_date="2026-11-28")
    assert second.succeeded, second.output[-5000:]
    if schema == "v2":
        assert not host.exists(WAITING) and not host.log_exists(WAITING)
        assert before_disk.pop(WAITING) is True
        for name in ("data.tar.zst", "metadata.json", "scrapy.log"):
            assert objects(client, bucket).pop(f"ecuador/2021/01/{name}")
        assert "waiting for Kingfisher Process:" not in second.output
    assert {k: v for k, v in objects(client, bucket).items() if not k.startswith("ecuador/")} == before_bucket
    assert {k: v for k, v in disk(host).items() if k != WAITING} == before_disk
    assert ledger_rows(airflow) == expected


@pytest.mark.slow
def test_list_shows_what_the_run_left_reading_the_dags_own_ledger_with_no_flag(mixed, schema, tmp_path):
    """`kingfisher-archive list` on the Airflow host, in the DAG's environment: no --ledger, no ledger Variable; it
    finds the ledger under $AIRFLOW_HOME where the DAG wrote it, with the crawl waiting for Kingfisher Process."""
    if schema == "v1":
        pytest.skip("only Kingfisher Process v2 has crawls waiting to be loaded")
    host, airflow, client, bucket = mixed
    run = airflow.run()
    assert run.succeeded, run.output[-5000:]
    env = {k: v for k, v in airflow.environment().items() if k != "AIRFLOW_VAR_KINGFISHER_ARCHIVE_LEDGER"}
    env["PYTHONPATH"] = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins")

    def cli(*args):
        result = subprocess.run(
            [sys.executable, "-m", "kingfisher_archive", "list", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    found = json.loads(cli("--json"))
    assert found["ledger"] == os.path.join(airflow.home, "kingfisher_archive.sqlite3")
    assert [w["id"] for w in found["on_disk"]["waiting"]] == [WAITING]
    kept = {k["id"]: k for k in found["on_disk"]["kept"]}
    assert kept["scotland/20200902_052458"]["reason"] == "new_period"  # the code, for machines
    assert kept["scotland/20200902_052458"]["why"] == "lost to 20200920_101010: same month, more data"
    with sqlite3.connect(os.path.join(airflow.home, "kingfisher_archive.sqlite3")) as connection:
        freed = sum(
            json.loads(result)["bytes"]
            for (result,) in connection.execute("SELECT result FROM crawl WHERE status = 'archived'")
        )
    assert freed > 0 and found["totals"]["bytes_freed"] == freed
    assert [(a["kind"], a["id"]) for a in found["attention"]] == [("waiting", WAITING)]  # closed long ago

    text = cli()
    lines = text.splitlines()
    assert lines[0] == "Needs attention (1 item):"
    assert f"{WAITING} has waited" in lines[1]
    assert "kept     scotland/20200902_052458: not archived, lost to 20200920_101010: same month, more data" in lines
    assert f"waiting  {WAITING}: for Kingfisher Process to load its files" in text
    assert "freed on the Kingfisher host" in lines[-2]
    assert lines[-1].startswith("Stored by class: STANDARD ") and " a month at us-east-1 prices as of " in lines[-1]
    codes = {*policy.Reject, *policy.Comparison, "not_archived", "2020_11_not_distinct"}
    assert not [code for code in codes if code in text], text

    # --no-airflow: neither the DAG's settings nor its ledger.
    bare = subprocess.run(
        [sys.executable, "-m", "kingfisher_archive", "list", "--no-airflow", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert bare.returncode == 2 and "no bucket: pass --bucket" in bare.stderr


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["v2"])
def test_airflow_dags_test_exits_0_with_the_settings_a_newcomer_has(mixed):
    """`airflow dags test kingfisher_archive` as a newcomer types it: no KINGFISHER_ARCHIVE_* variable at all, so the
    DAG carries its default run timeout (12 hours) and the failure callback that reports it, and the command ends
    with the run's own outcome (a DAG with a DeadlineAlert made Airflow 3.3.2's fail after the run: issue 73428)."""
    host, airflow, client, bucket = mixed
    env = {k: v for k, v in airflow.environment().items() if not k.startswith("KINGFISHER_ARCHIVE")}

    run = subprocess.run(
        [AIRFLOW, "dags", "test", "kingfisher_archive"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=airflow.home,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    assert "scotland/2020/09/metadata.json" in objects(client, bucket)
    assert not host.exists("scotland/20200920_101010")

    # The run serialised the DAG as the scheduler reads it: with the default run timeout and the failure callback.
    with sqlite3.connect(os.path.join(airflow.home, "airflow.db")) as connection:
        data, compressed = connection.execute(
            "SELECT data, data_compressed FROM serialized_dag WHERE dag_id = 'kingfisher_archive'"
        ).fetchone()
    dag = json.loads(data if data is not None else zlib.decompress(compressed))["dag"]
    assert (dag["dagrun_timeout"], dag["has_on_failure_callback"]) == (43200.0, True)


@pytest.mark.slow
def test_a_dry_run_reports_and_changes_nothing(mixed):
    host, airflow, client, bucket = mixed
    before_bucket, before_disk = objects(client, bucket), disk(host)

    run = airflow.run(conf={"dry_run": True})
    assert run.succeeded, run.output[-5000:]

    assert objects(client, bucket) == before_bucket
    assert disk(host) == before_disk
    assert not os.path.exists(os.path.join(airflow.home, "kingfisher_archive.sqlite3"))
    assert "scotland/20200920_101010" in run.output and "would be archived" in run.output
    assert "more than half of its files failed" in run.output  # not_clean_enough, in words


def _unset(kind, name):
    def change(airflow):
        del getattr(airflow, kind)[name]

    return change


def _connection(name, **changes):
    def change(airflow):
        connection = airflow.connections[name]
        extra = changes.pop("extra", {})
        connection.update(changes)
        connection.setdefault("extra", {}).update(extra)

    return change


def _variable(name, value):
    def change(airflow):
        airflow.variables[name] = value

    return change


BROKEN_SETTINGS = {
    "missing variable": (
        _unset("variables", "kingfisher_archive_bucket"),
        "Airflow Variable 'kingfisher_archive_bucket' is not set",
    ),
    "missing process connection": (
        _unset("connections", "kingfisher_process"),
        "Airflow Connection 'kingfisher_process' is not defined",
    ),
    "missing s3 connection": (
        _unset("connections", "kingfisher_archive_s3"),
        "Airflow Connection 'kingfisher_archive_s3' is not defined",
    ),
    "postgresql unreachable": (
        _connection("kingfisher_process", host="127.0.0.1", port=9),
        "Cannot connect to Kingfisher Process with the Airflow Connection 'kingfisher_process'",
    ),
    "wrong s3 credentials": (
        _connection("kingfisher_archive_s3", password="not-the-secret"),
        "(connection 'kingfisher_archive_s3') refused our credentials",
    ),
    "no such bucket": (
        _variable("kingfisher_archive_bucket", "no-such-bucket-anywhere"),
        "The bucket 'no-such-bucket-anywhere' (connection 'kingfisher_archive_s3') does not exist",
    ),
    "s3 server down": (
        _connection("kingfisher_archive_s3", extra={"endpoint_url": "http://127.0.0.1:9"}),
        "(connection 'kingfisher_archive_s3') cannot be reached",
    ),
    "data directory missing": (
        _variable("kingfisher_archive_data_directory", "/nonexistent/kingfisher/data"),
        "Airflow Variable 'kingfisher_archive_data_directory' names '/nonexistent/kingfisher/data', which is not",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["v1"])
@pytest.mark.parametrize("broken", BROKEN_SETTINGS)
def test_a_missing_or_broken_setting_fails_the_first_task_naming_it_and_touches_nothing(mixed, broken):
    host, airflow, client, bucket = mixed
    change, message = BROKEN_SETTINGS[broken]
    change(airflow)
    run = airflow.run()
    assert not run.succeeded
    assert message in run.output
    assert "Inspect crawl" not in run.output and "inspect_crawl" not in task_lines(run.output)
    assert all(disk(host).values())
    assert sorted(objects(client, bucket)) == EARLIER
    assert not os.path.exists(os.path.join(airflow.home, "kingfisher_archive.sqlite3"))


def task_lines(output: str) -> str:
    """The lines where Airflow names a task instance (to see which tasks ran)."""
    return "\n".join(line for line in output.splitlines() if "Task started" in line or "task_id=" in line)


@pytest.mark.slow
def test_archives_restore_byte_for_byte_the_bucket_passes_its_audit_and_a_broken_month_is_named(
    mixed, schema, tmp_path
):
    from kingfisher_archive import audit, restore

    host, airflow, client, bucket = mixed
    archived = [crawl_id for crawl_id, (status, _) in EXPECTED[schema].items() if status == "archived"]
    before = {crawl_id: tree(host.crawls[crawl_id].directory) for crawl_id in archived}
    identical = tree(host.crawls["uk/20201201_000000"].directory)
    assert airflow.run().succeeded

    # Through the restore DAG, as an operator would: it refuses to run until its restore directory is set.
    conf = {"source_id": "scotland", "year": 2020, "month": 9, "target_directory": "restored"}
    unset = airflow.run(dag_id="kingfisher_archive_restore", conf=conf, logical_date="2026-11-27")
    assert not unset.succeeded
    assert "Airflow Variable 'kingfisher_archive_restore_directory' is not set" in unset.output
    assert "airflow variables set kingfisher_archive_restore_directory" in unset.output
    assert not os.path.exists(os.path.join(airflow.home, "restored"))  # the task's working directory
    restore_directory = tmp_path / "restore-directory"
    restore_directory.mkdir()
    airflow.variables["kingfisher_archive_restore_directory"] = str(restore_directory)
    target = restore_directory / "restored"
    run = airflow.run(dag_id="kingfisher_archive_restore", conf=conf, logical_date="2026-11-28")
    assert run.succeeded, run.output[-5000:]
    assert "python manage.py load --source scotland" in run.output
    assert tree(target / "scotland" / "20200920_101010") == before["scotland/20200920_101010"]
    assert sorted(os.listdir(restore_directory)) == ["restored"]
    # And every other archived crawl through the same function, the earlier run's too.
    for crawl_id in archived:
        source_id, version = crawl_id.split("/")
        if crawl_id != "scotland/20200920_101010":
            restore.restore(client, bucket, source_id, int(version[:4]), int(version[4:6]), str(target))
        assert tree(target / source_id / version) == before[crawl_id]
    restore.restore(client, bucket, "uk", 2020, 11, str(target))
    assert tree(target / "uk" / "20201105_000000") == identical

    # Never outside the restore directory, so never into Kingfisher Collect's own directories (those files would be
    # archived again), nor up out of it.
    on_disk = tree(host.data_directory)
    conf["target_directory"] = host.data_directory
    refused = airflow.run(dag_id="kingfisher_archive_restore", conf=conf, logical_date="2026-11-29")
    assert not refused.succeeded
    assert host.data_directory in refused.output
    assert "is outside the Airflow Variable 'kingfisher_archive_restore_directory'" in refused.output
    conf["target_directory"] = "../escaped"
    refused = airflow.run(dag_id="kingfisher_archive_restore", conf=conf, logical_date="2026-11-30")
    assert not refused.succeeded
    assert "refusing to restore to '../escaped': it holds '..'" in refused.output
    assert not (tmp_path / "escaped").exists()
    assert tree(host.data_directory) == on_disk

    # The bucket the run leaves passes its audit, contents included.
    clean = audit.audit(client, bucket, verify_data=True)
    assert (clean["problems"], clean["warnings"]) == ([], [])
    assert clean["verified"] == clean["months"] == len(archived) + 1

    # A month broken on purpose (its data.tar.zst lost): the audit DAG fails, naming that month and nothing else.
    client.delete_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")
    audit_run = airflow.run(dag_id="kingfisher_archive_audit", logical_date="2026-11-28")
    assert not audit_run.succeeded
    assert "The audit found 1 problem it did not repair" in audit_run.output
    reported = [line for line in audit_run.output.splitlines() if line.startswith(("uk/", "scotland/", "kenya/"))]
    assert len(reported) == 1, reported
    assert reported[0].startswith(
        "scotland/2020/09/data.tar.zst: data object missing (metadata.json describes an archive that is not there)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["v1"])
def test_local_retention_sweeps_old_crawls_that_were_loaded_but_not_kept(mixed):
    host, airflow, client, bucket = mixed
    airflow.variables["kingfisher_archive_retention_days"] = "30"

    dry = airflow.run(conf={"dry_run": True})
    assert dry.succeeded, dry.output[-5000:]
    assert all(disk(host).values())

    run = airflow.run(logical_date="2026-11-28")
    assert run.succeeded, run.output[-5000:]
    swept = {crawl_id for crawl_id, (status, _) in EXPECTED_V1.items() if status in ("rejected", "not_archived")}
    # uk/20201201_000000 is not distinct from the uk/2020/11 archive, which is in the bucket: swept like the rest.
    assert {crawl_id for crawl_id, present in disk(host).items() if not present} == swept | {
        "scotland/20200920_101010"  # archived
    }
    for crawl_id in swept:
        assert f"swept {crawl_id}" in run.output
    # Never what Process has not loaded (not loaded, unknown, sample, deleted).
    assert all(host.exists(c) for c in host.crawls if c.startswith("moldova"))
    assert sorted(objects(client, bucket))[:3] == [
        "scotland/2020/09/data.tar.zst",
        "scotland/2020/09/metadata.json",
        "scotland/2020/09/scrapy.log",
    ]


class UdpListener:
    """A StatsD server's socket on loopback: every datagram the run sends, kept as text lines."""

    def __init__(self):
        import socket
        import threading

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self):
        while not self._stop.is_set():
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                continue
            self.lines.extend(data.decode(errors="replace").splitlines())

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)
        self.socket.close()


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["v2"])
def test_a_run_sends_its_figures_to_statsd(mixed):
    host, airflow, client, bucket = mixed
    listener = UdpListener()
    airflow.extra_env.update(
        AIRFLOW__METRICS__STATSD_ON="True",
        AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
        AIRFLOW__METRICS__STATSD_PORT=str(listener.port),
    )
    try:
        run = airflow.run()
    finally:
        listener.close()
    assert run.succeeded, run.output[-5000:]
    # No notifier configured: the alert is logged, not sent, and the run is not the worse for it.
    assert "No notifier (Variable 'kingfisher_archive_notifier' is not set): alert not sent" in run.output

    ours = {}
    for line in listener.lines:
        name, _, rest = line.partition(":")
        if name.startswith("airflow.kingfisher_archive."):
            ours.setdefault(name.removeprefix("airflow.kingfisher_archive."), []).append(rest)
    archived = ["kenya/2020/12/", "scotland/2020/09/"]
    metadata = [json.loads(client.get_object(Bucket=bucket, Key=p + "metadata.json")["Body"].read()) for p in archived]
    uploaded = sum(client.head_object(Bucket=bucket, Key=p + "data.tar.zst")["ContentLength"] for p in archived)
    kept = sum(1 for status, _ in EXPECTED_V2.values() if status in ("rejected", "not_archived"))
    assert {name: values for name, values in ours.items() if name != "oldest_wait_days"} | {
        "throughput_mb_per_second": [v.split("|")[1] for v in ours["throughput_mb_per_second"]]
    } == {
        "crawls_archived": ["2|c"],
        "crawls_kept": [f"{kept}|c"],
        "bytes_read": [f"{sum(m['bytes'] for m in metadata)}|c"],
        "bytes_uploaded": [f"{uploaded}|c"],
        "bytes_freed": [f"{sum(m['bytes'] for m in metadata)}|c"],
        "crawls_held": ["0|g"],
        "crawls_waiting": ["1|g"],
        "throughput_mb_per_second": ["g"],
    }
    # The crawl waiting for Kingfisher Process was closed long before the run (the warning says more than 3 days).
    (oldest,) = ours["oldest_wait_days"]
    assert oldest.endswith("|g") and float(oldest.split("|")[0]) > 3


class SmtpServer:
    """A mail server on loopback (aiosmtpd) that keeps every message it is sent."""

    def __init__(self):
        import socket

        from aiosmtpd.controller import Controller

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.messages = []
        server = self

        class Handler:
            async def handle_DATA(self, smtp, session, envelope):  # noqa: N802 (aiosmtpd's name)
                import email

                server.messages.append(email.message_from_bytes(envelope.content))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def connection(self) -> dict:
        return {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": self.port,
            "extra": {"disable_tls": True, "disable_ssl": True},
        }

    def bodies(self) -> list[tuple[str, str]]:
        found = []
        for message in self.messages:
            parts = [part for part in message.walk() if part.get_content_type() == "text/html"]
            found.append((message["Subject"], parts[0].get_payload(decode=True).decode() if parts else ""))
        return found


@pytest.fixture
def smtp():
    server = SmtpServer()
    yield server
    server.controller.stop()


NOTIFIER = {
    "notifier": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
    "kwargs": {"to": "kingfisher@example.org", "from_email": "airflow@example.org", "smtp_conn_id": "alert_mail"},
}


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["v2"])
def test_what_needs_a_person_reaches_one_in_one_message_per_run(mixed, smtp):
    host, airflow, client, bucket = mixed
    airflow.connections["alert_mail"] = smtp.connection()
    airflow.variables["kingfisher_archive_notifier"] = json.dumps(NOTIFIER)

    # A run that succeeds, with a crawl that has waited too long for Kingfisher Process.
    run = airflow.run()
    assert run.succeeded, run.output[-5000:]
    assert "Alert sent through" in run.output, [line for line in run.output.splitlines() if "lert" in line]
    ((subject, body),) = smtp.bodies()
    assert subject.startswith("Kingfisher Archive: kingfisher_archive run manual__")
    assert subject.endswith(" needs attention")
    assert f"{WAITING} (Kingfisher Process collection" in body
    assert "has waited for Kingfisher Process to load its files for longer than 3 days" in body
    run_id = subject.split(" run ")[1].removesuffix(" needs attention")
    assert f'href="http://localhost:8080/dags/kingfisher_archive/runs/{quote(run_id)}"' in body
    assert smtp.messages[0]["To"] == "kingfisher@example.org"

    # A run that fails (the data directory is gone): one message, naming the failed task.
    airflow.variables["kingfisher_archive_data_directory"] = "/nonexistent/kingfisher/data"
    failed = airflow.run(logical_date="2026-11-28")
    assert not failed.succeeded
    assert len(smtp.messages) == 2
    subject, body = smtp.bodies()[1]
    assert "needs attention" in subject
    assert "The run failed: The &#x27;Decide what to archive&#x27; task left no decisions" in body
    assert "Task find_crawls failed" in body

    # The audit finds a broken month: one message naming it.
    client.delete_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")
    audit = airflow.run(dag_id="kingfisher_archive_audit", logical_date="2026-11-28")
    assert not audit.succeeded
    assert len(smtp.messages) == 3
    subject, body = smtp.bodies()[2]
    assert subject.startswith("Kingfisher Archive: the audit (kingfisher_archive_audit run ")
    assert "scotland/2020/09/data.tar.zst: data object missing" in body


@pytest.mark.parametrize("schema", ["v2"])
def test_one_crawls_trouble_is_held_and_named_and_a_crawl_collect_reuses_is_archived_and_kept(mixed, smtp):
    """Issue 30 through Airflow: a crawl whose log shows Kingfisher Collect's DatabaseStore is archived and kept on
    disk; a crawl whose deletion the disk refuses (something already stands where it would be set aside) is held,
    its archive verified; the run succeeds, every other crawl ends as it would have, and one alert names the held
    crawl in words."""
    host, airflow, client, bucket = mixed
    airflow.connections["alert_mail"] = smtp.connection()
    airflow.variables["kingfisher_archive_notifier"] = json.dumps(NOTIFIER)
    reused = host.add_crawl(
        "chile", "20201215_000000", log={"extensions": ["kingfisher_scrapy.extensions.DatabaseStore"]}
    )
    refused = host.add_crawl("peru", "20201216_000000")
    with open(refused.directory + ".deleting", "wb") as f:  # a file where the crawl would be renamed aside
        f.write(b"not a crawl")

    run = airflow.run()
    assert run.succeeded, run.output[-5000:]

    keys = objects(client, bucket)
    assert {"chile/2020/12/metadata.json", "peru/2020/12/metadata.json", "scotland/2020/09/metadata.json"} <= set(keys)
    assert host.exists(reused.id) and host.log_exists(reused.id), "Collect writes into it again: kept"
    assert host.exists(refused.id) and host.log_exists(refused.id)
    with open(refused.directory + ".deleting", "rb") as f:
        assert f.read() == b"not a crawl"
    rows = ledger_rows(airflow)
    assert rows.pop("chile/20201215_000000") == ("kept", "new_period")
    assert rows.pop("peru/20201216_000000")[0] == "deleting"  # its archive is verified; the next run finishes it
    assert rows == EXPECTED["v2"]  # everything else as a run without them
    assert not host.exists("scotland/20200920_101010") and not host.exists("kenya/20201201_000000")

    table = run.output[run.output.index("Summary of run") :]
    assert "chile/20201215_000000" in table and "peru/20201216_000000" in table
    ((subject, body),) = smtp.bodies()
    assert "peru/20201216_000000 is held" in body and "archived and verified, and deleting it from disk failed" in body
    assert "delete_failed" not in body  # words for people


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["v2"])
def test_into_glacier_a_month_replaced_and_restored_through_the_restore_dags_deferral(mixed, s3_server, tmp_path):
    """Amazon S3's archive classes as the tests' proxy imitates them (a GET or copy of a GLACIER object refused until
    a restore has made a copy, which takes a few seconds here): the archive DAG writes its data objects into
    GLACIER and replaces a month there without a cold read, and the restore DAG asks for the copy, waits for it in
    the (inline) triggerer and restores the crawl byte for byte."""
    from tests.harness.aws_like import AwsLike
    from tests.harness.stripping_proxy import StrippingProxy

    host, airflow, client, bucket = mixed
    proxy = AwsLike(s3_server.client(), bucket, kms=False, cold=True, restore_seconds=3)
    with StrippingProxy(
        s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key, s3_server.region, drop=(), rewrite=proxy
    ) as through:
        airflow.connections["kingfisher_archive_s3"]["extra"]["endpoint_url"] = through.endpoint_url
        airflow.variables["kingfisher_archive_storage_class"] = "GLACIER"
        restore_directory = tmp_path / "restore-directory"
        restore_directory.mkdir()
        airflow.variables["kingfisher_archive_restore_directory"] = str(restore_directory)
        airflow.variables["kingfisher_archive_thaw_poll_seconds"] = "1"

        first = airflow.run()
        assert first.succeeded, first.output[-5000:]
        month = "scotland/2020/09/"
        classes = {
            item["Key"]: item["StorageClass"]
            for item in client.list_objects_v2(Bucket=bucket, Prefix=month)["Contents"]
        }
        assert classes == {
            month + "data.tar.zst": "GLACIER",
            month + "metadata.json": "STANDARD_IA",
            month + "scrapy.log": "STANDARD_IA",
        }

        # A better crawl of the same month: the cold month is replaced (its GLACIER object deleted minutes after it
        # was written, which the summary prices), still without reading it.
        better = host.add_crawl("scotland", "20200925_000000", ocds_files("c", 30))
        before = tree(better.directory)
        second = airflow.run(logical_date="2026-11-28")
        assert second.succeeded, second.output[-5000:]
        metadata = json.loads(client.get_object(Bucket=bucket, Key=month + "metadata.json")["Body"].read())
        assert (metadata["id"], metadata["storage_class"], metadata["codec"]) == (
            "scotland/20200925_000000",
            "GLACIER",
            "zstd",
        )
        assert not host.exists("scotland/20200925_000000")
        early = f"replacing s3://{bucket}/{month}data.tar.zst pays under $0.0001 early-deletion: 90 days left of "
        assert early + "GLACIER's 90-day minimum (information: the replacement went ahead)" in second.output
        assert proxy.refused_cold == [] and proxy.restores == []  # nothing cold was read, or asked for

        conf = {"source_id": "scotland", "year": 2020, "month": 9, "target_directory": "restored", "tier": "Standard"}
        restored = airflow.run(dag_id="kingfisher_archive_restore", conf=conf, logical_date="2026-11-29")
        assert restored.succeeded, restored.output[-5000:]
        assert "Deferring until the copy is ready" in restored.output
        assert proxy.restores == [(month + "data.tar.zst", 7, "Standard")]
        assert tree(restore_directory / "restored" / "scotland" / "20200925_000000") == before
