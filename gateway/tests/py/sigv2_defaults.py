# Signature Version 2 as clients send it by default: the aws cli v1's
# `s3 presign` and boto3's generate_presigned_url and generate_presigned_post
# in us-east-1 sign with V2; a client configured with signature_version "s3"
# signs every call with the V2 Authorization header. Each works through an
# encrypting gateway and is stored encrypted; the same requests altered as
# a holder of the URL would alter them are refused with S3's codes, and
# nothing they would have written is stored.
# argv: gateway url, backend url, backend key id, backend secret, reader
# key id, reader secret, team key id (team-* buckets only), team secret.
import os, subprocess, sys, urllib.parse
import boto3, botocore, requests
from botocore.config import Config
gw_url, be_url, be_key, be_secret, reader_key, reader_secret, team_key, team_secret = sys.argv[1:9]
s3 = boto3.client("s3", endpoint_url=gw_url, region_name="us-east-1")
v2 = boto3.client("s3", endpoint_url=gw_url, region_name="us-east-1",
                  config=Config(signature_version="s3", retries={"max_attempts": 1}))
backend = boto3.client("s3", endpoint_url=be_url, region_name="us-east-1",
                       aws_access_key_id=be_key, aws_secret_access_key=be_secret)
MiB = 1024 * 1024
data = bytes((i * 13 + i // 777) % 256 for i in range(300_001))

def stored(key):
    try:
        return backend.get_object(Bucket="demo", Key=key)["Body"].read()
    except botocore.exceptions.ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
        return None

def encrypted(key, plain):
    raw = stored(key)
    assert raw is not None and plain[1000:1064] not in raw, key

def http(url, method="GET", body=None, headers={}):
    # requests adds no Content-Type of its own (urllib would, and V2 signs it).
    r = requests.request(method, url, data=body, headers=headers)
    return r.status_code, r.content, r.headers

def refused(got, status, code):
    assert got[0] == status and f"<Code>{code}</Code>".encode() in got[1], (status, code, got[:2])

# The default presigned GET of both tools is V2.
s3.put_object(Bucket="demo", Key="dir/a b+ü.bin", Body=data)
cli = subprocess.run(["aws", "s3", "presign", "s3://demo/dir/a b+ü.bin", "--endpoint-url", gw_url],
                     capture_output=True, text=True, check=True).stdout.strip()
assert "AWSAccessKeyId=" in cli and "X-Amz-Algorithm" not in cli, cli
assert http(cli)[:2] == (200, data), "aws s3 presign"
url = s3.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": "dir/a b+ü.bin",
                                "ResponseContentType": "text/x-test"}, ExpiresIn=300)
assert "Signature=" in url and "X-Amz-" not in url, url
status, body, headers = http(url)
assert (status, body) == (200, data) and headers["Content-Type"] == "text/x-test", (status, headers)
status, body, _ = http(url, headers={"Range": "bytes=70000-70099"})
assert (status, body) == (206, data[70000:70100]), status

# The default presigned PUT, with the content type it was signed for.
put = s3.generate_presigned_url("put_object", Params={"Bucket": "demo", "Key": "put.bin",
                                "ContentType": "application/x-put"}, ExpiresIn=300)
assert "AWSAccessKeyId=" in put, put
got = http(put, "PUT", data, {"Content-Type": "application/x-put"})
assert got[0] == 200, (put, got[:2])
encrypted("put.bin", data)
got = s3.get_object(Bucket="demo", Key="put.bin")
assert got["Body"].read() == data and got["ContentType"] == "application/x-put"

# The headers a V2 URL was signed with travel in its query (the SDK moves
# them there): they act as headers, as on S3.
put = s3.generate_presigned_url("put_object", Params={"Bucket": "demo", "Key": "meta.bin",
                                "Metadata": {"note": "from the url"}, "ContentType": "text/x-meta"}, ExpiresIn=300)
assert "x-amz-meta-note=" in put, put
got = http(put, "PUT", data, {"Content-Type": "text/x-meta"})
assert got[0] == 200, got[:2]
head = s3.head_object(Bucket="demo", Key="meta.bin")
assert head["Metadata"] == {"note": "from the url"} and head["ContentType"] == "text/x-meta", head
encrypted("meta.bin", data)
# Sent both in the query and as a header: which would count? Refused.
refused(http(put, "PUT", data, {"Content-Type": "text/x-meta", "x-amz-meta-note": "other"}),
        400, "InvalidArgument")

