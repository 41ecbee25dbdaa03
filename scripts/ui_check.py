"""Run the kingfisher_archive DAG under a real Airflow (``airflow standalone``) and screenshot its grid in Chromium.

    .venv/bin/python scripts/ui_check.py                          # writes docs/screenshots/*.png
    .venv/bin/python scripts/ui_check.py --skip-if-no-chromium    # CI: exits 0 when Chromium is not installed

``make demo`` and the DAG tests go through ``airflow dags test``, which runs every task in one process and never
starts the scheduler, the executor, the API server or the UI. This check covers what they cannot: the DAG parsed
by the dag-processor, scheduled by the scheduler, its tasks run by the LocalExecutor in their own processes (the
pool ``kingfisher_archive`` included: without it the archive tasks are never scheduled), and the run seen in the
Airflow UI, with each mapped task labelled ``<source_id>/<data_version>``.

It builds the demo installation of ``scripts/demo.py`` (PostgreSQL and SeaweedFS from their wheels, the demo
Kingfisher host, the Connections and Variables as ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*``) in a throwaway directory,
starts ``airflow standalone`` there (sqlite, the API server on a free loopback port, SimpleAuthManager with every
user an admin so that neither this script nor the browser meets a login form), creates the pool, unpauses the DAG,
triggers a run through the REST API, waits for it, then has headless Chromium (Debian's ``chromium`` package)
screenshot the run's grid and the mapped Inspect crawl page (each crawl's label), checking what they show.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPOSITORY), str(REPOSITORY / "plugins")]

from scripts.demo_kit.airflow_dag import AIRFLOW, AirflowHome, archive_connections, archive_variables  # noqa: E402
from scripts.demo_kit.kingfisher_host import archive_all, mixed_host  # noqa: E402
from scripts.demo_kit.servers import start_postgres, start_seaweedfs  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
DAG_ID = "kingfisher_archive"
RUN_ID = "ui_check"
HOST = "127.0.0.1"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
# Deadlines, not sleeps: each wait polls its condition and gives up with a message naming what it waited for.
STANDALONE_DEADLINE = 120.0
DAG_PARSED_DEADLINE = 60.0
RUN_DEADLINE = 300.0
CHROMIUM_DEADLINE = 90.0
POLL_INTERVAL = 0.5
# The screenshots: file name, UI path under the API server, what it shows, the task whose map labels it must show.
SCREENSHOTS = (
    ("grid.png", f"dags/{DAG_ID}/runs/{RUN_ID}", "the run's grid and task instances", "archive_crawl"),
    (
        "inspect-crawl.png",
        f"dags/{DAG_ID}/runs/{RUN_ID}/tasks/inspect_crawl/mapped",
        "the mapped Inspect crawl",
        "inspect_crawl",
    ),
)
# What the grid must show whatever page it is on: the DAG's task names (task_display_name), so not a login form.
GRID_TEXT = ("Kingfisher Archive", RUN_ID, "Find loaded crawls", "Decide what to archive", "Summarise the run")


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

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def wait_for(what: str, deadline_seconds: float, condition, standalone: Standalone):
    """Poll ``condition`` until it returns something truthy, which is returned; fail after the deadline."""
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
        f"gave up waiting for {what} after {deadline_seconds:.0f} s (last error: {last!r}); "
        f"last lines of {standalone.log_path}:\n{tail(standalone.log_path)}"
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


def page_text(dom: str, limit: int = 2000) -> str:
    """The text a person would read in a dumped DOM (no styles, scripts or tags), to say what a page showed."""
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.DOTALL | re.IGNORECASE)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())[:limit]


def screenshot(url: str, path: Path, profile: Path, expected: list[str]) -> None:
    """One headless Chromium screenshot of ``url``, in a fresh profile.

    The same Chromium run dumps the rendered DOM, which must hold every ``expected`` text: a login form, an error
    page or a page still loading fails the check instead of being committed as a screenshot.
    """
    path.unlink(missing_ok=True)
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # run as root in a container
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1600,1000",
        # Virtual time runs only while the page is idle, so the UI's API calls complete and it renders first.
        "--virtual-time-budget=20000",
        f"--screenshot={path}",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_DEADLINE)
    if result.returncode or not path.is_file() or path.stat().st_size == 0:
        raise CheckFailed(f"chromium could not screenshot {url} (status {result.returncode}):\n{result.stderr}")
    missing = [text for text in expected if text not in result.stdout]
    if missing:
        raise CheckFailed(
            f"{url} rendered without {missing} (screenshot in {path}); its text:\n{page_text(result.stdout)}"
        )


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


def run_check(home: Path, output: Path, postgres_url: str | None) -> None:
    if postgres_url:
        os.environ["KINGFISHER_ARCHIVE_TEST_POSTGRES"] = postgres_url
    else:
        os.environ.pop("KINGFISHER_ARCHIVE_TEST_POSTGRES", None)
    print("Starting PostgreSQL and SeaweedFS on loopback...", flush=True)
    postgres = start_postgres(home / "postgres")
    s3 = None
    database = f"kfa_ui_{secrets.token_hex(3)}"
    standalone = None
    try:
        s3 = start_seaweedfs(home / "seaweedfs")
        dsn = postgres.create_database(database, schema="v1")
        host, earlier = mixed_host(str(home / "kingfisher"), dsn)
        bucket = "kingfisher-archive-demo"
        s3.create_bucket(bucket)
        archive_all(earlier, s3.client(), bucket)

        port = free_port()
        env = airflow_environment(home, postgres, database, s3, bucket, host, port)
        api = Api(f"http://{HOST}:{port}")
        standalone = start_airflow(env, home / "airflow", api)
        state, seconds = trigger_and_wait(api, standalone, RUN_ID)
        states = task_states(api, RUN_ID)
        print(f"Run {RUN_ID!r} ended in state {state!r} after {seconds:.1f} s:")
        print(format_states(states))
        if state != "success":
            raise CheckFailed(f"the run did not succeed; task logs are under {home / 'airflow' / 'logs'}")

        output.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for name, path, what, mapped_task in SCREENSHOTS:
            labels = [label for task, label, _ in states if task == mapped_task]
            if not labels or not all("/" in label for label in labels):
                raise CheckFailed(f"{mapped_task} instances are not labelled <source_id>/<data_version>: {labels}")
            profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=home))
            screenshot(f"{api.base_url}/{urllib.parse.quote(path)}", output / name, profile, [*GRID_TEXT, *labels])
            print(f"Screenshot of {what}: {output / name}")
        print(f"Screenshots taken in {time.monotonic() - started:.1f} s.")
    finally:
        if standalone is not None:
            standalone.kill()
        if s3 is not None:
            s3.stop()
        postgres.drop_database(database)
        postgres.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(REPOSITORY / "docs" / "screenshots"), help="where the PNGs go")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("KINGFISHER_ARCHIVE_TEST_POSTGRES"),
        help="libpq URL of a PostgreSQL server to use (default: $KINGFISHER_ARCHIVE_TEST_POSTGRES, else embedded)",
    )
    parser.add_argument("--skip-if-no-chromium", action="store_true", help=f"exit 0 if {CHROMIUM} is missing")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway directory (logs, ledger, ...)")
    args = parser.parse_args()

    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} not found (Debian: apt-get install chromium)"
        if args.skip_if_no_chromium:
            print(f"UI check skipped: {message}.")
            return 0
        print(f"UI check failed: {message}.", file=sys.stderr)
        return 1

    began = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="kfa-ui-check-"))
    try:
        run_check(home, Path(args.output).resolve(), args.postgres)
    except CheckFailed as e:
        print(f"UI check failed: {e}", file=sys.stderr)
        if args.keep:
            print(f"Everything is kept under {home}.", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print(f"UI check passed in {time.monotonic() - began:.1f} s.")
    if args.keep:
        print(f"Everything is kept under {home}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
