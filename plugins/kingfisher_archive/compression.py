"""The codecs of the archive format: the tar goes into one standard zstd stream (new archives, ``data.tar.zst``) or
one standard LZ4 frame (``data.tar.lz4``: the older tools, and this package before 2.0), and comes out of either.

The writers take the tar from whatever writes it (:func:`kingfisher_archive.archive_format.write_tar`) and write
ordinary zstd frames with content checksums (:class:`ZstdWriter`) or an ordinary LZ4 frame (:class:`LZ4Writer`) to
any object with ``write`` (the uploader); :func:`open_compressed` tells the codec by a binary stream's first bytes
and reads either from any binary file (a download), and :func:`drain` reads it to its end, so that every checksum is
checked. Nothing crawl-sized is held; tar, crawls and S3 are unknown here, so the codecs can be read, and tested,
apart from the tar. See docs/safety.md, section 13.
"""

from __future__ import annotations

import struct
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import lz4.block
import lz4.frame
import xxhash
import zstandard

from kingfisher_archive.errors import PermanentError

MiB = 1 << 20
#: What a zstd reader asks of the compressed stream at a time, and :func:`drain` of the uncompressed one.
READ_SIZE = MiB
#: Threads compressing LZ4 blocks: with two, both cores compress while the main thread reads and tars.
COMPRESS_THREADS = 2
LZ4_BLOCK_SIZE = 4 * MiB
LZ4_MAGIC = b"\x04\x22\x4d\x18"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: The zstd levels a setting may choose (zstd's ``--ultra`` levels above 19 need more memory than a worker should).
ZSTD_LEVELS = range(1, 20)
#: libzstd's worker threads compressing behind the tarring thread: on two cores, two compress level 3 about twice as
#: fast as one (one worker barely beats compressing on the tarring thread itself, which then waits for it).
ZSTD_THREADS = 2
#: The tar is gathered in buffers of this size before each goes to the compressor, which copies it.
ZSTD_BUFFER_SIZE = 4 * MiB


class ArchiveFormatError(PermanentError):
    """The compressed stream is neither LZ4 nor zstd, or it ends before its last frame does."""


# -- writing -----------------------------------------------------------------------------------------------------


def _frame_header() -> bytes:
    """An LZ4 frame header: version 1, independent blocks, block checksums, 4 MiB blocks (LZ4 frame format 1.6)."""
    descriptor = bytes([0b0111_0000, 0x70])  # FLG: version 01, B.Indep, B.Checksum; BD: block max size 4 MiB
    header_checksum = (xxhash.xxh32_intdigest(descriptor) >> 8) & 0xFF
    return LZ4_MAGIC + descriptor + bytes([header_checksum])


def _compress_block(chunk) -> tuple[bytes, bytes, bytes]:
    """One independent block: its size word, its bytes (as they are when LZ4 cannot shrink them), its checksum.

    The stored bytes never share memory with ``chunk``, so the block can be reused as soon as this returns (an
    incompressible block is copied here, on a compressing thread, rather than by the thread that reads).
    """
    compressed = lz4.block.compress(chunk, mode="default", store_size=False)
    if len(compressed) < len(chunk):
        size, stored = len(compressed), compressed
    else:
        size, stored = len(chunk) | 0x8000_0000, bytes(chunk)
    return struct.pack("<I", size), stored, struct.pack("<I", xxhash.xxh32_intdigest(stored))


class _Buffered:
    """What the tar writer writes into: a block of ``self._block`` (a ``bytearray``, its ``memoryview`` in
    ``self._view``), ``self._filled`` bytes of it used; :meth:`_full` takes a full block away."""

    _block: bytearray
    _view: memoryview
    _filled: int

    def write(self, data) -> int:
        size = len(data)
        if self._filled + size < len(self._block):  # the common case: a tar header or padding fits in the block
            self._block[self._filled : self._filled + size] = data
            self._filled += size
            return size
        view = memoryview(data).cast("B")
        while view:
            space = self.reserve()
            take = min(len(view), len(space))
            space[:take] = view[:take]
            self.commit(take)
            view = view[take:]
        return size

    def reserve(self) -> memoryview:
        """The free space of the current block (at least one byte), to read into directly; then :meth:`commit`."""
        return self._view[self._filled :]

    def commit(self, n: int) -> None:
        """Count ``n`` bytes written into the space :meth:`reserve` gave."""
        self._filled += n
        if self._filled == len(self._block):
            self._full()

    def _full(self) -> None:
        raise NotImplementedError


class LZ4Writer(_Buffered):
    """The uncompressed side of one standard LZ4 frame: the tar is written here, compressed bytes go to ``sink``.

    Independent 4 MiB blocks, each with its checksum, compressed by ``threads`` threads in parallel (LZ4 is
    archiving's costliest step; python-lz4 and xxhash release the GIL) and written in order. File data is read
    straight into the current block (:meth:`reserve`, :meth:`commit`); blocks are reused once compressed, a few in
    flight. See docs/safety.md, section 13.
    """

    def __init__(self, sink, threads: int = COMPRESS_THREADS) -> None:
        self.sink = sink
        self._free: list[bytearray] = []  # blocks whose compression is done, for reuse (no fresh pages to fault in)
        self._new_block()
        self._threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lz4")
        self._pending: deque = deque()
        self.sink.write(_frame_header())

    def _new_block(self) -> None:
        self._block = self._free.pop() if self._free else bytearray(LZ4_BLOCK_SIZE)
        self._view = memoryview(self._block)
        self._filled = 0

    def _full(self) -> None:
        self._submit(self._block)
        self._new_block()

    def _submit(self, chunk) -> None:
        self._pending.append((self._pool.submit(_compress_block, chunk), chunk))
        while len(self._pending) > 2 * self._threads:
            self._write_oldest()

    def _write_oldest(self) -> None:
        future, chunk = self._pending.popleft()
        parts = future.result()
        for part in parts:
            self.sink.write(part)
        if isinstance(chunk, bytearray):  # a full block: free again (the stored bytes are a copy or compressed)
            self._free.append(chunk)

    def close(self) -> None:
        try:
            if self._filled:
                self._submit(bytes(self._view[: self._filled]))
                self._filled = 0
            while self._pending:
                self._write_oldest()
            self.sink.write(struct.pack("<I", 0))  # end mark
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


class ZstdWriter(_Buffered):
    """The uncompressed side of one standard zstd stream: the tar is written here, compressed bytes go to ``sink``.

    Frames with zstd's content checksums (what ``zstd -dc`` checks), at ``level``, compressed by libzstd's ``threads``
    worker threads behind the tarring thread (libzstd copies each buffer it is given into its own jobs and releases
    the GIL while it works). The tar is gathered in one reused buffer (:meth:`reserve`, :meth:`commit`, as on
    :class:`LZ4Writer`), so memory stays that buffer plus libzstd's jobs, whatever the crawl's size. See
    docs/safety.md, section 13.
    """

    def __init__(self, sink, level: int = 3, threads: int = ZSTD_THREADS) -> None:
        if level not in ZSTD_LEVELS:
            raise ValueError(f"zstd level {level!r} is not one of {ZSTD_LEVELS.start}-{ZSTD_LEVELS.stop - 1}")
        self.sink = sink
        compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=threads)
        self._stream = compressor.stream_writer(sink, closefd=False, write_return_read=True)
        self._block = bytearray(ZSTD_BUFFER_SIZE)
        self._view = memoryview(self._block)
        self._filled = 0

    def _full(self) -> None:
        self._stream.write(self._block)  # libzstd copies it into its jobs: the buffer is free again
        self._filled = 0

    def close(self) -> None:
        """Compress what is left and end the frame (its content checksum); the sink is left open."""
        if self._filled:
            self._stream.write(self._view[: self._filled])
            self._filled = 0
        self._stream.close()


