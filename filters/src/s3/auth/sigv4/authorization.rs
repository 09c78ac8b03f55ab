//! The client's `Authorization` header or presigned query parameters,
//! parsed and checked for shape (algorithm, credential scope, signed
//! headers, expiry) before any signature is computed.

use super::*;

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
    /// Lower-case names joined by `;`, as they enter the canonical request
    /// (one string, not one per name: parsed on every request).
    pub signed_headers: String,
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
        [
            &self.scope_date,
            "/",
            &self.region,
            "/",
            &self.service,
            "/aws4_request",
        ]
        .concat()
    }

    /// The signed header names, lower-case, in the client's order.
    pub fn signed_header_names(&self) -> impl Iterator<Item = &str> {
        self.signed_headers.split(';')
    }
}

pub(super) fn malformed(style: AuthStyle, msg: impl Into<String>) -> S3Error {
    let code = match style {
        AuthStyle::Header => S3ErrorCode::AuthorizationHeaderMalformed,
        AuthStyle::Presigned => S3ErrorCode::AuthorizationQueryParametersError,
    };
    S3Error::new(code, msg)
}

/// Headers whose second copy could make the gateway and the backend (or
/// the signature and the gateway) read a request differently.
fn must_be_single(name: &str) -> bool {
    name.starts_with("x-amz-")
        || matches!(
            name,
            "authorization"
                | "host"
                | "content-md5"
                | "content-encoding"
                | "content-type"
                | "date"
                | "range"
        )
}

/// Queries with at most this many parameters are checked for repeats by a
/// scan instead of a hash set.
const SCANNED_QUERY_PARAMS: usize = 8;

/// Refuses a repeated query parameter or security-relevant header: the
/// gateway reads the first, a backend may read the last.
pub fn check_single(query: &[(String, String)], headers: &HeaderMap) -> Result<(), S3Error> {
    // Short queries (nearly all) are scanned, which beats hashing on every
    // request; long ones hashed, so a crafted query stays linear.
    let mut seen = (query.len() > SCANNED_QUERY_PARAMS)
        .then(|| std::collections::HashSet::with_capacity(query.len()));
    for (i, (k, _)) in query.iter().enumerate() {
        let repeated = match &mut seen {
            Some(seen) => !seen.insert(k.as_str()),
            None => query[..i].iter().any(|(earlier, _)| earlier == k),
        };
        if repeated {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                format!("the query parameter {k} appears more than once"),
            ));
        }
        // Some backends take user metadata from the query string too: the
        // envelope's fields are the gateway's alone, as in headers.
        if k.get(..20)
            .is_some_and(|p| p.eq_ignore_ascii_case("x-amz-meta-sealgate-"))
        {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                format!("the query parameter {k} is reserved for the gateway"),
            ));
        }
    }
    // Every name with one value (the common case): nothing is repeated.
    if headers.len() == headers.keys_len() {
        return Ok(());
    }
    for name in headers.keys() {
        if must_be_single(name.as_str()) && headers.get_all(name).iter().nth(1).is_some() {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                format!("the header {name} appears more than once"),
            ));
        }
    }
    Ok(())
}

/// Finds and parses the request's authorization. `Ok(None)` means anonymous.
/// Repeated query parameters and security-relevant headers are refused
/// first, whatever the authorization.
pub fn parse(
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Option<Authorization>, S3Error> {
    check_single(query, headers)?;
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
            "Signature Version 2 is turned off here (auth.signature_v2); use Signature Version 4",
        ));
    }
    Ok(None)
}

fn parse_header(value: &str) -> Result<Authorization, S3Error> {
    let style = AuthStyle::Header;
    if value.starts_with("AWS ") {
        return Err(S3Error::new(
            S3ErrorCode::InvalidRequest,
            "Signature Version 2 is turned off here (auth.signature_v2); use Signature Version 4",
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
    if expires == 0 {
        // As S3 answers it: expired, not malformed.
        return Err(S3Error::new(
            S3ErrorCode::AccessDenied,
            "the request has expired",
        ));
    }
    if expires > MAX_PRESIGNED_EXPIRES_SECS {
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
    let mut parts = credential.split('/');
    let mut next = || parts.next();
    let (Some(key), Some(date), Some(region), Some(service), Some(terminal), None) =
        (next(), next(), next(), next(), next(), next())
    else {
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
    let signed_headers = signed.to_ascii_lowercase();
    if !signed_headers.split(';').any(|h| h == "host") {
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
