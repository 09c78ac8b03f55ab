import sys, boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
MiB = 1024 * 1024
p1, p1b, p2 = b"1" * (5 * MiB), b"A" * (5 * MiB), b"tail-bytes" * 1000
up = s3.create_multipart_upload(Bucket="demo", Key="mp")
assert up["ServerSideEncryption"] == "aws:kms", up
uid = up["UploadId"]
# A part sent twice with different bytes: the last one wins, under a fresh salt.
s3.upload_part(Bucket="demo", Key="mp", UploadId=uid, PartNumber=1, Body=p1)
e1 = s3.upload_part(Bucket="demo", Key="mp", UploadId=uid, PartNumber=1, Body=p1b)["ETag"]
e2 = s3.upload_part(Bucket="demo", Key="mp", UploadId=uid, PartNumber=2, Body=p2)["ETag"]
listed = s3.list_parts(Bucket="demo", Key="mp", UploadId=uid)
# The upload id the client was given, not the backend's.
assert listed["UploadId"] == uid, (uid, listed["UploadId"])
sizes = sorted((p["PartNumber"], p["Size"]) for p in listed["Parts"])
assert sizes == [(1, len(p1b)), (2, len(p2))], sizes
s3.complete_multipart_upload(Bucket="demo", Key="mp", UploadId=uid,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
body = p1b + p2
assert s3.get_object(Bucket="demo", Key="mp")["Body"].read() == body
r = s3.get_object(Bucket="demo", Key="mp", Range="bytes=%d-%d" % (5 * MiB - 3, 5 * MiB + 3))
assert r["Body"].read() == body[5 * MiB - 3 : 5 * MiB + 4], r["ContentRange"]
assert s3.head_object(Bucket="demo", Key="mp")["ContentLength"] == len(body)
# Aborting with the gateway's upload id works.
up2 = s3.create_multipart_upload(Bucket="demo", Key="gone")
s3.upload_part(Bucket="demo", Key="gone", UploadId=up2["UploadId"], PartNumber=1, Body=b"x" * 100)
s3.abort_multipart_upload(Bucket="demo", Key="gone", UploadId=up2["UploadId"])
# An upload id the gateway did not give is no upload of this bucket's
# (NoSuchUpload, as for ListParts and Complete).
try:
    s3.upload_part(Bucket="demo", Key="mp", UploadId="not-from-the-gateway", PartNumber=1, Body=b"x")
    raise SystemExit("accepted a foreign upload id")
except botocore.exceptions.ClientError as e:
    got = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
    assert got == (404, "NoSuchUpload"), e.response
# The high-level transfer with small parts.
import io
from boto3.s3.transfer import TransferConfig
data = bytes(range(256)) * (23 * 4096)
s3.upload_fileobj(io.BytesIO(data), "demo", "xfer", Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
out = io.BytesIO()
s3.download_fileobj("demo", "xfer", out, Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
assert out.getvalue() == data
# Parts must be numbered 1..n without gaps (the number is bound into each part):
# a gap is refused as S3 refuses a part it does not have.
up3 = s3.create_multipart_upload(Bucket="demo", Key="gappy")
g1 = s3.upload_part(Bucket="demo", Key="gappy", UploadId=up3["UploadId"], PartNumber=1, Body=b"g" * (5 * MiB))["ETag"]
g3 = s3.upload_part(Bucket="demo", Key="gappy", UploadId=up3["UploadId"], PartNumber=3, Body=b"h" * 10)["ETag"]
try:
    s3.complete_multipart_upload(Bucket="demo", Key="gappy", UploadId=up3["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": g1}, {"PartNumber": 3, "ETag": g3}]})
    raise SystemExit("a gap in part numbers was accepted")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidPart", e.response
# As S3 answers: a part never uploaded is InvalidPart, a list out of
# ascending order InvalidPartOrder (both 400).
for parts, code in [
    ([{"PartNumber": 1, "ETag": g1}, {"PartNumber": 2, "ETag": g3}], "InvalidPart"),
    ([{"PartNumber": 3, "ETag": g3}, {"PartNumber": 1, "ETag": g1}], "InvalidPartOrder"),
]:
    try:
        s3.complete_multipart_upload(Bucket="demo", Key="gappy", UploadId=up3["UploadId"],
            MultipartUpload={"Parts": parts})
        raise SystemExit(f"{parts} was accepted")
    except botocore.exceptions.ClientError as e:
        got = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
        assert got == (400, code), (parts, got)
print("ok")
