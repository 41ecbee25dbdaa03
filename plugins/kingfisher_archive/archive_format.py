"""The archive format, as buckets hold it: a plain tar of the crawl directory in one standard zstd stream (new
archives, ``data.tar.zst``) or one standard LZ4 frame (``data.tar.lz4``: the older tools, and this package before 2.0).

The writer makes a GNU tar, byte for byte what :mod:`tarfile` writes, in ordinary zstd frames with content checksums
(:class:`ZstdWriter`) or an ordinary LZ4 frame (:class:`LZ4Writer`), for any object with ``write`` (the uploader);
the reader tells the codec by the stream's first bytes and streams every generation of archives from any binary file
(a download),
and :class:`CrawlMembers` refuses every member but the archive's one crawl's folders and regular files. Nothing
crawl-sized is held, or written but where the caller puts it; S3 and the retention policy are unknown here. See
docs/safety.md, sections 13 and 14.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import tarfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import lz4.block
import lz4.frame
import xxhash
import zstandard

from kingfisher_archive.crawl import (
    CrawlChangedError,
    CrawlReadError,
    Entry,
    FingerprintBuilder,
    MiB,
    Summary,
    UnsafeCrawlError,
    walk,
)
from kingfisher_archive.errors import PermanentError

MiB = MiB
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
#: A crawl directory is named ``YYYYMMDD_HHMMSS``.
VERSION = re.compile(r"\d{8}_\d{6}")
#: Directory members above the crawl (2021 archives hold absolute paths) skipped before the crawl is found.
MAX_DIRECTORIES_ABOVE = 64
#: Names are UTF-8; bytes that are not (some crawls' file names) survive the round trip unchanged.
TAR_ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}


class ArchiveFormatError(PermanentError):
    """The compressed stream is neither LZ4 nor zstd, or it ends before its last frame does."""


#: What a damaged LZ4 frame or zstd stream, or a malformed tar, raise while streaming.
FORMAT_ERRORS = (tarfile.TarError, EOFError, RuntimeError, zstandard.ZstdError, ArchiveFormatError)


class RefusedMemberError(PermanentError):
    """An archive member that no crawl can hold: a link, a device, a path outside the archive's one crawl."""


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


@dataclass
class TarResult:
    summary: Summary
    checksum: str
    bytes_read: int


