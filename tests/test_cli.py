"""``python -m kingfisher_archive`` in a subprocess against a real S3 server, as an operator would run it."""

import json
import os
import shlex
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from kingfisher_archive import __version__
from scripts.demo_kit.kingfisher_host import tree
from tests.test_restore import archive, put_month

ROOT = Path(__file__).resolve().parent.parent


def one_line_error(result, returncode=1):
    assert result.returncode == returncode, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


FILES = {"a.json": b"[]", "000/b.json": b'{"b": 1}', "FFF/c.json": os.urandom(3000), "empty": None}


def test_list_prints_a_table_of_months(cli, client, bucket, tmp_path):
    archive(client, bucket, tmp_path, FILES)
    put_month(client, bucket, "scotland/2021/1/", data=b"orphan")

    result = cli("list", "scotland", "--bucket", bucket)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = ["MONTH", "PREFIX", "DATA", "VERSION", "BYTES", "COMPRESSED", "CODEC", "LOG", "GEN", "PROBLEM"]
    assert lines[0].split() == header
    compressed = client.head_object(Bucket=bucket, Key="scotland/2020/09/data.tar.zst")["ContentLength"]
    assert lines[1].split() == [
        "2020-09",
        "scotland/2020/09/",
        "20200902_052458",
        "3010",
        str(compressed),
        "zstd",
        "yes",
        "2021",
    ]
    # Data without metadata.json, as the older tools named it: LZ4.
    assert lines[2].split() == ["2021-01", "scotland/2021/1/", "-", "-", "6", "lz4", "no", "-", "metadata", "missing"]
    # Every object of the test server's bucket is listed in the class it was written in: STANDARD.
    assert lines[3].startswith("Stored by class: STANDARD ")
    assert "a month at us-east-1 prices as of " in lines[3]
    assert len(lines) == 4

    as_json = cli("list", "scotland", "--json", KINGFISHER_ARCHIVE_BUCKET=bucket)
    assert [row["prefix"] for row in json.loads(as_json.stdout)] == ["scotland/2020/09/", "scotland/2021/1/"]

    empty = cli("list", "mexico", "--bucket", bucket)
    assert (empty.returncode, empty.stdout) == (0, f"No archived months of mexico in s3://{bucket}/\n")


def test_list_shows_the_bytes_per_storage_class_and_the_bill_at_the_prices_set(cli, client, bucket, tmp_path):
    archive(client, bucket, tmp_path, FILES)
    key = "scotland/2020/09/data.tar.zst"
    data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=data, StorageClass="DEEP_ARCHIVE")
    prices = '{"region": "eu-west-1", "as_of": "2026-11-01", "usd_per_gb_month": {"DEEP_ARCHIVE": 0.0018}}'

    result = cli("list", "--bucket", bucket, "--no-airflow", KINGFISHER_ARCHIVE_STORAGE_PRICES=prices)

    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("Stored by class: ")]
    assert line.startswith("Stored by class: ")
    assert "DEEP_ARCHIVE " in line
    assert line.endswith("a month at eu-west-1 prices as of 2026-11-01 (storage only)")
    storage = json.loads(cli("list", "--bucket", bucket, "--json", KINGFISHER_ARCHIVE_STORAGE_PRICES=prices).stdout)[
        "storage"
    ]
    deep = next(c for c in storage["classes"] if c["storage_class"] == "DEEP_ARCHIVE")
    assert (deep["objects"], deep["bytes"], deep["usd_per_gb_month"]) == (1, len(data), 0.0018)
    assert storage["source"] == "$KINGFISHER_ARCHIVE_STORAGE_PRICES"

    bad = cli("list", "--bucket", bucket, KINGFISHER_ARCHIVE_STORAGE_PRICES='{"usd_per_gb_month": {"GLACIER": -1}}')
    assert "$KINGFISHER_ARCHIVE_STORAGE_PRICES has usd_per_gb_month GLACIER: -1" in one_line_error(bad, 2)
    # Refused before the bucket is asked anything: no server listens at this endpoint.
    bad = cli(
        "list",
        "--bucket",
        bucket,
        KINGFISHER_ARCHIVE_STORAGE_PRICES='{"usd_per_gb_month": {"GLACIER": "cheap"}}',
        KINGFISHER_ARCHIVE_ENDPOINT_URL="http://127.0.0.1:9",
    )
    assert "$KINGFISHER_ARCHIVE_STORAGE_PRICES has usd_per_gb_month GLACIER: 'cheap'" in one_line_error(bad, 2)
    waiting = cli(
        "restore",
        "scotland",
        "2020",
        "9",
        str(tmp_path / "out"),
        "--bucket",
        bucket,
        "--wait",
        AIRFLOW_VAR_KINGFISHER_ARCHIVE_THAW_POLL_SECONDS="soon",
        KINGFISHER_ARCHIVE_ENDPOINT_URL="http://127.0.0.1:9",
    )
    assert "$AIRFLOW_VAR_KINGFISHER_ARCHIVE_THAW_POLL_SECONDS is 'soon', not a number of seconds > 0" in (
        one_line_error(waiting, 2)
    )


