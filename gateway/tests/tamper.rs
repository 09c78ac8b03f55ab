//! A tampered object never yields unauthenticated plaintext, over raw
//! HTTP so the test sees exactly which bytes arrive. Each case has one
//! outcome: a frame that fails authentication far into the body is met
//! after the response header went out, so the answer is `200` (`206` for a
//! range) with a body cut short of its length holding a true prefix of the
//! plaintext that ends before the bad frame; damage visible in the metadata
//! or the stored length is a `500 InternalError` before any object byte.
//! Every failure is counted by reason.

mod common;

use base64::Engine;
use common::raw::{signed_get, RawResponse};
use common::*;

/// 2,000,000 bytes: 30 full frames and a short 31st.
const SIZE: usize = 2_000_000;
const FRAME: usize = 65_536;
const STORED_FRAME: usize = FRAME + 16;
/// The frame the body cases damage, 1.3 MB into the object.
const BAD: usize = 20;
/// How far into the bytes fetched from the backend a bad frame must start
/// for the response header to have gone out before it is met. Pingora runs
/// the body filter on the header and what the backend sent with it in one
/// batch (the header and at most the 4 tasks of `TASK_BUFFER_SIZE`, each at
/// most `BODY_BUFFER_SIZE`, 64 KiB) and writes that batch only when every
/// filter passed: a frame at most ~330 KB in may be met before the header
/// went out (a `500` then, by timing). 1 MiB is three times that.
const LATE: usize = 1024 * 1024;

