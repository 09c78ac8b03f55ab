# An independent reader of the sealgate envelope, written from
# docs/FORMAT.md alone (Python `cryptography`, no sealgate code): it unwraps
# the data key of the `local` provider, checks the key commitment and
# decrypts single and multipart objects.
#
# Run with `kat` to print the known-answer vectors of the format test;
# with `stored` to decrypt one stored object given as files (see
# `check_stored`); with `deks` to print data keys (see `deks`); with
# `recover` to write one stored object's plaintext (see `recover`); otherwise
# argv: gateway url, backend url, backend key id, backend secret, master
# key (base64), bucket, and a directory: uploads through the gateway,
# reads the stored objects around it, decrypts them here and compares, and
# leaves each object's plaintext in the directory (named as its key) for
# the caller's checks.
#
# Two failures are told apart: a stored object that fails authentication
# raises cryptography's `InvalidTag` (a frame, a wrapped key) or this
# reader's `IntegrityError` (a commitment, a length, a part header that
# does not add up); anything else is a bug in the reader or the test.
import base64, hashlib, hmac, json, struct, sys
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

FRAME = 65536
TAG = 16
HEADER = 48

class IntegrityError(Exception):
    """The stored object is not what the format allows (not a reader bug)."""

def check(cond, what):
    if not cond:
        raise IntegrityError(f"failed: {what}")

def hkdf(salt, ikm, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)

def context_pairs(encoded):
    raw, out = base64.b64decode(encoded), []
    while raw:
        (n,) = struct.unpack(">I", raw[:4]); k = raw[4:4 + n]; raw = raw[4 + n:]
        (m,) = struct.unpack(">I", raw[:4]); v = raw[4:4 + m]; raw = raw[4 + m:]
        out.append((k, v))
    return out

def context_hash(pairs):
    h = hashlib.sha256()
    for k, v in sorted(pairs):
        h.update(struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v)
    return h.digest()

def part_keys(dek, salt, ctx_hash):
    return (hkdf(salt, dek, b"sealgate/v1/object" + ctx_hash),
            hkdf(salt, dek, b"sealgate/v1/commit" + ctx_hash))

