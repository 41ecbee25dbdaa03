"""Months written as ``data.tar.lz4`` (the older tools, this package before 2.0) beside new ``data.tar.zst`` ones.

New archives are zstd; a month the older writer left in LZ4 is compared, replaced, audited and listed as before,
and the crawl checksum that decides "same data" is the codec's business nowhere.
"""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest

from kingfisher_archive import archive_format, compression, replacement, steps
from kingfisher_archive import crawl as crawls
from kingfisher_archive.audit import audit
from kingfisher_archive.bucket import Bucket
from kingfisher_archive.ledger import Ledger
from kingfisher_archive.restore import list_months
from tests.test_faults import assert_month_is_consistent, keys, plan_for

FILES = {"000/a.json": b'{"releases": [1, 2, 3]}' * 40, "001/b.json": b'{"b": "x"}' * 300, "flat.json": b"[]"}


def plant_lz4_month(client, bucket, crawl, source_id="scotland", data_version="20200915_000000"):
    """The crawl's month as this package wrote it before 2.0, by its LZ4 writer: ``data.tar.lz4`` and a
    ``metadata.json`` that names no data object or codec. Returns that metadata."""
    sink = io.BytesIO()
    writer = compression.LZ4Writer(sink)
    tar = archive_format.write_tar(crawl.directory, f"{source_id}/{data_version}", writer)
    writer.close()
    data = sink.getvalue()
    assert data[:4] == compression.LZ4_MAGIC
    metadata = {
        "id": f"{source_id}/{data_version}",
        "source_id": source_id,
        "data_version": data_version,
        "bytes": tar.summary.bytes,
        "checksum": tar.checksum,
        "files_count": len(FILES),
        "errors_count": 0,
        "reject_reason": None,
        "archived": True,
        "data_files": tar.summary.files,
        "compressed_bytes": len(data),
        "archiver": "kingfisher-archive 1.4.0",
    }
    prefix = f"{source_id}/{data_version[:4]}/{data_version[4:6]}/"
    client.put_object(Bucket=bucket, Key=prefix + "data.tar.lz4", Body=data)
    client.put_object(Bucket=bucket, Key=prefix + "scrapy.log", Body=b"log\n")
    client.put_object(Bucket=bucket, Key=prefix + "metadata.json", Body=json.dumps(metadata).encode())
    return metadata


def plant_deleted_lz4_month(client, bucket, host, files):
    """An LZ4 month of a crawl that the older package then deleted locally."""
    crawl = host.add_crawl("scotland", "20200915_000000", files)
    plant_lz4_month(client, bucket, crawl)
    shutil.rmtree(crawl.directory)
    os.remove(crawl.log)


def metadata_of(client, bucket, prefix):
    return json.loads(client.get_object(Bucket=bucket, Key=prefix + "metadata.json")["Body"].read())


def decide(settings, client, crawl_id):
    source_id, data_version = crawl_id.split("/")
    facts = steps.inspect(settings, {"source_id": source_id, "data_version": data_version})
    decided = steps.decide(settings, Bucket(client, settings.bucket), [facts], Ledger(settings.ledger), "run")
    return {d["id"]: d for d in decided["decisions"]}[crawl_id]


def test_one_crawl_as_lz4_and_as_zstd_has_one_checksum_and_compares_as_the_same_data(s3_server, host, settings):
    client = s3_server.client()
    planted = plant_lz4_month(client, settings.bucket, host.add_crawl("scotland", "20200915_000000", FILES))

    # The same files in the next month: the same data as September's LZ4 archive, not archived again.
    host.add_crawl("scotland", "20201001_000000", FILES)
    decision = decide(settings, client, "scotland/20201001_000000")
    assert (decision["status"], decision["reason"]) == ("not_archived", "2020_9_not_distinct")

    # The same files archived now, in August: zstd, with the LZ4 archive's checksum.
    august = host.add_crawl("scotland", "20200815_000000", FILES)
    checksum = crawls.checksum(august.directory)
    steps.archive(settings, client, plan_for(settings, client, "scotland", "20200815_000000"))
    metadata = metadata_of(client, settings.bucket, "scotland/2020/08/")
    assert (metadata["data_object"], metadata["codec"]) == ("data.tar.zst", "zstd")
    assert metadata["checksum"] == planted["checksum"] == checksum
    assert keys(client, settings.bucket, "scotland/2020/08/")[0] == "scotland/2020/08/data.tar.zst"


def test_an_lz4_month_replaced_by_a_zstd_archive_holds_exactly_the_new_archive(s3_server, host, settings):
    client = s3_server.client()
    plant_deleted_lz4_month(client, settings.bucket, host, {"a.json": b"[]"})
    crawl = host.add_crawl("scotland", "20200920_000000", FILES)  # more than 1.5 times the bytes: replaces it
    plan = plan_for(settings, client, "scotland", "20200920_000000")
    assert plan["month_held"].startswith("scotland/20200915_000000")

    result = steps.archive(settings, client, plan)

    month = "scotland/2020/09/"
    assert keys(client, settings.bucket, month) == [
        month + name for name in ("data.tar.zst", "metadata.json", "scrapy.log")
    ]
    assert assert_month_is_consistent(client, settings.bucket, month)["id"] == "scotland/20200920_000000"
    assert result["deleted"] and not os.path.exists(crawl.directory)
    assert keys(client, settings.bucket, "staging/") == []


