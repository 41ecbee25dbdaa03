"""Write Scrapy logs the way Scrapy and Kingfisher Collect write them, for tests and the demo.

The shape follows real Scrapyd logs of Kingfisher Collect crawls (Scrapy 2.x): a start-up banner with multi-line
settings and middleware lists, the spider arguments, a ``Scraped from`` record per item with the item
pretty-printed over several lines, ERROR records with tracebacks, and at the end the pretty-printed stats dump and
``Spider closed (<reason>)``. Items and stats go through :func:`pprint.pformat` like Scrapy's own ``Item.__repr__``
and stats collector, so line wrapping, key order and ``datetime.datetime(...)`` values are the real ones.
"""

from __future__ import annotations

import os
import pprint
from datetime import datetime, timedelta

_SPIDER_ARGUMENTS = (
    "sample",
    "note",
    "from_date",
    "until_date",
    "crawl_time",
    "keep_collection_open",
    "steps",
    "compile_releases",
    "package_pointer",
    "release_pointer",
    "truncate",
    "table_name",
    "portal",
    "publisher",
    "system",
)
# The fraction of a second given to the stats' start_time when the caller's start_time has none: Scrapy's
# start_time always has one, and the crawl directory's name drops it.
_MICROSECONDS = 417302


class _Clock:
    """Log timestamps that start at ``start`` and move forward one second every few lines, like a busy crawl."""

    def __init__(self, start: datetime) -> None:
        self.now = start.replace(microsecond=0)
        self._lines = 0

    def stamp(self) -> str:
        self._lines += 1
        if self._lines % 4 == 0:
            self.now += timedelta(seconds=1)
        return self.now.strftime("%Y-%m-%d %H:%M:%S")


