//! Loader tests: the original design's examples, every kind of problem, env overrides.

use super::*;
use std::collections::HashMap;
use std::time::Duration;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(yaml: &str) -> Result<Loaded, Problems> {
    load_str(yaml, &no_env)
}

fn load_env(yaml: &str, vars: &[(&str, &str)]) -> Result<Loaded, Problems> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_str(yaml, &move |k: &str| map.get(k).cloned())
}

fn problems(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(_) => panic!("expected problems"),
        Err(p) => p.0.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn empty_file_gives_defaults() {
    let c = load("").unwrap().config;
    assert_eq!(c.server.listen, Some("0.0.0.0:8080".parse().unwrap()));
    assert_eq!(
        c.upstream.endpoint.url(),
        "https://s3.us-east-1.amazonaws.com"
    );
    assert_eq!(c.upstream.addressing_style, AddressingStyle::Path);
    assert!(matches!(
        c.upstream.credentials,
        UpstreamCredentials::DefaultChain
    ));
    assert!(c.encryption.default_provider.is_none());
    assert_eq!(c.auth.max_clock_skew, Duration::from_secs(900));
    assert_eq!(c.server.request_header_timeout, Duration::from_secs(20));
}

#[test]
fn load_caps_and_log_buffers_are_positive_and_bounded() {
    let c = load("").unwrap().config;
    assert_eq!(c.server.max_in_flight, 512);
    assert_eq!(c.logging.buffer_lines, 8_192);
    assert!(c.server.reload_on_change);
    assert!(c.secret_files.is_empty());
    let c = load("server: {max_in_flight: 64}\nlogging: {buffer_lines: 16}")
        .unwrap()
        .config;
    assert_eq!((c.server.max_in_flight, c.logging.buffer_lines), (64, 16));
    for (yaml, path, says) in [
        (
            "server: {max_in_flight: 0}",
            "server.max_in_flight",
            "positive",
        ),
        (
            "logging: {buffer_lines: 0}",
            "logging.buffer_lines",
            "positive",
        ),
        (
            "logging: {buffer_lines: 65537}",
            "logging.buffer_lines",
            "at most 65536",
        ),
    ] {
        let p = problems(yaml);
        assert!(
            p.iter().any(|p| p.contains(path) && p.contains(says)),
            "{yaml}: {p:?}"
        );
    }
}

#[test]
fn client_rate_limits_default_their_burst_and_refuse_nonsense() {
    let yaml = |limit: &str| {
        format!(
            "auth:\n  clients:\n    - access_key_id: K\n      secret_access_key_env: S\n      buckets: [\"*\"]\n{limit}"
        )
    };
    let load_ok = |y: &str| {
        load_env(y, &[("S", "a-secret-of-some-length")])
            .unwrap()
            .config
    };
    assert_eq!(load_ok(&yaml("")).auth.clients[0].rate_limit, None);
    assert_eq!(
        load_ok(&yaml("      rate_limit: {requests_per_second: 50}\n"))
            .auth
            .clients[0]
            .rate_limit,
        Some(RateLimit {
            per_second: 50,
            burst: 50
        })
    );
    assert_eq!(
        load_ok(&yaml(
            "      rate_limit: {requests_per_second: 5, burst: 20}\n"
        ))
        .auth
        .clients[0]
            .rate_limit,
        Some(RateLimit {
            per_second: 5,
            burst: 20
        })
    );
    for (limit, says) in [
        (
            "      rate_limit: {requests_per_second: 0}\n",
            "requests_per_second: 0 is not between",
        ),
        (
            "      rate_limit: {burst: 5}\n",
            "requests_per_second: missing",
        ),
        (
            "      rate_limit: {requests_per_second: 5, burst: 0}\n",
            "burst: 0 is not between",
        ),
        (
            "      rate_limit: {requests_per_second: 5, per_minute: 9}\n",
            "per_minute",
        ),
    ] {
        let p = match load_env(&yaml(limit), &[("S", "a-secret-of-some-length")]) {
            Ok(_) => panic!("{limit} accepted"),
            Err(p) => p.to_string(),
        };
        assert!(p.contains(says), "{limit}: {p}");
    }
}

#[test]
fn request_header_timeout_is_at_least_a_second() {
    let c = load("server: {request_header_timeout: 5s}").unwrap().config;
    assert_eq!(c.server.request_header_timeout, Duration::from_secs(5));
    let p = problems("server: {request_header_timeout: 0s}");
    assert!(
        p.iter()
            .any(|p| p.contains("server.request_header_timeout") && p.contains("at least 1s")),
        "{p:?}"
    );
}

#[test]
fn legacy_kms_block_becomes_the_default_provider() {
    let c = load(
        r#"
encryption:
  kms:
    enabled: true
    default_key_id: "arn:aws:kms:us-east-1:123456789012:key/12345678"
    key_spec: "AES_256"
    region: "us-east-1"
    encryption_context:
      application: "s3proxy"
      environment: production
    data_key_cache_ttl: "5m"
    validate_keys: true
    enable_key_rotation: false
"#,
    )
    .unwrap()
    .config;
    assert_eq!(c.encryption.default_provider.as_deref(), Some("aws-kms"));
    let ProviderKind::AwsKms(k) = &c.encryption.providers["aws-kms"].kind else {
        panic!("not kms")
    };
    assert_eq!(
        k.default_key_id,
        "arn:aws:kms:us-east-1:123456789012:key/12345678"
    );
    assert_eq!(k.encryption_context["environment"], "production");
    assert_eq!(k.data_key_cache_ttl, Duration::from_secs(300));
    assert!(k.validate_keys);
}

#[test]
fn named_providers_and_policies() {
    let c = load(
        r#"
encryption:
  key_provider: prod-kms
  key_providers:
    prod-kms:
      type: aws-kms
      config:
        default_key_id: "alias/production-key"
        region: "us-east-1"
    test-local:
      type: local
      config:
        master_key: "dGVzdGtleQ=="
  policies:
    - bucket_pattern: "prod-*"
      key_provider: prod-kms
      mandatory: true
    - bucket_pattern: "dev-*"
      key_provider: test-local
      mandatory: false
"#,
    )
    .unwrap()
    .config;
    assert_eq!(c.encryption.default_provider.as_deref(), Some("prod-kms"));
    assert_eq!(c.policy_for("prod-data").unwrap().key_provider, "prod-kms");
    assert!(!c.policy_for("dev-x").unwrap().mandatory);
    assert!(c.policy_for("other").is_none());
}

#[test]
fn reports_every_problem_with_its_path() {
    let p = problems(
        r#"
server:
  listen: "nonsense"
  lisen: "x"
storage:
  s3:
    endpoint: "ftp://x"
    addressing_style: sideways
    stored_checksum: md5
encryption:
  key_provider: prod-kmss
  key_providers:
    prod-kms:
      type: aws-kms
      config:
        regoin: us-east-1
  policies:
    - bucket_pattern: "Prod-*"
      key_provider: nowhere
logging:
  level: loud
"#,
    );
    let all = p.join("\n");
    for needle in [
        "server.listen: `nonsense` is not an address",
        "server.lisen: unknown key (hint: did you mean `listen`?)",
        "storage.s3.endpoint: `ftp://x` must start with http:// or https://",
        "storage.s3.addressing_style: `sideways` is not an addressing style",
        "storage.s3.stored_checksum: `md5` is not a stored checksum",
        "encryption.key_providers.prod-kms.config.regoin: unknown key (hint: did you mean `region`?)",
        "encryption.key_providers.prod-kms.config.default_key_id: missing",
        "encryption.key_provider: unknown key provider `prod-kmss`",
        "encryption.policies[0].bucket_pattern:",
        "encryption.policies[0].key_provider: unknown key provider `nowhere`",
        "logging.level: `loud` is not a log level",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn unknown_top_level_key_suggests() {
    let p = problems("encription: {}\n");
    assert_eq!(
        p,
        vec!["encription: unknown key (hint: did you mean `encryption`?)"]
    );
}

#[test]
fn bad_yaml_names_the_line() {
    let p = problems("server:\n  listen: [\n");
    assert!(p[0].starts_with("line "), "{p:?}");
}

#[test]
fn custom_master_key_must_be_32_bytes() {
    let p = problems("encryption:\n  custom:\n    master_key: \"dGVzdGtleQ==\"\n");
    assert!(
        p[0].contains("encryption.custom.master_key: decodes to 7 bytes"),
        "{p:?}"
    );
    let ok = load("encryption:\n  custom:\n    master_key: \"YmFzZTY0ZW5jb2RlZDMyYnl0ZW1hc3RlcmtleWhlcmU=\"\n").unwrap();
    assert_eq!(
        ok.config.encryption.default_provider.as_deref(),
        Some("custom")
    );
}

/// The two overrides no other test sets, and `logging.level`.
#[test]
fn key_spec_rotation_overrides_and_log_levels_take_effect() {
    let kms = "encryption:\n  kms:\n    enabled: true\n    default_key_id: alias/a\n";
    let c = load_env(
        kms,
        &[
            ("KMS_KEY_SPEC", "AES_256"),
            ("KMS_ENABLE_KEY_ROTATION", "yes"),
        ],
    )
    .unwrap()
    .config;
    let ProviderKind::AwsKms(k) = &c.encryption.providers["aws-kms"].kind else {
        panic!()
    };
    assert_eq!(k.key_spec, KeySpec::Aes256);
    assert!(k.enable_key_rotation);
    let off = load_env(kms, &[("KMS_ENABLE_KEY_ROTATION", "0")])
        .unwrap()
        .config;
    let ProviderKind::AwsKms(k) = &off.encryption.providers["aws-kms"].kind else {
        panic!()
    };
    assert!(!k.enable_key_rotation);
    let p = load_env(kms, &[("KMS_KEY_SPEC", "RSA_2048")])
        .unwrap_err()
        .to_string();
    assert!(p.contains("key_spec (from env KMS_KEY_SPEC)"), "{p}");
    for (text, level) in [
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("warning", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("trace", LogLevel::Trace),
    ] {
        let c = load(&format!("logging:\n  level: {text}\n"))
            .unwrap()
            .config;
        assert_eq!(c.logging.level, level, "{text}");
    }
    assert_eq!(load("").unwrap().config.logging.level, LogLevel::Info);
    let p = problems("logging:\n  level: loud\n").join("\n");
    assert!(
        p.contains("logging.level: `loud` is not a log level"),
        "{p}"
    );
}

#[test]
fn env_overrides_apply_and_are_blamed() {
    let c = load_env(
        "encryption:\n  kms:\n    default_key_id: alias/a\n",
        &[
            ("KMS_DEFAULT_KEY_ID", "alias/b"),
            ("KMS_REGION", "eu-west-1"),
            ("KMS_VALIDATE_KEYS", "1"),
        ],
    )
    .unwrap()
    .config;
    let ProviderKind::AwsKms(k) = &c.encryption.providers["aws-kms"].kind else {
        panic!()
    };
    assert_eq!(k.default_key_id, "alias/b");
    assert_eq!(k.region.as_deref(), Some("eu-west-1"));
    assert!(k.validate_keys);

    let err = load_env(
        "",
        &[
            ("KMS_ENABLED", "true"),
            ("KMS_DATA_KEY_CACHE_TTL", "5 minutes"),
        ],
    )
    .unwrap_err();
    let all = err.to_string();
    assert!(
        all.contains("encryption.kms.default_key_id: missing"),
        "{all}"
    );
    assert!(
        all.contains("encryption.kms.data_key_cache_ttl (from env KMS_DATA_KEY_CACHE_TTL)"),
        "{all}"
    );
    let err = load_env("", &[("KMS_ENABLED", "maybe")]).unwrap_err();
    assert!(err
        .to_string()
        .contains("env KMS_ENABLED: `maybe` is not a boolean"));
}

#[test]
fn kms_enabled_false_disables_the_block() {
    let c = load_env(
        "encryption:\n  kms:\n    default_key_id: alias/a\n",
        &[("KMS_ENABLED", "false")],
    )
    .unwrap()
    .config;
    assert!(c.encryption.providers.is_empty());
    assert!(c.encryption.default_provider.is_none());
}

#[test]
fn client_secrets_from_env_and_file_never_printed() {
    let dir = std::env::temp_dir().join(format!("sealgate-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, "file-secret-value\n").unwrap();
    let yaml = format!(
        r#"
auth:
  clients:
    - access_key_id: AKENV
      secret_access_key_env: CLIENT_SECRET
      buckets: ["*"]
    - access_key_id: AKFILE
      secret_access_key_file: "{}"
      buckets: ["logs-*", "data"]
"#,
        file.display()
    );
    let c = load_env(&yaml, &[("CLIENT_SECRET", "env-secret-value")])
        .unwrap()
        .config;
    assert_eq!(
        c.auth.clients[0].secret_access_key.expose(),
        b"env-secret-value"
    );
    assert_eq!(
        c.auth.clients[1].secret_access_key.expose(),
        b"file-secret-value"
    );
    assert!(c.auth.clients[1].buckets[0].pattern.matches("logs-2024"));
    assert_eq!(c.auth.clients[1].buckets[0].permissions, Permissions::DATA);
    assert!(!format!("{c:?}").contains("secret-value"));

    let err = load(&yaml).unwrap_err().to_string();
    assert!(err.contains(
        "auth.clients[0].secret_access_key_env: environment variable `CLIENT_SECRET` is not set"
    ));
    assert!(!err.contains("secret-value"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn client_entries_need_buckets_and_unique_ids() {
    let p = problems(
        "auth:\n  clients:\n    - access_key_id: A\n      secret_access_key: s\n    - access_key_id: A\n      secret_access_key: s\n      buckets: ['*']\n",
    )
    .join("\n");
    assert!(p.contains("auth.clients[0].buckets: missing"), "{p}");
    assert!(
        p.contains("auth.clients[1].access_key_id: `A` is listed twice"),
        "{p}"
    );
}

#[test]
fn previous_master_keys_are_read_like_the_master_key() {
    let c = load_env(
        r#"
encryption:
  custom:
    master_key_env: NEW_KEY
    previous_master_keys:
      - key_env: OLD_KEY
      - key: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
"#,
        &[
            ("NEW_KEY", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="),
            ("OLD_KEY", "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="),
        ],
    )
    .unwrap()
    .config;
    let ProviderKind::Custom(k) = &c.encryption.providers["custom"].kind else {
        panic!("a custom provider");
    };
    assert_eq!(k.master_key.expose(), &[2; 32]);
    let previous: Vec<&[u8]> = k.previous_master_keys.iter().map(|s| s.expose()).collect();
    assert_eq!(previous, [&[3u8; 32][..], &[1u8; 32][..]]);
    let p = problems(
        "encryption:\n  custom:\n    master_key: AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n    previous_master_keys:\n      - key: c2hvcnQ=\n      - {}\n",
    )
    .join("\n");
    assert!(
        p.contains("encryption.custom.previous_master_keys[0].key: decodes to 5 bytes"),
        "{p}"
    );
    assert!(
        p.contains("encryption.custom.previous_master_keys[1].key: missing"),
        "{p}"
    );
}

#[test]
fn bucket_grants_name_their_permissions() {
    let c = load(
        r#"
auth:
  clients:
    - access_key_id: A
      secret_access_key: s
      buckets:
        - "data-*"
        - pattern: "logs-*"
          permissions: [read]
        - pattern: "ops"
          permissions: [read, write, delete, admin]
"#,
    )
    .unwrap()
    .config;
    let g = &c.auth.clients[0].buckets;
    assert_eq!(g[0].permissions, Permissions::DATA);
    assert_eq!(g[1].permissions, Permissions::NONE.with(Permission::Read));
    assert_eq!(g[2].permissions, Permission::ALL.into_iter().collect());
    assert_eq!(
        Permissions::DATA,
        [Permission::Read, Permission::Write, Permission::Delete]
            .into_iter()
            .collect()
    );

    let p = problems(
        r#"
auth:
  clients:
    - access_key_id: A
      secret_access_key: s
      buckets:
        - pattern: "logs-*"
          permissions: [read, wrte]
        - pattern: "x"
          permissions: []
        - permissions: [read]
        - pattern: "Bad/"
          permissions: [read]
        - pattern: "y*"
          permisions: [read]
"#,
    )
    .join("\n");
    assert!(
        p.contains("auth.clients[0].buckets[0].permissions[1]: unknown permission `wrte`")
            && p.contains("read, write, delete, admin"),
        "{p}"
    );
    assert!(
        p.contains("auth.clients[0].buckets[1].permissions: empty"),
        "{p}"
    );
    assert!(
        p.contains("auth.clients[0].buckets[2].pattern: missing"),
        "{p}"
    );
    assert!(p.contains("auth.clients[0].buckets[3].pattern: `B`"), "{p}");
    assert!(p.contains("auth.clients[0].buckets[4].permisions"), "{p}");
}

#[test]
fn an_upstream_bucket_has_one_name_and_one_set_of_rules() {
    let p = problems(
        r#"
storage:
  s3:
    bucket_configs:
      one:
        real_name: shared
      two:
        real_name: shared
      three:
        real_name: one
      four:
        real_name_addressable: true
"#,
    )
    .join("\n");
    assert!(
        p.contains("bucket_configs.two.real_name: `shared` is also the real_name of `one`"),
        "{p}"
    );
    assert!(
        p.contains("bucket_configs.three.real_name: `one` is itself an alias"),
        "{p}"
    );
    assert!(
        p.contains("bucket_configs.four.real_name_addressable: set without real_name"),
        "{p}"
    );
    let c = load(
        r#"
storage:
  s3:
    bucket_configs:
      open:
        real_name: open-upstream
        real_name_addressable: true
      taken:
        real_name: elsewhere
"#,
    )
    .unwrap()
    .config;
    // Addressable real names follow the alias's rules.
    let b = c.resolve_bucket("open-upstream").unwrap();
    assert_eq!(
        (b.name.as_str(), b.real.as_str()),
        ("open", "open-upstream")
    );
    // An upstream bucket named like an alias that points elsewhere is not
    // listed: its name would reach the other bucket.
    assert_eq!(c.visible_name("taken"), None);
    assert_eq!(c.visible_name("elsewhere"), Some("taken"));
}

#[test]
fn bucket_configs_map_aliases() {
    let c = load(
        r#"
storage:
  s3:
    bucket_configs:
      sensitive-data:
        real_name: "prod-sensitive-data"
        region: "us-east-1"
        kms_key_id: "alias/sensitive-data-key"
        kms_encryption_context:
          bucket: "sensitive-data"
          classification: "confidential"
"#,
    )
    .unwrap()
    .config;
    let real = |typed: &str| c.resolve_bucket(typed).map(|b| (b.name, b.real));
    assert_eq!(
        real("sensitive-data"),
        Some(("sensitive-data".into(), "prod-sensitive-data".into()))
    );
    assert_eq!(real("other"), Some(("other".into(), "other".into())));
    // The real name of an alias is not a second way in.
    assert_eq!(real("prod-sensitive-data"), None);
    assert_eq!(
        c.visible_name("prod-sensitive-data"),
        Some("sensitive-data")
    );
    assert_eq!(c.visible_name("other"), Some("other"));
    assert_eq!(
        c.buckets["sensitive-data"].kms_encryption_context["classification"],
        "confidential"
    );
    let p =
        problems("storage:\n  s3:\n    bucket_configs:\n      Bad_Name:\n        real_name: x\n")
            .join("\n");
    assert!(
        p.contains("storage.s3.bucket_configs.Bad_Name: `Bad_Name` is not a valid bucket name"),
        "{p}"
    );
    assert!(
        p.contains("storage.s3.bucket_configs.Bad_Name.real_name: `x` is not a valid bucket name"),
        "{p}"
    );
}

#[test]
fn endpoints_parse() {
    let e = parse_endpoint("http://127.0.0.1:9000/").unwrap();
    assert_eq!((e.tls, e.host.as_str(), e.port), (false, "127.0.0.1", 9000));
    assert_eq!(e.authority(), "127.0.0.1:9000");
    let e = parse_endpoint("https://s3.amazonaws.com").unwrap();
    assert_eq!((e.port, e.authority().as_str()), (443, "s3.amazonaws.com"));
    let e = parse_endpoint("http://[::1]:9000").unwrap();
    assert_eq!(e.host, "[::1]");
    assert!(parse_endpoint("http://h/path").is_err());
    assert!(parse_endpoint("http://h:99999").is_err());
}

#[test]
fn upstream_static_credentials_and_conflicts() {
    let c = load_env(
        "storage:\n  s3:\n    endpoint: http://127.0.0.1:9000\n    credentials:\n      access_key_id: UP\n      secret_access_key_env: UPSECRET\n",
        &[("UPSECRET", "s")],
    )
    .unwrap()
    .config;
    assert!(
        matches!(c.upstream.credentials, UpstreamCredentials::Static { ref access_key_id, .. } if access_key_id == "UP")
    );
    let p = problems(
        "storage:\n  s3:\n    credentials:\n      access_key_id: UP\n      secret_access_key: a\n      secret_access_key_env: B\n",
    )
    .join("\n");
    assert!(p.contains("given more than one way"), "{p}");
}

#[test]
fn default_provider_rules() {
    // Several single-provider blocks: which one is the default must be said.
    let p = problems(
        "encryption:\n  local:\n    master_key: dGVzdA==\n  custom:\n    master_key: YmFzZTY0ZW5jb2RlZDMyYnl0ZW1hc3RlcmtleWhlcmU=\n",
    )
    .join("\n");
    assert!(p.contains("encryption.key_provider: missing"), "{p}");
    // Named providers only: no default; policies decide.
    let c = load(
        "encryption:\n  key_providers:\n    a:\n      type: local\n      config: {master_key: dGVzdA==}\n  policies:\n    - bucket_pattern: secure\n      key_provider: a\n",
    )
    .unwrap()
    .config;
    assert!(c.encryption.default_provider.is_none());
    assert_eq!(c.policy_for("secure").unwrap().key_provider, "a");
    let p = problems("encryption:\n  key_providers:\n    a:\n      type: aws-kmz\n").join("\n");
    assert!(p.contains("did you mean `aws-kms`"), "{p}");
}

/// `bucket_configs.<b>.kms_key_id` means something only to an aws-kms
/// provider: with another it would be ignored, so check-config says so.
#[test]
fn a_bucket_kms_key_under_another_provider_is_reported() {
    let yaml = |provider: &str| {
        format!(
            "storage:\n  s3:\n    credentials: {{access_key_id: UP, secret_access_key: s}}\n    bucket_configs:\n      vault: {{kms_key_id: alias/vault}}\nencryption:\n{provider}"
        )
    };
    let local = load(&yaml("  local:\n    master_key: dGVzdA==\n")).unwrap();
    let ignored = |l: &Loaded| {
        l.warnings.iter().any(|w| {
            w.path.contains("bucket_configs.vault.kms_key_id") && w.message.contains("not aws-kms")
        })
    };
    assert!(ignored(&local), "{:?}", local.warnings);
    let kms = load(&yaml(
        "  kms:\n    enabled: true\n    default_key_id: alias/app\n",
    ))
    .unwrap();
    assert!(!ignored(&kms), "{:?}", kms.warnings);
}

#[test]
fn warnings_do_not_fail() {
    let l = load("encryption:\n  local:\n    master_key: dGVzdA==\n").unwrap();
    assert!(l.warnings.iter().any(|w| w.message.contains("local")));
    assert!(l.warnings.iter().any(|w| w.path == "auth.clients"));
}

/// A bucket's endpoint, region, credentials, addressing style or stored
/// checksum give it a backend of its own, the rest taken from
/// `storage.s3`; a region alone on AWS moves it to that region's endpoint.
#[test]
fn buckets_on_backends_of_their_own() {
    let c = load_env(
        "storage:\n  s3:\n    read_timeout: 7s\n    credentials: {access_key_id: UP, secret_access_key: s}\n    bucket_configs:\n      here: {kms_key_id: k}\n      same-region: {region: us-east-1}\n      ireland: {region: eu-west-1}\n      ceph:\n        endpoint: http://127.0.0.1:7480\n        region: default\n        stored_checksum: none\n        addressing_style: path\n        credentials: {access_key_id: CEPH, secret_access_key_env: CEPHSECRET}\n",
        &[("CEPHSECRET", "c")],
    )
    .unwrap()
    .config;
    assert!(c.buckets["here"].backend.is_none());
    assert!(c.buckets["same-region"].backend.is_none());
    let ireland = c.buckets["ireland"].backend.as_ref().unwrap();
    assert_eq!(ireland.endpoint.url(), "https://s3.eu-west-1.amazonaws.com");
    assert_eq!(ireland.region, "eu-west-1");
    assert_eq!(ireland.read_timeout, Duration::from_secs(7));
    assert!(
        matches!(ireland.credentials, UpstreamCredentials::Static { ref access_key_id, .. } if access_key_id == "UP")
    );
    let ceph = c.buckets["ceph"].backend.as_ref().unwrap();
    assert_eq!(ceph.endpoint.url(), "http://127.0.0.1:7480");
    assert_eq!(ceph.region, "default");
    assert_eq!(ceph.stored_checksum, StoredChecksum::None);
    assert!(
        matches!(ceph.credentials, UpstreamCredentials::Static { ref access_key_id, .. } if access_key_id == "CEPH")
    );
    // Behind a non-AWS endpoint a region only changes the signing.
    let c = load(
        "storage:\n  s3:\n    endpoint: http://127.0.0.1:9000\n    bucket_configs:\n      bbb: {region: garage}\n",
    )
    .unwrap()
    .config;
    let b = c.buckets["bbb"].backend.as_ref().unwrap();
    assert_eq!(b.endpoint.url(), "http://127.0.0.1:9000");
    assert_eq!(b.region, "garage");
    // Behind storage.s3's regional AWS endpoint, a region moves the
    // bucket to its own.
    let c = load(
        "storage:\n  s3:\n    endpoint: https://s3.us-east-1.amazonaws.com\n    bucket_configs:\n      bbb: {region: eu-west-1}\n",
    )
    .unwrap()
    .config;
    let b = c.buckets["bbb"].backend.as_ref().unwrap();
    assert_eq!(b.endpoint.url(), "https://s3.eu-west-1.amazonaws.com");
    // Another endpoint never gets storage.s3's credentials by default.
    let p = problems(
        "storage:\n  s3:\n    credentials: {access_key_id: UP, secret_access_key: s}\n    bucket_configs:\n      bbb: {endpoint: \"http://127.0.0.1:7480\"}\n",
    )
    .join("\n");
    assert!(
        p.contains("storage.s3.bucket_configs.bbb.credentials: missing"),
        "{p}"
    );
    let p = problems(
        "storage:\n  s3:\n    bucket_configs:\n      bbb: {endpoint: \"ftp://x\", credentials: {source: chain}, stored_checksum: md5, addressing_style: up}\n",
    )
    .join("\n");
    for needle in [
        "storage.s3.bucket_configs.bbb.endpoint",
        "storage.s3.bucket_configs.bbb.stored_checksum",
        "storage.s3.bucket_configs.bbb.addressing_style",
    ] {
        assert!(p.contains(needle), "{needle}: {p}");
    }
}
