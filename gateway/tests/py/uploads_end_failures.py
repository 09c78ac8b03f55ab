# Uploads whose only fault is at the very end of the body, sent raw so the
# fault is exactly the one named: a bad final chunk signature, a bad
# trailer signature, a signed trailer with a wrong CRC32, an unsigned
# trailer with a wrong CRC32, a wrong hex x-amz-content-sha256; or none.
# argv: port, key id, secret, bucket, key, query ("" or "partNumber=1&uploadId=..."),
# mode. Prints "<status> <S3 error code>".
import base64, datetime, hashlib, hmac, http.client, sys, zlib
from urllib.parse import quote, parse_qsl
port, key, secret, bucket, obj, query, mode = sys.argv[1:8]
SIZE, CHUNK = 300_000, 65_536
body = bytes((i * 13) % 251 for i in range(SIZE))
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
scope = day + "/us-east-1/s3/aws4_request"
H = lambda b: hashlib.sha256(b).hexdigest()
M = lambda k, m: hmac.new(k, m.encode(), hashlib.sha256).digest()
k = M(M(M(M(("AWS4" + secret).encode(), day), "us-east-1"), "s3"), "aws4_request")
sign = lambda sts: hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
crc = lambda b: base64.b64encode(zlib.crc32(b).to_bytes(4, "big")).decode()
wrong_crc = crc(body + b"x")
enc = lambda s: quote(s, safe="-_.~")
canonical_query = "&".join(sorted("%s=%s" % (enc(a), enc(b)) for a, b in parse_qsl(query, keep_blank_values=True)))
path = "/%s/%s" % (bucket, obj)
# "late": the final chunk is sent only when the test says so (a line on
# stdin), once the gateway has read and passed on every data byte it will
# before it sees the bad signature.
late = mode == "final-sig-late"
if late:
    mode = "final-sig"
signed_chunks = mode in ("ok-signed", "final-sig", "trailer-sig", "trailer-crc")
trailer = mode in ("trailer-sig", "trailer-crc", "unsigned-crc")
if signed_chunks:
    payload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
elif mode == "unsigned-crc":
    payload = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
elif mode == "sha256":
    payload = H(body + b"x")
else:
    raise SystemExit("unknown mode " + mode)
headers = {"host": "127.0.0.1:" + port, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
if payload.startswith("STREAMING"):
    headers["content-encoding"] = "aws-chunked"
    headers["x-amz-decoded-content-length"] = str(SIZE)
if trailer:
    headers["x-amz-trailer"] = "x-amz-checksum-crc32"
chunks = [body[i:i + CHUNK] for i in range(0, SIZE, CHUNK)] + [b""]
out = b""
if signed_chunks:
    # The seed signature covers the headers; the content length is known
    # only after the body is built, so it is left out of the signed set.
    signed = sorted(headers)
    canonical = "\n".join(["PUT", path, canonical_query, "".join("%s:%s\n" % (h, headers[h]) for h in signed), ";".join(signed), payload])
    prev = seed = sign("\n".join(["AWS4-HMAC-SHA256", amz_date, scope, H(canonical.encode())]))
    for i, c in enumerate(chunks):
        sig = sign("\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, H(b""), H(c)]))
        if mode == "final-sig" and not c:
            sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        out += ("%x;chunk-signature=%s\r\n" % (len(c), sig)).encode() + c + (b"\r\n" if c else b"")
        prev = sig
    if trailer:
        line = "x-amz-checksum-crc32:%s" % (wrong_crc if mode == "trailer-crc" else crc(body))
        tsig = sign("\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, prev, H((line + "\n").encode())]))
        if mode == "trailer-sig":
            tsig = tsig[:-1] + ("0" if tsig[-1] != "0" else "1")
        out += (line + "\r\nx-amz-trailer-signature:%s\r\n\r\n" % tsig).encode()
    else:
        out += b"\r\n"
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (key, scope, ";".join(signed), seed)
else:
    if mode == "unsigned-crc":
        for c in chunks:
            out += ("%x\r\n" % len(c)).encode() + c + (b"\r\n" if c else b"")
        out += ("x-amz-checksum-crc32:%s\r\n\r\n" % wrong_crc).encode()
    else:
        out = body
    signed = sorted(headers)
    canonical = "\n".join(["PUT", path, canonical_query, "".join("%s:%s\n" % (h, headers[h]) for h in signed), ";".join(signed), payload])
    sig = sign("\n".join(["AWS4-HMAC-SHA256", amz_date, scope, H(canonical.encode())]))
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (key, scope, ";".join(signed), sig)
headers["content-length"] = str(len(out))
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
conn.putrequest("PUT", path + ("?" + query if query else ""), skip_host=True, skip_accept_encoding=True)
for h, v in headers.items():
    conn.putheader(h, v)
conn.endheaders()
if late:
    # Every data chunk, then a line on stdout; the final chunk goes once
    # the test answers on stdin (it has seen the gateway pass on all it
    # would pass on).
    final = out.rindex(b"0;chunk-signature=")
    conn.send(out[:final])
    print("sent", flush=True)
    sys.stdin.readline()
    conn.send(out[final:])
else:
    conn.send(out)
r = conn.getresponse()
text = r.read().decode(errors="replace")
print(r.status, text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in text else "")
