//! Copies on encrypted buckets. UploadPartCopy: the gateway makes each
//! part from the source's plaintext (decrypted, or a plaintext object as
//! stored) and uploads it encrypted, so `aws s3 cp` between encrypted
//! locations works for objects of any size; on s3s-fs, Garage and Ceph
//! RGW, and between buckets on two backends behind one gateway.

mod common;

use common::*;

/// An object of 11 aws cli parts (8 MiB each): more parts than the cli
/// sends at once (10), so parts of one copy overlap in every order.
const MANY_PARTS: usize = 90_000_000;

/// aws cli copies objects over 8 MiB with UploadPartCopy and smaller ones
/// with CopyObject: 0 B, 1 B, 20 MB and 90 MB (11 parts: more than the
/// cli's 10 requests in flight) objects within a bucket,
/// across buckets, moved, with `--metadata-directive REPLACE`, and from a
/// plaintext object; each copy reads back byte-identical and is stored
/// encrypted.
#[test]
fn aws_cli_copies_and_moves_between_encrypted_locations() {
    let work = tempfile::tempdir().unwrap();
    for backend in every_backend(&["demo", "other"]) {
        let gw = encrypted_gateway(&*backend);
        let name = backend.name();
        for len in [0usize, 1, 20_000_000, MANY_PARTS] {
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
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for (file, len) in [("a", 1usize), ("b", 300_001), ("c", 12 * 1024 * 1024 + 5)] {
        std::fs::write(tree.join(file), test_bytes(len, len as u64)).unwrap();
    }
    let c = test_bytes(12 * 1024 * 1024 + 5, 12 * 1024 * 1024 + 5);
    for backend in every_backend(&["demo", "other"]) {
        let gw = encrypted_gateway(&*backend);
        let on = backend.name();
        let rclone = |args: &[&str]| {
            let (ok, log) = rclone(&gw.url(), args);
            assert!(ok, "{on}: rclone {args:?}: {log}");
            log
        };
        rclone(&["copy", tree.to_str().unwrap(), "sg:demo/tree"]);
        // Both ends on the same remote: rclone copies server-side.
        let log = rclone(&["copy", "-v", "sg:demo/tree", "sg:other/tree"]);
        assert_eq!(log.matches("(server-side copy)").count(), 3, "{on}: {log}");
        let log = rclone(&["check", tree.to_str().unwrap(), "sg:other/tree"]);
        assert!(log.contains("0 differences found"), "{on}: {log}");
        s3cmd(gw.port, &["cp", "s3://demo/tree/c", "s3://other/s3cmd-c"]);
        let back = work.path().join(format!("back-{on}"));
        s3cmd(
            gw.port,
            &["get", "s3://other/s3cmd-c", back.to_str().unwrap()],
        );
        assert!(std::fs::read(&back).unwrap() == c, "{on}: s3cmd's copy");
        common::stored::assert_ciphertext_of(&*backend, "other", "s3cmd-c", &c);
        common::stored::assert_ciphertext_of(
            &*backend,
            "other",
            "tree/b",
            &test_bytes(300_001, 300_001),
        );
    }
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

const CONDITIONS: &str = include_str!("py/copies_conditions.py");

/// A copy the gateway makes keeps the client's destination conditions
/// (`If-None-Match`, `If-Match`) on the write it makes: refused 412 with
/// the destination unchanged, or copied when they hold. On s3s-fs, which
/// the script first shows honours them on a plain write.
#[test]
fn gateway_made_copies_keep_the_destination_conditions() {
    let backend = Backend::start(&["demo", "secure", "open"]);
    let gw = Gateway::start_with(
        &backend,
        &Options {
            extra: MIXED,
            ..Options::default()
        },
    );
    let (id, secret) = backend.credentials();
    assert_eq!(
        python_ok(CONDITIONS, &[&gw.url(), &backend.url(), id, secret]).trim(),
        "ok"
    );
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

/// Buckets on two backends behind one gateway: `storage.s3` is Garage and
/// `ceph-enc`, `ceph-plain` and the alias `ceph-alias` (real name
/// `ceph-real`) are configured on Ceph RGW with its own credentials. Garage
/// also has decoy buckets of the RGW buckets' names, holding different
/// bytes under the same keys. Every request lands on its bucket's backend
/// (the decoys stay empty, or unchanged), each backend has its own
/// stored-checksum finding (Garage crc32c, RGW none), and copies between
/// the backends, encrypted or not, single or multipart (aws cli copies 20 MB
/// with UploadPartCopy), are made by the gateway: they read back exactly,
/// never the decoy's bytes.
#[test]
fn buckets_on_two_backends_behind_one_gateway() {
    let work = tempfile::tempdir().unwrap();
    let garage = Garage::start(&[
        "garage-enc",
        "garage-plain",
        "ceph-enc",
        "ceph-plain",
        "ceph-real",
    ]);
    let rgw = Rgw::start(&["ceph-enc", "ceph-plain", "ceph-real"]);
    let on_rgw = |alias: &str, real: Option<&str>| {
        let real = real
            .map(|r| format!("        real_name: {r}\n"))
            .unwrap_or_default();
        format!(
            "      {alias}:\n{real}        endpoint: {}\n        credentials:\n          access_key_id: {RGW_KEY}\n          secret_access_key: {RGW_SECRET}\n",
            Upstream::url(&rgw)
        )
    };
    let s3_extra = format!(
        "    bucket_configs:\n{}{}{}",
        on_rgw("ceph-enc", None),
        on_rgw("ceph-plain", None),
        on_rgw("ceph-alias", Some("ceph-real")),
    );
    // Not mandatory: copies into pass-through buckets are decrypted.
    // `garage-enc` reads objects bound to `ceph-enc` (replicas).
    let extra = "encryption:\n  key_providers:\n    dev: {type: local, config: {master_key: dGVzdGtleQ==}}\n  policies:\n    - {bucket_pattern: garage-enc, key_provider: dev, mandatory: false, readable_buckets: [ceph-enc]}\n    - {bucket_pattern: \"*-enc\", key_provider: dev, mandatory: false}\n";
    let opts = Options {
        s3_extra: &s3_extra,
        extra,
        ..Options::default()
    };
    let gw = Gateway::start_with(&garage, &opts);
    let url = gw.url();
    // The decoys: what a copy forwarded to the wrong backend would take.
    let decoy = work.path().join("decoy");
    std::fs::write(&decoy, b"DECOY: the same name on the other backend").unwrap();
    let (gk, gs) = garage.credentials();
    for bucket in ["ceph-enc", "ceph-plain", "ceph-real"] {
        let out = aws_as(
            gk,
            gs,
            &Upstream::url(&garage),
            &[
                "s3",
                "cp",
                "--only-show-errors",
                decoy.to_str().unwrap(),
                &format!("s3://{bucket}/p"),
            ],
        );
        assert!(out.status.success(), "{out:?}");
    }
    let small = test_bytes(70_000, 41);
    let big = test_bytes(20_000_000, 42);
    let file = |name: &str, data: &[u8]| {
        let p = work.path().join(name);
        std::fs::write(&p, data).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (small_file, big_file) = (file("small", &small), file("big", &big));
    let read_back = |uri: &str| {
        let back = work.path().join("back");
        let _ = std::fs::remove_file(&back);
        cp(&url, uri, back.to_str().unwrap());
        std::fs::read(&back).unwrap()
    };
    // Written through the gateway to each backend's buckets.
    for (data, path, key) in [(&small, &small_file, "s"), (&big, &big_file, "b")] {
        for bucket in [
            "garage-enc",
            "ceph-enc",
            "ceph-alias",
            "ceph-plain",
            "garage-plain",
        ] {
            cp(&url, path, &format!("s3://{bucket}/{key}"));
            assert!(
                read_back(&format!("s3://{bucket}/{key}")) == *data,
                "{bucket}/{key}"
            );
        }
        stored::assert_ciphertext_of(&garage, "garage-enc", key, data);
        stored::assert_ciphertext_of(&rgw, "ceph-enc", key, data);
        assert!(rgw.stored("ceph-plain", key) == *data, "ceph-plain/{key}");
        assert!(rgw.stored("ceph-real", key) == *data, "ceph-real/{key}");
        for bucket in ["ceph-enc", "ceph-plain", "ceph-real"] {
            assert!(
                !garage.has(bucket, key),
                "{bucket}/{key} reached Garage's decoy"
            );
        }
    }
    // Copies across the backends, each way, in every combination of
    // encrypting and pass-through buckets; and the decoy never copied.
    rgw_put_plain(&rgw, &small_file, "ceph-plain", "p");
    for (key, data) in [("s", &small), ("b", &big)] {
        for (from, to) in [
            ("garage-enc", "ceph-enc"),
            ("ceph-enc", "garage-enc"),
            ("garage-plain", "ceph-enc"),
            ("ceph-enc", "garage-plain"),
            ("garage-plain", "ceph-plain"),
            ("ceph-plain", "garage-plain"),
            ("ceph-alias", "garage-enc"),
        ] {
            let copy = format!("copy-{from}-{key}");
            aws_ok(
                &url,
                &[
                    "s3",
                    "cp",
                    "--only-show-errors",
                    &format!("s3://{from}/{key}"),
                    &format!("s3://{to}/{copy}"),
                ],
            );
            assert!(
                read_back(&format!("s3://{to}/{copy}")) == *data,
                "{from} -> {to}: {key}"
            );
        }
        stored::assert_ciphertext_of(&rgw, "ceph-enc", &format!("copy-garage-enc-{key}"), data);
        stored::assert_ciphertext_of(&garage, "garage-enc", &format!("copy-ceph-enc-{key}"), data);
        assert!(
            garage.stored("garage-plain", &format!("copy-ceph-enc-{key}")) == *data,
            "decrypted into garage-plain"
        );
    }
    for (from, to) in [("ceph-plain", "garage-plain"), ("ceph-plain", "garage-enc")] {
        aws_ok(
            &url,
            &[
                "s3api",
                "copy-object",
                "--bucket",
                to,
                "--key",
                "from-p",
                "--copy-source",
                &format!("{from}/p"),
            ],
        );
        assert!(
            read_back(&format!("s3://{to}/from-p")) == small,
            "{from}/p -> {to}: the decoy's bytes, or none"
        );
    }
    // A source encrypted with the client's own key cannot be read by a
    // copy the gateway makes: refused, not copied without it.
    let refused = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &url,
        &[
            "s3api",
            "copy-object",
            "--bucket",
            "garage-plain",
            "--key",
            "ssec",
            "--copy-source",
            "ceph-plain/p",
            "--copy-source-sse-customer-algorithm",
            "AES256",
            "--copy-source-sse-customer-key",
            "0123456789abcdef0123456789abcdef",
        ],
    );
    assert_s3_error(&refused, "NotImplemented");
    assert!(!garage.has("garage-plain", "ssec"));
    // A replica in Garage of an object written to `ceph-enc` names
    // `ceph-enc`: copied back there, its envelope fits, but RGW cannot copy
    // from Garage, so the gateway makes the copy.
    let (rk, rs) = rgw.credentials();
    let replica = python_ok(
        REPLICA,
        &[
            &Upstream::url(&rgw),
            rk,
            rs,
            "ceph-enc",
            &Upstream::url(&garage),
            gk,
            gs,
            "garage-enc",
            "s",
        ],
    );
    assert_eq!(replica.trim(), "ok");
    aws_ok(
        &url,
        &[
            "s3api",
            "copy-object",
            "--bucket",
            "ceph-enc",
            "--key",
            "from-replica",
            "--copy-source",
            "garage-enc/s",
        ],
    );
    assert!(
        read_back("s3://ceph-enc/from-replica") == small,
        "copied from the replica"
    );
    stored::assert_ciphertext_of(&rgw, "ceph-enc", "from-replica", &small);
    // Each backend was probed for itself.
    let (_, metrics) = gw.admin_get("/metrics");
    for (backend, checksum) in [
        ("storage.s3", "crc32c"),
        // The three RGW buckets share one backend, named by its first alias.
        ("storage.s3.bucket_configs.ceph-alias", "none"),
    ] {
        let sample = format!(
            "sealgate_backend_stored_checksum{{backend=\"{backend}\",checksum=\"{checksum}\"}}"
        );
        assert_eq!(metric(&metrics, &sample), Some(1.0), "{sample}\n{metrics}");
    }
    // `sealgate backend status`: each backend, probed for itself.
    let yaml = Gateway::config_yaml(&garage, free_port(), free_port(), None, &opts);
    let env = |k: &str| match k {
        "TEST_UPSTREAM_SECRET" => Some(gs.to_string()),
        k if k.starts_with("TEST_") => Some("client-secret".to_string()),
        _ => None,
    };
    let config = sealgate_config::load_str(&yaml, &env).unwrap().config;
    let (report, suits) = sealgate::backend_status(&config, None).unwrap();
    assert!(suits, "{report}");
    let sections: Vec<&str> = report.split("\n\n").filter(|s| !s.is_empty()).collect();
    assert_eq!(sections.len(), 2, "{report}");
    assert!(sections[0].starts_with("backend: storage.s3\n"), "{report}");
    assert!(
        sections[0].contains("trailers: verified by the backend"),
        "{report}"
    );
    assert!(
        sections[1].starts_with("backend: storage.s3.bucket_configs.ceph-alias\n"),
        "{report}"
    );
    assert!(
        sections[1].contains("trailers: not verified by the backend"),
        "{report}"
    );
    let (report, _) = sealgate::backend_status(&config, Some("ceph-plain")).unwrap();
    assert!(
        report.starts_with(
            "backend: storage.s3.bucket_configs.ceph-plain\nendpoint: http://127.0.0.1:"
        ),
        "{report}"
    );
    assert!(
        report.contains("uses none") || report.contains("go with: none"),
        "{report}"
    );
    // Listed: Garage's buckets, without the decoys of buckets that live on RGW.
    let listed = listed_buckets(CLIENT_KEY, CLIENT_SECRET, &url);
    assert!(
        listed.iter().any(|b| b == "garage-enc") && !listed.iter().any(|b| b == "ceph-enc"),
        "{listed:?}"
    );
}

const REPLICA: &str = include_str!("py/copies_replica.py");

/// Writes `file` to RGW as `bucket/key`, around the gateway.
fn rgw_put_plain(rgw: &Rgw, file: &str, bucket: &str, key: &str) {
    let out = aws_as(
        RGW_KEY,
        RGW_SECRET,
        &Upstream::url(rgw),
        &[
            "s3",
            "cp",
            "--only-show-errors",
            file,
            &format!("s3://{bucket}/{key}"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
}
