"""Auditing a real bucket: every kind of problem reported exactly, and repair that touches only broken uploads."""

import io
import json
import os
import tarfile
import time
from datetime import timedelta

import lz4.frame

from kingfisher_archive.audit import audit
from tests.test_restore import (
    add_like_tarfile,
    archive,
    file_member,
    lz4_tar,
    metadata_2021,
    put_month,
    read_metadata,
    write_tree,
)

DAY = timedelta(days=1)


def all_keys(client, bucket):
    paginator = client.get_paginator("list_objects_v2")
    return sorted(item["Key"] for page in paginator.paginate(Bucket=bucket) for item in page.get("Contents", []))


def uploads(client, bucket):
    return sorted((u["Key"], u["UploadId"]) for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def broken_upload(client, bucket, key):
    """A multipart upload with one part sent and never completed, as a killed archive task leaves it."""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"part one")
    initiated = next(
        u["Initiated"] for u in client.list_multipart_uploads(Bucket=bucket)["Uploads"] if u["UploadId"] == upload_id
    )
    return upload_id, initiated


def put_later_than(client, bucket, key, moment):
    """Write ``key`` until the server stamps it later than ``moment`` (S3 times have whole seconds)."""
    deadline = time.monotonic() + 10
    while True:
        client.put_object(Bucket=bucket, Key=key, Body=b"in flight")
        modified = client.head_object(Bucket=bucket, Key=key)["LastModified"]
        if modified > moment:
            return modified
        assert time.monotonic() < deadline, f"the server's clock did not pass {moment}"
        time.sleep(0.05)


def copy_month(client, bucket, source, target, names=("data.tar.zst", "metadata.json", "scrapy.log")):
    for name in names:
        client.copy_object(Bucket=bucket, Key=target + name, CopySource={"Bucket": bucket, "Key": source + name})


def messy_bucket(client, bucket, tmp_path):
    """A bucket with one of each problem; returns the ``now`` at which the old uploads are stale and the new not."""
    archive(client, bucket, tmp_path / "good", {"a.json": b"{}", "000/b.json": b"[]"})  # scotland/2020/09, fine
    copy_month(client, bucket, "scotland/2020/09/", "scotland/2020/9/")  # typed by hand: a warning, not a problem
    metadata = {"bytes": 10, "checksum": "0" * 32, "data_version": "20201001_000000", "source_id": "scotland"}
    put_month(client, bucket, "scotland/2020/10/", metadata=metadata, log=b"log")  # no data
    put_month(client, bucket, "scotland/2020/11/", data=b"an archive nobody described")  # no metadata
    put_month(client, bucket, "scotland/2020/12/", data=b"x", metadata=b"{not json", log=b"log")
    copy_month(client, bucket, "scotland/2020/09/", "scotland/2021/02/", names=("data.tar.zst", "metadata.json"))
    # A 2020 archive whose tool said it found no log: no warning about the log.
    old = {"database_id": 1, "data_md5": "0" * 32, "data_size": 5, "scrapy_log_file_found": False}
    put_month(client, bucket, "scotland/2019/05/", data=b"x", metadata=old)
    archive(client, bucket, tmp_path / "mexico", {"a.json": b"{}"}, source="mexico", version="20210105_101010")
    metadata = read_metadata(client, bucket, "mexico/2021/01/")
    metadata["compressed_bytes"] += 1
    put_month(client, bucket, "mexico/2021/01/", metadata=metadata)
    client.put_object(Bucket=bucket, Key="scotland/notes.txt", Body=b"someone's notes")

    _, stale_initiated = broken_upload(client, bucket, "staging/peru/20210202_000000/data.tar.lz4")
    client.put_object(Bucket=bucket, Key="staging/chile/20210101_000000/data.tar.lz4", Body=b"broken off")
    client.put_object(Bucket=bucket, Key="staging/chile/20210101_000000/scrapy.log", Body=b"broken off")
    stale_modified = client.head_object(Bucket=bucket, Key="staging/chile/20210101_000000/scrapy.log")["LastModified"]
    moment = max(stale_initiated, stale_modified)
    put_later_than(client, bucket, "staging/chile/20210301_000000/data.tar.lz4", moment)
    _, fresh_initiated = broken_upload(client, bucket, "staging/peru/20210303_000000/data.tar.lz4")
    assert fresh_initiated > moment
    return moment + DAY + timedelta(milliseconds=500)


