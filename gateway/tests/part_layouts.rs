//! What finding a multipart object's part layout may cost the backend,
//! counted by the backend's side of the wire: a relay between the gateway
//! and s3s-fs notes every request line. Part headers are not
//! authenticated, so an object planted at the storage level could ask for
//! one read per part it claims (up to 10,000) before being refused. Now an
//! object of another bucket is refused on its first probe's envelope, a
//! multipart ETag's part count ends a walk at that part, and a layout is
//! found once per object version whatever else a query holds.

mod common;

use common::raw::{signed_request, RawResponse};
use common::relay::Relay;
use common::*;
use sealgate_envelope::multipart::{stored_part_len, PartHeader};

/// Most backend requests a refused read of a planted object may cost (the
/// issue's bound: the probe of its first bytes, and one more).
const MOST_FOR_A_REFUSAL: usize = 2;

/// Parts the planted objects' headers claim.
const CLAIMED_PARTS: usize = 1_000;

/// A stored body of part headers only, one per size in `sizes`, each
/// where the previous part ends (the frames left as zeros: a layout walk
/// reads headers only, and nothing here is ever decrypted).
fn part_headers(sizes: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let header = PartHeader {
            salt: [7; 32],
            size,
            number: i as u32 + 1,
        };
        let start = out.len();
        out.extend_from_slice(&header.encode());
        out.resize(start + stored_part_len(size) as usize, 0);
    }
    out
}

/// An aws cli config that uploads in 5 MiB parts from 5 MiB up.
fn five_mib_parts(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("aws-config");
    std::fs::write(
        &config,
        "[default]\ns3 =\n    multipart_threshold = 5MB\n    multipart_chunksize = 5MB\n",
    )
    .unwrap();
    config
}

