"""What a key holds: a small object's bytes, an object's size and ETag, or an object's stream; ``None`` if nothing.

A key that is not there is an answer here, not an error (:data:`~kingfisher_archive.s3.errors.MISSING`).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from kingfisher_archive.s3.errors import MISSING, error_code


def exists(client, bucket_name: str, key: str) -> bool:
    """Whether ``key`` holds an object, asked of the key (HEAD), not of a listing that may lag writes."""
    return identity(client, bucket_name, key) is not None


def _unless_missing(request, **params) -> dict | None:
    """``request(**params)``'s response, or ``None`` if the server answers that the key is not there."""
    try:
        return request(**params)
    except ClientError as e:
        if error_code(e) in MISSING:
            return None
        raise


def get_if_any(client, bucket_name: str, key: str) -> tuple[bytes, str] | None:
    """``(bytes, ETag)`` of a small object, or ``None`` if there is none."""
    response = _unless_missing(client.get_object, Bucket=bucket_name, Key=key)
    return None if response is None else (response["Body"].read(), response["ETag"])


def identity(client, bucket_name: str, key: str) -> tuple[int, str] | None:
    """``(size, ETag)`` of the object at ``key``, or ``None`` if there is none."""
    head = _unless_missing(client.head_object, Bucket=bucket_name, Key=key)
    return None if head is None else (head["ContentLength"], head["ETag"])


def stream(client, bucket_name: str, key: str):
    """The body of the object at ``key``, a file-like stream read as it downloads (``ClientError`` if none)."""
    return client.get_object(Bucket=bucket_name, Key=key)["Body"]