EXPECTED_PROBLEMS = [
    ("mexico/2021/01/data.tar.zst", "data size does not match metadata"),
    ("scotland/2020/10/data.tar.lz4", "data object missing"),
    ("scotland/2020/11/metadata.json", "metadata missing"),
    ("scotland/2020/12/metadata.json", "metadata unreadable"),
    ("scotland/2021/02/metadata.json", "metadata does not match its key"),
    ("staging/chile/20210101_000000/data.tar.lz4", "stale staging object"),
    ("staging/chile/20210101_000000/scrapy.log", "stale staging object"),
    ("staging/peru/20210202_000000/data.tar.lz4", "stale multipart upload"),
]
UNREPAIRABLE = EXPECTED_PROBLEMS[:5]
EXPECTED_WARNINGS = [
    ("scotland/notes.txt", "unexpected object"),
    ("scotland/2020/09/", "month spelled twice"),
    ("scotland/2021/02/scrapy.log", "log missing"),
]


def test_every_problem_is_reported_once_and_exactly(client, bucket, tmp_path):
    now = messy_bucket(client, bucket, tmp_path)

    result = audit(client, bucket, now=now)

    assert [(p["key"], p["problem"]) for p in result["problems"]] == EXPECTED_PROBLEMS
    assert [(w["key"], w["warning"]) for w in result["warnings"]] == EXPECTED_WARNINGS
    assert (result["months"], result["repaired"], result["unrepaired"], result["verified"]) == (8, 0, 8, 0)
    details = {p["key"]: p["detail"] for p in result["problems"]}
    size = client.head_object(Bucket=bucket, Key="mexico/2021/01/data.tar.zst")["ContentLength"]
    assert details["mexico/2021/01/data.tar.zst"] == f"{size} bytes, compressed_bytes says {size + 1}"
    assert "not valid JSON" in details["scotland/2020/12/metadata.json"]
    assert details["scotland/2021/02/metadata.json"] == "it names crawl 20200902_052458, of another month"
    assert details["scotland/2020/11/metadata.json"] == "data.tar.lz4 without metadata.json"
    assert "initiated" in details["staging/peru/20210202_000000/data.tar.lz4"]
    assert not any(p["repaired"] for p in result["problems"])


def test_nothing_is_stale_until_a_day_has_passed(client, bucket, tmp_path):
    messy_bucket(client, bucket, tmp_path)
    result = audit(client, bucket)  # now: everything in staging was written seconds ago
    assert [(p["key"], p["problem"]) for p in result["problems"]] == UNREPAIRABLE


def test_repair_removes_only_the_stale_staging_objects_and_uploads(client, bucket, tmp_path):
    now = messy_bucket(client, bucket, tmp_path)
    keys_before = all_keys(client, bucket)
    uploads_before = uploads(client, bucket)

    result = audit(client, bucket, now=now, repair=True)

    assert [(p["key"], p["problem"], p["repaired"]) for p in result["problems"]] == [
        (key, problem, key.startswith("staging/")) for key, problem in EXPECTED_PROBLEMS
    ]
    assert (result["repaired"], result["unrepaired"]) == (3, 5)
    stale_keys = {"staging/chile/20210101_000000/data.tar.lz4", "staging/chile/20210101_000000/scrapy.log"}
    assert all_keys(client, bucket) == [key for key in keys_before if key not in stale_keys]
    assert "staging/chile/20210301_000000/data.tar.lz4" in all_keys(client, bucket)  # fresh: kept
    assert uploads(client, bucket) == [
        u for u in uploads_before if u[0] != "staging/peru/20210202_000000/data.tar.lz4"
    ]
    assert [key for key, _ in uploads(client, bucket)] == ["staging/peru/20210303_000000/data.tar.lz4"]

    again = audit(client, bucket, now=now, repair=True)
    assert [(p["key"], p["problem"], p["repaired"]) for p in again["problems"]] == [
        (key, problem, False) for key, problem in UNREPAIRABLE
    ]
    assert (again["repaired"], again["unrepaired"]) == (0, 5)
    assert all_keys(client, bucket) == [key for key in keys_before if key not in stale_keys]


