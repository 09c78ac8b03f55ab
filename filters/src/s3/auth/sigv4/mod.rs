//! AWS Signature Version 4 verification for S3 requests: the Authorization
//! header and presigned query URLs, any payload-hash mode.
//!
//! The gateway recomputes the client's signature from the request as it
//! arrived (only the headers named in SignedHeaders, S3's single URI
//! encoding, no path normalisation, the payload hash the client declared)
//! and compares in constant time. The derived signing key is returned so
//! streaming (aws-chunked) chunk signatures can be checked later.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::s3::responses::error::{S3Error, S3ErrorCode};
use crate::s3::uri;

/// The only algorithm S3 accepts for SigV4 with secret keys.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// S3 caps presigned URL lifetimes at seven days.
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 7 * 24 * 3600;
/// Payload hash value of requests whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// aws-chunked with a signature per chunk.
pub const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// aws-chunked with chunk signatures and a signed trailer.
pub const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// aws-chunked without signatures, with a trailer (new SDKs' default over TLS).
pub const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// SHA-256 of the empty string.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

type HmacSha256 = Hmac<Sha256>;

/// What the client declared about its body in `x-amz-content-sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadHash {
    Unsigned,
    /// The body's SHA-256, to be checked as the body streams.
    Sha256([u8; 32]),
    StreamingSigned,
    StreamingSignedTrailer,
    StreamingUnsignedTrailer,
}

impl PayloadHash {
    pub fn parse(value: &str) -> Result<Self, S3Error> {
        Ok(match value {
            UNSIGNED_PAYLOAD => Self::Unsigned,
            STREAMING_SIGNED => Self::StreamingSigned,
            STREAMING_SIGNED_TRAILER => Self::StreamingSignedTrailer,
            STREAMING_UNSIGNED_TRAILER => Self::StreamingUnsignedTrailer,
            hex_value => {
                let mut out = [0u8; 32];
                if hex_value.len() != 64 || hex::decode_to_slice(hex_value, &mut out).is_err() {
                    return Err(S3Error::new(
                        S3ErrorCode::InvalidArgument,
                        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* value or a SHA-256 in hex",
                    ));
                }
                Self::Sha256(out)
            }
        })
    }

    /// The value as it appears in the header and the canonical request.
    pub fn header_value(&self) -> String {
        match self {
            Self::Unsigned => UNSIGNED_PAYLOAD.into(),
            Self::Sha256(h) => hex32(h).as_str().to_string(),
            Self::StreamingSigned => STREAMING_SIGNED.into(),
            Self::StreamingSignedTrailer => STREAMING_SIGNED_TRAILER.into(),
            Self::StreamingUnsignedTrailer => STREAMING_UNSIGNED_TRAILER.into(),
        }
    }

    /// True for the aws-chunked body encodings.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            Self::StreamingSigned | Self::StreamingSignedTrailer | Self::StreamingUnsignedTrailer
        )
    }
}

/// A request whose signature checked out.
#[derive(Clone)]
pub struct Verified {
    pub access_key_id: String,
    pub payload: PayloadHash,
    /// The client's seed signature (first `previous signature` of signed chunks).
    pub signature: String,
    /// `x-amz-date` / `X-Amz-Date`.
    pub amz_date: String,
    pub scope: String,
    /// Derived SigV4 signing key: secret, zeroized on drop (all zeros for
    /// a V2 signature, which cannot sign chunks).
    pub signing_key: Zeroizing<[u8; 32]>,
    /// Signed with Signature Version 2 (`sigv2`).
    pub signature_v2: bool,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("access_key_id", &self.access_key_id)
            .field("payload", &self.payload)
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .field("signature_v2", &self.signature_v2)
            .finish_non_exhaustive()
    }
}

/// The parts of a request a signature covers.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// Percent-encoded path as received.
    pub raw_path: &'a str,
    /// Decoded query pairs as received.
    pub query: &'a [(String, String)],
    pub headers: &'a HeaderMap,
}

