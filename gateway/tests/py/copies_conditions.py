# A copy the gateway makes (out of an encrypting bucket into a pass-through
# one) keeps the client's conditions on the destination: If-None-Match: *
# onto an existing object and If-Match with another ETag are refused 412
# and change nothing; If-Match with the destination's ETag copies.
# argv: gateway url, backend url, backend key id, backend secret.
import sys, boto3, botocore
from botocore.config import Config
gw_url, be_url, be_key, be_secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=gw_url, config=Config(retries={"max_attempts": 1}))
backend = boto3.client("s3", endpoint_url=be_url, region_name="us-east-1",
                       aws_access_key_id=be_key, aws_secret_access_key=be_secret)
extra = {}
def add(request, **kw):
    for k, v in extra.items():
        request.headers[k] = v
s3.meta.events.register("before-sign.s3.CopyObject", add)
backend.meta.events.register("before-sign.s3.PutObject", add)

def refused(call, code):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        got = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
        assert got == (412, code), got
        return
    raise AssertionError("not refused")

s3.put_object(Bucket="demo", Key="src", Body=b"the source")
backend.put_object(Bucket="open", Key="dst", Body=b"already here")
stored = lambda: backend.get_object(Bucket="open", Key="dst")["Body"].read()
copy = lambda: s3.copy_object(Bucket="open", Key="dst", CopySource={"Bucket": "demo", "Key": "src"})

# The backend itself honours the condition on a write (found out, not assumed).
extra.update({"If-None-Match": "*"})
refused(lambda: backend.put_object(Bucket="open", Key="dst", Body=b"x"), "PreconditionFailed")
assert stored() == b"already here"

refused(copy, "PreconditionFailed")
assert stored() == b"already here", "a refused copy changed the destination"
extra.clear()
extra.update({"If-Match": '"0123456789abcdef0123456789abcdef"'})
refused(copy, "PreconditionFailed")
assert stored() == b"already here"
extra.clear()
extra.update({"If-Match": backend.head_object(Bucket="open", Key="dst")["ETag"]})
copy()
assert stored() == b"the source", "decrypted into the pass-through bucket"
print("ok")
