# Copies into a mandatory bucket fail closed: a missing source, an SSE-C
# source (which the backend would decrypt and store as plaintext) and a
# source the probe cannot read are refused; a copy is pinned to the probed
# source. argv: gateway url, backend url, backend key id, backend secret.
import os, sys, boto3
from botocore.exceptions import ClientError
gw = boto3.client("s3", endpoint_url=sys.argv[1])
backend = boto3.client("s3", endpoint_url=sys.argv[2], aws_access_key_id=sys.argv[3],
                       aws_secret_access_key=sys.argv[4], region_name="us-east-1")

def refused(code, **kw):
    try:
        gw.copy_object(Bucket="secure", Key="dst", **kw)
    except ClientError as e:
        if e.response["Error"]["Code"] != code:
            raise SystemExit(f"{kw}: expected {code}, got {e.response}")
        return
    raise SystemExit(f"{kw}: copied")

refused("NoSuchKey", CopySource={"Bucket": "plain", "Key": "missing"})
key = os.urandom(32)
backend.put_object(Bucket="plain", Key="ssec", Body=b"secret plaintext",
                   SSECustomerAlgorithm="AES256", SSECustomerKey=key)
refused("AccessDenied", CopySource={"Bucket": "plain", "Key": "ssec"})
refused("InvalidArgument", CopySource={"Bucket": "plain", "Key": "ssec"},
        CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key)
gw.put_object(Bucket="secure", Key="src", Body=b"encrypted source")
refused("PreconditionFailed", CopySource={"Bucket": "secure", "Key": "src"},
        CopySourceIfMatch='"0123456789abcdef0123456789abcdef"')
etag = gw.head_object(Bucket="secure", Key="src")["ETag"]
gw.copy_object(Bucket="secure", Key="dst", CopySource={"Bucket": "secure", "Key": "src"}, CopySourceIfMatch=etag)
gw.copy_object(Bucket="secure", Key="dst2", CopySource={"Bucket": "secure", "Key": "src"})
for k in ("dst", "dst2"):
    assert gw.get_object(Bucket="secure", Key=k)["Body"].read() == b"encrypted source", k
print("ok")
