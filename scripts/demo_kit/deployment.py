"""docker-compose.yaml's Airflow as local processes: the same services, commands, settings, queues and broker.

``make e2e`` (tests/test_deployment.py) starts what the compose file starts (API server, scheduler, dag-processor,
triggerer and the two Celery workers), each from its service's own ``command`` and the ``x-airflow-common``
environment, with the names of the compose network (postgres, redis, airflow-api-server) replaced by this
machine's servers. Only ports, paths and the settings that tie Airflow to this test's servers differ; the
compose file is read, not copied, so a change there is a change in what the test runs.

Two hosts on one machine: each worker runs in its own UTS and mount namespace (``unshare``), named by its
service's ``hostname`` (which Airflow records on every task instance it runs). The worker whose service mounts the
crawl volumes sees the Kingfisher host's directories; the other sees an empty file system mounted over them, as a
second machine would, so a task that needs the crawls fails there instead of quietly working.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from scripts.demo_kit.airflow_dag import AIRFLOW, REPOSITORY, base_environment
from scripts.demo_kit.airflow_standalone import HOST, CheckFailed, free_port, tail

COMPOSE_FILE = REPOSITORY / "docker-compose.yaml"
ENV_SAMPLE = REPOSITORY / "samples" / "kingfisher-archive.env"
#: The Kingfisher Collect volume: the service that mounts it is the Kingfisher host.
CRAWL_VOLUME = "KINGFISHER_COLLECT_DATA"
#: Settings of x-airflow-common that name the compose network's servers; the deployment gives its own.
LOCAL_SETTINGS = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
)
STOP_GRACE_SECONDS = 20.0


@dataclass
class Service:
    """One Airflow service of the compose file: its command, environment and what it mounts."""

    name: str
    command: list[str]
    environment: dict[str, str]
    volumes: list[str]
    hostname: str | None

    @property
    def is_worker(self) -> bool:
        return self.command[:2] == ["celery", "worker"]

    @property
    def queues(self) -> list[str]:
        if "--queues" not in self.command:
            return ["default"]
        return self.command[self.command.index("--queues") + 1].split(",")

    @property
    def holds_crawls(self) -> bool:
        return any(CRAWL_VOLUME in volume for volume in self.volumes)


def read_env_file(path: Path = ENV_SAMPLE) -> dict[str, str]:
    """Read KEY=VALUE lines as Docker Compose does for a simple file: quotes around a value are removed."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not (sep and re.fullmatch(r"[A-Za-z_]\w*", name)):
            raise ValueError(f"{path.name}:{number} is not NAME=value: {line!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def airflow_services(path: Path = COMPOSE_FILE) -> list[Service]:
    """The long-running Airflow services of the compose file (airflow-init is replaced by :meth:`migrate`)."""
    compose = yaml.safe_load(path.read_text())
    services = []
    for name, spec in compose["services"].items():
        if not name.startswith("airflow-") or name == "airflow-init":
            continue
        command = spec["command"]
        command = command.split() if isinstance(command, str) else [str(part) for part in command]
        environment = {str(k): str(v) for k, v in (spec.get("environment") or {}).items()}
        services.append(Service(name, command, environment, list(spec.get("volumes") or []), spec.get("hostname")))
    return services


def s3_service_flags(path: Path = COMPOSE_FILE) -> list[str]:
    """The seaweedfs service's ``weed mini`` flags (its command), which make e2e starts the wheel's weed with."""
    return [str(flag) for flag in yaml.safe_load(path.read_text())["services"]["seaweedfs"]["command"]]


def broker_url() -> tuple[str | None, str]:
    """This machine's broker for the test (or KINGFISHER_ARCHIVE_E2E_BROKER), and why none if there is none."""
    if url := os.environ.get("KINGFISHER_ARCHIVE_E2E_BROKER"):
        return url, ""
    for url, port in (("redis://127.0.0.1:6379/0", 6379), ("amqp://guest:guest@127.0.0.1:5672//", 5672)):
        try:
            socket.create_connection((HOST, port), timeout=2).close()
        except OSError:
            continue
        return url, ""
    return None, (
        "no Celery broker: neither Redis on 127.0.0.1:6379 nor RabbitMQ on 127.0.0.1:5672 answers "
        "(or set KINGFISHER_ARCHIVE_E2E_BROKER to a broker URL)"
    )


def namespaces_problem() -> str | None:
    """Why the workers cannot be given hosts of their own here (``unshare``), or None."""
    if shutil.which("unshare") is None:
        return "the workers need unshare (util-linux) to stand for two hosts"
    probe = subprocess.run(
        [*_unshare_prefix(), "sh", "-c", "hostname probe && mount -t tmpfs probe /mnt"],
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        return f"unshare cannot give a worker its own host name and mounts here: {probe.stderr.strip()}"
    return None


def _unshare_prefix() -> list[str]:
    # As root: new UTS and mount namespaces. Otherwise a user namespace too, in which the user may mount.
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--mount", "--uts", "--propagation", "private"]


@dataclass
class Deployment:
    """Airflow as docker-compose.yaml runs it, on this machine, for one test."""

    home: Path
    #: The Kingfisher host's directory (crawls, logs, ledger): hidden from the worker that does not hold them.
    kingfisher_directory: Path
    metadata_url: str
    broker: str
    connections: dict[str, str]
    variables: dict[str, str]
    dags: list[Path]
    settings: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.services = airflow_services()
        # One secret for every component, as .env gives them: the scheduler signs the task tokens the API checks.
        self.settings.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(32))
        self.settings.setdefault("AIRFLOW__API__SECRET_KEY", secrets.token_urlsafe(32))
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.dags_folder = self.home / "dags"
        self.logs_folder = self.home / "logs"

    # -- the environment --------------------------------------------------------------------------------------------

    def _local_settings(self) -> dict[str, str]:
        return {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__CELERY__BROKER_URL": self.broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.metadata_url}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
        }

    def environment(self, service: Service | None = None) -> dict[str, str]:
        """What the compose file and .env give ``service`` (any Airflow container if None), made local."""
        service = service or next(s for s in self.services if s.name == "airflow-scheduler")
        missing = [name for name in LOCAL_SETTINGS if name not in service.environment]
        if missing:
            raise CheckFailed(f"docker-compose.yaml's {service.name} no longer sets {', '.join(missing)}")
        env = base_environment(str(self.home))
        env.update({k: v for k, v in service.environment.items() if k.startswith("AIRFLOW__")})
        env.update(self._local_settings())
        env.update(
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags_folder),
            AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(self.logs_folder),
            AIRFLOW__API__HOST=HOST,
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__BASE_URL=self.base_url,
            # Ports each container has to itself; here every process shares one network.
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT=str(free_port()),
        )
        # What .env (copied from the sample) gives every container: the queue of the Kingfisher host's worker.
        env["KINGFISHER_ARCHIVE_QUEUE"] = read_env_file()["KINGFISHER_ARCHIVE_QUEUE"]
        env.update(self.settings)
        for conn_id, value in self.connections.items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = value
        for name, value in self.variables.items():
            env[f"AIRFLOW_VAR_{name.upper()}"] = value
        env["PATH"] = os.pathsep.join([str(Path(AIRFLOW).parent), env.get("PATH", os.defpath)])
        return env

    # -- starting and stopping --------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """AIRFLOW_HOME, the DAGs folder, the logging module, the migrated database and the pool (airflow-init)."""
        self.dags_folder.mkdir(parents=True)
        self.logs_folder.mkdir()
        for dag in self.dags:
            shutil.copy(dag, self.dags_folder / dag.name)
        # The compose file mounts samples/logging_config.py into $AIRFLOW_HOME/config, which Airflow puts on sys.path.
        (self.home / "config").mkdir()
        shutil.copy(REPOSITORY / "samples" / "logging_config.py", self.home / "config" / "logging_config.py")
        env = self.environment()
        slots = read_env_file().get("KINGFISHER_ARCHIVE_POOL_SLOTS", "2")
        for command in (
            ["db", "migrate"],
            ["pools", "set", "kingfisher_archive", slots, "Parallel kingfisher_archive uploads"],
        ):
            result = subprocess.run(
                [AIRFLOW, *command], env=env, cwd=self.home, capture_output=True, text=True, timeout=600
            )
            if result.returncode:
                raise CheckFailed(f"airflow {' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        for service in self.services:
            log = (self.home / f"{service.name}.log").open("wb")
            command = [AIRFLOW, *service.command]
            if service.is_worker:
                command = self._as_host(service, command)
            self.processes[service.name] = subprocess.Popen(
                command,
                env=self.environment(service),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()

    def _as_host(self, service: Service, command: list[str]) -> list[str]:
        """The worker in its own UTS and mount namespaces: its service's host name, and its own view of the disk."""
        if not service.hostname:
            raise CheckFailed(f"docker-compose.yaml's {service.name} has no hostname: Airflow records it per task")
        script = 'hostname "$0"'
        if not service.holds_crawls:
            # Another machine: nothing where the Kingfisher host keeps its crawls, its logs and the ledger.
            script += ' && mount -t tmpfs -o size=1m,mode=0755 elsewhere "$1"'
        script += ' && shift && exec "$@"'
        return [*_unshare_prefix(), "sh", "-c", script, service.hostname, str(self.kingfisher_directory), *command]

    def last_lines(self) -> str:
        return "\n".join(f"last lines of {name}:\n{tail(self.home / f'{name}.log', 15)}" for name in self.processes)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = self.home / f"{name}.log"
                raise CheckFailed(f"{name} exited with status {process.returncode}; last lines of {log}:\n{tail(log)}")

    def stop(self) -> None:
        """SIGTERM every service (Celery finishes its tasks' bookkeeping), SIGKILL what is left after a grace."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)
            process.wait()

    def worker(self, holds_crawls: bool) -> Service:
        [worker] = [s for s in self.services if s.is_worker and s.holds_crawls == holds_crawls]
        return worker


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def unique_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"
