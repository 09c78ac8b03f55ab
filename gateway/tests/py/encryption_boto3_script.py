import sys, hashlib, base64, boto3, botocore
from botocore.config import Config
endpoint = sys.argv[1]
s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))
def data(n):
    return (hashlib.sha256(str(n).encode()).digest() * (n // 32 + 1))[:n]
for n in [0, 1, 65535, 65536, 65537, 10 * 1024 * 1024 + 7]:
    body = data(n)
    r = s3.put_object(Bucket="demo", Key="b%d" % n, Body=body, ChecksumAlgorithm="SHA256")
    assert r["ServerSideEncryption"] == "aws:kms", r
    assert r["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode(), r
    g = s3.get_object(Bucket="demo", Key="b%d" % n, ChecksumMode="ENABLED")
    assert g["Body"].read() == body, n
    assert g["ContentLength"] == n
    assert not any(k.startswith("x-amz-checksum") for k in g["ResponseMetadata"]["HTTPHeaders"]), g["ResponseMetadata"]
    assert "sealgate" not in str(g["ResponseMetadata"]["HTTPHeaders"])
# Server-side copies of encrypted objects stay readable.
s3.copy_object(Bucket="demo", Key="copy", CopySource={"Bucket": "demo", "Key": "b65537"})
assert s3.get_object(Bucket="demo", Key="copy")["Body"].read() == data(65537)
# A client may not inject envelope metadata: a forged layout field, which the
# gateway never sets on a single PUT, would make the read fail if it got through.
s3.put_object(Bucket="demo", Key="inject", Body=b"x", Metadata={"sealgate-layout": "multipart", "sealgate-v": "9"})
assert s3.get_object(Bucket="demo", Key="inject")["Body"].read() == b"x"
print("ok")