# Every call signed with the V2 header.
v2.put_object(Bucket="demo", Key="v2.bin", Body=data, Metadata={"note": "v2"})
encrypted("v2.bin", data)
head = v2.head_object(Bucket="demo", Key="v2.bin")
assert head["ContentLength"] == len(data) and head["Metadata"] == {"note": "v2"}, head
assert v2.get_object(Bucket="demo", Key="v2.bin", Range="bytes=5-9")["Body"].read() == data[5:10]
mp = v2.create_multipart_upload(Bucket="demo", Key="v2-mp.bin")["UploadId"]
parts = [{"PartNumber": n, "ETag": v2.upload_part(Bucket="demo", Key="v2-mp.bin", UploadId=mp,
          PartNumber=n, Body=body)["ETag"]} for n, body in [(1, b"m" * (5 * MiB)), (2, data)]]
listed = v2.list_parts(Bucket="demo", Key="v2-mp.bin", UploadId=mp)
assert sorted(p["PartNumber"] for p in listed["Parts"]) == [1, 2], listed
assert listed["UploadId"] == mp, (mp, listed["UploadId"])
v2.complete_multipart_upload(Bucket="demo", Key="v2-mp.bin", UploadId=mp, MultipartUpload={"Parts": parts})
assert v2.get_object(Bucket="demo", Key="v2-mp.bin")["Body"].read() == b"m" * (5 * MiB) + data
encrypted("v2-mp.bin", b"m" * (5 * MiB) + data)
v2.copy_object(Bucket="demo", Key="v2-copy.bin", CopySource={"Bucket": "demo", "Key": "v2.bin"})
assert v2.get_object(Bucket="demo", Key="v2-copy.bin")["Body"].read() == data
listed = v2.list_objects(Bucket="demo", Prefix="v2", MaxKeys=10)["Contents"]
assert sorted(o["Key"] for o in listed) == ["v2-copy.bin", "v2-mp.bin", "v2.bin"], listed
v2.delete_object(Bucket="demo", Key="v2-copy.bin")
assert stored("v2-copy.bin") is None

# The default POST form (V2 policy), as a browser sends it.
post = s3.generate_presigned_post("demo", "form/${filename}", Fields={"x-amz-meta-note": "form"},
                                  Conditions=[["starts-with", "$key", "form/"], {"x-amz-meta-note": "form"}],
                                  ExpiresIn=300)
assert "AWSAccessKeyId" in post["fields"] and "signature" in post["fields"], post["fields"]
r = requests.post(post["url"], data=post["fields"], files={"file": ("f.bin", data)})
assert r.status_code == 204, (r.status_code, r.text)
encrypted("form/f.bin", data)
got = s3.get_object(Bucket="demo", Key="form/f.bin")
assert got["Body"].read() == data and got["Metadata"] == {"note": "form"}, got["Metadata"]

# --- What a holder of a V2 URL or form must not be able to do. ---
def with_query(u, **changes):
    p = urllib.parse.urlsplit(u)
    q = urllib.parse.parse_qsl(p.query, keep_blank_values=True)
    q = [(k, changes.pop(k, v)) for k, v in q] + list(changes.items())
    return urllib.parse.urlunsplit(p._replace(query=urllib.parse.urlencode(q)))

