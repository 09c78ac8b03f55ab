# GetObjectAttributes through the gateway (boto3): plaintext ObjectSize of
# single and multipart encrypted objects, nothing that describes stored
# bytes (Checksum, ObjectParts); what the backend itself answers for the
# same object shows the difference. argv: gateway url, backend url,
# backend key id, backend secret.
import sys, boto3
from botocore.config import Config
gw_url, be_url, be_key, be_secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=gw_url, config=Config(retries={"max_attempts": 1}))
backend = boto3.client("s3", endpoint_url=be_url, region_name="us-east-1",
                       aws_access_key_id=be_key, aws_secret_access_key=be_secret)
MiB = 1024 * 1024
ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
s3.put_object(Bucket="demo", Key="single", Body=b"s" * 70000, ChecksumAlgorithm="CRC32")
up = s3.create_multipart_upload(Bucket="demo", Key="multi", ChecksumAlgorithm="CRC32")
parts = []
for n, body in enumerate([b"a" * (5 * MiB), b"b" * 1000], 1):
    r = s3.upload_part(Bucket="demo", Key="multi", UploadId=up["UploadId"], PartNumber=n, Body=body,
                       ChecksumAlgorithm="CRC32")
    parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
s3.complete_multipart_upload(Bucket="demo", Key="multi", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
for key, size in [("single", 70000), ("multi", 5 * MiB + 1000)]:
    stored = backend.get_object_attributes(Bucket="demo", Key=key, ObjectAttributes=ALL)
    assert stored["ObjectSize"] > size, stored
    got = s3.get_object_attributes(Bucket="demo", Key=key, ObjectAttributes=ALL)
    assert got["ObjectSize"] == size, (key, got)
    assert "Checksum" not in got and "ObjectParts" not in got, (key, got)
    assert got["ETag"] == stored["ETag"], (key, got)
print("ok")
