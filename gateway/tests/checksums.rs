//! Checksums end to end, on s3s-fs and on Garage (which, like AWS S3,
//! verifies part checksums at CompleteMultipartUpload): the default
//! uploads of aws cli and boto3 with every checksum algorithm, the
//! checksums the client is answered (compared with Garage's own answers
//! for the same plaintext), pass-through buckets, and a byte corrupted
//! between gateway and backend.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::stored::assert_ciphertext_of;
use common::*;

/// aws cli with its defaults (CRC32 checksums, 8 MiB parts over 8 MiB):
/// 0 B, 20 MB and 90 MB (11 parts: more than the cli's 10 requests in
/// flight) files up and down, byte-identical, exact sizes,
/// ciphertext stored (every frame of every part read by the independent
/// reader, the whole stored body searched for plaintext).
#[test]
fn aws_cli_default_uploads_on_every_backend() {
    let work = tempfile::tempdir().unwrap();
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let name = backend.name();
        for len in [0usize, 20_000_000, 90_000_000] {
            let data = test_bytes(len, len as u64 + 1);
            let src = work.path().join(format!("up{len}"));
            std::fs::write(&src, &data).unwrap();
            let key = format!("f{len}");
            cp(
                &gw.url(),
                src.to_str().unwrap(),
                &format!("s3://demo/{key}"),
            );
            // Every frame of every part decrypts to the file, and no
            // window of the file is stored as it is.
            let stored = assert_ciphertext_of(&*backend, "demo", &key, &data);
            assert!(stored.len() > len, "{name}: the envelope adds bytes");
            let back = work.path().join(format!("down{len}"));
            cp(
                &gw.url(),
                &format!("s3://demo/{key}"),
                back.to_str().unwrap(),
            );
            assert!(std::fs::read(&back).unwrap() == data, "{name}: {len} bytes");
            std::fs::remove_file(&back).unwrap();
            let head = aws_ok(
                &gw.url(),
                &["s3api", "head-object", "--bucket", "demo", "--key", &key],
            );
            assert!(
                head.contains(&format!("\"ContentLength\": {len},")),
                "{name}: {head}"
            );
        }
    }
}

/// `aws s3 sync` of a tree with large files round-trips; on Garage (which
/// lists multipart ETags, as S3 does) a second sync finds nothing to do.
#[test]
fn aws_cli_sync_of_a_tree_with_large_files() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let name = backend.name();
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("sub")).unwrap();
        let files = [
            ("a.bin", 20_000_000usize),
            ("sub/b.bin", 9_000_001),
            ("sub/c.txt", 10),
        ];
        for (i, (f, len)) in files.iter().enumerate() {
            std::fs::write(tree.path().join(f), test_bytes(*len, i as u64 + 7)).unwrap();
        }
        let src = tree.path().to_str().unwrap();
        aws_ok(
            &gw.url(),
            &["s3", "sync", "--only-show-errors", src, "s3://demo/tree/"],
        );
        let back = tempfile::tempdir().unwrap();
        let dst = back.path().to_str().unwrap();
        aws_ok(
            &gw.url(),
            &["s3", "sync", "--only-show-errors", "s3://demo/tree/", dst],
        );
        for (f, _) in files {
            assert!(
                std::fs::read(tree.path().join(f)).unwrap()
                    == std::fs::read(back.path().join(f)).unwrap(),
                "{name}: {f}"
            );
        }
        if backend.name() == "garage" {
            let again = aws_ok(&gw.url(), &["s3", "sync", src, "s3://demo/tree/"]);
            assert_eq!(again.trim(), "", "{name}: a second sync uploads nothing");
        }
    }
}

/// boto3 with every checksum algorithm: managed transfers (upload_fileobj,
/// upload_file) and the low-level calls; prints each Complete's checksum
/// answer and the first part's, as JSON, for comparison between endpoints.
const BOTO3_CHECKSUMS: &str = include_str!("py/checksums_boto3_checksums.py");

