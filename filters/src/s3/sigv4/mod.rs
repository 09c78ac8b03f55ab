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

use super::error::{S3Error, S3ErrorCode};
use super::uri;

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
            Self::Sha256(h) => hex::encode(h),
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

/// Where the signature came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    Header,
    Presigned,
}

/// A parsed (not yet verified) SigV4 authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub style: AuthStyle,
    pub access_key_id: String,
    /// `yyyymmdd` from the credential scope.
    pub scope_date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    /// Lowercase hex.
    pub signature: String,
    /// `X-Amz-Expires` of a presigned URL.
    pub expires: Option<u64>,
    /// `X-Amz-Date` of a presigned URL (header auth reads the header).
    pub query_date: Option<String>,
}

impl Authorization {
    /// `date/region/service/aws4_request`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.scope_date, self.region, self.service
        )
    }
}

fn malformed(style: AuthStyle, msg: impl Into<String>) -> S3Error {
    let code = match style {
        AuthStyle::Header => S3ErrorCode::AuthorizationHeaderMalformed,
        AuthStyle::Presigned => S3ErrorCode::AuthorizationQueryParametersError,
    };
    S3Error::new(code, msg)
}

/// Finds and parses the request's authorization. `Ok(None)` means anonymous.
pub fn parse(
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Option<Authorization>, S3Error> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| malformed(AuthStyle::Header, "the Authorization header is not ASCII"))?;
        return parse_header(value).map(Some);
    }
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(alg) = q("X-Amz-Algorithm") {
        return parse_presigned(alg, &q).map(Some);
    }
    if q("AWSAccessKeyId").is_some() {
        return Err(S3Error::new(
            S3ErrorCode::InvalidRequest,
            "Signature Version 2 is not supported; use Signature Version 4",
        ));
    }
    Ok(None)
}

fn parse_header(value: &str) -> Result<Authorization, S3Error> {
    let style = AuthStyle::Header;
    if value.starts_with("AWS ") {
        return Err(S3Error::new(
            S3ErrorCode::InvalidRequest,
            "Signature Version 2 is not supported; use Signature Version 4",
        ));
    }
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            malformed(
                style,
                format!("the authorization algorithm must be {ALGORITHM}"),
            )
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        } else if !part.is_empty() {
            return Err(malformed(
                style,
                format!("unexpected authorization component `{part}`"),
            ));
        }
    }
    let (credential, signed, signature) = match (credential, signed, signature) {
        (Some(c), Some(s), Some(g)) => (c, s, g),
        _ => {
            return Err(malformed(
                style,
                "the Authorization header needs Credential, SignedHeaders and Signature",
            ))
        }
    };
    build(style, credential, signed, signature, None, None)
}

fn parse_presigned<'q>(
    alg: &str,
    q: &dyn Fn(&str) -> Option<&'q str>,
) -> Result<Authorization, S3Error> {
    let style = AuthStyle::Presigned;
    if alg != ALGORITHM {
        return Err(malformed(
            style,
            format!("X-Amz-Algorithm must be {ALGORITHM}"),
        ));
    }
    let need = |name: &str| {
        q(name).ok_or_else(|| malformed(style, format!("the query parameter {name} is missing")))
    };
    let credential = need("X-Amz-Credential")?;
    let signed = need("X-Amz-SignedHeaders")?;
    let signature = need("X-Amz-Signature")?;
    let date = need("X-Amz-Date")?;
    let expires: u64 = need("X-Amz-Expires")?
        .parse()
        .map_err(|_| malformed(style, "X-Amz-Expires must be a number of seconds"))?;
    if expires == 0 || expires > MAX_PRESIGNED_EXPIRES_SECS {
        return Err(malformed(
            style,
            format!("X-Amz-Expires must be between 1 and {MAX_PRESIGNED_EXPIRES_SECS} seconds"),
        ));
    }
    build(
        style,
        credential,
        signed,
        signature,
        Some(expires),
        Some(date.to_string()),
    )
}

fn build(
    style: AuthStyle,
    credential: &str,
    signed: &str,
    signature: &str,
    expires: Option<u64>,
    query_date: Option<String>,
) -> Result<Authorization, S3Error> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, terminal] = parts[..] else {
        return Err(malformed(
            style,
            "the credential must be ACCESS_KEY/yyyymmdd/region/s3/aws4_request",
        ));
    };
    if terminal != "aws4_request" || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(
            style,
            "the credential must be ACCESS_KEY/yyyymmdd/region/s3/aws4_request",
        ));
    }
    if service != "s3" {
        return Err(malformed(
            style,
            format!("the credential's service must be s3, not `{service}`"),
        ));
    }
    let signed_headers: Vec<String> = signed.split(';').map(|h| h.to_ascii_lowercase()).collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(malformed(style, "SignedHeaders must include host"));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(style, "the signature must be 64 hex digits"));
    }
    Ok(Authorization {
        style,
        access_key_id: key.to_string(),
        scope_date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
        expires,
        query_date,
    })
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
    /// Derived SigV4 signing key: secret, zeroized on drop.
    pub signing_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("access_key_id", &self.access_key_id)
            .field("payload", &self.payload)
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
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
        .find(|k| k.starts_with("x-amz-") && !auth.signed_headers.iter().any(|s| s == k))
    {
        return Err(S3Error::new(
            S3ErrorCode::AccessDenied,
            format!("there were headers present in the request which were not signed: {unsigned}"),
        ));
    }

    let signing_key = signing_key(&auth.scope_date, &auth.region);
    let scope = auth.scope();
    let canonical_query = canonical_query(req.query, style == AuthStyle::Presigned);
    let canonical_headers = canonical_headers(&auth.signed_headers, req.headers);
    let signed_headers = auth.signed_headers.join(";");
    let payload_value = header("x-amz-content-sha256").unwrap_or(UNSIGNED_PAYLOAD);

    // The canonical URI is the path with each segment URI-encoded once. Most
    // clients send exactly that; a few send characters such as `!` or `$`
    // unencoded, so also try the path exactly as received.
    let normalised =
        uri::decode(req.raw_path).map(|p| uri::encode_path(if p.is_empty() { "/" } else { &p }));
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
            &signed_headers,
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
        mac.update(hex::encode(canonical_request.finalize()).as_bytes());
        let expected = hex::encode(mac.finalize().into_bytes());
        if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
            return Ok(Verified {
                access_key_id: auth.access_key_id.clone(),
                payload,
                signature: auth.signature.clone(),
                amz_date,
                scope,
                signing_key,
            });
        }
    }
    Err(S3Error::new(
        S3ErrorCode::SignatureDoesNotMatch,
        "the request signature we calculated does not match the signature you provided; check your key and signing method",
    ))
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

fn canonical_headers(signed: &[String], headers: &HeaderMap) -> String {
    let mut out = String::with_capacity(signed.len() * 64);
    for name in signed {
        out.push_str(name);
        out.push(':');
        for (i, v) in headers.get_all(name.as_str()).iter().enumerate() {
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

/// Parses `yyyymmddThhmmssZ` to Unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats Unix seconds as `yyyymmddThhmmssZ`.
pub fn format_amz_date(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

mod sign;
pub use sign::{ScopedKey, ToSign};

#[cfg(test)]
mod tests;
