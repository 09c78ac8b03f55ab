# minio-py with its defaults (the endpoint, keys and secure=False only):
# put (small, and multipart as minio splits an unknown length), get,
# ranges, stat, copy, list, remove through an encrypting gateway.
# argv: gateway host:port, "exact" when the backend lists ETags (the gateway
# then lists a multipart object's exact size; s3s-fs lists none).
import io, os, sys
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import S3Error
mc = Minio(sys.argv[1], access_key=os.environ["AWS_ACCESS_KEY_ID"],
           secret_key=os.environ["AWS_SECRET_ACCESS_KEY"], secure=False)
MiB = 1024 * 1024

def data(n, seed):
    return bytes((i * seed + (i >> 5)) % 256 for i in range(n))

def read(key, **kw):
    r = mc.get_object("demo", key, **kw)
    try:
        return r.read()
    finally:
        r.close()
        r.release_conn()

small = data(70_001, 3)
mc.put_object("demo", "minio/small.bin", io.BytesIO(small), len(small), metadata={"x-amz-meta-note": "minio"})
assert read("minio/small.bin") == small
assert read("minio/small.bin", offset=65530, length=16) == small[65530:65546]
st = mc.stat_object("demo", "minio/small.bin")
assert st.size == len(small) and st.metadata.get("x-amz-meta-note") == "minio", st.metadata
# Unknown length: minio uploads it in 5 MiB parts.
large = data(11 * MiB + 3, 7)
mc.put_object("demo", "minio/large.bin", io.BytesIO(large), -1, part_size=5 * MiB)
assert mc.stat_object("demo", "minio/large.bin").size == len(large)
assert read("minio/large.bin") == large
assert read("minio/large.bin", offset=5 * MiB - 10, length=20) == large[5 * MiB - 10 : 5 * MiB + 10]
mc.copy_object("demo", "minio/copy.bin", CopySource("demo", "minio/small.bin"))
assert read("minio/copy.bin") == small
listed = {o.object_name: o.size for o in mc.list_objects("demo", prefix="minio/", recursive=True)}
expected = {"minio/copy.bin": len(small), "minio/large.bin": len(large), "minio/small.bin": len(small)}
if sys.argv[2] != "exact":
    expected["minio/large.bin"] = listed.get("minio/large.bin")
assert listed == expected, listed
for key in listed:
    mc.remove_object("demo", key)
try:
    mc.stat_object("demo", "minio/small.bin")
    raise SystemExit("still there")
except S3Error as e:
    assert e.code == "NoSuchKey", e.code
# Left for the test to look at as the backend stores it.
mc.put_object("demo", "minio/kept.bin", io.BytesIO(small), len(small))
print("ok")
