# A multipart upload created through one gateway and continued (parts,
# Complete, read back) through another: the second follows the stored
# checksum the upload was created with, so the backend completes it.
# argv: url of the creating gateway, url of the other, bucket, key.
import sys, boto3
from botocore.config import Config
cfg = Config(retries={"total_max_attempts": 1})
first = boto3.client("s3", endpoint_url=sys.argv[1], config=cfg)
second = boto3.client("s3", endpoint_url=sys.argv[2], config=cfg)
bucket, key = sys.argv[3], sys.argv[4]
MiB = 1024 * 1024
parts = [bytes([n]) * (5 * MiB) for n in range(2)] + [b"tail"]
upload = first.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
etags = [second.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n + 1, Body=p)["ETag"]
         for n, p in enumerate(parts)]
second.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={
    "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
assert first.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(parts)
print("ok")
