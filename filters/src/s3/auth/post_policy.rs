//! The POST policy of a browser upload: a base64 JSON document the client
//! signed (SigV4: the signature is an HMAC of the base64 text under the
//! client's signing key, checked in `auth`), with an expiry and conditions
//! every form field must meet. Checked as S3 does: the policy has not
//! expired, every condition holds, and every form field (but `policy`,
//! `x-amz-signature`, `file` and `x-ignore-*`) is named by a condition.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::s3::auth::sigv4::parse_amz_date;
use crate::s3::{S3Error, S3ErrorCode};

/// Largest policy document accepted (base64).
pub const MAX_POLICY_LEN: usize = 20 * 1024;

/// One condition of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// `{"field": "value"}` or `["eq", "$field", "value"]`.
    Eq(String, String),
    /// `["starts-with", "$field", "prefix"]`.
    StartsWith(String, String),
    /// `["content-length-range", min, max]`.
    LengthRange(u64, u64),
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPolicy {
    /// Unix seconds.
    expiration: i64,
    conditions: Vec<Condition>,
}

fn denied(why: String) -> S3Error {
    S3Error::new(
        S3ErrorCode::AccessDenied,
        format!("Invalid according to Policy: {why}"),
    )
}

fn malformed(why: &str) -> S3Error {
    S3Error::new(
        S3ErrorCode::InvalidPolicyDocument,
        format!("the POST policy is not valid: {why}"),
    )
}

impl PostPolicy {
    /// Decodes and parses the `policy` field.
    pub fn parse(policy_b64: &str) -> Result<Self, S3Error> {
        if policy_b64.len() > MAX_POLICY_LEN {
            return Err(malformed("too large"));
        }
        let json = B64
            .decode(policy_b64.trim())
            .map_err(|_| malformed("not base64"))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&json).map_err(|_| malformed("not JSON"))?;
        let expiration = doc
            .get("expiration")
            .and_then(|v| v.as_str())
            .and_then(iso8601)
            .ok_or_else(|| malformed("no valid expiration"))?;
        let mut conditions = Vec::new();
        for c in doc
            .get("conditions")
            .and_then(|v| v.as_array())
            .ok_or_else(|| malformed("no conditions"))?
        {
            conditions
                .push(condition(c).ok_or_else(|| malformed("a condition is not understood"))?);
        }
        Ok(Self {
            expiration,
            conditions,
        })
    }

    /// Checks the form's `fields` (names lower-cased) and the request's
    /// `bucket` at `now`; returns the `content-length-range`, if any. A
    /// form signed with Signature Version 2 (`signature_v2`) carries its
    /// key id and signature in `AWSAccessKeyId` and `signature`, which no
    /// condition names, as V4's `x-amz-signature`.
    pub fn check(
        &self,
        fields: &[(String, String)],
        bucket: &str,
        now: i64,
        signature_v2: bool,
    ) -> Result<Option<(u64, u64)>, S3Error> {
        if now >= self.expiration {
            return Err(denied("Policy expired.".into()));
        }
        let value = |name: &str| -> Option<&str> {
            if name == "bucket" {
                return Some(bucket);
            }
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let mut range = None;
        for c in &self.conditions {
            let holds = match c {
                Condition::Eq(f, v) => value(f) == Some(v.as_str()),
                Condition::StartsWith(f, p) => value(f).is_some_and(|v| v.starts_with(p.as_str())),
                Condition::LengthRange(a, b) => {
                    range = Some((*a, *b));
                    true
                }
            };
            if !holds {
                return Err(denied(format!("Policy Condition failed: {c:?}")));
            }
        }
        for (name, _) in fields {
            let signature = match signature_v2 {
                false => name == "x-amz-signature",
                true => name == "signature" || name == "awsaccesskeyid",
            };
            let exempt = signature
                || matches!(name.as_str(), "policy" | "file")
                || name.starts_with("x-ignore-");
            let named = self.conditions.iter().any(|c| match c {
                Condition::Eq(f, _) | Condition::StartsWith(f, _) => f == name,
                Condition::LengthRange(..) => false,
            });
            if !exempt && !named {
                return Err(denied(format!("Extra input fields: {name}")));
            }
        }
        Ok(range)
    }
}

