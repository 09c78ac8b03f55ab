# ListMultipartUploads on an encrypting bucket answers the gateway's
# upload-id tokens (boto3): a listed upload is resumed and completed with
# the listed id, another aborted with it; pages follow the tokens; the
# gateway's records of its uploads are never listed, and none is left at
# the backend once the uploads are done.
# argv: gateway url, backend url, backend access key, backend secret.
import sys, boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
backend = boto3.client("s3", endpoint_url=sys.argv[2], aws_access_key_id=sys.argv[3],
                       aws_secret_access_key=sys.argv[4], region_name="us-east-1")
MiB = 1024 * 1024
first = bytes(range(256)) * (5 * MiB // 256)
a = s3.create_multipart_upload(Bucket="demo", Key="a")["UploadId"]
e1 = s3.upload_part(Bucket="demo", Key="a", UploadId=a, PartNumber=1, Body=first)["ETag"]
b = s3.create_multipart_upload(Bucket="demo", Key="b/c")["UploadId"]
assert a.startswith("sgmp") and b.startswith("sgmp"), (a, b)


def listed(**kw):
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket="demo", **kw)
    return [(u["Key"], u["UploadId"]) for p in pages for u in p.get("Uploads", [])] + \
        [("prefix:" + c["Prefix"], "") for p in pages for c in p.get("CommonPrefixes", [])]


assert sorted(listed()) == sorted([("a", a), ("b/c", b)]), listed()
# One upload a page: each page's markers are tokens too.
assert sorted(listed(PaginationConfig={"PageSize": 1})) == sorted([("a", a), ("b/c", b)])
assert listed(Delimiter="/") == [("a", a), ("prefix:b/", "")], listed(Delimiter="/")
# Markers a client makes up: one shaped like a token that is none, one
# that is no token at all. Passed on as the backend's own: a listing or the
# backend's own refusal, never a gateway error, never a record listed.
for marker in ("sgmp3.!!not-a-token!!", "x" * 300, "sgmp3." + "A" * 5000):
    try:
        r = s3.list_multipart_uploads(Bucket="demo", KeyMarker="a", UploadIdMarker=marker)
        assert not any(u["Key"].startswith(".sealgate") for u in r.get("Uploads", [])), r
    except botocore.exceptions.ClientError as e:
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert 400 <= status < 500, e.response
# The backend holds the gateway's records beside the uploads.
raw = backend.list_multipart_uploads(Bucket="demo").get("Uploads", [])
assert any(u["Key"].startswith(".sealgate/uploads/") for u in raw), raw

# Resumed with the listed id (a client that lost its own): parts listed,
# one more uploaded, completed, read back.
(_, resumed), = [u for u in listed() if u[0] == "a"]
parts = s3.list_parts(Bucket="demo", Key="a", UploadId=resumed)["Parts"]
assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MiB)], parts
e2 = s3.upload_part(Bucket="demo", Key="a", UploadId=resumed, PartNumber=2, Body=b"tail")["ETag"]
s3.complete_multipart_upload(Bucket="demo", Key="a", UploadId=resumed, MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
assert s3.get_object(Bucket="demo", Key="a")["Body"].read() == first + b"tail"
assert listed() == [("b/c", b)], listed()
(_, listed_b), = listed()
s3.abort_multipart_upload(Bucket="demo", Key="b/c", UploadId=listed_b)
assert listed() == [], listed()
raw = backend.list_multipart_uploads(Bucket="demo").get("Uploads", [])
assert raw == [], raw
# The records' keys are the gateway's, however spelled.
for key in (".sealgate/uploads/0/0-1/x", ".sealgate//uploads/0/0-1/x"):
    try:
        s3.create_multipart_upload(Bucket="demo", Key=key)
        raise SystemExit("a record key was taken: " + key)
    except s3.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "AccessDenied", (key, e.response)
# Nor can a copy read one, or a DeleteObjects list name one (refused whole).
s3.put_object(Bucket="demo", Key="kept", Body=b"kept")
for name, call in (
    ("copy source", lambda: s3.copy_object(Bucket="demo", Key="stolen",
                                           CopySource={"Bucket": "demo", "Key": ".sealgate/uploads/0/0-1/x"})),
    ("copy source, spelled", lambda: s3.copy_object(Bucket="demo", Key="stolen",
                                           CopySource={"Bucket": "demo", "Key": ".sealgate//uploads/0/0-1/x"})),
    ("DeleteObjects", lambda: s3.delete_objects(Bucket="demo", Delete={"Objects": [
        {"Key": "kept"}, {"Key": ".sealgate/uploads/0/0-1/x"}]})),
):
    try:
        call()
        raise SystemExit(f"a record key was reached by {name}")
    except s3.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "AccessDenied", (name, e.response)
assert s3.get_object(Bucket="demo", Key="kept")["Body"].read() == b"kept"
print("ok")
