//! `sealgate rewrap` moves a bucket's objects to another key without
//! touching their data: single and multipart objects read byte-identical
//! afterwards, their stored bytes and listed sizes unchanged, and an
//! interrupted run finishes when run again without redoing what it did.

mod common;

use std::process::Command;

use common::*;

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

fn rewrap(garage: &Garage, config: &str, args: &[&str]) -> String {
    let out = rewrap_output(garage, config, args);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn rewrap_output(garage: &Garage, config: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sealgate.yaml");
    std::fs::write(&file, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["rewrap", "--config"])
        .arg(&file)
        .args(["--bucket", "vault"])
        .args(args)
        .env("TEST_UPSTREAM_SECRET", garage.credentials().1)
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .env("TEST_TEAM_SECRET", TEAM_SECRET)
        .env("TEST_READER_SECRET", READER_SECRET)
        .output()
        .unwrap()
}

fn config_for(garage: &Garage, extra: &str) -> String {
    Gateway::config_yaml(
        garage,
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

    let config = config_for(&garage, &new_policy);
    // A target the bucket's policy would not read is refused up front.
    let refused = rewrap_output(&garage, &config, &["--to-provider", "old"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("readable_providers"));
    assert_eq!(
        rewrap(&garage, &config, &["--dry-run"]),
        "3 to move, 0 already under the target key, 1 plaintext, 0 failed"
    );
    // Interrupted after one object, then run again.
    assert!(rewrap(&garage, &config, &["--limit", "1"]).starts_with("1 moved"));
    assert_eq!(
        rewrap(&garage, &config, &[]),
        "2 moved, 1 already under the target key, 1 plaintext, 0 failed"
    );
    assert_eq!(
        rewrap(&garage, &config, &[]),
        "0 moved, 3 already under the target key, 1 plaintext, 0 failed"
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
        rewrap(&garage, &config_for(&garage, &rotated), &[]),
        "3 moved, 0 already under the target key, 1 plaintext, 0 failed"
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
