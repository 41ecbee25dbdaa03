"""Restoring a month from a real S3 server: byte-for-byte round trips, both archive layouts, hostile archives."""

import io
import json
import os
import re
import shlex
import tarfile
from datetime import UTC

import lz4.frame
import pytest

from kingfisher_archive import archiver, crawl
from kingfisher_archive.records import CrawlKey
from kingfisher_archive.restore import RestoreError, list_months, restore
from kingfisher_archive.settings import Settings
from scripts.demo_kit.kingfisher_host import tree

SOURCE = "scotland"
VERSION = "20200902_052458"


def write_tree(directory, files):
    """Files (bytes) and empty folders (None) under ``directory``; names may be bytes (not UTF-8)."""
    os.makedirs(directory, exist_ok=True)
    for relpath, content in files.items():
        path = os.path.join(os.fsencode(directory), os.fsencode(relpath))
        if content is None:
            os.makedirs(path, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
    return str(directory)


def everything_under(directory):
    return {os.path.join(root, name) for root, dirs, files in os.walk(directory) for name in dirs + files}


def archive(client, bucket, tmp_path, files, *, source=SOURCE, version=VERSION, log=b"the log\n", mtime=None):
    """Archive a crawl with the real archiver (which deletes it locally); return a copy of its tree first."""
    data = tmp_path / "kfc-data"
    logs = tmp_path / "kfc-logs"
    directory = write_tree(data / source / version, files)
    if mtime is not None:
        for root, _, names in os.walk(directory):
            for name in names:
                os.utime(os.path.join(root, name), (mtime, mtime))
    before = tree(directory)
    log_path = logs / source / f"{version}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(log)
    summary = crawl.measure(directory)
    request = archiver.ArchiveRequest(
        CrawlKey.of({"source_id": source, "data_version": version}),
        log_path=str(log_path),
        expected=archiver.Expected(summary.bytes, summary.files, summary.fingerprint),
        metadata={"files_count": 3, "errors_count": 0},
    )
    archiver.archive_crawl(client, Settings(bucket, str(data), str(logs), "", "STANDARD"), request)  # no ledger
    assert not os.path.exists(directory)
    return before


def lz4_tar(members):
    """An LZ4 frame holding a tar of ``members``: (TarInfo, bytes or None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return lz4.frame.compress(buffer.getvalue())


def file_member(name, content):
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, content


def dir_member(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def add_like_tarfile(tar, path, name):
    """Add ``path`` as ``name`` in ``tarfile.add``'s order (names sorted, files and folders interleaved).

    ``tarfile.add`` itself strips a leading "/" from names; the 2021 archives may have kept it.
    """
    if os.path.isdir(path):
        tar.addfile(dir_member(name)[0])
        for child in sorted(os.listdir(path)):
            add_like_tarfile(tar, os.path.join(path, child), f"{name}/{child}")
    else:
        with open(path, "rb") as f:
            info, content = file_member(name, f.read())
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))


def metadata_2021(directory, source=SOURCE, version=VERSION):
    """metadata.json as the 2021 tool wrote it, for the crawl in ``directory``."""
    return {
        "id": f"{source}/{version}",
        "source_id": source,
        "data_version": version,
        "bytes": crawl.measure(directory).bytes,
        "checksum": crawl.checksum(directory),
        "files_count": 2,
        "errors_count": 0,
        "reject_reason": None,
        "archived": None,
    }


def put_month(client, bucket, prefix, data=None, metadata=None, log=None, data_name="data.tar.lz4"):
    """Plant a month as the older tools wrote it (``data.tar.lz4``), or under ``data_name``."""
    if data is not None:
        client.put_object(Bucket=bucket, Key=prefix + data_name, Body=data)
    if metadata is not None:
        body = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
        client.put_object(Bucket=bucket, Key=prefix + "metadata.json", Body=body)
    if log is not None:
        client.put_object(Bucket=bucket, Key=prefix + "scrapy.log", Body=log)


def read_metadata(client, bucket, prefix="scotland/2020/09/"):
    return json.loads(client.get_object(Bucket=bucket, Key=prefix + "metadata.json")["Body"].read())


LAYOUTS = {
    "flat files": {"a.json": b"[]", "a-1.json": b"[1]", "bulk.zip": os.urandom(2000), "x.rar": b"Rar!"},
    "hex subfolders": {
        "scrapyd-job.txt": b"3487b29602b311ebaad50c9d92c523cb",
        **{f"{i:03X}/{i}.json": b'{"n": %d}' % i for i in range(0, 4096, 211)},
    },
    "an empty folder": {"a.json": b"{}", "empty": None, "000/b.json": b"", "000/nested-empty": None},
    "a non-UTF-8 name": {b"caf\xe9.json": b"latin-1 name", "plain.json": b"{}"},
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_restores_byte_for_byte_beside_its_log(client, bucket, tmp_path, layout):
    before = archive(client, bucket, tmp_path, LAYOUTS[layout])
    target = tmp_path / "restored"

    result = restore(client, bucket, SOURCE, 2020, 9, str(target))

    directory = target / SOURCE / VERSION
    assert tree(directory) == before
    assert (target / SOURCE / f"{VERSION}.scrapy.log").read_bytes() == b"the log\n"
    # Nothing else: no leftover working directory, the log beside the crawl, not inside it.
    assert sorted(os.listdir(target / SOURCE)) == [VERSION, f"{VERSION}.scrapy.log"]
    assert result["directory"] == str(directory)
    assert result["log"] == str(target / SOURCE / f"{VERSION}.scrapy.log")
    assert (result["data_version"], result["generation"], result["checksum_verified"]) == (VERSION, "2021", True)
    assert result["verified"] == ["bytes", "files", "checksum"]
    assert result["files"] == sum(1 for content in LAYOUTS[layout].values() if content is not None)
    assert result["checksum"] == read_metadata(client, bucket)["checksum"]
    assert shlex.split(result["reload_command"]) == [
        "python",
        "manage.py",
        "load",
        "--source",
        SOURCE,
        "--time",
        "2020-09-02 05:24:58",
        "--note",
        f"Restored from s3://{bucket}/scotland/2020/09/data.tar.zst",
        str(directory),
    ]


def test_an_archive_written_before_1_0_0_reads_as_before(client, bucket, tmp_path):
    """Until 1.0.0 metadata.json's archiver said "kingfisher-archive (Airflow)", not a distribution and version."""
    before = archive(client, bucket, tmp_path, {"a.json": b"{}", "000/b.json": b"[]"})
    metadata = read_metadata(client, bucket)
    assert metadata["archiver"].startswith("kingfisher-archive 1.")
    put_month(client, bucket, "scotland/2020/09/", metadata=metadata | {"archiver": "kingfisher-archive (Airflow)"})

    [row] = list_months(client, bucket, SOURCE)
    result = restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "restored"))

    assert (row["data_version"], row["problem"]) == (VERSION, None)
    assert result["verified"] == ["bytes", "files", "checksum"]
    assert tree(tmp_path / "restored" / SOURCE / VERSION) == before


