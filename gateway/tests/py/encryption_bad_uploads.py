import sys, hashlib, base64, boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
body = b"z" * 3_000_000
def code(**kw):
    try:
        s3.put_object(Bucket="demo", Body=body, **kw)
        return "stored"
    except botocore.exceptions.ClientError as e:
        return "%s %s" % (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
print(code(Key="md5", ContentMD5=base64.b64encode(hashlib.md5(b"other").digest()).decode()))
print(code(Key="crc", ChecksumCRC32="AAAAAA=="))
print(code(Key="sha1", ChecksumSHA1=base64.b64encode(hashlib.sha1(b"other").digest()).decode()))
