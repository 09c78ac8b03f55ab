# A boto3 managed multipart upload and download (8 MiB parts, 4 threads)
# through the load balancer; prints the object's ETag.
# argv: endpoint, bucket, key, file to upload, file to download into.
import sys, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
url, bucket, key, src, dst = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=url, config=Config(retries={"max_attempts": 5, "mode": "standard"}))
cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=4)
s3.upload_file(src, bucket, key, Config=cfg)
s3.download_file(bucket, key, dst, Config=cfg)
print(s3.head_object(Bucket=bucket, Key=key)["ETag"])
