# A client that opens more uploads than a listing reads records for in bulk
# (10,000) cannot push another client's upload out of ListMultipartUploads:
# the other upload is still listed with its token, which resumes it.
# The flood is made at the backend as record-shaped uploads that sort
# before every real record (what a flood of real uploads costs the
# listing, without 10,000 encrypting Creates).
# argv: gateway url, backend url, backend access key, backend secret.
import sys, boto3
from concurrent.futures import ThreadPoolExecutor
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
backend = boto3.client("s3", endpoint_url=sys.argv[2], aws_access_key_id=sys.argv[3],
                       aws_secret_access_key=sys.argv[4], region_name="us-east-1",
                       config=Config(max_pool_connections=16))
FLOOD = 10_001
# Uploads without records (made at the backend), sorting just before
# "mine": with 1,000-upload pages, "mine" would be the 102nd of its page.
BEFORE = 101
mine = s3.create_multipart_upload(Bucket="demo", Key="mine")["UploadId"]
assert mine.startswith("sgmp"), mine
with ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda n: backend.create_multipart_upload(
        Bucket="demo", Key=f".sealgate/uploads/0/0-1/flood{n:05}"), range(FLOOD)))
    others = list(pool.map(lambda n: backend.create_multipart_upload(
        Bucket="demo", Key=f"before{n:03}")["UploadId"], range(BEFORE)))

pages = list(s3.get_paginator("list_multipart_uploads").paginate(Bucket="demo"))
listed = [(u["Key"], u["UploadId"]) for p in pages for u in p.get("Uploads", [])]
expected = [(f"before{n:03}", others[n]) for n in range(BEFORE)] + [("mine", mine)]
assert sorted(listed) == sorted(expected), (listed[:2], listed[-2:])
# Each page was capped once the records no longer fit one read.
assert all(p["MaxUploads"] <= 100 for p in pages), [p["MaxUploads"] for p in pages][:3]
# Resumed with the listed id.
(_, resumed), = [u for u in listed if u[0] == "mine"]
e1 = s3.upload_part(Bucket="demo", Key="mine", UploadId=resumed, PartNumber=1, Body=b"part")["ETag"]
s3.complete_multipart_upload(Bucket="demo", Key="mine", UploadId=resumed, MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": e1}]})
assert s3.get_object(Bucket="demo", Key="mine")["Body"].read() == b"part"
print("ok")
