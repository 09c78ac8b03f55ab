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

#[test]
fn failures_at_the_end_of_an_upload_store_nothing() {
    let garage = Garage::start(&["plain", "secure"]);
    let gw = Gateway::start_with(
        &garage,
        &Options {
            extra: "encryption:\n  key_providers:\n    dev:\n      type: local\n      config: {master_key: dGVzdGtleQ==}\n  policies:\n    - bucket_pattern: \"secure\"\n      key_provider: dev\n",
            ..Options::default()
        },
    );
    let cases = [
        ("final-sig", "403 SignatureDoesNotMatch"),
        ("final-sig-late", "403 SignatureDoesNotMatch"),
        ("trailer-sig", "403 SignatureDoesNotMatch"),
        ("trailer-crc", "400 BadDigest"),
        ("unsigned-crc", "400 BadDigest"),
        ("sha256", "400 XAmzContentSHA256Mismatch"),
    ];
    for bucket in ["plain", "secure"] {
        // The same requests without the fault are stored.
        assert_eq!(
            upload(&gw, bucket, "good", "", "ok-signed"),
            "200",
            "{bucket}"
        );
        assert!(garage.has(bucket, "good"), "{bucket}");
        for (mode, expected) in cases {
            if bucket == "plain" && matches!(mode, "unsigned-crc" | "sha256") {
                // Forwarded unchanged: the backend answers for its checksum.
                let got = upload(&gw, bucket, mode, "", mode);
                assert!(got.starts_with("400 "), "{bucket} {mode}: {got}");
            } else {
                assert_eq!(
                    upload(&gw, bucket, mode, "", mode),
                    expected,
                    "{bucket} {mode}"
                );
            }
            assert!(!garage.has(bucket, mode), "{bucket} {mode}: stored");
        }
        // UploadPart: the same faults leave no part.
        let id = create(&gw, bucket, "mp");
        let query = format!("partNumber=1&uploadId={id}");
        for (mode, _) in cases {
            let got = upload(&gw, bucket, "mp", &query, mode);
            assert!(got.starts_with("4"), "{bucket} part {mode}: {got}");
            assert_eq!(parts(&gw, bucket, "mp", &id), "0", "{bucket} part {mode}");
        }
        assert_eq!(upload(&gw, bucket, "mp", &query, "ok-signed"), "200");
        assert_eq!(parts(&gw, bucket, "mp", &id), "1", "{bucket}");
    }
}
