"""The archive format: the tar stream and the LZ4 frame, checked against tarfile and the lz4 command."""

import io
import os
import shutil
import subprocess
import tarfile

import lz4.frame
import pytest

from kingfisher_archive import archive_format, crawl
from scripts.demo_kit.kingfisher_host import FILES, make_crawl


def test_the_lz4_frame_is_one_standard_frame_with_independent_blocks(tmp_path):
    import io as _io

    data = os.urandom(3 * archive_format.LZ4_BLOCK_SIZE) + b"{}" * archive_format.LZ4_BLOCK_SIZE + b"tail"
    sink = _io.BytesIO()
    writer = archive_format.LZ4Writer(sink)
    for i in range(0, len(data), 777_777):
        writer.write(data[i : i + 777_777])
    writer.close()
    frame = sink.getvalue()
    assert frame[:4] == b"\x04\x22\x4d\x18"
    assert lz4.frame.decompress(frame) == data  # a reader that stops after one frame still gets everything
    info = lz4.frame.get_frame_info(frame)
    assert info["block_linked"] is False
    assert info["block_checksum"] is True
    # One flipped byte in the first block (incompressible, so stored as is) is caught by its block checksum.
    damaged = bytearray(frame)
    damaged[1000] ^= 0xFF
    with pytest.raises(RuntimeError, match="(?i)checksum"):
        lz4.frame.decompress(bytes(damaged))
    if shutil.which("lz4"):
        assert subprocess.run(["lz4", "-d", "-c"], input=frame, capture_output=True).stdout == data
        result = subprocess.run(["lz4", "-d", "-c"], input=bytes(damaged), capture_output=True)
        assert result.returncode != 0


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

    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8") as tar:
        for entry in crawl.walk(directory):
            name = f"scotland/20200902_052458/{entry.relpath}" if entry.relpath else "scotland/20200902_052458"
            info = archive_format._tarinfo(entry, name)
            if entry.is_dir:
                tar.addfile(info)
            else:
                with open(entry.path, "rb") as f:
                    tar.addfile(info, f)
    assert sink.getvalue() == expected.getvalue()
    assert len(sink.getvalue()) % tarfile.RECORDSIZE == 0
    assert result.bytes_read == crawl.summarise(directory).bytes
    assert result.checksum == crawl.checksum(directory)


def test_a_file_that_shrinks_while_it_is_read_stops_the_tar(tmp_path):
    directory = make_crawl(tmp_path / "data", {"a.json": b"1" * 1000, "b.json": b"2" * 1000})

    class TruncatingSink(io.BytesIO):
        def write(self, data):
            # After a.json's header, b.json loses half its bytes, as if Kingfisher Collect rewrote it.
            if b"a.json" in bytes(data[:100]):
                os.truncate(os.path.join(directory, "b.json"), 500)
            return super().write(data)

    with pytest.raises(crawl.CrawlChangedError, match="'b.json' changed while it was being read"):
        archive_format.write_tar(directory, "scotland/20200902_052458", TruncatingSink())


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
