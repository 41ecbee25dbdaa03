"""Fixtures of the steps' tests, which call the steps of a run directly (no Airflow): ``settings`` that name no
bucket, and ``bucket``, a :class:`~kingfisher_archive.bucket.Bucket`; defined in tests/harness/step_fixtures.py."""

from tests.harness.step_fixtures import bucket, settings  # noqa: F401
