"""Copies an object's stored bytes and metadata from one backend to
another, around the gateway: a replica made at the storage level.

usage: copies_replica.py FROM_URL FROM_KEY FROM_SECRET FROM_BUCKET
                         TO_URL TO_KEY TO_SECRET TO_BUCKET KEY
"""
import sys

import boto3
from botocore.config import Config

(src_url, src_id, src_secret, src_bucket,
 dst_url, dst_id, dst_secret, dst_bucket, key) = sys.argv[1:10]


def client(url, key_id, secret):
    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id=key_id,
        aws_secret_access_key=secret, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"},
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"))


got = client(src_url, src_id, src_secret).get_object(Bucket=src_bucket, Key=key)
client(dst_url, dst_id, dst_secret).put_object(
    Bucket=dst_bucket, Key=key, Body=got["Body"].read(), Metadata=got["Metadata"])
print("ok")
