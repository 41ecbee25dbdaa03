"""The Scrapy log room: what a log says about its crawl, and which log belongs to a crawl directory.

Logs come from the harness writer (realistic, configurable) and from literal logs written out below, so the writer
is not the only judge of what a real log looks like.
"""

import os
import random
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from kingfisher_archive import crawl, scrapy_log
from kingfisher_archive.scrapy_log import LogError, ScrapyLog, find, parse, read_crawl_time
from scripts.demo_kit.scrapy_logs import write_log

T0 = datetime(2020, 9, 2, 5, 24, 58)

# A 2020 log: Scrapy Items pretty-printed with their data, no file_count stats (they arrived in late 2020), a
# dropped duplicate (not scraped, so not counted), and a FileError whose nested errors mention `data_type`.
OLD_LOG = """\
2020-09-02 05:24:57 [scrapy.utils.log] INFO: Scrapy 2.3.0 started (bot: kingfisher)
2020-09-02 05:24:57 [scrapy.crawler] INFO: Overridden settings:
{'BOT_NAME': 'kingfisher',
 'LOG_FILE': 'logs/kingfisher/scotland/3487b29602b311ebaad50c9d92c523cb.log',
 'SPIDER_MODULES': ['kingfisher_scrapy.spiders']}
2020-09-02 05:24:57 [scotland] INFO: Spider arguments: {'sample': None, 'note': "Ann's \\"full\\" run", \
'from_date': None, 'until_date': None, 'crawl_time': None, '_job': '3487b29602b311ebaad50c9d92c523cb'}
2020-09-02 05:24:58 [scrapy.core.engine] INFO: Spider opened
2020-09-02 05:24:59 [scrapy.core.engine] DEBUG: Crawled (200) <GET https://www.example.gov.uk/api/1> (referer: None)
2020-09-02 05:24:59 [scrapy.core.scraper] DEBUG: Scraped from <200 https://www.example.gov.uk/api/1>
{'data': b'{"releases": [{"ocid": "ocds-r6hvlu-1", "tag": ["award"], "note": "x'
         b' \\'number\\': 3, \\'errors\\': {}"}]}',
 'data_type': 'release_package',
 'file_name': 'page-1.json',
 'url': 'https://www.example.gov.uk/api/1'}
2020-09-02 05:24:59 [scrapy.core.scraper] WARNING: Dropped: Duplicate File: 'page-1.json'
{'data': b'{"releases": []}',
 'data_type': 'release_package',
 'file_name': 'page-1.json',
 'url': 'https://www.example.gov.uk/api/1'}
2020-09-02 05:25:00 [scrapy.core.scraper] DEBUG: Scraped from <200 https://www.example.gov.uk/api/2>
{'data': b'{"releases": [{"ocid": "ocds-r6hvlu-2"}]}',
 'data_type': 'release',
 'file_name': 'page-2.json',
 'number': 1,
 'url': 'https://www.example.gov.uk/api/2'}
2020-09-02 05:25:01 [scrapy.core.scraper] DEBUG: Scraped from <503 https://www.example.gov.uk/api/3>
{'errors': {'data_type': 'release_package', 'http_code': 503},
 'file_name': 'page-3.json',
 'url': 'https://www.example.gov.uk/api/3'}
2020-09-02 05:25:02 [scrapy.core.scraper] ERROR: Spider error processing <GET https://www.example.gov.uk/api/4>
Traceback (most recent call last):
  File "/home/ocdskfs/scrapyd/kingfisher_scrapy/base_spider.py", line 88, in parse
    {'data_type': 'release_package'}
KeyError: 'releases'
2020-09-02 05:25:03 [scrapy.core.engine] INFO: Closing spider (finished)
2020-09-02 05:25:03 [scrapy.statscollectors] INFO: Dumping Scrapy stats:
{'downloader/request_count': 4,
 'elapsed_time_seconds': 5.123,
 'finish_reason': 'finished',
 'finish_time': datetime.datetime(2020, 9, 2, 5, 25, 3, 97811),
 'item_dropped_count': 1,
 'item_scraped_count': 3,
 'log_count/ERROR': 1,
 'start_time': datetime.datetime(2020, 9, 2, 5, 24, 58, 974120)}
2020-09-02 05:25:03 [scrapy.core.engine] INFO: Spider closed (finished)
"""

# A 2024 log at LOG_LEVEL=INFO: no item is logged at all, only the stats know how many files there are. Scrapy 2.11
# stats carry a UTC tzinfo.
MODERN_INFO_LOG = """\
2024-03-01 00:00:05 [scrapy.utils.log] INFO: Scrapy 2.11.1 started (bot: kingfisher)
2024-03-01 00:00:05 [moldova] INFO: Spider arguments: {'sample': None, 'crawl_time': None, '_job': 'f00d'}
2024-03-01 00:00:06 [scrapy.core.engine] INFO: Spider opened
2024-03-01 00:31:40 [moldova] ERROR: 404 https://public.example.md/ocds/2021
2024-03-01 01:12:09 [scrapy.core.engine] INFO: Closing spider (closespider_errorcount)
2024-03-01 01:12:09 [scrapy.statscollectors] INFO: Dumping Scrapy stats:
{'file_count': 1234,
 'finish_reason': 'closespider_errorcount',
 'finish_time': datetime.datetime(2024, 3, 1, 1, 12, 9, 5, tzinfo=datetime.timezone.utc),
 'item_scraped_count': 1234,
 'log_count/ERROR': 1,
 'start_time': datetime.datetime(2024, 3, 1, 0, 0, 6, 250000, tzinfo=datetime.timezone.utc)}
2024-03-01 01:12:09 [scrapy.core.engine] INFO: Spider closed (closespider_errorcount)
"""