def _tarinfo(entry: Entry, name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = entry.mtime_ns // 1_000_000_000
    info.mode = entry.mode & 0o7777
    if entry.is_dir:
        info.type = tarfile.DIRTYPE
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size
    return info


#: Octal fields of a ustar header hold up to 11 digits; beyond that (8 GiB files) tarfile writes base-256.
_OCTAL_LIMIT = 8**11

_HEADER_TAIL = tarfile.NUL * 100 + tarfile.GNU_MAGIC + tarfile.NUL * (32 + 32 + 8 + 8 + 155 + 12)


def _header(entry: Entry, name: str) -> bytes:
    """The GNU tar header of one entry: the bytes :meth:`tarfile.TarInfo.tobuf` makes, built without its overhead.

    Names over 100 bytes (a GNU long-name record first) and numbers too big for octal go through tarfile itself.
    """
    encoded = (f"{name}/" if entry.is_dir else name).encode("utf-8", "surrogateescape")
    mtime = entry.mtime_ns // 1_000_000_000
    if len(encoded) > tarfile.LENGTH_NAME or not (0 <= mtime < _OCTAL_LIMIT and entry.size < _OCTAL_LIMIT):
        return _tarinfo(entry, name).tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    block = b"".join(
        (
            encoded.ljust(tarfile.LENGTH_NAME, tarfile.NUL),
            b"%07o\x00" % (entry.mode & 0o7777),
            b"0000000\x00" * 2,  # uid, gid
            b"%011o\x00" % (0 if entry.is_dir else entry.size),
            b"%011o\x00" % mtime,
            b"        ",  # the checksum field counts as spaces in the checksum
            tarfile.DIRTYPE if entry.is_dir else tarfile.REGTYPE,
            _HEADER_TAIL,
        )
    )
    return block[:148] + b"%06o\x00" % sum(block) + block[155:]


#: Files up to this size are read whole by reader threads (opening, stat-ing, reading and closing a small
#: file are system calls that release the GIL, and on crawls of many small files they were most of the tarring
#: thread's time); larger ones are opened by a reader and read by the tarring thread straight into the LZ4 block.
SMALL_FILE = 128 * 1024
#: Reader threads, files per reader task, and reader tasks done or under way ahead of the tarring thread: with
#: these, at most 8 x 32 x 128 KiB = 32 MiB of small files' bytes wait in memory, whatever the crawl's size.
READ_THREADS = 4
READ_BATCH = 32
READ_AHEAD = 8
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # no link followed, no FIFO waited on


@dataclass
class _Opened:
    """One file as a reader thread left it: stat'ed, and either read whole (``data``) or open for the tar thread."""

    entry: Entry  # with the size, time and mode of the file that was opened
    data: bytes | None = None
    after: os.stat_result | None = None  # fstat once read (small files)
    fd: int | None = None  # open, not yet read (large files)
    error: BaseException | None = None


def _read_error(entry: Entry, e: OSError) -> CrawlReadError:
    error = CrawlReadError(
        f"cannot read {entry.relpath!r} in the crawl ({e.strerror or e}): nothing was archived or deleted"
    )
    error.__cause__ = e
    return error


def _open_files(entries: list[Entry]) -> list[_Opened]:
    """A reader thread's task: open, stat and (when small) read a few files; stop at the first problem."""
    opened = []
    for entry in entries:
        try:
            fd = os.open(entry.path, _FILE_FLAGS)
        except OSError as e:
            if e.errno == errno.ELOOP:  # became a link since it was listed
                error = UnsafeCrawlError(f"{entry.relpath!r} in the crawl is a symbolic link")
            else:
                error = _read_error(entry, e)
            opened.append(_Opened(entry, error=error))
            return opened
        keep_open = False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                error = UnsafeCrawlError(f"{entry.relpath!r} in the crawl is not a regular file or directory")
                opened.append(_Opened(entry, error=error))
                return opened
            stated = Entry(entry.relpath, entry.path, False, st.st_size, st.st_mtime_ns, st.st_mode)
            if st.st_size > SMALL_FILE:
                opened.append(_Opened(stated, fd=fd))
                keep_open = True
                continue
            data = os.read(fd, st.st_size + 1) if st.st_size else b""  # one byte more: a file that grew shows
            opened.append(_Opened(stated, data=data, after=os.fstat(fd)))
        except OSError as e:
            opened.append(_Opened(entry, error=_read_error(entry, e)))
            return opened
        finally:
            if not keep_open:
                os.close(fd)
    return opened


def _planned(directory: str, pool: ThreadPoolExecutor) -> Iterator:
    """The crawl in walk order: each folder's :class:`~kingfisher_archive.crawl.Entry`, and for its files the
    futures of reader tasks, each a few consecutive files."""
    batch: list[Entry] = []
    for entry in walk(directory, stat_files=False):
        if entry.is_dir:
            if batch:
                yield pool.submit(_open_files, batch)
                batch = []
            yield entry
        else:
            batch.append(entry)
            if len(batch) == READ_BATCH:
                yield pool.submit(_open_files, batch)
                batch = []
    if batch:
        yield pool.submit(_open_files, batch)


def _close_unread(future: Future) -> None:
    """Close what a reader task left open that will never be read (the tar stopped before it)."""
    if future.cancel() or future.exception() is not None:
        return
    for item in future.result():
        if item.fd is not None:
            os.close(item.fd)


def write_tar(directory: str, arcname: str, sink, progress=None, threads: int = READ_THREADS) -> TarResult:
    """Write the crawl at ``directory`` to ``sink`` as a GNU tar of ``<arcname>/...``; read each byte once.

    The bytes are exactly :class:`tarfile.TarFile`'s for the same members, written by hand (:func:`_header`). Files
    up to :data:`SMALL_FILE` are read whole by ``threads`` reader threads a little ahead, larger ones here, into the
    sink's LZ4 block (or one reused buffer), all in walk order; each byte feeds the XXH3 checksum and the sink in
    one pass. A file whose size or time changed while read stops the tar (``CrawlChangedError``). ``progress`` gets
    the size of each read. See docs/safety.md, sections 2 and 13.
    """
    hasher = xxhash.xxh3_128()
    builder = FingerprintBuilder()
    reserve = getattr(sink, "reserve", None)  # read straight into the LZ4 block when the sink offers it
    view = None if reserve else memoryview(bytearray(READ_SIZE))  # else one buffer, reused for every read
    bytes_read = 0
    offset = 0
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="read")
    ahead: deque = deque()  # folders and reader futures, in walk order

    def write_file(file: _Opened) -> int:
        """Write one file's header, bytes and padding; return how many bytes of tar that was."""
        nonlocal bytes_read
        entry = file.entry
        builder.add(entry)
        header = _header(entry, f"{arcname}/{entry.relpath}")
        sink.write(header)
        if file.data is not None:
            data, after = file.data, file.after
            if len(data) < entry.size:
                raise CrawlChangedError(f"{entry.relpath!r} changed while it was being read: it became shorter")
            if len(data) > entry.size:
                raise CrawlChangedError(f"{entry.relpath!r} changed while it was being read")
            if data:
                hasher.update(data)
                sink.write(data)
                bytes_read += len(data)
                if progress:
                    progress(len(data))
        else:
            fd, file.fd = file.fd, None
            try:
                bytes_read += _copy_file(fd, entry, hasher, sink, reserve, view, progress)
                after = os.fstat(fd)
            finally:
                os.close(fd)
        if after.st_size != entry.size or after.st_mtime_ns != entry.mtime_ns:
            raise CrawlChangedError(f"{entry.relpath!r} changed while it was being read")
        padding = -entry.size % tarfile.BLOCKSIZE
        if padding:
            sink.write(tarfile.NUL * padding)
        return len(header) + entry.size + padding

    def write_next() -> None:
        nonlocal offset
        item = ahead.popleft()
        if not isinstance(item, Future):
            offset += _write_folder(item, arcname, builder, sink)
            return
        opened = item.result()
        try:
            for file in opened:
                if file.error is not None:
                    raise file.error
                offset += write_file(file)
        finally:
            for file in opened:
                if file.fd is not None:
                    os.close(file.fd)

    try:
        futures = 0
        for item in _planned(directory, pool):
            ahead.append(item)
            futures += isinstance(item, Future)
            while futures >= READ_AHEAD or (ahead and not isinstance(ahead[0], Future)):
                futures -= isinstance(ahead[0], Future)
                write_next()
        while ahead:
            write_next()
    except BaseException:
        for item in ahead:
            if isinstance(item, Future):
                _close_unread(item)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)
    offset += len(end)
    sink.write(end + tarfile.NUL * (-offset % tarfile.RECORDSIZE))
    return TarResult(builder.summary(), hasher.hexdigest(), bytes_read)


