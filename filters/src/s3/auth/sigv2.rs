//! AWS Signature Version 2 verification for S3 requests: the
//! `Authorization: AWS id:signature` header and presigned query URLs
//! (`AWSAccessKeyId`, `Expires`, `Signature`), as S3 documents them. The
//! aws cli v1 and boto3 still presign with V2 by default in us-east-1.
//!
//! V2 signs less than V4: no payload hash, no region, only `Content-MD5`,
//! `Content-Type`, the date, the `x-amz-*` headers and the path with the
//! sub-resources S3 lists. A V2 signature is held to the grants a V4 one
//! from the same key has, and to what it covers: a query parameter the
//! signature does not cover is refused unless it only pages a listing
//! (S3 leaves those unsigned too: the holder of a presigned listing URL
//! may list other prefixes of the bucket, as on S3), a presigned URL's
//! `x-amz-*` query parameters are headers (`hoist`), a presigned URL lives
//! at most as long as SigV4 allows, and aws-chunked bodies with chunk
//! signatures (which need a V4 key) are refused. The gateway re-signs
//! every request upstream with V4.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::s3::auth::sigv4::{
    check_single, parse_amz_date, parse_http_date, PayloadHash, RequestParts,
    MAX_PRESIGNED_EXPIRES_SECS,
};
use crate::s3::responses::error::{S3Error, S3ErrorCode};

/// Most `x-amz-*` query parameters a presigned V2 URL may carry (the
/// SDKs put a handful there: metadata, ACL, a copy's source); the hoist
/// runs before the signature is checked, so its work is bounded.
pub const MAX_HOISTED_PARAMS: usize = 64;

/// Query parameters that carry a presigned V2 URL's authorization.
const QUERY_AUTH_PARAMS: &[&str] = &["AWSAccessKeyId", "Expires", "Signature"];

/// Headers the SDKs copy into a presigned V2 URL's query. What is signed
/// is the request's header (as S3 reads it): the query copy says nothing
/// and is not forwarded.
const QUERY_HEADER_COPIES: &[&str] = &["content-md5", "content-type"];

/// True for a presigned V2 URL's own query parameters, consumed by the
/// gateway and never forwarded.
pub fn is_presign_param(name: &str) -> bool {
    QUERY_AUTH_PARAMS.contains(&name) || QUERY_HEADER_COPIES.contains(&name)
}

/// Sub-resources that enter the string to sign (S3's list as the SDKs
/// sign it): every query parameter that selects what a request does.
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// Query parameters V2 leaves unsigned that only choose which page of a
/// listing is returned (the listing's permission is the same whatever
/// they say), and `x-id`, which S3 ignores.
const UNSIGNED_LISTING_PARAMS: &[&str] = &[
    "continuation-token",
    "delimiter",
    "encoding-type",
    "fetch-owner",
    "key-marker",
    "list-type",
    "marker",
    "max-keys",
    "max-parts",
    "max-uploads",
    "part-number-marker",
    "prefix",
    "start-after",
    "upload-id-marker",
    "version-id-marker",
    "x-id",
];

/// Bytes of an HMAC-SHA1.
const SIGNATURE_LEN: usize = 20;

/// A parsed (not yet verified) V2 authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// Base64, as sent.
    signature: String,
    /// `Expires` of a presigned URL, exactly as sent (it is signed as text).
    expires: Option<String>,
}

fn invalid_header() -> S3Error {
    S3Error::new(
        S3ErrorCode::InvalidArgument,
        "the AWS authorization header is invalid; expected AwsAccessKeyId:signature",
    )
}

fn denied(msg: impl Into<String>) -> S3Error {
    S3Error::new(S3ErrorCode::AccessDenied, msg)
}