# A 2024 log at DEBUG: Kingfisher Collect's LogFormatter logs items as one-line dicts without their data.
MODERN_DEBUG_LOG = """\
2024-03-01 00:00:05 [scrapy.utils.log] INFO: Scrapy 2.11.1 started (bot: kingfisher)
2024-03-01 00:00:05 [moldova] INFO: Spider arguments: {'sample': None, 'crawl_time': '2024-03-01T00:00:00', \
'_job': 'beef'}
2024-03-01 00:00:07 [scrapy.core.scraper] DEBUG: Scraped from <200 https://public.example.md/ocds/1>
{'file_name': '1.json', 'url': 'https://public.example.md/ocds/1', 'data_type': 'release_package'}
2024-03-01 00:00:07 [scrapy.core.scraper] DEBUG: Scraped from <200 https://public.example.md/ocds/2>
{'file_name': '2.json', 'url': 'https://public.example.md/ocds/2', 'data_type': 'release', 'number': 4}
2024-03-01 00:00:08 [scrapy.core.scraper] DEBUG: Scraped from <200 https://public.example.md/ocds/3>
{'file_name': '3.json', 'url': 'https://public.example.md/ocds/3', 'data_type': 'record_package'}
2024-03-01 00:00:09 [scrapy.core.engine] INFO: Closing spider (finished)
2024-03-01 00:00:09 [scrapy.core.engine] INFO: Spider closed (finished)
"""


def write_text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_finished_crawl_written_like_kingfisher_collect(tmp_path):
    path = write_log(
        tmp_path / "scotland" / "abc.log", spider="scotland", job="abc", start_time=T0, files=3, errors=1, fileitems=2
    )

    log = parse(path)

    assert isinstance(log, ScrapyLog)
    assert log.path == path
    assert log.is_finished()
    assert log.finish_reason == "finished"
    assert log.has_stats
    assert (log.file_items, log.fileerror_items, log.fileitem_items) == (3, 1, 2)
    assert (log.files_count, log.errors_count) == (3, 1)
    assert log.stats["item_scraped_count"] == 6
    assert log.stats["finish_reason"] == "finished"
    assert log.start_time == T0.replace(microsecond=417302)
    assert (log.crawl_time, log.crawl_time_source) == (T0, "start_time")
    assert log.job == "abc"
    assert log.spider_arguments["_job"] == "abc"
    assert log.spider_arguments["from_date"] is None
    assert not log.is_subset()
    assert log.error_lines == 0
    # Floats and datetimes are not among the scalar stats.
    assert "elapsed_time_seconds" not in log.stats
    assert "start_time" not in log.stats


def test_old_literal_log_counts_items_by_their_top_level_keys(tmp_path):
    log = parse(write_text(tmp_path / "scotland" / "old.log", OLD_LOG))

    # The nested 'data_type' of the FileError and the `'number': 3` inside a data string do not count.
    assert (log.file_items, log.fileitem_items, log.fileerror_items) == (1, 1, 1)
    assert "file_count" not in log.stats
    assert (log.files_count, log.errors_count) == (1, 1)
    assert log.error_lines == 1
    assert log.stats["log_count/ERROR"] == 1
    assert log.stats["item_dropped_count"] == 1
    assert log.is_finished()
    assert log.has_stats
    assert log.job == "3487b29602b311ebaad50c9d92c523cb"
    assert log.spider_arguments["note"] == 'Ann\'s "full" run'
    assert log.crawl_time == datetime(2020, 9, 2, 5, 24, 58)
    assert log.crawl_time_source == "start_time"
    assert log.start_time == datetime(2020, 9, 2, 5, 24, 58, 974120)


def test_stats_are_preferred_to_items_counted_in_the_log(tmp_path):
    log = parse(write_text(tmp_path / "moldova" / "f00d.log", MODERN_INFO_LOG))

    assert log.file_items == 0
    assert log.files_count == 1234
    # No FileError item and no fileerror_count: the 404 logged as an ERROR record counts (the 2025+ rule).
    assert (log.errors_count, log.errors_source) == (1, "ERROR records")
    assert log.finish_reason == "closespider_errorcount"
    assert not log.is_finished()
    assert log.error_lines == 1
    assert log.start_time == datetime(2024, 3, 1, 0, 0, 6, 250000)
    assert (log.crawl_time, log.crawl_time_source) == (datetime(2024, 3, 1, 0, 0, 6), "start_time")


