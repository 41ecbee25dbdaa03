"""Archiving one crawl against a real S3 server: what lands in the bucket, and what is left on disk."""

import io
import json
import os
import random
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from kingfisher_archive import __version__, archiver, crawl
from kingfisher_archive.records import CrawlKey
from kingfisher_archive.s3.client import client_config
from kingfisher_archive.settings import Settings
from scripts.demo_kit.kingfisher_host import FILES, make_crawl, tree


def expected_for(directory, checksum=None):
    summary = crawl.measure(directory)
    return archiver.Expected(summary.bytes, summary.files, summary.fingerprint, checksum)


def run(client, bucket, tmp_path, directory, expected, log_text="log\n", storage_class="STANDARD"):
    log = tmp_path / "logs" / "scotland" / "job.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(log_text)
    (tmp_path / "logs" / "scotland" / "job.log.stats").write_text("{}")
    settings = Settings(bucket, str(tmp_path / "data"), str(tmp_path / "logs"), "", storage_class)  # no ledger
    request = archiver.ArchiveRequest(
        CrawlKey.of({"source_id": "scotland", "data_version": "20200902_052458"}),
        log_path=str(log),
        expected=expected,
        metadata={"files_count": 6, "errors_count": 1, "collection_id": 7, "reason": "new_period"},
    )
    return archiver.archive_crawl(client, settings, request)


def keys(client, bucket, prefix=""):
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def unzstd(archive_bytes):
    """The tar inside a zstd archive, as the stock ``zstd -dc`` reads it (content checksums checked)."""
    return subprocess.run(["zstd", "-dc"], input=archive_bytes, capture_output=True, check=True).stdout


def extract_with_stock_tools(archive_bytes, target):
    """What the README promises a person restoring by hand: `zstd -dc data.tar.zst | tar x`, and `tar --zstd -xf`."""
    subprocess.run(["tar", "xf", "-", "-C", str(target)], input=unzstd(archive_bytes), check=True)
    with tempfile.TemporaryDirectory() as other:
        archive, piped, by_tar = Path(other, "data.tar.zst"), Path(other, "piped"), Path(other, "by_tar")
        archive.write_bytes(archive_bytes)
        piped.mkdir()
        by_tar.mkdir()
        zstd = subprocess.Popen(["zstd", "-dc", str(archive)], stdout=subprocess.PIPE)  # zstd -dc data.tar.zst | tar x
        subprocess.run(["tar", "xf", "-", "-C", str(piped)], stdin=zstd.stdout, check=True)
        zstd.stdout.close()
        assert zstd.wait() == 0
        subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(by_tar)], check=True)
        assert tree(by_tar) == tree(piped)  # both stock ways give the same files


def test_a_crawl_round_trips_byte_for_byte_and_is_deleted_locally(client, bucket, tmp_path):
    directory = make_crawl(tmp_path / "data", FILES)
    before = tree(directory)
    checksum = crawl.checksum(directory)

    result = run(client, bucket, tmp_path, directory, expected_for(directory))

    assert keys(client, bucket) == [
        "scotland/2020/09/data.tar.zst",
        "scotland/2020/09/metadata.json",
        "scotland/2020/09/scrapy.log",
    ]
    metadata = json.loads(client.get_object(Bucket=bucket, Key="scotland/2020/09/metadata.json")["Body"].read())
    assert {k: metadata[k] for k in ("id", "source_id", "data_version", "bytes", "checksum", "files_count")} == {
        "id": "scotland/20200902_052458",
        "source_id": "scotland",
        "data_version": "20200902_052458",
        "bytes": sum(len(v) for v in FILES.values() if v is not None),
        "checksum": checksum,
        "files_count": 6,
    }
    assert (metadata["errors_count"], metadata["reject_reason"], metadata["collection_id"]) == (1, None, 7)
    assert metadata["archiver"] == f"kingfisher-archive {__version__}"  # the distribution and version that wrote it
    # The data object's name, its codec and level; its checksums keyed by that name.
    assert (metadata["data_object"], metadata["codec"], metadata["compression_level"]) == ("data.tar.zst", "zstd", 1)
    assert set(metadata["checksums"]) == {"data.tar.zst", "scrapy.log"}
    log = client.get_object(Bucket=bucket, Key="scotland/2020/09/scrapy.log")["Body"].read()
    assert log == b"log\n"

    restored = tmp_path / "restored"
    restored.mkdir()
    archive_bytes = client.get_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read()
    assert len(archive_bytes) == result["compressed_bytes"]
    extract_with_stock_tools(archive_bytes, restored)
    assert tree(restored / "scotland" / "20200902_052458") == before

    # Relative member names, the crawl's own path first.
    with tarfile.open(fileobj=io.BytesIO(unzstd(archive_bytes))) as tar:
        names = tar.getnames()
    assert names[0] == "scotland/20200902_052458"
    assert all(name.startswith("scotland/20200902_052458") for name in names)

    # Read once: every data byte went through the checksum and the tar in the same pass.
    assert result["bytes_read"] == metadata["bytes"]
    assert not os.path.exists(directory)
    assert not (tmp_path / "logs" / "scotland" / "job.log").exists()
    assert not (tmp_path / "logs" / "scotland" / "job.log.stats").exists()
    assert keys(client, bucket, "staging/") == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("change", ["add", "remove", "rewrite"])