/// A presigned V2 URL's `x-amz-*` query parameters, which stand for
/// headers (the SDKs move the headers they signed there, and S3 reads
/// them as headers): returned as headers, with the query left without
/// them, so every check the gateway makes on headers sees them and none
/// is forwarded as a query parameter. `Ok(None)` for any other request or
/// a URL without such parameters; a name also sent as a header is refused
/// (which would the backend take?).
pub fn hoist(raw_query: &str, headers: &HeaderMap) -> Result<Option<Hoisted>, S3Error> {
    // Every request with a query passes here: most are not V2 URLs, and
    // need no decoding to tell. (A V2 URL that encodes the name is not
    // hoisted, so its x-amz-* parameters are refused as unsigned.)
    if !raw_query.contains("AWSAccessKeyId") || headers.contains_key(http::header::AUTHORIZATION) {
        return Ok(None);
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut hoisted: Vec<(http::HeaderName, http::HeaderValue)> = Vec::new();
    let (mut v2, mut v4) = (false, false);
    let invalid = |msg: String| S3Error::new(S3ErrorCode::InvalidArgument, msg);
    for piece in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let name = crate::s3::uri::decode_query(k)
            .ok_or_else(|| invalid("the query string is not valid UTF-8".into()))?;
        v2 |= name == "AWSAccessKeyId";
        v4 |= name == "X-Amz-Algorithm";
        if !is_amz(&name) {
            kept.push(piece);
            continue;
        }
        if hoisted.len() == MAX_HOISTED_PARAMS {
            return Err(invalid(format!(
                "a presigned URL carries at most {MAX_HOISTED_PARAMS} x-amz-* parameters"
            )));
        }
        let value = crate::s3::uri::decode_query(v)
            .ok_or_else(|| invalid("the query string is not valid UTF-8".into()))?;
        // As signed: trimmed.
        let value = value.trim();
        let header = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| invalid(format!("{name} is not a header name")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("{name} is not a header value")))?;
        if headers.contains_key(&header) || hoisted.iter().any(|(h, _)| *h == header) {
            return Err(invalid(format!(
                "{name} appears both as a header and as a query parameter, or twice"
            )));
        }
        hoisted.push((header, value));
    }
    if !v2 || v4 || hoisted.is_empty() {
        return Ok(None);
    }
    Ok(Some(Hoisted {
        query: kept.join("&"),
        headers: hoisted,
    }))
}

/// What [`hoist`] moved: the query without them, and the headers.
#[derive(Debug)]
pub struct Hoisted {
    pub query: String,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// The request's V2 authorization, if it has one: `Ok(None)` for SigV4
/// and anonymous requests.
pub fn parse(
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Option<Authorization>, S3Error> {
    check_single(query, headers)?;
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let Some(rest) = value.as_bytes().strip_prefix(b"AWS ") else {
            return Ok(None);
        };
        let rest = std::str::from_utf8(rest).map_err(|_| invalid_header())?;
        let (id, signature) = rest.trim().split_once(':').ok_or_else(invalid_header)?;
        if id.is_empty() || signature.is_empty() {
            return Err(invalid_header());
        }
        return Ok(Some(Authorization {
            access_key_id: id.to_string(),
            signature: signature.to_string(),
            expires: None,
        }));
    }
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if q("X-Amz-Algorithm").is_some() {
        return Ok(None);
    }
    let Some(id) = q("AWSAccessKeyId") else {
        return Ok(None);
    };
    let (Some(signature), Some(expires)) = (q("Signature"), q("Expires")) else {
        return Err(denied(
            "query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
        ));
    };
    Ok(Some(Authorization {
        access_key_id: id.to_string(),
        signature: signature.to_string(),
        expires: Some(expires.to_string()),
    }))
}

/// What a V2 signature covers of the request besides its method and
/// headers: the bucket a virtual-hosted request names in its Host, which
/// V2 signs as the resource's first segment.
pub struct Resource<'a> {
    pub virtual_bucket: Option<&'a str>,
}