def test_one_line_items_and_finished_without_stats(tmp_path):
    log = parse(write_text(tmp_path / "moldova" / "beef.log", MODERN_DEBUG_LOG))

    assert (log.file_items, log.fileitem_items, log.fileerror_items) == (2, 1, 0)
    assert log.files_count == 2
    assert not log.has_stats
    assert log.stats == {}
    assert log.finish_reason == "finished"
    assert log.is_finished()
    assert (log.crawl_time, log.crawl_time_source) == (datetime(2024, 3, 1), "crawl_time")


def test_old_written_log_without_file_count_stats_counts_items(tmp_path):
    path = write_log(
        tmp_path / "a.log", spider="a", job="j", start_time=T0, files=4, errors=2, fileitems=1, modern_stats=False
    )

    log = parse(path)

    assert "file_count" not in log.stats and "fileerror_count" not in log.stats
    assert (log.files_count, log.errors_count, log.fileitem_items) == (4, 2, 1)


def test_crawl_time_argument_wins_over_start_time(tmp_path):
    crawl_time = datetime(2020, 9, 2, 5, 0, 0)
    path = write_log(tmp_path / "a.log", spider="a", job="j", start_time=T0, crawl_time_argument=crawl_time)

    log = parse(path)

    assert log.spider_arguments["crawl_time"] == "2020-09-02T05:00:00"
    assert (log.crawl_time, log.crawl_time_source) == (crawl_time, "crawl_time")
    assert read_crawl_time(path) == (crawl_time, "crawl_time")


def test_unreadable_crawl_time_argument_falls_back_to_start_time(tmp_path):
    path = write_log(
        tmp_path / "a.log", spider="a", job="j", start_time=T0, spider_arguments={"crawl_time": "yesterday"}
    )

    assert (parse(path).crawl_time, parse(path).crawl_time_source) == (T0, "start_time")
    assert read_crawl_time(path) == (T0, "start_time")


def test_sigint_crawl_is_unfinished_and_dated_by_its_first_line(tmp_path):
    path = write_log(tmp_path / "a.log", spider="a", job="j", start_time=T0.replace(microsecond=900000), sigint=True)

    log = parse(path)

    with open(path) as f:
        assert f.read().rstrip().endswith("Received SIGINT twice, forcing unclean shutdown")
    assert log.finish_reason is None
    assert not log.is_finished()
    assert not log.has_stats
    assert log.start_time is None
    assert (log.crawl_time, log.crawl_time_source) == (T0, "first_line")
    assert log.files_count == 2
    assert read_crawl_time(path) == (T0, "first_line")


def test_running_crawl_has_no_finish_reason(tmp_path):
    log = parse(write_log(tmp_path / "a.log", spider="a", job="j", start_time=T0, files=5, finish_reason=None))

    assert log.finish_reason is None
    assert not log.is_finished()
    assert log.files_count == 5


def test_finished_without_stats_takes_the_reason_from_the_closed_line(tmp_path):
    log = parse(write_log(tmp_path / "a.log", spider="a", job="j", start_time=T0, files=3, stats=False))

    assert log.finish_reason == "finished"
    assert log.is_finished()
    assert not log.has_stats
    assert log.files_count == 3
    assert log.crawl_time_source == "first_line"


def test_log_truncated_in_the_first_line_of_an_item(tmp_path):
    path = write_log(tmp_path / "a.log", spider="a", job="j", start_time=T0, files=5, truncate_after_items=3)

    log = parse(path)

    assert not open(path).read().endswith("\n")
    assert log.files_count == 3  # the cut item cannot be told apart from anything yet
    assert log.finish_reason is None
    assert not log.has_stats


def test_log_truncated_after_an_items_kind_is_known_counts_it(tmp_path):
    # Scrapy logs `Scraped from` after the pipelines stored the file, so a cut-off dump is still a stored file.
    text = OLD_LOG.split(" 'file_name': 'page-1.json',")[0]

    log = parse(write_text(tmp_path / "a.log", text))

    assert log.file_items == 1
    assert log.finish_reason is None


def test_log_truncated_inside_the_stats_dump(tmp_path):
    text = OLD_LOG.split(" 'item_scraped_count'")[0]

    log = parse(write_text(tmp_path / "a.log", text))

    assert not log.has_stats
    assert log.finish_reason == "finished"  # the part of the dump that was written is still read
    assert log.start_time is None


def test_hostile_stats_values_are_ignored(tmp_path):
    text = (
        "2020-09-02 05:24:58 [scrapy.utils.log] INFO: Scrapy 2.3.0 started (bot: kingfisher)\n"
        "2020-09-02 05:25:03 [scrapy.statscollectors] INFO: Dumping Scrapy stats:\n"
        "{'file_count': 7,\n"
        " 'finish_reason': 'fin}ished, really',\n"
        f" 'memusage/max': {'9' * 5000},\n"
        " 'not/a/value': __import__('os').system('false'),\n"
        " 'start_time': datetime.datetime(2020, 13, 40, 5, 24, 58)}\n"
        "2020-09-02 05:25:03 [scrapy.core.engine] INFO: Spider closed (finished)\n"
    )

    log = parse(write_text(tmp_path / "a.log", text))

    assert log.stats == {"file_count": 7, "finish_reason": "fin}ished, really"}
    assert log.finish_reason == "fin}ished, really"  # the stats win over the closed line
    assert log.has_stats
    assert log.start_time is None
    assert (log.crawl_time, log.crawl_time_source) == (T0, "first_line")