@pytest.mark.slow
def test_list_without_a_source_lists_every_source_with_its_months_sizes_and_problems(cli, client, bucket, tmp_path):
    from kingfisher_archive.ledger import Ledger

    archive(client, bucket, tmp_path, FILES)
    archive(client, bucket, tmp_path, {"x.json": b"[1, 2]"}, source="uk", version="20201105_000000")
    put_month(client, bucket, "uk/2020/12/", data=b"orphan")
    put_month(client, bucket, "staging/uk/20201201_000000/", data=b"in flight")
    ledger = Ledger(str(tmp_path / "ledger.sqlite3"))
    ledger.mark_archived("uk", "20201105_000000", {"bytes": 6, "compressed_bytes": 40}, "run-1")
    ledger.record(
        [
            {"source_id": "uk", "data_version": "20201120_000000", "status": "not_archived", "reason": "same_period"},
            {
                "source_id": "paraguay",
                "data_version": "20201003_000000",
                "status": "held",
                "reason": "smaller_than_its_archive",
                "facts": {"detail": "300 bytes left, 3010 archived"},
            },
        ],
        "run-1",
    )

    result = cli("list", "--bucket", bucket, "--ledger", str(tmp_path / "ledger.sqlite3"))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # What needs a person comes first, with what to do: the held crawl, the broken month.
    assert lines[0] == "Needs attention (2 items):"
    assert lines[1].startswith("  - paraguay/20201003_000000 is held: its month is archived from this crawl")
    assert lines[2].startswith("    what to do: a deletion was interrupted")
    assert lines[3] == "  - uk 2020-12 (uk/2020/12/) is broken: metadata missing"
    lines = lines[lines.index("") + 1 :]
    assert lines[0].split() == ["SOURCE", "MONTHS", "FIRST", "LAST", "BYTES", "COMPRESSED", "PROBLEMS"]
    sizes = {
        source: sum(
            item["Size"]
            for prefix in prefixes
            for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix + "data.tar.")["Contents"]
        )
        for source, prefixes in {"scotland": ["scotland/2020/09/"], "uk": ["uk/2020/11/", "uk/2020/12/"]}.items()
    }
    assert lines[1].split() == ["scotland", "1", "2020-09", "2020-09", "3010", str(sizes["scotland"]), "0"]
    assert lines[2].split() == ["uk", "2", "2020-11", "2020-12", "6", str(sizes["uk"]), "1"]
    assert lines[3] == "problem  uk 2020-12: metadata missing"
    assert lines[4].startswith("On the Kingfisher host (ledger ")
    assert lines[5].startswith("held     paraguay/20201003_000000: its month is archived from this crawl, and less")
    assert lines[5].endswith("(300 bytes left, 3010 archived)")
    assert lines[6] == (
        "kept     uk/20201120_000000: not archived, lost to its month's choice: same month, without enough more data "
        "or fewer errors"
    )
    assert lines[7].startswith(f"2 sources, 3 months in s3://{bucket}/: ")
    assert lines[7].endswith("; 6 B freed on the Kingfisher host")
    assert lines[8].startswith("Stored by class: STANDARD ")  # what the test server lists every object in
    assert len(lines) == 9  # staging/ is not a source
    assert "smaller_than_its_archive" not in result.stdout and "same_period" not in result.stdout

    as_json = json.loads(cli("list", "--json", "--bucket", bucket).stdout)
    assert [source["source_id"] for source in as_json["sources"]] == ["scotland", "uk"]
    uk = as_json["sources"][1]
    assert [(row["period"], row["state"], row["bytes"]) for row in uk["months"]] == [
        ("2020-11", "archived", 6),
        ("2020-12", "broken", None),
    ]
    assert uk["months"][0]["restore_command"] == "kingfisher-archive restore uk 2020 11 TARGET_DIRECTORY"
    assert as_json["periods"] == ["2020-09", "2020-11", "2020-12"]
    assert as_json["totals"]["bytes_archived"] == 3016
    assert as_json["on_disk"] == {"waiting": [], "held": [], "kept": []}  # no ledger given, none under AIRFLOW_HOME
    assert as_json["ledger"] is None and as_json["ledger_note"].startswith("no ledger at ")

    empty = cli("list", "--bucket", bucket, "--ledger", str(tmp_path / "no-such-ledger"))
    assert "no ledger at" in one_line_error(empty)

    # Where the DAG keeps it: $AIRFLOW_HOME/kingfisher_archive.sqlite3 (no flag, no Variable) or the Variable.
    home = tmp_path / "airflow-home"
    home.mkdir()
    os.replace(tmp_path / "ledger.sqlite3", home / "kingfisher_archive.sqlite3")
    found = json.loads(cli("list", "--bucket", bucket, "--json", AIRFLOW_HOME=str(home)).stdout)
    assert found["ledger"] == str(home / "kingfisher_archive.sqlite3")
    assert [h["id"] for h in found["on_disk"]["held"]] == ["paraguay/20201003_000000"]
    assert found["on_disk"]["held"][0]["reason"] == "smaller_than_its_archive"  # the code stays, for machines
    assert found["totals"]["bytes_freed"] == 6
    variable = {"AIRFLOW_VAR_KINGFISHER_ARCHIVE_LEDGER": str(home / "kingfisher_archive.sqlite3")}
    assert (
        json.loads(cli("list", "--bucket", bucket, "--json", **variable).stdout)["ledger"]
        == variable["AIRFLOW_VAR_KINGFISHER_ARCHIVE_LEDGER"]
    )
    # --no-airflow reads neither, as its help says.
    bare = json.loads(
        cli("list", "--bucket", bucket, "--json", "--no-airflow", AIRFLOW_HOME=str(home), **variable).stdout
    )
    assert bare["ledger"] is None and bare["on_disk"] == {"waiting": [], "held": [], "kept": []}
    assert bare["totals"]["bytes_freed"] == 0


