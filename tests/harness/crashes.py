"""Crash points of one archive try: record every mutating call it makes, or crash it at one of them.

A :class:`Try` is one try of an archive task (``steps.archive_and_record``): a real S3 client of its own, the
world's ledger behind a proxy, and the package's local deletes and renames, all watched. Fault-free, it records
every mutating call in order (:class:`Point`): the S3 calls in :data:`MUTATING`, every public ledger method that
writes (all but the readers in :data:`LEDGER_READS`), and every ``os.unlink``, ``os.remove``, ``os.rmdir``,
``os.rename`` and ``os.replace`` called from a ``kingfisher_archive`` module (from any thread). Given a
:class:`Crash`, it strikes at the n-th call of that name:

- ``before``: the call raises :class:`Killed` and the process is dead: every later S3 call, ledger call and local
  delete of the try raises :class:`Killed` too (a ``BaseException``, so ``except Exception`` cannot swallow it,
  like SIGKILL; cleanup that catches ``BaseException`` fails in turn);
- ``lost``: the server applied the request and its response was lost; botocore's retry sends the identical
  request once more to the real server, and what the server answers to the retry (a 412, a 404 ``NoSuchKey`` or
  ``NoSuchUpload``, or success) is the call's result;
- ``lost-killed``: the same, and then the process dies;
- ``5xx``: the server applied it, the client gets a 500 ``InternalError``;
- ``after`` (ledger and local calls): the call applied, then the process dies;
- ``error``: the call raises a connection error (S3: ``EndpointConnectionError``; ledger: ``LedgerError``; local:
  ``OSError`` EIO) without reaching its target, and the process lives on;
- ``lost-error``: the server applied it, and the client sees a connection error (its retries gave up);
- ``stale`` (``ListObjectsV2``): answered, without asking the server, from :attr:`Try.snapshot`, a listing of the
  bucket taken before the last write (a ``before-call`` handler that returns a response short-circuits the request).

All of it through botocore's own event hooks on a real client (``before-parameter-build``, ``before-call``,
``after-call``), never by patching boto3.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

from botocore import xform_name
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError

from kingfisher_archive.ledger import LedgerError

#: The S3 calls that change the bucket.
MUTATING = (
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "PutObject",
    "CopyObject",
    "UploadPartCopy",
    "DeleteObject",
    "DeleteObjects",
    "AbortMultipartUpload",
)
#: Ledger methods that only read; every other public method is a write (and a crash point).
LEDGER_READS = ("get", "all", "settled")
#: The local calls that delete or rename, counted when a ``kingfisher_archive`` module makes them.
LOCAL = ("unlink", "remove", "rmdir", "rename", "replace")
#: How each kind of call can be struck.
WHENS = {
    "s3": ("before", "lost", "lost-killed", "5xx"),
    "ledger": ("before", "after"),
    "local": ("before", "after"),
}


class Killed(BaseException):  # noqa: N818 - what happened, as SIGKILL would say it
    """The process running the try is dead (as if SIGKILLed): nothing it does from now on takes effect."""


@dataclass(frozen=True)
class Point:
    kind: str  # "s3", "ledger" or "local"
    name: str  # the S3 operation, "Ledger.<method>" or "os.<function>"
    nth: int  # its nth call of that name in the try
    index: int = 0  # its place among all the try's mutating calls (1-based), for reports

    def __str__(self) -> str:
        return f"#{self.index} {self.name}[{self.nth}]"


@dataclass(frozen=True)
class Crash:
    point: Point
    when: str  # see the module's docstring

    def __str__(self) -> str:
        return f"{self.when} {self.point}"


@dataclass
class Try:
    """One try of an archive task, against ``world`` (a :class:`tests.harness.world.World`)."""

    world: object
    crash: Crash | None = None
    calls: list[Point] = field(default_factory=list)  # the mutating calls made, in order
    reads: list[tuple[str, str]] = field(default_factory=list)  # (operation, key) of every other S3 call
    struck: bool = False
    dead: bool = False
    snapshot: list[dict] | None = None  # what a stale listing answers (see :func:`list_bucket`)
    on_point: object = None  # called with each Point as it is reached (a test pausing the try there, say)

    def __post_init__(self) -> None:
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._zombies: list = []  # claims a dead try never released
        self.client = self.world.new_client()
        self._raw = self.world.new_client()  # where a lost request's retry goes: no hooks
        events = self.client.meta.events
        events.register("before-parameter-build.s3", self._keep_params)
        events.register("before-call.s3", self._before_call)
        events.register("after-call.s3", self._after_call)
        self.ledger = _LedgerInTry(self.world.ledger, self)

    # -- bookkeeping

    def _point(self, kind: str, name: str, record: bool = True) -> Point:
        with self._lock:
            self._counts[name] += 1
            point = Point(kind, name, self._counts[name], len(self.calls) + 1)
            if record:
                self.calls.append(point)
        if self.on_point is not None:
            self.on_point(point)
        return point

    def _strikes(self, point: Point, *whens: str) -> bool:
        crash = self.crash
        if crash is None or crash.when not in whens or (crash.point.name, crash.point.nth) != (point.name, point.nth):
            return False
        self.struck = True
        return True

    def _die(self, what: str) -> None:
        self.dead = True
        raise Killed(f"injected: the process was killed {what}")

    def _check_alive(self, what: str) -> None:
        if self.dead:
            raise Killed(f"injected: the process is dead ({what})")

    # -- S3

    def _keep_params(self, params, model, **kwargs) -> None:
        self._local.params = (model.name, dict(params))

    def _before_call(self, model, params, **kwargs):
        self._check_alive(model.name)
        mutating = model.name in MUTATING
        if not mutating:
            with self._lock:
                self.reads.append((model.name, self._local.params[1].get("Key", "")))
        # Reads are not recorded as crash points, but a crash can be aimed at one (the model does).
        point = self._local.point = self._point("s3", model.name, record=mutating)
        if self._strikes(point, "before"):
            self._die(f"just before {point}")
        if self._strikes(point, "error"):
            raise EndpointConnectionError(endpoint_url=f"injected: {point} could not connect")
        if model.name == "ListObjectsV2" and self._strikes(point, "stale"):
            self._local.point = None
            return AWSResponse(f"stale://{point}", 200, {}, None), stale_listing(self.snapshot, self._local.params[1])
        return None

    def _after_call(self, model, http_response, parsed, **kwargs) -> None:
        point, self._local.point = getattr(self._local, "point", None), None
        if point is None or point.name != model.name or http_response.status_code >= 300:
            return
        if self._strikes(point, "5xx"):
            raise ClientError(
                {
                    "Error": {"Code": "InternalError", "Message": f"injected: {point} was applied, then 500"},
                    "ResponseMetadata": {"HTTPStatusCode": 500},
                },
                model.name,
            )
        if self._strikes(point, "lost-error"):
            raise EndpointConnectionError(endpoint_url=f"injected: {point} was applied, its response lost")
        if self._strikes(point, "lost", "lost-killed"):
            name, params = self._local.params
            answer, error = None, None
            try:  # botocore's retry: the identical request, once more, to the real server
                answer = getattr(self._raw, xform_name(name))(**params)
            except ClientError as e:
                error = e
            if self.crash.when == "lost-killed":
                self._die(f"after {point} was applied and its response lost")
            if error is not None:
                raise ClientError(error.response, model.name) from None
            parsed.clear()
            parsed.update(answer)

    # -- local deletes and renames

    @contextmanager
    def watching_local_calls(self):
        """Count (and crash) the package's deletes and renames, from every thread, while the try runs."""
        originals = {name: getattr(os, name) for name in LOCAL}

        def wrap(name, original):
            def call(*args, **kwargs):
                if not sys._getframe(1).f_globals.get("__name__", "").startswith("kingfisher_archive"):
                    return original(*args, **kwargs)
                self._check_alive(f"os.{name}")
                point = self._point("local", f"os.{name}")
                if self._strikes(point, "before"):
                    self._die(f"just before {point}")
                if self._strikes(point, "error"):
                    raise OSError(errno.EIO, f"injected: {point} failed", args[0] if args else None)
                result = original(*args, **kwargs)
                if self._strikes(point, "after"):
                    self._die(f"just after {point}")
                return result

            return call

        for name, original in originals.items():
            setattr(os, name, wrap(name, original))
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(os, name, original)

    # -- running it

    def run(self, function, *args, **kwargs):
        """Call ``function(*args, **kwargs)`` as this try; a dead try's process is then buried."""
        try:
            with self.watching_local_calls():
                return function(*args, **kwargs)
        finally:
            if self.dead:
                self.bury()

    def bury(self) -> None:
        """The process is gone: its claims in the ledger name a pid that no longer runs (as after SIGKILL)."""
        dead_pid = _a_dead_pid()
        with sqlite3.connect(self.world.settings.ledger) as connection:
            connection.execute("UPDATE claim SET pid = ? WHERE pid = ?", (dead_pid, os.getpid()))
        for cm in self._zombies:  # its generator's cleanup now matches no row
            cm.gen.close()
        self._zombies.clear()