@pytest.mark.parametrize(
    ("arguments", "subset"),
    [
        ({}, False),
        ({"from_date": "2020-01-01"}, True),
        ({"until_date": "2020-06-30"}, True),
        ({"year": "2019"}, True),
        ({"publisher": "false"}, True),
        ({"publisher": ""}, False),
        ({"sample": "true"}, True),
        ({"sample": "10"}, True),
        ({"sample": "false"}, False),
        ({"sample": "False"}, False),
        ({"sample": "0"}, False),
        ({"note": "monthly", "steps": "compile"}, False),
    ],
)
def test_subset_and_sample_arguments(tmp_path, arguments, subset):
    log = parse(write_log(tmp_path / "a.log", spider="a", job="j", start_time=T0, spider_arguments=arguments))

    assert log.is_subset() is subset
    for name, value in arguments.items():
        assert log.spider_arguments[name] == value


def test_error_heavy_crawl(tmp_path):
    path = write_log(tmp_path / "a.log", spider="a", job="j", start_time=T0, files=1, errors=9, error_lines=4)

    log = parse(path)

    assert (log.files_count, log.errors_count) == (1, 9)
    assert log.fileerror_items == 9
    assert log.error_lines == 4
    assert log.stats["log_count/ERROR"] == 4
    assert log.is_finished()


def test_empty_file(tmp_path):
    log = parse(write_text(tmp_path / "a.log", ""))

    assert log.crawl_time is None and log.crawl_time_source is None
    assert log.finish_reason is None
    assert not log.has_stats and not log.is_finished() and not log.is_subset()
    assert (log.files_count, log.errors_count, log.error_lines) == (0, 0, 0)
    assert log.spider_arguments == {} and log.stats == {} and log.job is None
    assert read_crawl_time(str(tmp_path / "a.log")) == (None, None)


def test_unreadable_log_raises_naming_the_path(tmp_path):
    missing = str(tmp_path / "nope.log")
    with pytest.raises(LogError, match="nope.log"):
        parse(missing)
    with pytest.raises(LogError, match="nope.log"):
        read_crawl_time(missing)
    with pytest.raises(LogError, match=str(tmp_path)):
        parse(str(tmp_path))


def test_binary_garbage_among_the_lines(tmp_path):
    clean = write_log(tmp_path / "clean.log", spider="a", job="j", start_time=T0, files=3, errors=1, error_lines=1)
    with open(clean, "rb") as f:
        lines = f.read().split(b"\n")
    rng = random.Random(4)
    garbage = [
        bytes(rng.randrange(256) for _ in range(300)).replace(b"\n", b"").replace(b"\r", b""),
        b"\xff\xfe\x00\x00 {'data_type': 'x'} \xc3\x28 [[[{{{(('",
        b"2020-09-02 05:25:00 [scrapy.core.scraper] DEBUG: Scraped from <200 \xf0\x9f>",
        b"{'unterminated: b'\x00\x01",
    ]
    # Garbage after the spider arguments and after an item; the third is a `Scraped from` with no known item.
    position = next(i for i, line in enumerate(lines) if b"Spider arguments" in line) + 1
    mixed = lines[:position] + garbage + lines[position:]
    mixed_path = tmp_path / "mixed.log"
    mixed_path.write_bytes(b"\n".join(mixed))

    log = parse(str(mixed_path))

    assert (log.files_count, log.errors_count, log.file_items, log.fileerror_items) == (3, 1, 3, 1)
    assert log.is_finished()
    assert log.error_lines == 1
    assert log.crawl_time == T0

    only_garbage = tmp_path / "garbage.log"
    only_garbage.write_bytes(bytes(rng.randrange(256) for _ in range(200_000)))
    log = parse(str(only_garbage))
    assert (log.crawl_time, log.finish_reason, log.files_count) == (None, None, 0)


