"""The probe: does the server honour the conditional requests archiving relies on? Asked before anything is archived.

Conditional writes (``If-None-Match: *``, on ``PutObject`` and ``CompleteMultipartUpload``) and conditional deletes
(``If-Match``), on one object of its own under :data:`PROBE_PREFIX`. See docs/safety.md, section 3.
"""

from __future__ import annotations

import hashlib
import logging
import os

from botocore.exceptions import ClientError

from kingfisher_archive.errors import PermanentError
from kingfisher_archive.s3.delete import purge_versions
from kingfisher_archive.s3.errors import POLICY_DENIED, PRECONDITION_FAILED, VerificationError, error_code
from kingfisher_archive.s3.objects import exists
from kingfisher_archive.s3.proof import md5_b64
from kingfisher_archive.s3.upload import put_object

logger = logging.getLogger(__name__)


class ConditionalWritesError(PermanentError):
    """The S3 server ignores the conditional requests archiving relies on."""


class WriteRefusedError(ConditionalWritesError):
    """The bucket refuses the probe's write: most often a policy that demands an encryption header."""


def _refused_write(bucket_name: str, key: str, error: ClientError, encryption: dict | None) -> WriteRefusedError:
    """The refusal, with the facts: the bucket, the key, the server's answer, and the encryption header it carried."""
    sent = (encryption or {}).get("ServerSideEncryption")
    header = f"x-amz-server-side-encryption: {sent}" if sent else "no x-amz-server-side-encryption header"
    if sent == "aws:kms" and (encryption or {}).get("SSEKMSKeyId"):
        header += f" with x-amz-server-side-encryption-aws-kms-key-id: {encryption['SSEKMSKeyId']}"
    message = error.response.get("Error", {}).get("Message", "")
    return WriteRefusedError(
        f"The bucket {bucket_name!r} refused to write s3://{bucket_name}/{key} ({error_code(error)}: {message}). The "
        f"request carried {header}"
    )


#: Where the probe of conditional writes leaves its one small object, for as long as the probe lasts.
PROBE_PREFIX = "staging/_probe/"


def probe_conditional_writes(client, bucket_name: str, encryption: dict | None = None) -> None:
    """Check that the server honours ``If-None-Match: *`` on writes and ``If-Match`` on deletes, or fail naming it.

    Only one object under :data:`PROBE_PREFIX` is written, overwritten conditionally (by ``PutObject`` and by
    ``CompleteMultipartUpload``), deleted conditionally, then deleted. Raises :class:`ConditionalWritesError`
    naming what the server ignores, :class:`WriteRefusedError` if it refuses the first write (``AccessDenied``),
    saying what the request carried (the caller, which knows where the encryption is set, says how to change it).
    See docs/safety.md, section 3.
    """
    key = f"{PROBE_PREFIX}{os.urandom(8).hex()}"
    lacking = []
    try:
        try:
            put_object(client, bucket_name, key, b"probe", "STANDARD")
        except ClientError as e:
            if error_code(e) not in POLICY_DENIED:
                raise
            raise _refused_write(bucket_name, key, e, encryption) from e
        try:
            put_object(client, bucket_name, key, b"other", "STANDARD", exclusive=True)
            lacking.append("If-None-Match: * on PutObject (it overwrote an existing object)")
        except VerificationError:
            pass  # refused with 412, as it must be
        upload = client.create_multipart_upload(Bucket=bucket_name, Key=key)["UploadId"]
        try:
            part = client.upload_part(
                Bucket=bucket_name,
                Key=key,
                UploadId=upload,
                PartNumber=1,
                Body=b"other",
                ContentMD5=md5_b64(hashlib.md5(b"other", usedforsecurity=False).digest()),
            )
            client.complete_multipart_upload(
                Bucket=bucket_name,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
                IfNoneMatch="*",
            )
            lacking.append("If-None-Match: * on CompleteMultipartUpload (it completed over an existing object)")
        except ClientError as e:
            if error_code(e) not in PRECONDITION_FAILED:
                raise
        finally:
            try:
                client.abort_multipart_upload(Bucket=bucket_name, Key=key, UploadId=upload)
            except ClientError:
                pass  # completed (the server ignored the condition), or already gone
        try:
            client.delete_object(Bucket=bucket_name, Key=key, IfMatch='"00000000000000000000000000000000"')
        except ClientError as e:
            if error_code(e) not in PRECONDITION_FAILED:
                raise
        else:
            if not exists(client, bucket_name, key):
                lacking.append("If-Match on DeleteObject (it deleted an object whose ETag did not match)")
    finally:
        try:
            client.delete_object(Bucket=bucket_name, Key=key)
            purge_versions(client, bucket_name, key)  # a versioned bucket keeps each write of it otherwise
        except Exception:  # noqa: BLE001 - a leftover probe under staging/ is removed by the audit
            logger.warning("Could not delete the probe s3://%s/%s", bucket_name, key)
    if lacking:
        raise ConditionalWritesError(
            f"The S3 server of bucket {bucket_name!r} ignores {' and '.join(lacking)}: archiving relies on them so "
            "that it never overwrites or deletes an object it did not write. Use a server (or a release of it) that "
            "honours them; nothing was archived or deleted"
        )
