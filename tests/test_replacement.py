"""The bucket serializes a month: whatever two tries believe about claims, one replacement of a month at a time.

Claims live in the ledger; a ledger set aside and started afresh, a second AIRFLOW_HOME or a container with its own
pid namespace lets two tries believe they hold one month. These tests call the archiver from two such tries on a
real SeaweedFS, interleaved with botocore's event hooks, and look at what a user would: the month's objects and
metadata.json, the journal, and the crawls left on disk. SeaweedFS's own Object Lock (default retention) serves the
locked bucket.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime

import pytest
from botocore.exceptions import ClientError

from kingfisher_archive import archiver, audit, replacement, steps
from kingfisher_archive import bucket as layout
from kingfisher_archive import settings as config
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.ledger import Held, Ledger, Status
from kingfisher_archive.month import interrupted
from kingfisher_archive.process import Collection
from kingfisher_archive.records import CrawlKey, Expected
from kingfisher_archive.s3.delete import clean_staging, purge_versions
from kingfisher_archive.s3.objects import get_if_any
from scripts.demo_kit.kingfisher_host import ocds_files
from tests.harness.stripping_proxy import StrippingProxy
from tests.test_faults import archive_an_earlier_crawl, assert_month_is_consistent, keys, plan_for
from tests.test_s3_compatibility import _client

MONTH = "scotland/2020/09/"
JOURNAL = "staging/scotland/2020-09.replacing.json"


def archive_directly(settings, client, plan, **kwargs):
    """One try of the archive task's archiver, with no ledger and no claim: what a try that bypasses them does."""
    request = archiver.ArchiveRequest(
        CrawlKey.of(plan),
        log_path=plan["log"],
        expected=Expected(**plan["expected"]),
        metadata=dict(plan["metadata"]),
        month_held=plan["month_held"],
    )
    return archiver.archive_crawl(client, settings, request, **kwargs)  # settings: storage class STANDARD


def on_disk(settings, crawl_id):
    return os.path.isdir(os.path.join(settings.data_directory, *crawl_id.split("/")))


@pytest.fixture
def two_tries(s3_server, host, settings):
    """A month holding an archive, and two crawls of it chosen to replace it, each by a try of its own."""
    client = s3_server.client()
    archive_an_earlier_crawl(settings, host, client)
    host.add_crawl("scotland", "20200902_052458", ocds_files("big", 20))
    host.add_crawl("scotland", "20200915_000000", ocds_files("big", 12))
    first = plan_for(settings, client, "scotland", "20200902_052458")
    second = plan_for(settings, client, "scotland", "20200915_000000")
    assert first["month_held"] == second["month_held"] is not None  # both decided against the earlier archive
    return client, s3_server.client(), first, second


def test_two_replacements_of_one_month_racing_without_a_claim_leave_one_whole_archive(settings, two_tries):
    client, other, first, second = two_tries
    raised = {}

    def second_try(params, **kwargs):
        # The first try holds the month's journal and is about to take the old metadata.json away.
        if params.get("Key") == MONTH + "metadata.json" and not raised:
            with pytest.raises(replacement.ReplacementInProgressError) as error:
                archive_directly(settings, other, second)
            raised["error"] = error.value

    client.meta.events.register("before-parameter-build.s3.DeleteObject", second_try)
    result = archive_directly(settings, client, first)

    error = raised["error"]
    assert error.journal == JOURNAL and error.holder == first["id"] and error.crawl == second["id"]
    assert f"its journal s3://{settings.bucket}/{JOURNAL} holds the month" in str(error)
    assert f"is being replaced by {first['id']}" in str(error)
    assert result["deleted"] and not on_disk(settings, first["id"])
    assert assert_month_is_consistent(client, settings.bucket, MONTH)["id"] == first["id"]
    assert on_disk(settings, second["id"])  # the loser is kept
    assert keys(client, settings.bucket, "staging/") == []  # no journal, no staged archive of either
    assert replacement.recover(client, settings.bucket, "scotland", 2020, 9, "STANDARD", "STANDARD") == []


