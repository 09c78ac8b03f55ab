//! The `azure-keyvault` provider against an Azure Key Vault TEST DOUBLE
//! (`py/keyvault_double.py`, not Azure): HTTPS with a private CA, Entra
//! ID's client-credentials token endpoint, the vault's bearer-challenge
//! flow, and real RSA-OAEP-256 wrapKey/unwrapKey under 2048-bit RSA keys.

mod common;

use common::*;

const DOUBLE: &str = include_str!("py/keyvault_double.py");
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const APP: &str = "sealgate-app";
const APP_SECRET: &str = "double-secret-value";

/// The running double and the CA that signs its certificate.
struct KeyVaultDouble {
    child: std::process::Child,
    port: u16,
    certs: tempfile::TempDir,
}

impl KeyVaultDouble {
    fn start() -> KeyVaultDouble {
        let certs = tempfile::tempdir().unwrap();
        self_signed_cert(certs.path());
        let (child, port) = spawn_listening("the Key Vault double", |port| {
            let mut cmd = std::process::Command::new("python3");
            cmd.args(["-E", "-c", DOUBLE, &port.to_string()])
                .arg(certs.path().join("cert.pem"))
                .arg(certs.path().join("key.pem"))
                .args([TENANT, APP, APP_SECRET, "sealgate"]);
            cmd
        });
        KeyVaultDouble { child, port, certs }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Calls of `op` the double has answered.
    fn count(&self, op: &str) -> u64 {
        let body = self.control("GET", "/_double/counts");
        let key = format!("\"{op}\": ");
        body.split_once(&key)
            .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Calls the double's own control API (over its TLS, trusting its CA).
    fn control(&self, method: &str, path: &str) -> String {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail", "-X", method, "--cacert"])
            .arg(self.certs.path().join("cert.pem"))
            .arg(format!("{}{path}", self.url()))
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The provider block: a service principal, tokens from the double,
    /// its CA trusted. `extra` adds lines to the provider's config.
    fn config(&self, extra: &str) -> String {
        format!(
            "encryption:
  key_providers:
    vault:
      type: azure-keyvault
      config:
        vault_url: {url}
        key_name: sealgate
        tenant_id: {TENANT}
        client_id: {APP}
        client_secret: {APP_SECRET}
        authority_host: {url}
        ca_file: {ca}
        validate_keys: true
{extra}  policies:
    - bucket_pattern: \"*\"
      key_provider: vault
      mandatory: true
",
            url = self.url(),
            ca = self.certs.path().join("cert.pem").display(),
        )
    }
}

impl Drop for KeyVaultDouble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The double lives at 127.0.0.1, not under the vault domain its challenge
/// names, so the round-trip tests turn the SDK's domain check off; the
/// check itself is tested on its own below.
const OFF_DOMAIN: &str = "        verify_challenge_resource: false\n";

fn start(backend: &Backend, extra: &str) -> Result<Gateway, String> {
    Gateway::try_start_with(
        backend,
        &Options {
            extra,
            ..Options::default()
        },
    )
}

fn cp(gw: &Gateway, from: &str, to: &str) {
    aws_ok(&gw.url(), &["s3", "cp", "--only-show-errors", from, to]);
}

fn head_key_id(gw: &Gateway, key: &str) -> Vec<String> {
    aws_ok(
        &gw.url(),
        &[
            "s3api",
            "head-object",
            "--bucket",
            "demo",
            "--key",
            key,
            "--query",
            "[ServerSideEncryption,SSEKMSKeyId]",
            "--output",
            "text",
        ],
    )
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

/// Uploads and reads through the vault: data keys wrapped by the vault's
/// RSA key after the bearer challenge, objects recording the versioned key
/// id, a fresh gateway unwrapping through the vault, and a key rotated in
/// the vault wrapping new objects while old ones still read.
#[test]
fn azure_keyvault_round_trips_through_the_double() {
    let vault = KeyVaultDouble::start();
    let backend = Backend::start(&["demo"]);
    let extra = vault.config(OFF_DOMAIN);
    let gw = start(&backend, &extra).expect("gateway on the vault");
    assert!(
        vault.count("challenge") >= 1,
        "the bearer challenge was met"
    );
    assert!(vault.count("token") >= 1, "a token was fetched");
    let work = tempfile::tempdir().unwrap();
    let kid_prefix = format!("{}/keys/sealgate/", vault.url());
    let mut first_kid = String::new();
    for (key, size) in [("small", 100_000), ("multi", 20 * 1024 * 1024)] {
        let data = test_bytes(size, 21);
        let src = work.path().join(key);
        std::fs::write(&src, &data).unwrap();
        cp(&gw, src.to_str().unwrap(), &format!("s3://demo/{key}"));
        let stored = std::fs::read(backend.object_path("demo", key)).unwrap();
        assert!(
            !stored.windows(64).any(|w| w == &data[..64]),
            "{key} is ciphertext"
        );
        let head = head_key_id(&gw, key);
        assert_eq!(head[0], "aws:kms");
        assert!(
            head[1].starts_with(&kid_prefix),
            "versioned key id: {head:?}"
        );
        first_kid = head[1].clone();
    }
    assert!(vault.count("wrapkey") >= 1);
    drop(gw);

    // A new gateway has no cached key: reads unwrap through the vault.
    let gw = start(&backend, &extra).expect("second gateway");
    let before = vault.count("unwrapkey");
    for (key, size) in [("small", 100_000), ("multi", 20 * 1024 * 1024)] {
        let back = work.path().join(format!("{key}.back"));
        cp(&gw, &format!("s3://demo/{key}"), back.to_str().unwrap());
        assert!(
            std::fs::read(&back).unwrap() == test_bytes(size, 21),
            "{key} round trip"
        );
    }
    assert!(vault.count("unwrapkey") > before, "the vault unwrapped");
    drop(gw);

    // The key is rotated in the vault: new objects are wrapped by the new
    // version, objects under the old one still read.
    vault.control("POST", "/_double/rotate/sealgate");
    let gw = start(&backend, &extra).expect("gateway after rotation");
    let src = work.path().join("small");
    cp(&gw, src.to_str().unwrap(), "s3://demo/after");
    let new_kid = head_key_id(&gw, "after")[1].clone();
    assert!(
        new_kid.starts_with(&kid_prefix) && new_kid != first_kid,
        "{new_kid}"
    );
    for key in ["small", "after"] {
        let back = work.path().join(format!("{key}.rotated"));
        cp(&gw, &format!("s3://demo/{key}"), back.to_str().unwrap());
        assert!(std::fs::read(&back).unwrap() == test_bytes(100_000, 21));
    }
}

/// A disabled vault key: `validate_keys` refuses to start naming it, and a
/// running gateway answers a read it cannot unwrap with the disabled-key
/// error, not a hang or a 500.
#[test]
fn a_disabled_vault_key_is_refused_clearly() {
    let vault = KeyVaultDouble::start();
    let backend = Backend::start(&["demo"]);
    let extra = vault.config(OFF_DOMAIN);
    let gw = start(&backend, &extra).expect("gateway on the vault");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("obj");
    std::fs::write(&src, test_bytes(1000, 3)).unwrap();
    cp(&gw, src.to_str().unwrap(), "s3://demo/obj");
    drop(gw);
    // Started while the key was enabled, with an empty cache.
    let gw = start(&backend, &extra).expect("gateway");
    vault.control("POST", "/_double/disable/sealgate");
    let out = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        &[
            "s3api",
            "get-object",
            "--bucket",
            "demo",
            "--key",
            "obj",
            "/dev/null",
        ],
    );
    assert_s3_error(&out, "KMS.DisabledException");
    let err = start(&backend, &extra)
        .err()
        .expect("a gateway on a disabled key must not start");
    assert!(
        err.contains("vault") && err.contains("sealgate") && err.contains("disabled"),
        "the error names the provider, the key and why: {err}"
    );
}

/// The SDK's challenge check is on by default: a vault whose challenge
/// names another domain's resource gets no token (none is even fetched),
/// and a wrong client secret is refused by the token endpoint; both stop
/// start-up with the reason.
#[test]
fn foreign_challenges_and_bad_secrets_get_no_token() {
    let vault = KeyVaultDouble::start();
    let backend = Backend::start(&["demo"]);
    let err = start(&backend, &vault.config(""))
        .err()
        .expect("a challenge for another domain must be refused");
    assert!(err.contains("challenge resource"), "{err}");
    assert_eq!(vault.count("token"), 0, "no token was fetched for it");
    let wrong = vault
        .config(OFF_DOMAIN)
        .replace(APP_SECRET, "not-the-secret");
    let err = start(&backend, &wrong)
        .err()
        .expect("a wrong client secret must stop start-up");
    assert!(err.contains("vault") && err.contains("token"), "{err}");
    assert!(
        !err.contains("not-the-secret"),
        "the secret is not echoed: {err}"
    );
}
