"""The DAG's settings read from Airflow Variables: defaults, and each bad value named."""

from __future__ import annotations

import json

import pytest

from kingfisher_archive import settings as config


def test_a_retention_that_is_not_a_number_of_days_is_named():
    from kingfisher_archive import settings as config

    values = {"kingfisher_archive_bucket": "b", "kingfisher_archive_data_directory": "/",
              "kingfisher_archive_logs_directory": "/", "kingfisher_archive_retention_days": "ninety"}  # fmt: skip
    with pytest.raises(config.ConfigurationError, match="'kingfisher_archive_retention_days' is 'ninety'"):
        config.load(values.get)
    values["kingfisher_archive_retention_days"] = "90"
    assert config.load(values.get).retention_days == 90


def test_the_waiting_warning_defaults_to_three_days_and_a_bad_value_is_named():
    from kingfisher_archive import settings as config

    values = {"kingfisher_archive_bucket": "b", "kingfisher_archive_data_directory": "/",
              "kingfisher_archive_logs_directory": "/"}  # fmt: skip
    assert config.load(values.get).waiting_warning_days == 3
    values["kingfisher_archive_waiting_warning_days"] = "0"
    with pytest.raises(
        config.ConfigurationError, match="'kingfisher_archive_waiting_warning_days' is '0', not a whole"
    ):
        config.load(values.get)
    values["kingfisher_archive_waiting_warning_days"] = "14"
    assert config.load(values.get).waiting_warning_days == 14


@pytest.mark.parametrize("value", ["0", "20", "fast", "3.5"])
def test_the_compression_level_defaults_to_1_and_a_bad_value_is_named_with_the_range(value):
    values = {"kingfisher_archive_bucket": "b", "kingfisher_archive_data_directory": "/",
              "kingfisher_archive_logs_directory": "/"}  # fmt: skip
    assert config.load(values.get).compression_level == 1
    values["kingfisher_archive_compression_level"] = value
    message = f"Airflow Variable 'kingfisher_archive_compression_level' is '{value}', not a zstd level from 1 to 19"
    with pytest.raises(config.ConfigurationError, match=message.replace(".", r"\.")):
        config.load(values.get)
    values["kingfisher_archive_compression_level"] = " 19 "
    assert config.load(values.get).compression_level == 19


def test_a_task_on_a_host_without_the_crawls_says_so_and_the_audit_does_not_need_them(tmp_path):
    import socket

    from kingfisher_archive import settings as config

    missing = str(tmp_path / "scrapyd" / "data")
    values = {"kingfisher_archive_bucket": "b", "kingfisher_archive_data_directory": missing,
              "kingfisher_archive_logs_directory": str(tmp_path)}  # fmt: skip
    with pytest.raises(config.ConfigurationError) as raised:
        config.load(values.get)
    assert str(raised.value) == (
        f"Airflow Variable 'kingfisher_archive_data_directory' names {missing!r}, which is not a directory on this "
        f"host ({socket.gethostname()}): the tasks that read crawls must run on the Kingfisher Collect host's "
        "worker, the one serving the queue named by KINGFISHER_ARCHIVE_QUEUE"
    )
    # The audit reads only the bucket: it runs on any worker.
    assert config.load(values.get, on_kingfisher_host=False).data_directory == missing


def test_encryption_settings_are_read_from_the_variable_or_the_extra_and_checked():
    kms = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "k", "BucketKeyEnabled": True}
    assert config.encryption(json.dumps(kms)) == kms
    assert config.encryption(None, {"ServerSideEncryption": "AES256"}) == {"ServerSideEncryption": "AES256"}
    assert config.encryption('{"ServerSideEncryption": "AES256"}', kms) == {"ServerSideEncryption": "AES256"}
    assert config.encryption(None, None) == {}
    for value, expected in (
        ("not json", "Airflow Variable 'kingfisher_archive_encryption' is not JSON"),
        ('{"ServerSideEncryption": "aws:kms", "KeyId": "k"}', "has ['KeyId']: the keys it may have are"),
        ('{"ServerSideEncryption": "kms"}', "ServerSideEncryption 'kms': it must be one of"),
        ('{"ServerSideEncryption": "AES256", "SSEKMSKeyId": "k"}', "SSEKMSKeyId and BucketKeyEnabled go with aws:kms"),
    ):
        with pytest.raises(config.ConfigurationError, match=expected.replace("[", r"\[").replace("]", r"\]")):
            config.encryption(value)
    with pytest.raises(config.ConfigurationError, match='the S3 connection\'s extra "encryption" must be'):
        config.encryption(None, ["AES256"])