#[test]
fn boto3_every_checksum_algorithm_answers_as_the_backend_would() {
    let garage = Garage::start(&["demo", "direct"]);
    let direct = python_ok(
        BOTO3_CHECKSUMS,
        &[&garage.url(), GARAGE_KEY, GARAGE_SECRET, "direct"],
    );
    assert!(
        direct.contains("-3\""),
        "Garage answers composite checksums: {direct}"
    );
    for backend in [
        Box::new(Backend::start(&["demo"])) as Box<dyn Upstream>,
        Box::new(garage),
    ] {
        let gw = encrypted_gateway(&*backend);
        let through = python_ok(
            BOTO3_CHECKSUMS,
            &[&gw.url(), CLIENT_KEY, CLIENT_SECRET, "demo"],
        );
        assert_eq!(
            through,
            direct,
            "{}: the gateway answers the checksums of the plaintext",
            backend.name()
        );
    }
}

/// A pass-through bucket (no encryption) keeps the client's checksums:
/// the backend verifies and answers them itself.
#[test]
fn pass_through_buckets_keep_client_checksums() {
    let garage = Garage::start(&["plain", "direct"]);
    let direct = python_ok(
        BOTO3_CHECKSUMS,
        &[&garage.url(), GARAGE_KEY, GARAGE_SECRET, "direct"],
    );
    let gw = Gateway::start(&garage);
    let through = python_ok(
        BOTO3_CHECKSUMS,
        &[&gw.url(), CLIENT_KEY, CLIENT_SECRET, "plain"],
    );
    assert_eq!(through, direct);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f");
    let data = test_bytes(20_000_000, 3);
    std::fs::write(&src, &data).unwrap();
    cp(&gw.url(), src.to_str().unwrap(), "s3://plain/f");
    assert!(garage.stored("plain", "f") == data, "stored as sent");
}

/// Encrypted multipart rules checked at Complete: wrong part ETags and a
/// wrong object size are refused before anything is stored; ListParts
/// shows plaintext sizes and no checksums of stored bytes.
const COMPLETE_CHECKS: &str = include_str!("py/checksums_complete_checks.py");

#[test]
fn wrong_etags_and_sizes_are_refused_at_complete() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        assert_eq!(
            python_ok(
                COMPLETE_CHECKS,
                &[
                    &gw.url(),
                    if backend.name() == "garage" {
                        "lists-etags"
                    } else {
                        "-"
                    }
                ]
            )
            .trim(),
            "ok",
            "{}",
            backend.name()
        );
    }
}

/// A TCP relay to a backend that flips one byte of the first sealed frame
/// it sees going upstream (a full frame's aws-chunked header marks it),
/// as a faulty network or proxy between gateway and backend would.
struct Tamper<'a> {
    target: &'a dyn Upstream,
    port: u16,
    flipped: Arc<AtomicBool>,
}

/// The chunk header of a full sealed frame (65,552 bytes) in the gateway's
/// upstream aws-chunked bodies.
const FRAME_CHUNK: &[u8] = b"\r\n10010\r\n";

impl<'a> Tamper<'a> {
    fn start(target: &'a dyn Upstream) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = target.url().trim_start_matches("http://").to_string();
        let flipped = Arc::new(AtomicBool::new(false));
        let flag = flipped.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let mut tail: Vec<u8> = Vec::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let piece = &mut buf[..n];
                        if !flag.load(Ordering::SeqCst) {
                            let seen = [&tail[..], &piece[..]].concat();
                            if let Some(at) = seen
                                .windows(FRAME_CHUNK.len())
                                .position(|w| w == FRAME_CHUNK)
                            {
                                let target = at + FRAME_CHUNK.len() + 100;
                                if target >= tail.len() && target - tail.len() < piece.len() {
                                    piece[target - tail.len()] ^= 0x01;
                                    flag.store(true, Ordering::SeqCst);
                                }
                            }
                            let keep = piece.len().min(FRAME_CHUNK.len());
                            tail = piece[piece.len() - keep..].to_vec();
                        }
                        if server.write_all(piece).is_err() {
                            break;
                        }
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Tamper {
            target,
            port,
            flipped,
        }
    }
}

impl Upstream for Tamper<'_> {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn credentials(&self) -> (&str, &str) {
        self.target.credentials()
    }

    fn name(&self) -> &'static str {
        "tampering relay"
    }
}

