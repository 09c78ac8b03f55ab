# Content-Encoding is the client's, byte-exact, on encrypted objects:
# sent with a plain body, with an aws-chunked body (a trailing checksum
# makes boto3 stream it), and in a multipart upload (where the gateway
# frames no body, so even a list keeps its spacing). argv: gateway url.
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
body = b"not really gzip, but labelled so" * 100
for i, enc in enumerate(["gzip", "br", "x-custom;q=1", "identity"]):
    s3.put_object(Bucket="demo", Key=f"plain{i}", Body=body, ContentEncoding=enc)
    s3.put_object(Bucket="demo", Key=f"chunked{i}", Body=__import__("io").BytesIO(body),
                  ContentEncoding=enc, ChecksumAlgorithm="CRC32")
    for key in (f"plain{i}", f"chunked{i}"):
        r = s3.get_object(Bucket="demo", Key=key)
        assert r["Body"].read() == body, key
        assert r["ContentEncoding"] == enc, (key, r["ContentEncoding"], enc)
        assert s3.head_object(Bucket="demo", Key=key)["ContentEncoding"] == enc, key
up = s3.create_multipart_upload(Bucket="demo", Key="mp", ContentEncoding="gzip, br")
e = s3.upload_part(Bucket="demo", Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=body)["ETag"]
s3.complete_multipart_upload(Bucket="demo", Key="mp", UploadId=up["UploadId"],
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
assert s3.head_object(Bucket="demo", Key="mp")["ContentEncoding"] == "gzip, br"
print("ok")
