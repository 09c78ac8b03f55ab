//! What a copy the gateway makes writes on the object or part it stores:
//! the content headers and metadata (by the directive), the headers that
//! apply to any new object, the source's tags, and what the client asked
//! of the destination (its owner check, conditions and, into a bucket the
//! gateway does not encrypt, the backend's own encryption). Apart from
//! `copy.rs` because every copy the gateway makes (`copy`, `plain_copy`,
//! `part_copy`) uses it.

use http::HeaderMap;
use pingora::http::RequestHeader;
use sealgate_envelope::META_PREFIX;
use sealgate_filters::s3::{uri, S3Error, S3ErrorCode};

use crate::proxy::copy_source::CopySource;
use crate::proxy::errors::internal;
use crate::proxy::Gateway;

/// Headers that describe the content: copied from the source, or taken
/// from the request under `REPLACE` (with `x-amz-meta-*`).
const CONTENT_HEADERS: [&str; 7] = [
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "x-amz-website-redirect-location",
];
/// Request headers that apply to the new object whatever the directive
/// (their permissions were checked with the request).
const NEW_OBJECT_HEADERS: [&str; 9] = [
    "x-amz-storage-class",
    "x-amz-acl",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
];
/// Request headers of a copy that apply to the PUT a gateway-made copy
/// sends: the client's check of the destination bucket's owner, and
/// conditions on the destination (not for parts).
const DESTINATION_CHECKS: [&str; 3] = ["x-amz-expected-bucket-owner", "if-match", "if-none-match"];
/// The backend's own encryption of the copy, asked for by the client: kept
/// on a copy the gateway makes into a bucket it does not encrypt.
const BACKEND_ENCRYPTION: [&str; 7] = [
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
];

/// Largest tag set read from a source (S3 allows 10 tags).
const MAX_TAGGING_ANSWER: usize = 64 * 1024;

impl Gateway {
    /// The new object's headers for a copy the gateway makes: metadata
    /// and content headers by the directive, the request's storage class,
    /// ACL and object-lock headers, and tags (the source's, unless
    /// `x-amz-tagging-directive: REPLACE`).
    pub(in crate::proxy) async fn copy_object_headers(
        &self,
        put: &mut RequestHeader,
        replace: bool,
        headers: &HeaderMap,
        src: &CopySource,
    ) -> Result<(), S3Error> {
        let described = if replace { headers } else { &src.probe.headers };
        for (name, value) in described_headers(described) {
            put.append_header(name, value).map_err(internal)?;
        }
        for n in NEW_OBJECT_HEADERS {
            if let Some(v) = headers.get(n) {
                put.insert_header(n, v.clone()).map_err(internal)?;
            }
        }
        let tagging = match headers.get("x-amz-tagging-directive").map(|v| v.as_bytes()) {
            Some(d) if d.eq_ignore_ascii_case(b"REPLACE") => headers
                .get("x-amz-tagging")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            _ => self.source_tagging(src).await?,
        };
        if let Some(t) = tagging.filter(|t| !t.is_empty()) {
            put.insert_header("x-amz-tagging", t).map_err(internal)?;
        }
        Ok(())
    }

    /// The source's tags as an `x-amz-tagging` value (S3 copies them by
    /// default), read with GetObjectTagging.
    async fn source_tagging(&self, src: &CopySource) -> Result<Option<String>, S3Error> {
        let (host, path) = src.tagging_address();
        let (resp, body) = self
            .backend(src.bucket())
            .request(
                "GET",
                &host,
                &path,
                &[],
                bytes::Bytes::new(),
                MAX_TAGGING_ANSWER,
            )
            .await
            .map_err(|e| crate::proxy::copy_source::source_failed(&e))?;
        if resp.status.as_u16() != 200 {
            // A backend without tagging has no tags to copy.
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&body);
        let mut pairs = Vec::new();
        for tag in text.split("<Tag>").skip(1) {
            let field = |name: &str| {
                let open = format!("<{name}>");
                let start = tag.find(&open)? + open.len();
                let end = tag[start..].find(&format!("</{name}>"))? + start;
                Some(xml_unescape(&tag[start..end]))
            };
            if let (Some(k), Some(v)) = (field("Key"), field("Value")) {
                pairs.push(format!("{}={}", uri::encode(&k), uri::encode(&v)));
            }
        }
        Ok(Some(pairs.join("&")))
    }
}

/// The user metadata and content headers among `headers` (never the
/// envelope's fields).
pub(in crate::proxy) fn described_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            (n.starts_with("x-amz-meta-") && !n.starts_with(META_PREFIX))
                || CONTENT_HEADERS.contains(&n)
        })
        .filter_map(|(n, v)| {
            let v = v.to_str().ok()?;
            // A coding the backend kept from the gateway's own framing.
            let v = if n == http::header::CONTENT_ENCODING {
                sealgate_filters::s3::body::chunked::without_aws_chunked(v)?.into_owned()
            } else {
                v.to_string()
            };
            Some((n.as_str().to_string(), v))
        })
        .collect()
}

/// Names of the user metadata and content headers a request carries.
pub(in crate::proxy) fn client_described(req: &RequestHeader) -> Vec<String> {
    described_headers(&req.headers)
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// The five XML entities S3 escapes in tag keys and values.
fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// A copy the gateway makes cannot read a source encrypted with the
/// client's own key (SSE-C): refused before any work.
pub(in crate::proxy) fn refuse_customer_key_source(headers: &HeaderMap) -> Result<(), S3Error> {
    if headers.contains_key("x-amz-copy-source-server-side-encryption-customer-algorithm") {
        return Err(S3Error::new(
            S3ErrorCode::NotImplemented,
            "this copy is made by the gateway, which cannot read a source encrypted with a customer-provided key",
        ));
    }
    Ok(())
}

/// What of a copy request a copy the gateway makes still honours: the
/// destination's owner check, its conditions (`part`: none, UploadPart has
/// none) and, into a bucket the gateway does not encrypt, the backend
/// encryption the client asked for. A source encrypted with the client's
/// own key (SSE-C) cannot be read by the gateway: refused, never copied
/// without the headers that say so.
pub(in crate::proxy) fn copy_request_headers(
    put: &mut RequestHeader,
    headers: &HeaderMap,
    part: bool,
    backend_encryption: bool,
) -> Result<(), S3Error> {
    refuse_customer_key_source(headers)?;
    let checks = if part {
        &DESTINATION_CHECKS[..1]
    } else {
        &DESTINATION_CHECKS[..]
    };
    let encryption = if backend_encryption {
        &BACKEND_ENCRYPTION[..]
    } else {
        &[]
    };
    for n in checks.iter().chain(encryption) {
        if let Some(v) = headers.get(*n) {
            put.insert_header(*n, v.clone()).map_err(internal)?;
        }
    }
    Ok(())
}