# -- reading -----------------------------------------------------------------------------------------------------


class _Peeked:
    """A binary stream whose first bytes were read to tell its codec, read again from its start."""

    def __init__(self, head: bytes, body) -> None:
        self.head = head
        self.body = body

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.body.read(size)
        if size is None or size < 0:
            data, self.head = self.head + self.body.read(), b""
            return data
        data, self.head = self.head[:size], self.head[size:]
        return data if len(data) == size else data + self.body.read(size - len(data))

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.body.close()


class _ZstdFrames:
    """Follows the frame structure of the compressed bytes a zstd reader takes from ``body``, skipping each block's
    content unread, so that :meth:`check_end` can tell a stream that ends between frames from one cut short (which
    libzstd's streaming reader would end quietly, with fewer bytes). Keeps a few header bytes, never a block."""

    def __init__(self, body) -> None:
        self.body = body
        self.frames = 0
        self._skip = 0  # bytes of content (a block's, a skippable frame's, a checksum) still to pass over
        self._want = 4  # bytes of the next header to gather
        self._got = bytearray()
        self._state = "magic"
        self._checksummed = False

    def read(self, size: int = -1) -> bytes:
        data = self.body.read(size)
        self._follow(memoryview(data))
        return data

    def readable(self) -> bool:
        return True

    def _follow(self, data: memoryview) -> None:
        while data:
            if self._skip:
                step = min(self._skip, len(data))
                self._skip -= step
                data = data[step:]
                if not self._skip and self._state == "content":
                    self._state, self._want = "magic", 4
                elif not self._skip and self._state == "after last block":
                    self._state, self._want = ("checksum", 4) if self._checksummed else ("magic", 4)
                continue
            step = min(self._want - len(self._got), len(data))
            self._got += data[:step]
            data = data[step:]
            if len(self._got) == self._want:
                header, self._got = bytes(self._got), bytearray()
                self._header(header)

    def _header(self, header: bytes) -> None:
        state = self._state
        if state == "magic":
            if header == ZSTD_MAGIC:
                self._state, self._want = "descriptor", 1
            elif header[1:] == b"\x2a\x4d\x18" and header[0] & 0xF0 == 0x50:  # a skippable frame
                self._state, self._want = "skippable", 4
            else:
                raise ArchiveFormatError(f"zstd: a frame starts with {header.hex()}, not zstd's magic number")
        elif state == "skippable":
            self._state, self._skip = "content", int.from_bytes(header, "little")
            if not self._skip:
                self._state, self._want = "magic", 4
        elif state == "descriptor":
            descriptor = header[0]
            single_segment = descriptor >> 5 & 1
            self._checksummed = bool(descriptor >> 2 & 1)
            size_field = (single_segment, 2, 4, 8)[descriptor >> 6]
            rest = (0, 1, 2, 4)[descriptor & 3] + size_field + (0 if single_segment else 1)
            self._state, self._want = "block", 3
            if rest:
                self._state, self._want = "frame header", rest
        elif state == "frame header":
            self._state, self._want = "block", 3
        elif state == "block":
            word = int.from_bytes(header, "little")
            last, kind, size = word & 1, word >> 1 & 3, word >> 3
            if kind == 3:
                raise ArchiveFormatError("zstd: a block of the reserved type (a damaged stream)")
            self._skip = 1 if kind == 1 else size  # an RLE block stores one byte
            if last:
                self.frames += 1
                if self._checksummed:
                    self._state, self._want = "checksum", 4
                else:
                    self._state, self._want = "magic", 4
                if self._skip:
                    self._state = "after last block"
            if not self._skip and not last:
                self._want = 3
        elif state == "checksum":
            self._state, self._want = "magic", 4

    def check_end(self) -> None:
        """Raise :class:`ArchiveFormatError` unless the bytes read so far end where a frame ends."""
        if self._skip or self._got or self._state != "magic" or not self.frames:
            raise ArchiveFormatError("zstd: the stream ends inside a frame (the archive is truncated)")