def test_restored_files_keep_their_times_so_process_accepts_the_crawl_time(client, bucket, tmp_path):
    # Kingfisher Process's load refuses a --time later than the earliest file modification time.
    started = crawl.parse_data_version(VERSION).replace(tzinfo=UTC).timestamp()
    archive(client, bucket, tmp_path, {"a.json": b"{}", "000/b.json": b"[]"}, mtime=started + 61)
    result = restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "restored"))
    for name in ("a.json", "000/b.json"):
        assert os.stat(os.path.join(result["directory"], name)).st_mtime == started + 61
    assert shlex.split(result["reload_command"])[6] == "2020-09-02 05:24:58"  # UTC, like the directory name


@pytest.mark.parametrize("leading_slash", [False, True])
@pytest.mark.parametrize("with_parents", [False, True])
def test_a_2021_archive_with_absolute_member_paths_restores_to_source_and_version(
    client, bucket, tmp_path, leading_slash, with_parents
):
    files = {
        "scrapyd-job.txt": b"3487b29602b311ebaad50c9d92c523cb",
        "000/1.json": b'{"a": 1}',
        "FFF/2.json": b'{"b": 2}' * 50,
        "flat.json": b"[]",
    }
    original = write_tree(tmp_path / "original" / SOURCE / VERSION, files)
    before = tree(original)
    # The 2021 tool archived the crawl directory by its absolute path, with tarfile.add's (sorted) order.
    root = ("/" if leading_slash else "") + f"home/ocdskfs/scrapyd/data/{SOURCE}/{VERSION}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if with_parents:
            for parent in ("home", "home/ocdskfs", "home/ocdskfs/scrapyd", "home/ocdskfs/scrapyd/data"):
                tar.addfile(dir_member(parent)[0])
        add_like_tarfile(tar, original, root)
    put_month(
        client,
        bucket,
        "scotland/2020/09/",
        data=lz4.frame.compress(buffer.getvalue()),
        metadata=metadata_2021(original),
        log=b"2021 log\n",
    )

    result = restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "restored"), data_version=VERSION)

    assert tree(tmp_path / "restored" / SOURCE / VERSION) == before
    assert sorted(os.listdir(tmp_path / "restored")) == [SOURCE]
    assert result["verified"] == ["bytes", "checksum"]  # 2021 metadata has no data_files
    assert result["checksum_verified"] is True


