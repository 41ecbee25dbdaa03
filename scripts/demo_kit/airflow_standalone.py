"""A whole Airflow on loopback: ``airflow standalone`` (scheduler, dag-processor, triggerer, API server, LocalExecutor)
with the archive DAG's Connections and Variables, driven through its REST API.

``airflow dags test`` runs every task in one process and never starts the scheduler; the UI check and the backfill
test need the real thing: the DAG parsed by the dag-processor, runs created by the scheduler (or a backfill), tasks
run by the executor in their own processes, the pool ``kingfisher_archive`` honoured.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from scripts.demo_kit.airflow_dag import AIRFLOW, AirflowHome, archive_connections, archive_variables

DAG_ID = "kingfisher_archive"
HOST = "127.0.0.1"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
# Deadlines, not sleeps: each wait polls its condition and gives up with a message naming what it waited for.
STANDALONE_DEADLINE = 120.0
DAG_PARSED_DEADLINE = 60.0
RUN_DEADLINE = 300.0
POLL_INTERVAL = 0.5


class CheckFailed(Exception):
    """A step of the check failed; the message says which and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


class Api:
    """The Airflow REST API (``/api/v2``) on loopback. With all-admins SimpleAuthManager every request is an admin's.

    The API server's ``SimpleAllAdminMiddleware`` adds a bearer token to every request it receives, so no token
    has to be fetched (``GET /auth/token`` would give one) and the browser needs no cookie either.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        # An http_proxy in the environment must not capture requests to the loopback interface.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 10) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (always http://127.0.0.1:<port>, built above)
            f"{self.base_url}/api/v2/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text

    def ok(self, method: str, path: str, body: dict | None = None) -> object:
        status, payload = self.request(method, path, body)
        if status >= 300:
            raise CheckFailed(f"{method} /api/v2/{path} answered {status}: {payload}")
        return payload


class Standalone:
    """``airflow standalone`` in its own session, so that it and every process it starts can be SIGKILLed at once.

    It does not stop on SIGTERM (it waits for KeyboardInterrupt), and its scheduler, dag-processor, triggerer, API
    server and task processes are its descendants: one SIGKILL to the process group ends them all.
    """

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.log_path = home / "standalone.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [AIRFLOW, "standalone"],
                env=env,
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise CheckFailed(
                f"airflow standalone exited with status {self.process.returncode}; "
                f"last lines of {self.log_path}:\n{tail(self.log_path)}"
            )

    def last_lines(self) -> str:
        return f"last lines of {self.log_path}:\n{tail(self.log_path)}"

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def wait_for(what: str, deadline_seconds: float, condition, standalone):
    """Poll ``condition`` until it returns something truthy, which is returned; fail after the deadline.

    ``standalone`` is what runs Airflow (a :class:`Standalone`, or a ``Deployment`` of several processes): it is
    checked to be alive at every poll, and its logs' last lines go into the failure.
    """
    deadline = time.monotonic() + deadline_seconds
    last = None
    while time.monotonic() < deadline:
        standalone.check_alive()
        try:
            result = condition()
        except (OSError, ValueError) as e:  # the server is not listening yet, or answers half-started
            result, last = None, e
        if result:
            return result
        time.sleep(POLL_INTERVAL)
    raise CheckFailed(
        f"gave up waiting for {what} after {deadline_seconds:.0f} s (last error: {last!r}); {standalone.last_lines()}"
    )


def healthy(api: Api) -> bool:
    status, health = api.request("GET", "monitor/health", timeout=3)
    if status != 200 or not isinstance(health, dict):
        return False
    components = ("metadatabase", "scheduler", "dag_processor", "triggerer")
    return all((health.get(name) or {}).get("status") == "healthy" for name in components)


def dag_parsed(api: Api) -> bool:
    status, payload = api.request("GET", f"dags/{DAG_ID}", timeout=3)
    if status == 200:
        return True
    _, errors = api.request("GET", "importErrors", timeout=3)
    for error in (errors or {}).get("import_errors", []) if isinstance(errors, dict) else []:
        if "kingfisher_archive" in error.get("filename", ""):
            raise CheckFailed(f"the DAG file failed to import:\n{error.get('stack_trace')}")
    return False


def start_airflow(env: dict[str, str], home: Path, api: Api) -> Standalone:
    """``airflow standalone`` up and healthy, the DAG parsed, the pool created (else no archive task would run)."""
    print(f"Starting airflow standalone (API server on {api.base_url})...", flush=True)
    started = time.monotonic()
    standalone = Standalone(env, home)
    try:
        wait_for(
            "the API server, scheduler, dag-processor and triggerer",
            STANDALONE_DEADLINE,
            lambda: healthy(api),
            standalone,
        )
        # The database is initialised once the API server answers; create the pool while the DAG is parsed.
        pool = subprocess.Popen(
            [AIRFLOW, "pools", "set", "kingfisher_archive", "2", "Kingfisher archive uploads"],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for(f"the DAG {DAG_ID} to be parsed", DAG_PARSED_DEADLINE, lambda: dag_parsed(api), standalone)
        pool_output, _ = pool.communicate(timeout=120)
        if pool.returncode:
            raise CheckFailed(f"airflow pools set failed:\n{pool_output}")
        api.ok("PATCH", f"dags/{DAG_ID}", {"is_paused": False})
    except BaseException:
        standalone.kill()
        raise
    print(f"Airflow ready in {time.monotonic() - started:.1f} s (standalone start, DAG parsed, pool created).")
    return standalone


def trigger_and_wait(api: Api, standalone: Standalone, run_id: str, conf: dict | None = None) -> tuple[str, float]:
    """Trigger a run (no logical date) through the REST API; its final state and seconds from trigger to end."""
    started = time.monotonic()
    api.ok("POST", f"dags/{DAG_ID}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}})
    print(f"Triggered run {run_id!r} of {DAG_ID} through the REST API; waiting for it...", flush=True)

    def finished() -> str | None:
        state = api.ok("GET", f"dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        return state if state in ("success", "failed") else None

    try:
        state = wait_for(f"run {run_id!r} to finish", RUN_DEADLINE, finished, standalone)
    except CheckFailed as e:
        raise CheckFailed(f"{e}\nTask states:\n{format_states(task_states(api, run_id))}") from None
    return state, time.monotonic() - started


def task_states(api: Api, run_id: str) -> list[tuple[str, str, str]]:
    """(task id, map label, state) of every task instance of the run."""
    payload = api.ok("GET", f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")
    rows = []
    for ti in payload["task_instances"]:
        label = ti.get("rendered_map_index") or (str(ti["map_index"]) if ti["map_index"] >= 0 else "")
        rows.append((ti["task_id"], label, ti["state"] or "none"))
    return sorted(rows)


def format_states(rows: list[tuple[str, str, str]]) -> str:
    return "\n".join(f"  {task:<36} {label:<34} {state}" for task, label, state in rows)


def airflow_environment(
    home: Path, postgres, database: str, s3, bucket: str, host, port: int, parallelism: int = 8
) -> dict[str, str]:
    """The demo's Connections and Variables, plus what a whole Airflow on loopback with open access needs."""
    base_url = f"http://{HOST}:{port}"
    airflow = AirflowHome(
        str(home / "airflow"),
        connections=archive_connections(postgres, database, s3),
        variables=archive_variables(bucket, host),
        extra_env={
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # LocalExecutor starts this many worker processes up front (default 32); eight crawls need no more.
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            # One secret for every component: the scheduler signs the task tokens the API server checks.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            # The DAG is @daily: unpausing it must not add a scheduled run ahead of (and doing the work of) ours.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        },
    )
    (home / "airflow").mkdir()
    env = airflow.environment()
    # standalone starts its components as `airflow ...` from PATH: make that this virtualenv's.
    env["PATH"] = os.pathsep.join([str(Path(AIRFLOW).parent), env.get("PATH", os.defpath)])
    return env