def _write_folder(entry: Entry, arcname: str, builder: FingerprintBuilder, sink) -> int:
    builder.add(entry)
    header = _header(entry, f"{arcname}/{entry.relpath}" if entry.relpath else arcname)
    sink.write(header)
    return len(header)


def _copy_file(fd: int, entry: Entry, hasher, sink, reserve, view, progress) -> int:
    """Read a (large) file of ``entry.size`` bytes into the sink and the checksum; return the bytes read."""
    remaining = entry.size
    while remaining:
        target = reserve() if reserve else view
        try:
            n = os.readv(fd, [target[: min(remaining, READ_SIZE, len(target))]])
        except OSError as e:
            raise _read_error(entry, e) from e
        if not n:
            raise CrawlChangedError(f"{entry.relpath!r} changed while it was being read: it became shorter")
        hasher.update(target[:n])
        if reserve:
            sink.commit(n)
        else:
            sink.write(target[:n])
        remaining -= n
        if progress:
            progress(n)
    return entry.size


# -- reading -----------------------------------------------------------------------------------------------------


def walk_key(relpath: str) -> tuple:
    """Sort key that puts a crawl's file paths in :func:`kingfisher_archive.crawl.walk` (checksum) order.

    At each level a folder's files come before its subfolders, each group sorted by name.
    """
    parts = relpath.split("/")
    return tuple((1, part) for part in parts[:-1]) + ((0, parts[-1]),)