def test_restore_round_trips_byte_for_byte_and_prints_the_reload_command(cli, client, bucket, tmp_path):
    before = archive(client, bucket, tmp_path, FILES)
    target = tmp_path / "restored"

    result = cli("restore", "scotland", "2020", "9", str(target), "--bucket", bucket)

    assert result.returncode == 0, result.stderr
    directory = target / "scotland" / "20200902_052458"
    assert tree(directory) == before
    assert (target / "scotland" / "20200902_052458.scrapy.log").read_bytes() == b"the log\n"
    lines = result.stdout.splitlines()
    assert lines[0] == f"Restored scotland/20200902_052458 from s3://{bucket}/scotland/2020/09/data.tar.zst"
    assert "verified: bytes, files, checksum" in lines[1]
    assert lines[-2] == "Load it into Kingfisher Process, from Kingfisher Process's directory:"
    assert shlex.split(lines[-1]) == [
        "python",
        "manage.py",
        "load",
        "--source",
        "scotland",
        "--time",
        "2020-09-02 05:24:58",
        "--note",
        f"Restored from s3://{bucket}/scotland/2020/09/data.tar.zst",
        str(directory),
    ]

    again = cli("restore", "scotland", "2020", "9", str(target), "--bucket", bucket)
    assert "already exists: refusing to overwrite it" in one_line_error(again)
    assert tree(directory) == before


