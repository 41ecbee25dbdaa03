"""``python -m kingfisher_archive`` in a subprocess against a real S3 server, as an operator would run it."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.demo_kit.kingfisher_host import tree
from tests.test_restore import archive, put_month

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(s3_server, tmp_path):
    """Run the command with credentials from the environment only, as boto3's chain finds them."""

    def run(*args, secret_key=None, **env_extra):
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "KINGFISHER_ARCHIVE_")) and key.lower() not in ("http_proxy", "https_proxy")
        }
        env.update(
            PYTHONPATH=str(ROOT / "plugins"),
            AWS_ACCESS_KEY_ID=s3_server.access_key,
            AWS_SECRET_ACCESS_KEY=secret_key or s3_server.secret_key,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
            KINGFISHER_ARCHIVE_ENDPOINT_URL=s3_server.endpoint_url,
            NO_PROXY="127.0.0.1,localhost",
        )
        env.update(env_extra)
        return subprocess.run(
            [sys.executable, "-m", "kingfisher_archive", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def one_line_error(result):
    assert result.returncode == 1, result
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
    assert lines[0].split() == ["MONTH", "PREFIX", "DATA", "VERSION", "BYTES", "COMPRESSED", "LOG", "GEN", "PROBLEM"]
    compressed = client.head_object(Bucket=bucket, Key="scotland/2020/09/data.tar.lz4")["ContentLength"]
    assert lines[1].split() == [
        "2020-09",
        "scotland/2020/09/",
        "20200902_052458",
        "3010",
        str(compressed),
        "yes",
        "2021",
    ]
    assert lines[2].split() == ["2021-01", "scotland/2021/1/", "-", "-", "6", "no", "-", "metadata", "missing"]
    assert len(lines) == 3

    as_json = cli("list", "scotland", "--json", KINGFISHER_ARCHIVE_BUCKET=bucket)
    assert [row["prefix"] for row in json.loads(as_json.stdout)] == ["scotland/2020/09/", "scotland/2021/1/"]

    empty = cli("list", "mexico", "--bucket", bucket)
    assert (empty.returncode, empty.stdout) == (0, f"No archived months of mexico in s3://{bucket}/\n")


def test_restore_round_trips_byte_for_byte_and_prints_the_reload_command(cli, client, bucket, tmp_path):
    before = archive(client, bucket, tmp_path, FILES)
    target = tmp_path / "restored"

    result = cli("restore", "scotland", "2020", "9", str(target), "--bucket", bucket)

    assert result.returncode == 0, result.stderr
    directory = target / "scotland" / "20200902_052458"
    assert tree(directory) == before
    assert (target / "scotland" / "20200902_052458.scrapy.log").read_bytes() == b"the log\n"
    lines = result.stdout.splitlines()
    assert lines[0] == f"Restored scotland/20200902_052458 from s3://{bucket}/scotland/2020/09/data.tar.lz4"
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
        f"Restored from s3://{bucket}/scotland/2020/09/data.tar.lz4",
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
    assert "refused our credentials" in message
    message = one_line_error(cli("list", "scotland", "--bucket", "no-such-bucket"))
    assert "does not exist" in message


def test_audit_exits_1_while_a_problem_is_left_unrepaired(cli, client, bucket, tmp_path):
    archive(client, bucket, tmp_path, FILES)
    clean = cli("audit", "--bucket", bucket, "--verify-data")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.splitlines()[-1] == (
        f"1 months in s3://{bucket}/: 0 problems (0 repaired, 0 unrepaired), 0 warnings, 1 archives verified"
    )

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
        ("list", "scotland"),  # no bucket anywhere
        ("restore", "scotland", "2020", "13", "/tmp/x", "--bucket", "b"),
        ("restore", "scotland", "20", "1", "/tmp/x", "--bucket", "b"),
        ("frobnicate",),
        (),
    ],
)
def test_usage_errors_exit_2(cli, args):
    result = cli(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_help_explains_the_commands(cli):
    result = cli("--help")
    assert result.returncode == 0
    for text in ("restore", "list", "audit", "KINGFISHER_ARCHIVE_BUCKET", "AWS_ACCESS_KEY_ID"):
        assert text in result.stdout