def test_a_2020_archive_is_verified_by_size_only_and_says_so(client, bucket, tmp_path):
    original = write_tree(tmp_path / "original", {"a.json": b"[1, 2]", "b.json": b"{}"})
    data = lz4_tar(
        [
            dir_member(f"{SOURCE}/{VERSION}"),
            file_member(f"{SOURCE}/{VERSION}/a.json", b"[1, 2]"),
            file_member(f"{SOURCE}/{VERSION}/b.json", b"{}"),
        ]
    )
    metadata = {"database_id": 123, "data_md5": "0" * 32, "data_size": 8, "scrapy_log_file_found": False}
    put_month(client, bucket, "scotland/2020/09/", data=data, metadata=metadata)

    result = restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "restored"))

    assert tree(result["directory"]) == tree(original)
    assert (result["generation"], result["checksum_verified"], result["verified"]) == ("2020", False, ["bytes"])
    assert "only the size" in result["note"]
    assert result["log"] is None
    assert result["data_version"] == VERSION  # learnt from the archive, since 2020 metadata does not say

    metadata["data_size"] = 9
    put_month(client, bucket, "scotland/2020/09/", metadata=metadata)
    with pytest.raises(RestoreError, match="8 bytes, the metadata says 9"):
        restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "again"))


GOOD = [dir_member(f"{SOURCE}/{VERSION}"), file_member(f"{SOURCE}/{VERSION}/a.json", b'{"good": true}')]


def hostile_members(outside):
    """(label, member, content): each must make the restore fail, naming the member."""
    symlink = tarfile.TarInfo(f"{SOURCE}/{VERSION}/link")
    symlink.type = tarfile.SYMTYPE
    symlink.linkname = str(outside)
    hardlink = tarfile.TarInfo(f"{SOURCE}/{VERSION}/hard")
    hardlink.type = tarfile.LNKTYPE
    hardlink.linkname = f"../../../{outside.name}/evil.txt"
    device = tarfile.TarInfo(f"{SOURCE}/{VERSION}/null")
    device.type = tarfile.CHRTYPE
    device.devmajor, device.devminor = 1, 3
    fifo = tarfile.TarInfo(f"{SOURCE}/{VERSION}/fifo")
    fifo.type = tarfile.FIFOTYPE
    return {
        "absolute path outside": (
            file_member(str(outside / "evil.txt"), b"evil"),
            "not inside a crawl|outside the crawl",
        ),
        "dot-dot": (file_member(f"{SOURCE}/{VERSION}/../../../{outside.name}/evil.txt", b"evil"), "'..'"),
        "symlink out": ((symlink, None), "link"),
        "hard link out": ((hardlink, None), "link"),
        "device file": ((device, None), "special file"),
        "fifo": ((fifo, None), "special file"),
        "another crawl": (
            file_member(f"{SOURCE}/20210101_000000/x.json", b"{}"),
            "outside the crawl|belongs to crawl 20210101_000000, not 20200902_052458",
        ),
        "another source": (file_member(f"mexico/{VERSION}/x.json", b"{}"), "not inside a crawl|outside the crawl"),
        "a file above the crawl": (file_member("home/evil.txt", b"evil"), "not inside a crawl|outside the crawl"),
    }


