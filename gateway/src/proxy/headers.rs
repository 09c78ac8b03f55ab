//! Upstream request header hygiene: what describes the client's
//! plaintext body, its own encryption wishes, aws-chunked framing, or
//! envelope fields never reaches the backend on a body the gateway makes.

use pingora::http::RequestHeader;
use sealgate_envelope::META_PREFIX;
use sealgate_filters::s3::body::checksum::ChecksumAlgorithm;
use sealgate_filters::s3::body::chunked::without_aws_chunked;

/// Request headers that describe the client's plaintext body or its own
/// encryption wishes: never forwarded on an encrypted write.
const PLAINTEXT_BODY_HEADERS: &[&str] = &[
    "content-md5",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-trailer",
    "x-amz-decoded-content-length",
    "transfer-encoding",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
];

/// Removes aws-chunked framing headers and the checksums the gateway
/// verified (a trailer's value cannot be sent ahead as a header).
pub fn strip_chunked_headers(req: &mut RequestHeader) {
    for h in [
        "x-amz-trailer",
        "x-amz-decoded-content-length",
        "transfer-encoding",
        "x-amz-sdk-checksum-algorithm",
    ] {
        req.remove_header(h);
    }
    for alg in ChecksumAlgorithm::ALL {
        req.remove_header(alg.header());
    }
    strip_aws_chunked_encoding(req);
}

/// What `Content-Encoding` becomes without the `aws-chunked` token: `None`
/// leaves it as it is (no header, or no token: no copy made), `Some(None)`
/// removes it, `Some(Some(v))` sets the rest, as the client wrote it.
pub fn coding_without_aws_chunked(headers: &http::HeaderMap) -> Option<Option<String>> {
    let ce = headers.get(http::header::CONTENT_ENCODING)?.to_str().ok()?;
    match without_aws_chunked(ce) {
        Some(std::borrow::Cow::Borrowed(_)) => None,
        Some(std::borrow::Cow::Owned(rest)) => Some(Some(rest)),
        None => Some(None),
    }
}

fn strip_aws_chunked_encoding(req: &mut RequestHeader) {
    match coding_without_aws_chunked(&req.headers) {
        None => {}
        Some(Some(rest)) => {
            let _ = req.insert_header(http::header::CONTENT_ENCODING, rest);
        }
        Some(None) => {
            req.remove_header(http::header::CONTENT_ENCODING.as_str());
        }
    }
}

/// Removes the headers that describe the plaintext body, any client-sent
/// envelope fields, and aws-chunked content-encoding.
pub fn strip_plaintext_body_headers(req: &mut RequestHeader) {
    for h in PLAINTEXT_BODY_HEADERS {
        req.remove_header(*h);
    }
    for alg in ChecksumAlgorithm::ALL {
        req.remove_header(alg.header());
    }
    strip_envelope_headers(req);
    strip_aws_chunked_encoding(req);
}

/// Clients must never set envelope fields themselves.
pub fn strip_envelope_headers(req: &mut RequestHeader) {
    let names: Vec<String> = req
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with(META_PREFIX))
        .map(str::to_string)
        .collect();
    for n in names {
        req.remove_header(n.as_str());
    }
}
