//! Copies on encrypted buckets. UploadPartCopy: the gateway makes each
//! part from the source's plaintext (decrypted, or a plaintext object as
//! stored) and uploads it encrypted, so `aws s3 cp` between encrypted
//! locations works for objects of any size; on s3s-fs and on Garage.

mod common;

use common::*;

/// aws cli copies objects over 8 MiB with UploadPartCopy and smaller ones
/// with CopyObject: 0 B, 1 B, 20 MB and 200 MB objects within a bucket,
/// across buckets, moved, with `--metadata-directive REPLACE`, and from a
/// plaintext object; each copy reads back byte-identical and is stored
/// encrypted.
#[test]
fn aws_cli_copies_and_moves_between_encrypted_locations() {
    let work = tempfile::tempdir().unwrap();
    for backend in every_backend(&["demo", "other"]) {
        let gw = encrypted_gateway(&*backend);
        let name = backend.name();
        for len in [0usize, 1, 20_000_000, 200_000_000] {
            let data = test_bytes(len, 5 + len as u64);
            let src = work.path().join("src");
            std::fs::write(&src, &data).unwrap();
            let key = format!("f{len}");
            cp(
                &gw.url(),
                src.to_str().unwrap(),
                &format!("s3://demo/{key}"),
            );
            let copies = [
                (
                    format!("s3://demo/{key}"),
                    format!("s3://demo/copy/{key}"),
                    "cp",
                ),
                (
                    format!("s3://demo/{key}"),
                    format!("s3://other/{key}"),
                    "cp",
                ),
                (
                    format!("s3://other/{key}"),
                    format!("s3://demo/moved/{key}"),
                    "mv",
                ),
                (
                    format!("s3://demo/{key}"),
                    format!("s3://demo/replaced/{key}"),
                    "replace",
                ),
            ];
            for (from, to, how) in copies {
                let mut args = vec![
                    "s3",
                    if how == "mv" { "mv" } else { "cp" },
                    "--only-show-errors",
                ];
                if how == "replace" {
                    args.extend([
                        "--metadata-directive",
                        "REPLACE",
                        "--content-type",
                        "text/x-replaced",
                    ]);
                }
                args.extend([from.as_str(), to.as_str()]);
                aws_ok(&gw.url(), &args);
                let back = work.path().join("back");
                cp(&gw.url(), &to, back.to_str().unwrap());
                assert!(
                    std::fs::read(&back).unwrap() == data,
                    "{name}: {how} {from} -> {to}"
                );
                let (bucket, key) = to.trim_start_matches("s3://").split_once('/').unwrap();
                // Every frame of every part, and no plaintext window.
                stored::assert_ciphertext_of(&*backend, bucket, key, &data);
            }
            // mv removed its source.
            assert!(!backend.has("other", &key), "{name}: mv left its source");
        }
        // A plaintext object written around the gateway (not mandatory).
        let data = test_bytes(20_000_000, 9);
        let src = work.path().join("raw");
        std::fs::write(&src, &data).unwrap();
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
        cp(&gw.url(), "s3://demo/raw", "s3://demo/from-raw");
        let back = work.path().join("back");
        cp(&gw.url(), "s3://demo/from-raw", back.to_str().unwrap());
        assert!(
            std::fs::read(&back).unwrap() == data,
            "{name}: from a plaintext object"
        );
        stored::assert_ciphertext_of(&*backend, "demo", "from-raw", &data);
    }
}

