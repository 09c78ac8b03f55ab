//! Envelope encryption end to end: real clients against a gateway with the
//! `local` key provider in front of real backends (s3s-fs, and Garage for
//! the tests of backend semantics).

mod common;

use common::stored::assert_ciphertext_of;
use common::*;
use sealgate_envelope::ciphertext_len;

/// Sizes around the 64 KiB frame and a 10 MiB object with an odd tail.
const SIZES: [usize; 7] = [
    0,
    1,
    65_535,
    65_536,
    65_537,
    3 * 65_536 + 100,
    10 * 1024 * 1024 + 7,
];

/// The backend holds ciphertext of `plain`, every frame of it: the
/// independent reader decrypts the stored bytes to exactly `plain`, no
/// 32-byte window of `plain` is stored, and the stored size is the
/// envelope's.
fn assert_stored_encrypted(backend: &dyn Upstream, bucket: &str, key: &str, plain: &[u8]) {
    let stored = assert_ciphertext_of(backend, bucket, key, plain);
    assert_eq!(
        stored.len() as u64,
        ciphertext_len(plain.len() as u64),
        "{key}: stored size on {}",
        backend.name()
    );
}

#[test]
fn aws_cli_round_trips_every_edge_size_and_ranges() {
    for backend in every_backend(&["demo"]) {
        aws_cli_round_trips_on(&*backend);
    }
}

fn aws_cli_round_trips_on(backend: &dyn Upstream) {
    let gw = encrypted_gateway(backend);
    let cfg = aws_config_single_put();
    let work = tempfile::tempdir().unwrap();
    let aws = |args: &[&str]| {
        let out = aws_with_config(CLIENT_KEY, CLIENT_SECRET, &gw.url(), Some(&cfg), args);
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for len in SIZES {
        let data = test_bytes(len, len as u64 + 3);
        let name = format!("f{len}");
        let src = work.path().join(&name);
        std::fs::write(&src, &data).unwrap();
        aws(&[
            "s3",
            "cp",
            "--only-show-errors",
            src.to_str().unwrap(),
            &format!("s3://demo/{name}"),
        ]);
        assert_stored_encrypted(backend, "demo", &name, &data);
        let back = work.path().join(format!("{name}.back"));
        aws(&[
            "s3",
            "cp",
            "--only-show-errors",
            &format!("s3://demo/{name}"),
            back.to_str().unwrap(),
        ]);
        assert_eq!(std::fs::read(&back).unwrap(), data, "{name}");
        let head = aws(&["s3api", "head-object", "--bucket", "demo", "--key", &name]);
        assert!(
            head.contains(&format!("\"ContentLength\": {len},")),
            "{head}"
        );
        assert!(
            head.contains("\"ServerSideEncryption\": \"aws:kms\""),
            "{head}"
        );
        assert!(head.contains("\"SSEKMSKeyId\": \"local:local\""), "{head}");
        assert!(
            !head.contains("sealgate"),
            "internal metadata shown: {head}"
        );
    }
    // Ranges in every form on the 10 MiB object, checked byte for byte.
    let len = SIZES[6];
    let data = test_bytes(len, len as u64 + 3);
    let ranges: [(&str, usize, usize); 6] = [
        ("bytes=0-0", 0, 0),
        ("bytes=65530-65545", 65_530, 65_545),
        ("bytes=100000-", 100_000, len - 1),
        ("bytes=-70000", len - 70_000, len - 1),
        ("bytes=5000000-5999999", 5_000_000, 5_999_999),
        ("bytes=10485000-99999999", 10_485_000, len - 1),
    ];
    for (range, first, last) in ranges {
        let out = work.path().join("range.out");
        let meta = aws(&[
            "s3api",
            "get-object",
            "--bucket",
            "demo",
            "--key",
            &format!("f{len}"),
            "--range",
            range,
            out.to_str().unwrap(),
        ]);
        assert_eq!(std::fs::read(&out).unwrap(), &data[first..=last], "{range}");
        assert!(
            meta.contains(&format!("bytes {first}-{last}/{len}")),
            "{range}: {meta}"
        );
    }
    let out = aws_with_config(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        Some(&cfg),
        &[
            "s3api",
            "get-object",
            "--bucket",
            "demo",
            "--key",
            "f1",
            "--range",
            "bytes=1-",
            "/dev/null",
        ],
    );
    assert_s3_error(&out, "InvalidRange");
    // Listings show plaintext sizes.
    let listing = aws(&["s3api", "list-objects-v2", "--bucket", "demo"]);
    for len in SIZES {
        let shown = listing.contains(&format!("\"Size\": {len},"))
            || listing.contains(&format!("\"Size\": {len}\n"));
        assert!(shown, "size {len} in {listing}");
    }
    let listing = aws(&["s3api", "list-objects", "--bucket", "demo"]);
    let big = SIZES[6];
    assert!(
        listing.contains(&format!("\"Size\": {big}\n"))
            || listing.contains(&format!("\"Size\": {big},")),
        "{listing}"
    );
}

const BOTO3_SCRIPT: &str = include_str!("py/encryption_boto3_script.py");

#[test]
fn boto3_round_trips_with_checksums_conditionals_and_copies() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        assert_eq!(
            python_ok(BOTO3_SCRIPT, &[&gw.url()]).trim(),
            "ok",
            "{}",
            backend.name()
        );
        assert!(backend.has("demo", "b65537"));
        assert_eq!(backend.stored("demo", "b1").len(), 17);
    }
}

