# Envelope fields in a browser form are the gateway's alone: a form that
# plants x-amz-meta-sealgate-* fields (the policy allows them, as a
# careless policy would) stores none of them, in an encrypting bucket or a
# pass-through one, read at the backend. A form key with `..` segments is
# refused before anything is stored.
# argv: gateway url, backend url, backend key id, backend secret.
import sys
import boto3, requests
from botocore.config import Config
gw_url, be_url, be_key, be_secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=gw_url, config=Config(signature_version="s3v4", retries={"max_attempts": 1}))
backend = boto3.client("s3", endpoint_url=be_url, region_name="us-east-1",
                       aws_access_key_id=be_key, aws_secret_access_key=be_secret)
planted = {"x-amz-meta-sealgate-v": "1", "x-amz-meta-sealgate-dek": "AAAA",
           "x-amz-meta-sealgate-provider": "planted", "x-amz-meta-sealgate-kid": "planted",
           "x-amz-meta-user": "u"}
data = b"form file bytes " * 100
for bucket in ("enc", "plain"):
    # A new list each time: boto3 adds the bucket's condition to it.
    conditions = [["starts-with", "$key", "up/"]] + [{k: v} for k, v in planted.items()]
    post = s3.generate_presigned_post(bucket, "up/${filename}", Fields=dict(planted), Conditions=conditions, ExpiresIn=600)
    r = requests.post(post["url"], data=post["fields"], files={"file": ("f.bin", data)})
    assert r.status_code == 204, (bucket, r.status_code, r.text)
    meta = backend.head_object(Bucket=bucket, Key="up/f.bin")["Metadata"]
    ours = {k: v for k, v in meta.items() if k.lower().startswith("sealgate-")}
    if bucket == "plain":
        assert meta == {"user": "u"}, (bucket, meta)
    else:
        # The gateway's own envelope, none of the planted values.
        assert ours, meta
        for k, v in ours.items():
            assert v != "AAAA" and v != "planted", (k, v)
        assert meta["user"] == "u", meta
    assert s3.get_object(Bucket=bucket, Key="up/f.bin")["Body"].read() == data, bucket
    # A key that climbs out of its prefix (and, on a path backend, its bucket).
    r = requests.post(post["url"], data=dict(post["fields"], key="up/../../other/x"), files={"file": ("f.bin", data)})
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, (r.status_code, r.text)
    keys = [o["Key"] for o in backend.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["up/f.bin"], (bucket, keys)
print("ok")