def test_a_replacement_across_names_cut_short_after_its_metadata_json_is_finished_by_the_next_try(
    s3_server, host, settings
):
    client = s3_server.client()
    plant_deleted_lz4_month(client, settings.bucket, host, {"a.json": b"[]"})
    host.add_crawl("scotland", "20200920_000000", FILES)
    plan = plan_for(settings, client, "scotland", "20200920_000000")
    month = "scotland/2020/09/"

    def cut(params, **kwargs):  # the process dies as it is about to delete the old data.tar.lz4
        if params.get("Key") == month + "data.tar.lz4":
            raise KeyboardInterrupt("killed")

    client.meta.events.register("before-parameter-build.s3.DeleteObject", cut)
    with pytest.raises(KeyboardInterrupt):
        steps.archive(settings, client, plan)
    client.meta.events.unregister("before-parameter-build.s3.DeleteObject", cut)
    # The new metadata.json is in place and names the new data; the old data is still there, under its journal.
    assert metadata_of(client, settings.bucket, month)["data_object"] == "data.tar.zst"
    assert month + "data.tar.lz4" in keys(client, settings.bucket, month)
    assert replacement.recover(client, settings.bucket, "scotland", 2020, 9, "STANDARD", "STANDARD") == [
        "scotland/20200920_000000: it had completed; its staging objects were removed"
    ]
    assert keys(client, settings.bucket, month) == [
        month + name for name in ("data.tar.zst", "metadata.json", "scrapy.log")
    ]
    assert keys(client, settings.bucket, "staging/") == []


def test_a_journal_written_before_2_0_names_lz4_for_both_data_objects():
    body = {
        "month": "scotland/2020/09/",
        "crawl": "scotland/20200920_000000",
        "staging": "staging/scotland/20200920_000000/",
        "data": [10, '"e"', "AAAAAA=="],
        "log": [3, '"l"', "AAAAAA=="],
        "metadata": "{}",
        "old_metadata": "{}",
        "old_metadata_etag": '"m"',
        "old_data": [9, '"o"'],
        "token": "t",
    }
    journal = replacement.Journal.parse("staging/scotland/2020-09.replacing.json", json.dumps(body).encode())
    assert (journal.data_name, journal.old_data_name) == ("data.tar.lz4", "data.tar.lz4")
    body["data_name"] = "data.tar.gz"
    with pytest.raises(replacement.RecoveryError, match="cannot be read"):
        replacement.Journal.parse("staging/scotland/2020-09.replacing.json", json.dumps(body).encode())


def test_a_second_data_object_beside_a_month_refuses_its_replacement_and_the_audit_names_it(s3_server, host, settings):
    client = s3_server.client()
    plant_deleted_lz4_month(client, settings.bucket, host, {"a.json": b"[]"})
    month = "scotland/2020/09/"
    client.put_object(Bucket=settings.bucket, Key=month + "data.tar.zst", Body=b"someone's")
    host.add_crawl("scotland", "20200920_000000", FILES)
    plan = plan_for(settings, client, "scotland", "20200920_000000")

    with pytest.raises(replacement.MonthInconsistentError, match="also holds data.tar.zst"):
        steps.archive(settings, client, plan)
    assert client.get_object(Bucket=settings.bucket, Key=month + "data.tar.zst")["Body"].read() == b"someone's"
    found = audit(client, settings.bucket, verify_data=True)
    assert [(p["key"], p["problem"]) for p in found["problems"]] == [(month + "data.tar.zst", "second data object")]
    assert found["verified"] == 1  # the LZ4 archive metadata.json describes, read and checked


def test_list_and_audit_read_lz4_and_zstd_months_side_by_side(s3_server, host, settings):
    client = s3_server.client()
    plant_deleted_lz4_month(client, settings.bucket, host, FILES)
    host.add_crawl("scotland", "20201020_000000", {**FILES, "more.json": b"[1]" * 2000})
    steps.archive(settings, client, plan_for(settings, client, "scotland", "20201020_000000"))

    rows = list_months(client, settings.bucket, "scotland")
    assert [(row["prefix"], row["data_object"], row["problem"]) for row in rows] == [
        ("scotland/2020/09/", "data.tar.lz4", None),
        ("scotland/2020/10/", "data.tar.zst", None),
    ]
    for row in rows:
        size = client.head_object(Bucket=settings.bucket, Key=row["prefix"] + row["data_object"])["ContentLength"]
        assert row["compressed_bytes"] == size
    found = audit(client, settings.bucket, verify_data=True)
    assert (found["problems"], found["verified"]) == ([], 2)
