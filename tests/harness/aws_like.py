"""What Amazon S3 answers where SeaweedFS answers otherwise, for :class:`StrippingProxy`'s ``rewrite``.

AWS cannot be reached from these machines, so each behaviour below is imitated in front of a real SeaweedFS, as
the AWS page cited beside it documents it:

- ``kms``: objects encrypted with SSE-KMS. "Objects encrypted by SSE-C or SSE-KMS have ETags that are not an MD5
  digest of their object data" (https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html, ETag). Every
  ETag the server gives (headers, and the XML of listings, copies and completions) is replaced by another opaque
  value, and mapped back in the conditions and part lists the client sends, so the ETag stays the object's
  identity, as it does on AWS. The ``x-amz-server-side-encryption`` headers are answered as AWS answers them
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/specifying-kms-encryption.html) and not passed on
  (SeaweedFS has no KMS here).
- ``checksums=False``: a server that stores no checksum (``x-amz-checksum-*`` never answered, as before S3's
  2025 default data integrity protections: https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html).
- ``require_kms``: a bucket policy that denies ``s3:PutObject`` without ``x-amz-server-side-encryption: aws:kms``
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/specifying-kms-encryption.html, "Requiring SSE-KMS"):
  403 ``AccessDenied`` to PutObject, CreateMultipartUpload and CopyObject that lack it.
- ``missing_if_match=404``: ``If-Match`` on a key that does not exist answers 404 ``NoSuchKey``
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html), where SeaweedFS answers 412.

``writes`` records the headers of every write that reached the proxy, to check what was sent.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

ETAG_XML = re.compile(rb"(<ETag>(?:&quot;|&#34;|\")?)([0-9a-f]{32})")
ETAG_HEADERS = ("if-match", "if-none-match", "x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match")
CHECKSUM_XML = re.compile(
    rb"<Checksum(?:CRC32C?|CRC64NVME|SHA1|SHA256|Type)>[^<]*</Checksum(?:CRC32C?|CRC64NVME|SHA1|SHA256|Type)>"
)
SSE = "x-amz-server-side-encryption"
KEY_ID = "arn:aws:kms:us-east-1:111122223333:key/test-proxy-key"
ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
)
NO_SUCH_KEY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>"
)


def opaque(etag: str) -> str:
    """Another value for an ETag, and back again (the hex digits reversed): not an MD5 of anything we sent."""
    quoted = etag.startswith('"')
    value = etag.strip('"')
    digest, dash, parts = value.partition("-")
    swapped = digest[::-1] + dash + parts
    return f'"{swapped}"' if quoted else swapped


def _opaque_xml(payload: bytes) -> bytes:
    return ETAG_XML.sub(lambda m: m.group(1) + m.group(2)[::-1], payload)


def _operation(method: str, path: str, headers: dict) -> str:
    query = parse_qs(urlsplit(path).query, keep_blank_values=True)
    if method == "PUT" and "partNumber" in query:
        return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
    if method == "PUT" and urlsplit(path).path.count("/") >= 2:
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if method == "POST" and "uploadId" in query:
        return "CompleteMultipartUpload"
    if method == "DELETE" and "uploadId" not in query:
        return "DeleteObject"
    return method


class AwsLike:
    def __init__(self, upstream_client, bucket: str, *, kms=True, checksums=True, require_kms=False) -> None:
        self.upstream = upstream_client
        self.bucket = bucket
        self.kms = kms
        self.checksums = checksums
        self.require_kms = require_kms
        self.writes: list[tuple[str, str, dict]] = []

    def request(self, method: str, path: str, headers: dict, body: bytes):
        lower = {k.lower(): v for k, v in headers.items()}
        operation = _operation(method, path, lower)
        if operation in ("PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart"):
            self.writes.append((operation, urlsplit(path).path, lower))
        if self.require_kms and operation in ("PutObject", "CopyObject", "CreateMultipartUpload"):
            if lower.get(SSE) != "aws:kms":
                return 403, [("Content-Type", "application/xml")], ACCESS_DENIED
        if operation == "DeleteObject" and "if-match" in lower and not self._exists(path):
            return 404, [("Content-Type", "application/xml")], NO_SUCH_KEY
        if self.kms:
            headers = {k: v for k, v in headers.items() if not k.lower().startswith(SSE)}
            for k in list(headers):
                if k.lower() in ETAG_HEADERS and headers[k] != "*":
                    headers[k] = opaque(headers[k])
            if operation == "CompleteMultipartUpload":
                body = _opaque_xml(body)
                headers = {k: (str(len(body)) if k.lower() == "content-length" else v) for k, v in headers.items()}
        return headers, body

    def response(self, method: str, path: str, status: int, headers, payload: bytes):
        headers = list(headers)
        if self.kms:
            headers = [(k, opaque(v) if k.lower() == "etag" else v) for k, v in headers]
            payload = _opaque_xml(payload)
            if status < 300 and method in ("GET", "HEAD", "PUT", "POST") and urlsplit(path).path.count("/") >= 2:
                headers += [(SSE, "aws:kms"), (f"{SSE}-aws-kms-key-id", KEY_ID)]
        if not self.checksums:
            headers = [(k, v) for k, v in headers if not k.lower().startswith("x-amz-checksum-")]
            payload = CHECKSUM_XML.sub(b"", payload)
        if method != "HEAD":
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        return status, headers, payload

    def _exists(self, path: str) -> bool:
        key = unquote(urlsplit(path).path.split("/", 2)[2])
        try:
            self.upstream.head_object(Bucket=self.bucket, Key=key)
        except Exception:  # noqa: BLE001 - any refusal means the same here
            return False
        return True