class CrawlMembers:
    """Maps the member names of one crawl's tar to paths inside the crawl, refusing everything else.

    The first member that names ``<source_id>/<YYYYMMDD_HHMMSS>`` fixes the crawl (and what comes before it in
    the path, for 2021 archives, whose members hold the crawl directory's absolute path, with or without the
    leading ``/``); every later member must be inside that same crawl. Directory members above the crawl
    (``home``, ``home/ocdskfs``, ...) are skipped, wherever they appear.
    """

    def __init__(self, source_id: str, data_version: str | None = None) -> None:
        self.source_id = source_id
        self.data_version = data_version
        self.head: tuple[str, ...] | None = None  # member path components of the crawl directory
        self._before: list[tuple[str, tuple[str, ...]]] = []  # directories seen before the crawl was found

    @staticmethod
    def refuse(name: str, why: str):
        raise RefusedMemberError(f"refused archive member {name!r}: {why}")

    def relpath(self, member: tarfile.TarInfo) -> str | None:
        """The member's path inside the crawl (``""`` for the crawl directory), or ``None`` to skip it."""
        name = member.name
        parts = tuple(part for part in name.split("/") if part not in ("", "."))
        if ".." in parts:
            self.refuse(name, "it has a '..' component")
        if not (member.isreg() or member.isdir()):
            kind = "a link" if member.issym() or member.islnk() else "a device, FIFO or other special file"
            self.refuse(name, f"it is {kind}; a crawl holds only folders and regular files")
        if self.head is None:
            found = next(
                (i for i in range(len(parts) - 1) if parts[i] == self.source_id and VERSION.fullmatch(parts[i + 1])),
                None,
            )
            if found is None:
                if member.isdir() and len(self._before) < MAX_DIRECTORIES_ABOVE:
                    self._before.append((name, parts))
                    return None
                self.refuse(name, f"it is not inside a crawl of {self.source_id!r}")
            version = parts[found + 1]
            if self.data_version is not None and version != self.data_version:
                self.refuse(name, f"it belongs to crawl {version}, not {self.data_version}")
            self.data_version = version
            self.head = parts[: found + 2]
            for earlier, earlier_parts in self._before:
                if not self._above(earlier_parts):
                    self.refuse(earlier, f"it is outside the crawl {self.source_id}/{version}")
        if parts[: len(self.head)] == self.head:
            rest = parts[len(self.head) :]
            if not rest and not member.isdir():
                self.refuse(name, "the crawl directory itself is not a directory")
            return "/".join(rest)
        if member.isdir() and self._above(parts):
            return None
        self.refuse(name, f"it is outside the crawl {self.source_id}/{self.data_version}")

    def _above(self, parts: tuple[str, ...]) -> bool:
        return len(parts) < len(self.head) and self.head[: len(parts)] == parts


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


class open_archive:  # noqa: N801 - used as a function: ``with open_archive(body) as (tar, compressed):``
    """Read a binary stream as an archive, LZ4 or zstd as its first bytes say: yields ``(tar, compressed)``,
    buffering nothing beyond a read's worth.

    After the tar's end, call :func:`drain` on ``compressed`` so that the stream's end (and the checksums of the
    last blocks, or of the content) is read and checked too. ``body`` is closed on exit.
    """

    def __init__(self, body) -> None:
        self.body = body

    def __enter__(self):
        try:
            head = self.body.read(4)
            stream = _Peeked(head, self.body)
            if head == LZ4_MAGIC:
                self.compressed = lz4.frame.open(stream, "rb")
            elif head == ZSTD_MAGIC:
                self.compressed = _ZstdReader(stream)
            else:
                raise ArchiveFormatError(
                    f"the archive starts with {head.hex() or 'nothing'}: neither LZ4 ({LZ4_MAGIC.hex()}) nor zstd "
                    f"({ZSTD_MAGIC.hex()})"
                )
            self.tar = tarfile.open(fileobj=self.compressed, mode="r|", **TAR_ENCODING)
        except BaseException:
            self.body.close()
            raise
        return self.tar, self.compressed

    def __exit__(self, *exc) -> None:
        self.tar.close()
        self.compressed.close()
        self.body.close()


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
