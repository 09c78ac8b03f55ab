# Encrypted multipart rules checked at Complete: part ETags and the
# object size (x-amz-mp-object-size, plaintext) are checked before anything
# is stored; ListParts shows plaintext sizes and no checksums of stored
# bytes; unequal parts complete and read back.
import boto3, sys
from botocore.exceptions import ClientError
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
mp = s3.create_multipart_upload(Bucket="demo", Key="odd")
uid = mp["UploadId"]
parts = []
for n, size in [(1, 5 * 1024 * 1024), (2, 6 * 1024 * 1024), (3, 100)]:
    r = s3.upload_part(Bucket="demo", Key="odd", UploadId=uid, PartNumber=n, Body=b"x" * size)
    parts.append({"PartNumber": n, "ETag": r["ETag"]})
listed = sorted(s3.list_parts(Bucket="demo", Key="odd", UploadId=uid)["Parts"], key=lambda p: p["PartNumber"])
assert [p["Size"] for p in listed] == [5 * 1024 * 1024, 6 * 1024 * 1024, 100], listed
assert not any(k.startswith("Checksum") for p in listed for k in p), listed
if sys.argv[2] == "lists-etags":
    # Checked by the gateway where the backend lists part ETags (else the
    # backend checks them itself at Complete; s3s-fs does not).
    bad = [dict(parts[0], ETag='"0123456789abcdef0123456789abcdef"')]
    try:
        s3.complete_multipart_upload(Bucket="demo", Key="odd", UploadId=uid, MultipartUpload={"Parts": bad})
        raise SystemExit("a wrong ETag completed")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidPart", e.response
try:
    s3.head_object(Bucket="demo", Key="odd")
    raise SystemExit("an object exists")
except ClientError as e:
    assert e.response["Error"]["Code"] == "404", e.response
# x-amz-mp-object-size is the plaintext total; a wrong one is refused.
total = 11 * 1024 * 1024 + 100
try:
    s3.complete_multipart_upload(Bucket="demo", Key="odd", UploadId=uid, MultipartUpload={"Parts": parts}, MpuObjectSize=total + 1)
    raise SystemExit("a wrong object size completed")
except ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidRequest", e.response
s3.complete_multipart_upload(Bucket="demo", Key="odd", UploadId=uid, MultipartUpload={"Parts": parts}, MpuObjectSize=total)
body = s3.get_object(Bucket="demo", Key="odd")["Body"].read()
assert body == b"x" * total
print("ok")
