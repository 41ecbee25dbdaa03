"""Making a month in a cold storage class readable (GLACIER, DEEP_ARCHIVE), through the tests' imitation of Amazon
S3's archive classes (tests.harness.aws_like, ``cold=True``): what prepare asks for, and what thaw_progress says.

What a restore does with a cold month, and the thaw asked for and joined on the way to it, is in
tests/test_restore_cold.py.
"""

from __future__ import annotations

import pytest

from kingfisher_archive.thaw import prepare, thaw_progress
from tests.test_restore import SOURCE, archive
from tests.test_restore_cold import FILES, plant_cold


@pytest.mark.aws(cold=True, kms=False)
def test_a_month_in_no_cold_class_is_ready_and_nothing_is_asked(aws_like, client, bucket, tmp_path):
    proxy, through = aws_like
    archive(client, bucket, tmp_path, FILES)
    prepared = prepare(through, bucket, SOURCE, 2020, 9, tier="Expedited")
    assert (prepared.ready, prepared.keys, prepared.tier) == (True, (), None)
    assert prepared.message.endswith("is in STANDARD: readable now")
    assert proxy.restores == []


@pytest.mark.aws(cold=True, kms=False)
def test_a_copy_that_expired_or_an_object_gone_is_a_problem_not_a_wait(aws_like, client, bucket, tmp_path):
    _, through = aws_like
    _, key = plant_cold(client, bucket, tmp_path)
    ready, problem = thaw_progress(through, bucket, (key,))  # cold, no thaw running: the copy expired
    assert not ready and "with no copy and no thaw running" in problem
    client.delete_object(Bucket=bucket, Key=key)
    ready, problem = thaw_progress(through, bucket, (key,))
    assert not ready and problem.startswith(f"s3://{bucket}/{key} is gone")