def test_a_try_that_meets_a_month_another_replacement_took_metadata_json_from_does_not_start_from_it(
    settings, two_tries
):
    """The review's scenario: the ledger is set aside while a replacement runs; another try claims the month afresh
    and finds its data without metadata.json (the first try just took it away). It must not start from that."""
    client, other, first, second = two_tries
    raised = {}

    def second_try(http_response, **kwargs):  # just after the first try took the old metadata.json away
        if http_response.url.endswith(MONTH + "metadata.json") and not raised:
            assert get_if_any(other, settings.bucket, MONTH + "metadata.json") is None
            with pytest.raises(layout.MonthIncompleteError) as error:
                archive_directly(settings, other, second)
            raised["error"] = error.value

    client.meta.events.register("after-call.s3.DeleteObject", second_try)
    archive_directly(settings, client, first)

    assert f"s3://{settings.bucket}/{MONTH} holds data.tar.zst and scrapy.log but no metadata.json" in str(
        raised["error"]
    )
    metadata = assert_month_is_consistent(client, settings.bucket, MONTH)
    assert metadata["id"] == first["id"] and not on_disk(settings, first["id"])
    assert on_disk(settings, second["id"])
    assert keys(client, settings.bucket, "staging/") == []


def test_a_replacement_begins_only_from_the_month_its_crawl_was_chosen_against(settings, two_tries):
    client, other, first, second = two_tries
    archive_directly(settings, client, first)  # the month changed since the second was decided

    with pytest.raises(replacement.MonthChangedError, match=f"holds {first['id']} .*not scotland/20200901_000000"):
        archive_directly(settings, other, second)
    assert assert_month_is_consistent(client, settings.bucket, MONTH)["id"] == first["id"]
    assert on_disk(settings, second["id"]) and keys(client, settings.bucket, "staging/") == []


def test_a_lost_response_to_writing_the_journal_is_recognised_as_this_try_s(settings, two_tries):
    client, other, first, _ = two_tries
    lost = []

    def retried(model, http_response, **kwargs):
        # The server applied the write and its response was lost: botocore's retry sends the identical request,
        # which the server answers 412 (the key is taken, by this very write).
        if http_response.url.endswith(JOURNAL) and http_response.status_code == 200 and not lost:
            lost.append(True)
            body = other.get_object(Bucket=settings.bucket, Key=JOURNAL)["Body"].read()
            try:
                other.put_object(Bucket=settings.bucket, Key=JOURNAL, Body=body, IfNoneMatch="*")
            except ClientError as e:
                raise ClientError(e.response, model.name) from None

    client.meta.events.register("after-call.s3.PutObject", retried)
    result = archive_directly(settings, client, first)

    assert lost and result["deleted"]
    assert assert_month_is_consistent(client, settings.bucket, MONTH)["id"] == first["id"]
    assert keys(client, settings.bucket, "staging/") == []


@pytest.mark.parametrize("where", ["month", "per-crawl"])
def test_an_interrupted_replacement_is_reported_and_recovered_at_either_journal_key(settings, two_tries, where):
    """Buckets written before 2.0 hold journals beside their staged archive: they are still finished."""
    client, _, first, _ = two_tries
    cut = []

    def cut_short(params, **kwargs):  # killed once the old metadata.json is gone and before the copy
        if params.get("CopySource") and not cut:
            cut.append(True)
            raise KeyboardInterrupt

    client.meta.events.register("before-parameter-build.s3.CopyObject", cut_short)
    with pytest.raises(KeyboardInterrupt):
        archive_directly(settings, client, first)
    client.meta.events.unregister("before-parameter-build.s3.CopyObject", cut_short)
    assert get_if_any(client, settings.bucket, MONTH + "metadata.json") is None
    key = JOURNAL
    if where == "per-crawl":  # as 1.0 wrote it: no token, beside the staged archive
        body = json.loads(client.get_object(Bucket=settings.bucket, Key=JOURNAL)["Body"].read())
        del body["token"]
        key = f"staging/scotland/{first['data_version']}/replacing.json"
        client.put_object(Bucket=settings.bucket, Key=key, Body=json.dumps(body).encode())
        client.delete_object(Bucket=settings.bucket, Key=JOURNAL)

    report = audit.audit(client, settings.bucket)
    assert (key, "interrupted replacement") in [(p["key"], p["problem"]) for p in report["problems"]]
    assert interrupted(client, settings.bucket, "scotland", 2020, 9)
    done = replacement.recover(client, settings.bucket, "scotland", 2020, 9, "STANDARD", "STANDARD")

    assert done == [f"{first['id']}: finished: the month now holds it"]
    assert assert_month_is_consistent(client, settings.bucket, MONTH)["id"] == first["id"]
    assert keys(client, settings.bucket, "staging/") == []


