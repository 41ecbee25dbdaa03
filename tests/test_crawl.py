"""A crawl on disk: the 2021 checksum, counts, fingerprints and what is refused."""

import os

import pytest
import xxhash

from kingfisher_archive import crawl


def make(root, files):
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return str(root)


def test_checksum_of_an_empty_directory_is_the_digest_of_nothing(tmp_path):
    # Derived by hand: no files, so XXH3-128 was fed zero bytes.
    assert crawl.checksum(str(tmp_path)) == xxhash.xxh3_128(b"").hexdigest()
    assert crawl.checksum(str(tmp_path)) == "99aa06d3014798d86001c324468d497f"


def test_checksum_feeds_root_files_first_then_sorted_subfolders_depth_first(tmp_path):
    directory = make(
        tmp_path,
        {
            "zz.json": b"1",  # a root file sorts after the folder names but still comes first
            "b.json": b"2",
            "aa/c.json": b"3",
            "aa/bb/d.json": b"4",
            "aa/a.json": b"5",
            "ab/e.json": b"6",
        },
    )
    # os.walk top-down, sorted: root files b, zz; then aa's files a, c; then aa/bb's d; then ab's e.
    assert crawl.checksum(directory) == xxhash.xxh3_128(b"21" + b"53" + b"4" + b"6").hexdigest()


def test_checksum_has_no_separators_between_files(tmp_path):
    one = make(tmp_path / "one", {"a": b"ab", "b": b"c"})
    two = make(tmp_path / "two", {"a": b"a", "b": b"bc"})
    assert crawl.checksum(one) == crawl.checksum(two)  # the 2021 tool's known property, kept for compatibility


def test_checksum_reads_large_files_in_chunks(tmp_path):
    data = os.urandom(3 * crawl.CHUNK_SIZE + 17)
    directory = make(tmp_path, {"big.json": data})
    assert crawl.checksum(directory) == xxhash.xxh3_128(data).hexdigest()


def test_summary_counts_files_bytes_and_data_files(tmp_path):
    directory = make(tmp_path, {"scrapyd-job.txt": b"abc", "000/a.json": b"12345", "001/b.json": b"1"})
    summary = crawl.measure(directory)
    assert (summary.files, summary.data_files, summary.bytes) == (3, 2, 9)


def test_fingerprint_changes_when_a_file_is_added_removed_or_rewritten(tmp_path):
    directory = make(tmp_path, {"a.json": b"one", "b.json": b"two"})
    before = crawl.measure(directory).fingerprint
    assert crawl.measure(directory).fingerprint == before

    (tmp_path / "c.json").write_bytes(b"")
    added = crawl.measure(directory).fingerprint
    assert added != before
    (tmp_path / "c.json").unlink()
    assert crawl.measure(directory).fingerprint == before

    os.utime(tmp_path / "a.json", ns=(1, 1))
    assert crawl.measure(directory).fingerprint != before


@pytest.mark.parametrize(
    ("source_id", "problem"),
    [
        ("../x", "path separator"),
        ("a/b", "path separator"),
        (".", "not a name"),
        ("..", "not a name"),
        ("/etc", "path separator"),
        ("a\x00b", "NUL byte"),
        ("x" * 300, "longer than"),
        ("", "empty"),
    ],
)
def test_unsafe_source_ids_are_refused_with_the_reason(source_id, problem):
    assert problem in crawl.source_id_problem(source_id)
    with pytest.raises(crawl.UnsafeCrawlError, match=problem):
        crawl.crawl_directory("/data", source_id, "20200101_000000")


def test_a_plain_source_id_is_fine():
    assert crawl.source_id_problem("scotland_public_contracts") is None
    assert crawl.crawl_directory("/data", "scotland", "20200101_000000") == "/data/scotland/20200101_000000"


def test_a_bad_data_version_is_named():
    with pytest.raises(ValueError, match="'2020-01-01' is not a data version"):
        crawl.crawl_directory("/data", "scotland", "2020-01-01")


def test_symlinks_inside_a_crawl_are_refused_and_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not ours")
    directory = make(tmp_path / "crawl", {"a.json": b"1"})
    os.symlink(outside / "secret", tmp_path / "crawl" / "link.json")
    with pytest.raises(crawl.UnsafeCrawlError, match="'link.json' in the crawl is a symbolic link"):
        crawl.measure(directory)


def test_a_crawl_directory_that_is_a_symlink_is_refused(tmp_path):
    make(tmp_path / "real", {"a.json": b"1"})
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(crawl.UnsafeCrawlError, match="is a symbolic link"):
        crawl.measure(str(tmp_path / "link"))


def test_a_fifo_inside_a_crawl_is_refused(tmp_path):
    directory = make(tmp_path, {"a.json": b"1"})
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(crawl.UnsafeCrawlError, match="not a regular file or directory"):
        crawl.measure(directory)


def test_delete_removes_the_crawl_but_not_what_links_point_to(tmp_path):
    data = tmp_path / "data"
    make(data / "scotland" / "20200101_000000", {"a.json": b"1"})
    target = tmp_path / "keep.txt"
    target.write_bytes(b"keep")
    os.symlink(target, data / "scotland" / "20200101_000000" / "link")
    assert crawl.delete(str(data), "scotland", "20200101_000000") is True
    assert not (data / "scotland" / "20200101_000000").exists()
    assert target.read_bytes() == b"keep"
    assert crawl.delete(str(data), "scotland", "20200101_000000") is False


def test_delete_removes_every_file_and_folder_of_a_large_crawl_from_several_threads(tmp_path):
    data = tmp_path / "data"
    directory = data / "scotland" / "20200101_000000"
    files = {f"{i % 7:03X}/{i}.json": b"x" * (i % 3) for i in range(3 * crawl.DELETE_BATCH + 5)}
    files.update({"flat-" + str(i): b"1" for i in range(crawl.DELETE_BATCH + 1)})  # more than a batch in one folder
    files["a/b/c/d/deep.json"] = b"deep"
    make(directory, files)
    (directory / "empty" / "nested-empty").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept.json").write_bytes(b"kept")
    os.symlink(outside, directory / "a" / "link-to-a-folder")
    os.symlink(outside / "kept.json", directory / "000" / "link-to-a-file")

    assert crawl.delete(str(data), "scotland", "20200101_000000") is True

    assert not directory.exists()
    assert os.listdir(data / "scotland") == []
    assert (outside / "kept.json").read_bytes() == b"kept"  # links were removed, never followed


def test_delete_refuses_a_crawl_directory_that_is_a_link(tmp_path):
    data = tmp_path / "data"
    real = make(tmp_path / "elsewhere", {"a.json": b"1"})
    (data / "scotland").mkdir(parents=True)
    os.symlink(real, data / "scotland" / "20200101_000000")
    with pytest.raises(crawl.UnsafeCrawlError, match="not a directory"):
        crawl.delete(str(data), "scotland", "20200101_000000")
    assert (tmp_path / "elsewhere" / "a.json").read_bytes() == b"1"
