//! A bucket's CORS configuration (the `CORSConfiguration` document of
//! GetBucketCors) and its evaluation as S3 evaluates it: the first rule
//! whose origin, method and (for a preflight) every requested header
//! match decides, and its headers answer the browser.
//!
//! The gateway answers preflights itself (a browser never signs an
//! `OPTIONS`, and the presigned signature it carries was made for another
//! method), so the backend sees none of the preflight, and adds the same
//! headers to real responses, whatever the backend supports.

use http::Method;

use super::responses::error::{S3Error, S3ErrorCode};
use super::xml::{walk, Node};

/// S3 accepts at most 100 rules per bucket.
pub const MAX_RULES: usize = 100;
/// Largest CORS document read from the backend.
pub const MAX_CORS_DOCUMENT: usize = 64 * 1024;
/// Longest `Access-Control-Request-Headers` value evaluated.
const MAX_REQUEST_HEADERS: usize = 8 * 1024;

/// One `CORSRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    origins: Vec<String>,
    methods: Vec<String>,
    /// Lower-case.
    headers: Vec<String>,
    expose: Vec<String>,
    max_age: Option<u64>,
}

/// A bucket's CORS rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    rules: Vec<Rule>,
}

/// Matches `value` against a pattern with at most one `*` (S3's rule for
/// origins and headers).
fn matches(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && value.starts_with(head)
                && value.ends_with(tail)
        }
    }
}

fn forbidden(msg: &str) -> S3Error {
    S3Error::new(S3ErrorCode::AccessForbidden, format!("CORSResponse: {msg}"))
}

/// The refusal of a request no rule allows.
fn not_allowed() -> S3Error {
    forbidden("This CORS request is not allowed. This is usually because the evaluation of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.")
}

/// The refusal of a preflight to a bucket without CORS rules.
pub fn not_enabled() -> S3Error {
    forbidden("CORS is not enabled for this bucket.")
}

