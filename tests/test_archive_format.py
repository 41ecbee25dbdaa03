"""The archive format: the tar stream, checked against tarfile, and every archive (the tar in zstd and in LZ4) read
back by the tar, zstd and lz4 commands. The codecs alone are tests/test_compression.py's."""

import hashlib
import io
import os
import random
import subprocess
import tarfile
import tempfile

import lz4.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kingfisher_archive import archive_format, compression, crawl
from scripts.demo_kit.kingfisher_host import FILES, make_crawl, tree


def test_the_tar_stream_is_byte_for_byte_what_tarfile_writes(tmp_path):
    # write_tar replaces TarFile.addfile for speed; a restore (or GNU tar) must not be able to tell the difference.
    files = {
        **FILES,
        "0AB/" + "long-name-" * 15 + ".json": b"GNU long name",  # over 100 bytes: a GNU longname header
        "exactly-one-block.json": b"x" * 512,
        "FFF/several-reads.json": os.urandom(archive_format.READ_SIZE * 2 + 3),
    }
    directory = make_crawl(tmp_path / "data", files)
    sink = io.BytesIO()
    result = archive_format.write_tar(directory, "scotland/20200902_052458", sink)

    assert sink.getvalue() == _tarfile_bytes(directory, "scotland/20200902_052458")
    assert len(sink.getvalue()) % tarfile.RECORDSIZE == 0
    assert result.bytes_read == crawl.measure(directory).bytes
    assert result.checksum == crawl.checksum(directory)


def test_reader_threads_keep_the_tar_identical_to_tarfile_and_read_each_byte_once(tmp_path, monkeypatch):
    # More files than the readers hold ahead, in folders and at the crawl's root, small ones (read whole by reader
    # threads) and large ones (read by the tar thread), sizes either side of the limit between them.
    small = archive_format.SMALL_FILE
    files = {f"{i % 5:03X}/{i}.json": os.urandom(i % 700) for i in range(archive_format.READ_BATCH * 12)}
    files.update({f"root-{i}.json": b"r" * i for i in range(40)})
    files.update({"00A/just-small.bin": os.urandom(small), "00A/just-large.bin": os.urandom(small + 1)})
    files.update({"00B/large.bin": os.urandom(small + archive_format.READ_SIZE + 7), "00B/empty.json": b""})
    directory = make_crawl(tmp_path / "data", files)
    read, readv, counted = os.read, os.readv, []

    def counting_read(fd, n):
        data = read(fd, n)
        counted.append(len(data))
        return data

    def counting_readv(fd, buffers):
        n = readv(fd, buffers)
        counted.append(n)
        return n

    monkeypatch.setattr(os, "read", counting_read)
    monkeypatch.setattr(os, "readv", counting_readv)
    for threads in (1, archive_format.READ_THREADS):
        counted.clear()
        sink = io.BytesIO()
        result = archive_format.write_tar(directory, "scotland/20200902_052458", sink, threads=threads)
        assert sink.getvalue() == _tarfile_bytes(directory, "scotland/20200902_052458")
        total = sum(len(content) for content in files.values())
        assert sum(counted) == result.bytes_read == total  # every byte read from disk once, none twice
        assert result.summary == crawl.measure(directory)


def test_a_file_that_shrinks_while_it_is_read_stops_the_tar(tmp_path):
    big = archive_format.SMALL_FILE + 3 * archive_format.READ_SIZE  # read by the tar thread, a chunk at a time
    directory = make_crawl(tmp_path / "data", {"a.json": b"1" * 1000, "b.json": b"2" * big})

    class TruncatingSink(io.BytesIO):
        seen_header = False

        def write(self, data):
            # After b.json's header and its first chunk of bytes, b.json loses most of them, as if rewritten.
            if self.seen_header:
                os.truncate(os.path.join(directory, "b.json"), 500)
            self.seen_header = self.seen_header or b"b.json" in bytes(data[:100])
            return super().write(data)

    with pytest.raises(crawl.CrawlChangedError, match="'b.json' changed while it was being read"):
        archive_format.write_tar(directory, "scotland/20200902_052458", TruncatingSink())