get_url = s3.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": "v2.bin"}, ExpiresIn=300)
# Another key with the same signature.
refused(http(get_url.replace("/v2.bin", "/put.bin")), 403, "SignatureDoesNotMatch")
# The expiry moved.
expires = int(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(get_url).query))["Expires"])
refused(http(with_query(get_url, Expires=str(expires + 3600))), 403, "SignatureDoesNotMatch")
# Another method: a PUT with the GET's signature stores nothing.
refused(http(get_url.replace("/v2.bin", "/planted.bin"), "PUT", b"planted"), 403, "SignatureDoesNotMatch")
refused(http(get_url, "PUT", b"planted"), 403, "SignatureDoesNotMatch")
assert stored("planted.bin") is None
# A sub-resource added (signed in V2): refused; one V2 does not sign and
# that would change the operation: refused before anything else.
refused(http(with_query(get_url, acl="")), 403, "SignatureDoesNotMatch")
refused(http(with_query(get_url, attributes="")), 403, "AccessDenied")
# A header that would make the gateway copy another object on a PUT URL.
put2 = s3.generate_presigned_url("put_object", Params={"Bucket": "demo", "Key": "planted.bin"}, ExpiresIn=300)
refused(http(put2, "PUT", b"", {"x-amz-copy-source": "/demo/v2.bin"}), 403, "SignatureDoesNotMatch")
assert stored("planted.bin") is None
# Replayed under another key id (the reader's): its secret does not match.
refused(http(with_query(get_url, AWSAccessKeyId=reader_key)), 403, "SignatureDoesNotMatch")
refused(http(with_query(get_url, AWSAccessKeyId="NOSUCHKEY")), 403, "InvalidAccessKeyId")
# Expired, signed properly.
old = botocore.auth.HmacV1QueryAuth(botocore.credentials.Credentials(
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]), expires=-60)
req = botocore.awsrequest.AWSRequest("GET", gw_url + "/demo/v2.bin")
old.add_auth(req)
refused(http(req.url), 403, "AccessDenied")
# Valid for longer than SigV4 allows (7 days).
far = botocore.auth.HmacV1QueryAuth(botocore.credentials.Credentials(
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]), expires=8 * 24 * 3600)
req = botocore.awsrequest.AWSRequest("GET", gw_url + "/demo/v2.bin")
far.add_auth(req)
refused(http(req.url), 403, "AccessDenied")
# A V2 copy URL is a copy, whatever body its holder sends.
copy_url = s3.generate_presigned_url("copy_object", Params={"Bucket": "demo", "Key": "copied.bin",
                                     "CopySource": "demo/v2.bin"}, ExpiresIn=300)
assert "x-amz-copy-source=" in copy_url, copy_url
got = http(copy_url, "PUT", b"evil")
assert got[0] == 200, got[:2]
assert s3.get_object(Bucket="demo", Key="copied.bin")["Body"].read() == data
# A key that may write team-* but not read demo signs a copy out of demo
# into its bucket: the copy's source is checked like a header's.
team = boto3.client("s3", endpoint_url=gw_url, region_name="us-east-1",
                    aws_access_key_id=team_key, aws_secret_access_key=team_secret)
steal = team.generate_presigned_url("copy_object", Params={"Bucket": "team-a", "Key": "stolen.bin",
                                    "CopySource": "demo/v2.bin"}, ExpiresIn=300)
refused(http(steal, "PUT"), 403, "AccessDenied")
try:
    backend.head_object(Bucket="team-a", Key="stolen.bin")
    raise SystemExit("the copy was stored")
except botocore.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
# The same with a SigV4 URL that carries the header in its query (signed
# by its maker): refused, never forwarded for a backend to read.
v4 = botocore.auth.S3SigV4QueryAuth(botocore.credentials.Credentials(team_key, team_secret), "s3", "us-east-1")
req = botocore.awsrequest.AWSRequest("PUT", gw_url + "/team-a/stolen.bin?x-amz-copy-source=demo%2Fv2.bin")
v4.add_auth(req)
refused(http(req.prepare().url, "PUT"), 400, "InvalidArgument")

# The same key's grants: the reader's V2 URL reads but cannot write.
reader = boto3.client("s3", endpoint_url=gw_url, region_name="us-east-1",
                      aws_access_key_id=reader_key, aws_secret_access_key=reader_secret)
assert http(reader.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": "v2.bin"}))[:2] == (200, data)
rput = reader.generate_presigned_url("put_object", Params={"Bucket": "demo", "Key": "planted.bin"})
assert "AWSAccessKeyId=" in rput
refused(http(rput, "PUT", b"planted"), 403, "AccessDenied")
assert stored("planted.bin") is None
# A form whose policy was edited, or with a field the policy does not name.
import base64, json
doc = json.loads(base64.b64decode(post["fields"]["policy"]))
doc["conditions"][0] = ["starts-with", "$key", ""]
forged = dict(post["fields"], key="elsewhere.bin", policy=base64.b64encode(json.dumps(doc).encode()).decode())
r = requests.post(post["url"], data=forged, files={"file": ("f.bin", b"x")})
assert r.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in r.text, (r.status_code, r.text)
r = requests.post(post["url"], data=dict(post["fields"], acl="public-read"), files={"file": ("g.bin", b"x")})
assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, (r.status_code, r.text)
assert stored("elsewhere.bin") is None and stored("form/g.bin") is None
print("ok")
