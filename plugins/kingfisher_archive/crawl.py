"""A crawl on disk: ``<data_directory>/<source_id>/<YYYYMMDD_HHMMSS>/``, and its log's path in the logs directory.

Everything that reads a crawl's files goes through :func:`walk`, so the checksum, byte count, fingerprint and tar
see the same files in the 2021 tool's checksum order. Paths written by other programs are checked first: a source
id is one plain path component, a crawl directory a real directory inside the data directory, and nothing in a
crawl a link (it would lead out of the crawl) or a special file (it cannot be restored byte for byte).

See docs/bucket-format.md, ``checksum``, and docs/safety.md, 12.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import xxhash

from kingfisher_archive.errors import PermanentError, RetryableError

DATA_VERSION_FORMAT = "%Y%m%d_%H%M%S"
MiB = 1 << 20
#: Kingfisher Collect writes the Scrapyd job id into each crawl since 2021: it is bookkeeping, not data.
JOB_FILE = "scrapyd-job.txt"
#: Longest source id we accept: a spider name is a Python identifier, and file systems stop at 255 bytes.
MAX_SOURCE_ID_LENGTH = 200
#: The 2021 tool fed its checksum 64 KiB at a time; the digest does not depend on it, the speed does.
CHUNK_SIZE = 1 << 20
#: Threads unlinking a crawl's files: an unlink mostly waits for the file system (its journal, the disk), and a few
#: in flight at once take well under half the time of one after the other (docs/performance.md has the figures).
DELETE_THREADS = 4
#: Names one deleting thread unlinks in one go, and how many such batches wait for a thread at most.
DELETE_BATCH = 256
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: A crawl being deleted is first renamed to ``<data_version>.deleting`` beside itself (same folder, so the rename is
#: atomic): a writer that opens files by the crawl's path can no longer add to what is being deleted.
DELETING_SUFFIX = ".deleting"


class UnsafeCrawlError(PermanentError):
    """A crawl directory that cannot be archived faithfully or safely (links, special files, bad names)."""


class CrawlChangedError(PermanentError):
    """The crawl on disk is not the one that was inspected: archiving it would archive something undecided."""


class SetAsideDiffersError(PermanentError):
    """A crawl set aside to be deleted is not what was archived, and its path was written again meanwhile."""


class CrawlReadError(RetryableError):
    """A file of the crawl cannot be read: nothing is archived or deleted until it can."""


def source_id_problem(source_id: object) -> str | None:
    """Return why ``source_id`` cannot name a folder under the data directory, or ``None`` if it can."""
    if not isinstance(source_id, str) or not source_id:
        return "the source id is empty"
    if "\x00" in source_id:
        return "the source id contains a NUL byte"
    if "/" in source_id or "\\" in source_id:
        return f"the source id {source_id!r} contains a path separator"
    if source_id in (".", ".."):
        return f"the source id {source_id!r} is not a name"
    if len(source_id.encode("utf-8", "surrogateescape")) > MAX_SOURCE_ID_LENGTH:
        return f"the source id is longer than {MAX_SOURCE_ID_LENGTH} bytes"
    return None


def format_data_version(value: datetime) -> str:
    """The directory name of a crawl started at ``value`` (Kingfisher Process's ``data_version``)."""
    return value.strftime(DATA_VERSION_FORMAT)


def naive_utc(value: datetime) -> datetime:
    """A time as naive UTC, the way data versions are written (Kingfisher Process stores them as UTC)."""
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def parse_data_version(value: str) -> datetime:
    """Parse a crawl directory name; raise ``ValueError`` naming the value if it is not ``YYYYMMDD_HHMMSS``."""
    try:
        return datetime.strptime(value, DATA_VERSION_FORMAT)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a data version (YYYYMMDD_HHMMSS)") from None


@dataclass(frozen=True)
class Entry:
    """One directory or regular file inside a crawl, as :func:`walk` yields it."""

    relpath: str  # relative to the crawl directory, "/"-separated; "" for the crawl directory itself
    path: str
    is_dir: bool
    size: int
    mtime_ns: int
    mode: int = 0


@dataclass(frozen=True)
class Summary:
    """What listing a crawl (no file contents read) tells: enough to decide most things and to notice change."""

    files: int  # regular files, including scrapyd-job.txt
    data_files: int  # regular files other than scrapyd-job.txt
    bytes: int
    fingerprint: str  # changes when a file is added, removed, resized or rewritten


def crawl_directory(data_directory: str, source_id: str, data_version: str) -> str:
    """The crawl's directory, after checking that the names cannot point anywhere else."""
    problem = source_id_problem(source_id)
    if problem:
        raise UnsafeCrawlError(problem)
    parse_data_version(data_version)
    return os.path.join(data_directory, source_id, data_version)


def walk(directory: str, stat_files: bool = True) -> Iterator[Entry]:
    """Yield the crawl directory, then its contents in checksum order; refuse links and special files.

    :param stat_files: if false, files are typed by the directory listing alone and yielded with ``size`` and
        ``mtime_ns`` of -1: one ``stat`` fewer per file, for a caller that calls ``fstat`` anyway (the tar writer).
        Folders are always stat'ed.
    :raises UnsafeCrawlError: at anything not a directory or a regular file; a caller writing an archive stops
        there, so nothing partial is ever promoted.
    :raises FileNotFoundError: if the crawl directory is missing.
    """
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeCrawlError(f"the crawl directory {directory} is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCrawlError(f"the crawl directory {directory} is not a directory")
    yield Entry("", directory, True, 0, st.st_mtime_ns, st.st_mode)
    yield from _walk(directory, "", stat_files)


def _walk(directory: str, prefix: str, stat_files: bool) -> Iterator[Entry]:
    files = []
    dirs = []
    with os.scandir(directory) as it:
        for item in it:
            relpath = prefix + item.name
            if not stat_files and item.is_file(follow_symlinks=False):  # the listing's file type: no stat
                files.append((item.name, Entry(relpath, item.path, False, -1, -1)))
                continue
            st = item.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                files.append((item.name, Entry(relpath, item.path, False, st.st_size, st.st_mtime_ns, st.st_mode)))
            elif stat.S_ISDIR(st.st_mode):
                dirs.append((item.name, Entry(relpath, item.path, True, 0, st.st_mtime_ns, st.st_mode)))
            elif stat.S_ISLNK(st.st_mode):
                raise UnsafeCrawlError(f"{relpath!r} in the crawl is a symbolic link")
            else:
                raise UnsafeCrawlError(f"{relpath!r} in the crawl is not a regular file or directory")
    files.sort(key=lambda pair: pair[0])
    for _, entry in files:
        yield entry
    dirs.sort(key=lambda pair: pair[0])
    for _, entry in dirs:
        yield entry
        yield from _walk(entry.path, entry.relpath + "/", stat_files)


class FingerprintBuilder:
    """Accumulates the names, sizes and modification times of a crawl's entries into one short digest."""

    def __init__(self) -> None:
        self._hash = xxhash.xxh3_64()
        self.files = 0
        self.data_files = 0
        self.bytes = 0

    def add(self, entry: Entry) -> None:
        if not entry.is_dir:
            self.files += 1
            self.bytes += entry.size
            if entry.relpath != JOB_FILE:
                self.data_files += 1
        # A directory's time changes whenever anything inside is created or removed, even briefly: only its name
        # counts. A file's time and size count, so a rewrite is noticed.
        if entry.is_dir:
            record = f"d\x00{entry.relpath}\n"
        else:
            record = f"f\x00{entry.relpath}\x00{entry.size}\x00{entry.mtime_ns}\n"
        self._hash.update(record.encode("utf-8", "surrogateescape"))

    def summary(self) -> Summary:
        return Summary(self.files, self.data_files, self.bytes, self._hash.hexdigest())


def measure(directory: str) -> Summary:
    """List the crawl (metadata only) and return its counts and fingerprint."""
    builder = FingerprintBuilder()
    for entry in walk(directory):
        builder.add(entry)
    return builder.summary()


def checksum(directory: str) -> str:
    """XXH3-128 of every file's contents in :func:`walk` order: the 2021 tool's ``checksum``."""
    hasher = xxhash.xxh3_128()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    for entry in walk(directory):
        if entry.is_dir:
            continue
        with open(entry.path, "rb") as f:
            while n := f.readinto(buffer):
                hasher.update(view[:n])
    return hasher.hexdigest()


def delete(data_directory: str, source_id: str, data_version: str) -> bool:
    """Delete one crawl directory; return whether there was any.

    The directory is renamed aside first (:data:`DELETING_SUFFIX`), and only what is aside is deleted: a writer that
    re-creates the crawl's path meanwhile (Kingfisher Collect resuming it) keeps what it writes. What a deletion cut
    short left aside is deleted first, and then a directory standing at the path is left alone: it was written
    since. Never follows a link out of the crawl.
    """
    directory = crawl_directory(data_directory, source_id, data_version)
    if not os.path.lexists(directory + DELETING_SUFFIX):
        if not _deletable_directory(directory):
            return False
        os.rename(directory, directory + DELETING_SUFFIX)
    return remove_set_aside(data_directory, source_id, data_version)


def remove_set_aside(data_directory: str, source_id: str, data_version: str) -> bool:
    """Delete what :func:`set_aside` (or :func:`delete`) renamed aside, and only that; return whether it was there.

    Whatever stands at the crawl's own path is never touched here: after the rename it can only be a new crawl.
    """
    aside = crawl_directory(data_directory, source_id, data_version) + DELETING_SUFFIX
    if not _deletable_directory(aside):
        return False
    remove_tree(aside)
    return True


def _deletable_directory(path: str) -> bool:
    """Whether ``path`` is there; :class:`UnsafeCrawlError` if it is anything but a directory (a link included)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCrawlError(f"refusing to delete {path}: it is not a directory")
    return True


def on_disk(data_directory: str, source_id: str, data_version: str) -> bool:
    """Whether anything of the crawl is on disk: its directory, or what a deletion cut short left of it.

    Raises the ``OSError`` of a directory that cannot be looked at (permissions, I/O): that is not "gone".
    """
    directory = crawl_directory(data_directory, source_id, data_version)
    for path in (directory, directory + DELETING_SUFFIX):
        try:
            os.lstat(path)
            return True
        except FileNotFoundError:
            continue
    return False


def may_be_on_disk(data_directory: str, source_id: str, data_version: str) -> bool:
    """:func:`on_disk`, where a directory that cannot be looked at counts as there: whether a crawl the ledger records
    deleted may have been written again (``False`` only when nothing of it is on disk)."""
    try:
        return on_disk(data_directory, source_id, data_version)
    except OSError:
        return True


def set_aside(directory: str, fingerprint: str, changed) -> str:
    """Rename a crawl that is about to be deleted out of its writers' way, and check it is still ``fingerprint``.

    If it is not (a file was added, removed or rewritten since it was read), it is renamed back and
    ``changed(summary)`` is raised. Returns where it now is.
    """
    aside = directory + DELETING_SUFFIX
    os.rename(directory, aside)
    now = measure(aside)
    if now.fingerprint != fingerprint:
        try:
            os.rename(aside, directory)
        except OSError as e:
            raise UnsafeCrawlError(
                f"{directory} changed after it was read, and could not be renamed back from {aside} ({e.strerror}): "
                "nothing was deleted; rename it back by hand"
            ) from e
        raise changed(now)
    return aside


def _open_relative(root_fd: int, parts: tuple[str, ...]) -> int:
    """Open the directory ``parts`` below ``root_fd`` one component at a time, never through a link."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            child = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlink_batch(root_fd: int, parts: tuple[str, ...], names: list[str]) -> None:
    fd = _open_relative(root_fd, parts)
    try:
        for name in names:
            os.unlink(name, dir_fd=fd)  # a link is removed itself, never what it points to
    finally:
        os.close(fd)


def remove_tree(directory: str, threads: int = DELETE_THREADS) -> None:
    """Delete ``directory`` and everything in it, like ``shutil.rmtree`` but unlinking several files at once.

    It never follows a link: each folder is opened relative to its parent with ``O_NOFOLLOW`` (one replaced by a link
    meanwhile is refused), and a link is unlinked itself. Files go from ``threads`` threads (unlinking waits on the
    file system and releases the GIL), then folders deepest first. Memory stays flat: names are listed a folder at a
    time, a few batches at most waiting. See docs/performance.md, Where the time went.
    """
    root_fd = os.open(directory, _DIRECTORY_FLAGS)
    folders: list[tuple[str, ...]] = []  # top-down; removed in reverse
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="delete") as pool:
            pending: deque = deque()

            def submit(parts: tuple[str, ...], names: list[str]) -> None:
                pending.append(pool.submit(_unlink_batch, root_fd, parts, names))
                while len(pending) > 4 * threads:
                    pending.popleft().result()

            def list_folder(parts: tuple[str, ...]) -> None:
                fd = _open_relative(root_fd, parts)
                subfolders, names = [], []
                try:
                    with os.scandir(fd) as it:
                        for item in it:
                            if item.is_dir(follow_symlinks=False):
                                subfolders.append(item.name)
                            else:
                                names.append(item.name)
                                if len(names) == DELETE_BATCH:
                                    submit(parts, names)
                                    names = []
                finally:
                    os.close(fd)
                if names:
                    submit(parts, names)
                for name in subfolders:
                    folders.append((*parts, name))
                    list_folder((*parts, name))

            try:
                list_folder(())
                while pending:
                    pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()
        for parts in reversed(folders):
            fd = _open_relative(root_fd, parts[:-1])
            try:
                os.rmdir(parts[-1], dir_fd=fd)
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    os.rmdir(directory)


def check_log_path(logs_directory: str, source_id: str, log_path: str, action: str) -> None:
    """Refuse a log path that is not a plain file directly in ``<logs_directory>/<source_id>/``."""
    folder = os.path.realpath(os.path.join(logs_directory, source_id))
    if os.path.dirname(os.path.realpath(log_path)) != folder or os.path.islink(log_path):
        raise UnsafeCrawlError(f"refusing to {action} {log_path}: it is not a log in {folder}")


def remove_log(logs_directory: str, source_id: str, log_path: str | None, size: int | None = None) -> list[str]:
    """Delete a crawl's log and the log's ``.stats``; return what was there to delete.

    The log must be a file directly in ``<logs_directory>/<source_id>/``: a path from anywhere else (an edited
    XCom, say) is refused, so nothing outside the configured directories is ever deleted. With ``size`` (the bytes
    that were archived), a log that is now another size is not the log that was checked: it and its ``.stats`` are
    kept, and nothing is returned for them.
    """
    if not log_path:
        return []
    check_log_path(logs_directory, source_id, log_path, "delete")
    if size is not None:
        try:
            if os.lstat(log_path).st_size != size:
                return []
        except FileNotFoundError:
            pass
    deleted = []
    for path in (log_path, log_path + ".stats"):
        try:
            os.remove(path)
            deleted.append(path)
        except FileNotFoundError:
            pass
    return deleted


def delete_local(
    data_directory: str, logs_directory: str, source_id: str, data_version: str, log_path: str | None
) -> list[str]:
    """Delete a crawl's directory (:func:`delete`), its log and the log's ``.stats``; return what was there."""
    if log_path:
        check_log_path(logs_directory, source_id, log_path, "delete")
    deleted = []
    if delete(data_directory, source_id, data_version):
        deleted.append(crawl_directory(data_directory, source_id, data_version))
    return deleted + remove_log(logs_directory, source_id, log_path)