@pytest.fixture
def locked(s3_server, host, tmp_path):
    """A bucket with Object Lock and a default retention: every version written is locked for a day."""
    name = f"test-{secrets.token_hex(6)}"
    client = s3_server.client()
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(
        Bucket=name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    settings = config.Settings(name, host.data_directory, host.logs_directory, str(tmp_path / "l.sqlite3"), "STANDARD")
    return client, settings


def _latest(client, bucket, prefix):
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    found = []
    for page in pages:
        found += [("version", v["Key"]) for v in page.get("Versions", []) if v["IsLatest"]]
        found += [("marker", v["Key"]) for v in page.get("DeleteMarkers", []) if v["IsLatest"]]
    return sorted(found)


def test_a_locked_version_keeps_its_delete_marker_so_nothing_deleted_comes_back(locked):
    client, settings = locked
    key = "staging/scotland/2020-09.replacing.json"
    client.put_object(Bucket=settings.bucket, Key=key, Body=b"{}")
    client.delete_object(Bucket=settings.bucket, Key=key)

    assert purge_versions(client, settings.bucket, key) == 0  # the version is locked, so its marker stays
    assert get_if_any(client, settings.bucket, key) is None
    assert _latest(client, settings.bucket, key) == [("marker", key)]


def test_a_bucket_with_default_retention_replaces_a_month_and_no_journal_or_staged_object_comes_back(locked, host):
    client, settings = locked
    archive_an_earlier_crawl(settings, host, client)
    host.add_crawl("scotland", "20200902_052458", ocds_files("big", 20))
    result = steps.archive(settings, client, plan_for(settings, client, "scotland", "20200902_052458"))

    assert result["deleted"]
    assert assert_month_is_consistent(client, settings.bucket, MONTH)["id"] == "scotland/20200902_052458"
    # The staged objects' and the journal's versions are locked: they stay, under delete markers that stay too.
    assert keys(client, settings.bucket, "staging/") == []
    assert all(kind == "marker" for kind, _ in _latest(client, settings.bucket, "staging/"))
    assert ("marker", JOURNAL) in _latest(client, settings.bucket, "staging/")
    assert replacement.recover(client, settings.bucket, "scotland", 2020, 9, "STANDARD", "STANDARD") == []
    assert audit.audit(client, settings.bucket)["problems"] == []


@pytest.mark.slow
def test_a_replacement_the_lock_refuses_says_so_and_leaves_nothing_for_later_runs_to_fail_on(
    s3_server, host, tmp_path
):
    name = f"test-{secrets.token_hex(6)}"
    direct = s3_server.client()
    direct.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    settings = config.Settings(name, host.data_directory, host.logs_directory, str(tmp_path / "l.sqlite3"), "STANDARD")
    archive_an_earlier_crawl(settings, host, direct)
    host.add_crawl("scotland", "20200902_052458", ocds_files("big", 20))
    plan = plan_for(settings, direct, "scotland", "20200902_052458")

    def refuse(method, path):  # as AWS answers a delete of a version under retention, or a legal hold
        return method == "DELETE" and f"/{MONTH}metadata.json" in path

    with StrippingProxy(
        s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key, s3_server.region, drop=(), refuse=refuse
    ) as proxy:
        from tests.test_s3_probe import _client_via

        with pytest.raises(replacement.RefusedError) as raised:
            steps.archive(settings, _client_via(s3_server, proxy.endpoint_url), plan)
    error = raised.value
    assert error.reason == replacement.REFUSED_BY_OBJECT_LOCK and error.lock.startswith("Enabled")
    assert (error.month, error.crawl, error.code) == (MONTH, plan["id"], "AccessDenied")
    assert keys(direct, name, "staging/") == []  # no journal left for a later run to meet
    assert replacement.recover(direct, name, "scotland", 2020, 9, "STANDARD", "STANDARD") == []
    again = plan_for(settings, direct, "scotland", "20200902_052458")  # the next run decides the month as before
    assert again["month_held"] == plan["month_held"]
    assert on_disk(settings, plan["id"])

    # The archive task holds the crawl with a reason naming the lock, instead of failing; the next run goes on.
    ledger = Ledger(settings.ledger)
    with StrippingProxy(
        s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key, s3_server.region, drop=(), refuse=refuse
    ) as proxy:
        held = steps.archive_and_record(settings, _client_via(s3_server, proxy.endpoint_url), again, ledger, "r1")
    assert held["held"]["reason"] == Held.BUCKET_REFUSED and "Object Lock is Enabled" in held["held"]["detail"]
    row = ledger.get("scotland", "20200902_052458")
    assert (row["status"], row["reason"]) == (Status.HELD, Held.BUCKET_REFUSED)
    assert keys(direct, name, "staging/") == [] and on_disk(settings, plan["id"])
    inspected = [steps.inspect(settings, {"source_id": "scotland", "data_version": "20200902_052458"})]
    decided = steps.decide(settings, Bucket(direct, name, "STANDARD"), inspected, ledger, "r2")
    assert [d["status"] for d in decided["decisions"]] == [Status.TO_ARCHIVE]  # decided again, nothing failed


def test_a_source_id_the_package_writes_under_is_refused_naming_it(s3_server, bucket, host, settings):
    for source_id, where in (("staging", "staging/ folder"), ("_probe", "staging/_probe/ folder")):
        assert f"the source id {source_id!r} is reserved" in layout.reserved_source_problem(source_id)
        assert where in layout.reserved_source_problem(source_id)
        with pytest.raises(layout.ReservedSourceError, match=f"'{source_id}' is reserved.*nothing was written"):
            layout.month_prefix(source_id, 2020, 9)
        with pytest.raises(layout.ReservedSourceError, match=f"'{source_id}' is reserved"):
            layout.staging_prefix(source_id, "20200902_052458")
    assert layout.reserved_source_problem("scotland") is None
    host.add_crawl("staging", "20200902_052458")
    found = steps.find(settings, [Collection(7, "staging", datetime(2020, 9, 2, 5, 24, 58))], set(), False)
    assert found["crawls"] == []
    assert found["ignored"] == [f"collection 7: {layout.reserved_source_problem('staging')}"]
    client = s3_server.client()
    # And no repair of the package's own leftovers can be pointed at a month.
    for clean in (clean_staging, purge_versions):
        with pytest.raises(ValueError, match="deletes only under staging/"):
            clean(client, bucket, MONTH)
    assert keys(client, bucket) == []


def test_a_journal_of_another_month_or_unreadable_is_not_this_month_s(settings, two_tries):
    client, _, first, _ = two_tries
    client.put_object(Bucket=settings.bucket, Key=JOURNAL, Body=b"not a journal")
    with pytest.raises(replacement.ReplacementInProgressError) as raised:
        archive_directly(settings, client, first)
    assert raised.value.holder is None and "its journal cannot be read" in str(raised.value)
    assert on_disk(settings, first["id"])
    with pytest.raises(ClientError):
        client.head_object(Bucket=settings.bucket, Key=f"staging/scotland/{first['data_version']}/data.tar.zst")


@pytest.mark.slow
@pytest.mark.parametrize("refused", ["DeleteObject", "CopyObject"])
def test_an_object_lock_refusal_fails_the_crawl_naming_the_lock_and_leaves_the_month_whole(
    s3_server, host, tmp_path, refused
):
    name = f"test-{secrets.token_hex(6)}"
    s3_server.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    direct = _client(s3_server, s3_server.endpoint_url)
    settings = config.Settings(name, host.data_directory, host.logs_directory, str(tmp_path / "l.sqlite3"), "STANDARD")
    archive_an_earlier_crawl(settings, host, direct)
    before = {key: direct.head_object(Bucket=name, Key=key)["ETag"] for key in keys(direct, name, "scotland/")}
    host.add_crawl("scotland", "20200902_052458", ocds_files("big", 20))
    plan = plan_for(settings, direct, "scotland", "20200902_052458")

    def refuse(method, path):  # as AWS answers a change to a version under retention, or a legal hold
        if refused == "DeleteObject":
            return method == "DELETE" and "/scotland/2020/09/metadata.json" in path
        return method == "PUT" and "/scotland/2020/09/data.tar.zst" in path

    with StrippingProxy(
        s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key, s3_server.region, drop=(), refuse=refuse
    ) as proxy:
        with pytest.raises(replacement.RefusedError) as raised:
            steps.archive(settings, _client(s3_server, proxy.endpoint_url), plan)
    message = str(raised.value)
    assert f"refused to replace s3://{name}/scotland/2020/09/ with scotland/20200902_052458" in message
    assert "the bucket's Object Lock is Enabled" in message and "the month was left as it was" in message
    assert {key: direct.head_object(Bucket=name, Key=key)["ETag"] for key in keys(direct, name, "scotland/")} == before
    assert os.path.isdir(os.path.join(host.data_directory, "scotland", "20200902_052458"))