HOSTILE = [
    "absolute path outside",
    "dot-dot",
    "symlink out",
    "hard link out",
    "device file",
    "fifo",
    "another crawl",
    "another source",
    "a file above the crawl",
]


@pytest.mark.parametrize("first", [False, True], ids=["after the crawl", "before the crawl"])
@pytest.mark.parametrize("label", HOSTILE)
def test_a_hostile_archive_is_refused_naming_the_member_and_nothing_lands_outside(
    client, bucket, tmp_path, label, first
):
    outside = tmp_path / "outside"
    (member, why) = hostile_members(outside)[label]
    members = [member, *GOOD] if first else [*GOOD, member]
    put_month(
        client,
        bucket,
        "scotland/2020/09/",
        data=lz4_tar(members),
        metadata={"bytes": 14, "checksum": "0" * 32, "data_version": VERSION},
    )
    target = tmp_path / "target"
    target.mkdir()
    before = everything_under(tmp_path) - everything_under(target)

    with pytest.raises(RestoreError, match="refused archive member") as raised:
        restore(client, bucket, SOURCE, 2020, 9, str(target))

    assert repr(member[0].name) in str(raised.value)
    assert re.search(why, str(raised.value))
    assert not outside.exists()
    assert everything_under(tmp_path) - everything_under(target) == before
    # Nothing is left of the refused archive: no crawl directory, no working directory.
    assert list(target.iterdir()) == []


def test_a_symbolic_link_in_the_target_does_not_lead_the_restore_outside(client, bucket, tmp_path):
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / SOURCE).symlink_to(outside)  # placed by someone else, pointing out of the target
    with pytest.raises(RestoreError, match=f"a symbolic link leads it outside {target}"):
        restore(client, bucket, SOURCE, 2020, 9, str(target))
    assert list(outside.iterdir()) == []


def test_a_checksum_mismatch_fails_and_leaves_the_files_for_inspection(client, bucket, tmp_path):
    archive(client, bucket, tmp_path, {"a.json": b"{}", "b.json": b"[]"})
    metadata = read_metadata(client, bucket)
    right = metadata["checksum"]
    metadata["checksum"] = "f" * 32
    put_month(client, bucket, "scotland/2020/09/", metadata=metadata)
    target = tmp_path / "target"

    with pytest.raises(RestoreError, match=f"checksum {right}, the metadata says f{{32}}") as raised:
        restore(client, bucket, SOURCE, 2020, 9, str(target))

    incomplete = target / SOURCE / f"{VERSION}.incomplete"
    assert f"left in {incomplete}" in str(raised.value)
    assert sorted(os.listdir(incomplete)) == ["a.json", "b.json"]
    assert not (target / SOURCE / VERSION).exists()
    assert not (target / SOURCE / f"{VERSION}.scrapy.log").exists()

    # Once the metadata is right again, the next restore starts over and succeeds.
    metadata["checksum"] = right
    put_month(client, bucket, "scotland/2020/09/", metadata=metadata)
    restore(client, bucket, SOURCE, 2020, 9, str(target))
    assert sorted(os.listdir(target / SOURCE)) == [VERSION, f"{VERSION}.scrapy.log"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("bytes", 1000, "4 bytes, the metadata says 1000"), ("data_files", 7, "2 files, the metadata says 7")],
)
def test_bytes_or_files_that_differ_from_the_metadata_fail_the_restore(
    client, bucket, tmp_path, field, value, message
):
    archive(client, bucket, tmp_path, {"a.json": b"{}", "b.json": b"[]"})
    metadata = read_metadata(client, bucket)
    metadata[field] = value
    put_month(client, bucket, "scotland/2020/09/", metadata=metadata)
    with pytest.raises(RestoreError, match=message):
        restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "target"))
    assert not (tmp_path / "target" / SOURCE / VERSION).exists()


def test_a_damaged_archive_fails_as_unreadable(client, bucket, tmp_path):
    archive(client, bucket, tmp_path, {"a.json": os.urandom(5000)})
    data = bytearray(client.get_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read())
    data[len(data) // 2] ^= 0xFF
    put_month(client, bucket, "scotland/2020/09/", data=bytes(data), data_name="data.tar.zst")
    with pytest.raises(RestoreError, match="data.tar.zst is unreadable"):
        restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "target"))
    assert not (tmp_path / "target").exists()  # what was read before the damage is removed, and the target