/// The backend verifies every byte the gateway stores: a byte flipped in
/// flight fails the part's (or object's) checksum at the backend, the
/// client sees the error, and nothing is stored.
#[test]
fn a_byte_corrupted_on_the_way_to_the_backend_is_refused_and_nothing_completes() {
    let garage = Garage::start(&["demo"]);
    let work = tempfile::tempdir().unwrap();
    for (key, len) in [("single", 1_000_000usize), ("multi", 20_000_000)] {
        let tamper = Tamper::start(&garage);
        let gw = encrypted_gateway(&tamper);
        let src = work.path().join(key);
        std::fs::write(&src, test_bytes(len, 5)).unwrap();
        let out = aws_as(
            CLIENT_KEY,
            CLIENT_SECRET,
            &gw.url(),
            &[
                "s3",
                "cp",
                "--only-show-errors",
                src.to_str().unwrap(),
                &format!("s3://demo/{key}"),
            ],
        );
        assert!(
            tamper.flipped.load(Ordering::SeqCst),
            "{key}: a byte was flipped"
        );
        // Garage's answer to a checksum that does not match what it received.
        assert_s3_error(&out, "InvalidDigest");
        let head = aws_as(
            GARAGE_KEY,
            GARAGE_SECRET,
            &garage.url(),
            &["s3api", "head-object", "--bucket", "demo", "--key", key],
        );
        assert!(
            !head.status.success(),
            "{key}: nothing may be stored: {head:?}"
        );
    }
}

/// `storage.s3.stored_checksum: none` (backends without aws-chunked
/// trailers): plain bodies upstream, and default multipart uploads still
/// complete on a backend that checks part checksums, because no checksum
/// it never received is named at Complete.
#[test]
fn without_stored_checksums_default_uploads_still_complete() {
    let garage = Garage::start(&["demo"]);
    let gw = Gateway::start_with(
        &garage,
        &Options {
            s3_extra: "    stored_checksum: none\n",
            extra: LOCAL_PROVIDER,
            ..Options::default()
        },
    );
    let work = tempfile::tempdir().unwrap();
    for len in [1_000usize, 20_000_000] {
        let data = test_bytes(len, 9);
        let src = work.path().join("src");
        std::fs::write(&src, &data).unwrap();
        cp(&gw.url(), src.to_str().unwrap(), "s3://demo/plain-length");
        let back = work.path().join("back");
        cp(&gw.url(), "s3://demo/plain-length", back.to_str().unwrap());
        assert!(std::fs::read(&back).unwrap() == data, "{len} bytes");
    }
}

const MIXED_INSTANCES: &str = include_str!("py/checksums_mixed_instances.py");

/// The gauge `sealgate_backend_stored_checksum` reads 1 for `state`.
fn stored_checksum_is(gw: &Gateway, state: &str) -> bool {
    let (status, text) = gw.admin_get("/metrics");
    assert_eq!(status, 200);
    metric(
        &text,
        &format!("sealgate_backend_stored_checksum{{backend=\"storage.s3\",checksum=\"{state}\"}}"),
    ) == Some(1.0)
}

/// `stored_checksum: auto` (the default) asks each backend at start-up:
/// s3s-fs and Garage verify aws-chunked trailers (a wrong one is refused
/// as a bad digest), moto does not (it stores the body whatever the
/// trailer says) and Ceph RGW 16 refuses the encoding itself, so uploads
/// there go plain. Either way objects round-trip and the probe leaves
/// nothing behind.
#[test]
fn auto_finds_out_which_backends_verify_trailers() {
    let work = tempfile::tempdir().unwrap();
    let backends: Vec<(Box<dyn Upstream>, &str)> = vec![
        (Box::new(Backend::start(&["demo"])), "crc32c"),
        (Box::new(Garage::start(&["demo"])), "crc32c"),
        (Box::new(Moto::start(&["demo"])), "none"),
        (Box::new(Rgw::start(&["demo"])), "none"),
    ];
    for (backend, expected) in backends {
        let name = backend.name();
        let gw = encrypted_gateway(&*backend);
        assert!(stored_checksum_is(&gw, expected), "{name}: not {expected}");
        let data = test_bytes(300_000, 11);
        let src = work.path().join("src");
        std::fs::write(&src, &data).unwrap();
        cp(&gw.url(), src.to_str().unwrap(), "s3://demo/obj");
        let back = work.path().join("back");
        cp(&gw.url(), "s3://demo/obj", back.to_str().unwrap());
        assert!(std::fs::read(&back).unwrap() == data, "{name}: read back");
        assert_ciphertext_of(&*backend, "demo", "obj", &data);
        assert_eq!(backend.keys("demo"), vec!["obj".to_string()], "{name}");
    }
}