/// rclone's server-side copy between two buckets and s3cmd's `cp`: both
/// read back byte-identical.
#[test]
fn rclone_and_s3cmd_copy_server_side() {
    let backend = Backend::start(&["demo", "other"]);
    let gw = encrypted_gateway(&backend);
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for (file, len) in [("a", 1usize), ("b", 300_001), ("c", 12 * 1024 * 1024 + 5)] {
        std::fs::write(tree.join(file), test_bytes(len, len as u64)).unwrap();
    }
    let rclone = |args: &[&str]| {
        let (ok, log) = rclone(&gw.url(), args);
        assert!(ok, "rclone {args:?}: {log}");
        log
    };
    rclone(&["copy", tree.to_str().unwrap(), "sg:demo/tree"]);
    // Both ends on the same remote: rclone copies server-side.
    rclone(&["copy", "sg:demo/tree", "sg:other/tree"]);
    let log = rclone(&["check", tree.to_str().unwrap(), "sg:other/tree"]);
    assert!(log.contains("0 differences found"), "{log}");
    s3cmd(gw.port, &["cp", "s3://demo/tree/c", "s3://other/s3cmd-c"]);
    let back = work.path().join("back");
    s3cmd(
        gw.port,
        &["get", "s3://other/s3cmd-c", back.to_str().unwrap()],
    );
    assert!(
        std::fs::read(&back).unwrap() == test_bytes(12 * 1024 * 1024 + 5, 12 * 1024 * 1024 + 5)
    );
}

const PART_RANGES: &str = include_str!("py/copies_part_ranges.py");

/// Ranged part copies from single, multipart and plaintext sources with
/// boto3, and S3's errors for bad ranges, a missing source and a failed
/// condition (nothing stored for them).
#[test]
fn ranged_part_copies_read_back_exactly() {
    for backend in every_backend(&["demo"]) {
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
    for backend in every_backend(&["demo"]) {
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
    for backend in every_backend(&["demo", "secure", "open"]) {
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

const VERSIONS: &str = include_str!("py/copies_versions.py");

/// Copies the gateway makes report the stored copy's LastModified and the
/// source version, as S3 does (moto: the local backends keep no versions).
#[test]
fn gateway_made_copies_report_time_and_source_version() {
    let moto = Moto::start(&["demo", "src"]);
    let gw = encrypted_gateway(&moto);
    assert_eq!(python_ok(VERSIONS, &[&gw.url()]).trim(), "ok");
}

/// The copy pin: a copy the backend makes carries
/// `x-amz-copy-source-if-match` with the ETag the gateway probed, so a
/// source replaced between the probe and the copy (here by plaintext,
/// written at the backend just as the copy goes out) is not copied into
/// the mandatory bucket: `412 PreconditionFailed`, and the backend has no
/// copy (404).
#[test]
fn a_source_swapped_between_probe_and_copy_is_not_copied() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let garage = Garage::start(&["secure"]);
    let (url, (id, secret)) = (garage.url(), garage.credentials());
    let (id, secret) = (id.to_string(), secret.to_string());
    let swapped = Arc::new(AtomicBool::new(false));
    let seen = swapped.clone();
    let work = tempfile::tempdir().unwrap();
    let plaintext = work.path().join("plaintext");
    std::fs::write(&plaintext, b"plaintext swapped in at the backend").unwrap();
    let swap_in = plaintext.to_str().unwrap().to_string();
    let relay = relay::Relay::start_with_hook(
        &garage,
        Arc::new(move |header: &str| {
            if header.contains("\r\nx-amz-copy-source:") && !seen.swap(true, Ordering::SeqCst) {
                let out = aws_as(
                    &id,
                    &secret,
                    &url,
                    &[
                        "s3",
                        "cp",
                        "--only-show-errors",
                        &swap_in,
                        "s3://secure/src",
                    ],
                );
                assert!(out.status.success(), "{out:?}");
            }
        }),
    );
    let gw = Gateway::start_with(
        &relay,
        &Options {
            extra: "encryption:\n  local:\n    master_key: dGVzdGtleQ==\n  policies:\n    - bucket_pattern: \"secure\"\n      key_provider: local\n      mandatory: true\n",
            ..Options::default()
        },
    );
    let src = work.path().join("src");
    std::fs::write(&src, test_bytes(1000, 77)).unwrap();
    cp(&gw.url(), src.to_str().unwrap(), "s3://secure/src");
    let out = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        &[
            "s3api",
            "copy-object",
            "--bucket",
            "secure",
            "--key",
            "dst",
            "--copy-source",
            "secure/src",
        ],
    );
    assert!(
        swapped.load(Ordering::SeqCst),
        "the copy went to the backend"
    );
    assert_s3_error(&out, "PreconditionFailed");
    assert!(!garage.has("secure", "dst"), "nothing was copied");
}
