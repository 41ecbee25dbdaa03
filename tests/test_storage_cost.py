"""What storage costs: the dated price table, its override, the bill of a listing, and early deletion."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from kingfisher_archive import storage_cost
from kingfisher_archive.catalogue import catalogue
from kingfisher_archive.settings import ConfigurationError, load
from kingfisher_archive.storage_cost import GB, Prices, PricesError

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def entry(size, storage_class=None, age=timedelta(0)):
    found = {"Key": "k", "Size": size, "LastModified": NOW - age, "ETag": '"x"'}
    if storage_class:
        found["StorageClass"] = storage_class
    return found


def test_the_default_table_is_us_east_1_dated_and_cites_its_page():
    prices = storage_cost.DEFAULT
    assert (prices.region, prices.source) == ("us-east-1", "https://aws.amazon.com/s3/pricing/")
    assert datetime.strptime(prices.as_of, "%Y-%m-%d")
    assert prices.usd_per_gb_month["DEEP_ARCHIVE"] == 0.00099
    assert prices.usd_per_gb_month["STANDARD_IA"] == 0.0125
    assert prices.minimum_days == {
        "STANDARD_IA": 30,
        "ONEZONE_IA": 30,
        "GLACIER_IR": 90,
        "GLACIER": 90,
        "DEEP_ARCHIVE": 180,
    }
    assert prices.describe() == f"us-east-1 prices as of {prices.as_of} (https://aws.amazon.com/s3/pricing/)"


def test_an_entry_without_a_storage_class_is_standard_and_the_bill_counts_bytes_by_class():
    entries = [
        entry(GB),  # no StorageClass: STANDARD, as S3 means it
        entry(2 * GB, "STANDARD_IA"),
        entry(1000, "STANDARD_IA"),  # billed as 128 KB
        entry(10 * GB, "DEEP_ARCHIVE"),
    ]
    stored = storage_cost.stored(entries)
    assert stored["STANDARD"] == {"objects": 1, "bytes": GB, "billable_bytes": GB}
    assert stored["STANDARD_IA"] == {"objects": 2, "bytes": 2 * GB + 1000, "billable_bytes": 2 * GB + 128 * 1024}

    bill = storage_cost.bill(stored)
    by_class = {c["storage_class"]: c["usd_per_month"] for c in bill["classes"]}
    assert by_class["STANDARD"] == pytest.approx(0.023)
    assert by_class["STANDARD_IA"] == pytest.approx(0.0125 * (2 + 128 * 1024 / GB))
    assert by_class["DEEP_ARCHIVE"] == pytest.approx(0.0099)
    assert bill["usd_per_month"] == pytest.approx(0.023 + 0.0125 * (2 + 128 * 1024 / GB) + 0.0099)
    assert [c["storage_class"] for c in bill["classes"]] == ["STANDARD_IA", "STANDARD", "DEEP_ARCHIVE"]
    assert (bill["region"], bill["unpriced"]) == ("us-east-1", [])
    assert storage_cost.bill_phrase(bill).startswith("STANDARD_IA 2.00 GiB ($0.03), STANDARD 1.00 GiB ($0.02), ")
    assert storage_cost.bill_phrase(bill).endswith(
        f"a month at us-east-1 prices as of {storage_cost.AS_OF} (storage only)"
    )


def test_a_class_without_a_price_is_named_and_left_out_of_the_bill():
    bill = storage_cost.bill(storage_cost.stored([entry(GB, "EXPRESS_ONEZONE"), entry(GB)]))
    assert bill["unpriced"] == ["EXPRESS_ONEZONE"]
    assert bill["usd_per_month"] == pytest.approx(0.023)
    assert "no price for EXPRESS_ONEZONE" in storage_cost.bill_phrase(bill)


def test_tables_merge_by_class():
    a = storage_cost.stored([entry(10, "GLACIER"), entry(5)])
    b = storage_cost.stored([entry(7, "GLACIER")])
    assert storage_cost.merge([a, b, None]) == {
        "GLACIER": {"objects": 2, "bytes": 17, "billable_bytes": 17},
        "STANDARD": {"objects": 1, "bytes": 5, "billable_bytes": 5},
    }


def test_early_deletion_bills_the_whole_days_left_of_the_minimum_prorated_over_a_30_day_month():
    # 29.5 days in Glacier: 29 whole days stored, 61 left of 90.
    early = storage_cost.early_deletion(
        "s3://b/s/2020/01/data.tar.zst", entry(60 * GB, "GLACIER", timedelta(days=29.5)), now=NOW
    )
    assert (early.days_stored, early.days_left, early.minimum_days, early.storage_class) == (29, 61, 90, "GLACIER")
    assert early.usd == pytest.approx(60 * 0.0036 * 61 / 30)
    assert storage_cost.phrase(early.as_dict()) == (
        "replacing s3://b/s/2020/01/data.tar.zst pays $0.44 early-deletion: 61 days left of GLACIER's 90-day minimum"
    )
    # Uploaded just now into Deep Archive: all 180 days.
    fresh = storage_cost.early_deletion("k", entry(GB, "DEEP_ARCHIVE"), now=NOW)
    assert (fresh.days_left, fresh.usd) == (180, pytest.approx(0.00099 * 6))
    # A small object in Standard-IA is billed as 128 KB; a cent's fraction is still shown.
    small = storage_cost.early_deletion("k", entry(100, "STANDARD_IA", timedelta(days=10)), now=NOW)
    assert small.days_left == 20
    assert small.usd == pytest.approx(128 * 1024 / GB * 0.0125 * 20 / 30)
    assert storage_cost.phrase(small.as_dict()).startswith("replacing k pays under $0.0001 early-deletion")
    assert [storage_cost.usd(x) for x in (None, 0, 0.0042, 0.426, 1234.5)] == [
        "-",
        "$0.00",
        "$0.0042",
        "$0.43",
        "$1,234.50",
    ]


@pytest.mark.parametrize(
    "item",
    [
        entry(GB),  # STANDARD: no minimum
        entry(GB, "INTELLIGENT_TIERING"),
        entry(GB, "GLACIER", timedelta(days=90)),  # kept the whole minimum
        entry(GB, "DEEP_ARCHIVE", timedelta(days=400)),
    ],
)
def test_no_early_deletion_without_a_minimum_or_once_it_is_served(item):
    assert storage_cost.early_deletion("k", item, now=NOW) is None


def test_the_override_replaces_the_classes_it_names_and_labels_the_table():
    prices = storage_cost.parse(
        json.dumps(
            {
                "region": "eu-west-1",
                "as_of": "2026-11-01",
                "usd_per_gb_month": {"DEEP_ARCHIVE": 0.0018, "EXPRESS_ONEZONE": 0.11},
                "minimum_days": {"GLACIER": 95},
            }
        )
    )
    assert (prices.region, prices.as_of) == ("eu-west-1", "2026-11-01")
    assert prices.usd_per_gb_month["DEEP_ARCHIVE"] == 0.0018
    assert prices.usd_per_gb_month["STANDARD_IA"] == 0.0125  # not named: the default's
    assert prices.usd_per_gb_month["EXPRESS_ONEZONE"] == 0.11
    assert prices.minimum_days["GLACIER"] == 95
    assert prices.source == "Airflow Variable 'kingfisher_archive_storage_prices'"
    assert storage_cost.parse("") is storage_cost.DEFAULT
    assert storage_cost.parse("  ") is storage_cost.DEFAULT


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{", "is not JSON"),
        ("[1]", "must be a JSON object with keys among ['region', 'as_of', 'usd_per_gb_month', 'minimum_days']"),
        ('{"prices": {}}', "has ['prices']: the keys it may have are"),
        ('{"region": ""}', "has region '': a non-empty string"),
        ('{"usd_per_gb_month": [1]}', "has usd_per_gb_month [1]: a JSON object of storage class"),
        ('{"usd_per_gb_month": {"glacier": 1}}', "has usd_per_gb_month 'glacier': not a storage class name"),
        ('{"usd_per_gb_month": {"GLACIER": -1}}', "has usd_per_gb_month GLACIER: -1, not a price in USD per GB-month"),
        ('{"usd_per_gb_month": {"GLACIER": "1"}}', "has usd_per_gb_month GLACIER: '1', not a price"),
        ('{"minimum_days": {"GLACIER": 1.5}}', "has minimum_days GLACIER: 1.5, not a whole number of days >= 0"),
    ],
)
def test_a_bad_override_is_one_line_naming_the_variable_and_the_bad_key(value, message):
    with pytest.raises(PricesError) as error:
        storage_cost.parse(value)
    text = str(error.value)
    assert text.startswith("Airflow Variable 'kingfisher_archive_storage_prices' ")
    assert message in text
    assert "\n" not in text


def test_the_settings_check_the_variable_with_the_others(tmp_path):
    variables = {
        "kingfisher_archive_bucket": "b",
        "kingfisher_archive_data_directory": str(tmp_path),
        "kingfisher_archive_logs_directory": str(tmp_path),
    }
    assert load(variables.get).prices is storage_cost.DEFAULT
    variables["kingfisher_archive_storage_prices"] = '{"usd_per_gb_month": {"GLACIER": 0.005}}'
    assert load(variables.get).prices.usd_per_gb_month["GLACIER"] == 0.005
    variables["kingfisher_archive_storage_prices"] = '{"usd": 1}'
    with pytest.raises(
        ConfigurationError, match=r"Airflow Variable 'kingfisher_archive_storage_prices' has \['usd'\]"
    ):
        load(variables.get)


def test_the_catalogue_counts_the_bucket_by_the_class_its_listing_reports(client, bucket):
    """SeaweedFS lists the class each object was written in, as S3 does; the catalogue reads it from the listing."""
    prefix = "scotland/2020/09/"
    metadata = {"id": "scotland/20200902_052458", "source_id": "scotland", "data_version": "20200902_052458"}
    metadata.update(bytes=3, checksum="0" * 32, files_count=1, errors_count=0)
    client.put_object(Bucket=bucket, Key=prefix + "data.tar.lz4", Body=b"d" * 5000, StorageClass="DEEP_ARCHIVE")
    client.put_object(
        Bucket=bucket, Key=prefix + "metadata.json", Body=json.dumps(metadata).encode(), StorageClass="STANDARD_IA"
    )
    client.put_object(Bucket=bucket, Key=prefix + "scrapy.log", Body=b"log")  # no class given: STANDARD
    client.put_object(
        Bucket=bucket, Key="staging/scotland/x/data.tar.lz4", Body=b"not a month's", StorageClass="GLACIER"
    )

    found = catalogue(client, bucket, prices=Prices(region="eu-west-1", as_of="2026-11-01"))

    [month] = found["sources"][0]["months"]
    assert set(month["stored"]) == {"DEEP_ARCHIVE", "STANDARD_IA", "STANDARD"}
    storage = found["storage"]
    assert (storage["region"], storage["as_of"]) == ("eu-west-1", "2026-11-01")
    by_class = {c["storage_class"]: c for c in storage["classes"]}
    assert by_class["DEEP_ARCHIVE"]["bytes"] == 5000
    assert by_class["STANDARD_IA"]["billable_bytes"] == 128 * 1024  # billed as 128 KB
    assert by_class["STANDARD"]["bytes"] == 3
    assert "GLACIER" not in by_class  # staging/ is not a month's
    assert storage["usd_per_month"] == pytest.approx((5000 * 0.00099 + 128 * 1024 * 0.0125 + 3 * 0.023) / GB)


@pytest.mark.aws(cold=True)
def test_through_an_aws_like_server_cold_data_is_counted_and_priced_without_being_read(aws_like, host, settings):
    """Against the proxy that refuses a GET of GLACIER or DEEP_ARCHIVE data as AWS does: the catalogue and a decision
    to replace the month read only metadata.json and the listing, and say what the class costs."""
    from kingfisher_archive import steps
    from kingfisher_archive.bucket import Bucket
    from scripts.demo_kit.kingfisher_host import ocds_files

    proxy, client = aws_like
    prefix = "scotland/2020/09/"
    metadata = {"id": "scotland/20200901_000000", "source_id": "scotland", "data_version": "20200901_000000"}
    metadata.update(bytes=1, checksum="0" * 32, files_count=1, errors_count=0)
    name = settings.bucket
    client.put_object(Bucket=name, Key=prefix + "data.tar.lz4", Body=b"d" * 4096, StorageClass="DEEP_ARCHIVE")
    client.put_object(Bucket=name, Key=prefix + "metadata.json", Body=json.dumps(metadata), StorageClass="STANDARD_IA")
    with pytest.raises(Exception, match="InvalidObjectState"):
        client.get_object(Bucket=name, Key=prefix + "data.tar.lz4")  # the proxy is cold, as AWS is

    found = catalogue(client, name)
    by_class = {c["storage_class"]: c for c in found["storage"]["classes"]}
    assert by_class["DEEP_ARCHIVE"]["bytes"] == 4096
    assert by_class["DEEP_ARCHIVE"]["usd_per_month"] == pytest.approx(4096 / GB * 0.00099)

    host.add_crawl("scotland", "20200915_000000", ocds_files("x", 3))
    facts = steps.inspect(settings, {"source_id": "scotland", "data_version": "20200915_000000"})
    [decision] = steps.decide(settings, Bucket(client, name), [dict(facts)])["decisions"]
    assert decision["status"] == "to_archive"
    assert decision["early_deletion"]["storage_class"] == "DEEP_ARCHIVE"
    assert decision["early_deletion"]["days_left"] == 180
    assert not proxy.restores  # nothing asked S3 to thaw anything