/// Verifies `auth` over `req` with the client's `secret`; the payload hash
/// the body is then checked against. `now` is Unix seconds.
pub fn verify(
    auth: &Authorization,
    req: &RequestParts,
    resource: &Resource,
    secret: &[u8],
    now: i64,
    max_skew_secs: i64,
) -> Result<PayloadHash, S3Error> {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let presigned = auth.expires.is_some();
    // The time first: nothing is computed for a stale request.
    let date_line = match &auth.expires {
        Some(expires) => {
            let at: i64 = expires
                .parse()
                .map_err(|_| denied("Expires must be a number of seconds since 1970"))?;
            if now > at {
                return Err(denied("the request has expired"));
            }
            if at - now > MAX_PRESIGNED_EXPIRES_SECS as i64 + max_skew_secs {
                return Err(denied(format!(
                    "a presigned URL is valid for at most {MAX_PRESIGNED_EXPIRES_SECS} seconds"
                )));
            }
            expires.as_str()
        }
        None => {
            // x-amz-date, when present, is the request's date; the Date
            // line of the string to sign is then empty.
            let (value, line) = match (header("x-amz-date"), header("date")) {
                (Some(d), _) => (d, ""),
                (None, Some(d)) => (d, d),
                (None, None) => {
                    return Err(denied(
                        "AWS authentication requires a valid Date or x-amz-date header",
                    ))
                }
            };
            let t = request_date(value).ok_or_else(|| {
                denied("AWS authentication requires a valid Date or x-amz-date header")
            })?;
            if (now - t).abs() > max_skew_secs {
                return Err(S3Error::new(
                    S3ErrorCode::RequestTimeTooSkewed,
                    "the difference between the request time and the server's time is too large",
                ));
            }
            line
        }
    };
    for (name, _) in req.query {
        // Signed, or the URL's own authorization.
        let covered =
            SUBRESOURCES.contains(&name.as_str()) || (presigned && is_presign_param(name));
        if !covered && !UNSIGNED_LISTING_PARAMS.contains(&name.as_str()) {
            return Err(denied(format!(
                "the query parameter {name} is not covered by a Signature Version 2 signature; sign with Signature Version 4"
            )));
        }
    }
    let payload = match header("x-amz-content-sha256") {
        None => PayloadHash::Unsigned,
        Some(v) => match PayloadHash::parse(v)? {
            PayloadHash::StreamingSigned | PayloadHash::StreamingSignedTrailer => {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    "aws-chunked bodies with chunk signatures need Signature Version 4",
                ))
            }
            other => other,
        },
    };

    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes keys of any length");
    for part in [
        req.method,
        "\n",
        header("content-md5").unwrap_or("").trim(),
        "\n",
        header("content-type").unwrap_or("").trim(),
        "\n",
        date_line.trim(),
        "\n",
    ] {
        mac.update(part.as_bytes());
    }
    for (name, value) in amz_headers(req.headers) {
        mac.update(name.as_bytes());
        mac.update(b":");
        mac.update(value.trim().as_bytes());
        mac.update(b"\n");
    }
    if let Some(bucket) = resource.virtual_bucket {
        mac.update(b"/");
        mac.update(bucket.as_bytes());
    }
    mac.update(req.raw_path.as_bytes());
    // A bucket named in the path with nothing after it is signed as
    // `/bucket/`, as S3 documents the resource of a bucket request.
    let path_bucket_only = resource.virtual_bucket.is_none()
        && req.raw_path.len() > 1
        && !req.raw_path[1..].contains('/');
    if path_bucket_only {
        mac.update(b"/");
    }
    let mut subresources: Vec<&(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| SUBRESOURCES.contains(&k.as_str()))
        .collect();
    subresources.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (k, v)) in subresources.into_iter().enumerate() {
        mac.update(if i == 0 { b"?" } else { b"&" });
        mac.update(k.as_bytes());
        if !v.is_empty() {
            mac.update(b"=");
            mac.update(v.as_bytes());
        }
    }
    let expected = mac.finalize().into_bytes();
    let given = B64.decode(auth.signature.trim()).unwrap_or_default();
    if given.len() == SIGNATURE_LEN && bool::from(expected.as_slice().ct_eq(&given)) {
        return Ok(payload);
    }
    Err(S3Error::new(
        S3ErrorCode::SignatureDoesNotMatch,
        "the request signature we calculated does not match the signature you provided; check your key and signing method",
    ))
}

/// A POST form's V2 signature: base64 HMAC-SHA1 of the base64 policy.
pub fn verify_post(policy: &str, signature: &str, secret: &[u8]) -> Result<(), S3Error> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(policy.as_bytes());
    let expected = mac.finalize().into_bytes();
    let given = B64.decode(signature.trim()).unwrap_or_default();
    if given.len() == SIGNATURE_LEN && bool::from(expected.as_slice().ct_eq(&given)) {
        return Ok(());
    }
    Err(S3Error::new(
        S3ErrorCode::SignatureDoesNotMatch,
        "the POST policy's signature does not match",
    ))
}

/// A V2 request's date: RFC 1123 in GMT or `+0000` (the form S3's own
/// examples use), or ISO 8601 basic as SigV4 writes it.
fn request_date(value: &str) -> Option<i64> {
    let value = value.trim();
    parse_http_date(value)
        .or_else(|| parse_http_date(&format!("{} GMT", value.strip_suffix(" +0000")?)))
        .or_else(|| parse_amz_date(value))
}

fn is_amz(name: &str) -> bool {
    name.get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("x-amz-"))
}

/// The `x-amz-*` headers as V2 signs them: lower-case names in order,
/// values trimmed (each name appears once: `check_single` refuses a
/// repeated `x-amz-*` header, and a presigned URL's `x-amz-*` query
/// parameters were made headers by [`hoist`] first).
fn amz_headers<'h>(headers: &'h HeaderMap) -> Vec<(&'h str, std::borrow::Cow<'h, str>)> {
    let mut out: Vec<_> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-amz-"))
        .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value.as_bytes())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(b.0));
    out
}

#[cfg(test)]
mod tests;
