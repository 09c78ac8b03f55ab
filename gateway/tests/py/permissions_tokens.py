# Upload-id tokens are bound to their place: a token moved to another key
# or bucket, edited in any field, or of an earlier version without a MAC
# is answered NoSuchUpload by every call that takes an upload id, and
# nothing is stored. argv: gateway url.
import base64, struct, sys, boto3
from botocore.exceptions import ClientError
gw = boto3.client("s3", endpoint_url=sys.argv[1])

def check(cond, what):
    if not cond:
        raise SystemExit(f"failed: {what}")

def refused(what, call, **kw):
    try:
        call(**kw)
    except ClientError as e:
        code = e.response["Error"]["Code"]
        check(code == "NoSuchUpload", f"{what}: expected NoSuchUpload, got {code}")
        return
    raise SystemExit(f"{what}: accepted")

token = gw.create_multipart_upload(Bucket="secure", Key="a")["UploadId"]
other = gw.create_multipart_upload(Bucket="secure", Key="b")["UploadId"]
check(token.startswith("sgmp3."), token)
part = b"p" * (5 * 1024 * 1024)

def decode(t):
    body = t[len("sgmp3."):]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    fields, rest = [], raw
    for _ in range(5):
        (n,) = struct.unpack(">I", rest[:4])
        fields.append(rest[4:4 + n])
        rest = rest[4 + n:]
    return fields, rest  # rest: salt, commitment, mac

def encode(fields, rest, prefix="sgmp3."):
    raw = b"".join(struct.pack(">I", len(f)) + f for f in fields) + rest
    return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")

fields, rest = decode(token)
check(encode(fields, rest) == token, "the test's codec matches")
other_fields, _ = decode(other)
edited = []
# The other upload's backend id under this token's MAC.
edited.append(("backend id", encode([other_fields[0]] + fields[1:], rest)))
# A flipped bit in the wrapped data key, the salt, the commitment, the MAC.
dek = bytearray(fields[3]); dek[len(dek) // 2] ^= 1
edited.append(("wrapped key", encode(fields[:3] + [bytes(dek)] + fields[4:], rest)))
for name, at in (("salt", 0), ("commitment", 32), ("mac", 64)):
    r = bytearray(rest); r[at + 5] ^= 1
    edited.append((name, encode(fields, bytes(r))))
# Another checksum request than the one sealed.
edited.append(("checksum", encode(fields[:4] + [b"CRC32/COMPOSITE"], rest)))
# An earlier version's token: the same fields without a MAC.
edited.append(("version 2", encode(fields, rest[:64], prefix="sgmp2.")))

for what, bad in edited:
    refused(what, gw.upload_part, Bucket="secure", Key="a", UploadId=bad, PartNumber=1, Body=part)
    refused(what + " list", gw.list_parts, Bucket="secure", Key="a", UploadId=bad)
    refused(what + " abort", gw.abort_multipart_upload, Bucket="secure", Key="a", UploadId=bad)

# The genuine token moved to another key and to another bucket under the
# same policy: every call refused.
for bucket, key in (("secure", "b"), ("secure2", "a")):
    where = f"moved to {bucket}/{key}"
    refused(where, gw.upload_part, Bucket=bucket, Key=key, UploadId=token, PartNumber=1, Body=part)
    refused(where + " list", gw.list_parts, Bucket=bucket, Key=key, UploadId=token)
    refused(where + " complete", gw.complete_multipart_upload, Bucket=bucket, Key=key, UploadId=token,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})
    refused(where + " abort", gw.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=token)

# This upload's data key with the other upload's backend id, used on the
# other key: the backend would take the id, only the MAC tells it apart
# (the part would be encrypted under a key the object's envelope lacks).
spliced = encode([other_fields[0]] + fields[1:], rest)
refused("spliced", gw.upload_part, Bucket="secure", Key="b", UploadId=spliced, PartNumber=1, Body=part)
refused("spliced complete", gw.complete_multipart_upload, Bucket="secure", Key="b", UploadId=spliced,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})

# The genuine token, where it belongs, still completes.
etag = gw.upload_part(Bucket="secure", Key="a", UploadId=token, PartNumber=1, Body=part)["ETag"]
check(len(gw.list_parts(Bucket="secure", Key="a", UploadId=token)["Parts"]) == 1, "list parts")
gw.complete_multipart_upload(Bucket="secure", Key="a", UploadId=token,
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
check(gw.get_object(Bucket="secure", Key="a")["Body"].read() == part, "round trip")
gw.abort_multipart_upload(Bucket="secure", Key="b", UploadId=other)
print("ok")
