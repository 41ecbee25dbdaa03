"""An archiving client: its botocore configuration, and the encryption every write and copy carries.

Nothing here sends a request: it configures the client every other module of :mod:`kingfisher_archive.s3` is given.
"""

from __future__ import annotations

from botocore.config import Config


def client_config(base: Config | None = None) -> Config:
    """``base`` (a connection's botocore configuration, or none) for an archiving client: no hash botocore adds.

    Payload signing off (no SHA-256 of the body over plain HTTP) and ``request_checksum_calculation`` only
    ``when_required`` (no CRC32 of botocore's): our own ``Content-MD5`` and CRC32 protect every body. Settings in
    ``base`` (the connection's ``config_kwargs``) win. See docs/safety.md, section 1.
    """
    base = base or Config()
    ours = {"s3": {"payload_signing_enabled": False, **(base.s3 or {})}}  # merge() replaces s3 whole
    if base.request_checksum_calculation is None:
        ours["request_checksum_calculation"] = "when_required"
    return base.merge(Config(**ours))


#: The write parameters of server-side encryption, as boto3 names them (and S3Hook's ``extra_args``).
ENCRYPTION_PARAMETERS = ("ServerSideEncryption", "SSEKMSKeyId", "BucketKeyEnabled")
ENCRYPTION_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")
#: The operations that create an object, each of which must carry the encryption settings.
WRITES = ("PutObject", "CreateMultipartUpload", "CopyObject")


def encrypt_writes(client, encryption: dict) -> None:
    """Send ``encryption`` (:data:`ENCRYPTION_PARAMETERS`) on every write and copy ``client`` makes.

    Registered once on the client, so no write, present or future, can leave the headers out.
    """
    if not encryption:
        return

    def add(params, **kwargs):
        for name, value in encryption.items():
            params.setdefault(name, value)

    for operation in WRITES:
        client.meta.events.register(f"before-parameter-build.s3.{operation}", add)
