# Every part layout an upload can complete with reads back exactly through
# the gateway (boto3): unequal parts uploaded out of order, a part
# re-uploaded at another size, a last part larger than the others, 1,001
# parts of varying sizes; whole reads, ranges across part edges, HEAD and
# ?partNumber=N. The one kind of layout a reader could take for a regular
# one is refused at Complete, and completes once the parts are re-uploaded.
# argv: gateway url, backend name (Garage lists ETags, so listed sizes are
# exact) or "many": only the 1,001 parts (a backend taking small parts).
import random, sys, boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
MiB = 1024 * 1024


def data(n, seed):
    return random.Random(seed).randbytes(n)


def upload(key, parts, complete=True):
    """parts: (number, bytes) in upload order; a number again replaces it."""
    uid = s3.create_multipart_upload(Bucket="demo", Key=key)["UploadId"]
    etags, bodies = {}, {}
    for n, body in parts:
        etags[n] = s3.upload_part(Bucket="demo", Key=key, UploadId=uid, PartNumber=n, Body=body)["ETag"]
        bodies[n] = body
    listed = {p["PartNumber"]: p["Size"] for p in s3.list_parts(Bucket="demo", Key=key, UploadId=uid, MaxParts=1000)["Parts"]}
    for n, size in listed.items():
        assert size == len(bodies[n]), (key, n, size)
    order = sorted(etags)
    if complete:
        s3.complete_multipart_upload(Bucket="demo", Key=key, UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in order]})
    return uid, etags, [bodies[n] for n in order]


def check(key, bodies, ranges=True):
    plain = b"".join(bodies)
    assert s3.get_object(Bucket="demo", Key=key)["Body"].read() == plain, key
    assert s3.head_object(Bucket="demo", Key=key)["ContentLength"] == len(plain), key
    edges, at = {0, len(plain) - 1, len(plain) // 3}, 0
    for b in bodies[:-1]:
        at += len(b)
        edges.update({at - 1, at, at + 1, at - 70_000, at + 70_000})
    edges = sorted(e for e in edges if 0 <= e < len(plain))
    if ranges:
        for i, a in enumerate(edges):
            for b in edges[i:i + 3]:
                r = s3.get_object(Bucket="demo", Key=key, Range="bytes=%d-%d" % (a, b))
                assert r["Body"].read() == plain[a:b + 1], (key, a, b)
                assert r["ContentRange"] == "bytes %d-%d/%d" % (a, b, len(plain)), r["ContentRange"]
    numbers = range(1, len(bodies) + 1) if len(bodies) < 20 else [1, 2, 500, len(bodies) - 1, len(bodies)]
    start = [0]
    for b in bodies:
        start.append(start[-1] + len(b))
    for n in numbers:
        if not bodies[n - 1]:
            continue
        r = s3.get_object(Bucket="demo", Key=key, PartNumber=n)
        assert r["Body"].read() == bodies[n - 1], (key, n)
        assert r["PartsCount"] == len(bodies), r
        assert r["ContentRange"] == "bytes %d-%d/%d" % (start[n - 1], start[n] - 1, len(plain)), r["ContentRange"]
    return plain


if sys.argv[2] == "many":
    bodies = [data(2000 + (i * 37) % 900, 100 + i) for i in range(1001)]
    _, _, got = upload("many", list(enumerate(bodies, 1)))
    check("many", got, ranges=False)
    plain = b"".join(bodies)
    for a, b in [(0, 5000), (500_000, 700_000), (len(plain) - 3000, len(plain) - 1)]:
        r = s3.get_object(Bucket="demo", Key="many", Range="bytes=%d-%d" % (a, b))
        assert r["Body"].read() == plain[a:b + 1], (a, b)
    print("ok")
    sys.exit(0)

# Unequal parts, uploaded out of order.
sizes = [5 * MiB + 17, 6 * MiB + 5, 5 * MiB, 100]
bodies = [data(s, i) for i, s in enumerate(sizes)]
_, _, got = upload("unequal", [(4, bodies[3]), (2, bodies[1]), (1, bodies[0]), (3, bodies[2])])
check("unequal", got)

# Four equal parts, then part 2 again at another size (an edit).
bodies = [data(5 * MiB, 10 + i) for i in range(4)]
_, _, got = upload("reuploaded", [(n, b) for n, b in enumerate(bodies, 1)] + [(2, data(6 * MiB + 1, 20))])
check("reuploaded", got)

# A last part larger than the others; its listed size is exact (every
# part but the last a multiple of 64 KiB).
bodies = [data(5 * MiB, 30), data(7 * MiB + 3, 31)]
upload("larger-last", [(1, bodies[0]), (2, bodies[1])])
plain = check("larger-last", bodies)
if sys.argv[2] == "garage":
    listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="demo")["Contents"]}
    assert listed["larger-last"] == len(plain), listed

# Middle parts that trade sizes: the same count, stored size and last part
# as regular 10 MiB parts. Refused, nothing stored; the upload stays open.
bodies = [data(10 * MiB, 40), data(5 * MiB, 41), data(15 * MiB, 42), data(10 * MiB, 43)]
uid, etags, _ = upload("traded", list(enumerate(bodies, 1)), complete=False)
try:
    s3.complete_multipart_upload(Bucket="demo", Key="traded", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]})
    raise SystemExit("a mistakable layout completed")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidPart", e.response
try:
    s3.head_object(Bucket="demo", Key="traded")
    raise SystemExit("an object exists")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "404", e.response
bodies[1], bodies[2] = data(10 * MiB, 44), data(10 * MiB, 45)
for n in (2, 3):
    etags[n] = s3.upload_part(Bucket="demo", Key="traded", UploadId=uid, PartNumber=n, Body=bodies[n - 1])["ETag"]
s3.complete_multipart_upload(Bucket="demo", Key="traded", UploadId=uid,
    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]})
check("traded", bodies, ranges=False)

print("ok")
