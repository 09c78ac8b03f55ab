//! More clients with their defaults, beside the aws cli, boto3, rclone and
//! s3cmd of the other tests: minio-py and the AWS SDK for JavaScript v3
//! (client-s3 and lib-storage), each doing put, get, ranges, a multipart
//! upload, copy, list and delete through an encrypting gateway on every
//! backend; and s3cmd's `sync`. docs/COMPATIBILITY.md lists the results.

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

/// s3cmd's `sync` up, again, and down, with its defaults: the files come
/// back exact and the backend holds their ciphertext. A second sync
/// uploads the single-upload files again and only those: s3cmd takes a
/// listed ETag without a `-N` for the file's MD5, and here it is the stored
/// ciphertext's (as on an SSE-KMS bucket; docs/COMPATIBILITY.md).
/// Garage and Ceph RGW: s3s-fs lists no ETags, on which s3cmd's sync fails
/// with or without the gateway (`KeyError: 'ETag'`).
#[test]
fn s3cmd_sync_up_again_and_down() {
    let backends: Vec<Box<dyn Upstream>> = vec![
        Box::new(Garage::start(&["demo"])),
        Box::new(Rgw::start(&["demo"])),
    ];
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    // 16 MiB + 3: s3cmd uploads it in 15 MiB parts.
    let files = [
        ("one", 1usize),
        ("sub/mid", 300_001),
        ("big", 16 * 1024 * 1024 + 3),
    ];
    for (name, len) in files {
        std::fs::write(tree.join(name), test_bytes(len, 7 + len as u64)).unwrap();
    }
    let src = format!("{}/", tree.to_str().unwrap());
    for backend in backends {
        let gw = encrypted_gateway(&*backend);
        let on = backend.name();
        let up = s3cmd(gw.port, &["sync", &src, "s3://demo/tree/"]);
        assert_eq!(up.matches("upload:").count(), 3, "{on}: {up}");
        let again = s3cmd(gw.port, &["sync", &src, "s3://demo/tree/"]);
        assert_eq!(again.matches("upload:").count(), 2, "{on}: {again}");
        assert!(!again.contains("tree/big"), "{on}: {again}");
        let back = work.path().join(format!("back-{on}"));
        std::fs::create_dir_all(&back).unwrap();
        let down = s3cmd(
            gw.port,
            &[
                "sync",
                "s3://demo/tree/",
                &format!("{}/", back.to_str().unwrap()),
            ],
        );
        assert_eq!(down.matches("download:").count(), 3, "{on}: {down}");
        for (name, len) in files {
            let data = test_bytes(len, 7 + len as u64);
            assert!(
                std::fs::read(back.join(name)).unwrap() == data,
                "{on}: {name}"
            );
            common::stored::assert_ciphertext_of(&*backend, "demo", &format!("tree/{name}"), &data);
        }
    }
}
