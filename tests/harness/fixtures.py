"""Session-wide real servers for pytest: load with ``pytest_plugins = ["tests.harness.fixtures"]``.

One SeaweedFS and one PostgreSQL serve the whole session, since each takes seconds to start. A test that stops or
kills a server must bring it back with ``start()`` before it ends (or start its own with ``start_seaweedfs``), so
later tests find it running.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from botocore.config import Config

from kingfisher_archive.s3 import client_config
from scripts.demo_kit.servers import PostgresServer, S3Server, start_postgres, start_seaweedfs


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


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
