import os

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from kingfisher_archive.settings import Settings
from scripts.demo_kit.kingfisher_host import KingfisherHost

pytest_plugins = ["tests.harness.fixtures", "pytester"]

# Property-based and stateful tests: a fixed, bounded search in `make test-all` (the same examples every run), and a
# longer random one on demand:
# KINGFISHER_ARCHIVE_HYPOTHESIS=long .venv/bin/pytest -m "not e2e" tests/test_model.py
hypothesis_settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=12,
    stateful_step_count=10,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
hypothesis_settings.register_profile(
    "long",
    deadline=None,
    max_examples=300,
    stateful_step_count=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
hypothesis_settings.load_profile(os.environ.get("KINGFISHER_ARCHIVE_HYPOTHESIS", "ci"))


@pytest.fixture(scope="session")
def airflow_template(tmp_path_factory):
    """An AIRFLOW_HOME whose sqlite metadata database is migrated once per session, for AirflowHome.from_template."""
    from scripts.demo_kit.airflow_dag import migrate

    home = str(tmp_path_factory.mktemp("airflow-template"))
    migrate(home)
    return home


@pytest.fixture
def host(tmp_path):
    """A Kingfisher Collect host on disk (data and Scrapyd logs directories), empty until the test adds crawls."""
    return KingfisherHost(str(tmp_path / "host"))


@pytest.fixture
def settings(host, bucket, tmp_path):
    """Settings for ``host`` archiving into ``bucket`` (the harness's new, empty bucket), with a ledger of the test's
    own. tests/steps/ overrides it with settings that name no bucket."""
    return Settings(bucket, host.data_directory, host.logs_directory, str(tmp_path / "ledger.sqlite3"), "STANDARD")
