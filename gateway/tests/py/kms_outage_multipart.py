# A multipart upload through three gateways on one KMS (through its
# counting front, whose failure mode the script sets): begun on the first
# (KMS up); on the second, whose cache is cold, parts are tried with the
# KMS down, throttling and slow (each a prompt S3 error, no part stored),
# then stored once it is back; Complete on a third, cold too, fails with the
# KMS down and succeeds after. The object reads back whole.
# argv: gateway urls (3), KMS front url, bucket.
import sys, time, urllib.request, boto3
from botocore.config import Config
cfg = Config(retries={"total_max_attempts": 1}, read_timeout=60)
a, b, c = (boto3.client("s3", endpoint_url=u, config=cfg) for u in sys.argv[1:4])
kms, bucket, key = sys.argv[4], sys.argv[5], "outage"
MiB = 1024 * 1024
parts = [bytes([7]) * (5 * MiB), b"tail"]


def kms_mode(mode):
    urllib.request.urlopen(kms + "/__mode/" + mode).read()


def refused(call, status, codes, within):
    started = time.monotonic()
    try:
        call()
    except a.exceptions.ClientError as e:
        got = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
        assert got[0] == status and got[1] in codes, (got, status, codes)
        took = time.monotonic() - started
        assert took < within, "answered after %.1f s" % took
        return
    raise SystemExit("not refused: %s" % (codes,))


def once_back(call, within=15):
    # As an SDK retries: a KMS outage is remembered for a few seconds.
    started = time.monotonic()
    while True:
        try:
            return call()
        except a.exceptions.ClientError as e:
            if e.response["ResponseMetadata"]["HTTPStatusCode"] != 503 \
                    or time.monotonic() - started > within:
                raise
            time.sleep(0.5)


upload = a.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
part1 = lambda: b.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=parts[0])
# Both retryable: a resolution that found KMS down or throttling is
# remembered for a few seconds, so a part may be told either.
# One attempt each (no client retry): one KMS timeout (10 s) at most. A
# KMS found unreachable or throttling is remembered for a few seconds, so
# either code may answer a part.
RETRY = ("ServiceUnavailable", "SlowDown")
for mode, create_code in (("down", "ServiceUnavailable"), ("throttle", "SlowDown"),
                          ("slow", "ServiceUnavailable")):
    kms_mode(mode)
    refused(part1, 503, RETRY, 12)
    refused(lambda: b.create_multipart_upload(Bucket=bucket, Key="other"), 503, (create_code,), 12)
kms_mode("up")
# Nothing was stored by the refused parts.
assert a.list_parts(Bucket=bucket, Key=key, UploadId=upload).get("Parts", []) == []
etags = [once_back(lambda: b.upload_part(Bucket=bucket, Key=key, UploadId=upload,
                                          PartNumber=n + 1, Body=p))["ETag"]
         for n, p in enumerate(parts)]
complete = lambda: c.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={
    "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
kms_mode("down")
refused(complete, 503, RETRY, 12)
kms_mode("up")
once_back(complete)
assert a.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(parts)
print("ok")