def stored_len(p):
    return p + TAG * max(1, -(-p // FRAME))

def plaintext_len(c):
    k = -(-c // (FRAME + TAG))
    p = c - TAG * k
    check(p >= 0 and stored_len(p) == c, f"stored length {c}")
    return p

def open_frames(key, part, stored):
    # Yields the plaintext of every frame of one frame stream, in order.
    total, at, aead = plaintext_len(len(stored)), 0, AESGCM(key)
    frames = max(1, -(-total // FRAME))
    for i in range(frames):
        n = min(FRAME, total - i * FRAME) + TAG
        nonce = struct.pack(">IQ", part, i)
        aad = b"sealgate/v1/frame" + bytes([1 if i == frames - 1 else 0])
        yield aead.decrypt(nonce, stored[at:at + n], aad)
        at += n
    check(at == len(stored), "every stored byte is in a frame")

def seal_frames(key, part, plaintext):
    frames = max(1, -(-len(plaintext) // FRAME))
    out = b""
    for i in range(frames):
        nonce = struct.pack(">IQ", part, i)
        aad = b"sealgate/v1/frame" + bytes([1 if i == frames - 1 else 0])
        out += AESGCM(key).encrypt(nonce, plaintext[i * FRAME:(i + 1) * FRAME], aad)
    return out

def unwrap_local(master_key, key_id, wrapped, ctx_hash):
    # M = HKDF-Extract(salt = "sealgate/v1/kek-salt", IKM = master_key)
    m = hmac.new(b"sealgate/v1/kek-salt", master_key, hashlib.sha256).digest()
    if len(wrapped) == 89 and wrapped[0] == 2:
        master_id = HKDFExpand(algorithm=hashes.SHA256(), length=8, info=b"sealgate/v2/master-id").derive(m)
        check(wrapped[1:9] == master_id, "the wrap names this master key")
        kek = hkdf(wrapped[9:41], m, b"sealgate/v2/kek")
        return AESGCM(kek).decrypt(bytes(12), wrapped[41:], b"sealgate/v2/wrap" + key_id + ctx_hash)
    check(len(wrapped) == 60, "a version 1 wrap")
    kek = HKDFExpand(algorithm=hashes.SHA256(), length=32, info=b"sealgate/v1/kek").derive(m)
    return AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], b"sealgate/v1/wrap" + key_id + ctx_hash)

def object_frames(meta, stored, master_key):
    # Yields (part number, plaintext) for every frame of every part, in
    # order (part 0: a single PUT).
    check(meta.get("sealgate-v") == "1", "an envelope of version 1")
    check(meta["sealgate-alg"] == "AES256GCM-HKDF-SHA256-COMMIT", "algorithm")
    check(meta["sealgate-frame"] == str(FRAME), "frame size")
    ctx_hash = context_hash(context_pairs(meta["sealgate-ctx"]))
    dek = unwrap_local(master_key, meta["sealgate-key-id"].encode(),
                       base64.b64decode(meta["sealgate-dek"]), ctx_hash)
    salt = base64.b64decode(meta["sealgate-salt"])
    key, commitment = part_keys(dek, salt, ctx_hash)
    check(commitment == base64.b64decode(meta["sealgate-commit"]), "key commitment")
    if meta.get("sealgate-layout") != "multipart":
        for frame in open_frames(key, 0, stored):
            yield 0, frame
        return
    at, position = 0, 1
    check(len(stored) > 0, "a multipart object has a part")
    while at < len(stored):
        check(len(stored) - at >= HEADER, f"part header {position} is whole")
        salt, size, number, zero = struct.unpack(">32sQII", stored[at:at + HEADER])
        check(number == position and zero == 0, f"part header {position}")
        key, _ = part_keys(dek, salt, ctx_hash)
        n = stored_len(size)
        check(len(stored) - at - HEADER >= n, f"part {position} is whole")
        for frame in open_frames(key, number, stored[at + HEADER:at + HEADER + n]):
            yield number, frame
        at, position = at + HEADER + n, position + 1

def read_object(meta, stored, master_key):
    return b"".join(frame for _, frame in object_frames(meta, stored, master_key))

def kat():
    dek, salt = bytes(range(32)), bytes([0x5A] * 32)
    ctx = context_hash([(b"bucket", b"demo")])
    key, commitment = part_keys(dek, salt, ctx)
    print("context_hash", ctx.hex())
    print("commitment", commitment.hex())
    print("frame", seal_frames(key, 0, b"sealgate known answer").hex())
    print("part3_frame", seal_frames(key, 3, b"sealgate known answer").hex())

def pseudo_random(n, seed):
    # Bytes without repeats, so a window of them found in the stored
    # bytes can only be plaintext that was stored.
    return hashlib.shake_256(seed).digest(n)

def main():
    import boto3, os
    gw_url, backend_url, key_id, secret, master_b64, bucket, out_dir = sys.argv[1:8]
    master_key = base64.b64decode(master_b64)
    gw = boto3.client("s3", endpoint_url=gw_url)
    backend = boto3.client("s3", endpoint_url=backend_url, aws_access_key_id=key_id,
                           aws_secret_access_key=secret, region_name="us-east-1")
    single = pseudo_random(200_000, b"single")
    gw.put_object(Bucket=bucket, Key="single", Body=single)
    # Unequal parts: the layout is read from the part headers.
    parts = [pseudo_random(5 * 1024 * 1024, b"part1"),
             pseudo_random(6 * 1024 * 1024 + 3, b"part2"),
             pseudo_random(4000, b"part3")]
    up = gw.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    done = [{"PartNumber": n + 1,
             "ETag": gw.upload_part(Bucket=bucket, Key="multi", UploadId=up,
                                    PartNumber=n + 1, Body=p)["ETag"]}
            for n, p in enumerate(parts)]
    gw.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=up,
                                 MultipartUpload={"Parts": done})
    for key, plain in (("single", single), ("multi", b"".join(parts))):
        with open(os.path.join(out_dir, key), "wb") as f:
            f.write(plain)
        obj = backend.get_object(Bucket=bucket, Key=key)
        stored = obj["Body"].read()
        check(read_object(obj["Metadata"], stored, master_key) == plain, f"{key}: decrypts")
        # A flipped bit in a frame fails that frame's authentication here
        # too, and nothing else: any other error is the reader's own.
        bad = bytearray(stored); bad[len(bad) // 2] ^= 1
        try:
            read_object(obj["Metadata"], bytes(bad), master_key)
        except InvalidTag:
            pass
        else:
            raise SystemExit(f"{key}: a flipped bit decrypted")
    print("ok")

def check_stored():
    # argv: stored META_JSON STORED_FILE PLAINTEXT_FILE MASTER_B64: the
    # object's user metadata (JSON, names without `x-amz-meta-`), its
    # stored bytes and the plaintext it must decrypt to. Decrypts every
    # frame of every part and compares each with the plaintext in turn;
    # prints `ok parts=N frames=M`.
    meta_file, stored_file, plain_file, master_b64 = sys.argv[2:6]
    with open(meta_file) as f:
        meta = json.load(f) or {}
    with open(stored_file, "rb") as f:
        body = f.read()
    parts, frames, at = set(), 0, 0
    with open(plain_file, "rb") as plain:
        for part, frame in object_frames(meta, body, base64.b64decode(master_b64)):
            expected = plain.read(len(frame))
            if frame != expected:
                raise SystemExit(f"failed: frame {frames} (part {part}) decrypts to other "
                                 f"bytes than the plaintext at {at}")
            parts.add(part)
            frames, at = frames + 1, at + len(frame)
        if plain.read(1):
            raise SystemExit(f"failed: the object decrypts to {at} bytes, the plaintext is longer")
    print(f"ok parts={len(parts)} frames={frames}")

def deks():
    # argv: deks backend_url key_id secret master_b64 bucket key...: each
    # object's data key in hex, one a line (for log scans).
    import boto3
    backend_url, key_id, secret, master_b64, bucket = sys.argv[2:7]
    backend = boto3.client("s3", endpoint_url=backend_url, aws_access_key_id=key_id,
                           aws_secret_access_key=secret, region_name="us-east-1")
    for key in sys.argv[7:]:
        meta = backend.head_object(Bucket=bucket, Key=key)["Metadata"]
        ctx_hash = context_hash(context_pairs(meta["sealgate-ctx"]))
        dek = unwrap_local(base64.b64decode(master_b64), meta["sealgate-key-id"].encode(),
                           base64.b64decode(meta["sealgate-dek"]), ctx_hash)
        print(dek.hex())

def recover():
    # argv: recover META_JSON STORED_FILE OUT_FILE MASTER_B64: the recovery
    # tool of docs/OPERATIONS.md. Writes the plaintext of one object of the
    # `local` provider from its user metadata (the `Metadata` of
    # `aws s3api head-object`, JSON) and its stored bytes, read from the
    # backend with any S3 client: nothing of sealgate but its key.
    meta_file, stored_file, out_file, master_b64 = sys.argv[2:6]
    with open(meta_file) as f:
        meta = json.load(f)
    meta = meta.get("Metadata", meta)
    with open(stored_file, "rb") as f:
        body = f.read()
    # A new file only its owner reads; removed again if any frame fails,
    # so no unauthenticated or partial plaintext is left behind.
    import os
    fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            for _, frame in object_frames(meta, body, base64.b64decode(master_b64)):
                out.write(frame)
    except BaseException:
        os.unlink(out_file)
        raise
    print("ok")

if sys.argv[1:] == ["kat"]:
    kat()
elif sys.argv[1:2] == ["deks"]:
    deks()
elif sys.argv[1:2] == ["stored"]:
    check_stored()
elif sys.argv[1:2] == ["recover"]:
    recover()
else:
    main()
