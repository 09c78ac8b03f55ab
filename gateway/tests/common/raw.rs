//! Raw HTTP/1.1 requests signed with the test client's key, for tests that
//! must see exactly which bytes arrive (no client library that retries,
//! buffers or hides a cut connection).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sealgate_filters::s3::auth::sigv4::{format_amz_date, ScopedKey, ToSign, UNSIGNED_PAYLOAD};

use super::{CLIENT_KEY, CLIENT_SECRET};

/// One response as it arrived.
pub struct RawResponse {
    pub status: u16,
    /// Header lines, lowercase names.
    pub headers: Vec<(String, String)>,
    /// The body bytes received before the connection closed.
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// True when the body is as long as the response said it would be.
    pub fn complete(&self) -> bool {
        self.header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n == self.body.len())
    }

    /// The S3 error code of an XML error body.
    pub fn error_code(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.body);
        let (_, rest) = text.split_once("<Code>")?;
        Some(rest.split_once("</Code>")?.0.to_string())
    }
}

/// Sends a request signed by the test client (header SigV4, unsigned
/// payload) and reads the response until the server closes.
pub fn signed_request(
    port: u16,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let host = format!("127.0.0.1:{port}");
    signed_request_as(
        (CLIENT_KEY, CLIENT_SECRET),
        port,
        &host,
        method,
        path,
        extra,
        body,
    )
}

/// Sends a request signed with `client`'s key for `host`, the path sent
/// exactly as given (dot segments and encodings included).
pub fn signed_request_as(
    client: (&str, &str),
    port: u16,
    host: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut head = signed_head(client, host, method, path, extra);
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    // A cut connection ends the read with an error or EOF: either way,
    // what arrived is what the client got.
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

/// The request line and signed headers of a request (header SigV4,
/// unsigned payload), each line ended; the caller adds its own framing
/// headers and the blank line.
pub fn signed_head(
    client: (&str, &str),
    host: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let amz_date = format_amz_date(now);
    let mut headers: Vec<(&str, &str)> = vec![
        ("host", host),
        ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        ("x-amz-date", &amz_date),
    ];
    headers.extend_from_slice(extra);
    let key = ScopedKey::new(client.0, client.1.as_bytes(), &amz_date[..8], "us-east-1");
    let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
    let authorization = key.authorization(&ToSign {
        method,
        path: path_only,
        query,
        headers: &headers,
        payload_hash: UNSIGNED_PAYLOAD,
        amz_date: &amz_date,
    });
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (n, v) in &headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("authorization: {authorization}\r\n"));
    head
}

/// Parses one whole response (header and the body its Content-Length
/// names) from the start of `raw`, if it has arrived.
pub fn parse_one(raw: &[u8]) -> Option<RawResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let mut r = parse(&raw[..split + 4]);
    let len: usize = r.header("content-length").map_or(0, |v| v.parse().unwrap());
    let body = raw.get(split + 4..split + 4 + len)?;
    r.body = body.to_vec();
    Some(r)
}

/// `GET /bucket/key` with an optional `Range`.
pub fn signed_get(port: u16, bucket: &str, key: &str, range: Option<&str>) -> RawResponse {
    let range_header;
    let mut extra = Vec::new();
    if let Some(r) = range {
        range_header = format!("bytes={r}");
        extra.push(("range", range_header.as_str()));
    }
    signed_request(port, "GET", &format!("/{bucket}/{key}"), &extra, b"")
}

fn parse(raw: &[u8]) -> RawResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response header");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

/// Decodes as much of a chunked body as arrived.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|&n| n > 0) else {
            break;
        };
        let data = &raw[i + 2..];
        let n = size.min(data.len());
        out.extend_from_slice(&data[..n]);
        if n < size || data.len() < n + 2 {
            break;
        }
        raw = &data[n + 2..];
    }
    out
}