def test_a_crawl_that_changed_since_inspection_is_neither_archived_nor_deleted(client, bucket, tmp_path, change):
    directory = make_crawl(tmp_path / "data", {"a.json": b"1" * 100, "b.json": b"2" * 100})
    expected = expected_for(directory)
    if change == "add":
        (tmp_path / "data" / "scotland" / "20200902_052458" / "c.json").write_bytes(b"new")
    elif change == "remove":
        os.remove(os.path.join(directory, "b.json"))
    else:
        with open(os.path.join(directory, "a.json"), "wb") as f:
            f.write(b"3" * 100)
        os.utime(os.path.join(directory, "a.json"), ns=(1, 1))

    with pytest.raises(crawl.CrawlChangedError, match="changed on disk since it was inspected"):
        run(client, bucket, tmp_path, directory, expected)

    assert os.path.isdir(directory)
    assert (tmp_path / "logs" / "scotland" / "job.log").exists()
    assert keys(client, bucket) == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_different_checksum_than_the_decision_saw_stops_the_archive(client, bucket, tmp_path):
    directory = make_crawl(tmp_path / "data", {"a.json": b"1" * 100})
    with pytest.raises(crawl.CrawlChangedError, match="its checksum was 0000"):
        run(client, bucket, tmp_path, directory, expected_for(directory, checksum="0" * 32))
    assert os.path.isdir(directory)
    assert keys(client, bucket) == []


def test_a_crawl_bigger_than_one_part_is_uploaded_in_several_verified_parts(client, bucket, tmp_path, monkeypatch):
    monkeypatch.setattr("kingfisher_archive.s3.upload.MIN_PART_SIZE", 5 * crawl.MiB)
    directory = make_crawl(tmp_path / "data", {f"{i:03X}/x.bin": os.urandom(2 * crawl.MiB) for i in range(6)})
    before = tree(directory)
    run(client, bucket, tmp_path, directory, expected_for(directory))
    head = client.head_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")
    assert head["ContentLength"] > 10 * crawl.MiB
    restored = tmp_path / "restored"
    restored.mkdir()
    extract_with_stock_tools(
        client.get_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read(), restored
    )
    assert tree(restored / "scotland" / "20200902_052458") == before


def test_a_file_replaced_by_a_folder_fails_the_archive_and_deletes_nothing(client, bucket, tmp_path):
    directory = make_crawl(tmp_path / "data", {"a.json": b"1", "b.json": b"2"})
    expected = expected_for(directory)
    os.remove(os.path.join(directory, "b.json"))
    os.mkdir(os.path.join(directory, "b.json"))  # same name, no longer a file
    with pytest.raises((crawl.CrawlChangedError, OSError)):
        run(client, bucket, tmp_path, directory, expected)
    assert os.path.exists(os.path.join(directory, "a.json"))
    assert keys(client, bucket) == []