@pytest.mark.parametrize("how", ["--forbid", "environment"])
def test_restore_into_the_data_directory_is_refused(cli, client, bucket, tmp_path, how):
    archive(client, bucket, tmp_path, FILES)
    files_store = tmp_path / "files-store"
    files_store.mkdir()
    target = files_store / "restored"
    args = ("restore", "scotland", "2020", "09", str(target), "--bucket", bucket)
    if how == "--forbid":
        result = cli(*args, "--forbid", str(files_store))
    else:
        result = cli(*args, KINGFISHER_ARCHIVE_DATA_DIRECTORY=str(files_store))

    message = one_line_error(result)
    assert message.startswith("python -m kingfisher_archive restore: error: refusing to restore into")
    assert str(target) in message
    assert str(files_store) in message
    assert list(files_store.iterdir()) == []


def test_restore_errors_are_one_line(cli, client, bucket, tmp_path):
    message = one_line_error(cli("restore", "scotland", "2020", "9", str(tmp_path / "t"), "--bucket", bucket))
    assert "no archive of scotland for 2020-09" in message
    message = one_line_error(cli("list", "scotland", "--bucket", bucket, secret_key="wrong"))
    assert "refused the credentials from $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY" in message
    message = one_line_error(cli("list", "scotland", "--bucket", "no-such-bucket"))
    assert "does not exist" in message


@pytest.mark.slow
def test_audit_exits_1_while_a_problem_is_left_unrepaired(cli, client, bucket, tmp_path):
    archive(client, bucket, tmp_path, FILES)
    clean = cli("audit", "--bucket", bucket, "--verify-data")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.splitlines()[-1] == (
        f"1 month in s3://{bucket}/: 0 problems (0 repaired, 0 unrepaired), 0 warnings, 2 objects checked at rest, "
        "1 archive verified"
    )
    sampled = cli("audit", "--bucket", bucket, "--sample", "100%")
    assert sampled.returncode == 0 and sampled.stdout.splitlines()[-1].endswith("1 archive verified"), sampled.stdout
    for bad in ("0%", "150%", "some"):
        refused = cli("audit", "--bucket", bucket, "--sample", bad)
        assert refused.returncode == 2
        assert f"argument --sample: {bad!r} is not a percentage above 0 and at most 100" in refused.stderr

    client.put_object(Bucket=bucket, Key="staging/scotland/20201001_000000/data.tar.lz4", Body=b"broken off")
    # The object is seconds old: not stale by default, stale with a zero threshold.
    assert cli("audit", "--bucket", bucket).returncode == 0
    found = cli("audit", "--bucket", bucket, "--stale-after-hours", "0")
    assert found.returncode == 1
    assert found.stdout.startswith("problem  staging/scotland/20201001_000000/data.tar.lz4: stale staging object")

    repaired = cli("audit", "--bucket", bucket, "--stale-after-hours", "0", "--repair")
    assert repaired.returncode == 0
    assert "[repaired]" in repaired.stdout
    assert cli("audit", "--bucket", bucket, "--stale-after-hours", "0").returncode == 0

    put_month(client, bucket, "scotland/2020/10/", data=b"no metadata")
    unrepairable = cli("audit", "--bucket", bucket, "--repair", "--json")
    assert unrepairable.returncode == 1
    assert [p["problem"] for p in json.loads(unrepairable.stdout)["problems"]] == ["metadata missing"]


@pytest.mark.parametrize(
    "args",
    [
        ("restore", "scotland", "2020", "13", "/tmp/x", "--bucket", "b"),
        ("restore", "scotland", "20", "1", "/tmp/x", "--bucket", "b"),
        ("frobnicate",),
        (),
    ],
)
def test_usage_errors_exit_2_in_one_line(cli, args):
    message = one_line_error(cli(*args), returncode=2)
    assert "--help" in message


