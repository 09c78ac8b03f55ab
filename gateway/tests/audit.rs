//! `sealgate audit` tells every object's state from the backend alone:
//! encrypted (with its provider, key and the bucket it is bound to),
//! plaintext, an envelope no GET could read, or one the bucket's policy
//! refuses; it exits 2 when a mandatory bucket holds plaintext, and with
//! `--verify` unwraps each data key once and checks it.

mod common;

use common::*;

/// Two local providers; `vault` is mandatory under `own`, `other` is
/// optional under `theirs`.
const POLICY: &str = "encryption:
  key_providers:
    own:
      type: local
      config: {master_key: b3dua2V5}
    theirs:
      type: local
      config: {master_key: dGhlaXJrZXk=}
  policies:
    - bucket_pattern: \"vault\"
      key_provider: own
      mandatory: true
    - bucket_pattern: \"other\"
      key_provider: theirs
      mandatory: false
";

fn audit(backend: &dyn Upstream, config: &str, args: &[&str]) -> (i32, String, String) {
    let args: Vec<&str> = ["audit"].iter().chain(args).copied().collect();
    let out = sealgate_command(backend, config, &args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each JSON object line by key, and the summary line.
fn parse(
    json: &str,
) -> (
    std::collections::BTreeMap<String, serde_json::Value>,
    serde_json::Value,
) {
    let mut objects = std::collections::BTreeMap::new();
    let mut summary = serde_json::Value::Null;
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v.get("summary") {
            Some(s) => summary = s.clone(),
            None => {
                objects.insert(v["key"].as_str().unwrap().to_string(), v);
            }
        }
    }
    (objects, summary)
}

#[test]
fn audit_tells_every_objects_state_and_fails_on_plaintext_in_a_mandatory_bucket() {
    let garage = Garage::start(&["vault", "other"]);
    let gw = Gateway::start_with(
        &garage,
        &Options {
            extra: POLICY,
            ..Options::default()
        },
    );
    let work = tempfile::tempdir().unwrap();
    let put = |bucket: &str, key: &str, data: &[u8]| {
        let src = work.path().join("src");
        std::fs::write(&src, data).unwrap();
        cp(
            &gw.url(),
            src.to_str().unwrap(),
            &format!("s3://{bucket}/{key}"),
        );
    };
    put("vault", "small", &test_bytes(70_001, 1));
    put("vault", "empty", b"");
    // Multipart (the aws cli splits at 8 MiB).
    put("vault", "big", &test_bytes(9 * 1024 * 1024, 2));
    put("other", "elsewhere", &test_bytes(1000, 3));
    let config = Gateway::config_yaml(
        &garage,
        free_port(),
        free_port(),
        None,
        &Options {
            extra: POLICY,
            ..Options::default()
        },
    );

    // All encrypted: nothing to act on.
    let (code, out, err) = audit(&garage, &config, &["--bucket", "vault", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let (objects, summary) = parse(&out);
    assert_eq!(objects.len(), 3, "{out}");
    for (key, o) in &objects {
        assert_eq!(o["state"], "encrypted", "{key}: {o}");
        assert_eq!(o["provider"], "own", "{key}");
        assert_eq!(o["bound_bucket"], "vault", "{key}");
        assert_eq!(o["format"], "1", "{key}");
    }
    assert_eq!(objects["big"]["multipart"], true);
    assert_eq!(summary["encrypted"], 3);

    // Written around the gateway: plaintext, another bucket's object
    // copied in at the storage level, a damaged envelope.
    let (id, secret) = garage.credentials();
    let backend = |args: &[&str]| {
        let out = aws_as(id, secret, &garage.url(), args);
        assert!(out.status.success(), "{out:?}");
    };
    let plain = work.path().join("plain");
    std::fs::write(&plain, b"never encrypted").unwrap();
    backend(&["s3", "cp", plain.to_str().unwrap(), "s3://vault/plain"]);
    backend(&["s3", "cp", "s3://other/elsewhere", "s3://vault/moved"]);
    backend(&[
        "s3",
        "cp",
        plain.to_str().unwrap(),
        "s3://vault/damaged",
        "--metadata",
        "sealgate-v=1,sealgate-alg=AES256GCM-HKDF-SHA256-COMMIT",
    ]);

    let (code, out, err) = audit(&garage, &config, &["--bucket", "vault", "--json"]);
    assert_eq!(code, 2, "{out}{err}");
    let (objects, summary) = parse(&out);
    let state = |k: &str| objects[k]["state"].as_str().unwrap().to_string();
    assert_eq!(state("plain"), "plaintext");
    assert_eq!(state("moved"), "refused");
    assert_eq!(state("damaged"), "unreadable");
    assert_eq!(state("small"), "encrypted");
    assert_eq!(
        (
            summary["plaintext"].as_u64(),
            summary["refused"].as_u64(),
            summary["unreadable"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{summary}"
    );
    assert_eq!(summary["by_key"].as_object().unwrap().len(), 1, "{summary}");

    // Text: the objects to act on by name, then the summary.
    let (code, out, _) = audit(&garage, &config, &["--bucket", "vault"]);
    assert_eq!(code, 2);
    for line in ["plaintext plain", "refused moved", "unreadable damaged"] {
        assert!(out.lines().any(|l| l == line), "{line}: {out}");
    }
    assert!(out.contains("6 objects"), "{out}");
    assert!(out.contains("(the bucket's policy is mandatory)"), "{out}");

    // Plaintext alone is a finding only where the policy is mandatory.
    backend(&["s3", "cp", plain.to_str().unwrap(), "s3://other/plain"]);
    let (code, out, err) = audit(&garage, &config, &["--bucket", "other"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 encrypted, 1 plaintext,"), "{out}");
    // A prefix narrows the listing.
    let (_, out, _) = audit(
        &garage,
        &config,
        &["--bucket", "vault", "--prefix", "sm", "--json"],
    );
    assert_eq!(parse(&out).0.keys().collect::<Vec<_>>(), ["small"]);

    // An envelope copied onto other bytes (a length no frame stream has),
    // and a key made to forge lines in the text output.
    let head = aws_as(
        id,
        secret,
        &garage.url(),
        &[
            "s3api",
            "head-object",
            "--bucket",
            "vault",
            "--key",
            "small",
        ],
    );
    let meta: serde_json::Value = serde_json::from_slice(&head.stdout).unwrap();
    let meta = meta["Metadata"].to_string();
    backend(&[
        "s3api",
        "put-object",
        "--bucket",
        "vault",
        "--key",
        "forged",
        "--body",
        plain.to_str().unwrap(),
        "--metadata",
        &meta,
    ]);
    backend(&[
        "s3",
        "cp",
        plain.to_str().unwrap(),
        "s3://vault/evil\nencrypted small",
    ]);
    let (code, out, _) = audit(&garage, &config, &["--bucket", "vault"]);
    assert_eq!(code, 2);
    assert!(out.lines().any(|l| l == "unreadable forged"), "{out}");
    assert!(
        out.lines().any(|l| l == "plaintext evil\\nencrypted small"),
        "{out}"
    );
    assert!(!out.lines().any(|l| l == "encrypted small"), "{out}");
    backend(&["s3", "rm", "s3://vault/forged"]);
    backend(&["s3", "rm", "s3://vault/evil\nencrypted small"]);

    // Plaintext alone in the mandatory bucket: still a finding.
    backend(&["s3", "rm", "s3://vault/moved"]);
    backend(&["s3", "rm", "s3://vault/damaged"]);
    let (code, out, err) = audit(&garage, &config, &["--bucket", "vault"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("1 plaintext (the bucket's policy is mandatory)"),
        "{out}"
    );

    // --verify unwraps each data key once: a damaged wrapped key is found.
    backend(&["s3", "rm", "s3://vault/plain"]);
    let (code, out, err) = audit(
        &garage,
        &config,
        &["--bucket", "vault", "--json", "--verify"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, summary) = parse(&out);
    assert!(summary["keys_verified"].as_u64().unwrap() >= 1, "{summary}");
    // The same object under a master key the configuration no longer has.
    let rotated = POLICY.replace("b3dua2V5", "bmV3a2V5");
    let config2 = Gateway::config_yaml(
        &garage,
        free_port(),
        free_port(),
        None,
        &Options {
            extra: &rotated,
            ..Options::default()
        },
    );
    let (code, out, err) = audit(
        &garage,
        &config2,
        &["--bucket", "vault", "--json", "--verify"],
    );
    assert_eq!(code, 2, "{out}{err}");
    let (objects, _) = parse(&out);
    assert_eq!(objects["small"]["state"], "key-failed", "{out}");
    // Without --verify nothing is unwrapped: the same run finds nothing.
    let (code, _, _) = audit(&garage, &config2, &["--bucket", "vault"]);
    assert_eq!(code, 0);
}