@pytest.mark.parametrize("damage", ["a flipped byte", "truncated"])
def test_a_damaged_or_truncated_lz4_archive_of_the_older_tools_fails_as_unreadable(client, bucket, tmp_path, damage):
    crawl_files = write_tree(tmp_path / "crawl", {"a.json": os.urandom(5000)})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        add_like_tarfile(tar, str(crawl_files), f"{SOURCE}/{VERSION}")
    data = bytearray(lz4.frame.compress(buffer.getvalue(), block_checksum=True))
    if damage == "truncated":
        del data[-20:]
    else:
        data[len(data) // 2] ^= 0xFF
    put_month(client, bucket, "scotland/2020/09/", data=bytes(data), metadata=metadata_2021(crawl_files))
    with pytest.raises(RestoreError, match="data.tar.lz4 is unreadable"):
        restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "target"))
    assert not (tmp_path / "target").exists()


def test_a_failed_restore_removes_only_what_it_created(client, bucket, tmp_path):
    put_month(client, bucket, "scotland/2020/10/", metadata={"bytes": 1, "checksum": "0" * 32})
    target = tmp_path / "existing"
    (target / "other").mkdir(parents=True)
    with pytest.raises(RestoreError, match="data.tar.lz4 is missing"):
        restore(client, bucket, SOURCE, 2020, 10, str(target))
    assert sorted(os.listdir(target)) == ["other"]

    deep = tmp_path / "new" / "deeper" / "target"
    with pytest.raises(RestoreError, match="data.tar.lz4 is missing"):
        restore(client, bucket, SOURCE, 2020, 10, str(deep))
    assert sorted(os.listdir(tmp_path)) == ["existing"]


def test_a_target_that_is_a_file_is_refused(client, bucket, tmp_path):
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    target = tmp_path / "a-file"
    target.write_bytes(b"mine")
    with pytest.raises(RestoreError, match=f"the target {target} is a file, not a directory"):
        restore(client, bucket, SOURCE, 2020, 9, str(target))
    assert target.read_bytes() == b"mine"
    with pytest.raises(RestoreError, match="cannot create the target directory .*: choose another one"):
        restore(client, bucket, SOURCE, 2020, 9, str(target / "below"))


@pytest.mark.parametrize(
    "data", [b"not an LZ4 frame", lz4.frame.compress(b"not a tar" * 100)], ids=["not LZ4", "not tar"]
)
def test_an_object_that_is_not_an_archive_fails_as_unreadable(client, bucket, tmp_path, data):
    put_month(client, bucket, "scotland/2020/09/", data=data, metadata={"bytes": 1, "checksum": "0" * 32})
    with pytest.raises(RestoreError, match="data.tar.lz4 is unreadable"):
        restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "target"))
    assert not (tmp_path / "target").exists()  # created by the restore, removed with what it wrote


def test_a_truncated_archive_fails_as_unreadable(client, bucket, tmp_path):
    archive(client, bucket, tmp_path, {"a.json": os.urandom(5000)})
    data = client.get_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["Body"].read()
    put_month(client, bucket, "scotland/2020/09/", data=data[:-20], data_name="data.tar.zst")
    with pytest.raises(RestoreError, match="unreadable"):
        restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "target"))


@pytest.mark.parametrize("where", ["equal", "inside", "through a symbolic link"])
def test_a_target_in_a_forbidden_directory_is_refused_naming_both(client, bucket, tmp_path, where):
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    files_store = tmp_path / "files-store"
    files_store.mkdir()
    if where == "equal":
        target = files_store
    elif where == "inside":
        target = files_store / "restored"
    else:
        target = tmp_path / "alias"
        target.symlink_to(files_store)
    with pytest.raises(RestoreError, match="refusing to restore into") as raised:
        restore(client, bucket, SOURCE, 2020, 9, str(target), forbidden_directories=[str(files_store)])
    assert str(target) in str(raised.value)
    assert str(files_store) in str(raised.value)
    assert list(files_store.iterdir()) == []


def test_a_crawl_already_in_the_target_is_never_overwritten(client, bucket, tmp_path):
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    existing = write_tree(tmp_path / "target" / SOURCE / VERSION, {"a.json": b"mine"})
    with pytest.raises(RestoreError, match="already exists: refusing to overwrite it"):
        restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "target"))
    assert tree(existing) == {b"a.json": b"mine"}


