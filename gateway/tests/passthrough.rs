//! Authenticated pass-through against a real s3s-fs, driven by real clients.

mod common;

use common::*;

#[test]
fn aws_cli_put_get_list_delete_round_trip() {
    let backend = Backend::start(&["demo"]);
    let gw = Gateway::start(&backend);
    let work = tempfile::tempdir().unwrap();
    // 9 MiB + 7 crosses the cli's 8 MiB multipart threshold; 1 byte and 0 bytes are edge cases.
    for (name, len) in [
        ("empty", 0usize),
        ("one", 1),
        ("odd", 65_537),
        ("multi", 9 * 1024 * 1024 + 7),
    ] {
        let data = test_bytes(len, len as u64 + 1);
        let src = work.path().join(name);
        std::fs::write(&src, &data).unwrap();
        let dst = format!("s3://demo/dir/{name}.bin");
        aws_ok(
            &gw.url(),
            &[
                "s3",
                "cp",
                "--only-show-errors",
                src.to_str().unwrap(),
                &dst,
            ],
        );
        // Pass-through: the backend holds exactly the client's bytes.
        assert_eq!(
            std::fs::read(backend.object_path("demo", &format!("dir/{name}.bin"))).unwrap(),
            data
        );
        let back = work.path().join(format!("{name}.back"));
        aws_ok(
            &gw.url(),
            &[
                "s3",
                "cp",
                "--only-show-errors",
                &dst,
                back.to_str().unwrap(),
            ],
        );
        assert_eq!(std::fs::read(&back).unwrap(), data, "{name} round trip");
    }
    let listing = aws_ok(&gw.url(), &["s3", "ls", "--recursive", "s3://demo/"]);
    assert!(
        listing.contains("dir/multi.bin") && listing.contains(&format!("{}", 9 * 1024 * 1024 + 7))
    );
    let head = aws_ok(
        &gw.url(),
        &[
            "s3api",
            "head-object",
            "--bucket",
            "demo",
            "--key",
            "dir/odd.bin",
        ],
    );
    assert!(head.contains("\"ContentLength\": 65537"), "{head}");
    aws_ok(
        &gw.url(),
        &[
            "s3",
            "rm",
            "--only-show-errors",
            "--recursive",
            "s3://demo/dir/",
        ],
    );
    let listing = aws_ok(&gw.url(), &["s3", "ls", "--recursive", "s3://demo/"]);
    assert!(listing.trim().is_empty(), "{listing}");
    let (status, metrics) = gw.admin_get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains(
        "sealgate_requests_total{operation=\"PutObject\",result=\"ok\",status_class=\"2xx\"}"
    ));
    assert!(
        metrics.contains("operation=\"UploadPart\""),
        "multipart went through"
    );
}

const BOTO3_SCRIPT: &str = include_str!("py/passthrough_boto3_script.py");

#[test]
fn boto3_objects_multipart_copy_presigned_and_batch_delete() {
    let backend = Backend::start(&["demo"]);
    let gw = Gateway::start(&backend);
    assert_eq!(python_ok(BOTO3_SCRIPT, &[&gw.url()]).trim(), "ok");
    assert_eq!(
        std::fs::read(backend.object_path("demo", "odd name/ü &=!$(x).txt")).unwrap(),
        b"hello world"
    );
}

const ERRORS_SCRIPT: &str = include_str!("py/passthrough_errors_script.py");