LAYOUTS = {
    # Before 2023: files flat in the crawl directory, split items as name-N.json, archives as they came.
    "flat": {"a.json": b"[]", "a-1.json": b"[1]", "a-2.json": b"[2]", "bulk.zip": os.urandom(500), "x.rar": b"Rar!"},
    # Since 2021: the Scrapyd job id beside the data.
    "with job file": {"scrapyd-job.txt": b"3487b29602b311ebaad50c9d92c523cb", "a.json": b"{}"},
    # Since 2023: 3-hex-digit subfolders.
    "hex subfolders": {f"{i:03X}/{i}.json": f'{{"n": {i}}}'.encode() for i in range(0, 4096, 97)},
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_kingfisher_collect_layout_round_trips(client, bucket, tmp_path, layout):
    directory = make_crawl(tmp_path / "data", LAYOUTS[layout])
    before = tree(directory)
    checksum = crawl.checksum(directory)
    result = run(client, bucket, tmp_path, directory, expected_for(directory))
    assert result["checksum"] == checksum
    restored = tmp_path / "restored"
    restored.mkdir()
    extract_with_stock_tools(
        client.get_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read(), restored
    )
    assert tree(restored / "scotland" / "20200902_052458") == before


@pytest.mark.slow
def test_a_crawl_of_two_hundred_thousand_small_files_round_trips(client, bucket, tmp_path):
    files = {f"{i % 4096:03X}/{i}.json": b'{"ocid": "%d"}' % i for i in range(200_000)}
    directory = make_crawl(tmp_path / "data", files)
    checksum = crawl.checksum(directory)
    result = run(client, bucket, tmp_path, directory, expected_for(directory))
    assert (result["files"], result["checksum"]) == (200_000, checksum)
    archive_bytes = client.get_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(unzstd(archive_bytes))) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        assert len(members) == 200_000
        sample = tar.extractfile(members["scotland/20200902_052458/FFF/12287.json"]).read()
    assert sample == b'{"ocid": "12287"}'


def test_archiving_writes_no_temporary_file(client, bucket, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)  # make tempfile read TMPDIR again
    directory = make_crawl(tmp_path / "data", {f"{i:03X}/x.json": os.urandom(100_000) for i in range(20)})
    run(client, bucket, tmp_path, directory, expected_for(directory))
    assert list(scratch.iterdir()) == []