def _a_dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


class _LedgerInTry:
    """The world's ledger as one try sees it: every public write is a crash point; a dead try reaches nothing."""

    def __init__(self, ledger, try_: Try) -> None:
        self._ledger, self._try = ledger, try_

    def __getattr__(self, name: str):
        attribute = getattr(self._ledger, name)
        if name.startswith("_") or not callable(attribute):
            return attribute
        try_ = self._try

        def call(*args, **kwargs):
            try_._check_alive(f"Ledger.{name}")
            if name.startswith(LEDGER_READS):
                return attribute(*args, **kwargs)
            point = try_._point("ledger", f"Ledger.{name}")
            if try_._strikes(point, "before"):
                try_._die(f"just before {point}")
            if try_._strikes(point, "error"):
                raise LedgerError(f"injected: {point} failed")
            result = attribute(*args, **kwargs)
            if hasattr(result, "__enter__"):  # a claim: written when entered
                return _ClaimInTry(result, point, try_)
            if try_._strikes(point, "after"):
                try_._die(f"just after {point}")
            return result

        return call


class _ClaimInTry:
    def __init__(self, cm, point: Point, try_: Try) -> None:
        self._cm, self._point, self._try = cm, point, try_

    def __enter__(self):
        value = self._cm.__enter__()
        if self._try._strikes(self._point, "after"):
            self._try._zombies.append(self._cm)
            self._try._die(f"just after {self._point}")
        return value

    def __exit__(self, *exc_info):
        if self._try.dead:  # a dead process releases nothing
            self._try._zombies.append(self._cm)
            return False
        return self._cm.__exit__(*exc_info)