def test_help_explains_the_commands(cli):
    result = cli("--help")
    assert result.returncode == 0
    for text in ("restore", "list", "audit", "KINGFISHER_ARCHIVE_BUCKET", "AWS_ACCESS_KEY_ID"):
        assert text in result.stdout


def test_version_names_the_distribution_and_its_version(cli):
    result = cli("--version")
    assert (result.returncode, result.stdout) == (0, f"python -m kingfisher_archive {__version__}\n")


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_every_mistake_a_user_can_make_is_one_line_with_an_exit_status(cli, client, bucket, s3_server, tmp_path):
    """Each bad input gives one line on stderr (no traceback) naming what was wrong, and a non-zero status."""
    archive(client, bucket, tmp_path, FILES)
    put_month(client, bucket, "scotland/2020/10/", metadata={"bytes": 1, "checksum": "0" * 32})
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    port = unused_port()
    no_endpoint = {"KINGFISHER_ARCHIVE_ENDPOINT_URL": None}
    endpoint = s3_server.endpoint_url
    bad = {
        # what, (arguments, environment), exit status, what the line says
        "endpoint without a scheme": (
            ("list", "scotland", "--bucket", bucket, "--endpoint-url", f"127.0.0.1:{port}"),
            {},
            2,
            [f"--endpoint-url is '127.0.0.1:{port}', not an http:// or https:// URL", f"e.g. http://127.0.0.1:{port}"],
        ),
        "endpoint variable without a scheme": (
            ("list", "scotland", "--bucket", bucket),
            {"KINGFISHER_ARCHIVE_ENDPOINT_URL": "minio:9000"},
            2,
            ["$KINGFISHER_ARCHIVE_ENDPOINT_URL is 'minio:9000'", "e.g. http://minio:9000"],
        ),
        "wrong secret key": (
            ("list", "scotland", "--bucket", bucket),
            {"AWS_SECRET_ACCESS_KEY": "not-the-secret"},
            1,
            [
                f"{endpoint} (from $KINGFISHER_ARCHIVE_ENDPOINT_URL) refused the credentials from $AWS_ACCESS_KEY_ID",
                "SignatureDoesNotMatch",
            ],
        ),
        "unknown access key": (
            ("audit", "--bucket", bucket),
            {"AWS_ACCESS_KEY_ID": "AKNOBODY"},
            1,
            [f"{endpoint} (from $KINGFISHER_ARCHIVE_ENDPOINT_URL) refused the credentials", "InvalidAccessKeyId"],
        ),
        "no credentials at all": (
            ("list", "scotland", "--bucket", bucket),
            {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None},
            1,
            ["no S3 credentials found: set $AWS_ACCESS_KEY_ID"],
        ),
        "unreachable endpoint": (
            ("list", "scotland", "--bucket", bucket, "--endpoint-url", f"http://127.0.0.1:{port}"),
            {},
            1,
            [f"cannot connect to http://127.0.0.1:{port} (from --endpoint-url)", "that the server is running"],
        ),
        "missing bucket": (
            ("restore", "scotland", "2020", "9", str(tmp_path / "t"), "--bucket", "no-such-bucket"),
            {},
            1,
            ["the bucket 'no-such-bucket' (from --bucket) does not exist at", endpoint],
        ),
        "restore target is a file": (
            ("restore", "scotland", "2020", "9", str(a_file), "--bucket", bucket),
            {},
            1,
            [f"the target {a_file} is a file, not a directory"],
        ),
        "restore target is a file, checked before connecting": (
            ("restore", "scotland", "2020", "9", str(a_file), "--bucket", bucket),
            {"KINGFISHER_ARCHIVE_ENDPOINT_URL": f"http://127.0.0.1:{port}"},
            1,
            [f"the target {a_file} is a file, not a directory"],
        ),
        "endpoint given, Airflow connection left out, no other credentials": (
            ("list", "scotland", "--bucket", bucket),
            {
                "AWS_ACCESS_KEY_ID": None,
                "AWS_SECRET_ACCESS_KEY": None,
                "AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3": airflow_connection_json(s3_server),
            },
            1,
            [
                f"no S3 credentials found for {endpoint} (from $KINGFISHER_ARCHIVE_ENDPOINT_URL): "
                "$AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3 is not read when the endpoint is given otherwise"
            ],
        ),
        "restore target below a file": (
            ("restore", "scotland", "2020", "9", str(a_file / "below"), "--bucket", bucket),
            {},
            1,
            ["cannot create the target directory", "choose another one"],
        ),
        "month without an archive": (
            ("restore", "scotland", "2020", "10", str(tmp_path / "new-target"), "--bucket", bucket),
            {},
            1,
            ["scotland/2020/10/data.tar.lz4 is missing"],
        ),
        "month out of range": (
            ("restore", "scotland", "2020", "13", str(tmp_path / "t"), "--bucket", bucket),
            {},
            2,
            ["argument MONTH: '13' is not a month between 1 and 12"],
        ),
        "month not a number": (
            ("restore", "scotland", "2020", "sept", str(tmp_path / "t"), "--bucket", bucket),
            {},
            2,
            ["'sept' is not a month number"],
        ),
        "two-digit year": (
            ("restore", "scotland", "20", "9", str(tmp_path / "t"), "--bucket", bucket),
            {},
            2,
            ["argument YEAR: '20' is not a four-digit year"],
        ),
        "bad data version": (
            ("restore", "scotland", "2020", "9", str(tmp_path / "t"), "--bucket", bucket, "--data-version", "2020"),
            {},
            1,
            ["2020"],
        ),
        "bad source id": (
            ("list", "../etc", "--bucket", bucket),
            {},
            1,
            ["../etc"],
        ),
        "negative staleness": (
            ("audit", "--bucket", bucket, "--stale-after-hours", "-1"),
            {},
            2,
            ["'-1' is not a number of hours >= 0"],
        ),
        "no bucket": (("list", "scotland"), {}, 2, ["no bucket: pass --bucket"]),
        "unreadable Airflow connection": (
            ("list", "scotland", "--bucket", bucket),
            {**no_endpoint, "AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3": "{not json"},
            2,
            ["$AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3 starts with '{' but is not valid JSON"],
        ),
    }
    for what, (args, env, status, expected) in bad.items():
        result = cli(*args, **env)
        assert result.returncode == status, (what, result)
        assert "Traceback" not in result.stderr, (what, result.stderr)
        assert result.stderr.count("\n") == 1, (what, result.stderr)
        assert result.stderr.startswith(f"python -m kingfisher_archive {args[0]}: error: "), (what, result.stderr)
        for text in expected:
            assert text in result.stderr, (what, result.stderr)
        assert "check the connection" not in result.stderr
        assert result.stdout == "", (what, result.stdout)
    # Nothing left behind by the failed restores.
    assert not (tmp_path / "t").exists() and not (tmp_path / "new-target").exists()
    assert a_file.read_text() == "mine"


