# Browsers' CORS through an encrypting gateway, as a browser sends it
# (requests stands in for the browser here; cors.rs also runs Chromium):
# the bucket's rules (PutBucketCors through the gateway) answer unsigned
# preflights on presigned URLs, and real responses carry the rules'
# headers, refusals included. A backend that keeps no CORS rules answers
# every preflight "not enabled".
# argv: gateway url, backend url, backend key id, backend secret, "rules"
# when the backend keeps CORS rules.
import sys, boto3, botocore, requests
gw_url, be_url, be_key, be_secret, keeps = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=gw_url, region_name="us-east-1")
backend = boto3.client("s3", endpoint_url=be_url, region_name="us-east-1",
                       aws_access_key_id=be_key, aws_secret_access_key=be_secret)
APP, EVIL = "http://app.test:8000", "http://evil.test"
data = bytes((i * 31 + i // 251) % 256 for i in range(100_003))

def preflight(url, origin, method, headers=None):
    h = {"Access-Control-Request-Method": method}
    if origin:
        h["Origin"] = origin
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return requests.options(url, headers=h)

def refused(r, status, code):
    assert r.status_code == status and f"<Code>{code}</Code>" in r.text, (status, code, r.status_code, r.text)

put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "demo", "Key": "up.bin"}, ExpiresIn=300)
get_url = s3.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": "up.bin"}, ExpiresIn=300)
# S3's own checks come first, whatever the bucket.
refused(preflight(put_url, None, "PUT"), 400, "BadRequest")
refused(preflight(put_url, APP, "PATCH"), 400, "BadRequest")

if keeps != "rules":
    refused(preflight(put_url, APP, "PUT"), 403, "AccessForbidden")
    print("ok")
    sys.exit(0)

refused(preflight(put_url, APP, "PUT"), 403, "AccessForbidden")  # no rules yet
s3.put_bucket_cors(Bucket="demo", CORSConfiguration={"CORSRules": [
    {"AllowedOrigins": [APP], "AllowedMethods": ["GET", "PUT", "POST"], "AllowedHeaders": ["*"],
     "ExposeHeaders": ["ETag", "x-amz-server-side-encryption"], "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]})
# The rules took effect at once (this gateway's cache forgot the old).
r = preflight(put_url, APP, "PUT", "content-type")
assert r.status_code == 200, (r.status_code, r.text)
h = r.headers
assert h["Access-Control-Allow-Origin"] == APP, h
assert h["Access-Control-Allow-Methods"] == "GET, PUT, POST", h
assert h["Access-Control-Allow-Headers"] == "content-type", h
assert h["Access-Control-Max-Age"] == "600" and h["Access-Control-Allow-Credentials"] == "true", h
assert "Origin" in h["Vary"], h
refused(preflight(put_url, EVIL, "PUT"), 403, "AccessForbidden")
refused(preflight(put_url, APP, "DELETE"), 403, "AccessForbidden")
r = preflight(get_url, EVIL, "GET")
assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*", r.headers

# The real requests, with the browser's Origin.
r = requests.put(put_url, data=data, headers={"Origin": APP})
assert r.status_code == 200, (r.status_code, r.text)
assert r.headers["Access-Control-Allow-Origin"] == APP, r.headers
assert "ETag" in r.headers["Access-Control-Expose-Headers"], r.headers
raw = backend.get_object(Bucket="demo", Key="up.bin")["Body"].read()
assert data[500:564] not in raw, "stored encrypted"
r = requests.get(get_url, headers={"Origin": APP})
assert r.status_code == 200 and r.content == data and r.headers["Access-Control-Allow-Origin"] == APP, r.headers
r = requests.get(get_url, headers={"Origin": EVIL})
assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*", r.headers
# An origin no rule allows to PUT: served (it is signed), but without a
# CORS header a browser would let the page read; the answer varies by Origin.
put2 = s3.generate_presigned_url("put_object", Params={"Bucket": "demo", "Key": "up2.bin"}, ExpiresIn=300)
r = requests.put(put2, data=b"x", headers={"Origin": EVIL})
assert r.status_code == 200, (r.status_code, r.text)
assert not any(k.lower().startswith("access-control-") for k in r.headers), r.headers
assert "Origin" in r.headers.get("Vary", ""), r.headers
# A refusal a browser can read (a tampered URL).
r = requests.get(get_url.replace("up.bin", "other.bin"), headers={"Origin": APP})
assert r.status_code == 403 and r.headers["Access-Control-Allow-Origin"] == APP, (r.status_code, r.headers)
# No Origin, no CORS headers (the backend's are not passed on either).
r = requests.get(get_url)
assert not any(k.lower().startswith("access-control-") for k in r.headers), r.headers

s3.delete_bucket_cors(Bucket="demo")
refused(preflight(put_url, APP, "PUT"), 403, "AccessForbidden")
print("ok")
