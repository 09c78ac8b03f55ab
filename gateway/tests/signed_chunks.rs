//! Uploads with `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (a signature per
//! chunk, as the Java SDK v1 and minio-go send over http), signed here by a
//! small independent SigV4 implementation in Python.

mod common;

use common::*;

const SIGNED_CHUNKS: &str = include_str!("py/signed_chunks_signed_chunks.py");

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
            extra: &encrypting_only("secure"),
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
