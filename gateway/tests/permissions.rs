//! Permissions per client: data clients cannot change how a bucket
//! behaves, read-only clients cannot write or delete, and an alias and its
//! real name are one bucket under one set of rules.

mod common;

use std::process::Output;

use common::*;

fn as_team(gw: &Gateway, args: &[&str]) -> Output {
    aws_as(TEAM_KEY, TEAM_SECRET, &gw.url(), args)
}

fn as_reader(gw: &Gateway, args: &[&str]) -> Output {
    aws_as(READER_KEY, READER_SECRET, &gw.url(), args)
}

const LIFECYCLE: &str = r#"{"Rules":[{"ID":"expire-all","Status":"Enabled","Filter":{"Prefix":""},"Expiration":{"Days":1}}]}"#;
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::team-a/*"}]}"#;

/// The finding: any client could put bucket policies, lifecycle rules,
/// ACLs, versioning, and create or delete buckets. A bare bucket pattern
/// now grants object data only; each of these is refused before the
/// backend sees it, and the bucket is unchanged.
#[test]
fn data_clients_cannot_change_buckets() {
    let backend = Backend::start(&["team-a"]);
    let gw = Gateway::start(&backend);
    aws_ok(
        &gw.url(),
        &["s3api", "put-object", "--bucket", "team-a", "--key", "k"],
    );
    for args in [
        vec![
            "put-bucket-policy",
            "--bucket",
            "team-a",
            "--policy",
            POLICY,
        ],
        vec!["delete-bucket-policy", "--bucket", "team-a"],
        vec!["get-bucket-policy", "--bucket", "team-a"],
        vec![
            "put-bucket-lifecycle-configuration",
            "--bucket",
            "team-a",
            "--lifecycle-configuration",
            LIFECYCLE,
        ],
        vec![
            "put-bucket-acl",
            "--bucket",
            "team-a",
            "--acl",
            "public-read",
        ],
        vec![
            "put-bucket-versioning",
            "--bucket",
            "team-a",
            "--versioning-configuration",
            "Status=Enabled",
        ],
        vec![
            "put-public-access-block",
            "--bucket",
            "team-a",
            "--public-access-block-configuration",
            "BlockPublicAcls=false",
        ],
        vec!["create-bucket", "--bucket", "team-new"],
        vec!["delete-bucket", "--bucket", "team-a"],
        vec![
            "put-object-acl",
            "--bucket",
            "team-a",
            "--key",
            "k",
            "--acl",
            "public-read",
        ],
    ] {
        let mut full = vec!["s3api"];
        full.extend(&args);
        assert_s3_error(&as_team(&gw, &full), "AccessDenied");
    }
    // Writes that would widen access or lock objects need admin too.
    for args in [
        vec![
            "put-object",
            "--bucket",
            "team-a",
            "--key",
            "pub",
            "--acl",
            "public-read",
        ],
        vec![
            "put-object",
            "--bucket",
            "team-a",
            "--key",
            "pub",
            "--grant-read",
            "uri=http://acs.amazonaws.com/groups/global/AllUsers",
        ],
        vec![
            "put-object",
            "--bucket",
            "team-a",
            "--key",
            "pub",
            "--object-lock-legal-hold-status",
            "ON",
        ],
    ] {
        let mut full = vec!["s3api"];
        full.extend(&args);
        assert_s3_error(&as_team(&gw, &full), "AccessDenied");
    }
    assert!(!backend.object_path("team-a", "pub").exists());
    let private = as_team(
        &gw,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "team-a",
            "--key",
            "private",
            "--acl",
            "private",
        ],
    );
    assert!(
        private.status.success(),
        "the default ACL is data: {private:?}"
    );
    assert!(!backend.dir.path().join("team-new").exists());
    assert!(backend.object_path("team-a", "k").exists());

    // Data calls still work for the data client, GetBucketLocation included.
    let out = as_team(&gw, &["s3api", "get-bucket-location", "--bucket", "team-a"]);
    assert!(out.status.success(), "{out:?}");
    let out = as_team(
        &gw,
        &["s3api", "put-object", "--bucket", "team-a", "--key", "k2"],
    );
    assert!(out.status.success(), "{out:?}");
    let out = as_team(
        &gw,
        &[
            "s3api",
            "delete-object",
            "--bucket",
            "team-a",
            "--key",
            "k2",
        ],
    );
    assert!(out.status.success(), "{out:?}");

    // A client granted `admin` may.
    aws_ok(
        &gw.url(),
        &["s3api", "create-bucket", "--bucket", "team-new"],
    );
    assert!(backend.dir.path().join("team-new").is_dir());
    aws_ok(
        &gw.url(),
        &["s3api", "delete-bucket", "--bucket", "team-new"],
    );
    assert!(!backend.dir.path().join("team-new").exists());
}

/// A `read` grant reads and lists; writes, deletes and copies out of
/// reach, with nothing changed at the backend.
#[test]
fn read_grants_read_and_nothing_else() {
    let backend = Backend::start(&["demo"]);
    let gw = Gateway::start(&backend);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f");
    std::fs::write(&src, b"readable").unwrap();
    cp(&gw.url(), src.to_str().unwrap(), "s3://demo/r.txt");

    let back = work.path().join("back");
    let out = as_reader(
        &gw,
        &["s3", "cp", "s3://demo/r.txt", back.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&back).unwrap(), b"readable");
    let out = as_reader(&gw, &["s3", "ls", "s3://demo/"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("r.txt"));

    for args in [
        vec!["s3", "cp", src.to_str().unwrap(), "s3://demo/w.txt"],
        vec![
            "s3api",
            "delete-object",
            "--bucket",
            "demo",
            "--key",
            "r.txt",
        ],
        vec![
            "s3api",
            "copy-object",
            "--bucket",
            "demo",
            "--key",
            "c.txt",
            "--copy-source",
            "demo/r.txt",
        ],
        vec![
            "s3api",
            "create-multipart-upload",
            "--bucket",
            "demo",
            "--key",
            "m.txt",
        ],
        vec![
            "s3api",
            "put-object-tagging",
            "--bucket",
            "demo",
            "--key",
            "r.txt",
            "--tagging",
            "TagSet=[{Key=a,Value=b}]",
        ],
    ] {
        let out = as_reader(&gw, &args);
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("AccessDenied"),
            "{args:?}: {out:?}"
        );
    }
    assert!(backend.object_path("demo", "r.txt").exists());
    for k in ["w.txt", "c.txt", "m.txt"] {
        assert!(!backend.object_path("demo", k).exists(), "{k}");
    }
}

/// `secure` is an alias of `vault-upstream` under a mandatory policy;
/// `open` is an alias whose real name may be typed too.
const ALIASES_S3: &str = "    bucket_configs:
      secure:
        real_name: vault-upstream
      open:
        real_name: open-upstream
        real_name_addressable: true
";
const ALIASES_POLICY: &str = "encryption:
  local:
    master_key: dGVzdGtleQ==
  policies:
    - bucket_pattern: \"secure\"
      key_provider: local
      mandatory: true
    - bucket_pattern: \"open\"
      key_provider: local
      mandatory: true
";

/// The finding: the real name of an aliased bucket was addressable and
/// fell under no policy, so plaintext could be stored in it. Now the real
/// name is refused (AccessDenied, nothing stored), or, where configured
/// addressable, falls under the alias's rules; listings show the alias.
#[test]
fn an_alias_and_its_real_name_are_one_bucket() {
    let garage = Garage::start(&["vault-upstream", "open-upstream"]);
    let gw = Gateway::start_with(
        &garage,
        &Options {
            s3_extra: ALIASES_S3,
            extra: ALIASES_POLICY,
            ..Options::default()
        },
    );
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f");
    std::fs::write(&src, b"must be encrypted").unwrap();
    let put = |bucket: &str| {
        aws_as(
            CLIENT_KEY,
            CLIENT_SECRET,
            &gw.url(),
            &[
                "s3api",
                "put-object",
                "--bucket",
                bucket,
                "--key",
                "k",
                "--body",
                src.to_str().unwrap(),
            ],
        )
    };
    assert_s3_error(&put("vault-upstream"), "AccessDenied");
    assert!(garage.keys("vault-upstream").is_empty());

    // Through the alias: stored encrypted under the real name.
    assert!(put("secure").status.success());
    assert_ne!(garage.stored("vault-upstream", "k"), b"must be encrypted");

    // The addressable real name gets the alias's mandatory policy.
    assert!(put("open-upstream").status.success());
    let stored = garage.stored("open-upstream", "k");
    assert!(!stored.is_empty() && stored != b"must be encrypted");
    let (id, secret) = garage.credentials();
    let direct = aws_as(
        id,
        secret,
        &garage.url(),
        &[
            "s3api",
            "put-object",
            "--bucket",
            "open-upstream",
            "--key",
            "plain",
            "--body",
            src.to_str().unwrap(),
        ],
    );
    assert!(direct.status.success(), "{direct:?}");
    let out = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        &[
            "s3api",
            "get-object",
            "--bucket",
            "open-upstream",
            "--key",
            "plain",
            work.path().join("out").to_str().unwrap(),
        ],
    );
    assert_s3_error(&out, "AccessDenied");

    let mut names = listed_buckets(CLIENT_KEY, CLIENT_SECRET, &gw.url());
    names.sort();
    assert_eq!(names, ["open", "secure"]);
}

const TOKENS: &str = include_str!("py/permissions_tokens.py");

/// The finding: upload-id tokens were unauthenticated, so a client could
/// hand the gateway any wrapped key or move a token to another object.
/// Tokens now carry a MAC over every field, the bucket and the key, under
/// a key derived from the upload's data key.
#[test]
fn upload_tokens_are_bound_to_their_upload() {
    let garage = Garage::start(&["secure", "secure2"]);
    let gw = Gateway::start_with(
        &garage,
        &Options {
            extra: "encryption:
  local:
    master_key: dGVzdGtleQ==
  policies:
    - bucket_pattern: \"secure*\"
      key_provider: local
      mandatory: true
",
            ..Options::default()
        },
    );
    assert_eq!(python_ok(TOKENS, &[&gw.url()]).trim(), "ok");
    assert_eq!(garage.keys("secure"), ["a"]);
    assert!(garage.keys("secure2").is_empty());
    let (_, metrics) = gw.admin_get("/metrics");
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("sealgate_binding_refusals_total{reason=\"token\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(refused >= 8, "token refusals counted: {refused}");
}

/// `alpha` and `beta` share a provider but bind their objects with
/// different contexts; `gamma` uses another provider; `delta` shares
/// alpha's provider and key and sets no context.
const BINDING_S3: &str = "    bucket_configs:
      alpha:
        kms_encryption_context: {bucket: alpha}
      beta:
        kms_encryption_context: {bucket: beta}
";
const BINDING_POLICY: &str = "encryption:
  key_providers:
    one:
      type: local
      config: {master_key: dGVzdGtleQ==}
    two:
      type: local
      config: {master_key: b3RoZXJrZXk=}
  policies:
    - bucket_pattern: \"gamma\"
      key_provider: two
    - bucket_pattern: \"*\"
      key_provider: one
";

/// The finding: reads trusted the object's own envelope, so an object
/// moved at the storage level into another bucket was decrypted for that
/// bucket's clients. Now its provider, key and context must be the
/// bucket's; otherwise AccessDenied and a metric by reason.
#[test]
fn objects_moved_between_buckets_are_not_decrypted() {
    let garage = Garage::start(&["alpha", "beta", "gamma", "delta"]);
    let gw = Gateway::start_with(
        &garage,
        &Options {
            s3_extra: BINDING_S3,
            extra: BINDING_POLICY,
            ..Options::default()
        },
    );
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f");
    std::fs::write(&src, b"alpha's secret").unwrap();
    cp(&gw.url(), src.to_str().unwrap(), "s3://alpha/obj");
    let (id, secret) = garage.credentials();
    for to in ["beta", "gamma", "delta"] {
        let out = aws_as(
            id,
            secret,
            &garage.url(),
            &[
                "s3api",
                "copy-object",
                "--bucket",
                to,
                "--key",
                "obj",
                "--copy-source",
                "alpha/obj",
            ],
        );
        assert!(out.status.success(), "{out:?}");
    }
    let get = |bucket: &str| {
        aws_as(
            CLIENT_KEY,
            CLIENT_SECRET,
            &gw.url(),
            &[
                "s3api",
                "get-object",
                "--bucket",
                bucket,
                "--key",
                "obj",
                work.path().join(bucket).to_str().unwrap(),
            ],
        )
    };
    assert!(get("alpha").status.success());
    assert_eq!(
        std::fs::read(work.path().join("alpha")).unwrap(),
        b"alpha's secret"
    );
    // Another context, another provider: refused, no plaintext written out.
    for bucket in ["beta", "gamma"] {
        assert_s3_error(&get(bucket), "AccessDenied");
        assert!(!work.path().join(bucket).exists(), "{bucket}");
    }
    // Same provider and key, and the bucket asks for no context: still
    // refused, since the object names the bucket it was written to.
    assert_s3_error(&get("delta"), "AccessDenied");
    assert!(!work.path().join("delta").exists());

    let (_, metrics) = gw.admin_get("/metrics");
    for (reason, n) in [("key", 1), ("context", 2)] {
        let line = format!("sealgate_binding_refusals_total{{reason=\"{reason}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }

    // A part copy reads its source as a GET would: the moved objects are
    // refused as sources too, the bucket's own object is copied.
    let s3api = |args: &[&str]| {
        let mut all = vec!["s3api"];
        all.extend_from_slice(args);
        aws_as(CLIENT_KEY, CLIENT_SECRET, &gw.url(), &all)
    };
    let created = s3api(&[
        "create-multipart-upload",
        "--bucket",
        "delta",
        "--key",
        "dst",
        "--query",
        "UploadId",
        "--output",
        "text",
    ]);
    assert!(created.status.success(), "{created:?}");
    let upload = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    let copy_from = |source: &str| {
        s3api(&[
            "upload-part-copy",
            "--bucket",
            "delta",
            "--key",
            "dst",
            "--upload-id",
            &upload,
            "--part-number",
            "1",
            "--copy-source",
            source,
        ])
    };
    for source in ["beta/obj", "gamma/obj"] {
        assert_s3_error(&copy_from(source), "AccessDenied");
        let whole = s3api(&[
            "copy-object",
            "--bucket",
            "delta",
            "--key",
            "whole",
            "--copy-source",
            source,
        ]);
        assert_s3_error(&whole, "AccessDenied");
    }
    cp(&gw.url(), src.to_str().unwrap(), "s3://delta/own");
    assert!(copy_from("delta/own").status.success());
    assert_s3_error(&copy_from("delta/obj"), "AccessDenied");

    // gamma's own object, copied into delta: made again for delta (its
    // provider, and its bucket in the KMS context), with the source's
    // metadata under COPY.
    aws_ok(
        &gw.url(),
        &[
            "s3",
            "cp",
            "--only-show-errors",
            "--metadata",
            "owner=gamma",
            src.to_str().unwrap(),
            "s3://gamma/own",
        ],
    );
    let copied = s3api(&[
        "copy-object",
        "--bucket",
        "delta",
        "--key",
        "from-gamma",
        "--copy-source",
        "gamma/own",
        "--query",
        "SSEKMSKeyId",
        "--output",
        "text",
    ]);
    assert!(copied.status.success(), "{copied:?}");
    assert_eq!(String::from_utf8_lossy(&copied.stdout).trim(), "local:one");
    let back = work.path().join("from-gamma");
    cp(&gw.url(), "s3://delta/from-gamma", back.to_str().unwrap());
    assert_eq!(std::fs::read(&back).unwrap(), b"alpha's secret");
    let stored = |bucket: &str, key: &str| {
        let out = aws_as(
            id,
            secret,
            &garage.url(),
            &[
                "s3api",
                "head-object",
                "--bucket",
                bucket,
                "--key",
                key,
                "--query",
                "[Metadata.\"sealgate-salt\",Metadata.\"sealgate-provider\",Metadata.owner]",
                "--output",
                "text",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (own, copied) = (stored("gamma", "own"), stored("delta", "from-gamma"));
    assert_ne!(own[0], copied[0], "made again for delta's context");
    assert_eq!((own[1].as_str(), copied[1].as_str()), ("two", "one"));
    assert_eq!(copied[2], "gamma", "the source's metadata");

    // gamma moves to provider one, its provider-two objects kept readable:
    // a copy within gamma only wraps the data key again, and the backend
    // copies the stored bytes (the same salt).
    let moved_policy = BINDING_POLICY.replace(
        "      key_provider: two\n",
        "      key_provider: one\n      readable_providers: [two]\n",
    );
    let gw2 = Gateway::start_with(
        &garage,
        &Options {
            s3_extra: BINDING_S3,
            extra: &moved_policy,
            ..Options::default()
        },
    );
    let rewrapped = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw2.url(),
        &[
            "s3api",
            "copy-object",
            "--bucket",
            "gamma",
            "--key",
            "own-rewrapped",
            "--copy-source",
            "gamma/own",
        ],
    );
    assert!(rewrapped.status.success(), "{rewrapped:?}");
    let again = stored("gamma", "own-rewrapped");
    assert_eq!(
        own[0], again[0],
        "the same salt: the backend copied the stored bytes"
    );
    assert_eq!(again[1], "one", "wrapped again under the bucket's provider");
    assert_eq!(again[2], "gamma", "the source's metadata under COPY");
    let back = work.path().join("own-rewrapped");
    cp(
        &gw2.url(),
        "s3://gamma/own-rewrapped",
        back.to_str().unwrap(),
    );
    assert_eq!(std::fs::read(&back).unwrap(), b"alpha's secret");
}
