"""The catalogue page of the Airflow UI, served by a real Airflow API server with the plugin and real users.

``airflow api-server`` with SimpleAuthManager and a password (not the all-admins mode, whose middleware lets
everyone in): a request without a token, or with a forged one, is refused on every route of the plugin; a user who
logged in (``POST /auth/token``, as the UI's login form does) sees what the bucket holds; and in headless Chromium,
a person who fills in the login form sees the bucket on the page inside the Airflow UI. ``scripts/ui_check.py``
screenshots it under ``airflow standalone`` for the documentation.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from kingfisher_archive.ledger import Ledger
from scripts.demo_kit.airflow_dag import AIRFLOW, AirflowHome, archive_connections
from scripts.demo_kit.airflow_standalone import HOST, free_port, tail
from scripts.demo_kit.browser import CHROMIUM, Browser
from scripts.ui_check import archived_months
from tests.test_restore import archive, put_month

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

PASSWORD = secrets.token_urlsafe(12)
SERVER_DEADLINE = 120.0


def request(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, data=data, headers=headers), timeout=30) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


@pytest.fixture
def api_server(tmp_path, airflow_template, postgres_server, s3_server, client, bucket):  # noqa: F811
    archive(client, bucket, tmp_path / "a", {"a.json": b"[1]"})
    archive(client, bucket, tmp_path / "b", {"b.json": b"[22]"}, source="uk", version="20201105_000000")
    put_month(client, bucket, "uk/2020/12/", data=b"orphan")
    port = free_port()
    home = AirflowHome.from_template(
        airflow_template,
        str(tmp_path / "airflow"),
        connections={
            "kingfisher_archive_s3": archive_connections(postgres_server, "unused", s3_server)["kingfisher_archive_s3"]
        },
        variables={
            "kingfisher_archive_bucket": bucket,
            "kingfisher_archive_data_directory": str(tmp_path / "data"),
            "kingfisher_archive_logs_directory": str(tmp_path / "logs"),
        },
    )
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"operator": PASSWORD}))
    home.extra_env.update(
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="operator:viewer",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
        AIRFLOW__API__SECRET_KEY=secrets.token_urlsafe(32),
        AIRFLOW__API__BASE_URL=f"http://{HOST}:{port}",
    )
    ledger = Ledger(os.path.join(home.home, "kingfisher_archive.sqlite3"))
    ledger.record(
        [
            {
                "source_id": "uk",
                "data_version": "20201201_000000",
                "status": "held",
                "reason": "smaller_than_its_archive",
                "facts": {"detail": "12 bytes left, 30 archived"},
            }
        ],
        "run-1",
    )
    # Closed ten days ago, its files still being loaded by Kingfisher Process: past the warning (3 days).
    closed = (datetime.now(UTC) - timedelta(days=10)).replace(tzinfo=None)
    ledger.record_waiting(
        [
            {
                "source_id": "ecuador",
                "data_version": "20210105_000000",
                "collection_id": 12,
                "closed_at": closed.isoformat(),
                "loading": "5 of 5 files recorded, 5 still to load",
            }
        ],
        None,
        "run-1",
    )
    log = tmp_path / "api-server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [AIRFLOW, "api-server", "--host", HOST, "--port", str(port), "--workers", "1"],
            env=home.environment(),
            cwd=home.home,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + SERVER_DEADLINE
        while True:
            assert process.poll() is None, f"the API server exited:\n{tail(log)}"
            try:
                if request(f"{base}/api/v2/monitor/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the API server did not answer in {SERVER_DEADLINE} s:\n{tail(log)}"
            time.sleep(0.5)
        yield base, bucket, log
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_the_catalogue_is_refused_without_a_login_and_shows_the_bucket_to_a_user_who_logged_in(api_server):
    base, bucket, log = api_server
    routes = ["/kingfisher-archive/", "/kingfisher-archive/catalogue.json", "/kingfisher-archive/month/uk/2020/11"]

    for route in routes:
        status, body = request(base + route)
        assert status == 401, (route, status, body[:300])
        status, body = request(base + route, token="not-a-token")
        assert status == 403, (route, status, body[:300])
    for route in ("/kingfisher-archive/docs", "/kingfisher-archive/openapi.json"):
        assert request(base + route)[0] in (401, 404)  # no documentation route escapes the check

    status, body = request(f"{base}/auth/token", body={"username": "operator", "password": PASSWORD})
    assert status == 201, body
    token = json.loads(body)["access_token"]

    status, body = request(base + "/kingfisher-archive/catalogue.json", token=token)
    assert status == 200, f"{body[:2000]}\n{tail(log)}"
    found = json.loads(body)
    assert found["bucket"] == bucket
    assert [(s["source_id"], [(m["period"], m["state"]) for m in s["months"]]) for s in found["sources"]] == [
        ("scotland", [("2020-09", "archived")]),
        ("uk", [("2020-11", "archived"), ("2020-12", "broken")]),
    ]
    assert [h["id"] for h in found["on_disk"]["held"]] == ["uk/20201201_000000"]
    assert [w["id"] for w in found["on_disk"]["waiting"]] == ["ecuador/20210105_000000"]  # from the ledger
    assert [(a["kind"], a["id"]) for a in found["attention"]] == [
        ("held", "uk/20201201_000000"),
        ("waiting", "ecuador/20210105_000000"),
        ("broken", "uk/2020/12/"),
    ]

    status, page = request(base + "/kingfisher-archive/", token=token)
    assert status == 200
    for text in ("scotland", "uk", "2020-09", "2020-11", "20200902_052458", "20201105_000000", "uk/20201201_000000"):
        assert text in page, text
    assert "less is left on disk than the archive holds" in page and "metadata missing" in page
    assert "smaller_than_its_archive" not in page  # the code is for --json and the ledger, not for people
    # The bucket's bytes by storage class and the estimated bill, with the prices' region and date.
    storage = found["storage"]
    assert [c["storage_class"] for c in storage["classes"]] == ["STANDARD"]  # what the test server wrote them in
    assert storage["region"] == "us-east-1" and storage["as_of"]
    assert "<h2 id='storage'>Stored, and what it costs</h2>" in page
    assert "a month</b> to store " in page and f"us-east-1 prices as of {storage['as_of']}" in page

    status, month = request(base + "/kingfisher-archive/month/uk/2020/11", token=token)
    assert status == 200
    assert "kingfisher-archive restore uk 2020 11 TARGET_DIRECTORY" in month
    assert "&quot;data_version&quot;: &quot;20201105_000000&quot;" in month  # its metadata.json

    # Airflow lists the plugin and its entry in the navigation.
    status, plugins = request(f"{base}/api/v2/plugins", token=token)
    assert status == 200
    (plugin,) = [p for p in json.loads(plugins)["plugins"] if p["name"] == "kingfisher_archive_catalogue"]
    assert [view["href"] for view in plugin["external_views"]] == ["/kingfisher-archive/"]


@pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK) and not os.environ.get("KINGFISHER_ARCHIVE_UI_REQUIRED"),
    reason=f"{CHROMIUM} is not installed (Debian: apt-get install chromium; CI installs it and never skips this)",
)
def test_a_person_logs_in_and_sees_the_bucket_on_the_catalogue_page_in_chromium(api_server, client, tmp_path):
    base, bucket, log = api_server
    months = archived_months(client, bucket)
    assert [(source, period) for source, period, _ in months] == [("scotland", "2020-09"), ("uk", "2020-11")]
    browser = Browser(tmp_path / "chromium")
    try:
        # Not logged in: the page is refused, in the browser too.
        browser.open(f"{base}/kingfisher-archive/")
        browser.wait_for_text(["Not authenticated"])

        # The login form of Airflow's SimpleAuthManager, filled in as a person does; it leads to the catalogue in
        # the Airflow UI (the navigation's "Kingfisher Archive" entry: the page in an iframe).
        browser.open(f"{base}/auth/login?next={quote('/plugin/kingfisher-archive')}")
        browser.wait_for("document.querySelector('input[name=password]')", "the login form")
        browser.fill("input[name=username]", "operator")
        browser.fill("input[name=password]", PASSWORD)
        browser.wait_for("!document.querySelector('button[type=submit]').disabled", "the form to accept the login")
        browser.evaluate("document.querySelector('button[type=submit]').click()")
        expected = ["Kingfisher Archive catalogue", bucket, "uk/20201201_000000", "Needs attention (3)"]
        text = browser.wait_for_text(expected + [text for month in months for text in month])
        browser.screenshot(tmp_path / "catalogue-after-login.png")
        assert "metadata missing" in text  # uk/2020/12: a data object without metadata.json
        # What needs a person opens the page: the held crawl and the crawl waiting too long, each with what to do.
        frame = "document.querySelector('iframe').contentDocument"
        block = browser.evaluate(f"{frame}.querySelector('#needs-attention').innerText")
        assert "uk/20201201_000000 is held: its month is archived from this crawl" in block, block
        assert "ecuador/20210105_000000 has waited 10 days for Kingfisher Process" in block, block
        assert block.count("What to do:") == 3, block
        # The navigation's label is whole.
        assert browser.evaluate(
            "[...document.querySelectorAll('a, button')].some(e => e.innerText.trim() === 'Archive')"
        )

        # A month opens to its metadata.json and the restore command.
        browser.open(f"{base}/kingfisher-archive/month/uk/2020/11")
        browser.wait_for_text(['"data_version": "20201105_000000"', "kingfisher-archive restore uk 2020 11"])
    finally:
        browser.close()
