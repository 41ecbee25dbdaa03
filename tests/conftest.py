import os

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.harness.fixtures", "pytester"]

# Property-based and stateful tests: a fixed, bounded search in `make test` (the same examples every run), and a
# longer random one on demand: KINGFISHER_ARCHIVE_HYPOTHESIS=long .venv/bin/pytest tests/test_model.py
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=12,
    stateful_step_count=10,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
settings.register_profile(
    "long",
    deadline=None,
    max_examples=300,
    stateful_step_count=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("KINGFISHER_ARCHIVE_HYPOTHESIS", "ci"))


@pytest.fixture(scope="session")
def airflow_template(tmp_path_factory):
    """An AIRFLOW_HOME whose sqlite metadata database is migrated once per session, for AirflowHome.from_template."""
    from scripts.demo_kit.airflow_dag import migrate

    home = str(tmp_path_factory.mktemp("airflow-template"))
    migrate(home)
    return home