const TAMPER_META: &str = include_str!("py/tamper_meta.py");

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A bad frame met after the response header went out: `status` (200, or
/// 206 for a range), a body cut short of its length, and what arrived is a
/// true prefix of `before_bad` (the plaintext the request asked for, up to
/// the bad frame), not empty: the authenticated frames before the bad one
/// are released as they come. A byte past `before_bad` would be
/// unauthenticated plaintext.
fn assert_cut(r: &RawResponse, status: u16, before_bad: &[u8], what: &str) {
    assert!(
        before_bad.len() >= LATE,
        "{what}: the test must put the bad frame at least {LATE} bytes in"
    );
    assert_eq!(
        r.status,
        status,
        "{what}: the header goes out before the bad frame is met ({:?})",
        r.error_code()
    );
    assert!(!r.complete(), "{what}: the body must be cut short");
    assert!(
        r.body.len() <= before_bad.len(),
        "{what}: {} bytes arrived, the bad frame starts at {}",
        r.body.len(),
        before_bad.len()
    );
    assert!(
        !r.body.is_empty(),
        "{what}: the frames before the bad one arrive"
    );
    assert!(
        r.body == before_bad[..r.body.len()],
        "{what}: the bytes are a true prefix"
    );
}

fn assert_whole(r: &RawResponse, expected: &[u8], what: &str) {
    assert!(r.complete(), "{what}: status {}", r.status);
    assert!(r.body == expected, "{what}: exact bytes");
}

/// `500 InternalError` before any byte of the object.
fn assert_refused(r: &RawResponse, what: &str) {
    assert_eq!(r.status, 500, "{what}");
    assert_eq!(r.error_code().as_deref(), Some("InternalError"), "{what}");
}

#[test]
fn tampered_objects_release_only_authenticated_bytes() {
    let backend = Backend::start(&["demo"]);
    let gw = encrypted_gateway(&backend);
    let work = tempfile::tempdir().unwrap();
    let data = test_bytes(SIZE, 5);
    let src = work.path().join("f");
    std::fs::write(&src, &data).unwrap();
    let cfg = aws_config_single_put();
    let keys = [
        "clean", "flip", "cut", "cut-tag", "swap-a", "swap-b", "ctx", "dek", "salt", "commit",
        "badsalt",
    ];
    for key in keys {
        let out = aws_with_config(
            CLIENT_KEY,
            CLIENT_SECRET,
            &gw.url(),
            Some(&cfg),
            &[
                "s3",
                "cp",
                "--only-show-errors",
                src.to_str().unwrap(),
                &format!("s3://demo/{key}"),
            ],
        );
        assert!(out.status.success(), "{out:?}");
    }
    // A multipart object: 8 MiB and 4 MiB parts (the aws cli's defaults).
    let big = test_bytes(12 * 1024 * 1024, 6);
    let big_src = work.path().join("big");
    std::fs::write(&big_src, &big).unwrap();
    cp(&gw.url(), big_src.to_str().unwrap(), "s3://demo/mp");
    let get = |key: &str, range: Option<&str>| signed_get(gw.port, "demo", key, range);
    assert_whole(&get("flip", None), &data, "untouched");
    assert_whole(&get("mp", None), &big, "untouched multipart");

    // One flipped bit in a late frame.
    let bad = BAD * FRAME;
    let path = backend.object_path("demo", "flip");
    let mut stored = std::fs::read(&path).unwrap();
    stored[BAD * STORED_FRAME + 10] ^= 0x01;
    std::fs::write(&path, &stored).unwrap();
    assert_cut(&get("flip", None), 200, &data[..bad], "whole read");
    assert_cut(
        &get("flip", Some(&format!("100000-{}", bad + 200_000))),
        206,
        &data[100_000..bad],
        "range across the bad frame",
    );
    assert_whole(
        &get("flip", Some("0-1000")),
        &data[..=1000],
        "range before it",
    );
    let after = bad + FRAME;
    assert_whole(
        &get("flip", Some(&format!("{after}-{}", SIZE - 1))),
        &data[after..],
        "range after it",
    );

    // The multipart object: a flipped bit in a late frame of part 2.
    let part1 = 8 * 1024 * 1024;
    let stored_part1 = 48 + part1 / FRAME * STORED_FRAME;
    let path = backend.object_path("demo", "mp");
    let mut stored = std::fs::read(&path).unwrap();
    stored[stored_part1 + 48 + BAD * STORED_FRAME + 7] ^= 0x80;
    std::fs::write(&path, &stored).unwrap();
    let bad = part1 + BAD * FRAME;
    assert_cut(&get("mp", None), 200, &big[..bad], "multipart read");
    assert_cut(
        &get("mp", Some(&format!("{}-{}", part1 - 10, bad + 3 * FRAME))),
        206,
        &big[part1 - 10..bad],
        "multipart range across the parts and the bad frame",
    );
    assert_whole(
        &get("mp", Some(&format!("{}-{}", bad + FRAME, bad + 2 * FRAME))),
        &big[bad + FRAME..=bad + 2 * FRAME],
        "multipart range after it",
    );

    // Cut in the middle of a late frame. With more than a tag's worth of
    // the frame left, the length is a valid one and the cut frame fails as
    // a final frame: the body ends before it.
    let bad = BAD * FRAME;
    let path = backend.object_path("demo", "cut");
    let stored = std::fs::read(&path).unwrap();
    std::fs::write(&path, &stored[..BAD * STORED_FRAME + 100]).unwrap();
    assert_cut(&get("cut", None), 200, &data[..bad], "cut mid-frame");
    // With at most a tag's worth left, no plaintext length gives that
    // stored length: refused before any byte.
    let path = backend.object_path("demo", "cut-tag");
    let stored = std::fs::read(&path).unwrap();
    std::fs::write(&path, &stored[..2 * STORED_FRAME + 10]).unwrap();
    assert_refused(&get("cut-tag", None), "cut in a tag");
    assert_refused(&get("cut-tag", Some("0-10")), "cut in a tag, ranged");

    // A late frame swapped between two objects of the same plaintext
    // (different keys): each authenticates under its own object's key only.
    let (a, b) = (
        backend.object_path("demo", "swap-a"),
        backend.object_path("demo", "swap-b"),
    );
    let (mut da, mut db) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let frame = BAD * STORED_FRAME..(BAD + 1) * STORED_FRAME;
    let from_a = da[frame.clone()].to_vec();
    da[frame.clone()].copy_from_slice(&db[frame.clone()]);
    db[frame].copy_from_slice(&from_a);
    std::fs::write(&a, &da).unwrap();
    std::fs::write(&b, &db).unwrap();
    assert_cut(&get("swap-a", None), 200, &data[..bad], "swapped frame");
    assert_cut(
        &get("swap-b", Some(&format!("70000-{}", bad + 100_000))),
        206,
        &data[70_000..bad],
        "swapped frame, ranged",
    );

    // One metadata field edited at the backend.
    let (id, secret) = backend.credentials();
    let other_ctx = {
        let mut raw = Vec::new();
        for s in ["bucket", "elsewhere"] {
            raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
            raw.extend_from_slice(s.as_bytes());
        }
        b64(&raw)
    };
    let head = aws_as(
        id,
        secret,
        &backend.url(),
        &[
            "s3api",
            "head-object",
            "--bucket",
            "demo",
            "--key",
            "dek",
            "--query",
            "Metadata.\"sealgate-dek\"",
            "--output",
            "text",
        ],
    );
    let mut dek = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8_lossy(&head.stdout).trim())
        .unwrap();
    dek[20] ^= 1;
    for (key, field, value) in [
        ("ctx", "sealgate-ctx", other_ctx),
        ("dek", "sealgate-dek", b64(&dek)),
        ("salt", "sealgate-salt", b64(&[7; 32])),
        ("commit", "sealgate-commit", b64(&[7; 32])),
        ("badsalt", "sealgate-salt", "c2hvcnQ=".to_string()),
    ] {
        python_ok(
            TAMPER_META,
            &[&backend.url(), id, secret, "demo", key, field, &value],
        );
        assert_refused(&get(key, None), field);
        assert_refused(&get(key, Some("5-10")), field);
    }

    // Nothing above touched the clean object.
    assert_whole(&get("clean", None), &data, "clean object");
    assert_whole(
        &get("clean", Some("70000-70009")),
        &data[70_000..70_010],
        "clean range",
    );

    let (_, metrics) = gw.admin_get("/metrics");
    for reason in ["frame", "length", "key", "commitment", "metadata"] {
        let line = format!("sealgate_decrypt_failures_total{{reason=\"{reason}\"}}");
        let count = metrics
            .lines()
            .find(|l| l.starts_with(&line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(count >= 1, "{reason} counted: {metrics}");
    }
}
