"""The S3 transport: verified uploads, conditional writes, server-side copies, and what undoes them.

Nothing here trusts a write until it is checked: every part and object carries its MD5 and CRC32, a proof finds our
bytes in the bucket whatever its encryption, a write can be conditional on its key being free (``If-None-Match: *``),
a copy takes only the object verified (``CopySourceIfMatch``) and a delete that undoes our write only exactly what
we wrote (``If-Match``). It knows nothing of tar, LZ4, the crawl, the retention policy or Airflow: it moves bytes and
checks them. A bucket's name is a ``bucket_name`` string throughout. See docs/safety.md, sections 1 and 3.

One module per operation, as s3transfer is laid out; callers import from the module itself:

- :mod:`~kingfisher_archive.s3.errors`: the S3 error codes by what they mean (``MISSING``, ``PRECONDITION_FAILED``,
  ...), :func:`~kingfisher_archive.s3.errors.error_code`, and :class:`~kingfisher_archive.s3.errors.VerificationError`;
  the one place codes are compared.
- :mod:`~kingfisher_archive.s3.client`: an archiving client's configuration, and the encryption on every write.
- :mod:`~kingfisher_archive.s3.proof`: checksums, and the proof that a key holds our bytes (``prove``, ``Proof``,
  ``verify_object``, ``verify_read_back``).
- :mod:`~kingfisher_archive.s3.objects`: what a key holds (``get_if_any``, ``identity``, ``exists``, ``stream``).
- :mod:`~kingfisher_archive.s3.upload`: multipart uploads (``MultipartUpload``, ``upload_file``, part sizes), small
  objects (``put_object``, ``put_object_once``), and aborting uploads (``abort_uploads``).
- :mod:`~kingfisher_archive.s3.copies`: promoting a verified staging object to its final key (``promote``).
- :mod:`~kingfisher_archive.s3.delete`: conditional deletes (``delete_if_match``), the withdrawal of a failed try
  (``withdraw``), and the leftovers under ``staging/`` (``clean_staging``, ``purge_versions``).
- :mod:`~kingfisher_archive.s3.versions`: a bucket's versioning and Object Lock (``describe_bucket``).
- :mod:`~kingfisher_archive.s3.thawing`: objects in the archive storage classes (``GLACIER``, ``DEEP_ARCHIVE``):
  whether one can be read now, and asking S3 for a restored copy (``thaw_state``, ``request_thaw``).
- :mod:`~kingfisher_archive.s3.probe`: whether the server honours conditional requests (``probe_conditional_writes``).
"""