/// Verifies `auth` over `req` with the client's `secret`. `now` is Unix seconds.
pub fn verify(
    auth: &Authorization,
    req: &RequestParts,
    secret: &[u8],
    now: i64,
    max_skew_secs: i64,
) -> Result<Verified, S3Error> {
    let key = |date: &str, region: &str| signing_key(secret, date, region, &auth.service);
    verify_with(auth, req, key, now, max_skew_secs)
}

/// Like [`verify`], with the signing key for (`date`, `region`) from
/// `signing_key`, so a caller can keep derived keys instead of running the
/// four HMACs of the derivation on every request. The key is asked for
/// only once the request's date and skew have checked out.
pub fn verify_with(
    auth: &Authorization,
    req: &RequestParts,
    signing_key: impl FnOnce(&str, &str) -> Zeroizing<[u8; 32]>,
    now: i64,
    max_skew_secs: i64,
) -> Result<Verified, S3Error> {
    let style = auth.style;
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let amz_date = match style {
        AuthStyle::Presigned => auth.query_date.clone().unwrap_or_default(),
        AuthStyle::Header => header("x-amz-date").map(str::to_string).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::AccessDenied,
                "the x-amz-date header is missing",
            )
        })?,
    };
    let t = parse_amz_date(&amz_date).ok_or_else(|| {
        malformed(
            style,
            format!("`{amz_date}` is not a date like 20130524T000000Z"),
        )
    })?;
    if amz_date[..8] != auth.scope_date {
        return Err(malformed(
            style,
            "the credential's date does not match the request date",
        ));
    }
    match style {
        AuthStyle::Header => {
            if (now - t).abs() > max_skew_secs {
                return Err(S3Error::new(
                    S3ErrorCode::RequestTimeTooSkewed,
                    "the difference between the request time and the server's time is too large",
                ));
            }
        }
        AuthStyle::Presigned => {
            if t - now > max_skew_secs {
                return Err(S3Error::new(
                    S3ErrorCode::AccessDenied,
                    "the request is not valid yet",
                ));
            }
            let expires = auth.expires.unwrap_or(0) as i64;
            if now > t + expires {
                return Err(S3Error::new(
                    S3ErrorCode::AccessDenied,
                    "the request has expired",
                ));
            }
        }
    }
    let payload = match (style, header("x-amz-content-sha256")) {
        (_, Some(v)) => PayloadHash::parse(v)?,
        (AuthStyle::Presigned, None) => PayloadHash::Unsigned,
        (AuthStyle::Header, None) => {
            return Err(S3Error::new(
                S3ErrorCode::InvalidRequest,
                "missing required header for this request: x-amz-content-sha256",
            ))
        }
    };

    // As S3 does: every x-amz-* header must be covered by the signature, or
    // a holder of a presigned URL could add e.g. x-amz-copy-source and the
    // gateway would forward it under its own credentials.
    if let Some(unsigned) = req
        .headers
        .keys()
        .map(|k| k.as_str())
        .find(|k| k.starts_with("x-amz-") && !auth.signed_header_names().any(|s| s == *k))
    {
        return Err(S3Error::new(
            S3ErrorCode::AccessDenied,
            format!("there were headers present in the request which were not signed: {unsigned}"),
        ));
    }

    // A header the client signed must be there: a signature over an
    // absent header says nothing the gateway could check.
    if let Some(missing) = auth
        .signed_header_names()
        .find(|h| !req.headers.contains_key(*h))
    {
        return Err(malformed(
            style,
            format!("the signed header {missing} is not in the request"),
        ));
    }

    let signing_key = signing_key(&auth.scope_date, &auth.region);
    let scope = auth.scope();
    let canonical_query = canonical_query(req.query, style == AuthStyle::Presigned);
    let canonical_headers = canonical_headers(auth.signed_header_names(), req.headers);
    let signed_headers = auth.signed_headers.as_str();
    let payload_value = header("x-amz-content-sha256").unwrap_or(UNSIGNED_PAYLOAD);

    // The canonical URI is the path with each segment URI-encoded once. Most
    // clients send exactly that; a few send characters such as `!` or `$`
    // unencoded, so also try the path exactly as received.
    // A path already in canonical form (the common case) is its own
    // normalisation: no decode and encode per request.
    let normalised: Option<std::borrow::Cow<str>> = if uri::is_encoded_path(req.raw_path) {
        Some(req.raw_path.into())
    } else {
        uri::decode(req.raw_path)
            .map(|p| uri::encode_path(if p.is_empty() { "/" } else { &p }).into())
    };
    let mut candidates: Vec<&str> = Vec::with_capacity(2);
    if let Some(n) = normalised.as_deref() {
        candidates.push(n);
    }
    if normalised.as_deref() != Some(req.raw_path) {
        candidates.push(req.raw_path);
    }
    for path in candidates {
        // The canonical request goes straight into the hash, never built as one string.
        let mut canonical_request = Sha256::new();
        for (i, part) in [
            req.method,
            path,
            &canonical_query,
            &canonical_headers,
            signed_headers,
            payload_value,
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                canonical_request.update(b"\n");
            }
            canonical_request.update(part.as_bytes());
        }
        let mut mac =
            HmacSha256::new_from_slice(&signing_key[..]).expect("HMAC takes keys of any length");
        for part in [ALGORITHM, "\n", &amz_date, "\n", &scope, "\n"] {
            mac.update(part.as_bytes());
        }
        mac.update(hex32(&canonical_request.finalize().into()).as_bytes());
        let expected = hex32(&mac.finalize().into_bytes().into());
        if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
            return Ok(Verified {
                access_key_id: auth.access_key_id.clone(),
                payload,
                signature: auth.signature.clone(),
                amz_date,
                scope,
                signing_key,
                signature_v2: false,
            });
        }
    }
    Err(S3Error::new(
        S3ErrorCode::SignatureDoesNotMatch,
        "the request signature we calculated does not match the signature you provided; check your key and signing method",
    ))
}

