# UploadPartCopy through the gateway with boto3: ranged part copies from
# encrypted single and multipart sources and from a plaintext source, read
# back exactly; S3's errors for bad ranges, a missing source and a failed
# copy condition. argv: gateway url, backend url, backend key id, secret.
import sys, boto3, botocore
from botocore.config import Config

gw_url, be_url, be_key, be_secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=gw_url, config=Config(retries={"max_attempts": 1}))
backend = boto3.client("s3", endpoint_url=be_url, region_name="us-east-1",
                       aws_access_key_id=be_key, aws_secret_access_key=be_secret)
MiB = 1024 * 1024
data = bytes((i * 7 + i // 65536) % 251 for i in range(13 * MiB + 12345))
s3.put_object(Bucket="demo", Key="single", Body=data)
# A multipart source whose parts do not line up with the copy's ranges.
up = s3.create_multipart_upload(Bucket="demo", Key="multi")
etags = []
for n, start in enumerate(range(0, len(data), 6 * MiB), 1):
    etags.append(s3.upload_part(Bucket="demo", Key="multi", UploadId=up["UploadId"], PartNumber=n,
                                Body=data[start:start + 6 * MiB])["ETag"])
s3.complete_multipart_upload(Bucket="demo", Key="multi", UploadId=up["UploadId"],
    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
# A plaintext object written around the gateway (the bucket is not mandatory).
backend.put_object(Bucket="demo", Key="raw", Body=data)

def ranged_copy(src, dst, ranges):
    u = s3.create_multipart_upload(Bucket="demo", Key=dst)
    parts = []
    for n, (a, b) in enumerate(ranges, 1):
        r = s3.upload_part_copy(Bucket="demo", Key=dst, UploadId=u["UploadId"], PartNumber=n,
                                CopySource={"Bucket": "demo", "Key": src}, CopySourceRange="bytes=%d-%d" % (a, b))
        assert r["ServerSideEncryption"] == "aws:kms", r
        parts.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
    s3.complete_multipart_upload(Bucket="demo", Key=dst, UploadId=u["UploadId"], MultipartUpload={"Parts": parts})
    want = b"".join(data[a:b + 1] for a, b in ranges)
    got = s3.get_object(Bucket="demo", Key=dst)["Body"].read()
    assert got == want, (src, dst, len(got), len(want))
    stored = backend.get_object(Bucket="demo", Key=dst)["Body"].read()
    assert data[1000:1064] not in stored, "the copy is stored encrypted"

# Equal 5 MiB parts and a tail, starting mid-frame and mid-part.
ranges = [(100, 100 + 5 * MiB - 1), (100 + 5 * MiB, 100 + 10 * MiB - 1), (100 + 10 * MiB, len(data) - 1)]
for src in ["single", "multi", "raw"]:
    ranged_copy(src, "copy-of-" + src, ranges)

def error_code(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"] + ("" if e.response["Error"]["Code"] != "ServiceUnavailable" else ":" + e.response["Error"]["Message"])
    raise SystemExit("accepted: " + getattr(call, "what", "?"))

u = s3.create_multipart_upload(Bucket="demo", Key="bad")
def part_copy(**kw):
    args = dict(Bucket="demo", Key="bad", UploadId=u["UploadId"], PartNumber=1,
                CopySource={"Bucket": "demo", "Key": "single"})
    args.update(kw)
    call = lambda: s3.upload_part_copy(**args)
    call.what = repr(kw)
    return call
code = error_code(part_copy(CopySourceRange="bytes=0-%d" % len(data))); assert code == "InvalidRange", code
code = error_code(part_copy(CopySourceRange="bytes=%d-%d" % (len(data), len(data) + 5))); assert code == "InvalidRange", code
code = error_code(part_copy(CopySourceRange="bytes=10-")); assert code == "InvalidArgument", code
code = error_code(part_copy(CopySourceRange="bytes=9-5")); assert code == "InvalidArgument", code
code = error_code(part_copy(CopySource={"Bucket": "demo", "Key": "missing"})); assert code == "NoSuchKey", code
code = error_code(part_copy(CopySourceIfMatch='"0123456789abcdef0123456789abcdef"')); assert code == "PreconditionFailed", code
# Nothing was stored for the refused parts.
assert s3.list_parts(Bucket="demo", Key="bad", UploadId=u["UploadId"]).get("Parts", []) == []
s3.abort_multipart_upload(Bucket="demo", Key="bad", UploadId=u["UploadId"])
print("ok")
