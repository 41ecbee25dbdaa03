import os

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
