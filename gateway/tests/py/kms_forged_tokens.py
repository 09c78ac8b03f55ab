# Forged upload-id tokens naming a key the bucket does not use: UploadPart,
# ListParts, Complete and Abort answer NoSuchUpload. The test counts the
# KMS calls they cost (none). argv: gateway url, foreign key id.
import base64, struct, sys, boto3
from botocore.exceptions import ClientError
gw = boto3.client("s3", endpoint_url=sys.argv[1])
foreign = sys.argv[2]

def decode(t):
    body = t[len("sgmp3."):]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    fields, rest = [], raw
    for _ in range(5):
        (n,) = struct.unpack(">I", rest[:4])
        fields.append(rest[4:4 + n])
        rest = rest[4 + n:]
    return fields, rest

def encode(fields, rest):
    raw = b"".join(struct.pack(">I", len(f)) + f for f in fields) + rest
    return "sgmp3." + base64.urlsafe_b64encode(raw).decode().rstrip("=")

token = gw.create_multipart_upload(Bucket="demo", Key="k")["UploadId"]
fields, rest = decode(token)
assert encode(fields, rest) == token
for key_id in (foreign, "arn:aws:kms:us-east-1:000000000000:key/forged\ninjected line"):
    forged = encode(fields[:2] + [key_id.encode()] + fields[3:], rest)
    for name, call in (
        ("UploadPart", lambda: gw.upload_part(Bucket="demo", Key="k", UploadId=forged, PartNumber=1, Body=b"p")),
        ("ListParts", lambda: gw.list_parts(Bucket="demo", Key="k", UploadId=forged)),
        ("Complete", lambda: gw.complete_multipart_upload(Bucket="demo", Key="k", UploadId=forged,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]})),
        ("Abort", lambda: gw.abort_multipart_upload(Bucket="demo", Key="k", UploadId=forged)),
    ):
        try:
            call()
        except ClientError as e:
            code = e.response["Error"]["Code"]
            assert code == "NoSuchUpload", (name, key_id, code)
            continue
        raise SystemExit(f"{name} with a forged key id {key_id!r} was accepted")
gw.abort_multipart_upload(Bucket="demo", Key="k", UploadId=token)
print("ok")
