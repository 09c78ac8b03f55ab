//! `sealgate check-config` on every shipped example and on broken files.

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Secrets the examples read from the environment or files.
fn example_env(cmd: &mut Command) {
    cmd.env("SEALGATE_DEV_MASTER_KEY", "ZGV2LWtleQ==");
    for var in [
        "SEALGATE_BILLING_SECRET",
        "SEALGATE_BACKEND_SECRET",
        "SEALGATE_DEV_SECRET",
    ] {
        cmd.env(var, "example-secret-value");
    }
}

#[test]
fn every_example_is_valid() {
    let files = examples();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // The original design's examples must all be here.
    for required in [
        "aws-kms.yaml",
        "azure-keyvault.yaml",
        "custom.yaml",
        "named-providers.yaml",
        "legacy-kms.yaml",
        "per-bucket.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "deploy/examples/{required} is missing"
        );
    }
    let secrets = tempfile::tempdir().unwrap();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // Files named in the example (mounted secrets) are made here.
        let text = text.replace(
            "/etc/sealgate/clients/",
            &format!("{}/", secrets.path().display()),
        );
        std::fs::write(secrets.path().join("analytics"), "example-secret-value\n").unwrap();
        let patched = secrets.path().join(file.file_name().unwrap());
        std::fs::write(&patched, text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealgate"));
        cmd.arg("check-config").arg(&patched);
        example_env(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{} rejected:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": valid ("));
    }
}

#[test]
fn broken_config_exits_1_naming_every_problem_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        r#"
server:
  listen: "8080"
storage:
  s3:
    endpoint: "s3.amazonaws.com"
auth:
  clients:
    - access_key_id: A
      secret_access_key: "do-not-print-me"
      buckets: ["BAD/PATTERN"]
encryption:
  key_provider: prod
  key_providers:
    prod:
      type: aws-kms
      config:
        default_key_id: alias/x
        key_spec: RSA_2048
        data_key_cache_ttl: soon
  policies:
    - bucket_pattern: "prod-*"
      key_provider: prd
      mandatory: "yes"
logging:
  levle: debug
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "server.listen: `8080` is not an address",
        "storage.s3.endpoint: `s3.amazonaws.com` must start with http:// or https://",
        "auth.clients[0].buckets[0]:",
        "encryption.key_providers.prod.config.key_spec: `RSA_2048` is not supported",
        "encryption.key_providers.prod.config.data_key_cache_ttl:",
        "encryption.policies[0].key_provider: unknown key provider `prd` (hint: did you mean `prod`?)",
        "encryption.policies[0].mandatory: expected true or false",
        "logging.levle: unknown key (hint: did you mean `level`?)",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains("do-not-print-me"));
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_file_is_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["check-config", "/nonexistent/sealgate.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
}

#[test]
fn run_refuses_an_endpoint_that_does_not_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sealgate.yaml");
    // `.invalid` never resolves (RFC 6761); the gateway stops before binding.
    std::fs::write(
        &file,
        r#"
server:
  listen: "127.0.0.1:0"
storage:
  s3:
    endpoint: "http://backend.sealgate.invalid:9000"
    credentials:
      access_key_id: backend
      secret_access_key: backend-secret
auth:
  clients:
    - access_key_id: client
      secret_access_key: client-secret
      buckets: ["*"]
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .arg("run")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("storage.s3.endpoint: cannot resolve `backend.sealgate.invalid`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("backend-secret"), "{err}");
}