def test_a_small_file_that_grows_while_a_reader_thread_reads_it_stops_the_tar(tmp_path, monkeypatch):
    directory = make_crawl(tmp_path / "data", {"a.json": b"1" * 1000, "b.json": b"2" * 1000})
    read, calls = os.read, []

    def appending_read(fd, n):  # b.json (the second file read) gets a line appended after it was stat'ed
        calls.append(n)
        if len(calls) == 2:
            with open(os.path.join(directory, "b.json"), "ab") as f:
                f.write(b"another release\n")
        return read(fd, n)

    monkeypatch.setattr(os, "read", appending_read)
    with pytest.raises(crawl.CrawlChangedError, match="'b.json' changed while it was being read"):
        archive_format.write_tar(directory, "scotland/20200902_052458", io.BytesIO())


@pytest.mark.parametrize(
    ("relpath", "is_dir", "size", "mtime"),
    [
        ("000/a.json", False, 0, 1_600_000_000),
        ("000", True, 0, 1_600_000_000),
        ("x" * 100, False, 5, 1_600_000_000),  # 100 bytes with the prefix below: over the limit, a long-name record
        ("caf\udce9.json", False, 1, 0),  # a name that is not UTF-8, as os.scandir decodes it
        ("big.zip", False, 8**11, 1_600_000_000),  # 8 GiB: too big for octal, base-256 as GNU tar writes it
        ("old.json", False, 1, -1),  # before 1970
        ("future.json", False, 1, 8**11),
    ],
)
def test_each_tar_header_is_the_one_tarfile_makes(relpath, is_dir, size, mtime):
    entry = crawl.Entry(relpath, f"/nowhere/{relpath}", is_dir, size, mtime * 1_000_000_000 + 999, 0o100644)
    name = f"scotland/20200902_052458/{relpath}"
    expected = archive_format._tarinfo(entry, name).tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    assert archive_format._header(entry, name) == expected


# -- every archive, read back by stock decoders ------------------------------------------------------------------
#
# A defect in the tar or LZ4 writer would pass every ETag check (the bucket holds exactly the bytes we sent) and be
# followed by rmtree. So random crawls are written and read back by what a person restoring by hand would use.

_SIZES = st.one_of(
    st.sampled_from([0, 1, 511, 512, 513, 1023, 1024, 10_239, 10_240, 10_241]),
    st.sampled_from([archive_format.READ_SIZE - 1, archive_format.READ_SIZE + 1, compression.LZ4_BLOCK_SIZE + 7]),
    st.integers(0, 5000),
)
_TEXT_NAME = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=60
)
_BYTES_NAME = st.binary(min_size=1, max_size=30).filter(lambda b: b"/" not in b and b"\x00" not in b).map(os.fsdecode)
_LONG_NAME = st.integers(101, 250).map(lambda n: "long-" + "n" * (n - 5))
_NAME = st.one_of(_TEXT_NAME, _BYTES_NAME, _LONG_NAME).filter(
    lambda name: name not in (".", "..") and len(os.fsencode(name)) <= 255
)
_FILE = st.tuples(_SIZES, st.integers(0, 2**32)).map(lambda spec: random.Random(spec[1]).randbytes(spec[0]))
_TREE = st.recursive(
    st.dictionaries(_NAME, _FILE, max_size=4),
    lambda children: st.dictionaries(_NAME, st.one_of(_FILE, children), max_size=3),
    max_leaves=12,
)


def _write_tree(directory: str, layout: dict) -> None:
    os.makedirs(directory, exist_ok=True)
    for name, content in layout.items():
        path = os.path.join(directory, name)
        if isinstance(content, dict):
            _write_tree(path, content)
        else:
            with open(path, "wb") as f:
                f.write(content)