/// With no bucket to probe in at start-up, `auto` asks at the first
/// encrypted write (in its bucket); an explicit `crc32c` on a backend that
/// does not verify trailers refuses to start, naming the setting.
#[test]
fn auto_probes_at_the_first_write_and_crc32c_is_refused_where_unverified() {
    let garage = Garage::start(&[]);
    let gw = encrypted_gateway(&garage);
    assert!(stored_checksum_is(&gw, "unknown"));
    garage.create_bucket("later");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::write(&src, b"first write").unwrap();
    cp(&gw.url(), src.to_str().unwrap(), "s3://later/first");
    assert!(stored_checksum_is(&gw, "crc32c"));
    assert_eq!(garage.keys("later"), vec!["first".to_string()]);

    let moto = Moto::start(&["demo"]);
    let refused = Gateway::try_start_with(
        &moto,
        &Options {
            s3_extra: "    stored_checksum: crc32c\n",
            extra: LOCAL_PROVIDER,
            ..Options::default()
        },
    )
    .err()
    .expect("crc32c on a backend that does not verify trailers must not start");
    assert!(
        refused.contains("storage.s3.stored_checksum is crc32c"),
        "{refused}"
    );
    assert!(moto.keys("demo").is_empty());
}

/// Ceph RGW answers errors with an empty Message and refuses the gateway's
/// aws-chunked encoding with `XAmzContentSHA256Mismatch`: clients get S3's
/// standard message, and a refusal of the gateway's own encoding (here
/// forced: `crc32c` set while RGW had no bucket to probe) is the gateway's
/// `InternalError` naming the setting, never a code that blames the client.
#[test]
fn backend_errors_reach_clients_with_a_message_and_without_blame() {
    let rgw = Rgw::start(&[]);
    let gw = Gateway::start_with(
        &rgw,
        &Options {
            s3_extra: "    stored_checksum: crc32c\n",
            extra: LOCAL_PROVIDER,
            ..Options::default()
        },
    );
    rgw.create_bucket("demo");
    let work = tempfile::tempdir().unwrap();
    let out = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        &[
            "s3api",
            "get-object",
            "--bucket",
            "demo",
            "--key",
            "nope",
            work.path().join("out").to_str().unwrap(),
        ],
    );
    assert_s3_error(&out, "NoSuchKey");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("The specified key does not exist."),
        "{stderr}"
    );

    let src = work.path().join("src");
    std::fs::write(&src, b"refused by its encoding").unwrap();
    let out = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        &[
            "s3api",
            "put-object",
            "--bucket",
            "demo",
            "--key",
            "k",
            "--body",
            src.to_str().unwrap(),
        ],
    );
    assert_s3_error(&out, "InternalError");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("XAmzContentSHA256Mismatch") && stderr.contains("stored_checksum"),
        "{stderr}"
    );
    assert!(!rgw.has("demo", "k"));
}

/// An upload's parts go to the backend with the stored checksum its Create
/// decided (recorded in its token), whatever another instance (or this
/// one, later) finds or is configured with: created with CRC32C on Garage,
/// which then requires every part's checksum, it completes although its
/// parts and Complete go through an instance set to `none` (the other way
/// round is run too; Garage would take those parts either way).
#[test]
fn an_upload_keeps_the_stored_checksum_it_was_created_with() {
    let garage = Garage::start(&["demo"]);
    let auto = encrypted_gateway(&garage);
    let plain = Gateway::start_with(
        &garage,
        &Options {
            s3_extra: "    stored_checksum: none\n",
            extra: LOCAL_PROVIDER,
            ..Options::default()
        },
    );
    assert!(stored_checksum_is(&auto, "crc32c"));
    for (created, parts) in [(&auto, &plain), (&plain, &auto)] {
        let out = python_ok(
            MIXED_INSTANCES,
            &[&created.url(), &parts.url(), "demo", "mixed"],
        );
        assert_eq!(out.trim(), "ok");
    }
}
