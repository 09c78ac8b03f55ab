# Browser POST uploads through the gateway: a policy made by boto3's
# generate_presigned_post, the form sent by requests (as a browser sends
# it). The file is stored encrypted and reads back exactly; a tampered
# policy, an expired one, a field the policy does not allow and a file
# larger than it allows are refused as S3 refuses them, storing nothing.
# argv: gateway url, backend url, backend key id, backend secret.
import base64, datetime, hashlib, hmac, json, os, sys
import boto3, requests
from botocore.config import Config
gw_url, be_url, be_key, be_secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=gw_url, config=Config(signature_version="s3v4", retries={"max_attempts": 1}))
backend = boto3.client("s3", endpoint_url=be_url, region_name="us-east-1",
                       aws_access_key_id=be_key, aws_secret_access_key=be_secret)
MiB = 1024 * 1024
data = bytes((i * 7 + i // 9999) % 256 for i in range(3 * MiB + 5))
conditions = [["starts-with", "$key", "uploads/"], {"success_action_status": "201"},
              {"x-amz-meta-note": "hi"}, ["content-length-range", 1, 4 * MiB]]
fields = {"success_action_status": "201", "x-amz-meta-note": "hi"}
post = s3.generate_presigned_post("demo", "uploads/${filename}", Fields=fields, Conditions=conditions, ExpiresIn=600)

r = requests.post(post["url"], data=post["fields"], files={"file": ("photo.bin", data)})
assert r.status_code == 201, (r.status_code, r.text)
assert "<Key>uploads/photo.bin</Key>" in r.text, r.text
assert r.headers.get("x-amz-server-side-encryption") == "aws:kms", r.headers
got = s3.get_object(Bucket="demo", Key="uploads/photo.bin")
assert got["Body"].read() == data
assert got["Metadata"] == {"note": "hi"}, got["Metadata"]
stored = backend.get_object(Bucket="demo", Key="uploads/photo.bin")["Body"].read()
assert data[1000:1064] not in stored, "stored encrypted"

def refused(form, files, code, status):
    r = requests.post(post["url"], data=form, files=files)
    assert r.status_code == status and f"<Code>{code}</Code>" in r.text, (code, r.status_code, r.text)

small = {"file": ("x.bin", b"small file")}
# A field the policy does not allow (another key prefix).
refused(dict(post["fields"], key="elsewhere/x.bin"), small, "AccessDenied", 403)
# The policy edited without signing it again.
doc = json.loads(base64.b64decode(post["fields"]["policy"]))
doc["conditions"][-1] = ["content-length-range", 1, 1024 * MiB]
refused(dict(post["fields"], policy=base64.b64encode(json.dumps(doc).encode()).decode()), small,
        "SignatureDoesNotMatch", 403)
# Larger than the policy allows.
refused(post["fields"], {"file": ("big.bin", b"x" * (4 * MiB + 1))}, "EntityTooLarge", 400)
# An expired policy, signed properly (as generate_presigned_post signs).
doc = json.loads(base64.b64decode(post["fields"]["policy"]))
doc["expiration"] = (datetime.datetime.utcnow() - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
policy = base64.b64encode(json.dumps(doc).encode()).decode()
key_id, date, region = post["fields"]["x-amz-credential"].split("/")[:3]
k = ("AWS4" + os.environ["AWS_SECRET_ACCESS_KEY"]).encode()
for part in (date, region, "s3", "aws4_request"):
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
signature = hmac.new(k, policy.encode(), hashlib.sha256).hexdigest()
refused(dict(post["fields"], policy=policy, **{"x-amz-signature": signature}), small, "AccessDenied", 403)
# Nothing was stored for the refused uploads.
keys = [o["Key"] for o in backend.list_objects_v2(Bucket="demo").get("Contents", [])]
assert keys == ["uploads/photo.bin"], keys

# A redirect after the upload, as a browser form uses it.
post2 = s3.generate_presigned_post("demo", "redirected.txt",
    Fields={"success_action_redirect": "https://example.invalid/done"},
    Conditions=[{"success_action_redirect": "https://example.invalid/done"}], ExpiresIn=600)
r = requests.post(post2["url"], data=post2["fields"], files={"file": ("r.txt", b"hello")}, allow_redirects=False)
assert r.status_code == 303, (r.status_code, r.text)
assert r.headers["location"].startswith("https://example.invalid/done?bucket=demo&key=redirected.txt&etag="), r.headers
assert s3.get_object(Bucket="demo", Key="redirected.txt")["Body"].read() == b"hello"
# A redirect that would smuggle a header (CR LF inside) is not sent: the
# upload is answered 204 without it.
bad = "https://example.invalid/done\r\nSet-Cookie: stolen=1"
post3 = s3.generate_presigned_post("demo", "smuggled.txt", Fields={"success_action_redirect": bad},
    Conditions=[{"success_action_redirect": bad}], ExpiresIn=600)
r = requests.post(post3["url"], data=post3["fields"], files={"file": ("s.txt", b"x")}, allow_redirects=False)
assert r.status_code == 204 and "set-cookie" not in r.headers and "location" in r.headers, (r.status_code, r.headers)
assert not r.headers["location"].startswith("https://example.invalid"), r.headers
print("ok")