const BAD_UPLOADS: &str = include_str!("py/encryption_bad_uploads.py");

#[test]
fn failed_checksums_leave_no_object() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let out = python_ok(BAD_UPLOADS, &[&gw.url()]);
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            ["400 BadDigest", "400 BadDigest", "400 BadDigest"],
            "{out}"
        );
        let left = backend.keys("demo");
        assert!(
            left.is_empty(),
            "{}: nothing at all was left behind: {left:?}",
            backend.name()
        );
    }
}

#[test]
fn tls_aws_chunked_crc32_trailer_uploads_are_decoded_and_encrypted() {
    let backend = Backend::start(&["demo"]);
    let certs = tempfile::tempdir().unwrap();
    self_signed_cert(certs.path());
    let gw = Gateway::start_with(
        &backend,
        &Options {
            tls_dir: Some(certs.path()),
            extra: LOCAL_PROVIDER,
            ..Options::default()
        },
    );
    let ca = certs.path().join("cert.pem");
    let cfg = aws_config_single_put();
    let work = tempfile::tempdir().unwrap();
    // Over TLS, botocore sends STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32 trailer.
    let cp = |from: &str, to: &str| {
        let args = [
            "--ca-bundle",
            ca.to_str().unwrap(),
            "s3",
            "cp",
            "--only-show-errors",
            from,
            to,
        ];
        let out = aws_with_config(CLIENT_KEY, CLIENT_SECRET, &gw.tls_url(), Some(&cfg), &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for len in [0usize, 70_000, 5 * 1024 * 1024 + 3] {
        let data = test_bytes(len, 99 + len as u64);
        let src = work.path().join("up");
        std::fs::write(&src, &data).unwrap();
        let key = format!("t{len}");
        cp(src.to_str().unwrap(), &format!("s3://demo/{key}"));
        assert_stored_encrypted(&backend, "demo", &key, &data);
        let back = work.path().join("down");
        cp(&format!("s3://demo/{key}"), back.to_str().unwrap());
        assert_eq!(std::fs::read(back).unwrap(), data);
    }
}

fn get_status(gw: &Gateway, key: &str) -> (String, Vec<u8>) {
    let script = r#"
import sys, boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
try:
    body = s3.get_object(Bucket="demo", Key=sys.argv[2])["Body"].read()
    sys.stdout.write("OK " + body.hex())
except botocore.exceptions.ClientError as e:
    sys.stdout.write("ERR %s" % e.response["Error"]["Code"])
except Exception as e:
    sys.stdout.write("BROKEN %s" % type(e).__name__)
"#;
    let out = python_ok(script, &[&gw.url(), key]);
    let (status, rest) = out.split_once(' ').unwrap_or((&out, ""));
    let body = if status == "OK" {
        hex_decode(rest)
    } else {
        Vec::new()
    };
    (status.to_string(), body)
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn plaintext_objects_written_before_the_gateway_are_served_as_they_are() {
    let backend = Backend::start(&["demo"]);
    // Written straight to the backend, as before the gateway existed.
    let data = test_bytes(200_000, 8);
    let work = tempfile::tempdir().unwrap();
    backend.put_direct("demo", "legacy", &data);
    let gw = encrypted_gateway(&backend);
    assert_eq!(get_status(&gw, "legacy"), ("OK".to_string(), data.clone()));
    let out = work.path().join("r");
    aws_ok(
        &gw.url(),
        &[
            "s3api",
            "get-object",
            "--bucket",
            "demo",
            "--key",
            "legacy",
            "--range",
            "bytes=65540-70000",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&out).unwrap(), &data[65_540..=70_000]);
    let head = aws_ok(
        &gw.url(),
        &[
            "s3api",
            "head-object",
            "--bucket",
            "demo",
            "--key",
            "legacy",
        ],
    );
    assert!(
        head.contains("\"ContentLength\": 200000,") && !head.contains("aws:kms"),
        "{head}"
    );
}

#[test]
fn mandatory_policy_refuses_plaintext_reads_and_too_large_puts() {
    let backend = Backend::start(&["secure"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("upload");
    backend.put_direct("secure", "legacy", b"old plaintext");
    let gw = Gateway::start_with(
        &backend,
        &Options {
            s3_extra: "    max_put_size: 100000\n",
            extra: "encryption:\n  key_provider: dev\n  key_providers:\n    dev:\n      type: local\n      config: {master_key: dGVzdGtleQ==}\n  policies:\n    - bucket_pattern: \"secure\"\n      mandatory: true\n",
            ..Options::default()
        },
    );
    let out = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        &[
            "s3api",
            "get-object",
            "--bucket",
            "secure",
            "--key",
            "legacy",
            "/dev/null",
        ],
    );
    assert_s3_error(&out, "AccessDenied");
    std::fs::write(&src, vec![1u8; 99_990]).unwrap();
    let out = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        &[
            "s3",
            "cp",
            "--only-show-errors",
            src.to_str().unwrap(),
            "s3://secure/big",
        ],
    );
    assert_s3_error(&out, "EntityTooLarge");
    assert!(!backend.object_path("secure", "big").exists());
    std::fs::write(&src, vec![1u8; 99_000]).unwrap();
    aws_ok(
        &gw.url(),
        &[
            "s3",
            "cp",
            "--only-show-errors",
            src.to_str().unwrap(),
            "s3://secure/fits",
        ],
    );
    assert_eq!(
        std::fs::metadata(backend.object_path("secure", "fits"))
            .unwrap()
            .len(),
        ciphertext_len(99_000)
    );
    // Server-side copies keep stored bytes: only encrypted sources may be copied in.
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
            "copied-legacy",
            "--copy-source",
            "secure/legacy",
        ],
    );
    assert_s3_error(&out, "AccessDenied");
    assert!(!backend.object_path("secure", "copied-legacy").exists());
    aws_ok(
        &gw.url(),
        &[
            "s3api",
            "copy-object",
            "--bucket",
            "secure",
            "--key",
            "copied",
            "--copy-source",
            "secure/fits",
        ],
    );
    let out = work.path().join("copied");
    aws_ok(
        &gw.url(),
        &[
            "s3api",
            "get-object",
            "--bucket",
            "secure",
            "--key",
            "copied",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&out).unwrap(), vec![1u8; 99_000]);
}

/// rclone (`sync`, `check` by hashes and by download, a second `sync`) on
/// every backend: sizes agree, nothing is copied twice, the bytes read back
/// exact, and the backend holds each file's ciphertext. Its defaults fail
/// (the ETag is not the content's MD5).
#[test]
fn rclone_sync_and_check_agree_on_sizes() {
    const FILES: [(&str, usize); 7] = [
        ("a.bin", 0),
        ("b.bin", 1),
        ("c.bin", 65_535),
        ("d.bin", 65_536),
        ("e.bin", 65_537),
        ("sub/c.bin", 300_001),
        ("sub/big.bin", 10 * 1024 * 1024 + 7),
    ];
    let local = tempfile::tempdir().unwrap();
    for (name, len) in FILES {
        let p = local.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, test_bytes(len, len as u64 + 11)).unwrap();
    }
    let dir = local.path().to_str().unwrap();
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let on = backend.name();
        let rclone = |args: &[&str]| rclone(&gw.url(), args);
        let (ok, log) = rclone(&["sync", dir, "sg:demo/tree"]);
        assert!(ok, "{on}: {log}");
        // Hashes (rclone's own MD5 metadata) and, with --download, the
        // bytes read back through the gateway.
        for how in [&["check"][..], &["check", "--download"]] {
            let (ok, log) = rclone(&[how, &[dir, "sg:demo/tree"]].concat());
            assert!(
                ok && log.contains("0 differences found"),
                "{on}: {how:?}: {log}"
            );
        }
        // A second sync has nothing to transfer: sizes agree.
        let (ok, log) = rclone(&["sync", "-v", dir, "sg:demo/tree"]);
        assert!(ok, "{on}: {log}");
        assert!(
            !log.contains("Copied"),
            "{on}: second sync copied again: {log}"
        );
        // With its defaults rclone takes a single upload's ETag (here the
        // ciphertext's MD5) for the file's and refuses its own upload, as
        // on an SSE-KMS bucket (docs/COMPATIBILITY.md).
        let b = format!("{dir}/b.bin");
        let (ok, log) = rclone_with(
            &gw.url(),
            None,
            &["copyto", &b, "sg:demo/plain-rclone/b.bin"],
        );
        assert!(!ok && log.contains("md5 hash differ"), "{on}: {log}");
        for (name, len) in FILES {
            assert_stored_encrypted(
                &*backend,
                "demo",
                &format!("tree/{name}"),
                &test_bytes(len, len as u64 + 11),
            );
        }
    }
}