/// The headers that answer a browser, in order.
pub type CorsHeaders = Vec<(&'static str, String)>;

impl Cors {
    /// Parses a `CORSConfiguration` document.
    pub fn parse(xml: &[u8]) -> Result<Self, S3Error> {
        if xml.len() > MAX_CORS_DOCUMENT {
            return Err(super::xml::malformed("the CORS configuration is too large"));
        }
        let mut rules: Vec<Rule> = Vec::new();
        walk(xml, |node| {
            match node {
                Node::Open([root, rule]) if root == "CORSConfiguration" && rule == "CORSRule" => {
                    if rules.len() >= MAX_RULES {
                        return Err(super::xml::malformed("more than 100 CORS rules"));
                    }
                    rules.push(Rule::default());
                }
                Node::Close([root, rule, field], text)
                    if root == "CORSConfiguration" && rule == "CORSRule" =>
                {
                    let r = rules.last_mut().expect("opened above");
                    let text = text.to_string();
                    match field.as_str() {
                        "AllowedOrigin" => r.origins.push(text),
                        "AllowedMethod" => r.methods.push(text),
                        "AllowedHeader" => r.headers.push(text.to_ascii_lowercase()),
                        "ExposeHeader" => r.expose.push(text),
                        "MaxAgeSeconds" => {
                            r.max_age = Some(text.parse().map_err(|_| {
                                super::xml::malformed("MaxAgeSeconds is not a number")
                            })?)
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        Ok(Self { rules })
    }

    /// True when the bucket has no rule (no browser request is allowed).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule allowing `origin` to use `method` with `headers`.
    fn rule(&self, origin: &str, method: &str, headers: &[String]) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            r.origins.iter().any(|o| matches(o, origin))
                && r.methods.iter().any(|m| m == method)
                && headers
                    .iter()
                    .all(|h| r.headers.iter().any(|p| matches(p, h)))
        })
    }

    /// The answer to a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`), as S3 gives it, or its refusal.
    pub fn preflight(
        &self,
        origin: &str,
        method: &str,
        request_headers: Option<&str>,
    ) -> Result<CorsHeaders, S3Error> {
        if self.rules.is_empty() {
            return Err(not_enabled());
        }
        let requested = requested_headers(request_headers.unwrap_or(""))?;
        let rule = self
            .rule(origin, method, &requested)
            .ok_or_else(not_allowed)?;
        let mut out = rule.allow_origin(origin);
        out.push(("access-control-allow-methods", rule.methods.join(", ")));
        if !requested.is_empty() {
            out.push(("access-control-allow-headers", requested.join(", ")));
        }
        rule.common(&mut out);
        out.push((
            "vary",
            "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".into(),
        ));
        Ok(out)
    }

    /// The headers a real response to `origin` carries for `method`, if a
    /// rule allows it (none otherwise: the browser then withholds it). The
    /// response also varies by `Origin` (the caller adds it).
    pub fn response(&self, origin: &str, method: &Method) -> CorsHeaders {
        let Some(rule) = self.rule(origin, method.as_str(), &[]) else {
            return Vec::new();
        };
        let mut out = rule.allow_origin(origin);
        out.push(("access-control-allow-methods", rule.methods.join(", ")));
        rule.common(&mut out);
        out
    }
}

impl Rule {
    /// `*` for a rule open to every origin, else the origin itself (with
    /// credentials allowed, as S3 answers).
    fn allow_origin(&self, origin: &str) -> CorsHeaders {
        if self.origins.iter().any(|o| o == "*") {
            return vec![("access-control-allow-origin", "*".into())];
        }
        vec![
            ("access-control-allow-origin", origin.to_string()),
            ("access-control-allow-credentials", "true".into()),
        ]
    }

    fn common(&self, out: &mut CorsHeaders) {
        if !self.expose.is_empty() {
            out.push(("access-control-expose-headers", self.expose.join(", ")));
        }
        if let Some(age) = self.max_age {
            out.push(("access-control-max-age", age.to_string()));
        }
    }
}

/// The methods a preflight may ask for (S3's AllowedMethod values).
pub const CORS_METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD"];

/// Checks a preflight's `Origin` and `Access-Control-Request-Method` as S3
/// does before any rule is looked at.
pub fn check_preflight<'a>(
    origin: Option<&'a str>,
    method: Option<&'a str>,
) -> Result<(&'a str, &'a str), S3Error> {
    let bad = |msg: String| S3Error::new(S3ErrorCode::BadRequest, msg);
    let origin = origin
        .filter(|o| !o.is_empty())
        .ok_or_else(|| bad("Insufficient information. Origin request header needed.".into()))?;
    let method = method.unwrap_or("");
    if !CORS_METHODS.contains(&method) {
        return Err(bad(format!(
            "Invalid Access-Control-Request-Method: {method}"
        )));
    }
    Ok((origin, method))
}

/// `Access-Control-Request-Headers` as lower-case names.
fn requested_headers(value: &str) -> Result<Vec<String>, S3Error> {
    if value.len() > MAX_REQUEST_HEADERS {
        return Err(not_allowed());
    }
    Ok(value
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <CORSRule>
    <AllowedOrigin>http://www.example.com</AllowedOrigin>
    <AllowedOrigin>https://*.example.org</AllowedOrigin>
    <AllowedMethod>PUT</AllowedMethod>
    <AllowedMethod>GET</AllowedMethod>
    <AllowedHeader>content-*</AllowedHeader>
    <AllowedHeader>X-Amz-Date</AllowedHeader>
    <ExposeHeader>ETag</ExposeHeader>
    <MaxAgeSeconds>3000</MaxAgeSeconds>
  </CORSRule>
  <CORSRule>
    <AllowedOrigin>*</AllowedOrigin>
    <AllowedMethod>GET</AllowedMethod>
  </CORSRule>
</CORSConfiguration>"#;

    fn cors() -> Cors {
        Cors::parse(DOC.as_bytes()).unwrap()
    }

    fn header<'a>(h: &'a CorsHeaders, name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_first_matching_rule_answers_a_preflight() {
        let c = cors();
        let h = c
            .preflight(
                "https://app.example.org",
                "PUT",
                Some("Content-Type, x-amz-date"),
            )
            .unwrap();
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://app.example.org")
        );
        assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(header(&h, "access-control-allow-methods"), Some("PUT, GET"));
        assert_eq!(
            header(&h, "access-control-allow-headers"),
            Some("content-type, x-amz-date")
        );
        assert_eq!(header(&h, "access-control-expose-headers"), Some("ETag"));
        assert_eq!(header(&h, "access-control-max-age"), Some("3000"));
        // Anyone may GET (the second rule): `*`, no credentials.
        let h = c.preflight("http://evil.test", "GET", None).unwrap();
        assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(header(&h, "access-control-allow-credentials"), None);
    }

    #[test]
    fn preflights_no_rule_allows_are_refused() {
        let c = cors();
        for (origin, method, headers) in [
            // Another origin may only GET.
            ("http://evil.test", "PUT", None),
            // The wildcard stands for one part, not the scheme.
            ("http://app.example.org", "PUT", None),
            // A header no rule names.
            ("http://www.example.com", "PUT", Some("x-amz-copy-source")),
            ("http://www.example.com", "DELETE", None),
        ] {
            let e = c.preflight(origin, method, headers).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::AccessForbidden, "{origin} {method}");
        }
        let e = Cors::default()
            .preflight("http://www.example.com", "GET", None)
            .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                S3ErrorCode::AccessForbidden,
                "CORSResponse: CORS is not enabled for this bucket."
            )
        );
    }

    #[test]
    fn preflight_inputs_are_checked_first() {
        assert_eq!(
            check_preflight(None, Some("GET")).unwrap_err().code,
            S3ErrorCode::BadRequest
        );
        assert_eq!(
            check_preflight(Some("http://a"), Some("PATCH"))
                .unwrap_err()
                .code,
            S3ErrorCode::BadRequest
        );
        assert_eq!(
            check_preflight(Some("http://a"), Some("PUT")),
            Ok(("http://a", "PUT"))
        );
    }

    #[test]
    fn real_responses_carry_the_rule_or_nothing() {
        let c = cors();
        let h = c.response("http://www.example.com", &Method::PUT);
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("http://www.example.com")
        );
        assert_eq!(header(&h, "access-control-expose-headers"), Some("ETag"));
        assert!(c.response("http://evil.test", &Method::PUT).is_empty());
        assert!(Cors::default()
            .response("http://www.example.com", &Method::GET)
            .is_empty());
    }

    #[test]
    fn documents_are_bounded() {
        let many = format!(
            "<CORSConfiguration>{}</CORSConfiguration>",
            "<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>"
                .repeat(MAX_RULES + 1)
        );
        assert_eq!(
            Cors::parse(many.as_bytes()).unwrap_err().code,
            S3ErrorCode::MalformedXML
        );
        assert!(Cors::parse(b"<CORSConfiguration/>").unwrap().is_empty());
        assert!(Cors::parse(b"<!DOCTYPE x><CORSConfiguration/>").is_err());
        // Rules under another root are no rules (and no panic).
        let other = b"<X><CORSRule><AllowedOrigin>a</AllowedOrigin></CORSRule></X>";
        assert!(Cors::parse(other).unwrap().is_empty());
    }
}
