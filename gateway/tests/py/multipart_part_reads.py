# GET and HEAD with ?partNumber=N on encrypted objects (boto3): each part's
# exact plaintext with its Content-Range and x-amz-mp-parts-count; a single
# object is one part; parts beyond the object are InvalidPartNumber.
# argv: gateway url.
import sys, boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
MiB = 1024 * 1024
data = bytes((i * 31 + i // 1000) % 253 for i in range(10 * MiB + 1234))
up = s3.create_multipart_upload(Bucket="demo", Key="parts")
bounds = [(0, 5 * MiB), (5 * MiB, 10 * MiB), (10 * MiB, len(data))]
etags = [s3.upload_part(Bucket="demo", Key="parts", UploadId=up["UploadId"], PartNumber=n,
                        Body=data[a:b])["ETag"] for n, (a, b) in enumerate(bounds, 1)]
s3.complete_multipart_upload(Bucket="demo", Key="parts", UploadId=up["UploadId"],
    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
for n, (a, b) in enumerate(bounds, 1):
    r = s3.get_object(Bucket="demo", Key="parts", PartNumber=n)
    assert r["Body"].read() == data[a:b], n
    assert r["ContentRange"] == "bytes %d-%d/%d" % (a, b - 1, len(data)), r["ContentRange"]
    assert r["PartsCount"] == 3, r
    assert r["ContentLength"] == b - a, r["ContentLength"]
    h = s3.head_object(Bucket="demo", Key="parts", PartNumber=n)
    assert h["ContentLength"] == b - a and h["PartsCount"] == 3, h

def code(**kw):
    try:
        s3.get_object(Bucket="demo", **kw)["Body"].read()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise SystemExit(f"{kw}: served")
assert code(Key="parts", PartNumber=4) == "InvalidPartNumber"
s3.put_object(Bucket="demo", Key="single", Body=data[:1000])
r = s3.get_object(Bucket="demo", Key="single", PartNumber=1)
assert r["Body"].read() == data[:1000]
# As S3 answers it: a range over the whole object, no parts count.
assert r["ContentRange"] == "bytes 0-999/1000" and "PartsCount" not in r, r
assert code(Key="single", PartNumber=2) == "InvalidPartNumber"
print("ok")
