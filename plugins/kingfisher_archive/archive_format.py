"""The archive format, as buckets hold it: a plain tar of the crawl directory, compressed in one standard zstd
stream (new archives, ``data.tar.zst``) or one standard LZ4 frame (``data.tar.lz4``: the older tools, and this
package before 2.0) by :mod:`kingfisher_archive.compression`.

The writer makes a GNU tar, byte for byte what :mod:`tarfile` writes, for any object with ``write`` (a codec's
writer, whose block it reads file data straight into when it offers one);
the reader streams every generation of archives from any binary file (a download), the codec told by the stream's
first bytes, and :class:`CrawlMembers` refuses every member but the archive's one crawl's folders and regular files.
Nothing crawl-sized is held, or written but where the caller puts it; S3 and the retention policy are unknown here.
See docs/safety.md, sections 13 and 14.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tarfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import xxhash
import zstandard

from kingfisher_archive.compression import ArchiveFormatError, open_compressed
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
#: A crawl directory is named ``YYYYMMDD_HHMMSS``.
VERSION = re.compile(r"\d{8}_\d{6}")
#: Directory members above the crawl (2021 archives hold absolute paths) skipped before the crawl is found.
MAX_DIRECTORIES_ABOVE = 64
#: Names are UTF-8; bytes that are not (some crawls' file names) survive the round trip unchanged.
TAR_ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}
#: What a damaged LZ4 frame or zstd stream, or a malformed tar, raise while streaming.
FORMAT_ERRORS = (tarfile.TarError, EOFError, RuntimeError, zstandard.ZstdError, ArchiveFormatError)


class RefusedMemberError(PermanentError):
    """An archive member that no crawl can hold: a link, a device, a path outside the archive's one crawl."""


# -- writing -----------------------------------------------------------------------------------------------------


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


class open_archive:  # noqa: N801 - used as a function: ``with open_archive(body) as (tar, compressed):``
    """Read a binary stream as an archive, LZ4 or zstd as its first bytes say: yields ``(tar, compressed)``,
    buffering nothing beyond a read's worth.

    After the tar's end, call :func:`~kingfisher_archive.compression.drain` on ``compressed`` so that the stream's
    end (and the checksums of the last blocks, or of the content) is read and checked too. ``body`` is closed on exit.
    """

    def __init__(self, body) -> None:
        self.body = body

    def __enter__(self):
        try:
            self.compressed = open_compressed(self.body)
            self.tar = tarfile.open(fileobj=self.compressed, mode="r|", **TAR_ENCODING)
        except BaseException:
            self.body.close()
            raise
        return self.tar, self.compressed

    def __exit__(self, *exc) -> None:
        self.tar.close()
        self.compressed.close()
        self.body.close()