/// One JSON condition.
fn condition(c: &serde_json::Value) -> Option<Condition> {
    if let Some(obj) = c.as_object() {
        let (k, v) = obj.iter().next().filter(|_| obj.len() == 1)?;
        return Some(Condition::Eq(
            k.to_ascii_lowercase(),
            v.as_str()?.to_string(),
        ));
    }
    let list = c.as_array()?;
    let op = list.first()?.as_str()?.to_ascii_lowercase();
    let field = |v: &serde_json::Value| v.as_str()?.strip_prefix('$').map(str::to_ascii_lowercase);
    match (op.as_str(), list.len()) {
        ("eq", 3) => Some(Condition::Eq(
            field(&list[1])?,
            list[2].as_str()?.to_string(),
        )),
        ("starts-with", 3) => Some(Condition::StartsWith(
            field(&list[1])?,
            list[2].as_str()?.to_string(),
        )),
        ("content-length-range", 3) => {
            let (a, b) = (list[1].as_u64()?, list[2].as_u64()?);
            (a <= b).then_some(Condition::LengthRange(a, b))
        }
        _ => None,
    }
}

/// `2026-11-30T09:00:00Z` or `2026-11-30T09:00:00.000Z` as Unix seconds.
fn iso8601(s: &str) -> Option<i64> {
    let (main, _) = s
        .strip_suffix('Z')?
        .split_once('.')
        .unwrap_or((s.strip_suffix('Z')?, ""));
    let compact: String = main.chars().filter(|c| *c != '-' && *c != ':').collect();
    parse_amz_date(&format!("{compact}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> PostPolicy {
        PostPolicy::parse(&B64.encode(json)).unwrap()
    }

    fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const NOW: i64 = 1_796_083_200; // 2026-12-01T00:00:00Z

    #[test]
    fn conditions_hold_or_the_upload_is_refused() {
        let p = policy(
            r#"{"expiration": "2026-12-01T01:00:00.000Z", "conditions": [
                {"bucket": "demo"}, ["starts-with", "$key", "up/"], {"acl": "private"},
                ["content-length-range", 1, 1000], ["eq", "$x-amz-algorithm", "AWS4-HMAC-SHA256"]]}"#,
        );
        let ok = fields(&[
            ("key", "up/a.txt"),
            ("acl", "private"),
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            ("policy", "…"),
            ("x-amz-signature", "…"),
            ("x-ignore-me", "…"),
        ]);
        assert_eq!(p.check(&ok, "demo", NOW, false), Ok(Some((1, 1000))));
        // The other version's signature fields are not exempt.
        assert_eq!(
            p.check(&ok, "demo", NOW, true).map_err(|e| e.code),
            Err(S3ErrorCode::AccessDenied)
        );
        let mut v2 = ok.clone();
        v2.retain(|(k, _)| k != "x-amz-signature");
        v2.push(("awsaccesskeyid".into(), "AK".into()));
        v2.push(("signature".into(), "…".into()));
        assert_eq!(p.check(&v2, "demo", NOW, true), Ok(Some((1, 1000))));
        assert_eq!(
            p.check(&v2, "demo", NOW, false).map_err(|e| e.code),
            Err(S3ErrorCode::AccessDenied)
        );
        let code = |f: &[(String, String)], bucket: &str, now: i64| {
            p.check(f, bucket, now, false).map_err(|e| e.code)
        };
        assert_eq!(code(&ok, "other", NOW), Err(S3ErrorCode::AccessDenied));
        assert_eq!(
            code(&ok, "demo", NOW + 3600),
            Err(S3ErrorCode::AccessDenied),
            "expired"
        );
        let mut wrong_key = ok.clone();
        wrong_key[0].1 = "elsewhere/a.txt".into();
        assert_eq!(
            code(&wrong_key, "demo", NOW),
            Err(S3ErrorCode::AccessDenied)
        );
        let mut extra = ok.clone();
        extra.push(("x-amz-meta-note".into(), "not in the policy".into()));
        assert_eq!(code(&extra, "demo", NOW), Err(S3ErrorCode::AccessDenied));
        let missing: Vec<_> = ok.iter().filter(|(k, _)| k != "acl").cloned().collect();
        assert_eq!(code(&missing, "demo", NOW), Err(S3ErrorCode::AccessDenied));
    }

    #[test]
    fn malformed_policies_are_refused() {
        for bad in [
            "not base64!",
            &B64.encode("not json"),
            &B64.encode(r#"{"conditions": []}"#),
            &B64.encode(r#"{"expiration": "2026-12-01T01:00:00Z", "conditions": [["in", "$key", "x"]]}"#),
            &B64.encode(r#"{"expiration": "2026-12-01T01:00:00Z", "conditions": [["content-length-range", 9, 1]]}"#),
            &B64.encode(r#"{"expiration": "tomorrow", "conditions": []}"#),
        ] {
            assert_eq!(
                PostPolicy::parse(bad).unwrap_err().code,
                S3ErrorCode::InvalidPolicyDocument,
                "{bad}"
            );
        }
    }
}