def archive_2021(client, bucket, tmp_path, source, version, files, *, checksum=None, log=b"log"):
    """An archive as the 2021 tool wrote it: absolute member paths in tarfile.add's order, 2021 metadata."""
    original = write_tree(tmp_path / "originals" / source / version, files)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        add_like_tarfile(tar, original, f"home/ocdskfs/scrapyd/data/{source}/{version}")
    metadata = metadata_2021(original, source, version)
    if checksum is not None:
        metadata["checksum"] = checksum
    prefix = f"{source}/{version[:4]}/{version[4:6]}/"
    put_month(client, bucket, prefix, data=lz4.frame.compress(buffer.getvalue()), metadata=metadata, log=log)
    return metadata


HEX_CRAWL = {"scrapyd-job.txt": b"job", "000/a.json": b'{"a": 1}', "001/b.json": b"[2]", "FFF/c.json": b"{}"}


def test_verify_data_reads_every_archive_and_finds_damage(client, bucket, tmp_path):
    archive(client, bucket, tmp_path / "good", {"a.json": b"{}", "000/b.json": b"[]", "scrapyd-job.txt": b"j"})

    archive(client, bucket, tmp_path / "peru", {"a.json": os.urandom(4000)}, source="peru", version="20210201_000000")
    data = bytearray(client.get_object(Bucket=bucket, Key="peru/2021/02/data.tar.zst")["Body"].read())
    data[len(data) // 2] ^= 0xFF  # same size: only reading it shows the damage
    put_month(client, bucket, "peru/2021/02/", data=bytes(data), data_name="data.tar.zst")

    # Same names and sizes, other bytes: only the checksum can tell.
    wrong = archive_2021(client, bucket, tmp_path, "chile", "20210301_000000", {"a.json": b"AAAA"})
    archive_2021(client, bucket, tmp_path / "other", "chile", "20210301_000000", {"a.json": b"BBBB"})
    put_month(client, bucket, "chile/2021/03/", metadata=wrong)

    # 2021 archives of a hex-folder crawl: the tar's order is not the checksum's, verified in extra reads.
    archive_2021(client, bucket, tmp_path, "kenya", "20210401_000000", HEX_CRAWL)
    archive_2021(client, bucket, tmp_path, "kenya", "20210501_000000", HEX_CRAWL, checksum="e" * 32)
    # Folders inside folders with files at each level: too many reads, so the checksum is left unverified.
    deep = {"s.txt": b"1", "a/x": b"2", "a/z": b"3", "a/b/y": b"4", "a/b/c/w": b"5"}
    archive_2021(client, bucket, tmp_path, "uganda", "20210601_000000", deep)

    link = tarfile.TarInfo("zambia/20210701_000000/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    hostile = lz4_tar([file_member("zambia/20210701_000000/a.json", b"{}"), (link, None)])
    metadata = {"bytes": 2, "checksum": "0" * 32, "data_version": "20210701_000000", "source_id": "zambia"}
    put_month(client, bucket, "zambia/2021/07/", data=hostile, metadata=metadata, log=b"log")

    old = {"database_id": 1, "data_md5": "0" * 32, "data_size": 99, "scrapy_log_file_found": True}
    data = lz4_tar([file_member("ghana/20190501_000000/a.json", b"{}")])
    put_month(client, bucket, "ghana/2019/05/", data=data, metadata=old, log=b"log")

    without = audit(client, bucket)
    assert [p["problem"] for p in without["problems"]] == []  # nothing shows without reading the data

    result = audit(client, bucket, verify_data=True)

    assert [(p["key"], p["problem"]) for p in result["problems"]] == [
        ("chile/2021/03/data.tar.lz4", "checksum mismatch"),
        ("ghana/2019/05/data.tar.lz4", "archive does not match metadata"),
        ("kenya/2021/05/data.tar.lz4", "checksum mismatch"),
        ("peru/2021/02/data.tar.zst", "archive unreadable"),
        ("zambia/2021/07/data.tar.lz4", "archive member refused"),
    ]
    assert [(w["key"], w["warning"]) for w in result["warnings"]] == [
        ("uganda/2021/06/data.tar.lz4", "checksum not verified")
    ]
    assert result["verified"] == 8
    details = {p["key"]: p["detail"] for p in result["problems"]}
    assert details["ghana/2019/05/data.tar.lz4"] == "2 bytes, the metadata says 99"
    assert details["kenya/2021/05/data.tar.lz4"].endswith(f"the metadata says {'e' * 32}")
    assert "'zambia/20210701_000000/link'" in details["zambia/2021/07/data.tar.lz4"]
    assert result["unrepaired"] == 5
    assert json.dumps(result)  # JSON-ready, for XCom and --json
