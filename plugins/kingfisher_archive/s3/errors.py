"""The S3 error codes, by what they mean to us, and the transport's own error: the one place codes are compared.

Every module of the package compares an error's code (:func:`error_code`) with these sets, never with a literal.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from kingfisher_archive.errors import RetryableError


class VerificationError(RetryableError):
    """The bucket does not hold what we sent."""


#: What servers answer for a key that is not there, and for a condition that does not hold.
MISSING = ("NoSuchKey", "404", "NotFound")
PRECONDITION_FAILED = ("PreconditionFailed", "412")
#: A multipart upload that is no longer there: completed, or aborted.
UPLOAD_GONE = ("NoSuchUpload",)
#: A bucket that is not there.
NO_SUCH_BUCKET = ("NoSuchBucket", "404")
#: Credentials the server does not take: wrong keys, or an invalid or expired session token.
CREDENTIALS_REFUSED = ("SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken")
#: Credentials taken, access not granted: a policy, or a bucket that refuses everyone.
ACCESS_DENIED = ("AccessDenied", "403", "AllAccessDisabled")
#: What a server answers a change it will not make: a policy, or an Object Lock retention or legal hold.
REFUSALS = ("AccessDenied", "InvalidRequest", "ObjectLocked", "MethodNotAllowed")
#: A write or a delete a policy refuses (the code of a whole request, or of one key of a ``DeleteObjects``).
POLICY_DENIED = ("AccessDenied",)
#: A GET or copy of an object in an archive storage class (``GLACIER``, ``DEEP_ARCHIVE``) with no restored copy.
FROZEN = ("InvalidObjectState",)
#: A ``RestoreObject`` while a restore of the object is already running.
RESTORE_IN_PROGRESS = ("RestoreAlreadyInProgress",)
#: What a server answers when asked the Object Lock of a bucket that has none (or that it does not implement).
NO_OBJECT_LOCK = ("ObjectLockConfigurationNotFoundError", "NotImplemented", *MISSING)


def error_code(error: ClientError) -> str:
    """The error's code, as S3 names it (``NoSuchKey``), or the bare HTTP status of a HEAD (``404``)."""
    return str(error.response.get("Error", {}).get("Code", ""))
