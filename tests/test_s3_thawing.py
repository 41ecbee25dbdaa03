"""Thawing a cold object (s3.thawing), against the tests' imitation of AWS's archive classes."""

from __future__ import annotations

import pytest

from kingfisher_archive.s3 import thawing


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_a_thaw_is_asked_once_joined_when_asked_again_and_readable_when_done(aws_like, bucket):
    proxy, client = aws_like
    client.put_object(Bucket=bucket, Key="cold", Body=b"x", StorageClass="DEEP_ARCHIVE")
    client.put_object(Bucket=bucket, Key="warm", Body=b"y", StorageClass="GLACIER_IR")

    assert thawing.thaw_state(client, bucket, "warm") == thawing.Thaw("GLACIER_IR", thawing.READABLE)
    assert thawing.request_thaw(client, bucket, "warm", 1, "Bulk").readable
    assert thawing.thaw_state(client, bucket, "cold") == thawing.Thaw("DEEP_ARCHIVE", thawing.FROZEN)

    assert thawing.request_thaw(client, bucket, "cold", 3, "Bulk").state == thawing.THAWING
    assert thawing.request_thaw(client, bucket, "cold", 3, "Bulk").state == thawing.THAWING  # joined, no error
    proxy.finish_restores()
    done = thawing.request_thaw(client, bucket, "cold", 3, "Bulk")
    assert done.state == thawing.THAWED and done.readable and done.expires is not None
    assert proxy.restores == [("cold", 3, "Bulk")] * 3


def test_a_tier_the_class_does_not_offer_is_refused_naming_both():
    with pytest.raises(
        ValueError, match="'Expedited' is not offered for DEEP_ARCHIVE objects: choose one of Standard, Bulk"
    ):
        thawing.check_tier("DEEP_ARCHIVE", "Expedited")
    thawing.check_tier("GLACIER", "Expedited")