def test_a_long_archive_logs_percent_read_speed_and_compressed_bytes_sent(
    client, bucket, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(archiver, "PROGRESS_INTERVAL", 0.0)  # a line at every read and every part, as if slow
    monkeypatch.setattr("kingfisher_archive.s3.upload.MIN_PART_SIZE", 5 << 20)  # S3's smallest part: three parts here
    files = {f"{i:03X}/x.json": os.urandom(1_500_000) for i in range(8)}
    directory = make_crawl(tmp_path / "data", files)
    with caplog.at_level("INFO", logger="kingfisher_archive.archiver"):
        run(client, bucket, tmp_path, directory, expected_for(directory))
    lines = [r.getMessage() for r in caplog.records if "% read" in r.getMessage()]
    assert lines, caplog.text
    assert all(line.startswith("scotland/20200902_052458: ") and "MiB/s" in line for line in lines)
    assert any(" 100% read (11.4 of 11.4 MiB" in line for line in lines), lines
    assert any("compressed sent" in line and not line.endswith(" 0.0 MiB compressed sent") for line in lines), lines


def test_an_empty_month_is_written_in_place_and_a_month_holding_objects_through_staging(client, bucket, tmp_path):
    uploaded, copied = [], []
    client.meta.events.register(
        "before-parameter-build.s3.CreateMultipartUpload", lambda params, **kw: uploaded.append(params["Key"])
    )
    client.meta.events.register("before-parameter-build.s3.CopyObject", lambda params, **kw: copied.append(params))

    directory = make_crawl(tmp_path / "data", {"a.json": b"1" * 100})
    first = run(client, bucket, tmp_path, directory, expected_for(directory))
    assert first["in_place"] is True
    assert uploaded == ["scotland/2020/09/data.tar.zst", "scotland/2020/09/scrapy.log"] and copied == []

    # The month now holds an archive: the next one goes through staging, so the old one stays whole until then.
    uploaded.clear()
    directory = make_crawl(tmp_path / "data", {"a.json": b"2" * 100, "b.json": b"3" * 100})
    second = run(client, bucket, tmp_path, directory, expected_for(directory), log_text="second log\n")
    assert second["in_place"] is False
    assert uploaded == [
        "staging/scotland/20200902_052458/data.tar.zst",
        "staging/scotland/20200902_052458/scrapy.log",
    ]
    assert len(copied) == 2
    assert keys(client, bucket) == [
        "scotland/2020/09/data.tar.zst",
        "scotland/2020/09/metadata.json",
        "scotland/2020/09/scrapy.log",
    ]
    assert client.get_object(Bucket=bucket, Key="scotland/2020/09/scrapy.log")["Body"].read() == b"second log\n"
    metadata = json.loads(client.get_object(Bucket=bucket, Key="scotland/2020/09/metadata.json")["Body"].read())
    assert metadata["bytes"] == 200


def test_the_months_objects_get_the_configured_storage_class_whichever_way_they_were_written(client, bucket, tmp_path):
    def classes():
        listed = [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return {key: client.head_object(Bucket=bucket, Key=key).get("StorageClass") for key in listed}

    directory = make_crawl(tmp_path / "data", {"a.json": b"1" * 100})
    assert run(client, bucket, tmp_path, directory, expected_for(directory), storage_class="STANDARD_IA")["in_place"]
    assert classes() == {
        "scotland/2020/09/data.tar.zst": "STANDARD_IA",
        "scotland/2020/09/metadata.json": "STANDARD_IA",
        "scotland/2020/09/scrapy.log": "STANDARD_IA",
    }
    directory = make_crawl(tmp_path / "data", {"a.json": b"2" * 200})
    result = run(client, bucket, tmp_path, directory, expected_for(directory), storage_class="REDUCED_REDUNDANCY")
    assert result["in_place"] is False
    assert classes() == {
        "scotland/2020/09/data.tar.zst": "REDUCED_REDUNDANCY",
        "scotland/2020/09/metadata.json": "REDUCED_REDUNDANCY",
        "scotland/2020/09/scrapy.log": "REDUCED_REDUNDANCY",
    }


def test_a_crawl_of_many_buffers_and_parts_round_trips_byte_for_byte(client, bucket, tmp_path, monkeypatch):
    # The tar buffer is reused once compressed and parts are joined from compressed output: enough of both here
    # (about 40 MiB in 4 MiB buffers, 5 MiB parts), mixed with incompressible files, to catch a buffer reused early.
    monkeypatch.setattr("kingfisher_archive.s3.upload.MIN_PART_SIZE", 5 * crawl.MiB)
    rng = random.Random(7)
    files = {}
    for i in range(12):
        lines = (f'{{"ocid": "ocds-{i}-{n}", "amount": {rng.randint(0, 10**9)}}}\n' for n in range(90_000))
        files[f"{i:03X}/releases.json"] = "".join(lines).encode()
        files[f"{i:03X}/attachment.bin"] = rng.randbytes(rng.randint(1, 700_000))
    directory = make_crawl(tmp_path / "data", files)
    before = tree(directory)
    result = run(client, bucket, tmp_path, directory, expected_for(directory))
    assert result["bytes"] > 40 * crawl.MiB and result["compressed_bytes"] < result["bytes"] / 2
    parts = client.head_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["ETag"].strip('"').split("-")[1]
    assert int(parts) > 2
    restored = tmp_path / "restored"
    restored.mkdir()
    extract_with_stock_tools(
        client.get_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read(), restored
    )
    assert tree(restored / "scotland" / "20200902_052458") == before


def record_uploads(client):
    """The headers of every upload request the client sends (observed on the way out, nothing replaced)."""
    sent = []

    def note(request, event_name, **kwargs):
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        sent.append((event_name.rsplit(".", 1)[-1], headers))

    for operation in ("UploadPart", "PutObject"):
        client.meta.events.register(f"before-send.s3.{operation}", note)
    return sent


def test_each_upload_carries_its_md5_and_is_not_hashed_again_for_the_signature(client, bucket, tmp_path):
    """Content-MD5 and our own CRC32 (the checksum the server stores, which proves the bytes whatever the bucket's
    encryption; zlib's is cheap): no SHA-256 of the body (it is half the speed of LZ4 here), nothing else."""
    sent = record_uploads(client)
    directory = make_crawl(tmp_path / "data", FILES)
    run(client, bucket, tmp_path, directory, expected_for(directory))

    assert sorted({name for name, _ in sent}) == ["PutObject", "UploadPart"]
    for name, headers in sent:
        assert headers.get("content-md5"), name
        assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD", name
        assert [h for h in headers if h.startswith("x-amz-checksum-")] == ["x-amz-checksum-crc32"], name
    # The server took them (it checks signatures): the archive is there and reads back.
    archive = client.get_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read()
    extract_with_stock_tools(archive, tmp_path)
    assert (tmp_path / "scotland" / "20200902_052458" / "FFF" / "c.json").read_bytes() == FILES["FFF/c.json"]


def test_a_connection_that_asks_for_signed_bodies_gets_them(s3_server, bucket, tmp_path):
    from botocore.config import Config

    config = client_config(Config(s3={"addressing_style": "path", "payload_signing_enabled": True}))
    client = s3_server.client(config=config)
    sent = record_uploads(client)
    directory = make_crawl(tmp_path / "data", {"a.json": b"1" * 100})
    run(client, bucket, tmp_path, directory, expected_for(directory))

    assert sent and all(len(headers["x-amz-content-sha256"]) == 64 for _, headers in sent)
    assert keys(client, bucket) == [
        "scotland/2020/09/data.tar.zst",
        "scotland/2020/09/metadata.json",
        "scotland/2020/09/scrapy.log",
    ]