const CONDITIONALS: &str = include_str!("py/encryption_conditionals.py");

#[test]
fn conditional_requests_keep_working_on_backends_that_implement_them() {
    let backends: Vec<Box<dyn Upstream>> = vec![
        Box::new(Moto::start(&["demo"])),
        Box::new(Garage::start(&["demo"])),
    ];
    for backend in backends {
        let gw = encrypted_gateway(&*backend);
        assert_eq!(
            python_ok(CONDITIONALS, &[&gw.url()]).trim(),
            "ok",
            "{}",
            backend.name()
        );
        // The backend holds ciphertext.
        assert_eq!(
            backend.stored("demo", "c").len() as u64,
            ciphertext_len(256_000),
            "{}",
            backend.name()
        );
    }
}

const CONTENT_ENCODING: &str = include_str!("py/encryption_content_encoding.py");

/// The client's Content-Encoding comes back byte-exact on encrypted
/// objects, whatever body framing carried it.
#[test]
fn content_encoding_is_kept_byte_exact() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        assert_eq!(
            python_ok(CONTENT_ENCODING, &[&gw.url()]).trim(),
            "ok",
            "{}",
            backend.name()
        );
    }
}

const ENVELOPE_FIELDS: &str = include_str!("py/encryption_envelope_fields.py");

