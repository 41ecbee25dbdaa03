"""Find and read the log that Scrapyd wrote for a crawl.

A log is untrusted input (the crawler fetched strangers' servers), so nothing in it is evaluated, memory stays
bounded whatever the size of the log or of its lines (only the first :data:`LINE_LIMIT` bytes of a line are looked
at), and content never raises: only a file that cannot be opened does (:class:`LogError`). Every datetime returned
is naive UTC. See docs/compatibility.md, Logs.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from kingfisher_archive.crawl import naive_utc
from kingfisher_archive.errors import RetryableError

SUBSET_ARGUMENTS = ("from_date", "until_date", "year", "start_page", "publisher", "system", "sample")

#: Kingfisher Collect's format for the ``crawl_time`` spider argument.
CRAWL_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
#: Bytes of a line that are parsed; the rest of a longer line is read past and dropped. Every line we need (spider
#: arguments, stats, the start of an item dump) is far shorter.
LINE_LIMIT = 1 << 20
#: How much of the head and of the tail :func:`read_crawl_time` reads.
WINDOW = 1 << 20
#: A crawl directory is named after the crawl time with the fraction of a second dropped, and may be written a
#: little after the log's clock said so: the directory's timestamp is 0, 1 or 2 seconds after the crawl time.
MATCH_SECONDS = 3
#: The class name of Kingfisher Collect's extension that stores a crawl in a database incrementally. At each close
#: it re-reads the whole crawl directory, which later crawls with the same ``crawl_time`` write into again, so the
#: directory must stay on disk. Matched at any module path: Collect's settings name it
#: ``kingfisher_scrapy.extensions.DatabaseStore`` (it is defined in ``kingfisher_scrapy.extensions.database_store``).
DATABASE_STORE = "DatabaseStore"
#: At most this many names of enabled extensions are kept (each at most :data:`EXTENSION_NAME_LIMIT` characters); a
#: longer list is still read to its end for :data:`DATABASE_STORE`. A real list has a dozen or two.
EXTENSIONS_LIMIT = 256
EXTENSION_NAME_LIMIT = 512

_SAMPLE_FALSY = frozenset({"false", "0"})

# `2020-09-02 05:24:58 [scrapy.core.engine] INFO: Spider closed (finished)`
_RECORD = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \[([^\]]*)\] ([A-Z]+): ?(.*)", re.S)
_CLOSED = re.compile(r"Spider closed \((.*)\)\s*\Z", re.S)

# A Python string or bytes literal as `repr` writes it (never raw, never triple-quoted, never across lines). The
# quantifiers are possessive: with plain ones the regex engine keeps a backtracking record per escape, 16 MB for a
# 1 MiB line full of `\'`.
_STRING = r"""[bBuU]?(?:'[^'\\]*+(?:\\.[^'\\]*+)*+'|"[^"\\]*+(?:\\.[^"\\]*+)*+")"""
_STRING_TOKEN = re.compile(_STRING)
# The same literal, cut off by the end of a capped line: it swallows the rest of the text, so that brackets inside
# the unfinished string are not taken for structure.
_UNTERMINATED = r"""[bBuU]?(?:'[^'\\]*+(?:\\.[^'\\]*+)*+|"[^"\\]*+(?:\\.[^"\\]*+)*+)\\?\Z"""
_ITEM_TOKEN = re.compile(rf"(?P<key>{_STRING})(?=\s*:)|{_STRING}|{_UNTERMINATED}|(?P<open>[{{\[(])|(?P<close>[}}\])])")
# A wrapped piece of a long string value: `pprint` puts each on its own indented line. Most lines of an old log's
# item dumps are these; recognising them in one match keeps the scanner off the hot path.
_WRAPPED_STRING = re.compile(rf"\s+{_STRING},?\s*\Z")
# One `'key': scalar` pair alone on its line, opening (`{`) or closing (`}`) the dict or not: the other common line.
_PAIR_LINE = re.compile(rf"(?P<open>[{{ ])(?P<key>{_STRING}): (?:{_STRING}|-?\d+|None|True|False)(?P<end>[,}}]?)\s*\Z")
_VALUE_TOKEN = re.compile(
    rf"\s*(?:(?P<string>{_STRING})|(?P<word>None|True|False)\b|(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"|(?P<punct>[{}\[\]():,])|(?P<other>\S))"
)
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.S)
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", '"': '"', "\n": ""}

# One `'key': value,` line of the pretty-printed stats dict. The value is whatever sits before the final `,`/`}`.
_STATS_LINE = re.compile(rf"[{{ ]\s*(?P<key>{_STRING})\s*:\s*(?P<value>.*?)\s*(?P<end>[,}}])\s*\Z", re.S)
# Bounded: `int()` refuses more than 4,300 digits, and no real count has more than a few.
_INT = re.compile(r"-?\d{1,30}\Z")
_DATETIME = re.compile(
    r"datetime\.datetime\((\d{1,4}), (\d{1,2}), (\d{1,2})(?:, (\d{1,2}))?(?:, (\d{1,2}))?(?:, (\d{1,2}))?"
    r"(?:, (\d{1,6}))?(?:, tzinfo=(.*))?\)\Z",
    re.S,
)
_TIMEDELTA = re.compile(
    r"datetime\.timezone\(datetime\.timedelta\((?:days=(-?\d+))?(?:, )?(?:seconds=(\d+))?(?:, )?"
    r"(?:microseconds=(\d+))?\)\)\Z"
)


class LogError(RetryableError):
    """A log that cannot be read at all (missing, unreadable, a directory). Its message names the path."""


@dataclass(frozen=True)
class ScrapyLog:
    """What one Scrapy log says about its crawl. Build it with :func:`parse`."""

    path: str
    #: The crawl's start, naive UTC, whole seconds: the ``crawl_time`` spider argument, else the stats' ``start_time``,
    #: else the first line's timestamp (SPEC section 1). None if the log offers none of them.
    crawl_time: datetime | None
    #: Which of the three gave :attr:`crawl_time`: ``"crawl_time"``, ``"start_time"`` or ``"first_line"``.
    crawl_time_source: str | None
    #: The ``Spider arguments:`` dict: strings or None (True/False/numbers kept as their text).
    spider_arguments: dict[str, str | None]
    #: The stats' ``finish_reason``, else the reason in ``Spider closed (<reason>)``, else None (still running/killed).
    finish_reason: str | None
    #: A ``Dumping Scrapy stats:`` dump was found and read to its closing brace.
    has_stats: bool
    #: Items logged after ``Scraped from``, by kind (each item counts as exactly one kind, see :func:`parse`).
    file_items: int
    fileerror_items: int
    fileitem_items: int
    #: The stats we understood: integers and strings only (floats and datetimes are left out).
    stats: dict[str, int | str]
    #: The stats' ``start_time`` with its microseconds, naive UTC.
    start_time: datetime | None
    #: Records logged at level ERROR.
    error_lines: int
    #: Scrapyd's job id, from the ``_job`` spider argument.
    job: str | None
    #: The dotted class paths of Scrapy's ``Enabled extensions:`` record (the first one, in order), or None if the log
    #: has none (written at a level above INFO, or cut off before it). See :meth:`is_reused`.
    enabled_extensions: tuple[str, ...] | None = None
    #: Kingfisher Collect's :data:`DATABASE_STORE` extension is among the enabled extensions.
    database_store: bool = False

    @property
    def files_count(self) -> int:
        """File items: the stats' ``file_count`` when present (it counts items even when the log level hid them)."""
        value = self.stats.get("file_count")
        return value if isinstance(value, int) else self.file_items

    @property
    def errors_count(self) -> int:
        """Files that failed: FileError items, or ERROR records for logs that have no FileError at all.

        The stats' ``fileerror_count`` when present, else the FileError items counted in the log. Since 2025
        Kingfisher Collect yields no FileError items and logs a failed file as an ERROR record instead, so a log
        with neither counts its ERROR records (the stats' ``log_count/ERROR`` when present): failures are never
        hidden by a log simply not having FileError items. See :attr:`errors_source`.
        """
        return self._errors()[0]

    @property
    def errors_source(self) -> str:
        """Where :attr:`errors_count` came from: ``fileerror_count``, ``FileError items`` or ``ERROR records``."""
        return self._errors()[1]

    def _errors(self) -> tuple[int, str]:
        value = self.stats.get("fileerror_count")
        if isinstance(value, int):
            return value, "fileerror_count"
        if self.fileerror_items:
            return self.fileerror_items, "FileError items"
        value = self.stats.get("log_count/ERROR")
        return (value if isinstance(value, int) else self.error_lines), "ERROR records"

    def is_finished(self) -> bool:
        """The crawl ran to its natural end, the retention policy's "finished"."""
        return self.finish_reason == "finished"

    def is_reused(self) -> bool:
        """Kingfisher Collect will read and write the crawl directory again: it must not be deleted.

        True when the ``DatabaseStore`` extension (incremental updates) is enabled: at each close it re-reads the
        whole crawl directory, and the next crawl with the same ``crawl_time`` writes into the same directory. A log
        that does not list its extensions (see :attr:`enabled_extensions`) is not known to be reused.
        """
        return self.database_store

    def is_subset(self) -> bool:
        """The crawl collected only part of a source (or a sample), so it is not "complete".

        Kingfisher Collect receives spider arguments as strings: None and ``''`` mean "not given", any other string
        means given (``publisher='false'`` is a real filter). ``sample`` alone is a flag, so ``'false'`` and ``'0'``
        (any case) are not a sample.
        """
        for name in SUBSET_ARGUMENTS:
            value = self.spider_arguments.get(name)
            if value is None or value == "":
                continue
            if name == "sample" and value.strip().lower() in _SAMPLE_FALSY:
                continue
            return True
        return False


class _Reader:
    """A streaming state machine over the lines of a log: it keeps counters, never the lines."""

    def __init__(self) -> None:
        self.first_line_time: datetime | None = None
        self.lines = 0
        self.spider_arguments: dict[str, str | None] | None = None
        self.stats: dict[str, int | str] = {}
        self.start_time: datetime | None = None
        self.has_stats = False
        self.closed_reason: str | None = None
        self.error_lines = 0
        self.counts = {"File": 0, "FileError": 0, "FileItem": 0}
        self.extensions: list[str] | None = None
        self.database_store = False
        self._extensions_started = False
        # What the continuation lines of the current record are: None, "item" (after `Scraped from`), "stats" or
        # "extensions".
        self._mode: str | None = None
        self._item_depth = 0
        self._item_started = False
        self._item_keys: set[str] = set()

    def feed(self, line: str) -> None:
        self.lines += 1
        match = _RECORD.match(line) if line[:1].isdigit() else None
        if match is None:
            if self._mode == "item":
                self._item_line(line)
            elif self._mode == "stats":
                self._stats_line(line)
            elif self._mode == "extensions":
                self._extensions_line(line)
            return

        self._end_record()
        timestamp, logger, level, message = match.groups()
        if self.lines == 1:
            self.first_line_time = _parse_datetime(timestamp, "%Y-%m-%d %H:%M:%S")
        if level == "ERROR":
            self.error_lines += 1
        if logger == "scrapy.core.scraper" and message.startswith("Scraped from "):
            self._mode = "item"
            self._item_depth = 0
            self._item_started = False
            self._item_keys = set()
        elif logger == "scrapy.statscollectors" and message.startswith("Dumping Scrapy stats:"):
            self._mode = "stats"
        elif logger == "scrapy.core.engine" and (closed := _CLOSED.match(message)):
            self.closed_reason = closed.group(1)
        elif logger == "scrapy.middleware" and message.startswith("Enabled extensions:") and self.extensions is None:
            self._mode = "extensions"
            self.extensions = []
            self._extensions_started = False
        elif message.startswith("Spider arguments: ") and self.spider_arguments is None:
            self.spider_arguments = _parse_arguments(message[len("Spider arguments: ") :])

    def close(self) -> None:
        self._end_record()

    def _end_record(self) -> None:
        if self._mode == "item":
            self._count_item()
        self._mode = None

    # Items. Each counts as one kind, decided by its top-level keys: a FileItem also has `data_type`, so `number`
    # wins; a FileError is the only kind with `errors`. Keys inside nested values (`{'errors': {'data_type': ...}}`)
    # are at depth 2 and do not count. An item whose dump was cut off (the log ends, or a capped line lost its
    # closing brace) still counts if its kind was seen: Scrapy logs `Scraped from` only after the item pipelines
    # stored the file, so the item exists even if its log record does not.
    def _item_line(self, line: str) -> None:
        if not self._item_started:
            if not line.startswith("{"):
                self._mode = None  # not a dict: nothing we know how to count
                return
            self._item_started = True
        elif _WRAPPED_STRING.match(line):
            return
        if pair := _PAIR_LINE.match(line):
            if pair.group("open") == "{":
                self._item_depth += 1
            if self._item_depth == 1:
                self._item_keys.add(_unquote(pair.group("key")))
            if pair.group("end") == "}":
                self._item_depth -= 1
                if self._item_depth <= 0:
                    self._end_record()
            return
        for token in _ITEM_TOKEN.finditer(line):
            if token.group("open"):
                self._item_depth += 1
            elif token.group("close"):
                self._item_depth -= 1
                if self._item_depth <= 0:
                    self._end_record()
                    return
            elif self._item_depth == 1 and (key := token.group("key")):
                self._item_keys.add(_unquote(key))

    def _count_item(self) -> None:
        keys = self._item_keys
        if "number" in keys:
            self.counts["FileItem"] += 1
        elif "errors" in keys:
            self.counts["FileError"] += 1
        elif "data_type" in keys:
            self.counts["File"] += 1
        self._item_keys = set()

    # Enabled extensions: `pprint.pformat` of a list of dotted class paths on the lines after the record, one per line
    # (`['scrapy.extensions.corestats.CoreStats',` ... `'kingfisher_scrapy.extensions.DatabaseStore']`), or all on one
    # line when short. Only the quoted names are read (a class object in the settings prints as `<class '...'>`); a
    # name cut off by a capped line or by the end of the log is not one. The list ends at its `]` or the next record.
    def _extensions_line(self, line: str) -> None:
        if not self._extensions_started:
            if not line.startswith("["):
                self._mode = None  # not a list: nothing we know how to read
                return
            self._extensions_started = True
        names = self.extensions
        if names is None:  # set with the mode
            names = self.extensions = []
        for token in _STRING_TOKEN.finditer(line):
            name = _unquote(token.group(0))
            if is_database_store(name):
                self.database_store = True
            if len(names) < EXTENSIONS_LIMIT and len(name) <= EXTENSION_NAME_LIMIT:
                names.append(name)
        if "]" in _STRING_TOKEN.sub("", line):
            self._mode = None

    # Stats: `pprint.pformat` of a dict, one `'key': value` per line, sorted, `{` on the first and `}` on the last.
    def _stats_line(self, line: str) -> None:
        line = line.rstrip()
        if line == "{}":
            self.has_stats = True
            self._mode = None
            return
        match = _STATS_LINE.match(line)
        if match is None:
            return  # a wrapped value's continuation, or garbage
        key = _unquote(match.group("key"))
        value = match.group("value")
        if _INT.match(value):
            self.stats[key] = int(value)
        elif re.fullmatch(_STRING, value):
            self.stats[key] = _unquote(value)
        elif key == "start_time":
            self.start_time = _parse_stats_datetime(value)
        if match.group("end") == "}":
            self.has_stats = True
            self._mode = None

    def crawl_time(self) -> tuple[datetime | None, str | None]:
        arguments = self.spider_arguments or {}
        value = arguments.get("crawl_time")
        if value:
            parsed = _parse_datetime(value, CRAWL_TIME_FORMAT)
            if parsed is not None:
                return parsed, "crawl_time"
        if self.start_time is not None:
            return self.start_time.replace(microsecond=0), "start_time"
        if self.first_line_time is not None:
            return self.first_line_time, "first_line"
        return None, None


def parse(path: str) -> ScrapyLog:
    """Read a whole log, streaming, and return what it says. Raises :class:`LogError` only if it cannot be opened."""
    reader = _Reader()
    with _open(path) as stream:
        for line in _lines(stream):
            reader.feed(line)
    reader.close()

    crawl_time, source = reader.crawl_time()
    finish_reason = reader.stats.get("finish_reason")
    if not isinstance(finish_reason, str):
        finish_reason = reader.closed_reason
    arguments = reader.spider_arguments or {}
    return ScrapyLog(
        path=path,
        crawl_time=crawl_time,
        crawl_time_source=source,
        spider_arguments=arguments,
        finish_reason=finish_reason,
        has_stats=reader.has_stats,
        file_items=reader.counts["File"],
        fileerror_items=reader.counts["FileError"],
        fileitem_items=reader.counts["FileItem"],
        stats=reader.stats,
        start_time=reader.start_time,
        error_lines=reader.error_lines,
        job=arguments.get("_job"),
        enabled_extensions=tuple(reader.extensions) if reader.extensions is not None else None,
        database_store=reader.database_store,
    )


def is_database_store(name: str) -> bool:
    """``name`` (a dotted class path) is Kingfisher Collect's :data:`DATABASE_STORE` extension, at any module path."""
    return name == DATABASE_STORE or name.endswith("." + DATABASE_STORE)


def read_crawl_time(path: str) -> tuple[datetime | None, str | None]:
    """Return a log's crawl time and its source, as :func:`parse` would, reading at most its head and its tail.

    Matching a crawl directory to its log may read every log of a spider, and a log can be gigabytes: the spider
    arguments and the first line are at the top, the stats dump at the bottom, so :data:`WINDOW` bytes of each are
    enough.
    """
    with _open(path) as stream:
        size = os.fstat(stream.fileno()).st_size
        if size <= 2 * WINDOW:
            reader = _Reader()
            for line in _lines(stream):
                reader.feed(line)
            reader.close()
            return reader.crawl_time()

        head = _Reader()
        for line in _lines(stream):
            head.feed(line)
            if head.spider_arguments is not None or stream.tell() >= WINDOW:
                break
        head.close()
        crawl_time, source = head.crawl_time()
        if source == "crawl_time":
            return crawl_time, source

        stream.seek(size - WINDOW)
        _skip_line(stream)  # the first line of the tail is only the end of a line
        tail = _Reader()
        for line in _lines(stream):
            tail.feed(line)
        tail.close()
        if tail.start_time is not None:
            return tail.start_time.replace(microsecond=0), "start_time"
        return crawl_time, source


def find(logs_directory: str, source_id: str, data_version: datetime, job: str | None = None) -> str | None:
    """Return the path of the log of ``source_id``'s crawl ``data_version``, or None.

    Scrapyd writes ``<logs_directory>/<source_id>/<job>.log``: a known ``job`` names the log directly. Otherwise it is
    the log whose crawl time is 0 to 2 whole seconds before ``data_version``; of several, the closest, then the first
    by name. Only regular files ending ``.log`` directly in that folder count (not ``.log.stats``, not links), so
    ``source_id`` and ``job`` must be single path components.
    """
    if not _is_name(source_id):
        return None
    folder = os.path.join(logs_directory, source_id)
    if job is not None and _is_name(job):
        candidate = os.path.join(folder, f"{job}.log")
        if _is_regular_file(candidate):
            return candidate

    target = naive_utc(data_version).replace(microsecond=0)
    try:
        with os.scandir(folder) as entries:
            names = sorted(
                entry.name for entry in entries if entry.name.endswith(".log") and entry.is_file(follow_symlinks=False)
            )
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise LogError(f"cannot list the logs in {folder!r}: {e.strerror or e}") from e

    best: tuple[float, str] | None = None
    for name in names:
        path = os.path.join(folder, name)
        # A log unreadable for now (permissions, too many open files), or rotated away by Scrapyd while we look,
        # may have been this crawl's: its LogError is raised, never taken for "no log" (the crawl is held).
        crawl_time, _ = read_crawl_time(path)
        if crawl_time is None:
            continue
        delta = (target - crawl_time).total_seconds()
        if 0 <= delta < MATCH_SECONDS and (best is None or delta < best[0]):
            best = (delta, path)
    return best[1] if best else None


# Reading.


def _open(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as e:
        raise LogError(f"cannot read Scrapy log {path!r}: {e.strerror or e}") from e


def _lines(stream: BinaryIO):
    """Yield the log's lines as text, each cut to :data:`LINE_LIMIT` bytes; memory stays bounded by that limit."""
    while True:
        chunk = stream.readline(LINE_LIMIT)
        if not chunk:
            return
        if chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        elif len(chunk) >= LINE_LIMIT:
            _skip_line(stream)
        yield chunk.decode("utf-8", errors="replace").rstrip("\r")


def _skip_line(stream: BinaryIO) -> None:
    """Read past the rest of the current line, in bounded chunks."""
    while True:
        chunk = stream.readline(LINE_LIMIT)
        if not chunk or chunk.endswith(b"\n"):
            return


def _is_name(value: str | None) -> bool:
    return bool(value) and value not in {".", ".."} and "/" not in value and "\0" not in value and os.sep not in value


def _is_regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


# Small parsers for Python reprs.


def _unquote(literal: str) -> str:
    """The text of a string or bytes literal as ``repr`` writes it, escapes resolved (bytes read as code points)."""
    if literal[:1] in "bBuU":
        literal = literal[1:]
    return _ESCAPE.sub(_unescape, literal[1:-1])


def _unescape(match: re.Match[str]) -> str:
    escape = match.group(1)
    if escape[0] in "xuU" and len(escape) > 1:
        code = int(escape[1:], 16)
        return chr(code) if code <= 0x10FFFF else match.group(0)
    return _SIMPLE_ESCAPES.get(escape, match.group(0))


def _parse_arguments(text: str) -> dict[str, str | None]:
    """Read ``{'key': 'value' | None | True | 3, ...}``; other values (lists, dicts) are skipped.

    A dict cut off by a capped line yields the pairs before the cut.
    """
    tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in _VALUE_TOKEN.finditer(text)]
    result: dict[str, str | None] = {}
    if not tokens or tokens[0] != ("punct", "{"):
        return result
    i = 1
    while i + 2 < len(tokens):
        (kind, key), colon, (value_kind, value) = tokens[i], tokens[i + 1], tokens[i + 2]
        if kind != "string" or colon != ("punct", ":"):
            break
        i += 3
        if value_kind == "string":
            result[_unquote(key)] = _unquote(value)
        elif value_kind in {"word", "number"}:
            result[_unquote(key)] = None if value == "None" else value
        elif value_kind == "punct" and value in "{[(":
            i = _skip_nested(tokens, i)  # a structured value: nothing we use
        else:
            break
        if i < len(tokens) and tokens[i] == ("punct", ","):
            i += 1
        else:
            break
    return result


def _skip_nested(tokens: list[tuple[str | None, str]], i: int) -> int:
    depth = 1
    while i < len(tokens) and depth:
        kind, value = tokens[i]
        if kind == "punct" and value in "{[(":
            depth += 1
        elif kind == "punct" and value in "}])":
            depth -= 1
        i += 1
    return i


def _parse_datetime(text: str, format: str) -> datetime | None:
    try:
        return datetime.strptime(text, format)
    except ValueError:
        return None


def _parse_stats_datetime(text: str) -> datetime | None:
    """Read ``datetime.datetime(2020, 9, 2, 5, 24, 58, 123456)``, naive (Scrapy < 2.11: UTC) or with a UTC offset."""
    match = _DATETIME.match(text)
    if match is None:
        return None
    parts = [int(part) if part else 0 for part in match.groups()[:7]]
    tzinfo = match.group(8)
    try:
        value = datetime(*parts)
    except ValueError:
        return None
    if tzinfo is None or tzinfo == "datetime.timezone.utc":
        return value
    offset = _TIMEDELTA.match(tzinfo)
    if offset is None:
        return None  # an offset we cannot read: better no time than a wrong one
    days, seconds, microseconds = (int(part) if part else 0 for part in offset.groups())
    try:
        return value - timedelta(days=days, seconds=seconds, microseconds=microseconds)
    except OverflowError:
        return None