def test_a_month_spelled_without_its_zero_is_found(client, bucket, tmp_path):
    before = archive(client, bucket, tmp_path, {"a.json": b"{}"})
    for name in ("data.tar.zst", "metadata.json", "scrapy.log"):
        client.copy_object(
            Bucket=bucket,
            Key=f"scotland/2020/9/{name}",
            CopySource={"Bucket": bucket, "Key": f"scotland/2020/09/{name}"},
        )
        client.delete_object(Bucket=bucket, Key=f"scotland/2020/09/{name}")
    result = restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "target"))
    assert result["archive"] == f"s3://{bucket}/scotland/2020/9/data.tar.zst"
    assert tree(result["directory"]) == before


def test_the_expected_data_version_must_be_the_months(client, bucket, tmp_path):
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    with pytest.raises(RestoreError, match="names crawl 20200902_052458, not 20200915_000000"):
        restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "target"), data_version="20200915_000000")
    assert not (tmp_path / "target").exists()


def test_missing_months_and_objects_are_named(client, bucket, tmp_path):
    with pytest.raises(RestoreError, match="no archive of scotland for 2020-09"):
        restore(client, bucket, SOURCE, 2020, 9, str(tmp_path / "target"))
    put_month(client, bucket, "scotland/2020/10/", metadata={"bytes": 1, "checksum": "0" * 32})
    with pytest.raises(RestoreError, match="scotland/2020/10/data.tar.lz4 is missing"):
        restore(client, bucket, SOURCE, 2020, 10, str(tmp_path / "target"))
    put_month(client, bucket, "scotland/2020/11/", metadata=b"{not json")
    with pytest.raises(RestoreError, match="not valid JSON"):
        restore(client, bucket, SOURCE, 2020, 11, str(tmp_path / "target"))
    with pytest.raises(RestoreError, match="path separator"):
        restore(client, bucket, "../etc", 2020, 11, str(tmp_path / "target"))


def test_list_months_reports_every_month_and_its_problem(client, bucket, tmp_path):
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    compressed = client.head_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["ContentLength"]
    put_month(client, bucket, "scotland/2019/1/", data=b"x", metadata={"data_size": 5, "data_md5": "0" * 32})
    put_month(client, bucket, "scotland/2019/01/", data=b"xy", metadata={"bytes": 6, "checksum": "1" * 32})
    put_month(client, bucket, "scotland/2021/03/", metadata=b"[]")
    put_month(client, bucket, "scotland/2021/04/", data=b"orphan")
    put_month(
        client, bucket, "scotland_sample/2021/05/", data=b"not ours", metadata={"bytes": 1, "checksum": "2" * 32}
    )

    rows = list_months(client, bucket, SOURCE)

    assert rows[2].pop("archived_at").startswith(("20", "21"))  # written by the archiver, ISO 8601
    assert rows[1]["archived_at"] is None  # 2020 metadata says nothing of it
    assert [(row["prefix"], row["problem"]) for row in rows] == [
        ("scotland/2019/01/", None),
        ("scotland/2019/1/", "not restored: scotland/2019/01/ is the same month"),
        ("scotland/2020/09/", None),
        (
            "scotland/2021/03/",
            "metadata unreadable: scotland/2021/03/metadata.json is not a JSON object; data object missing",
        ),
        ("scotland/2021/04/", "metadata missing"),
    ]
    stored = rows[2].pop("stored")  # its objects by storage class, from the same listing
    size = stored["STANDARD"]["bytes"]  # data, metadata.json and log, all STANDARD on the test server
    assert stored == {"STANDARD": {"objects": 3, "bytes": size, "billable_bytes": size}} and size > compressed
    assert rows[2] == {
        "year": 2020,
        "month": 9,
        "prefix": "scotland/2020/09/",
        "data_version": VERSION,
        "bytes": 2,
        "files": 1,
        "data_object": "data.tar.zst",
        "compressed_bytes": compressed,
        "log": True,
        "generation": "2021",
        "reason": None,  # what its metadata.json says of why it was kept (this test's archive says nothing)
        "compared_with": None,
        "problem": None,
    }
    assert (rows[1]["generation"], rows[1]["bytes"], rows[1]["compressed_bytes"], rows[1]["log"]) == (
        "2020",
        5,
        1,
        False,
    )


