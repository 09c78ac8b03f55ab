//! What finding a multipart object's part layout may cost the backend,
//! counted by the backend's side of the wire: a relay between the gateway
//! and s3s-fs notes every request line. Part headers are not
//! authenticated, so an object planted at the storage level could ask for
//! one read per part it claims (up to 10,000) before being refused. Now an
//! object of another bucket is refused on its first probe's envelope, a
//! multipart ETag's part count ends a walk at that part, and a layout is
//! found once per object version whatever else a query holds.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::raw::{signed_request, RawResponse};
use common::*;
use sealgate_envelope::multipart::{stored_part_len, PartHeader};

/// Most backend requests a refused read of a planted object may cost (the
/// issue's bound: the probe of its first bytes, and one more).
const MOST_FOR_A_REFUSAL: usize = 2;

/// Parts the planted objects' headers claim.
const CLAIMED_PARTS: usize = 1_000;

/// A TCP relay in front of a backend that notes the request line of every
/// request the gateway sends through it: the backend's own count of what
/// a client request cost, not the gateway's word for it.
struct Relay {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(backend: &Backend) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = format!("127.0.0.1:{}", backend.port);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue; // the gateway sees the connection closed
                };
                relay(client, server, log.clone());
            }
        });
        Relay { port, seen, stop }
    }

    /// The requests for the object at `path` (`/bucket/key`, any query)
    /// since the last call; forgets every request seen so far.
    fn take(&self, path: &str) -> Vec<String> {
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        seen.into_iter()
            .filter(|line| {
                let target = line.split(' ').nth(1).unwrap_or("");
                target == path || target.starts_with(&format!("{path}?"))
            })
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Upstream for Relay {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn name(&self) -> &'static str {
        "relay to s3s-fs"
    }
}

/// Passes bytes both ways between `client` (the gateway) and `server`
/// (the backend), noting each request line of the gateway's HTTP/1.1
/// stream before forwarding it, so that a request is counted by the time
/// the backend answers it.
fn relay(mut client: TcpStream, mut server: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let (mut to_client, mut from_server) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let mut requests = RequestLines::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let lines = requests.push(&buf[..n]);
            seen.lock().unwrap().extend(lines);
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server.shutdown(Shutdown::Write);
    });
}

/// The request lines of an HTTP/1.1 request stream, found as it arrives:
/// each head up to its blank line, then its body (`Content-Length` bytes,
/// or chunks) skipped.
#[derive(Default)]
struct RequestLines {
    pending: Vec<u8>,
    body: Body,
}

#[derive(Default, Clone, Copy)]
enum Body {
    #[default]
    None,
    Length(usize),
    Chunked,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl RequestLines {
    /// Takes the next bytes; returns the request lines they complete.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        loop {
            match self.body {
                Body::Length(left) => {
                    let skip = left.min(self.pending.len());
                    self.pending.drain(..skip);
                    if skip < left {
                        self.body = Body::Length(left - skip);
                        return lines;
                    }
                    self.body = Body::None;
                }
                Body::Chunked => {
                    let Some(eol) = find(&self.pending, b"\r\n") else {
                        return lines;
                    };
                    let size_text = String::from_utf8_lossy(&self.pending[..eol]).into_owned();
                    let size_hex = size_text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_hex, 16).expect("a chunk size");
                    if size == 0 {
                        // The last chunk, then trailers up to a blank line.
                        let Some(end) = find(&self.pending[eol..], b"\r\n\r\n") else {
                            return lines;
                        };
                        self.pending.drain(..eol + end + 4);
                        self.body = Body::None;
                    } else {
                        let whole = eol + 2 + size + 2;
                        if self.pending.len() < whole {
                            return lines;
                        }
                        self.pending.drain(..whole);
                    }
                }
                Body::None => {
                    let Some(end) = find(&self.pending, b"\r\n\r\n") else {
                        return lines;
                    };
                    let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
                    self.pending.drain(..end + 4);
                    let mut head_lines = head.split("\r\n");
                    lines.push(head_lines.next().unwrap_or("").to_string());
                    for (name, value) in head_lines.filter_map(|l| l.split_once(':')) {
                        let value = value.trim();
                        match name.trim().to_ascii_lowercase().as_str() {
                            "content-length" => {
                                let n = value.parse().expect("a content length");
                                if n > 0 {
                                    self.body = Body::Length(n);
                                }
                            }
                            "transfer-encoding"
                                if value.to_ascii_lowercase().contains("chunked") =>
                            {
                                self.body = Body::Chunked;
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}

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
