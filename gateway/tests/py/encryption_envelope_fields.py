# Envelope fields come only from the gateway: x-amz-meta-sealgate-* sent by
# a client on PUT, CreateMultipartUpload and CopyObject (COPY and REPLACE)
# is never stored, in an encrypting bucket (the gateway's own envelope is
# there) or a pass-through one (none at all), read at the backend.
# argv: gateway url, backend url, backend key id, backend secret.
import sys, boto3
from botocore.config import Config
gw_url, be_url, be_key, be_secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=gw_url, config=Config(retries={"max_attempts": 1}))
backend = boto3.client("s3", endpoint_url=be_url, region_name="us-east-1",
                       aws_access_key_id=be_key, aws_secret_access_key=be_secret)
planted = {"sealgate-v": "9", "sealgate-dek": "AAAA", "sealgate-provider": "planted", "user": "u"}
part = bytes(range(256)) * (5 * 1024 * 1024 // 256)

def check(bucket, key):
    meta = backend.head_object(Bucket=bucket, Key=key)["Metadata"]
    ours = {k: v for k, v in meta.items() if k.lower().startswith("sealgate-")}
    if bucket == "plain":
        assert not ours, (bucket, key, meta)
    else:
        assert ours, (bucket, key, meta)
        for k, v in ours.items():
            assert planted.get(k) != v, (bucket, key, k, v)
    return meta

for bucket in ("enc", "plain"):
    s3.put_object(Bucket=bucket, Key="put", Body=b"put body", Metadata=planted)
    assert check(bucket, "put")["user"] == "u"
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Metadata=planted)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=part)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert check(bucket, "mp")["user"] == "u"
    for directive in ("COPY", "REPLACE"):
        key = "copy-" + directive.lower()
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": "put"},
                       Metadata=planted, MetadataDirective=directive)
        check(bucket, key)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"put body", (bucket, key)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == part, bucket
print("ok")