def test_counts_are_in_the_singular_when_there_is_one(cli, client, bucket, tmp_path):
    archive(client, bucket, tmp_path, {"a.json": b"[]"})
    put_month(client, bucket, "scotland/2020/10/", data=b"no metadata")
    client.put_object(Bucket=bucket, Key="README.txt", Body=b"not part of the layout")
    result = cli("audit", "--bucket", bucket)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == (
        f"2 months in s3://{bucket}/: 1 problem (0 repaired, 1 unrepaired), 1 warning, 2 objects checked at rest"
    )
    restored = cli("restore", "scotland", "2020", "9", str(tmp_path / "restored"), "--bucket", bucket)
    assert "(1 file, 2 bytes; verified: bytes, files, checksum)" in restored.stdout


def airflow_connection_json(s3_server, password=None) -> str:
    return json.dumps(
        {
            "conn_type": "aws",
            "login": s3_server.access_key,
            "password": password or s3_server.secret_key,
            "extra": {"endpoint_url": s3_server.endpoint_url, "region_name": "us-east-1"},
        }
    )


def airflow_connection_uri(s3_server) -> str:
    return (
        f"aws://{quote(s3_server.access_key, safe='')}:{quote(s3_server.secret_key, safe='')}@/"
        f"?endpoint_url={quote(s3_server.endpoint_url, safe='')}&region_name=us-east-1"
    )


