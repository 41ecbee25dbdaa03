"""The bucket's samples: a least-privilege IAM policy that covers every S3 call the package makes, and a lifecycle.

What each S3 call needs is kept here as data (from AWS's "Actions, resources, and condition keys for Amazon S3" and
each API's reference page), and the package's source is searched for the calls it makes: a new call without its
actions in ``samples/iam-policy.json`` fails here, naming the call, before it fails on a real bucket with
AccessDenied.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import validate_parameters

REPOSITORY = Path(__file__).resolve().parents[1]
SAMPLES = REPOSITORY / "samples"
POLICY = SAMPLES / "iam-policy.json"
LIFECYCLE = SAMPLES / "lifecycle.json"
#: Where the package's S3 calls are: the package and the catalogue plugin.
SOURCES = sorted((REPOSITORY / "plugins").rglob("*.py"))

BUCKET_ARN = "arn:aws:s3:::YOUR-BUCKET"
OBJECTS_ARN = BUCKET_ARN + "/*"

#: boto3 S3 client method (or paginator) -> the IAM actions it needs, and on what.
METHOD_ACTIONS: dict[str, set[str]] = {
    # HeadBucket: "you must have permissions to perform the s3:ListBucket action".
    "head_bucket": {"s3:ListBucket"},
    "list_objects_v2": {"s3:ListBucket"},
    "list_multipart_uploads": {"s3:ListBucketMultipartUploads"},
    # "To use this operation, you must have permission to perform the s3:ListBucketVersions action."
    "list_object_versions": {"s3:ListBucketVersions"},
    "get_bucket_versioning": {"s3:GetBucketVersioning"},
    "get_object_lock_configuration": {"s3:GetBucketObjectLockConfiguration"},
    "get_object": {"s3:GetObject"},
    "head_object": {"s3:GetObject"},
    "get_object_attributes": {"s3:GetObjectAttributes"},
    "put_object": {"s3:PutObject"},
    # RestoreObject: a readable copy of a GLACIER or DEEP_ARCHIVE object (s3.thawing).
    "restore_object": {"s3:RestoreObject"},
    # CreateMultipartUpload, UploadPart and CompleteMultipartUpload are all s3:PutObject.
    "create_multipart_upload": {"s3:PutObject"},
    "upload_part": {"s3:PutObject"},
    "complete_multipart_upload": {"s3:PutObject"},
    "abort_multipart_upload": {"s3:AbortMultipartUpload"},
    "list_parts": {"s3:ListMultipartUploadParts"},
    # CopyObject and UploadPartCopy read the source (s3:GetObject) and write the target (s3:PutObject).
    "copy_object": {"s3:GetObject", "s3:PutObject"},
    "upload_part_copy": {"s3:GetObject", "s3:PutObject"},
    # boto3's managed copy: HeadObject of the source, then CopyObject, or a multipart upload of UploadPartCopy parts
    # (aborted if one fails).
    "copy": {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"},
    # Deleting a key (a delete marker when versioned); deleting a given version is s3:DeleteObjectVersion.
    "delete_object": {"s3:DeleteObject"},
    "delete_objects": {"s3:DeleteObject"},
}
#: Actions the policy grants for what a versioned or Object Lock bucket needs (reading its versioning state and lock
#: configuration, listing and deleting the versions of what the package deletes), which calls being added read.
FOR_VERSIONED_BUCKETS = {
    "s3:GetBucketVersioning",
    "s3:GetBucketObjectLockConfiguration",
    "s3:ListBucketVersions",
    "s3:DeleteObjectVersion",
}
#: With SSE-KMS: "To upload or download an object encrypted with an AWS KMS key ... you need kms:GenerateDataKey and
#: kms:Decrypt permissions on the key" (multipart uploads need both, and so do copies).
KMS_ACTIONS = {"kms:GenerateDataKey", "kms:Decrypt"}
#: The policy's actions, exactly: adding one means adding it here, on purpose.
DOCUMENTED_ACTIONS = {
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:ListBucketVersions",
    "s3:GetBucketVersioning",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:AbortMultipartUpload",
    "s3:RestoreObject",
    *KMS_ACTIONS,
}
#: Actions on the bucket itself (resource ``arn:aws:s3:::bucket``); the rest are on its objects (``bucket/*``).
BUCKET_ACTIONS = {
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:ListBucketVersions",
    "s3:GetBucketVersioning",
    "s3:GetBucketObjectLockConfiguration",
}

CALL = re.compile(r"\bclient\.(?P<method>[a-z_0-9]+)\(")
PAGINATOR = re.compile(r"\bget_paginator\(\s*[\"'](?P<method>[a-z_0-9]+)[\"']")


def s3_calls() -> dict[str, list[str]]:
    """Every S3 client method the package calls (paginators by the method they page), with where."""
    calls: dict[str, list[str]] = {}
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(REPOSITORY)}:{number}"
            for match in CALL.finditer(line):
                if match["method"] != "get_paginator":
                    calls.setdefault(match["method"], []).append(where)
            for match in PAGINATOR.finditer(line):
                calls.setdefault(match["method"], []).append(where)
    return calls


def statements() -> list[dict]:
    return json.loads(POLICY.read_text())["Statement"]


def actions(statement: dict) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def granted() -> set[str]:
    return {action for statement in statements() for action in actions(statement)}


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda path: path.name)
def test_every_json_sample_is_json(path):
    json.loads(path.read_text())


def test_the_search_for_s3_calls_finds_them():
    # If this fails the search is broken (a rename, a new way of calling), not the policy.
    calls = s3_calls()
    assert {"get_object", "put_object", "list_objects_v2", "head_bucket", "copy_object"} <= set(calls), calls


def test_every_s3_call_the_package_makes_is_allowed_by_the_policy():
    calls = s3_calls()
    unknown = {method: where for method, where in calls.items() if method not in METHOD_ACTIONS}
    assert not unknown, (
        "the package calls S3 client methods samples/iam-policy.json does not account for: "
        + "; ".join(f"client.{method}() at {', '.join(where)}" for method, where in sorted(unknown.items()))
        + ". Add each to METHOD_ACTIONS in tests/test_samples.py with the IAM actions it needs (AWS's \"Actions, "
        'resources, and condition keys for Amazon S3"), and those actions to samples/iam-policy.json'
    )
    missing = {method: METHOD_ACTIONS[method] - granted() for method in calls if METHOD_ACTIONS[method] - granted()}
    assert not missing, "samples/iam-policy.json lacks actions the package's calls need: " + "; ".join(
        f"client.{method}() (at {', '.join(calls[method])}) needs {', '.join(sorted(needed))}"
        for method, needed in sorted(missing.items())
    )


def test_the_policy_grants_exactly_the_documented_actions_and_nothing_the_package_does_not_use():
    assert granted() == DOCUMENTED_ACTIONS, (
        f"added: {sorted(granted() - DOCUMENTED_ACTIONS)}, removed: {sorted(DOCUMENTED_ACTIONS - granted())}"
    )
    used = {action for method in s3_calls() for action in METHOD_ACTIONS.get(method, ())}
    unused = DOCUMENTED_ACTIONS - used - FOR_VERSIONED_BUCKETS - KMS_ACTIONS
    assert not unused, f"the policy grants {sorted(unused)}, which no call of the package needs"
    assert not any("*" in action for action in granted())


def test_each_statement_is_scoped_to_the_bucket_its_objects_or_the_key():
    policy = json.loads(POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    sids = [statement.get("Sid") for statement in statements()]
    assert all(sids) and len(set(sids)) == len(sids), sids
    by_resource = {}
    for statement in statements():
        assert statement["Effect"] == "Allow"
        assert isinstance(statement["Resource"], str), statement["Sid"]
        by_resource.setdefault(statement["Resource"], set()).update(actions(statement))
    keys = [resource for resource in by_resource if resource.startswith("arn:aws:kms:")]
    assert len(keys) == 1, "the KMS key's actions are one statement of their own, on one key"
    assert keys[0] == "arn:aws:kms:YOUR-REGION:YOUR-ACCOUNT-ID:key/YOUR-KEY-ID"
    assert by_resource == {
        BUCKET_ARN: BUCKET_ACTIONS,
        OBJECTS_ARN: DOCUMENTED_ACTIONS - BUCKET_ACTIONS - KMS_ACTIONS,
        keys[0]: KMS_ACTIONS,
    }
    (kms,) = [statement for statement in statements() if statement["Resource"] == keys[0]]
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": "s3.YOUR-REGION.amazonaws.com"}}


def lifecycle_rules() -> list[dict]:
    return json.loads(LIFECYCLE.read_text())["Rules"]


def test_the_lifecycle_is_what_put_bucket_lifecycle_configuration_takes():
    # `aws s3api put-bucket-lifecycle-configuration --lifecycle-configuration file://samples/lifecycle.json`
    model = botocore.session.get_session().get_service_model("s3")
    operation = model.operation_model("PutBucketLifecycleConfiguration")
    validate_parameters(
        {"Bucket": "YOUR-BUCKET", "LifecycleConfiguration": json.loads(LIFECYCLE.read_text())}, operation.input_shape
    )
    ids = [rule["ID"] for rule in lifecycle_rules()]
    assert len(set(ids)) == len(ids)


def test_the_lifecycle_aborts_broken_uploads_and_expires_old_staging_versions_and_never_current_archives():
    enabled = [rule for rule in lifecycle_rules() if rule["Status"] == "Enabled"]
    (abort,) = [rule for rule in enabled if "AbortIncompleteMultipartUpload" in rule]
    assert abort["Filter"] == {"Prefix": ""}  # the whole bucket: month keys take multipart uploads too
    # Long enough for the biggest crawl's upload (hours), well past the audit's 24 hours.
    assert abort["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 2
    (staging,) = [rule for rule in enabled if rule["Filter"] == {"Prefix": "staging/"}]
    assert staging["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1
    for rule in lifecycle_rules():
        # Current objects never expire: an archive is kept until the package replaces it.
        assert set(rule.get("Expiration", {})) <= {"ExpiredObjectDeleteMarker"}, rule["ID"]
        assert "Transitions" not in rule and "NoncurrentVersionTransitions" not in rule, rule["ID"]
    # Expiring older versions of the months themselves is a choice each installation makes: shipped disabled.
    for rule in enabled:
        if "NoncurrentVersionExpiration" in rule:
            assert rule["Filter"]["Prefix"].startswith("staging/"), rule["ID"]


def test_the_deploy_checklist_links_the_samples():
    installing = (REPOSITORY / "docs" / "installing.md").read_text()
    for path in (POLICY, LIFECYCLE):
        assert f"](../{path.relative_to(REPOSITORY)})" in installing, path.name
    listed = (SAMPLES / "README.md").read_text()
    assert "`iam-policy.json`" in listed and "`lifecycle.json`" in listed
