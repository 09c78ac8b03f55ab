//! More clients with their defaults, beside the aws cli, boto3, rclone and
//! s3cmd of the other tests: minio-py and the AWS SDK for JavaScript v3
//! (client-s3 and lib-storage), each doing put, get, ranges, a multipart
//! upload, copy, list and delete through an encrypting gateway on every
//! backend. docs/COMPATIBILITY.md lists the results.

mod common;

use common::*;

const MINIO: &str = include_str!("py/clients_minio.py");

#[test]
fn minio_py_with_its_defaults() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let host = gw.url().trim_start_matches("http://").to_string();
        assert_eq!(
            python_ok(MINIO, &[&host, listing(&*backend)]).trim(),
            "ok",
            "{}",
            backend.name()
        );
        let plain: Vec<u8> = (0..70_001u32)
            .map(|i| ((i * 3 + (i >> 5)) % 256) as u8)
            .collect();
        stored_encrypted(&*backend, "minio/kept.bin", &plain);
    }
}

/// Whether listings of `backend` show a multipart object's exact size
/// (s3s-fs lists no ETags, from which the gateway reads the part count).
fn listing(backend: &dyn Upstream) -> &'static str {
    match backend.name() {
        "s3s-fs" => "inexact",
        _ => "exact",
    }
}

/// The object as the backend holds it is longer than `plain` and holds
/// none of it.
fn stored_encrypted(backend: &dyn Upstream, key: &str, plain: &[u8]) {
    let stored = backend.stored("demo", key);
    assert!(stored.len() > plain.len(), "{key}");
    assert!(
        !stored.windows(64).any(|w| w == &plain[1000..1064]),
        "{key} is stored in plaintext on {}",
        backend.name()
    );
}

#[test]
fn the_js_sdk_v3_with_its_defaults() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        assert_eq!(
            node_ok("sdk_v3.mjs", &[&gw.url(), listing(&*backend)]).trim(),
            "ok",
            "{}",
            backend.name()
        );
        let plain: Vec<u8> = (0..70_001u32)
            .map(|i| ((i * 3 + (i >> 7)) & 255) as u8)
            .collect();
        stored_encrypted(&*backend, "js/kept.bin", &plain);
    }
}
