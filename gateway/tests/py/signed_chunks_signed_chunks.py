import sys, hashlib, hmac, datetime, http.client
port, key, secret, bucket, obj, size, chunk, tamper = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7]), sys.argv[8] == "1"
body = bytes((i * 13) % 251 for i in range(size))
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
scope = day + "/us-east-1/s3/aws4_request"
H = lambda b: hashlib.sha256(b).hexdigest()
M = lambda k, m: hmac.new(k, m.encode(), hashlib.sha256).digest()
k = M(M(M(M(("AWS4" + secret).encode(), day), "us-east-1"), "s3"), "aws4_request")
host = "127.0.0.1:" + port
chunks = [body[i:i + chunk] for i in range(0, len(body), chunk)] + [b""]
encoded_len = sum(len("%x;chunk-signature=" % len(c)) + 64 + 2 + len(c) + 2 for c in chunks)
headers = {"host": host, "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "x-amz-date": amz_date,
           "x-amz-decoded-content-length": str(size), "content-encoding": "aws-chunked", "content-length": str(encoded_len)}
signed = sorted(headers)
canonical = "\n".join(["PUT", "/%s/%s" % (bucket, obj), "", "".join("%s:%s\n" % (h, headers[h]) for h in signed), ";".join(signed), headers["x-amz-content-sha256"]])
sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, H(canonical.encode())])
seed = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (key, scope, ";".join(signed), seed)
out, prev = b"", seed
for c in chunks:
    s = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, H(b""), H(c)])
    sig = hmac.new(k, s.encode(), hashlib.sha256).hexdigest()
    out += ("%x;chunk-signature=%s\r\n" % (len(c), sig)).encode() + c + b"\r\n"
    prev = sig
if tamper:
    at = out.index(b"\r\n") + 2 + 10
    out = out[:at] + bytes([out[at] ^ 1]) + out[at + 1:]
conn = http.client.HTTPConnection("127.0.0.1", int(port))
conn.request("PUT", "/%s/%s" % (bucket, obj), body=out, headers=headers)
r = conn.getresponse()
text = r.read().decode()
print(r.status, text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in text else "")
