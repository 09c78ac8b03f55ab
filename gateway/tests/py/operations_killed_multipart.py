# A multipart upload whose gateway is SIGKILLed mid-part, finished on
# another instance. Creates the upload and part 1 on gateway A, sends the
# header and half the body of part 2 to A, prints "started" and waits for
# a line on stdin (A is killed meanwhile); the rest of part 2 must fail.
# Then part 2 again, ListParts and Complete on gateway B, and the object
# read back through B. Prints "ok".
# argv: url A, url B, bucket, key, file the whole plaintext is written to.
import http.client, os, sys, urllib.parse, boto3
from botocore.config import Config

url_a, url_b, bucket, key = sys.argv[1:5]
cfg = Config(signature_version="s3v4", retries={"total_max_attempts": 1},
             request_checksum_calculation="when_required")
a = boto3.client("s3", endpoint_url=url_a, config=cfg)
b = boto3.client("s3", endpoint_url=url_b, config=cfg)
part1 = os.urandom(5 * 1024 * 1024)
part2 = os.urandom(3 * 1024 * 1024 + 17)

upload = a.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
e1 = a.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=part1)["ETag"]

signed = a.generate_presigned_url(
    "upload_part", ExpiresIn=300,
    Params={"Bucket": bucket, "Key": key, "UploadId": upload, "PartNumber": 2})
u = urllib.parse.urlsplit(signed)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
conn.putrequest("PUT", u.path + "?" + u.query, skip_accept_encoding=True)
conn.putheader("Content-Length", str(len(part2)))
conn.endheaders()
conn.send(part2[: len(part2) // 2])
print("started", flush=True)
sys.stdin.readline()
try:
    conn.send(part2[len(part2) // 2:])
    status = conn.getresponse().status
    raise SystemExit(f"part 2 on the killed gateway answered {status}")
except (ConnectionError, http.client.HTTPException, OSError):
    pass

# The client retries the part on another instance, with the same token.
e2 = b.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=2, Body=part2)["ETag"]
listed = b.list_parts(Bucket=bucket, Key=key, UploadId=upload)["Parts"]
assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, len(part1)), (2, len(part2))], listed
b.complete_multipart_upload(
    Bucket=bucket, Key=key, UploadId=upload,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
got = b.get_object(Bucket=bucket, Key=key)["Body"].read()
assert got == part1 + part2, "read back differs"
with open(sys.argv[5], "wb") as f:
    f.write(part1 + part2)
print("ok", flush=True)
