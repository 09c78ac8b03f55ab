import sys, boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
body = bytes(range(256)) * 1000
s3.put_object(Bucket="demo", Key="c", Body=body)
h = s3.head_object(Bucket="demo", Key="c")
assert h["ContentLength"] == len(body) and h["ServerSideEncryption"] == "aws:kms", h
assert s3.get_object(Bucket="demo", Key="c", IfMatch=h["ETag"])["Body"].read() == body
def status(**kw):
    try:
        return s3.get_object(Bucket="demo", Key="c", **kw)["ResponseMetadata"]["HTTPStatusCode"]
    except botocore.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]
assert status(IfNoneMatch=h["ETag"]) == 304
assert status(IfMatch='"0123"') == 412
assert status(IfModifiedSince="2100-01-01") == 304
r = s3.get_object(Bucket="demo", Key="c", Range="bytes=70000-70009", IfMatch=h["ETag"])
assert r["Body"].read() == body[70000:70010] and r["ContentRange"] == "bytes 70000-70009/%d" % len(body), r
print("ok")
