//! Addressing: the bucket from every form of request is a valid bucket
//! name before anything uses it, and object keys with dot segments reach
//! the backend as the keys they are, in their own bucket.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// `secure` is encrypted under a mandatory policy, `plain` under an optional one.
const POLICIES: &str = "encryption:
  local:
    master_key: dGVzdGtleQ==
  policies:
    - bucket_pattern: \"secure\"
      key_provider: local
      mandatory: true
    - bucket_pattern: \"plain\"
      key_provider: local
      mandatory: false
";

fn policy_gateway(backend: &dyn Upstream) -> Gateway {
    Gateway::start_with(
        backend,
        &Options {
            extra: POLICIES,
            ..Options::default()
        },
    )
}

/// Sends one raw request and returns (status, body).
fn raw(addr: &str, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The finding: a PUT whose virtual host held `/` and `?` was classified
/// as a bucket-level call and stored in plaintext in a mandatory bucket.
/// Now every such Host or path is refused before anything else.
#[test]
fn crafted_hosts_and_bucket_segments_are_refused_and_store_nothing() {
    let garage = Garage::start(&["secure"]);
    let gw = policy_gateway(&garage);
    let addr = format!("127.0.0.1:{}", gw.port);
    let body = b"plaintext that must not be stored";
    for (host, path) in [
        ("secure/x?acl.s3.sealgate.test", "/k"),
        ("secure?x.s3.sealgate.test", "/k"),
        ("sec ure.s3.sealgate.test", "/k"),
        ("127.0.0.1", "/secure%2Fk/x"),
        ("127.0.0.1", "/%2E%2E/secure/k"),
        ("127.0.0.1", "/se%3Fcure/k"),
    ] {
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let (status, text) = raw(&addr, &head, body);
        assert_eq!(status, 400, "{host} {path}: {text}");
        assert!(text.contains("<Code>InvalidBucketName</Code>"), "{text}");
    }
    assert!(garage.keys("secure").is_empty(), "nothing was stored");
}

/// Keys with `.` and `..` segments are stored under exactly that key.
#[test]
fn dot_segments_in_keys_stay_in_their_bucket() {
    let garage = Garage::start(&["demo", "other"]);
    let gw = encrypted_gateway(&garage);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f");
    std::fs::write(&src, b"dots").unwrap();
    for key in ["a/../b", "./c", "../other/d"] {
        cp(
            &gw.url(),
            src.to_str().unwrap(),
            &format!("s3://demo/{key}"),
        );
        assert!(garage.has("demo", key), "{key} stored under its own name");
        let back = work.path().join("back");
        aws_ok(
            &gw.url(),
            &[
                "s3api",
                "get-object",
                "--bucket",
                "demo",
                "--key",
                key,
                back.to_str().unwrap(),
            ],
        );
        assert_eq!(std::fs::read(&back).unwrap(), b"dots", "{key}");
    }
    assert!(
        garage.keys("other").is_empty(),
        "nothing reached another bucket"
    );
}

const COPIES: &str = include_str!("py/addressing_copies.py");

/// Copies into a mandatory bucket fail closed and are pinned to the
/// source the gateway checked; nothing unencrypted lands there.
#[test]
fn copies_into_mandatory_buckets_fail_closed() {
    let garage = Garage::start(&["secure", "plain"]);
    let gw = policy_gateway(&garage);
    let (id, secret) = garage.credentials();
    assert_eq!(
        python_ok(COPIES, &[&gw.url(), &garage.url(), id, secret]).trim(),
        "ok"
    );
    let mut left = garage.keys("secure");
    left.sort();
    assert_eq!(left, ["dst", "dst2", "src"], "only the encrypted copies");
}