def _write_with_tarfile(directory: str, arcname: str, fileobj) -> None:
    """What Python's tarfile writes for the crawl at ``directory``, in the order our walk gives."""
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8") as tar:
        for entry in crawl.walk(directory):
            name = f"{arcname}/{entry.relpath}" if entry.relpath else arcname
            info = archive_format._tarinfo(entry, name)
            if entry.is_dir:
                tar.addfile(info)
            else:
                with open(entry.path, "rb") as f:
                    tar.addfile(info, f)


def _tarfile_bytes(directory: str, arcname: str) -> bytes:
    expected = io.BytesIO()
    _write_with_tarfile(directory, arcname, expected)
    return expected.getvalue()


@settings(max_examples=40)
@given(layout=_TREE)
def test_every_archive_is_what_tarfile_writes_and_stock_decoders_read_it_back(layout):
    arcname = "scotland/20200902_052458"
    with tempfile.TemporaryDirectory() as scratch:
        directory = os.path.join(scratch, "data", arcname)
        _write_tree(directory, layout)
        plain = io.BytesIO()
        result = archive_format.write_tar(directory, arcname, plain)
        assert plain.getvalue() == _tarfile_bytes(directory, arcname)
        assert result.checksum == crawl.checksum(directory)

        compressed = io.BytesIO()
        writer = compression.ZstdWriter(compressed, level=1)
        archive_format.write_tar(directory, arcname, writer)
        writer.close()
        stream_bytes = compressed.getvalue()
        assert subprocess.run(["zstd", "-dc"], input=stream_bytes, capture_output=True, check=True).stdout == (
            plain.getvalue()
        )
        with archive_format.open_archive(io.BytesIO(stream_bytes)) as (tar, stream):
            assert {member.name for member in tar} == {
                member.name for member in tarfile.open(fileobj=io.BytesIO(plain.getvalue()))
            }
            compression.drain(stream)

        compressed = io.BytesIO()
        writer = compression.LZ4Writer(compressed)
        archive_format.write_tar(directory, arcname, writer)
        writer.close()
        frame = compressed.getvalue()
        assert lz4.frame.decompress(frame) == plain.getvalue()
        with lz4.frame.open(io.BytesIO(frame)) as stream:
            assert stream.read() == plain.getvalue()
        assert subprocess.run(["lz4", "-d", "-c"], input=frame, capture_output=True, check=True).stdout == (
            plain.getvalue()
        )

        # What a person restoring by hand gets (`unlz4 | tar x`), and what the package's own reader accepts.
        restored = os.path.join(scratch, "restored")
        os.makedirs(restored)
        subprocess.run(["tar", "xf", "-", "-C", restored], input=plain.getvalue(), check=True)
        assert tree(os.path.join(restored, arcname)) == tree(directory)
        members = archive_format.CrawlMembers("scotland", "20200902_052458")
        with archive_format.open_archive(io.BytesIO(frame)) as (tar, stream):
            found = {members.relpath(member) for member in tar}
            compression.drain(stream)
        assert found == {entry.relpath for entry in crawl.walk(directory)}


class _Digest:
    """A sink that keeps only a digest of what it is given, so 8 GiB of tar need no memory."""

    def __init__(self) -> None:
        self.hash, self.size = hashlib.sha256(), 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


@pytest.mark.slow
def test_a_file_over_8_gib_is_archived_as_tarfile_archives_it(tmp_path):
    """Sizes from 8 GiB on do not fit a tar header's octal field: GNU tar's base-256, as tarfile writes it."""
    directory = tmp_path / "data" / "scotland" / "20200902_052458"
    directory.mkdir(parents=True)
    with open(directory / "huge.bin", "wb") as f:  # sparse: 8 GiB of holes and a few real bytes at the end
        f.truncate(8**11 + 600)
        f.seek(8**11 + 100)
        f.write(b"the end of a very large file")
    ours, theirs = _Digest(), _Digest()
    archive_format.write_tar(str(directory), "scotland/20200902_052458", ours)
    _write_with_tarfile(str(directory), "scotland/20200902_052458", theirs)
    assert (ours.size, ours.hash.hexdigest()) == (theirs.size, theirs.hash.hexdigest())
    assert ours.size > 8**11