fn list_as(gw: &Gateway, key: &str, secret: &str, bucket: &str) -> String {
    let mut cmd = std::process::Command::new("python3");
    cmd.env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .arg("-c")
        .arg(ERRORS_SCRIPT)
        .args([&gw.url(), key, secret, bucket]);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn refusals_carry_the_right_s3_error() {
    let backend = Backend::start(&["demo", "team-a"]);
    let gw = Gateway::start(&backend);
    assert_eq!(list_as(&gw, CLIENT_KEY, CLIENT_SECRET, "demo"), "allowed");
    assert_eq!(
        list_as(&gw, CLIENT_KEY, "wrong-secret", "demo"),
        "403 SignatureDoesNotMatch"
    );
    assert_eq!(
        list_as(&gw, "NOSUCHKEY", CLIENT_SECRET, "demo"),
        "403 InvalidAccessKeyId"
    );
    assert_eq!(list_as(&gw, TEAM_KEY, TEAM_SECRET, "team-a"), "allowed");
    assert_eq!(
        list_as(&gw, TEAM_KEY, TEAM_SECRET, "demo"),
        "403 AccessDenied"
    );
    // The team key may not copy out of a bucket it cannot read either.
    aws_ok(
        &gw.url(),
        &[
            "s3api",
            "put-object",
            "--bucket",
            "demo",
            "--key",
            "secret.txt",
        ],
    );
    let out = aws_as(
        TEAM_KEY,
        TEAM_SECRET,
        &gw.url(),
        &[
            "s3api",
            "copy-object",
            "--bucket",
            "team-a",
            "--key",
            "stolen",
            "--copy-source",
            "demo/secret.txt",
        ],
    );
    assert_s3_error(&out, "AccessDenied");
    assert!(!backend.object_path("team-a", "stolen").exists());
    // Anonymous requests are refused with S3 XML.
    let (status, body) = http_get(&format!("127.0.0.1:{}", gw.port), "/demo/secret.txt");
    assert_eq!(status, 403);
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    let (_, metrics) = gw.admin_get("/metrics");
    for code in [
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
    ] {
        assert!(
            metrics.contains(&format!(
                "sealgate_rejected_requests_total{{code=\"{code}\"}}"
            )),
            "{code}"
        );
    }
}

#[test]
fn upstream_sees_the_gateways_credentials_not_the_clients() {
    let backend = Backend::start(&["demo"]);
    let gw = Gateway::start(&backend);
    // The client's key means nothing to the backend...
    let direct = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &backend.url(),
        &["s3api", "list-objects-v2", "--bucket", "demo"],
    );
    assert!(
        !direct.status.success(),
        "the backend must not know the client key"
    );
    // ...yet through the gateway the same client succeeds: the gateway re-signed.
    aws_ok(&gw.url(), &["s3api", "list-objects-v2", "--bucket", "demo"]);
    // And the gateway's key is useless to clients.
    let out = aws_as(
        UPSTREAM_KEY,
        UPSTREAM_SECRET,
        &gw.url(),
        &["s3api", "list-objects-v2", "--bucket", "demo"],
    );
    assert_s3_error(&out, "InvalidAccessKeyId");
}

#[test]
fn bucket_aliases_map_to_real_names() {
    let backend = Backend::start(&["prod-sensitive-data", "other"]);
    let gw = Gateway::start_with(
        &backend,
        &Options {
            s3_extra: "    bucket_configs:\n      sensitive-data:\n        real_name: prod-sensitive-data\n",
            ..Options::default()
        },
    );
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f");
    std::fs::write(&src, b"aliased").unwrap();
    aws_ok(
        &gw.url(),
        &[
            "s3",
            "cp",
            "--only-show-errors",
            src.to_str().unwrap(),
            "s3://sensitive-data/a.txt",
        ],
    );
    assert_eq!(
        std::fs::read(backend.object_path("prod-sensitive-data", "a.txt")).unwrap(),
        b"aliased"
    );
    aws_ok(
        &gw.url(),
        &[
            "s3api",
            "copy-object",
            "--bucket",
            "other",
            "--key",
            "b.txt",
            "--copy-source",
            "sensitive-data/a.txt",
        ],
    );
    assert_eq!(
        std::fs::read(backend.object_path("other", "b.txt")).unwrap(),
        b"aliased"
    );
    let listing = aws_ok(&gw.url(), &["s3", "ls", "s3://sensitive-data/"]);
    assert!(listing.contains("a.txt"));
}

const VHOST_SCRIPT: &str = include_str!("py/passthrough_vhost_script.py");

#[test]
fn virtual_hosted_style_requests_address_the_bucket_in_host() {
    let backend = Backend::start(&["demo"]);
    let gw = Gateway::start(&backend);
    let out = python_ok(
        VHOST_SCRIPT,
        &[&gw.port.to_string(), CLIENT_KEY, CLIENT_SECRET],
    );
    assert!(out.starts_with("200"), "{out}");
    assert_eq!(
        std::fs::read(backend.object_path("demo", "v/key.txt")).unwrap(),
        b"virtual"
    );
}

#[test]
fn https_listener_passes_aws_chunked_crc32_uploads_unchanged() {
    let backend = Backend::start(&["demo"]);
    let certs = tempfile::tempdir().unwrap();
    self_signed_cert(certs.path());
    let gw = Gateway::start_with(
        &backend,
        &Options {
            tls_dir: Some(certs.path()),
            ..Options::default()
        },
    );
    let ca = certs.path().join("cert.pem");
    let work = tempfile::tempdir().unwrap();
    for (name, len) in [
        ("small", 1000usize),
        ("chunky", 3 * 1024 * 1024 + 11),
        ("multi", 9 * 1024 * 1024),
    ] {
        let data = test_bytes(len, 7 + len as u64);
        let src = work.path().join(name);
        std::fs::write(&src, &data).unwrap();
        // Over TLS, botocore sends STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32 trailer.
        aws_ok(
            &gw.tls_url(),
            &[
                "--ca-bundle",
                ca.to_str().unwrap(),
                "s3",
                "cp",
                "--only-show-errors",
                src.to_str().unwrap(),
                &format!("s3://demo/{name}"),
            ],
        );
        assert_eq!(
            std::fs::read(backend.object_path("demo", name)).unwrap(),
            data,
            "{name} stored unchanged"
        );
        let back = work.path().join(format!("{name}.back"));
        aws_ok(
            &gw.tls_url(),
            &[
                "--ca-bundle",
                ca.to_str().unwrap(),
                "s3",
                "cp",
                "--only-show-errors",
                &format!("s3://demo/{name}"),
                back.to_str().unwrap(),
            ],
        );
        assert_eq!(std::fs::read(back).unwrap(), data);
    }
}