def open_compressed(body):
    """The uncompressed side of the binary stream ``body``, LZ4 or zstd as its first bytes say, buffering nothing
    beyond a read's worth; :class:`ArchiveFormatError` if they say neither.

    After what is wanted of it, call :func:`drain` so that the stream's end (and the checksums of the last blocks,
    or of the content) is read and checked too.
    """
    head = body.read(4)
    stream = _Peeked(head, body)
    if head == LZ4_MAGIC:
        return lz4.frame.open(stream, "rb")
    if head == ZSTD_MAGIC:
        return _ZstdReader(stream)
    raise ArchiveFormatError(
        f"the archive starts with {head.hex() or 'nothing'}: neither LZ4 ({LZ4_MAGIC.hex()}) nor zstd "
        f"({ZSTD_MAGIC.hex()})"
    )


class _ZstdReader:
    """The uncompressed side of a zstd stream of one or more frames, read as a file; at its end, raises if the
    stream was cut inside a frame (libzstd checks each frame's content checksum as it ends)."""

    def __init__(self, body) -> None:
        self._frames = _ZstdFrames(body)
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            self._frames, read_size=READ_SIZE, read_across_frames=True, closefd=False
        )
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        if self._ended:
            return b""
        data = self._reader.read(size)
        if size and not data:
            self._frames.check_end()
            self._ended = True
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._reader.close()


def drain(compressed) -> None:
    """Read an LZ4 or zstd stream to its end, so a truncated frame or a wrong checksum (content or block) raises."""
    while compressed.read(READ_SIZE):
        pass
