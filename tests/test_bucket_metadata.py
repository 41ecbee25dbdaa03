"""metadata.json of every generation, read without trusting it."""

import json

import pytest

from kingfisher_archive.bucket import MetadataError, parse_metadata

KEY = "scotland/2020/09/metadata.json"


def parse(document):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_metadata(KEY, "scotland", 2020, 9, body)


def test_2021_metadata():
    archived = parse(
        {
            "id": "scotland/20200902_052458",
            "source_id": "scotland",
            "data_version": "20200902_052458",
            "bytes": 239,
            "checksum": "0123456789abcdef0123456789abcdef",
            "files_count": 2,
            "errors_count": 1,
            "reject_reason": None,
            "archived": None,
        }
    )
    assert (archived.generation, archived.id, archived.bytes, archived.files_count, archived.errors_count) == (
        "2021",
        "scotland/20200902_052458",
        239,
        2,
        1,
    )
    assert archived.candidate().checksum == "0123456789abcdef0123456789abcdef"


def test_2020_metadata_has_no_comparable_checksum_and_no_files_count():
    archived = parse(
        {
            "database_id": 123,
            "data_md5": "d41d8cd98f00b204e9800998ecf8427e",
            "data_size": 1000,
            "scrapy_log_file_found": True,
            "errors_count": 3,
        }
    )
    assert (archived.generation, archived.bytes, archived.errors_count) == ("2020", 1000, 3)
    assert archived.checksum is None and archived.files_count is None
    assert archived.id == "scotland/2020-09 (archived)"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        (b"[1, 2]", "is not a JSON object"),
        ({"source_id": "scotland"}, "has neither"),
        ({"bytes": 10}, "'checksum' is None"),
        ({"bytes": "10", "checksum": "0" * 32}, "'bytes' is '10', not a count"),
        ({"bytes": -1, "checksum": "0" * 32}, "'bytes' is -1"),
        ({"data_size": None}, "'data_size' is None"),
    ],
)
def test_broken_metadata_names_the_key_and_the_problem(body, message):
    with pytest.raises(MetadataError, match=message) as excinfo:
        parse(body)
    assert KEY in str(excinfo.value)
