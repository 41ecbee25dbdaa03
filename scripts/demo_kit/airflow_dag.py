"""Run the DAG through Airflow itself: ``airflow dags test`` in a subprocess, throwaway AIRFLOW_HOME, sqlite.

The metadata database is migrated once per session and copied for each run, so runs do not see each other's
history unless a test wants them to (it then reuses one :class:`AirflowHome`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def base_environment(home: str) -> dict[str, str]:
    """The environment Airflow needs, without anything from the caller's Airflow set-up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KINGFISHER_ARCHIVE"))}
    env.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__DAGS_FOLDER=str(REPOSITORY / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPOSITORY / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        KINGFISHER_ARCHIVE_RETRIES="0",
        KINGFISHER_ARCHIVE_RETRY_DELAY_SECONDS="0",
    )
    return env


def migrate(home: str) -> None:
    os.makedirs(home, exist_ok=True)
    result = subprocess.run(
        [AIRFLOW, "db", "migrate"], env=base_environment(home), capture_output=True, text=True, timeout=300
    )
    if result.returncode:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}")


def archive_connections(postgres, database: str, s3) -> dict[str, dict]:
    """The archive DAG's two Connections: a database on the harness's PostgreSQL server, and its S3 server."""
    return {
        "kingfisher_process": json.loads(postgres.connection_json(database)),
        "kingfisher_archive_s3": {
            "conn_type": "aws",
            "login": s3.access_key,
            "password": s3.secret_key,
            "extra": {"endpoint_url": s3.endpoint_url, "region_name": s3.region},
        },
    }


def archive_variables(bucket: str, host) -> dict[str, str]:
    """The archive DAG's Variables for a bucket and a Kingfisher host built by the harness (STANDARD: not AWS)."""
    return {
        "kingfisher_archive_bucket": bucket,
        "kingfisher_archive_data_directory": host.data_directory,
        "kingfisher_archive_logs_directory": host.logs_directory,
        "kingfisher_archive_storage_class": "STANDARD",
    }


@dataclass
class DagRun:
    returncode: int
    output: str

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0


@dataclass
class AirflowHome:
    """One AIRFLOW_HOME with a migrated sqlite database and the package's Connections and Variables.

    ``airflow`` is the command that runs Airflow, by default this virtualenv's ``airflow``; the installed-wheel test
    runs ``python -m airflow`` with another interpreter (and an empty plugins folder in ``extra_env``).
    """

    home: str
    connections: dict[str, dict] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    airflow: list[str] = field(default_factory=list)

    @classmethod
    def from_template(cls, template: str, home: str, **kwargs) -> AirflowHome:
        os.makedirs(home, exist_ok=True)
        shutil.copy(os.path.join(template, "airflow.db"), os.path.join(home, "airflow.db"))
        return cls(home, **kwargs)

    def environment(self) -> dict[str, str]:
        env = base_environment(self.home)
        for conn_id, conn in self.connections.items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        for name, value in self.variables.items():
            env[f"AIRFLOW_VAR_{name.upper()}"] = value
        env.update(self.extra_env)
        return env

    def run(
        self,
        logical_date: str = "2026-11-27",
        conf: dict | None = None,
        timeout: int = 600,
        dag_id: str = "kingfisher_archive",
    ) -> DagRun:
        command = [*(self.airflow or [AIRFLOW]), "dags", "test", dag_id, logical_date]
        if conf:
            command += ["--conf", json.dumps(conf)]
        result = subprocess.run(
            command, env=self.environment(), capture_output=True, text=True, timeout=timeout, cwd=self.home
        )
        return DagRun(result.returncode, result.stdout + result.stderr)