def write_log(
    path,
    *,
    spider: str,
    job: str,
    start_time: datetime,
    files: int = 2,
    errors: int = 0,
    fileitems: int = 0,
    finish_reason: str | None = "finished",
    stats: bool = True,
    modern_stats: bool = True,
    crawl_time_argument: datetime | None = None,
    spider_arguments: dict | None = None,
    error_lines: int = 0,
    truncate_after_items: int | None = None,
    sigint: bool = False,
    extensions: list[str] | None = None,
) -> str:
    """Write a Scrapyd log of one crawl to ``path`` (parent folders are created) and return the path as a string.

    - ``start_time`` is the crawl's start, naive UTC: the first line's timestamp (whole seconds) and the stats'
      ``start_time`` (with a fraction of a second added if it has none).
    - ``files``, ``fileitems``, ``errors``: how many File, FileItem and FileError items are logged, interleaved.
    - ``finish_reason``: the close reason; None means the crawl is still running, so the log just stops after the
      items. ``stats=False`` with a reason logs ``Spider closed (<reason>)`` without a stats dump.
    - ``modern_stats``: the stats hold ``file_count``/``fileitem_count``/``fileerror_count`` (Kingfisher Collect
      since late 2020; like Scrapy's counters, a count that stayed 0 is absent).
    - ``crawl_time_argument``: passed as the ``crawl_time`` spider argument; ``spider_arguments`` override or add to
      the others (values should be strings or None, as Scrapyd passes them).
    - ``error_lines``: ERROR records (with a traceback), counted in ``log_count/ERROR``.
    - ``truncate_after_items``: the log ends after that many items, partway through the first line of the next
      item's dump (no newline), as when the disk filled up or the process was killed mid-write.
    - ``sigint``: the crawl was killed: the log ends with ``Received SIGINT twice, forcing unclean shutdown``.
    - ``extensions``: the dotted class paths in the ``Enabled extensions:`` record, instead of the usual ones (e.g.
      with ``kingfisher_scrapy.extensions.DatabaseStore`` for a crawl reused for incremental updates).
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    clock = _Clock(start_time)
    lines: list[str] = []
    levels = {"DEBUG": 0, "INFO": 0, "WARNING": 0, "ERROR": 0}

    def log(logger: str, level: str, message: str) -> None:
        levels[level] += 1
        lines.append(f"{clock.stamp()} [{logger}] {level}: {message}")

    arguments = dict.fromkeys(_SPIDER_ARGUMENTS)
    if crawl_time_argument is not None:
        arguments["crawl_time"] = crawl_time_argument.strftime("%Y-%m-%dT%H:%M:%S")
    arguments.update(spider_arguments or {})
    arguments["_job"] = job

    log("scrapy.utils.log", "INFO", "Scrapy 2.5.1 started (bot: kingfisher)")
    log(
        "scrapy.utils.log",
        "INFO",
        "Versions: lxml 4.6.3.0, libxml2 2.9.10, cssselect 1.1.0, parsel 1.6.0, w3lib 1.22.0, Twisted 21.7.0, "
        "Python 3.8.10 (default, Jun  2 2021, 10:49:15) - [GCC 9.4.0], pyOpenSSL 20.0.1 (OpenSSL 1.1.1k  25 Mar "
        "2021), cryptography 3.4.7, Platform Linux-5.4.0-84-generic-x86_64-with-glibc2.29",
    )
    log("scrapy.crawler", "INFO", f"Overridden settings:\n{pprint.pformat(_settings(spider, job))}")
    log("scrapy.extensions.telnet", "INFO", "Telnet Password: 5d3f0c8a9b7e6a41")
    enabled = _EXTENSIONS if extensions is None else extensions
    log("scrapy.middleware", "INFO", f"Enabled extensions:\n{pprint.pformat(enabled)}")
    log("scrapy.middleware", "INFO", f"Enabled item pipelines:\n{pprint.pformat(_PIPELINES)}")
    log(spider, "INFO", f"Spider arguments: {arguments!r}")
    log("scrapy.core.engine", "INFO", "Spider opened")
    log("scrapy.extensions.logstats", "INFO", "Crawled 0 pages (at 0 pages/min), scraped 0 items (at 0 items/min)")

    kinds = _interleave(files, fileitems, errors)
    base = f"https://data.example.org/{spider}"
    responses = {"200": 0, "503": 0}
    for index, kind in enumerate(kinds):
        if truncate_after_items is not None and index == truncate_after_items:
            item = _item(kind, base, index)
            log("scrapy.core.scraper", "DEBUG", f"Scraped from <200 {item['url']}>")
            first = pprint.pformat(item).splitlines()[0]
            lines.append(first[: max(1, len(first) // 2)])
            return _write(path, lines, newline_at_end=False)
        if error_lines and index < error_lines:
            _log_error(log, base, index)
        item = _item(kind, base, index)
        status = "503" if kind == "FileError" else "200"
        responses[status] += 1
        log("scrapy.core.engine", "DEBUG", f"Crawled ({status}) <GET {item['url']}> (referer: None)")
        log("scrapy.core.scraper", "DEBUG", f"Scraped from <{status} {item['url']}>\n{pprint.pformat(item)}")
    for index in range(len(kinds), error_lines):
        _log_error(log, base, index)
    if truncate_after_items is not None:  # fewer items than the cut: the log stops after the last one
        return _write(path, lines, newline_at_end=False)

    if sigint:
        log("scrapy.crawler", "INFO", "Received SIGINT, shutting down gracefully. Send again to force ")
        log("scrapy.core.engine", "INFO", "Closing spider (shutdown)")
        log("scrapy.crawler", "INFO", "Received SIGINT twice, forcing unclean shutdown")
        return _write(path, lines)
    if finish_reason is None:
        return _write(path, lines)

    log("scrapy.core.engine", "INFO", f"Closing spider ({finish_reason})")
    if stats:
        started = start_time if start_time.microsecond else start_time.replace(microsecond=_MICROSECONDS)
        finished = clock.now.replace(microsecond=(_MICROSECONDS * 7) % 1_000_000)
        dump = {
            "downloader/request_bytes": 311 * len(kinds),
            "downloader/request_count": len(kinds),
            "downloader/request_method_count/GET": len(kinds),
            "downloader/response_bytes": 48211 * len(kinds),
            "downloader/response_count": len(kinds),
            "elapsed_time_seconds": round((finished - started).total_seconds(), 6),
            "finish_reason": finish_reason,
            "finish_time": finished,
            "item_scraped_count": len(kinds),
            "log_count/DEBUG": levels["DEBUG"],
            "log_count/INFO": levels["INFO"],
            "memusage/max": 91_357_184,
            "memusage/startup": 62_808_064,
            "response_received_count": len(kinds),
            "scheduler/dequeued": len(kinds),
            "scheduler/enqueued": len(kinds),
            "start_time": started,
        }
        for status, count in responses.items():
            if count:
                dump[f"downloader/response_status_count/{status}"] = count
        if levels["ERROR"]:
            dump["log_count/ERROR"] = levels["ERROR"]
            dump["spider_exceptions/ValueError"] = levels["ERROR"]
        if modern_stats:
            for key, count in (("file_count", files), ("fileitem_count", fileitems), ("fileerror_count", errors)):
                if count:
                    dump[key] = count
        log("scrapy.statscollectors", "INFO", f"Dumping Scrapy stats:\n{pprint.pformat(dump)}")
    log("scrapy.core.engine", "INFO", f"Spider closed ({finish_reason})")
    return _write(path, lines)


_EXTENSIONS = [
    "scrapy.extensions.corestats.CoreStats",
    "scrapy.extensions.memusage.MemoryUsage",
    "scrapy.extensions.logstats.LogStats",
    "kingfisher_scrapy.extensions.KingfisherFilesStore",
    "kingfisher_scrapy.extensions.KingfisherItemCount",
    "kingfisher_scrapy.extensions.KingfisherProcessAPI",
]
_PIPELINES = [
    "kingfisher_scrapy.pipelines.Validate",
    "kingfisher_scrapy.pipelines.Sample",
    "kingfisher_scrapy.pipelines.Pluck",
]


def _settings(spider: str, job: str) -> dict:
    return {
        "BOT_NAME": "kingfisher",
        "CONCURRENT_REQUESTS": 32,
        "LOG_FILE": f"logs/kingfisher/{spider}/{job}.log",
        "NEWSPIDER_MODULE": "kingfisher_scrapy.spiders",
        "SPIDER_MODULES": ["kingfisher_scrapy.spiders"],
        "TELNETCONSOLE_ENABLED": False,
    }


def _interleave(files: int, fileitems: int, errors: int) -> list[str]:
    """Spread the kinds evenly, the way a crawl's failures arrive among its successes."""
    tagged = []
    for kind, count in (("File", files), ("FileItem", fileitems), ("FileError", errors)):
        tagged.extend(((index + 0.5) / count, kind) for index in range(count))
    return [kind for _, kind in sorted(tagged)]


