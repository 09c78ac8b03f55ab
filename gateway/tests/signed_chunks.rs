//! Uploads with `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (a signature per
//! chunk, as the Java SDK v1 and minio-go send over http), signed here by a
//! small independent SigV4 implementation in Python.

mod common;

use common::*;

const SIGNED_CHUNKS: &str = r#"
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
"#;

fn put_signed(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    size: usize,
    chunk: usize,
    tamper: bool,
) -> String {
    python_ok(
        SIGNED_CHUNKS,
        &[
            &gw.port.to_string(),
            CLIENT_KEY,
            CLIENT_SECRET,
            bucket,
            key,
            &size.to_string(),
            &chunk.to_string(),
            if tamper { "1" } else { "0" },
        ],
    )
    .trim()
    .to_string()
}

fn expected(size: usize) -> Vec<u8> {
    (0..size).map(|i| ((i * 13) % 251) as u8).collect()
}

#[test]
fn signed_chunk_uploads_to_pass_through_and_encrypted_buckets() {
    let backend = Backend::start(&["plain", "secure"]);
    let gw = Gateway::start_with(
        &backend,
        &Options {
            extra: "encryption:\n  key_providers:\n    dev:\n      type: local\n      config: {master_key: dGVzdGtleQ==}\n  policies:\n    - bucket_pattern: \"secure\"\n      key_provider: dev\n",
            ..Options::default()
        },
    );
    for size in [0usize, 1, 65_536, 300_000] {
        let key = format!("o{size}");
        assert_eq!(
            put_signed(&gw, "plain", &key, size, 65_536, false),
            "200",
            "plain {size}"
        );
        assert_eq!(
            std::fs::read(backend.object_path("plain", &key)).unwrap(),
            expected(size),
            "forwarded decoded"
        );
        assert_eq!(
            put_signed(&gw, "secure", &key, size, 8192, false),
            "200",
            "secure {size}"
        );
        let stored = std::fs::read(backend.object_path("secure", &key)).unwrap();
        assert_eq!(
            stored.len() as u64,
            sealgate_envelope::ciphertext_len(size as u64)
        );
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("o");
        aws_ok(
            &gw.url(),
            &[
                "s3api",
                "get-object",
                "--bucket",
                "secure",
                "--key",
                &key,
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(std::fs::read(&out).unwrap(), expected(size));
    }
    // A changed byte in a chunk: SignatureDoesNotMatch, and nothing stored.
    for bucket in ["plain", "secure"] {
        assert_eq!(
            put_signed(&gw, bucket, "bad", 300_000, 65_536, true),
            "403 SignatureDoesNotMatch",
            "{bucket}"
        );
        assert!(
            !backend.object_path(bucket, "bad").exists(),
            "{bucket}: a partial object was stored"
        );
    }
}
