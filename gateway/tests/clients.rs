//! More clients with their defaults, beside the aws cli, boto3, rclone and
//! s3cmd of the other tests: minio-py and the AWS SDK for JavaScript v3
//! (client-s3 and lib-storage), each doing put, get, ranges, a multipart
//! upload, copy, list and delete through an encrypting gateway on every
//! backend; s3cmd's `sync`; and restic, a backup client on minio-go.
//! docs/COMPATIBILITY.md lists the results.

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

/// restic (a backup tool on minio-go) with its defaults: `init`, `backup`
/// of a tree with a 20 MB file, `check --read-data` (every pack read back
/// and verified against restic's own hashes) and `restore`, exact, on
/// every backend; the repository's packs are stored as ciphertext.
#[test]
fn restic_backs_up_checks_and_restores() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    let files = [("one", 1usize), ("sub/mid", 300_001), ("big", 20_000_003)];
    for (name, len) in files {
        std::fs::write(tree.join(name), test_bytes(len, 3 + len as u64)).unwrap();
    }
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let on = backend.name();
        let restic = |args: &[&str]| {
            let out = std::process::Command::new("restic")
                .env_remove("AWS_CA_BUNDLE")
                .env("AWS_ACCESS_KEY_ID", CLIENT_KEY)
                .env("AWS_SECRET_ACCESS_KEY", CLIENT_SECRET)
                .env("RESTIC_PASSWORD", "a test repository")
                .env("RESTIC_CACHE_DIR", work.path().join(format!("cache-{on}")))
                .args(["-r", &format!("s3:{}/demo/repo", gw.url())])
                .args(args)
                .output()
                .expect("run restic (apt-get install restic)");
            let log = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{on}: restic {args:?}: {log}");
            log
        };
        restic(&["init"]);
        restic(&["backup", tree.to_str().unwrap()]);
        let check = restic(&["check", "--read-data"]);
        assert!(check.contains("no errors were found"), "{on}: {check}");
        let out = work.path().join(format!("restored-{on}"));
        restic(&["restore", "latest", "--target", out.to_str().unwrap()]);
        let restored = out.join(tree.strip_prefix("/").unwrap());
        for (name, len) in files {
            let back = std::fs::read(restored.join(name)).unwrap();
            assert!(back == test_bytes(len, 3 + len as u64), "{on}: {name}");
        }
        // restic encrypts its packs itself: the check is that what the
        // backend holds is the gateway's envelope over them.
        let pack = aws_ok(
            &gw.url(),
            &[
                "s3api",
                "list-objects-v2",
                "--bucket",
                "demo",
                "--prefix",
                "repo/data/",
                "--query",
                "Contents[0].Key",
                "--output",
                "text",
            ],
        );
        let pack = pack.trim();
        assert!(pack.starts_with("repo/data/"), "{on}: no pack: {pack}");
        let fetched = work.path().join(format!("pack-{on}"));
        cp(
            &gw.url(),
            &format!("s3://demo/{pack}"),
            fetched.to_str().unwrap(),
        );
        let through = std::fs::read(&fetched).unwrap();
        common::stored::assert_ciphertext_of(&*backend, "demo", pack, &through);
    }
}
