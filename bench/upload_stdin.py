"""The reference pipeline's upload: a few lines of boto3 ``upload_fileobj`` from standard input."""

import sys

import boto3

endpoint, key_id, secret, bucket, key = sys.argv[1:6]
client = boto3.client(
    "s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret, region_name="us-east-1"
)
client.upload_fileobj(sys.stdin.buffer, bucket, key)
