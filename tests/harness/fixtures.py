"""Session-wide real servers for pytest: load with ``pytest_plugins = ["tests.harness.fixtures"]``.

One SeaweedFS and one PostgreSQL serve the whole session, since each takes seconds to start. A test that stops or
kills a server must bring it back with ``start()`` before it ends (or start its own with ``start_seaweedfs``), so
later tests find it running.

The servers' files live in a directory of the session's own (``tempfile.mkdtemp``, removed when the session ends),
never under pytest's ``basetemp``: pytest removes old ``pytest-N`` directories of the same user, and whatever else
runs pytest on the machine must not delete a running server's data. If a server dies all the same, the first test
that fails makes the session check its servers: a dead one stops the session, reported once with the end of its
log (section "dead test server"), instead of every later test failing with the same connection error.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from kingfisher_archive.s3.client import client_config
from scripts.demo_kit.servers import PostgresServer, S3Server, start_postgres, start_seaweedfs

#: The session's servers by fixture name, for the check after a failure.
SERVERS = pytest.StashKey[dict]()
#: What the check found, once: shown in the terminal summary.
DEAD = pytest.StashKey[str]()


def _register(config: pytest.Config, name: str, server) -> None:
    config.stash.setdefault(SERVERS, {})[name] = server


@pytest.fixture(scope="session")
def servers_directory() -> Iterator[Path]:
    """The session servers' data and logs, outside pytest's rotating basetemp; removed at the end."""
    directory = Path(tempfile.mkdtemp(prefix="kingfisher-archive-test-servers-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(servers_directory: Path, request: pytest.FixtureRequest) -> Iterator[S3Server]:
    server = start_seaweedfs(servers_directory / "seaweedfs")
    _register(request.config, "s3_server", server)
    yield server
    request.config.stash[SERVERS].pop("s3_server", None)
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(servers_directory: Path, request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    server = start_postgres(servers_directory / "postgres")
    _register(request.config, "postgres_server", server)
    yield server
    request.config.stash[SERVERS].pop("postgres_server", None)
    server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """After a failure, check the session's servers; stop the session, once, if one has died."""
    report = yield
    config = item.config
    if report.failed and DEAD not in config.stash:
        problems = [problem for server in config.stash.get(SERVERS, {}).values() if (problem := server.problem())]
        if problems:
            config.stash[DEAD] = "\n\n".join(problems)
            item.session.shouldstop = f"a test server died (found when {item.nodeid} failed): see 'dead test server'"
    return report


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if DEAD in config.stash:
        terminalreporter.section("dead test server", sep="!", red=True, bold=True)
        terminalreporter.write_line(config.stash[DEAD])


@pytest.fixture
def process_database(postgres_server: PostgresServer) -> Iterator[Callable[[str], str]]:
    """``process_database("v1" | "v2")`` makes a fresh Kingfisher Process database and returns its DSN.

    Every database made is dropped when the test ends, open sessions or not.
    """
    names: list[str] = []

    def make(schema: str) -> str:
        name = f"kfa_test_{secrets.token_hex(4)}"
        names.append(name)
        return postgres_server.create_database(name, schema=schema)

    yield make
    for name in names:
        postgres_server.drop_database(name)


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the session's S3 server, by name."""
    name = f"test-{secrets.token_hex(6)}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def client(s3_server: S3Server):
    """A boto3 S3 client for the session's server, with its credentials, configured as the archive task's."""
    return s3_server.client(config=client_config(Config(s3={"addressing_style": "path"})))


@pytest.fixture
def aws_like(s3_server: S3Server, bucket: str, request: pytest.FixtureRequest):
    """``(proxy, client)``: a client, configured as the archive task's, through a proxy in front of the session's
    server answering as Amazon S3 does for the behaviours the test's ``aws`` marker asks for (see
    :mod:`tests.harness.aws_like`; ``encryption=`` sets the client's write encryption). ``proxy.endpoint_url`` is
    where a subprocess (an Airflow task) reaches it."""
    from kingfisher_archive.s3.client import encrypt_writes
    from tests.harness.aws_like import AwsLike
    from tests.harness.stripping_proxy import StrippingProxy

    marker = request.node.get_closest_marker("aws")
    options = dict(marker.kwargs) if marker else {}
    encryption = options.pop("encryption", None)
    rewrite = AwsLike(s3_server.client(), bucket, **options)
    with StrippingProxy(
        s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key, s3_server.region, drop=(), rewrite=rewrite
    ) as proxy:
        rewrite.endpoint_url = proxy.endpoint_url
        client = boto3.client(
            "s3",
            endpoint_url=proxy.endpoint_url,
            aws_access_key_id=s3_server.access_key,
            aws_secret_access_key=s3_server.secret_key,
            region_name=s3_server.region,
            config=client_config(Config(s3={"addressing_style": "path"})),
        )
        encrypt_writes(client, encryption or {})
        yield rewrite, client


@pytest.fixture
def cli(s3_server, tmp_path):
    """Run the command with credentials from the environment only, as boto3's chain finds them."""

    def run(*args, secret_key=None, **env_extra):
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "KINGFISHER_ARCHIVE_", "AIRFLOW_"))
            and key.lower() not in ("http_proxy", "https_proxy")
        }
        env.update(
            PYTHONPATH=str(Path(__file__).resolve().parent.parent.parent / "plugins"),
            AWS_ACCESS_KEY_ID=s3_server.access_key,
            AWS_SECRET_ACCESS_KEY=secret_key or s3_server.secret_key,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
            KINGFISHER_ARCHIVE_ENDPOINT_URL=s3_server.endpoint_url,
            NO_PROXY="127.0.0.1,localhost",
            AWS_EC2_METADATA_DISABLED="true",  # without credentials, boto3 must not look for an instance role
            AIRFLOW_HOME=str(tmp_path / "no-airflow-home"),  # never the ledger of this machine's ~/airflow
        )
        for key, value in env_extra.items():  # None removes a variable
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return subprocess.run(
            [sys.executable, "-m", "kingfisher_archive", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run
