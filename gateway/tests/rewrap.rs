//! `sealgate rewrap` moves a bucket's objects to another key without
//! touching their data: single and multipart objects read byte-identical
//! afterwards, their stored bytes and listed sizes unchanged, and an
//! interrupted run finishes when run again without redoing what it did.
//! It changes nothing it may not read: objects the bucket's policy refuses
//! are left as they are, and a client's write during a run wins.

mod common;

use std::sync::{Arc, Mutex};

use common::*;

/// The summary's second line on backends without ListObjectVersions.
const NO_VERSIONS: &str = "current versions only: the backend lists no versions (any noncurrent versions keep their old wrap)";

/// The summary's counts (its first line).
fn counts(out: &str) -> &str {
    out.lines().next().unwrap_or_default()
}

/// Providers `old` and `new` (two local keys; `new` with the master key
/// `new_key`, and `previous` as its previous one); the bucket's policy
/// names `provider` and keeps `readable` readable.
fn policy_with(provider: &str, readable: &str, new_key: &str, previous: &str) -> String {
    format!(
        "encryption:
  key_providers:
    old:
      type: local
      config: {{master_key: b2xka2V5}}
    new:
      type: local
      config:
        master_key: {new_key}
        previous_master_keys: [{previous}]
  policies:
    - bucket_pattern: \"vault\"
      key_provider: {provider}
      readable_providers: [{readable}]
"
    )
}

fn policy(provider: &str) -> String {
    policy_with(provider, "", "bmV3a2V5", "")
}

/// Writes (argv "put") an object of unequal parts and prints its SHA-256,
/// or checks that it reads back with that digest.
const ODD_PARTS: &str = r#"
import boto3, hashlib, random, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
if sys.argv[2] == "put":
    bodies = [random.Random(n).randbytes(size) for n, size in enumerate([5 << 20, (6 << 20) + 7, 999])]
    uid = s3.create_multipart_upload(Bucket="vault", Key="odd")["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket="vault", Key="odd", UploadId=uid, PartNumber=n, Body=b)["ETag"]}
             for n, b in enumerate(bodies, 1)]
    s3.complete_multipart_upload(Bucket="vault", Key="odd", UploadId=uid, MultipartUpload={"Parts": parts})
    print(hashlib.sha256(b"".join(bodies)).hexdigest())
else:
    got = s3.get_object(Bucket="vault", Key="odd")["Body"].read()
    assert hashlib.sha256(got).hexdigest() == sys.argv[2].strip()
    assert s3.get_object(Bucket="vault", Key="odd", PartNumber=2)["PartsCount"] == 3
    print("ok")
"#;

