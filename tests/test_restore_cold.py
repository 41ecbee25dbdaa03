"""Restoring a month whose data object is in a cold storage class (GLACIER, DEEP_ARCHIVE), through the tests' imitation
of Amazon S3's archive classes (tests.harness.aws_like, ``cold=True``): asking for a copy, joining one, waiting."""

from __future__ import annotations

import itertools

import pytest

from kingfisher_archive.restore import FrozenError, restore
from kingfisher_archive.settings import ConfigurationError, thaw_poll_seconds
from kingfisher_archive.thaw import TierError, prepare, thaw_progress
from scripts.demo_kit.kingfisher_host import tree
from tests.test_restore import SOURCE, VERSION, archive

FILES = {"a.json": b'{"ocid": "ocds-1"}\n', "sub/b.json": b'{"ocid": "ocds-2"}\n' * 100}


def plant_cold(client, bucket, tmp_path, storage_class="GLACIER"):
    """Archive a crawl straight into SeaweedFS, then put its data object in ``storage_class`` (metadata.json and
    scrapy.log stay in a class that reads at once, as the package writes them); return the crawl's tree."""
    before = archive(client, bucket, tmp_path, FILES)
    key = f"{SOURCE}/2020/09/data.tar.zst"
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=body, StorageClass=storage_class)
    return before, key


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_a_frozen_month_is_named_with_its_class_and_what_to_do(aws_like, client, bucket, tmp_path):
    proxy, through = aws_like
    _, key = plant_cold(client, bucket, tmp_path, "DEEP_ARCHIVE")
    with pytest.raises(FrozenError) as raised:
        restore(through, bucket, SOURCE, 2020, 9, str(tmp_path / "out"))
    message = str(raised.value)
    assert f"s3://{bucket}/{key} is in DEEP_ARCHIVE and has no readable copy" in message
    assert "trigger the restore DAG" in message and "--wait" in message
    assert not (tmp_path / "out" / SOURCE).exists()

    with pytest.raises(TierError) as refused:
        prepare(through, bucket, SOURCE, 2020, 9, tier="Expedited")
    assert "'Expedited' is not offered for DEEP_ARCHIVE objects: choose one of Standard, Bulk" in str(refused.value)
    assert proxy.restores == []


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_prepare_asks_once_joins_a_thaw_running_and_the_restore_runs_once_it_is_ready(
    aws_like, client, bucket, tmp_path
):
    proxy, through = aws_like
    before, key = plant_cold(client, bucket, tmp_path)
    asked = prepare(through, bucket, SOURCE, 2020, 9, tier="Standard", days=3)
    assert not asked.ready and not asked.joined
    assert asked.message.startswith(f"s3://{bucket}/{key} is in GLACIER: asked for a copy (Standard, ready within 5 h")
    assert proxy.restores == [(key, 3, "Standard")]
    assert thaw_progress(through, bucket, asked.keys) == (False, None)

    again = prepare(through, bucket, SOURCE, 2020, 9)  # someone else, meanwhile: joined, not an error
    assert not again.ready and again.joined
    assert "joined a thaw already running" in again.message

    proxy.finish_restores()
    assert thaw_progress(through, bucket, asked.keys) == (True, None)
    done = prepare(through, bucket, SOURCE, 2020, 9)
    assert done.ready and "a copy is readable until" in done.message
    result = restore(through, bucket, SOURCE, 2020, 9, str(tmp_path / "out"))
    assert tree(result["directory"]) == before


def _restore_args(bucket, target, *extra):
    return ("restore", SOURCE, "2020", "9", str(target), "--bucket", bucket, *extra)


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_the_command_line_asks_for_a_copy_says_when_to_come_back_and_exits_75(
    aws_like,
    cli,  # noqa: F811 - the fixture
    client,
    bucket,
    tmp_path,
):
    proxy, _ = aws_like
    before, key = plant_cold(client, bucket, tmp_path, "DEEP_ARCHIVE")
    target = tmp_path / "out"
    endpoint = {"KINGFISHER_ARCHIVE_ENDPOINT_URL": proxy.endpoint_url}
    asked = cli(*_restore_args(bucket, target), **endpoint)
    assert asked.returncode == 75, asked.stderr
    line = asked.stdout.strip()
    assert "\n" not in line
    assert line.startswith(
        f"s3://{bucket}/{key} is in DEEP_ARCHIVE: asked for a copy (Bulk, ready within 48 h, asked "
    )
    assert line.endswith("UTC, lasting 7 days); run this again then, or add --wait")
    assert proxy.restores == [(key, 7, "Bulk")]

    joined = cli(*_restore_args(bucket, target, "--days", "2"), **endpoint)  # again, before it is ready
    assert joined.returncode == 75 and "joined a thaw already running" in joined.stdout
    refused = cli(*_restore_args(bucket, target, "--tier", "Expedited"), **endpoint)
    assert refused.returncode == 1
    assert "'Expedited' is not offered for DEEP_ARCHIVE objects" in refused.stderr
    assert not target.exists()

    proxy.finish_restores()
    done = cli(*_restore_args(bucket, target), **endpoint)
    assert done.returncode == 0, done.stderr
    assert f"s3://{bucket}/{key} is in DEEP_ARCHIVE: a copy is readable until" in done.stderr
    assert tree(target / SOURCE / VERSION) == before


@pytest.mark.aws(cold=True, kms=False, restore_seconds=3600)
def test_the_command_line_waits_with_wait_then_restores(aws_like, cli, client, bucket, tmp_path):
    proxy, _ = aws_like
    before, key = plant_cold(client, bucket, tmp_path)
    target = tmp_path / "out"
    # An hour's copy, on a clock that moves ten minutes at each reading: ready after a few of the command's polls.
    readings = itertools.count()
    proxy.clock = lambda: next(readings) * 600.0
    waited = cli(
        *_restore_args(bucket, target, "--wait", "--tier", "Expedited", "--poll-seconds", "0.2"),
        KINGFISHER_ARCHIVE_ENDPOINT_URL=proxy.endpoint_url,
    )
    assert waited.returncode == 0, waited.stderr
    assert "asked for a copy (Expedited, ready within 15 min" in waited.stderr
    assert "waiting (asking every 0.2 s)" in waited.stderr
    assert proxy.restores == [(key, 7, "Expedited")]
    assert tree(target / SOURCE / VERSION) == before


def test_the_poll_interval_is_a_number_of_seconds_above_0_600_by_default():
    assert thaw_poll_seconds(lambda name: None) == 600
    assert thaw_poll_seconds({"kingfisher_archive_thaw_poll_seconds": " 1 "}.get) == 1
    for wrong in ("0", "-5", "soon", "nan"):
        with pytest.raises(ConfigurationError) as raised:
            thaw_poll_seconds({"kingfisher_archive_thaw_poll_seconds": wrong}.get)
        assert f"'kingfisher_archive_thaw_poll_seconds' is {wrong!r}, not a number of seconds > 0" in str(raised.value)