def explorable(calls: list[Point]) -> list[Point]:
    """The points worth crashing at: every call, except that of the unlinks and of the rmdirs of a crawl's deletion
    only the first, the middle and the last of each."""
    keep = set()
    for name in ("os.unlink", "os.rmdir"):
        run = [p for p in calls if p.name == name]
        keep |= {id(p) for p in (run[:1] + run[len(run) // 2 : len(run) // 2 + 1] + run[-1:])}
    return [p for p in calls if p.name not in ("os.unlink", "os.rmdir") or id(p) in keep]


def list_bucket(client, bucket: str) -> list[dict]:
    """Every object of the bucket, as ListObjectsV2 lists it: what a stale listing answers later."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item for page in pages for item in page.get("Contents", [])]


def stale_listing(snapshot: list[dict] | None, params: dict) -> dict:
    """A ListObjectsV2 answer to ``params`` from ``snapshot`` (one page: the model's buckets are small)."""
    prefix = params.get("Prefix", "")
    items = sorted((item for item in snapshot or [] if item["Key"].startswith(prefix)), key=lambda i: i["Key"])
    items = items[: params.get("MaxKeys", 1000)]
    answer = {"IsTruncated": False, "Name": params["Bucket"], "Prefix": prefix, "KeyCount": len(items)}
    answer["MaxKeys"] = params.get("MaxKeys", 1000)
    answer["ResponseMetadata"] = {"HTTPStatusCode": 200, "HTTPHeaders": {}}
    if items:
        answer["Contents"] = [dict(item) for item in items]
    return answer


@contextmanager
def failing_reads(nth: int, code: int, modules: tuple[str, ...] = ("kingfisher_archive.",)):
    """The ``nth`` ``open`` or ``os.scandir`` called from ``modules`` raises ``OSError(code)``, once (a transient
    EACCES, EIO or EMFILE). Yields a list that holds what was struck, if anything."""
    import builtins

    originals = {"open": builtins.open, "scandir": os.scandir}
    calls, struck = [0], []

    def wrap(name, original):
        def call(*args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__", "").startswith(modules):
                calls[0] += 1
                if calls[0] == nth:
                    struck.append(f"{name}({args[0] if args else ''!r})")
                    raise OSError(code, f"injected: {os.strerror(code)}", args[0] if args else None)
            return original(*args, **kwargs)

        return call

    builtins.open = wrap("open", originals["open"])
    os.scandir = wrap("scandir", originals["scandir"])
    try:
        yield struck
    finally:
        builtins.open, os.scandir = originals["open"], originals["scandir"]


# -- The local side: every file system call the package makes on a crawl, failed once or for good.

#: The file system calls watched under the data and logs directories (``open`` is the builtin).
FS_CALLS = ("rename", "replace", "unlink", "remove", "rmdir", "open", "scandir", "listdir", "builtins.open")
#: What a failed file system call raises, in turn: the errors a disk, a mount or a permission change give.
ERRNOS = (errno.EPERM, errno.EACCES, errno.ENOSPC, errno.EIO, errno.ENOTEMPTY)


@dataclass(frozen=True)
class FsPoint:
    """One file system call on a crawl's paths: its step, the call, whose path, and which of its paths."""

    step: str  # the run's step it was made in ("decide", "archive <crawl>", "sweep", ...)
    name: str  # "os.rename", "builtins.open", ...
    crawl: str | None  # the crawl its path belongs to (None: a folder shared by crawls)
    role: str  # "crawl" (its directory or inside), "aside" (<data_version>.deleting), "log", "shared"
    nth: int  # its nth call of (step, name, crawl, role)

    def __str__(self) -> str:
        return f"{self.step}: {self.name}[{self.nth}] on {self.crawl or 'a shared folder'} ({self.role})"


@dataclass(frozen=True)
class FsFault:
    """At ``point``: the call fails with ``code`` once, or ``for_good`` (then every later call of that name on the
    same crawl's paths of that role fails too, in any step and run); or ``recreate``: after the call, a writer puts
    a new file at the crawl's original path (only if nothing stands there then)."""

    point: FsPoint
    code: int = errno.EIO
    for_good: bool = False
    recreate: bool = False

    def __str__(self) -> str:
        if self.recreate:
            return f"recreated after {self.point}"
        return f"{errno.errorcode[self.code]} {'for good' if self.for_good else 'once'} at {self.point}"


class FileSystem:
    """Watch (and fail) the file system calls made on paths under ``data`` and ``logs`` while :attr:`step` is set.

    ``logs`` maps each log path to its crawl. Paths given relative to a ``dir_fd`` (the deletion opens each folder
    relative to its parent), and folders scanned by descriptor, are resolved through ``/proc/self/fd``. Calls from
    every thread count (the deletion unlinks from a pool). A fault struck is noted in :attr:`struck`.
    """

    def __init__(self, data: str, logs: str, crawls_logs: dict[str, str], fault: FsFault | None = None) -> None:
        self.data, self.logs = os.path.realpath(data), os.path.realpath(logs)
        self.crawls_logs = {os.path.realpath(path): crawl for path, crawl in crawls_logs.items()}
        self.fault = fault
        self.step: str | None = None
        self.prefix = ""  # before each step's name: the recovery's runs are told from the run under test
        self.calls: list[FsPoint] = []
        self.struck: list[str] = []
        self.recreated: dict[str, tuple[str, bytes]] = {}  # crawl id -> (file, content) a writer put at its path
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self._failing = False  # a for-good fault has struck
        self._own = threading.local()  # set while the harness itself writes (a recreation): not watched

    def where(self, args, kwargs) -> tuple[str | None, str] | None:
        """The crawl and role of a call's (first) path, or None if it is not under the data or logs directory."""
        target = args[0] if args else kwargs.get("path", kwargs.get("file"))
        try:
            if isinstance(target, int):
                path = os.readlink(f"/proc/self/fd/{target}")
            else:
                path = os.fsdecode(target)
                dir_fd = kwargs.get("src_dir_fd", kwargs.get("dir_fd"))
                if dir_fd is not None and not os.path.isabs(path):
                    path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
                path = os.path.abspath(path)
        except (OSError, TypeError):
            return None
        for root in (self.data, self.logs):
            if path == root or path.startswith(root + os.sep):
                break
        else:
            return None
        if root == self.logs:
            crawl = self.crawls_logs.get(path.removesuffix(".stats"))
            return (crawl, "log") if crawl else (None, "shared")
        parts = os.path.relpath(path, root).split(os.sep)
        if len(parts) < 2:
            return None, "shared"
        name = parts[1]
        if name.endswith(".deleting"):
            return f"{parts[0]}/{name.removesuffix('.deleting')}", "aside"
        return f"{parts[0]}/{name}", "crawl"

    def _call(self, name: str, original, args, kwargs):
        if self.step is None or getattr(self._own, "writing", False):
            return original(*args, **kwargs)
        found = self.where(args, kwargs)
        if found is None:
            return original(*args, **kwargs)
        crawl, role = found
        with self._lock:
            key = (self.step, name, crawl, role)
            self._counts[key] += 1
            point = FsPoint(self.step, name, crawl, role, self._counts[key])
            self.calls.append(point)
        fault = self.fault
        if fault is not None and not fault.recreate:
            hit = point == fault.point
            same = (name, crawl, role) == (fault.point.name, fault.point.crawl, fault.point.role)
            if hit or (fault.for_good and self._failing and same):
                self._failing = self._failing or fault.for_good
                self.struck.append(str(point))
                path = args[0] if args and not isinstance(args[0], int) else None
                raise OSError(fault.code, f"injected: {os.strerror(fault.code)}", path)
        result = original(*args, **kwargs)
        if fault is not None and fault.recreate and point == fault.point:
            self.recreate(crawl, str(point))
        return result

    def recreate(self, crawl: str | None, when: str) -> None:
        """A writer (Kingfisher Collect resuming the crawl) puts a new file at the crawl's original path, if no
        directory stands there."""
        if crawl is None or crawl in self.recreated:
            return
        directory = os.path.join(self.data, *crawl.split("/"))
        if os.path.lexists(directory):
            return
        path, content = os.path.join(directory, "recreated.json"), b'{"releases": [{"ocid": "recreated"}]}\n'
        self._own.writing = True
        try:
            os.mkdir(directory)
            with open(path, "wb") as f:
                f.write(content)
        finally:
            self._own.writing = False
        self.recreated[crawl] = (path, content)
        self.struck.append(when)

    @contextmanager
    def watching(self):
        """Wrap the watched calls (module-wide, every thread) while within."""
        import builtins

        targets = [(builtins, "open", "builtins.open")] + [
            (os, name, f"os.{name}") for name in FS_CALLS if not name.startswith("builtins")
        ]
        originals = [(module, attribute, getattr(module, attribute)) for module, attribute, _ in targets]

        def wrap(name, original):
            def call(*args, **kwargs):
                return self._call(name, original, args, kwargs)

            return call

        for (module, attribute, original), (_, _, name) in zip(originals, targets, strict=True):
            setattr(module, attribute, wrap(name, original))
        try:
            yield self
        finally:
            for module, attribute, original in originals:
                setattr(module, attribute, original)

    @contextmanager
    def in_step(self, step: str):
        previous, self.step = self.step, self.prefix + step
        try:
            yield
        finally:
            self.step = previous