/// Lower-case hex of a 32-byte digest, on the stack. Every request hexes
/// two digests to verify and two to sign; `hex::encode` builds its string a
/// char at a time, several times slower than this table walk.
pub fn hex32(digest: &[u8; 32]) -> Hex32 {
    let mut out = [0u8; 64];
    hex::encode_to_slice(digest, &mut out).expect("64 digits for 32 bytes");
    Hex32(out)
}

/// A digest's 64 hex digits (see [`hex32`]).
pub struct Hex32([u8; 64]);

impl Hex32 {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

/// HMAC-SHA256.
pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The SigV4 signing key for a scope.
pub fn signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> Zeroizing<[u8; 32]> {
    let mut k = Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    k.extend_from_slice(b"AWS4");
    k.extend_from_slice(secret);
    let k_date = Zeroizing::new(hmac(&k, date.as_bytes()));
    let k_region = Zeroizing::new(hmac(&k_date[..], region.as_bytes()));
    let k_service = Zeroizing::new(hmac(&k_region[..], service.as_bytes()));
    Zeroizing::new(hmac(&k_service[..], b"aws4_request"))
}

fn canonical_query(query: &[(String, String)], presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .map(|(k, v)| (uri::encode(k), uri::encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_headers<'a>(signed: impl Iterator<Item = &'a str>, headers: &HeaderMap) -> String {
    let mut out = String::with_capacity(512);
    for name in signed {
        out.push_str(name);
        out.push(':');
        for (i, v) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_collapsed(&mut out, &String::from_utf8_lossy(v.as_bytes()));
        }
        out.push('\n');
    }
    out
}

/// Appends `v` trimmed, with inner runs of whitespace as one space, as
/// SigV4 canonical headers require.
fn push_collapsed(out: &mut String, v: &str) {
    for (i, word) in v.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

mod authorization;
mod date;
mod sign;
use authorization::malformed;
pub use authorization::{check_single, parse, AuthStyle, Authorization};
pub use date::{format_amz_date, format_iso8601, parse_amz_date, parse_http_date};
pub use sign::{ScopedKey, ToSign};

#[cfg(test)]
mod negative_tests;
#[cfg(test)]
mod tests;