fn rewrap(backend: &dyn Upstream, config: &str, args: &[&str]) -> String {
    let out = rewrap_output(backend, config, args);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn rewrap_output(backend: &dyn Upstream, config: &str, args: &[&str]) -> std::process::Output {
    let args: Vec<&str> = ["rewrap", "--bucket", "vault"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    sealgate_command(backend, config, &args)
}

fn config_for(backend: &dyn Upstream, extra: &str) -> String {
    Gateway::config_yaml(
        backend,
        free_port(),
        free_port(),
        None,
        &Options {
            extra,
            ..Options::default()
        },
    )
}

#[test]
fn rewrap_moves_objects_to_another_key_and_resumes() {
    let garage = Garage::start(&["vault"]);
    let old_policy = policy("old");
    let old = Gateway::start_with(
        &garage,
        &Options {
            extra: &old_policy,
            ..Options::default()
        },
    );
    let work = tempfile::tempdir().unwrap();
    let small = test_bytes(200_000, 21);
    let big = test_bytes(20 * 1024 * 1024 + 12_345, 22);
    for (key, data) in [("small", &small), ("big", &big)] {
        let src = work.path().join(key);
        std::fs::write(&src, data).unwrap();
        cp(
            &old.url(),
            src.to_str().unwrap(),
            &format!("s3://vault/{key}"),
        );
    }
    // Unequal parts (found by reading each part header).
    let odd = python_ok(ODD_PARTS, &[&old.url(), "put"]);
    let (id, secret) = garage.credentials();
    let plain = work.path().join("plain");
    std::fs::write(&plain, b"written around the gateway").unwrap();
    let direct = aws_as(
        id,
        secret,
        &garage.url(),
        &["s3", "cp", plain.to_str().unwrap(), "s3://vault/plain"],
    );
    assert!(direct.status.success(), "{direct:?}");
    let before: Vec<Vec<u8>> = ["small", "big", "odd"]
        .iter()
        .map(|k| garage.stored("vault", k))
        .collect();
    drop(old);

    let new_policy = policy("new");
    let new = Gateway::start_with(
        &garage,
        &Options {
            extra: &new_policy,
            ..Options::default()
        },
    );
    let read = |key: &str| {
        let out = work.path().join(format!("{key}.back"));
        let res = aws_as(
            CLIENT_KEY,
            CLIENT_SECRET,
            &new.url(),
            &[
                "s3api",
                "get-object",
                "--bucket",
                "vault",
                "--key",
                key,
                out.to_str().unwrap(),
            ],
        );
        (res, out)
    };
    // Under the new policy the old key is not this bucket's: refused.
    assert_s3_error(&read("small").0, "AccessDenied");

    let strict = config_for(&garage, &new_policy);
    // A target the bucket's policy would not read is refused up front.
    let refused = rewrap_output(&garage, &strict, &["--to-provider", "old"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("readable_providers"));
    // Objects the policy does not read are not moved either: a GET would
    // refuse them, so rewrap does.
    let unread = rewrap_output(&garage, &strict, &["--dry-run"]);
    assert!(!unread.status.success());
    assert_eq!(
        counts(&String::from_utf8_lossy(&unread.stdout)),
        "0 to move, 0 already under the target key, 1 plaintext, 3 failed, 0 changed during the run (skipped)"
    );
    // The move: the policy names the new provider and keeps the old one
    // readable while it runs.
    let config = config_for(&garage, &policy_with("new", "old", "bmV3a2V5", ""));
    assert_eq!(
        rewrap(&garage, &config, &["--dry-run"]),
        format!("3 to move, 0 already under the target key, 1 plaintext, 0 failed, 0 changed during the run (skipped)\n{NO_VERSIONS}")
    );
    // Interrupted after one object, then run again.
    assert!(rewrap(&garage, &config, &["--limit", "1"]).starts_with("1 moved"));
    assert_eq!(
        counts(&rewrap(&garage, &config, &[])),
        "2 moved, 1 already under the target key, 1 plaintext, 0 failed, 0 changed during the run (skipped)"
    );
    assert_eq!(
        counts(&rewrap(&garage, &config, &[])),
        "0 moved, 3 already under the target key, 1 plaintext, 0 failed, 0 changed during the run (skipped)"
    );

    assert_eq!(python_ok(ODD_PARTS, &[&new.url(), &odd]).trim(), "ok");
    assert!(
        garage.stored("vault", "odd") == before[2],
        "odd: stored bytes unchanged"
    );
    for ((key, data), stored) in [("small", &small), ("big", &big)].iter().zip(&before) {
        let (res, out) = read(key);
        assert!(res.status.success(), "{key}: {res:?}");
        assert!(
            &std::fs::read(&out).unwrap() == *data,
            "{key} reads byte-identical"
        );
        assert!(
            &garage.stored("vault", key) == stored,
            "{key}: stored bytes unchanged"
        );
    }
    // Listed sizes stay exact (the multipart object kept its part count).
    let listing = aws_ok(&new.url(), &["s3", "ls", "s3://vault/"]);
    assert!(
        listing.contains(&format!(" {} big", big.len())),
        "{listing}"
    );
    assert!(
        listing.contains(&format!(" {} small", small.len())),
        "{listing}"
    );
    drop(new);

    // The `new` provider's master key is rotated (the key id stays): the
    // objects wrapped by the previous one are moved again, and then the
    // previous key can go.
    let rotated = policy_with("new", "", "bmV3ZXJrZXk=", "{key: bmV3a2V5}");
    assert_eq!(
        counts(&rewrap(&garage, &config_for(&garage, &rotated), &[])),
        "3 moved, 0 already under the target key, 1 plaintext, 0 failed, 0 changed during the run (skipped)"
    );
    let only_newest = policy_with("new", "", "bmV3ZXJrZXk=", "");
    let newest = Gateway::start_with(
        &garage,
        &Options {
            extra: &only_newest,
            ..Options::default()
        },
    );
    for (key, data) in [("small", &small), ("big", &big)] {
        let out = work.path().join(format!("{key}.newest"));
        let res = aws_as(
            CLIENT_KEY,
            CLIENT_SECRET,
            &newest.url(),
            &[
                "s3api",
                "get-object",
                "--bucket",
                "vault",
                "--key",
                key,
                out.to_str().unwrap(),
            ],
        );
        assert!(res.status.success(), "{key}: {res:?}");
        assert!(
            &std::fs::read(&out).unwrap() == data,
            "{key} after the master key went"
        );
    }
    assert_eq!(python_ok(ODD_PARTS, &[&newest.url(), &odd]).trim(), "ok");
}

/// Providers `old`, `new` and `third`. `vault` is moving from `old` to
/// `new` and reads replicas of `other` (whose objects are under `third`);
/// `stranger` writes under `old`.
const MOVED_IN: &str = "encryption:
  key_providers:
    old:
      type: local
      config: {master_key: b2xka2V5}
    new:
      type: local
      config: {master_key: bmV3a2V5}
    third:
      type: local
      config: {master_key: dGhpcmRrZXk=}
  policies:
    - bucket_pattern: \"vault\"
      key_provider: new
      readable_providers: [old]
      readable_buckets: [other]
    - bucket_pattern: \"other\"
      key_provider: third
    - bucket_pattern: \"stranger\"
      key_provider: old
";

/// The finding: rewrap re-wrapped every envelope it found, so an object
/// moved into a bucket at the storage level, refused there by reads, was
/// put under the bucket's key and became readable. Now each object is
/// checked as a GET would check it before its data key is touched; a
/// refused one is counted failed and left exactly as it was stored.
#[test]
fn objects_moved_in_at_the_storage_level_are_not_rewrapped() {
    let garage = Garage::start(&["vault", "other", "stranger"]);
    let work = tempfile::tempdir().unwrap();
    let put = |gw: &Gateway, target: &str, data: &[u8]| {
        let src = work.path().join("src");
        std::fs::write(&src, data).unwrap();
        cp(&gw.url(), src.to_str().unwrap(), target);
    };
    // The bucket's own object, written before the move.
    let legacy = test_bytes(70_000, 31);
    let old_policy = policy("old");
    let before_move = Gateway::start_with(
        &garage,
        &Options {
            extra: &old_policy,
            ..Options::default()
        },
    );
    put(&before_move, "s3://vault/legacy", &legacy);
    drop(before_move);
    let gw = Gateway::start_with(
        &garage,
        &Options {
            extra: MOVED_IN,
            ..Options::default()
        },
    );
    put(&gw, "s3://other/obj", b"other's secret");
    put(&gw, "s3://stranger/obj", b"a stranger's secret");
    // Moved in at the storage level: under a provider `vault` does not
    // read (from `other`, a bucket it does read), and under a provider it
    // reads but naming a bucket it does not (from `stranger`).
    let (id, secret) = garage.credentials();
    let backend = |args: &[&str]| {
        let out = aws_as(id, secret, &garage.url(), args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for (from, key) in [
        ("other/obj", "from-other"),
        ("stranger/obj", "from-stranger"),
    ] {
        backend(&[
            "s3api",
            "copy-object",
            "--bucket",
            "vault",
            "--key",
            key,
            "--copy-source",
            from,
        ]);
    }
    let head = |key: &str| backend(&["s3api", "head-object", "--bucket", "vault", "--key", key]);
    let get = |key: &str| {
        aws_as(
            CLIENT_KEY,
            CLIENT_SECRET,
            &gw.url(),
            &[
                "s3api",
                "get-object",
                "--bucket",
                "vault",
                "--key",
                key,
                work.path().join(key).to_str().unwrap(),
            ],
        )
    };
    let planted = ["from-other", "from-stranger"];
    let before: Vec<(String, Vec<u8>)> = planted
        .into_iter()
        .map(|k| (head(k), garage.stored("vault", k)))
        .collect();
    for key in planted {
        assert_s3_error(&get(key), "AccessDenied");
    }

    let out = rewrap_output(&garage, &config_for(&garage, MOVED_IN), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("1 moved, 0 already under the target key, 0 plaintext, 2 failed, 0 changed during the run (skipped)\n{NO_VERSIONS}"),
        "{stderr}"
    );
    assert!(
        stderr.contains("from-other FAILED: refused by the bucket's policy: its provider and key"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "from-stranger FAILED: refused by the bucket's policy: its encryption context"
        ),
        "{stderr}"
    );
    // Not a byte or a header changed (the ETag, Last-Modified and the
    // envelope's metadata are in HEAD's answer), and reads still refuse them.
    for (key, (head_before, stored_before)) in planted.into_iter().zip(&before) {
        assert_eq!(&head(key), head_before, "{key}");
        assert!(&garage.stored("vault", key) == stored_before, "{key}");
        assert_s3_error(&get(key), "AccessDenied");
        assert!(!work.path().join(key).exists(), "{key}: no plaintext");
    }
    // The bucket's own object was moved, and reads back.
    assert!(get("legacy").status.success());
    assert!(std::fs::read(work.path().join("legacy")).unwrap() == legacy);
}

/// The finding: the multipart move's CompleteMultipartUpload was
/// unconditional, so a client's write during a run was replaced by the
/// old bytes. Every write of the run is now pinned to the ETag it read:
/// the client's write wins, the object is reported as changed and skipped,
/// and the abandoned part copy is aborted. s3s-fs checks `If-Match` at
/// CompleteMultipartUpload (the client writes just before it); Garage
/// 2.5.0 ignores it there but checks `x-amz-copy-source-if-match` on part
/// copies (the client writes just before the first). Both check it on
/// CopyObject (the client writes just before the single object's copy).
#[test]
fn a_clients_write_during_a_run_wins() {
    let fs = Backend::start(&["vault"]);
    // Open uploads of `big` (the gateway's own upload records are open
    // uploads of other keys, removed after its responses): s3s-fs keeps an
    // upload's metadata as `.bucket-<vault>.object-<big>.upload-<id>…`
    // (base64url) and its parts as `.upload_id-<id>.part-<n>`.
    let fs_uploads = || -> Vec<String> {
        std::fs::read_dir(fs.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.starts_with(".bucket-dmF1bHQ.object-Ymln.upload-") || n.starts_with(".upload_id-")
            })
            .collect()
    };
    client_write_wins(&fs, "post /vault/big?uploadid=", &fs_uploads);

    let garage = Garage::start(&["vault"]);
    let garage_uploads = || -> Vec<String> {
        let (id, secret) = garage.credentials();
        let out = aws_as(
            id,
            secret,
            &garage.url(),
            &[
                "s3api",
                "list-multipart-uploads",
                "--bucket",
                "vault",
                "--query",
                "Uploads[?Key=='big'].UploadId",
                "--output",
                "text",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|u| *u != "None")
            .map(str::to_string)
            .collect()
    };
    client_write_wins(
        &garage,
        "put /vault/big?partnumber=1&uploadid=",
        &garage_uploads,
    );
}

/// One backend of [`a_clients_write_during_a_run_wins`]. A relay between
/// the run and the backend lets a client overwrite `small` when the run's
/// copy of it arrives, and `big` when the request starting `big_write`
/// (lowercase, as the relay shows it) arrives, before passing either on:
/// the client's write lands between the run's read and its write every
/// time, with no timing involved.
fn client_write_wins(
    backend: &dyn Upstream,
    big_write: &'static str,
    open_uploads: &dyn Fn() -> Vec<String>,
) {
    let name = backend.name();
    let work = tempfile::tempdir().unwrap();
    let old_policy = policy("old");
    let before = Gateway::start_with(
        backend,
        &Options {
            extra: &old_policy,
            ..Options::default()
        },
    );
    for (key, data) in [
        ("small", test_bytes(100_000, 41)),
        ("big", test_bytes(10 * 1024 * 1024 + 5, 42)),
    ] {
        let src = work.path().join(key);
        std::fs::write(&src, data).unwrap();
        cp(
            &before.url(),
            src.to_str().unwrap(),
            &format!("s3://vault/{key}"),
        );
    }
    drop(before);
    let moving = policy_with("new", "old", "bmV3a2V5", "");
    let gw = Gateway::start_with(
        backend,
        &Options {
            extra: &moving,
            ..Options::default()
        },
    );
    let client = |key: &str| test_bytes(if key == "big" { 300_000 } else { 1_000 }, 43);
    // Keys whose write was held (once each), request lines passed on, and
    // the client's writes with their status.
    let held: Arc<Mutex<Vec<String>>> = Arc::default();
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let writes: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
    let (h, r, w) = (held.clone(), requests.clone(), writes.clone());
    let port = gw.port;
    let hook: relay::Hook = Arc::new(move |head: &str| {
        let line = head.lines().next().unwrap_or_default();
        r.lock().unwrap().push(line.to_string());
        let copies = head.contains("\r\nx-amz-copy-source:");
        let key = if line.starts_with("put /vault/small ") && copies {
            "small"
        } else if line.starts_with(big_write) {
            "big"
        } else {
            return;
        };
        {
            let mut held = h.lock().unwrap();
            if held.iter().any(|k| k == key) {
                return;
            }
            held.push(key.to_string());
        }
        let put = raw::signed_request(port, "PUT", &format!("/vault/{key}"), &[], &client(key));
        w.lock().unwrap().push((key.to_string(), put.status));
    });
    let between = relay::Relay::start_with_hook(backend, hook);
    let config = config_for(&between, &moving);

    let out = rewrap_output(&between, &config, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Nothing moved, nothing failed; both skipped, so the run says to run again.
    assert!(!out.status.success(), "{name}: {stdout}{stderr}");
    assert_eq!(
        counts(&stdout),
        "0 moved, 0 already under the target key, 0 plaintext, 0 failed, 2 changed during the run (skipped)",
        "{name}: {stderr}"
    );
    for key in ["big", "small"] {
        assert!(
            stderr.contains(&format!("{key} changed during the run, skipped")),
            "{name}: {stderr}"
        );
    }
    // Listed order: `big` first.
    assert_eq!(*held.lock().unwrap(), ["big", "small"], "{name}");
    assert_eq!(
        *writes.lock().unwrap(),
        [("big".to_string(), 200), ("small".to_string(), 200)],
        "{name}: the client's writes"
    );
    // The abandoned part copy was aborted: asked for, and gone.
    let lines = requests.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("delete /vault/big?uploadid=")),
        "{name}: {lines:?}"
    );
    assert_eq!(open_uploads(), Vec::<String>::new(), "{name}");

    // The client's bytes are what reads return.
    let read = |key: &str| {
        let out = work.path().join(format!("{key}.back"));
        let res = aws_as(
            CLIENT_KEY,
            CLIENT_SECRET,
            &gw.url(),
            &[
                "s3api",
                "get-object",
                "--bucket",
                "vault",
                "--key",
                key,
                out.to_str().unwrap(),
            ],
        );
        assert!(res.status.success(), "{name} {key}: {res:?}");
        std::fs::read(out).unwrap()
    };
    for key in ["small", "big"] {
        assert!(
            read(key) == client(key),
            "{name} {key}: the client's write survives"
        );
    }
    // Run again: the client wrote under the target key; nothing to do.
    assert_eq!(
        counts(&rewrap(&between, &config, &[])),
        "0 moved, 2 already under the target key, 0 plaintext, 0 failed, 0 changed during the run (skipped)",
        "{name}"
    );
    for key in ["small", "big"] {
        assert!(read(key) == client(key), "{name} {key}");
    }
}