/// Uploads `data` through `gw` to `s3://{to}` in 5 MiB parts.
fn upload_in_parts(gw: &Gateway, dir: &std::path::Path, data: &[u8], to: &str) {
    let src = dir.join("upload");
    std::fs::write(&src, data).unwrap();
    let out = aws_with_config(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        Some(&five_mib_parts(dir)),
        &[
            "s3",
            "cp",
            "--only-show-errors",
            src.to_str().unwrap(),
            &format!("s3://{to}"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
}

/// Runs the aws cli at the backend itself, as the gateway's upstream
/// identity (what a storage-level planter has), past the relay.
fn at_backend(backend: &Backend, args: &[&str]) -> String {
    let out = aws_as(UPSTREAM_KEY, UPSTREAM_SECRET, &backend.url(), args);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_refused(r: &RawResponse, what: &str) {
    assert_eq!(
        r.status,
        403,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    if !r.body.is_empty() {
        assert_eq!(r.error_code().as_deref(), Some("AccessDenied"), "{what}");
    }
}

/// The finding: a ranged GET, a part read or a copy of an object planted
/// from another bucket read its part headers (one request per part it
/// claims) before the envelope's binding refused it. Here the envelope of
/// one of alpha's objects is planted in beta with a body of 1,000 part
/// headers and an ETag that states no part count: every read path refuses
/// it with AccessDenied after at most 2 backend requests for it.
#[test]
fn planted_objects_are_refused_before_their_parts_are_read() {
    let backend = Backend::start(&["alpha", "beta"]);
    let writer = encrypted_gateway(&backend);
    let relay = Relay::start(&backend);
    let gw = encrypted_gateway(&relay);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::write(&src, b"alpha's secret").unwrap();
    cp(&writer.url(), src.to_str().unwrap(), "s3://alpha/src");

    // alpha's envelope, marked multipart, over 1,000 part headers that no
    // regular layout fits (so that a walk would read all of them).
    let meta = at_backend(
        &backend,
        &[
            "s3api",
            "head-object",
            "--bucket",
            "alpha",
            "--key",
            "src",
            "--query",
            "Metadata",
            "--output",
            "json",
        ],
    );
    assert!(meta.contains("sealgate-salt") && !meta.contains("sealgate-layout"));
    let meta = format!(
        "{{\"sealgate-layout\": \"multipart\", {}",
        meta.trim().strip_prefix('{').unwrap()
    );
    let mut sizes = vec![0u64; CLAIMED_PARTS];
    sizes[0] = 1;
    let planted = work.path().join("planted");
    std::fs::write(&planted, part_headers(&sizes)).unwrap();
    at_backend(
        &backend,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "beta",
            "--key",
            "obj",
            "--body",
            planted.to_str().unwrap(),
            "--metadata",
            &meta,
        ],
    );

    let cost = |what: &str| {
        let requests = relay.take("/beta/obj");
        assert!(
            (1..=MOST_FOR_A_REFUSAL).contains(&requests.len()),
            "{what}: {} backend requests for the planted object, the first: {:?}",
            requests.len(),
            &requests[..requests.len().min(3)]
        );
    };
    relay.take("/beta/obj");
    let port = gw.port;
    for (what, method, path, extra) in [
        ("GET", "GET", "/beta/obj", vec![]),
        (
            "ranged GET",
            "GET",
            "/beta/obj",
            vec![("range", "bytes=0-99")],
        ),
        (
            "ranged HEAD",
            "HEAD",
            "/beta/obj",
            vec![("range", "bytes=0-99")],
        ),
        ("part read", "GET", "/beta/obj?partNumber=2", vec![]),
        (
            "CopyObject",
            "PUT",
            "/alpha/copy",
            vec![("x-amz-copy-source", "/beta/obj")],
        ),
    ] {
        let r = signed_request(port, method, path, &extra, b"");
        assert_refused(&r, what);
        cost(what);
    }
    assert!(!backend.has("alpha", "copy"));

    // UploadPartCopy reads its source as a GET would.
    let upload = aws_ok(
        &gw.url(),
        &[
            "s3api",
            "create-multipart-upload",
            "--bucket",
            "alpha",
            "--key",
            "dst",
            "--query",
            "UploadId",
            "--output",
            "text",
        ],
    );
    relay.take("/beta/obj");
    let copied = aws_as(
        CLIENT_KEY,
        CLIENT_SECRET,
        &gw.url(),
        &[
            "s3api",
            "upload-part-copy",
            "--bucket",
            "alpha",
            "--key",
            "dst",
            "--upload-id",
            upload.trim(),
            "--part-number",
            "1",
            "--copy-source",
            "beta/obj",
        ],
    );
    assert_s3_error(&copied, "AccessDenied");
    cost("UploadPartCopy");
}

/// An object of the reader's own bucket whose part headers claim 1,000
/// parts while its multipart ETag says 2 (the stored bytes replaced at the
/// storage level): the walk ends at the second header, an integrity
/// failure (500, never plaintext) after the probe and at most 2 header
/// reads, instead of a read per claimed part.
#[test]
fn a_multipart_etag_ends_the_walk_at_its_part_count() {
    let backend = Backend::start(&["alpha"]);
    let writer = encrypted_gateway(&backend);
    let relay = Relay::start(&backend);
    let gw = encrypted_gateway(&relay);
    let work = tempfile::tempdir().unwrap();
    upload_in_parts(&writer, work.path(), &test_bytes(6 << 20, 5), "alpha/two");
    let head = at_backend(
        &backend,
        &["s3api", "head-object", "--bucket", "alpha", "--key", "two"],
    );
    assert!(head.contains("-2\\\""), "a two-part ETag: {head}");
    // Equal claimed parts: the regular layout fits the stored size, but
    // with 1,000 parts, not the ETag's 2.
    std::fs::write(
        backend.object_path("alpha", "two"),
        part_headers(&[5000; CLAIMED_PARTS]),
    )
    .unwrap();

    relay.take("/alpha/two");
    let r = signed_request(
        gw.port,
        "GET",
        "/alpha/two",
        &[("range", "bytes=0-99")],
        b"",
    );
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code().as_deref(), Some("InternalError"));
    let requests = relay.take("/alpha/two");
    assert!(
        (1..=3).contains(&requests.len()),
        "the probe and at most 2 header reads: {requests:?}"
    );
    // The version's failed walk is kept: another read costs the probe only.
    let again = signed_request(
        gw.port,
        "GET",
        "/alpha/two?junk=1",
        &[("range", "bytes=0-99")],
        b"",
    );
    assert_eq!(again.status, 500);
    let requests = relay.take("/alpha/two");
    assert_eq!(requests.len(), 1, "the probe only: {requests:?}");
    let (_, metrics) = gw.admin_get("/metrics");
    assert_eq!(
        metric(&metrics, "sealgate_decrypt_failures_total{reason=\"part\"}"),
        Some(2.0),
        "{metrics}"
    );
}

/// The layout cache was keyed by the whole query, so `?junk=N` made every
/// read walk the parts again. Now a layout is kept per object version: a
/// ranged read with any other query costs what a repeated read does, one
/// request less than the first (the regular layout's check).
#[test]
fn a_layout_is_found_once_whatever_the_query() {
    let backend = Backend::start(&["alpha"]);
    let writer = encrypted_gateway(&backend);
    let relay = Relay::start(&backend);
    let gw = encrypted_gateway(&relay);
    let work = tempfile::tempdir().unwrap();
    let data = test_bytes(6 << 20, 9);
    upload_in_parts(&writer, work.path(), &data, "alpha/legit");

    // A range in the second part.
    let (a, b) = (5 * 1024 * 1024 + 10, 5 * 1024 * 1024 + 5000);
    let range = format!("bytes={a}-{b}");
    let mut costs = Vec::new();
    relay.take("/alpha/legit");
    for path in [
        "/alpha/legit?junk=1",
        "/alpha/legit?junk=2",
        "/alpha/legit",
        "/alpha/legit?response-cache-control=no-store",
    ] {
        let r = signed_request(gw.port, "GET", path, &[("range", range.as_str())], b"");
        assert_eq!(
            r.status,
            206,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.body == data[a..=b], "{path}: the plaintext range");
        costs.push(relay.take("/alpha/legit").len());
    }
    assert!(
        costs[0] > costs[1],
        "the first read found the layout: {costs:?}"
    );
    assert!(
        costs[1..].iter().all(|&c| c == costs[1]),
        "later reads reuse it: {costs:?}"
    );
}
