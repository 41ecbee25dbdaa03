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
screenshot the run's grid and the mapped Inspect crawl page (each crawl's label), then the plugin's catalogue page
(alone, where every month the bucket holds must be shown, and inside the Airflow UI), checking what they show.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import secrets
import shutil
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

from scripts.demo_kit.airflow_standalone import (  # noqa: E402
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
)
from scripts.demo_kit.kingfisher_host import archive_all, mixed_host, ocds_files  # noqa: E402
from scripts.demo_kit.servers import start_postgres, start_seaweedfs  # noqa: E402

CHROMIUM = "/usr/bin/chromium"

RUN_ID = "ui_check"
CHROMIUM_DEADLINE = 90.0
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
CATALOGUE = "catalogue.png"
CATALOGUE_IN_UI = "catalogue-in-airflow.png"
CATALOGUE_HEIGHT = 1800
# What the grid must show whatever page it is on: the DAG's task names (task_display_name), so not a login form.
GRID_TEXT = ("Kingfisher Archive", RUN_ID, "Find loaded crawls", "Decide what to archive", "Summarise the run")


def page_text(dom: str, limit: int = 2000) -> str:
    """The text a person would read in a dumped DOM (no styles, scripts or tags), to say what a page showed."""
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.DOTALL | re.IGNORECASE)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())[:limit]


def screenshot(url: str, path: Path, profile: Path, expected: list[str], height: int = 1000) -> None:
    """One headless Chromium screenshot of ``url``, in a fresh profile, 1600 pixels wide and ``height`` high.

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
        f"--window-size=1600,{height}",
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


def archived_months(client, bucket: str) -> list[tuple[str, str, str]]:
    """(source, ``YYYY-MM``, data version) of every month the bucket holds, read from its objects directly."""
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            parts = item["Key"].split("/")
            if len(parts) == 4 and parts[3] == "metadata.json" and parts[0] != "staging":
                metadata = json.loads(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
                found.append((parts[0], f"{parts[1]}-{int(parts[2]):02d}", metadata.get("data_version") or ""))
    return sorted(found)


def check_catalogue(api: Api, client, bucket: str, output: Path, home: Path) -> None:
    """The plugin's catalogue page, alone and inside the Airflow UI: it must show every month the bucket holds."""
    months = archived_months(client, bucket)
    if not months:
        raise CheckFailed(f"the bucket {bucket} holds no month to see in the catalogue")
    expected = [
        "Kingfisher Archive catalogue",
        bucket,
        *{text for month in months for text in month if text},
        # What needs a person opens the page: the held crawl and the one waiting too long for Kingfisher Process.
        "Needs attention",
        "uk/20201105_000000 is held",
        "ecuador/20210105_000000 has waited",
    ]
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=home))
    # Tall enough for the whole page, down to its last table: the screenshot inside the Airflow UI shows its top.
    screenshot(f"{api.base_url}/kingfisher-archive/", output / CATALOGUE, profile, expected, CATALOGUE_HEIGHT)
    print(f"Screenshot of the catalogue page ({len(months)} months, each found on it): {output / CATALOGUE}")
    # Inside the Airflow UI (the navigation's "Kingfisher Archive" entry): the page in an iframe.
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=home))
    screenshot(f"{api.base_url}/plugin/kingfisher-archive", output / CATALOGUE_IN_UI, profile, ["Archive"])
    print(f"Screenshot of the catalogue inside the Airflow UI: {output / CATALOGUE_IN_UI}")


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
        # v2: a crawl closed long ago whose files Kingfisher Process is still loading waits, past the warning.
        dsn = postgres.create_database(database, schema="v2")
        host, earlier = mixed_host(str(home / "kingfisher"), dsn, schema="v2")
        bucket = "kingfisher-archive-demo"
        s3.create_bucket(bucket)
        archive_all(earlier, s3.client(), bucket)
        # What is left on disk of a crawl whose archive its month holds (a deletion finished by hand, badly): held.
        host.add_crawl("uk", "20201105_000000", ocds_files("uk", 1))

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
        check_catalogue(api, s3.client(), bucket, output, home)
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
