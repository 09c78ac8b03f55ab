# CopyObject on an encrypted bucket with boto3: COPY and REPLACE, a copy
# onto itself, an empty object, a multipart source, a failed condition and
# boto3's managed copy. Who made each copy is read at the backend: a copy
# the backend made keeps the source's envelope (same salt); one the gateway
# made has its own. argv: gateway url, backend url, backend key id, secret.
import sys, boto3, botocore
from botocore.config import Config

gw_url, be_url, be_key, be_secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=gw_url, config=Config(retries={"max_attempts": 1}))
backend = boto3.client("s3", endpoint_url=be_url, region_name="us-east-1",
                       aws_access_key_id=be_key, aws_secret_access_key=be_secret)
MiB = 1024 * 1024
small = bytes(range(256)) * 40
s3.put_object(Bucket="demo", Key="small", Body=small, ContentType="text/x-src", Metadata={"m": "1"})

def stored_meta(key):
    return backend.head_object(Bucket="demo", Key=key)["Metadata"]

def check(key, body, content_type=None, metadata=None):
    r = s3.get_object(Bucket="demo", Key=key)
    assert r["Body"].read() == body, key
    assert r["ServerSideEncryption"] == "aws:kms", r
    if content_type:
        assert r["ContentType"] == content_type, (key, r["ContentType"])
    if metadata is not None:
        assert r["Metadata"] == metadata, (key, r["Metadata"])
    raw = backend.get_object(Bucket="demo", Key=key)["Body"].read()
    assert len(body) < 64 or body[:64] not in raw, key + " stored encrypted"

r = s3.copy_object(Bucket="demo", Key="c-copy", CopySource={"Bucket": "demo", "Key": "small"})
assert r["ServerSideEncryption"] == "aws:kms", r
check("c-copy", small, "text/x-src", {"m": "1"})
assert stored_meta("c-copy")["sealgate-salt"] == stored_meta("small")["sealgate-salt"], "kept as stored"

s3.copy_object(Bucket="demo", Key="c-replace", CopySource={"Bucket": "demo", "Key": "small"},
               MetadataDirective="REPLACE", ContentType="text/x-new", Metadata={"n": "2"})
check("c-replace", small, "text/x-new", {"n": "2"})
assert stored_meta("c-replace")["sealgate-salt"] == stored_meta("small")["sealgate-salt"]

# A copy onto itself (how clients change metadata in place).
s3.copy_object(Bucket="demo", Key="small", CopySource={"Bucket": "demo", "Key": "small"},
               MetadataDirective="REPLACE", ContentType="text/x-self", Metadata={"s": "3"})
check("small", small, "text/x-self", {"s": "3"})

s3.put_object(Bucket="demo", Key="empty", Body=b"")
s3.copy_object(Bucket="demo", Key="c-empty", CopySource={"Bucket": "demo", "Key": "empty"})
check("c-empty", b"")

# A multipart source: the gateway makes the copy as one stream, so sizes
# stay exact in listings (a stored copy would lose the part count).
big = bytes((i * 13 + i // 4096) % 251 for i in range(5 * MiB + 4321))
up = s3.create_multipart_upload(Bucket="demo", Key="multi", ContentType="text/x-multi", Metadata={"p": "4"})
e1 = s3.upload_part(Bucket="demo", Key="multi", UploadId=up["UploadId"], PartNumber=1, Body=big[:5 * MiB])["ETag"]
e2 = s3.upload_part(Bucket="demo", Key="multi", UploadId=up["UploadId"], PartNumber=2, Body=big[5 * MiB:])["ETag"]
s3.complete_multipart_upload(Bucket="demo", Key="multi", UploadId=up["UploadId"],
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
s3.copy_object(Bucket="demo", Key="c-multi", CopySource={"Bucket": "demo", "Key": "multi"})
check("c-multi", big, "text/x-multi", {"p": "4"})
assert stored_meta("c-multi")["sealgate-salt"] != stored_meta("multi")["sealgate-salt"], "made by the gateway"
assert "sealgate-layout" not in stored_meta("c-multi"), "one stream"
sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="demo", Prefix="c-")["Contents"]}
assert sizes == {"c-copy": len(small), "c-replace": len(small), "c-empty": 0, "c-multi": len(big)}, sizes

try:
    s3.copy_object(Bucket="demo", Key="c-bad", CopySource={"Bucket": "demo", "Key": "multi"},
                   CopySourceIfMatch='"0123456789abcdef0123456789abcdef"')
    raise SystemExit("copied against a failed condition")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "PreconditionFailed", e.response

# boto3's managed copy (UploadPartCopy over 8 MiB with this threshold).
from boto3.s3.transfer import TransferConfig
s3.copy({"Bucket": "demo", "Key": "multi"}, "demo", "managed",
        Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
check("managed", big)
# SSE request headers: aws:kms is what the bucket does; anything else
# (SSE-S3's AES256) is refused, not answered with what it did not ask for.
s3.put_object(Bucket="demo", Key="sse-kms", Body=b"x", ServerSideEncryption="aws:kms")
for call in (lambda: s3.put_object(Bucket="demo", Key="sse-s3", Body=b"x", ServerSideEncryption="AES256"),
             lambda: s3.copy_object(Bucket="demo", Key="sse-s3", CopySource={"Bucket": "demo", "Key": "sse-kms"},
                                    ServerSideEncryption="AES256"),
             lambda: s3.create_multipart_upload(Bucket="demo", Key="sse-s3", ServerSideEncryption="AES256")):
    try:
        call()
        raise SystemExit("accepted AES256")
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidArgument", e.response
print("ok")
