"""Fixtures of the tests that call the steps of a run directly (no Airflow): tests/steps/ (through its conftest.py)
and the tests of the package-level modules the steps call (tests/test_mending.py), which import them by name.

``settings`` names no bucket ("unused"): a step that only reads the disk needs no S3 server; a test that archives
names its bucket with ``replace(settings, bucket=bucket.name)``. ``bucket`` is a :class:`Bucket` over the harness's
new, empty bucket, as a run's tasks read it. Both override tests/conftest.py's fixtures of the same names.
"""

import pytest

from kingfisher_archive.bucket import Bucket
from kingfisher_archive.settings import Settings


@pytest.fixture
def settings(host, tmp_path):
    return Settings("unused", host.data_directory, host.logs_directory, str(tmp_path / "ledger.sqlite3"), "STANDARD")


@pytest.fixture
def bucket(bucket, s3_server):
    return Bucket(s3_server.client(), bucket, "STANDARD")