# -- the restore DAG's restore directory ----------------------------------------------------------------------------

RESTORE_VARIABLE = "'kingfisher_archive_restore_directory'"


@pytest.fixture
def restore_root(tmp_path):
    root = tmp_path / "restore-root"
    root.mkdir()
    return root


@pytest.mark.parametrize(
    ("given", "relpath"),
    [("", "."), ("restored", "restored"), ("a/b", "a/b"), ("./a//b/", "a/b"), ("ABSOLUTE/inside", "inside")],
)
def test_the_dag_restores_under_its_restore_directory_relative_or_absolute(
    client, bucket, tmp_path, restore_root, given, relpath
):
    before = archive(client, bucket, tmp_path, {"a.json": b"{}"})
    given = given.replace("ABSOLUTE", str(restore_root))
    result = restore(client, bucket, SOURCE, 2020, 9, given, restore_directory=str(restore_root))
    expected = os.path.normpath(restore_root / relpath / SOURCE / VERSION)
    assert result["directory"] == expected
    assert tree(expected) == before
    assert os.path.isfile(expected + ".scrapy.log")


def test_a_restore_directory_reached_through_a_link_is_resolved_once(client, bucket, tmp_path, restore_root):
    # The operator's choice (the Variable): followed once; what lies below it is not.
    before = archive(client, bucket, tmp_path, {"a.json": b"{}"})
    alias = tmp_path / "alias"
    alias.symlink_to(restore_root)
    result = restore(client, bucket, SOURCE, 2020, 9, str(alias / "x"), restore_directory=str(alias))
    assert result["directory"] == str(restore_root / "x" / SOURCE / VERSION)
    assert tree(restore_root / "x" / SOURCE / VERSION) == before


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("..", "it holds '..'"),
        ("../outside", "it holds '..'"),
        ("a/../../outside", "it holds '..'"),
        ("a/..", "it holds '..'"),
        ("OUTSIDE", "is outside the Airflow Variable 'kingfisher_archive_restore_directory'"),
        ("OUTSIDE/restore-root", "is outside the Airflow Variable 'kingfisher_archive_restore_directory'"),
        ("/", "is outside the Airflow Variable 'kingfisher_archive_restore_directory'"),
    ],
)
def test_a_dag_target_outside_the_restore_directory_is_refused_naming_the_variable(
    client, bucket, tmp_path, restore_root, given, message
):
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    outside = tmp_path / "outside"
    outside.mkdir()
    given = given.replace("OUTSIDE", str(outside))
    before = everything_under(tmp_path)
    with pytest.raises(RestoreError, match=re.escape(message)) as raised:
        restore(client, bucket, SOURCE, 2020, 9, given, restore_directory=str(restore_root))
    assert RESTORE_VARIABLE in str(raised.value)
    assert str(restore_root) in str(raised.value)
    assert os.path.normpath(given) in str(raised.value) or given in str(raised.value)
    assert everything_under(tmp_path) == before


@pytest.mark.parametrize("where", ["the target", "a folder above the target", "the source folder", "the crawl"])
@pytest.mark.parametrize("leads", ["outside", "inside"])
def test_a_dag_restore_never_goes_through_a_symbolic_link(client, bucket, tmp_path, restore_root, where, leads):
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    elsewhere = tmp_path / "outside" if leads == "outside" else restore_root / "elsewhere"
    elsewhere.mkdir()
    link = {
        "the target": restore_root / "target",
        "a folder above the target": restore_root / "above",
        "the source folder": restore_root / "target" / SOURCE,
        "the crawl": restore_root / "target" / SOURCE / VERSION,
    }[where]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere)
    given = "above/target" if where == "a folder above the target" else "target"
    before = everything_under(tmp_path)
    with pytest.raises(RestoreError, match=f"{re.escape(str(link))} is a symbolic link") as raised:
        restore(client, bucket, SOURCE, 2020, 9, given, restore_directory=str(restore_root))
    assert RESTORE_VARIABLE in str(raised.value)
    assert everything_under(tmp_path) == before
    assert list(elsewhere.iterdir()) == []


