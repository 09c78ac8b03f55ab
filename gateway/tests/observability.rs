//! What the admin listener tells an operator: every metric family moves
//! with the traffic it describes (docs/METRICS.md).

mod common;

use common::*;

#[test]
fn metrics_follow_an_encrypted_round_trip_and_refusals() {
    let backend = Backend::start(&["demo"]);
    let gw = encrypted_gateway(&backend);
    let work = tempfile::tempdir().unwrap();
    let data = test_bytes(1_000_000, 7);
    let src = work.path().join("f");
    std::fs::write(&src, &data).unwrap();
    cp(&gw.url(), src.to_str().unwrap(), "s3://demo/f");
    let back = work.path().join("back");
    cp(&gw.url(), "s3://demo/f", back.to_str().unwrap());
    assert!(std::fs::read(&back).unwrap() == data);
    // A wrong secret, a reserved key, and SSE-C on an encrypting bucket.
    let bad = aws_as(
        CLIENT_KEY,
        "not-the-secret",
        &gw.url(),
        &["s3", "ls", "s3://demo/"],
    );
    assert!(!bad.status.success());
    let reserved = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        &[
            "s3api",
            "put-object",
            "--bucket",
            "demo",
            "--key",
            ".sealgate/uploads/x",
            "--body",
            src.to_str().unwrap(),
        ],
    );
    assert_s3_error(&reserved, "AccessDenied");
    let sse_c = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        &[
            "s3api",
            "put-object",
            "--bucket",
            "demo",
            "--key",
            "c",
            "--body",
            src.to_str().unwrap(),
            "--sse-customer-algorithm",
            "AES256",
            "--sse-customer-key",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ],
    );
    assert!(!sse_c.status.success());

    let (status, text) = gw.admin_get("/metrics");
    assert_eq!(status, 200);
    let m =
        |sample: &str| metric(&text, sample).unwrap_or_else(|| panic!("{sample} missing:\n{text}"));
    let n = data.len() as f64;
    assert_eq!(m("sealgate_crypto_bytes_total{operation=\"encrypt\"}"), n);
    assert_eq!(m("sealgate_crypto_bytes_total{operation=\"decrypt\"}"), n);
    // Stored bytes are the ciphertext: 16 bytes a 64 KiB frame more.
    let stored = (data.len() + 16 * data.len().div_ceil(65_536)) as f64;
    assert!(m("sealgate_body_bytes_total{direction=\"out\",side=\"upstream\"}") >= stored);
    assert!(m("sealgate_body_bytes_total{direction=\"in\",side=\"upstream\"}") >= stored);
    assert!(m("sealgate_body_bytes_total{direction=\"in\",side=\"client\"}") >= n);
    assert!(m("sealgate_body_bytes_total{direction=\"out\",side=\"client\"}") >= n);
    assert_eq!(
        m("sealgate_authentication_failures_total{code=\"SignatureDoesNotMatch\"}"),
        1.0
    );
    assert_eq!(
        m("sealgate_authorization_refusals_total{reason=\"reserved\"}"),
        1.0
    );
    assert!(
        text.contains("sealgate_policy_refusals_total{code="),
        "{text}"
    );
    assert!(m("sealgate_upstream_connections_total{reused=\"false\"}") >= 1.0);
    assert!(m("sealgate_upstream_response_seconds_count{operation=\"PutObject\"}") >= 1.0);
    // Every download's first byte is timed, before its last.
    let get = |family: &str, stat: &str| {
        m(&format!(
            "sealgate_request_{family}_seconds_{stat}{{operation=\"GetObject\"}}"
        ))
    };
    assert_eq!(get("first_byte", "count"), get("duration", "count"));
    assert!(get("first_byte", "sum") < get("duration", "sum"));
    assert_eq!(
        m("sealgate_requests_total{operation=\"GetObject\",result=\"ok\",status_class=\"2xx\"}"),
        get("duration", "count")
    );
    assert!(m("sealgate_key_provider_call_duration_seconds_count{operation=\"GenerateDataKey\",provider=\"local\"}") >= 1.0);
    assert!(m("sealgate_data_key_cache_entries{cache=\"encrypt\",provider=\"local\"}") >= 1.0);
    assert_eq!(
        m("sealgate_in_flight_requests"),
        0.0,
        "all done (scrapes are not S3 requests)"
    );
    assert!(text.contains("sealgate_build_info{version=\""), "{text}");
}
