//! Failures at the very end of an upload (the last chunk signature, the
//! trailer, the payload hash) store nothing, to pass-through and encrypted
//! buckets and for UploadPart, on Garage (which checks what S3 checks).
//! To pass-through buckets the gateway forwards decoded bytes as they
//! arrive, holding back the last 64 KiB until every check passed: without
//! the hold-back the backend would receive a whole body and store it.

mod common;

use common::*;

const UPLOAD: &str = include_str!("py/uploads_end_failures.py");

fn upload(gw: &Gateway, bucket: &str, key: &str, query: &str, mode: &str) -> String {
    python_ok(
        UPLOAD,
        &[
            &gw.port.to_string(),
            CLIENT_KEY,
            CLIENT_SECRET,
            bucket,
            key,
            query,
            mode,
        ],
    )
    .trim()
    .to_string()
}

/// The gateway's token for a new multipart upload of `bucket`/`key`.
fn create(gw: &Gateway, bucket: &str, key: &str) -> String {
    aws_ok(
        &gw.url(),
        &[
            "s3api",
            "create-multipart-upload",
            "--bucket",
            bucket,
            "--key",
            key,
            "--query",
            "UploadId",
            "--output",
            "text",
        ],
    )
    .trim()
    .to_string()
}

fn parts(gw: &Gateway, bucket: &str, key: &str, upload_id: &str) -> String {
    aws_ok(
        &gw.url(),
        &[
            "s3api",
            "list-parts",
            "--bucket",
            bucket,
            "--key",
            key,
            "--upload-id",
            upload_id,
            "--query",
            "length(Parts || `[]`)",
        ],
    )
    .trim()
    .to_string()
}

/// Bytes of decoded body the gateway holds back from pass-through
/// buckets until every check passed (`filters/src/holdback.rs`).
const HOLD_BACK: u64 = 64 * 1024;
/// The body the script sends (`SIZE` in the script).
const SIZE: u64 = 300_000;

/// The late case: every data chunk, then (once the relay shows the
/// gateway passed on all it will before the end) the bad final chunk.
fn upload_late(gw: &Gateway, relay: &relay::Relay, bucket: &str, key: &str, query: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let before = relay.body_bytes();
    let mut child = python_child(
        UPLOAD,
        &[
            &gw.port.to_string(),
            CLIENT_KEY,
            CLIENT_SECRET,
            bucket,
            key,
            query,
            "final-sig-late",
        ],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "sent");
    until(
        "the gateway to pass on the data before the end",
        std::time::Duration::from_secs(30),
        || relay.body_bytes() - before >= SIZE - HOLD_BACK,
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(child.wait().unwrap().success());
    line.trim().to_string()
}

#[test]
fn failures_at_the_end_of_an_upload_store_nothing() {
    let garage = Garage::start(&["plain", "secure"]);
    let relay = relay::Relay::start(&garage);
    let gw = Gateway::start_with(
        &relay,
        &Options {
            extra: &encrypting_only("secure"),
            ..Options::default()
        },
    );
    // What Garage answers for the two faults forwarded unchanged to a
    // pass-through bucket, and what the gateway answers itself.
    let cases = |bucket: &str| {
        let plain = bucket == "plain";
        [
            ("final-sig", "403 SignatureDoesNotMatch"),
            ("final-sig-late", "403 SignatureDoesNotMatch"),
            ("trailer-sig", "403 SignatureDoesNotMatch"),
            ("trailer-crc", "400 BadDigest"),
            (
                "unsigned-crc",
                if plain {
                    GARAGE_BAD_CRC
                } else {
                    "400 BadDigest"
                },
            ),
            (
                "sha256",
                if plain {
                    GARAGE_BAD_SHA256
                } else {
                    "400 XAmzContentSHA256Mismatch"
                },
            ),
        ]
    };
    let run = |bucket: &str, key: &str, query: &str, mode: &str| match mode {
        "final-sig-late" => upload_late(&gw, &relay, bucket, key, query),
        _ => upload(&gw, bucket, key, query, mode),
    };
    for bucket in ["plain", "secure"] {
        // The same requests without the fault are stored.
        assert_eq!(
            upload(&gw, bucket, "good", "", "ok-signed"),
            "200",
            "{bucket}"
        );
        assert!(garage.has(bucket, "good"), "{bucket}");
        for (mode, expected) in cases(bucket) {
            assert_eq!(run(bucket, mode, "", mode), expected, "{bucket} {mode}");
            assert!(!garage.has(bucket, mode), "{bucket} {mode}: stored");
        }
        // UploadPart: the same faults leave no part.
        let id = create(&gw, bucket, "mp");
        let query = format!("partNumber=1&uploadId={id}");
        for (mode, expected) in cases(bucket) {
            assert_eq!(
                run(bucket, "mp", &query, mode),
                expected,
                "{bucket} part {mode}"
            );
            assert_eq!(parts(&gw, bucket, "mp", &id), "0", "{bucket} part {mode}");
        }
        assert_eq!(upload(&gw, bucket, "mp", &query, "ok-signed"), "200");
        assert_eq!(parts(&gw, bucket, "mp", &id), "1", "{bucket}");
    }
}

/// Garage's answer to an unsigned trailer with a wrong CRC32 (AWS S3
/// answers `BadDigest`): forwarded to a pass-through bucket unchanged.
const GARAGE_BAD_CRC: &str = "400 InvalidDigest";
/// Garage's answer to a body whose SHA-256 is not `x-amz-content-sha256`
/// (AWS S3 answers `XAmzContentSHA256Mismatch`).
const GARAGE_BAD_SHA256: &str = "400 InvalidDigest";
