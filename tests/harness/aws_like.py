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

- ``cold=True``: the archive storage classes, as https://docs.aws.amazon.com/AmazonS3/latest/userguide/restoring-objects.html
  and the API pages below describe them (SeaweedFS stores and reports every class, ``x-amz-storage-class`` and the
  listing's ``StorageClass``, but serves every object at once). An object in ``GLACIER`` or ``DEEP_ARCHIVE``:

  - ``GetObject`` (ranged too) answers 403 ``InvalidObjectState`` until a restored copy exists
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html: "before you can retrieve the object you
    must first restore a copy using RestoreObject. Otherwise, this operation returns an InvalidObjectState error");
    so does ``CopyObject`` and ``UploadPartCopy`` from it (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html);
    ``HeadObject``, ``DeleteObject`` and listings work as for any object.
  - ``RestoreObject`` (``POST /<key>?restore``, https://docs.aws.amazon.com/AmazonS3/latest/API/API_RestoreObject.html)
    answers 202 when it starts a restore, 409 ``RestoreAlreadyInProgress`` while one runs, and 200 once the
    restored copy exists; a restore of an object of any other class answers 403 ``InvalidObjectState``.
  - ``HeadObject`` carries ``x-amz-restore``: ``ongoing-request="true"`` while it runs, then
    ``ongoing-request="false", expiry-date="..."`` (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html).
  - A restore takes ``restore_seconds`` of :attr:`AwsLike.clock` (``time.monotonic`` unless a test sets
    another; :meth:`AwsLike.finish_restores` ends every running one at once); the copy lasts the request's
    ``Days``. A restore belongs to the object's version (its ETag): an object written again is cold again.
  ``restores`` records each ``RestoreObject`` asked for: ``(key, days, tier)``.

``writes`` records the headers of every write that reached the proxy, to check what was sent.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
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


#: The classes whose objects cannot be read until restored (the Intelligent-Tiering archive tiers are not imitated).
COLD = ("GLACIER", "DEEP_ARCHIVE")
XML = [("Content-Type", "application/xml")]


def _error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    ).encode()


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
    if method == "POST" and "restore" in query:
        return "RestoreObject"
    if method in ("GET", "HEAD") and urlsplit(path).path.count("/") >= 2 and not {"uploadId", "uploads"} & set(query):
        return "GetObject" if method == "GET" else "HeadObject"
    return method


def _key(path: str) -> str:
    return unquote(urlsplit(path).path.split("/", 2)[2])


def _copy_source_key(headers: dict) -> str:
    source = unquote(headers["x-amz-copy-source"].split("?", 1)[0]).lstrip("/")
    return source.split("/", 1)[1]


class AwsLike:
    def __init__(
        self,
        upstream_client,
        bucket: str,
        *,
        kms=True,
        checksums=True,
        require_kms=False,
        cold=False,
        restore_seconds: float = 5.0,
    ) -> None:
        self.upstream = upstream_client
        self.bucket = bucket
        self.kms = kms
        self.checksums = checksums
        self.require_kms = require_kms
        self.cold = cold
        self.restore_seconds = restore_seconds
        self.clock = time.monotonic
        self.writes: list[tuple[str, str, dict]] = []
        self.restores: list[tuple[str, int, str]] = []
        self.refused_cold: list[tuple[str, str]] = []  # (operation, key) answered InvalidObjectState
        self._restoring: dict[tuple[str, str], tuple[float, float]] = {}  # (key, etag): (ready at, expires at)

    # -- the archive storage classes ---------------------------------------------------------------------------

    def _head(self, key: str) -> dict | None:
        try:
            return self.upstream.head_object(Bucket=self.bucket, Key=key)
        except Exception:  # noqa: BLE001 - missing or refused: the server answers for itself
            return None

    def restore_state(self, key: str, etag: str) -> str | None:
        """``None`` (no restore), ``"ongoing"`` or ``"restored"`` for that version of ``key``."""
        times = self._restoring.get((key, etag))
        if times is None:
            return None
        now = self.clock()
        if now >= times[1]:
            del self._restoring[(key, etag)]
            return None
        return "restored" if now >= times[0] else "ongoing"

    def finish_restores(self) -> None:
        """Every restore running is done now (a test's way to let hours pass)."""
        now = self.clock()
        for k, (_, expires) in list(self._restoring.items()):
            self._restoring[k] = (now, expires)

    def _frozen(self, key: str) -> bool:
        """Whether ``key`` is an object in an archive class with no restored copy."""
        head = self._head(key)
        if head is None or head.get("StorageClass") not in COLD:
            return False
        return self.restore_state(key, head["ETag"]) != "restored"

    def _restore(self, key: str, body: bytes):
        head = self._head(key)
        if head is None:
            return 404, XML, NO_SUCH_KEY
        if head.get("StorageClass") not in COLD:
            return (
                403,
                XML,
                _error("InvalidObjectState", "Restore is not allowed for the object's current storage class"),
            )
        days = int(m.group(1)) if (m := re.search(rb"<Days>(\d+)</Days>", body)) else 1
        tier = m.group(1).decode() if (m := re.search(rb"<Tier>(\w+)</Tier>", body)) else "Standard"
        self.restores.append((key, days, tier))
        state = self.restore_state(key, head["ETag"])
        if state == "ongoing":
            return 409, XML, _error("RestoreAlreadyInProgress", "Object restore is already in progress")
        now = self.clock()
        if state == "restored":
            ready = self._restoring[(key, head["ETag"])][0]
            self._restoring[(key, head["ETag"])] = (ready, now + days * 86400)
            return 200, [], b""
        self._restoring[(key, head["ETag"])] = (now + self.restore_seconds, now + self.restore_seconds + days * 86400)
        return 202, [], b""

    def _restore_header(self, path: str, headers: list) -> list:
        etag = next((v for k, v in headers if k.lower() == "etag"), None)
        state = self.restore_state(_key(path), etag) if etag else None
        if state == "ongoing":
            return [*headers, ("x-amz-restore", 'ongoing-request="true"')]
        if state == "restored":
            expires = time.time() + self._restoring[(_key(path), etag)][1] - self.clock()
            return [
                *headers,
                ("x-amz-restore", f'ongoing-request="false", expiry-date="{formatdate(expires, usegmt=True)}"'),
            ]
        return headers

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
        if self.cold:
            if operation == "RestoreObject":
                return self._restore(_key(path), body)
            source = _copy_source_key(lower) if operation in ("CopyObject", "UploadPartCopy") else None
            if operation == "GetObject" or source is not None:
                key = source if source is not None else _key(path)
                if self._frozen(key):
                    self.refused_cold.append((operation, key))
                    message = "The operation is not valid for the object's storage class"
                    return 403, XML, _error("InvalidObjectState", message)
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
        if self.cold and status < 300 and _operation(method, path, {}) in ("GetObject", "HeadObject"):
            headers = self._restore_header(path, headers)  # before the ETag is made opaque: the state is by ETag
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
        key = _key(path)
        try:
            self.upstream.head_object(Bucket=self.bucket, Key=key)
        except Exception:  # noqa: BLE001 - any refusal means the same here
            return False
        return True