def test_a_100_mb_line_is_skipped_with_bounded_memory(tmp_path):
    path = tmp_path / "huge.log"
    chunk = b"{\\'releases\\': [{(" * (1 << 16)  # brackets and escaped quotes inside the bytes literal: not structure
    with open(path, "wb") as f:
        f.write(b"2020-09-02 05:24:58 [scrapy.utils.log] INFO: Scrapy 2.3.0 started (bot: kingfisher)\n")
        f.write(b"2020-09-02 05:24:58 [a] INFO: Spider arguments: {'sample': None, '_job': 'j'}\n")
        f.write(b"2020-09-02 05:25:00 [scrapy.core.scraper] DEBUG: Scraped from <200 https://example.com/big>\n")
        f.write(b"{'data': b'")
        written = 0
        while written < 100 * 1024 * 1024:
            f.write(chunk)
            written += len(chunk)
        f.write(
            b"',\n 'data_type': 'release_package',\n 'file_name': 'big.json',\n 'url': 'https://example.com/big'}\n"
        )
        f.write(b"2020-09-02 05:25:01 [scrapy.core.scraper] DEBUG: Scraped from <503 https://example.com/e>\n")
        f.write(b"{'errors': {'http_code': 503}, 'file_name': 'e.json', 'url': 'https://example.com/e'}\n")
        f.write(b"2020-09-02 05:25:02 [scrapy.statscollectors] INFO: Dumping Scrapy stats:\n")
        f.write(b"{'file_count': 1,\n 'finish_reason': 'finished',\n")
        f.write(b" 'start_time': datetime.datetime(2020, 9, 2, 5, 24, 58, 5)}\n")
        f.write(b"2020-09-02 05:25:02 [scrapy.core.engine] INFO: Spider closed (finished)\n")
    assert os.path.getsize(path) > 100 * 1024 * 1024

    tracemalloc.start()
    try:
        log = parse(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 8 * scrapy_log.LINE_LIMIT  # a few copies of the first MiB of the line, not 100 MB
    assert (log.file_items, log.fileerror_items) == (1, 1)
    assert log.has_stats and log.is_finished()
    assert log.stats["file_count"] == 1
    assert (log.crawl_time, log.crawl_time_source) == (T0, "start_time")
    assert read_crawl_time(str(path)) == (T0, "start_time")


def _bytes_read_by_this_process():
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def test_read_crawl_time_reads_only_the_head_and_the_tail(tmp_path):
    if not os.path.exists("/proc/self/io"):
        pytest.skip("needs Linux /proc/self/io to count the bytes read")
    small = write_log(tmp_path / "small.log", spider="a", job="j", start_time=T0, files=1)
    with open(small, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    closing = next(i for i, line in enumerate(lines) if b"Closing spider" in line)
    path = tmp_path / "big.log"
    with open(path, "wb") as f:  # a sparse 8 GiB log: reading it whole would read gigabytes of zeros
        f.write(b"".join(lines[:closing]))
        f.seek(8 << 30)
        f.write(b"\n" + b"".join(lines[closing:]))

    before = _bytes_read_by_this_process()
    result = read_crawl_time(str(path))
    read = _bytes_read_by_this_process() - before

    assert result == (T0, "start_time")
    assert read < 4 * scrapy_log.WINDOW


# Finding a crawl's log.


@pytest.fixture
def logs(tmp_path):
    """A spider folder with three crawls' logs, as Scrapyd keeps them, plus files that are not logs."""
    folder = tmp_path / "logs" / "scotland"
    write_log(folder / "older.log", spider="scotland", job="older", start_time=T0 - timedelta(days=1))
    write_log(folder / "match.log", spider="scotland", job="match", start_time=T0.replace(microsecond=999999))
    write_log(folder / "later.log", spider="scotland", job="later", start_time=T0 + timedelta(seconds=4))
    write_log(folder / "copy.log.stats", spider="scotland", job="x", start_time=T0)
    write_log(folder / "copy.txt", spider="scotland", job="y", start_time=T0)
    return str(tmp_path / "logs")


@pytest.mark.parametrize(("seconds", "found"), [(0, True), (1, True), (2, True), (3, False), (-1, False)])
def test_find_matches_within_three_seconds_after_the_crawl_time(logs, seconds, found):
    data_version = T0 + timedelta(seconds=seconds)

    path = find(logs, "scotland", data_version)

    assert path == (os.path.join(logs, "scotland", "match.log") if found else None)


def test_find_accepts_the_directory_name_parsed_and_aware_datetimes(logs):
    data_version = crawl.parse_data_version("20200902_052500")
    assert find(logs, "scotland", data_version) == os.path.join(logs, "scotland", "match.log")
    aware = (T0 + timedelta(seconds=4)).replace(tzinfo=UTC)
    assert find(logs, "scotland", aware) == os.path.join(logs, "scotland", "later.log")


def test_find_uses_the_job_named_log_directly(logs):
    far_away = datetime(2030, 1, 1)

    assert find(logs, "scotland", far_away, job="older") == os.path.join(logs, "scotland", "older.log")
    # An unknown job falls back to matching by time.
    assert find(logs, "scotland", T0, job="gone") == os.path.join(logs, "scotland", "match.log")


def test_find_ignores_stats_files_and_other_files(tmp_path):
    folder = tmp_path / "scotland"
    write_log(folder / "abc.log.stats", spider="scotland", job="abc", start_time=T0)
    write_log(folder / "abc.log.1", spider="scotland", job="abc", start_time=T0)

    assert find(str(tmp_path), "scotland", T0) is None
    assert find(str(tmp_path), "scotland", T0, job="abc") is None


def test_find_without_a_spider_folder(tmp_path):
    assert find(str(tmp_path), "scotland", T0) is None
    assert find(str(tmp_path / "missing"), "scotland", T0) is None


@pytest.mark.parametrize("source_id", ["..", ".", "", "a/b", "../logs/scotland", "scot\0land"])
def test_find_never_leaves_the_spider_folder(tmp_path, source_id):
    logs = tmp_path / "logs"
    write_log(tmp_path / "outside.log", spider="x", job="outside", start_time=T0)
    write_log(logs / "scotland" / "inside.log", spider="scotland", job="inside", start_time=T0)
    write_log(logs / "a" / "b" / "nested.log", spider="x", job="nested", start_time=T0)

    assert find(str(logs), source_id, T0) is None
    assert find(str(logs), "scotland", T0, job="../../outside") == str(logs / "scotland" / "inside.log")


def test_find_ignores_symlinks_that_could_point_anywhere(tmp_path):
    outside = write_log(tmp_path / "elsewhere" / "x.log", spider="x", job="x", start_time=T0)
    folder = tmp_path / "logs" / "scotland"
    folder.mkdir(parents=True)
    os.symlink(outside, folder / "x.log")

    assert find(str(tmp_path / "logs"), "scotland", T0) is None
    assert find(str(tmp_path / "logs"), "scotland", T0, job="x") is None


def test_find_dates_a_log_without_stats_by_its_crawl_time_argument(tmp_path):
    crawl_time = datetime(2021, 5, 1, 12, 0, 0)
    write_log(
        tmp_path / "kenya" / "a.log",
        spider="kenya",
        job="a",
        start_time=crawl_time + timedelta(minutes=5),
        crawl_time_argument=crawl_time,
        finish_reason=None,
    )

    assert find(str(tmp_path), "kenya", crawl_time) == str(tmp_path / "kenya" / "a.log")
    assert find(str(tmp_path), "kenya", crawl_time + timedelta(minutes=5)) is None


def test_errors_are_fileerror_items_when_the_log_has_them_and_error_records_otherwise(tmp_path):
    old = parse(
        write_log(
            tmp_path / "old.log",
            spider="a",
            job="old",
            start_time=datetime(2020, 1, 1),
            files=3,
            errors=2,
            error_lines=5,
            modern_stats=False,
        )
    )
    assert (old.errors_count, old.errors_source) == (2, "FileError items")

    counted = parse(
        write_log(
            tmp_path / "stats.log",
            spider="a",
            job="stats",
            start_time=datetime(2022, 1, 1),
            files=3,
            errors=2,
            error_lines=5,
        )
    )
    assert (counted.errors_count, counted.errors_source) == (2, "fileerror_count")

    # 2025 on: no FileError items exist; each failed file is an ERROR record.
    modern = parse(
        write_log(
            tmp_path / "new.log",
            spider="a",
            job="new",
            start_time=datetime(2025, 6, 1),
            files=3,
            errors=0,
            error_lines=4,
        )
    )
    assert (modern.errors_count, modern.errors_source) == (4, "ERROR records")

    clean = parse(write_log(tmp_path / "clean.log", spider="a", job="clean", start_time=datetime(2025, 6, 1), files=3))
    assert (clean.errors_count, clean.files_count) == (0, 3)


# Reuse for incremental updates. Scrapy logs the extensions it loaded at start-up, `pprint.pformat` of the list of
# their dotted paths; an extension that raised NotConfigured (Kingfisher Collect's DatabaseStore without a
# DATABASE_URL) is absent from it and logged as `Disabled <path>: <why>` instead.

# A 2024 incremental crawl: DatabaseStore is on, and crawl_time pins the directory that the next crawl writes into.
INCREMENTAL_LOG = """\
2024-05-01 03:00:01 [scrapy.utils.log] INFO: Scrapy 2.11.2 started (bot: kingfisher)
2024-05-01 03:00:01 [scrapy.middleware] INFO: Enabled extensions:
['scrapy.extensions.corestats.CoreStats',
 'scrapy.extensions.logcount.LogCount',
 'scrapy.extensions.memusage.MemoryUsage',
 'scrapy.extensions.logstats.LogStats',
 'kingfisher_scrapy.extensions.Pluck',
 'kingfisher_scrapy.extensions.FilesStore',
 'kingfisher_scrapy.extensions.ItemCount',
 'kingfisher_scrapy.extensions.DatabaseStore']
2024-05-01 03:00:01 [scrapy.middleware] INFO: Enabled downloader middlewares:
['scrapy.downloadermiddlewares.offsite.OffsiteMiddleware',
 'scrapy.downloadermiddlewares.retry.RetryMiddleware',
 'scrapy.downloadermiddlewares.stats.DownloaderStats']
2024-05-01 03:00:01 [honduras_portal] INFO: Spider arguments: {'sample': None, \
'crawl_time': '2024-01-01T00:00:00', '_job': 'c0ffee'}
2024-05-01 03:00:02 [honduras_portal] INFO: Resuming crawl from 2024-04-30T23:59:59
2024-05-01 03:04:10 [scrapy.core.engine] INFO: Closing spider (finished)
2024-05-01 03:04:10 [honduras_portal] INFO: Reading the data/honduras_portal/20240101_000000 crawl directory
2024-05-01 03:04:10 [scrapy.statscollectors] INFO: Dumping Scrapy stats:
{'file_count': 12,
 'finish_reason': 'finished',
 'start_time': datetime.datetime(2024, 5, 1, 3, 0, 1, 5120, tzinfo=datetime.timezone.utc)}
2024-05-01 03:04:11 [scrapy.core.engine] INFO: Spider closed (finished)
"""

# The same crawler without a DATABASE_URL: DatabaseStore is named, but only as disabled.
NOT_INCREMENTAL_LOG = """\
2024-05-01 03:00:01 [scrapy.utils.log] INFO: Scrapy 2.11.2 started (bot: kingfisher)
2024-05-01 03:00:01 [scrapy.middleware] WARNING: Disabled kingfisher_scrapy.extensions.DatabaseStore: \
DATABASE_URL is not set.
2024-05-01 03:00:01 [scrapy.middleware] INFO: Enabled extensions:
['scrapy.extensions.corestats.CoreStats',
 'scrapy.extensions.logcount.LogCount',
 'kingfisher_scrapy.extensions.FilesStore',
 'kingfisher_scrapy.extensions.KingfisherProcessAPI2',
 'kingfisher_scrapy.extensions.ItemCount']
2024-05-01 03:00:01 [scrapy.middleware] INFO: Enabled item pipelines:
['kingfisher_scrapy.pipelines.Sample',
 'kingfisher_scrapy.pipelines.DatabaseStore',
 'kingfisher_scrapy.pipelines.Validate']
2024-05-01 03:00:01 [honduras_portal] INFO: Spider arguments: {'sample': None, 'note': 'DatabaseStore', \
'_job': 'c0ffee'}
2024-05-01 03:00:02 [scrapy.core.scraper] DEBUG: Scraped from <200 https://example.hn/1>
{'file_name': '1.json', 'url': 'https://example.hn/1', 'data_type': 'release_package', \
'note': 'kingfisher_scrapy.extensions.DatabaseStore'}
2024-05-01 03:04:11 [scrapy.core.engine] INFO: Spider closed (finished)
"""


def test_a_crawl_with_database_store_enabled_is_reused(tmp_path):
    log = parse(write_text(tmp_path / "honduras_portal" / "c0ffee.log", INCREMENTAL_LOG))

    assert log.is_reused()
    assert log.database_store
    assert log.enabled_extensions == (
        "scrapy.extensions.corestats.CoreStats",
        "scrapy.extensions.logcount.LogCount",
        "scrapy.extensions.memusage.MemoryUsage",
        "scrapy.extensions.logstats.LogStats",
        "kingfisher_scrapy.extensions.Pluck",
        "kingfisher_scrapy.extensions.FilesStore",
        "kingfisher_scrapy.extensions.ItemCount",
        "kingfisher_scrapy.extensions.DatabaseStore",
    )
    # The rest of the log reads as before: the list and the next middleware list are not taken for anything else.
    assert log.spider_arguments["crawl_time"] == "2024-01-01T00:00:00"
    assert (log.crawl_time, log.crawl_time_source) == (datetime(2024, 1, 1), "crawl_time")
    assert (log.files_count, log.errors_count, log.finish_reason) == (12, 0, "finished")
    assert log.is_finished()


def test_database_store_disabled_or_named_elsewhere_is_not_reuse(tmp_path):
    log = parse(write_text(tmp_path / "honduras_portal" / "c0ffee.log", NOT_INCREMENTAL_LOG))

    assert not log.is_reused()
    assert log.enabled_extensions == (
        "scrapy.extensions.corestats.CoreStats",
        "scrapy.extensions.logcount.LogCount",
        "kingfisher_scrapy.extensions.FilesStore",
        "kingfisher_scrapy.extensions.KingfisherProcessAPI2",
        "kingfisher_scrapy.extensions.ItemCount",
    )
    assert log.file_items == 1


def test_a_log_without_its_extensions_is_not_known_to_be_reused(tmp_path):
    log = parse(write_text(tmp_path / "moldova" / "f00d.log", MODERN_INFO_LOG))
    assert log.enabled_extensions is None
    assert not log.is_reused()

    empty = parse(write_text(tmp_path / "moldova" / "empty.log", "2024-05-01 03:00:01 [scrapy.middleware] INFO: "))
    assert empty.enabled_extensions is None
    assert not empty.is_reused()


@pytest.mark.parametrize(
    "name",
    [
        "kingfisher_scrapy.extensions.DatabaseStore",
        "kingfisher_scrapy.extensions.database_store.DatabaseStore",
        "myproject.vendored.kingfisher.extensions.database_store.DatabaseStore",
        "DatabaseStore",
    ],
)
def test_database_store_is_recognised_at_any_module_path(tmp_path, name):
    extensions = ["scrapy.extensions.corestats.CoreStats", name, "scrapy.extensions.logstats.LogStats"]
    log = parse(write_log(tmp_path / "a" / "j.log", spider="a", job="j", start_time=T0, extensions=extensions))
    assert log.is_reused()
    assert log.enabled_extensions == tuple(extensions)
    assert (log.files_count, log.finish_reason) == (2, "finished")


@pytest.mark.parametrize(
    "name",
    [
        "kingfisher_scrapy.extensions.DatabaseStoreLite",
        "kingfisher_scrapy.extensions.NoDatabaseStore",
        "kingfisher_scrapy.extensions.DatabaseStore.helper",
    ],
)
def test_other_names_that_contain_database_store_are_not_it(tmp_path, name):
    log = parse(write_log(tmp_path / "a" / "j.log", spider="a", job="j", start_time=T0, extensions=[name]))
    assert log.enabled_extensions == (name,)  # short: pprint writes it on one line
    assert not log.is_reused()


def test_extensions_set_as_classes_print_as_class_reprs(tmp_path):
    # Scrapy accepts classes as well as paths in EXTENSIONS; pprint writes those as `<class '...'>`.
    text = """\
2024-05-01 03:00:01 [scrapy.middleware] INFO: Enabled extensions:
[<class 'scrapy.extensions.corestats.CoreStats'>,
 <class 'kingfisher_scrapy.extensions.database_store.DatabaseStore'>]
2024-05-01 03:04:11 [scrapy.core.engine] INFO: Spider closed (finished)
"""
    log = parse(write_text(tmp_path / "a" / "j.log", text))
    assert log.is_reused()
    assert log.enabled_extensions == (
        "scrapy.extensions.corestats.CoreStats",
        "kingfisher_scrapy.extensions.database_store.DatabaseStore",
    )
    assert log.finish_reason == "finished"


@pytest.mark.parametrize(
    ("cut", "names", "reused"),
    [
        # The log ends inside the list, in the middle of DatabaseStore's name: a name cut off is no name.
        ("'kingfisher_scrapy.extensions.Datab", 7, False),
        # ... just after it, before the closing bracket.
        ("'kingfisher_scrapy.extensions.DatabaseStore'", 8, True),
        # ... right after the record's first line: an empty reading, not a crash.
        ("", 0, False),
    ],
)
def test_a_log_cut_off_inside_the_extensions_list(tmp_path, cut, names, reused):
    head, _, _ = INCREMENTAL_LOG.partition(" 'kingfisher_scrapy.extensions.DatabaseStore']")
    if cut == "":
        head = INCREMENTAL_LOG.partition("\n['scrapy")[0]
        text = head + "\n"
    else:
        text = head + " " + cut
    log = parse(write_text(tmp_path / "a" / "j.log", text))
    assert len(log.enabled_extensions) == names
    assert log.is_reused() is reused
    assert log.finish_reason is None


def test_a_truncated_list_ends_at_the_next_record(tmp_path):
    # The list lost its last lines (and its bracket) to a write error; the next record starts as usual.
    text = INCREMENTAL_LOG.replace(" 'kingfisher_scrapy.extensions.ItemCount',\n", "").replace(
        " 'kingfisher_scrapy.extensions.DatabaseStore']\n", ""
    )
    log = parse(write_text(tmp_path / "a" / "j.log", text))
    assert log.enabled_extensions[-1] == "kingfisher_scrapy.extensions.FilesStore"
    assert not log.is_reused()
    # The downloader middlewares that follow are not extensions.
    assert "scrapy.downloadermiddlewares.retry.RetryMiddleware" not in log.enabled_extensions
    assert log.files_count == 12


def test_only_the_first_extensions_record_counts_and_it_must_be_a_list(tmp_path):
    text = """\
2024-05-01 03:00:01 [scrapy.middleware] INFO: Enabled extensions:
{'kingfisher_scrapy.extensions.DatabaseStore': 700}
2024-05-01 03:00:01 [scrapy.middleware] INFO: Enabled extensions:
['kingfisher_scrapy.extensions.DatabaseStore']
2024-05-01 03:00:02 [somebody] INFO: Enabled extensions:
['kingfisher_scrapy.extensions.DatabaseStore']
"""
    log = parse(write_text(tmp_path / "a" / "j.log", text))
    assert log.enabled_extensions == ()
    assert not log.is_reused()


def test_a_hostile_extensions_list_is_read_with_bounded_memory(tmp_path):
    names = [f"x.y.Extension{i}" for i in range(20_000)]
    names.append("z" * (scrapy_log.EXTENSION_NAME_LIMIT + 1))
    names.append("kingfisher_scrapy.extensions.DatabaseStore")  # past the limit: still seen
    text = (
        "2024-05-01 03:00:01 [scrapy.middleware] INFO: Enabled extensions:\n"
        + "["
        + ",\n ".join(repr(name) for name in names)
        + "]\n"
        + "2024-05-01 03:04:11 [scrapy.core.engine] INFO: Spider closed (finished)\n"
    )
    log = parse(write_text(tmp_path / "a" / "j.log", text))
    assert len(log.enabled_extensions) == scrapy_log.EXTENSIONS_LIMIT
    assert log.enabled_extensions[:2] == ("x.y.Extension0", "x.y.Extension1")
    assert log.is_reused()
    assert log.finish_reason == "finished"