@pytest.mark.parametrize("form", ["json", "uri"])
def test_the_dags_airflow_settings_in_the_environment_are_used_and_named(
    cli, client, bucket, s3_server, tmp_path, form
):
    archive(client, bucket, tmp_path, FILES)
    connection = airflow_connection_json(s3_server) if form == "json" else airflow_connection_uri(s3_server)
    airflow = {
        "AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3": connection,
        "AIRFLOW_VAR_KINGFISHER_ARCHIVE_BUCKET": bucket,
        # Only the Connection's credentials and endpoint: none of boto3's own.
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
        "KINGFISHER_ARCHIVE_ENDPOINT_URL": None,
    }

    result = cli("list", "scotland", **airflow)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("2020-09")
    assert result.stderr == (
        f"python -m kingfisher_archive list: using bucket {bucket!r} from $AIRFLOW_VAR_KINGFISHER_ARCHIVE_BUCKET; "
        f"endpoint {s3_server.endpoint_url} and credentials from $AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3\n"
    )


def test_flags_win_over_the_airflow_settings(cli, client, bucket, s3_server, tmp_path):
    archive(client, bucket, tmp_path, FILES)
    airflow = {
        "AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3": airflow_connection_json(s3_server, password="not-the-secret"),
        "AIRFLOW_VAR_KINGFISHER_ARCHIVE_BUCKET": "not-this-bucket",
        "KINGFISHER_ARCHIVE_ENDPOINT_URL": None,
    }
    # The Connection's (wrong) password is named as the credentials refused.
    refused = one_line_error(cli("list", "scotland", "--bucket", bucket, **airflow))
    assert (
        f"{s3_server.endpoint_url} (from extra.endpoint_url of $AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3) refused the "
        "credentials from the login and password of $AIRFLOW_CONN_KINGFISHER_ARCHIVE_S3"
    ) in refused
    # An endpoint given explicitly leaves the Connection out: boto3's credentials (the right ones here) are used,
    # and --bucket wins over the Variable.
    result = cli("list", "scotland", "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url, **airflow)
    assert (result.returncode, result.stderr) == (0, "")
    # --no-airflow ignores them all.
    message = one_line_error(cli("list", "scotland", "--no-airflow", **airflow), returncode=2)
    assert "no bucket: pass --bucket" in message


def test_restore_refuses_the_dags_data_and_logs_directories(cli, client, bucket, tmp_path):
    archive(client, bucket, tmp_path, FILES)
    logs = tmp_path / "scrapyd-logs"
    logs.mkdir()
    message = one_line_error(
        cli(
            "restore",
            "scotland",
            "2020",
            "9",
            str(logs / "restored"),
            "--bucket",
            bucket,
            AIRFLOW_VAR_KINGFISHER_ARCHIVE_LOGS_DIRECTORY=str(logs),
        )
    )
    assert f"refusing to restore into {logs / 'restored'}: it is inside {logs}" in message
    assert list(logs.iterdir()) == []


def test_the_checkout_command_runs_the_module_with_the_virtualenv(s3_server, client, bucket, tmp_path):
    """bin/kingfisher-archive works from any directory with any python on PATH, and names itself."""
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("bin/kingfisher-archive runs .venv/bin/python, and this checkout has no .venv")
    archive(client, bucket, tmp_path, FILES)
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    command = [str(ROOT / "bin" / "kingfisher-archive"), "list", "scotland", "--bucket", bucket]
    result = subprocess.run(
        [*command, "--endpoint-url", s3_server.endpoint_url], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "scotland/2020/09/" in result.stdout
    wrong = subprocess.run(command[:2], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("kingfisher-archive list: error: ")