def test_a_dag_restore_never_writes_through_a_link_left_where_its_working_files_go(
    client, bucket, tmp_path, restore_root
):
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    victim = tmp_path / "victim"
    victim.write_bytes(b"mine")
    (restore_root / SOURCE).mkdir()
    for name in (f"{VERSION}.incomplete", f"{VERSION}.scrapy.log.incomplete"):
        (restore_root / SOURCE / name).symlink_to(victim)
        with pytest.raises(RestoreError, match=f"{name} is a symbolic link"):
            restore(client, bucket, SOURCE, 2020, 9, "", restore_directory=str(restore_root))
        (restore_root / SOURCE / name).unlink()
    assert victim.read_bytes() == b"mine"


def test_a_dag_restore_never_overwrites_a_crawl_or_a_log_already_there(client, bucket, tmp_path, restore_root):
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    existing = write_tree(restore_root / "t" / SOURCE / VERSION, {"a.json": b"mine"})
    with pytest.raises(RestoreError, match=f"{re.escape(existing)} already exists: refusing to overwrite it"):
        restore(client, bucket, SOURCE, 2020, 9, "t", restore_directory=str(restore_root))
    assert tree(existing) == {b"a.json": b"mine"}
    log = restore_root / "u" / SOURCE / f"{VERSION}.scrapy.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"my log")
    with pytest.raises(RestoreError, match=f"{re.escape(str(log))} already exists"):
        restore(client, bucket, SOURCE, 2020, 9, "u", restore_directory=str(restore_root))
    assert log.read_bytes() == b"my log"
    assert sorted(os.listdir(log.parent)) == [log.name]


def test_a_dag_restore_directory_inside_kingfisher_collects_is_still_refused(client, bucket, tmp_path):
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    files_store = tmp_path / "files-store"
    (files_store / "restored").mkdir(parents=True)
    with pytest.raises(RestoreError, match="refusing to restore into .*where restored files would be archived"):
        restore(
            client,
            bucket,
            SOURCE,
            2020,
            9,
            "",
            restore_directory=str(files_store / "restored"),
            forbidden_directories=[str(files_store)],
        )
    assert list((files_store / "restored").iterdir()) == []


@pytest.mark.parametrize("name", [f"{VERSION}.incomplete", f"{VERSION}.scrapy.log.incomplete"])
def test_the_command_line_restore_never_writes_through_a_link_left_as_a_working_file(client, bucket, tmp_path, name):
    # Without a restore directory (a person's own account): a link leading out of the target is refused, not followed.
    archive(client, bucket, tmp_path, {"a.json": b"{}"})
    victim = tmp_path / "victim"
    victim.write_bytes(b"mine")
    target = tmp_path / "target"
    (target / SOURCE).mkdir(parents=True)
    (target / SOURCE / name).symlink_to(victim)
    with pytest.raises(
        RestoreError, match=f"{re.escape(name)}: a symbolic link leads it outside {re.escape(str(target))}"
    ):
        restore(client, bucket, SOURCE, 2020, 9, str(target))
    assert victim.read_bytes() == b"mine"
    assert sorted(os.listdir(target / SOURCE)) == [name]


# -- the Variable ----------------------------------------------------------------------------------------------------


def test_the_restore_directory_variable_unset_or_wrong_is_named_with_how_to_set_it(tmp_path):
    from kingfisher_archive import settings

    for unset in (None, "", "  "):
        with pytest.raises(settings.ConfigurationError) as raised:
            settings.restore_directory(lambda name, unset=unset: unset)
        message = str(raised.value)
        assert f"Airflow Variable {RESTORE_VARIABLE} is not set" in message
        assert "airflow variables set kingfisher_archive_restore_directory" in message
        assert "AIRFLOW_VAR_KINGFISHER_ARCHIVE_RESTORE_DIRECTORY" in message
    with pytest.raises(settings.ConfigurationError, match="'relative/path', not an absolute path"):
        settings.restore_directory(lambda name: "relative/path")
    missing = str(tmp_path / "missing")
    with pytest.raises(settings.ConfigurationError, match=f"names {re.escape(repr(missing))}, which is not a dir"):
        settings.restore_directory(lambda name: missing)
    assert settings.restore_directory({settings.RESTORE_DIRECTORY: f"{tmp_path}/"}.get) == str(tmp_path)
