//! Copies on encrypted buckets. UploadPartCopy: the gateway makes each
//! part from the source's plaintext (decrypted, or a plaintext object as
//! stored) and uploads it encrypted, so `aws s3 cp` between encrypted
//! locations works for objects of any size; on s3s-fs and on Garage.

mod common;

use common::*;

/// aws cli copies objects over 8 MiB with UploadPartCopy: within a bucket,
/// across buckets, and from a plaintext object; each copy reads back
/// byte-identical and is stored encrypted.
#[test]
fn aws_cli_copies_large_objects_between_encrypted_locations() {
    let work = tempfile::tempdir().unwrap();
    for backend in both_backends(&["demo", "other"]) {
        let gw = encrypted_gateway(&*backend);
        let name = backend.name();
        let data = test_bytes(20_000_000, 5);
        let src = work.path().join("big");
        std::fs::write(&src, &data).unwrap();
        cp(&gw.url(), src.to_str().unwrap(), "s3://demo/big");
        // Written around the gateway: a plaintext object (not mandatory).
        let (id, secret) = backend.credentials();
        let direct = aws_as(
            id,
            secret,
            &backend.url(),
            &[
                "s3",
                "cp",
                "--only-show-errors",
                src.to_str().unwrap(),
                "s3://demo/raw",
            ],
        );
        assert!(direct.status.success(), "{name}: {direct:?}");
        for (from, to) in [
            ("s3://demo/big", "s3://demo/big2"),
            ("s3://demo/big", "s3://other/big3"),
            ("s3://demo/raw", "s3://demo/from-raw"),
        ] {
            cp(&gw.url(), from, to);
            let back = work.path().join("back");
            cp(&gw.url(), to, back.to_str().unwrap());
            assert!(
                std::fs::read(&back).unwrap() == data,
                "{name}: {from} -> {to}"
            );
            let (bucket, key) = to.trim_start_matches("s3://").split_once('/').unwrap();
            let stored = backend.stored(bucket, key);
            assert!(
                !stored.windows(64).any(|w| w == &data[5000..5064]),
                "{name}: {to} is stored encrypted"
            );
        }
    }
}

const PART_RANGES: &str = include_str!("py/copies_part_ranges.py");

/// Ranged part copies from single, multipart and plaintext sources with
/// boto3, and S3's errors for bad ranges, a missing source and a failed
/// condition (nothing stored for them).
#[test]
fn ranged_part_copies_read_back_exactly() {
    for backend in both_backends(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let (id, secret) = backend.credentials();
        assert_eq!(
            python_ok(PART_RANGES, &[&gw.url(), &backend.url(), id, secret]).trim(),
            "ok",
            "{}",
            backend.name()
        );
    }
}

const OBJECTS: &str = include_str!("py/copies_objects.py");

/// CopyObject with boto3: kept as stored when the envelope is the
/// bucket's (COPY and REPLACE, onto itself), made by the gateway for a
/// multipart source; metadata per directive, exact listed sizes.
#[test]
fn copy_object_keeps_or_remakes_the_envelope() {
    for backend in both_backends(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let (id, secret) = backend.credentials();
        assert_eq!(
            python_ok(OBJECTS, &[&gw.url(), &backend.url(), id, secret]).trim(),
            "ok",
            "{}",
            backend.name()
        );
    }
}

const PLAIN: &str = include_str!("py/copies_plain.py");
/// `demo` encrypts (optional), `secure` encrypts (mandatory), `open` is
/// passed through.
const MIXED: &str = "encryption:
  key_providers:
    one:
      type: local
      config: {master_key: dGVzdGtleQ==}
  policies:
    - bucket_pattern: \"secure\"
      key_provider: one
      mandatory: true
    - bucket_pattern: \"demo\"
      key_provider: one
      mandatory: false
";

/// Copies out of encrypting buckets into a pass-through one are decrypted
/// (or refused out of a mandatory bucket); plaintext copied in is
/// encrypted.
#[test]
fn copies_across_encrypting_and_pass_through_buckets() {
    for backend in both_backends(&["demo", "secure", "open"]) {
        let gw = Gateway::start_with(
            &*backend,
            &Options {
                extra: MIXED,
                ..Options::default()
            },
        );
        let (id, secret) = backend.credentials();
        assert_eq!(
            python_ok(PLAIN, &[&gw.url(), &backend.url(), id, secret]).trim(),
            "ok",
            "{}",
            backend.name()
        );
    }
}