#[test]
fn admin_endpoints_answer() {
    let backend = Backend::start(&["demo"]);
    let gw = Gateway::start(&backend);
    assert_eq!(gw.admin_get("/healthz"), (200, "ok\n".to_string()));
    assert_eq!(gw.admin_get("/readyz"), (200, "ready\n".to_string()));
    assert_eq!(gw.admin_get("/nope").0, 404);
    aws_ok(&gw.url(), &["s3api", "list-buckets"]);
    let (_, metrics) = gw.admin_get("/metrics");
    assert!(
        metrics
            .contains("sealgate_requests_total{operation=\"ListBuckets\",result=\"ok\",status_class=\"2xx\"} 1"),
        "{metrics}"
    );
}

#[test]
fn upstream_over_tls_with_a_configured_ca_bundle() {
    let certs = tempfile::tempdir().unwrap();
    self_signed_cert(certs.path());
    let moto = Moto::start_tls(certs.path());
    let ca = certs.path().join("cert.pem");
    let gw = Gateway::start_with(
        &moto,
        &Options {
            s3_extra: &format!("    ca_bundle: {}\n", ca.display()),
            ..Options::default()
        },
    );
    // The gateway verifies the backend's certificate against the bundle (SNI localhost).
    aws_ok(&gw.url(), &["s3api", "create-bucket", "--bucket", "tls"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f");
    std::fs::write(&src, test_bytes(100_000, 3)).unwrap();
    aws_ok(
        &gw.url(),
        &[
            "s3",
            "cp",
            "--only-show-errors",
            src.to_str().unwrap(),
            "s3://tls/f",
        ],
    );
    let back = work.path().join("b");
    aws_ok(
        &gw.url(),
        &[
            "s3",
            "cp",
            "--only-show-errors",
            "s3://tls/f",
            back.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(back).unwrap(), test_bytes(100_000, 3));
}

#[test]
fn upstream_tls_with_an_untrusted_certificate_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    self_signed_cert(certs.path());
    let moto = Moto::start_tls(certs.path());
    // No ca_bundle: the self-signed backend is not trusted, nothing is sent.
    let gw = Gateway::start(&moto);
    let out = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        &["s3api", "list-buckets"],
    );
    assert_s3_error(&out, "ServiceUnavailable");
}

/// ListBuckets shows a client only the buckets its patterns name, not every
/// bucket of the gateway's upstream account.
#[test]
fn list_buckets_shows_only_the_clients_buckets() {
    let backend = Backend::start(&["demo", "team-a", "team-b"]);
    let gw = Gateway::start(&backend);
    let names = |key: &str, secret: &str| {
        let mut v = listed_buckets(key, secret, &gw.url());
        v.sort();
        v
    };
    assert_eq!(names(TEAM_KEY, TEAM_SECRET), ["team-a", "team-b"]);
    assert_eq!(
        names(CLIENT_KEY, CLIENT_SECRET),
        ["demo", "team-a", "team-b"]
    );
}

/// Metadata a client sends as UTF-8 (Go, Java and curl clients do) is
/// signed upstream as sent and stored: on every backend, including the
/// ones that refuse an `x-amz-*` header left out of the signature.
#[test]
fn utf8_metadata_is_signed_upstream_and_stored() {
    for backend in every_backend(&["demo"]) {
        let gw = Gateway::start(backend.as_ref());
        let port = gw.port;
        let put = common::raw::signed_request(
            port,
            "PUT",
            "/demo/city",
            &[("x-amz-meta-city", "Zürich")],
            b"hello",
        );
        assert_eq!(
            put.status,
            200,
            "{}: {}",
            backend.name(),
            String::from_utf8_lossy(&put.body)
        );
        let head = common::raw::signed_request(port, "HEAD", "/demo/city", &[], b"");
        assert_eq!(head.status, 200, "{}", backend.name());
        // Returned as sent, or RFC 2047-encoded as AWS S3 returns
        // non-ASCII metadata.
        let city = head.header("x-amz-meta-city");
        assert!(
            matches!(city, Some("Zürich" | "=?UTF-8?B?WsO8cmljaA==?=")),
            "{}: {city:?}",
            backend.name()
        );
    }
}
