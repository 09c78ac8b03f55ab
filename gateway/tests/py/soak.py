# A soak: 64 clients mixing PUT, GET, ranged GET, multipart, copy, list and
# delete over sizes from 0 B to 64 MiB and keys with spaces, '+', '%' and
# non-ASCII, spread over several gateways, for a given time. Each client
# owns its keys and knows what each holds (a digest per version), so every
# byte read back is checked. Prints "warm" after a tenth of the time, "mid"
# at the middle (the harness reloads and upgrades gateways then), "ending"
# shortly before the end, then one line of JSON: ops, errors (with the
# first few), ops/s and p99 latency.
# argv: bucket, seconds, clients, gateway url...
import hashlib, json, random, sys, threading, time, boto3, botocore
from botocore.config import Config

bucket, seconds, clients = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
urls = sys.argv[4:]
# Retries as an SDK's standard mode makes them (3 attempts): connections a
# gateway closes while it hands its listeners over are retried.
cfg = Config(retries={"total_max_attempts": 3, "mode": "standard"}, max_pool_connections=4,
             read_timeout=120)
KiB, MiB = 1024, 1024 * 1024
SIZES = [0, 1, 1000, 65535, 65536, 65537, 300 * KiB, MiB + 17]
NAMES = ["plain", "with space", "plus+sign", "per%cent", "ünïcødé ✓"]
PART = 5 * MiB
lock = threading.Lock()
latencies, errors, ops, finished = [], [], [0], [0]
stop = threading.Event()


def content(seed, size):
    # Not periodic: frames swapped or repeated would not compare equal.
    return random.Random(seed).randbytes(size)


def digest(data):
    return hashlib.sha256(data).hexdigest()


class Client:
    def __init__(self, n):
        self.n = n
        self.rng = random.Random(n)
        self.s3 = [boto3.session.Session().client("s3", endpoint_url=u, config=cfg) for u in urls]
        self.keys = ["soak/%02d/%s" % (n, name) for name in NAMES]
        self.held = {}  # key -> bytes it holds (None: absent)
        self.version = 0

    def any(self):
        return self.rng.choice(self.s3)

    def timed(self, what, call):
        started = time.monotonic()
        try:
            return call()
        finally:
            with lock:
                latencies.append(time.monotonic() - started)
                ops[0] += 1

    def check(self, ok, what):
        if not ok:
            with lock:
                errors.append("client %d: %s" % (self.n, what))

    def put(self, key, size=None):
        self.version += 1
        size = self.rng.choice(SIZES) if size is None else size
        data = content("%d/%s/%d" % (self.n, key, self.version), size)
        if size > PART:
            c = self.any()
            up = self.timed("create", lambda: c.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
            parts = [data[i:i + PART] for i in range(0, len(data), PART)]
            etags = [self.timed("part", lambda: c.upload_part(
                Bucket=bucket, Key=key, UploadId=up, PartNumber=i + 1, Body=p))["ETag"]
                for i, p in enumerate(parts)]
            self.timed("complete", lambda: c.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=up, MultipartUpload={
                    "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]}))
        else:
            self.timed("put", lambda: self.any().put_object(Bucket=bucket, Key=key, Body=data))
        self.held[key] = data

    def get(self, key):
        want = self.held.get(key)
        try:
            got = self.timed("get", lambda: self.any().get_object(Bucket=bucket, Key=key)["Body"].read())
            self.check(want is not None and digest(got) == digest(want),
                       "GET %r: %d bytes, expected %s" % (key, len(got), None if want is None else len(want)))
        except botocore.exceptions.ClientError as e:
            self.check(want is None and e.response["Error"]["Code"] == "NoSuchKey",
                       "GET %r: %s" % (key, e.response["Error"]["Code"]))

    def ranged(self, key):
        want = self.held.get(key)
        if not want:
            return
        a = self.rng.randrange(len(want))
        b = min(len(want) - 1, a + self.rng.choice([0, 10, 70_000]))
        got = self.timed("range", lambda: self.any().get_object(
            Bucket=bucket, Key=key, Range="bytes=%d-%d" % (a, b))["Body"].read())
        self.check(got == want[a:b + 1], "GET %r bytes=%d-%d" % (key, a, b))

    def copy(self, key):
        src = self.rng.choice(self.keys)
        if self.held.get(src) is None or src == key:
            return
        self.timed("copy", lambda: self.any().copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": src}))
        self.held[key] = self.held[src]

    def listing(self, _):
        prefix = "soak/%02d/" % self.n
        got = self.timed("list", lambda: self.any().list_objects_v2(Bucket=bucket, Prefix=prefix))
        listed = {o["Key"]: o["Size"] for o in got.get("Contents", [])}
        want = {k: len(v) for k, v in self.held.items() if v is not None}
        self.check(listed == want, "LIST %s: %s, expected %s" % (prefix, listed, want))

    def delete(self, key):
        self.timed("delete", lambda: self.any().delete_object(Bucket=bucket, Key=key))
        self.held[key] = None

    def run(self):
        try:
            self.work()
            with lock:
                finished[0] += 1
        except Exception as e:  # noqa: any failure the client saw is an error
            self.check(False, "stopped: %r" % (e,))

    def work(self):
        if self.n == 0:
            # The largest object, once.
            self.put(self.keys[0], 64 * MiB)
            self.get(self.keys[0])
        steps = [self.put] * 4 + [self.get] * 4 + [self.ranged] * 2 + [self.copy, self.listing,
                                                                       self.delete]
        while not stop.is_set():
            step = self.rng.choice(steps)
            key = self.rng.choice(self.keys)
            try:
                step(key)
            except Exception as e:  # noqa: any failure the client saw is an error
                self.check(False, "%s %r: %r" % (step.__name__, key, e))
        for key in self.keys:
            self.get(key)


started = time.monotonic()
threads = [threading.Thread(target=Client(n).run) for n in range(clients)]
for t in threads:
    t.start()
for mark, at in (("warm", 0.1), ("mid", 0.5), ("ending", 0.9)):
    time.sleep(max(0, started + seconds * at - time.monotonic()))
    print(mark, flush=True)
time.sleep(max(0, started + seconds - time.monotonic()))
stop.set()
for t in threads:
    t.join()
elapsed = time.monotonic() - started
latencies.sort()
print(json.dumps({
    "ops": ops[0],
    "clients_finished": finished[0],
    "errors": len(errors),
    "first_errors": errors[:5],
    "ops_per_s": round(ops[0] / elapsed, 1),
    "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
}), flush=True)