/// Envelope fields come only from the gateway, on every entry point that
/// stores metadata: PUT, CreateMultipartUpload and CopyObject (COPY and
/// REPLACE), into an encrypting and a pass-through bucket, on both
/// backends, read at the backend (the form upload: `post.rs`).
#[test]
fn envelope_fields_from_clients_are_never_stored() {
    for backend in every_backend(&["enc", "plain"]) {
        let gw = Gateway::start_with(
            &*backend,
            &Options {
                extra: &encrypting_only("enc"),
                ..Options::default()
            },
        );
        let (id, secret) = backend.credentials();
        assert_eq!(
            python_ok(ENVELOPE_FIELDS, &[&gw.url(), &backend.url(), id, secret]).trim(),
            "ok",
            "{}",
            backend.name()
        );
    }
}

const CONCURRENCY: &str = include_str!("py/concurrency.py");

/// Writers racing on one key (32 PUTs of different content with 32 readers
/// meanwhile), multipart uploads racing on one key, and Complete racing
/// Abort, on every backend: every read returns one whole version some
/// writer wrote, never a mix; a raced Complete either completed (the
/// object whole) or lost to the Abort (nothing stored). Garage and RGW
/// overwrite atomically: no read fails and no integrity check trips there.
/// s3s-fs writes data and metadata as two files, so a read may meet the
/// envelope of one version and the body of another, and racing writers can
/// even leave the object so for good: the gateway refuses those (never
/// releasing a mix), which is all it can do there.
#[test]
fn concurrent_writers_and_readers_see_whole_versions() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let atomic = backend.name() != "s3s-fs";
        eprintln!("concurrency on {}", backend.name());
        let out = python_ok(
            CONCURRENCY,
            &[
                &gw.url(),
                "demo",
                "c/",
                if atomic { "1" } else { "0" },
                backend.name(),
            ],
        );
        assert!(out.starts_with("ok"), "{}: {out}", backend.name());
        if !atomic {
            continue;
        }
        let (_, text) = gw.admin_get("/metrics");
        for reason in ["frame", "commitment", "metadata", "length", "key", "part"] {
            let failures = metric(
                &text,
                &format!("sealgate_decrypt_failures_total{{reason=\"{reason}\"}}"),
            );
            assert!(
                failures.unwrap_or(0.0) == 0.0,
                "{}: integrity failures ({reason})",
                backend.name()
            );
        }
    }
}
