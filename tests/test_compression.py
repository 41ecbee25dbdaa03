"""The codecs: the zstd stream and the LZ4 frame, checked against the zstd and lz4 commands; every reader tells them
apart by their first bytes, and a truncated or damaged zstd archive raises a format error."""

import io
import os
import shutil
import subprocess
import tarfile

import lz4.frame
import pytest
import zstandard

from kingfisher_archive import archive_format, compression


def test_the_lz4_frame_is_one_standard_frame_with_independent_blocks(tmp_path):
    import io as _io

    data = os.urandom(3 * compression.LZ4_BLOCK_SIZE) + b"{}" * compression.LZ4_BLOCK_SIZE + b"tail"
    sink = _io.BytesIO()
    writer = compression.LZ4Writer(sink)
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


def _zstd_archive(data: bytes, level: int = 3) -> bytes:
    sink = io.BytesIO()
    writer = compression.ZstdWriter(sink, level=level)
    for i in range(0, len(data), 777_777):
        writer.write(data[i : i + 777_777])
    writer.close()
    return sink.getvalue()


def _read_archive(data: bytes) -> dict[str, bytes]:
    """Every member's bytes, read as every reader of the bucket reads (the end of the stream checked too)."""
    found = {}
    with archive_format.open_archive(io.BytesIO(data)) as (tar, stream):
        for member in tar:
            found[member.name] = tar.extractfile(member).read() if member.isfile() else None
        compression.drain(stream)
    return found


@pytest.fixture(scope="module")
def a_tar():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(30):
            content = b'{"ocid": "ocds-%d", "amount": %d}\n' % (i, i * 7919) * 3000 + os.urandom(300)
            info = tarfile.TarInfo(f"scotland/20200902_052458/{i:03X}.json")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_the_zstd_stream_is_standard_with_content_checksums_and_read_by_zstd(a_tar):
    data = a_tar + os.urandom(3 * compression.ZSTD_BUFFER_SIZE)  # several buffers, some incompressible
    archive = _zstd_archive(data)
    assert archive[:4] == compression.ZSTD_MAGIC
    frame = zstandard.get_frame_parameters(archive)
    assert frame.has_checksum
    assert subprocess.run(["zstd", "-dc"], input=archive, capture_output=True, check=True).stdout == data
    assert subprocess.run(["zstd", "-t"], input=archive, capture_output=True).returncode == 0


def test_both_codecs_are_read_by_their_first_bytes_and_zstd_across_frames(a_tar):
    lz4_sink = io.BytesIO()
    writer = compression.LZ4Writer(lz4_sink)
    writer.write(a_tar)
    writer.close()
    expected = _read_archive(_zstd_archive(a_tar))
    assert len(expected) == 30
    assert _read_archive(lz4_sink.getvalue()) == expected
    # Frames one after another (what `zstd` writes of concatenated input, or pzstd), and a skippable frame between.
    half = len(a_tar) // 2
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"notes"
    framed = _zstd_archive(a_tar[:half], level=1) + skippable + _zstd_archive(a_tar[half:], level=1)
    assert _read_archive(framed) == expected
    with pytest.raises(archive_format.FORMAT_ERRORS, match="neither LZ4 .* nor zstd"):
        _read_archive(b"PK\x03\x04 a zip file")


@pytest.mark.parametrize("cut", [4, 9, 1000, "half", -5, -1])
def test_a_truncated_zstd_archive_raises_a_format_error_naming_zstd(a_tar, cut):
    archive = _zstd_archive(a_tar)
    end = len(archive) // 2 if cut == "half" else cut
    with pytest.raises(archive_format.FORMAT_ERRORS, match="(?i)zstd|tar|unexpected end"):
        _read_archive(archive[:end])


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9, -3])
def test_a_flipped_byte_in_a_zstd_archive_raises_a_format_error(a_tar, where):
    archive = bytearray(_zstd_archive(a_tar))
    archive[int(len(archive) * where) if where > 0 else where] ^= 0x20
    with pytest.raises(archive_format.FORMAT_ERRORS):
        _read_archive(bytes(archive))


def test_the_zstd_level_is_checked():
    with pytest.raises(ValueError, match="zstd level 20 is not one of 1-19"):
        compression.ZstdWriter(io.BytesIO(), level=20)