def _item(kind: str, base: str, index: int) -> dict:
    url = f"{base}/releases?page={index + 1}"
    name = f"page-{index + 1}.json"
    if kind == "FileError":
        return {"errors": {"http_code": 503}, "file_name": name, "url": url}
    data = (
        b'{"uri": "' + url.encode() + b'", "publishedDate": "2020-09-01T00:00:00Z", "releases": [{"ocid": '
        b'"ocds-213czf-' + str(index).encode() + b'", "id": "1", "date": "2020-09-01T00:00:00Z", "tag": ["tender"]}]}'
    )
    item = {"data": data, "data_type": "release_package", "file_name": name, "url": url}
    if kind == "FileItem":
        item["data_type"] = "release"
        item["number"] = index + 1
    return item


def _log_error(log, base: str, index: int) -> None:
    log(
        "scrapy.core.scraper",
        "ERROR",
        f"Spider error processing <GET {base}/releases?page={index + 1}> (referer: None)\n"
        "Traceback (most recent call last):\n"
        '  File "/home/ocdskfs/scrapyd/.ve/lib/python3.8/site-packages/twisted/internet/defer.py", line 662, in '
        "_runCallbacks\n"
        "    current.result = callback(current.result, *args, **kw)\n"
        '  File "/home/ocdskfs/scrapyd/kingfisher_scrapy/base_spider.py", line 240, in parse_json_lines\n'
        "    raise ValueError(f'unexpected response: {response.status}')\n"
        "ValueError: unexpected response: 200",
    )


def _write(path: str, lines: list[str], *, newline_at_end: bool = True) -> str:
    text = "\n".join(lines) + ("\n" if newline_at_end else "")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
