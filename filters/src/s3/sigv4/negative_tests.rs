//! SigV4 refusals, each case signed by an independent test signer so it
//! fails only because of the one thing it changes.

use super::tests::{check, headers, AK, SK, SKEW, T0};
use super::*;

/// A request signed by this test's own SigV4 (written from the AWS
/// documentation, not from the verifier), so each case below fails only
/// because of the one thing it changes.
struct Case {
    presigned: bool,
    /// `x-amz-date` / `X-Amz-Date`.
    date: &'static str,
    /// Credential scope date and service.
    scope_date: &'static str,
    service: &'static str,
    expires: &'static str,
    /// Signed header names (lowercase).
    signed: &'static [&'static str],
    /// Headers sent (a name may repeat).
    sent: Vec<(&'static str, &'static str)>,
    /// Extra query parameters (signed, may repeat).
    query: Vec<(&'static str, &'static str)>,
}

impl Case {
    fn header() -> Self {
        Self {
            presigned: false,
            date: "20130524T000000Z",
            scope_date: "20130524",
            service: "s3",
            expires: "",
            signed: &["host", "x-amz-content-sha256", "x-amz-date"],
            sent: vec![
                ("host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", "20130524T000000Z"),
            ],
            query: vec![],
        }
    }

    fn presigned() -> Self {
        Self {
            presigned: true,
            expires: "3600",
            signed: &["host"],
            sent: vec![("host", "examplebucket.s3.amazonaws.com")],
            ..Self::header()
        }
    }

    /// Signs and verifies at `now`.
    fn run(&self, now: i64) -> Result<Verified, S3Error> {
        let enc = |s: &str| uri::encode(s);
        let credential = format!(
            "{AK}/{}/us-east-1/{}/aws4_request",
            self.scope_date, self.service
        );
        let signed = self.signed.join(";");
        let mut query: Vec<(String, String)> = self
            .query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if self.presigned {
            for (k, v) in [
                ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
                ("X-Amz-Credential", credential.as_str()),
                ("X-Amz-Date", self.date),
                ("X-Amz-Expires", self.expires),
                ("X-Amz-SignedHeaders", signed.as_str()),
            ] {
                query.push((k.into(), v.into()));
            }
        }
        let mut pairs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        pairs.sort();
        let mut canonical_headers = String::new();
        for name in self.signed {
            let values: Vec<&str> = self
                .sent
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .collect();
            canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        let payload = if self.presigned {
            UNSIGNED_PAYLOAD
        } else {
            EMPTY_SHA256
        };
        let canonical = format!(
            "GET\n/test.txt\n{}\n{canonical_headers}\n{signed}\n{payload}",
            pairs.join("&")
        );
        let scope = format!(
            "{}/us-east-1/{}/aws4_request",
            self.scope_date, self.service
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            self.date,
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = signing_key(SK, self.scope_date, "us-east-1", self.service);
        let signature = hex::encode(hmac(&key[..], to_sign.as_bytes()));
        let mut h = headers(&self.sent);
        if self.presigned {
            query.push(("X-Amz-Signature".into(), signature));
        } else {
            h.insert(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential={credential},SignedHeaders={signed},Signature={signature}")
                    .parse()
                    .unwrap(),
            );
        }
        let query_string: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        check("GET", "/test.txt", &query_string.join("&"), &h, now)
    }
}

#[test]
fn sigv4_negative_table() {
    let without = |name: &str| {
        let mut c = Case::header();
        c.sent.retain(|(n, _)| *n != name);
        c
    };
    let cases: Vec<(&str, Case, i64, Option<S3ErrorCode>)> = vec![
        ("header baseline", Case::header(), T0, None),
        ("presigned baseline", Case::presigned(), T0 + 3600, None),
        (
            "presigned dated in the future",
            Case::presigned(),
            T0 - SKEW - 1,
            Some(S3ErrorCode::AccessDenied),
        ),
        (
            "presigned expired",
            Case::presigned(),
            T0 + 3601,
            Some(S3ErrorCode::AccessDenied),
        ),
        (
            // S3: a URL that expires at once has expired (403).
            "X-Amz-Expires 0",
            Case {
                expires: "0",
                ..Case::presigned()
            },
            T0,
            Some(S3ErrorCode::AccessDenied),
        ),
        (
            "X-Amz-Expires not a number",
            Case {
                expires: "soon",
                ..Case::presigned()
            },
            T0,
            Some(S3ErrorCode::AuthorizationQueryParametersError),
        ),
        (
            "wrong service",
            Case {
                service: "ec2",
                ..Case::header()
            },
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        (
            "scope date is not the request date",
            Case {
                scope_date: "20130523",
                ..Case::header()
            },
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        (
            "presigned scope date is not the request date",
            Case {
                scope_date: "20130523",
                ..Case::presigned()
            },
            T0,
            Some(S3ErrorCode::AuthorizationQueryParametersError),
        ),
        (
            "SignedHeaders without host",
            Case {
                signed: &["x-amz-content-sha256", "x-amz-date"],
                ..Case::header()
            },
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        (
            "a signed header missing from the request",
            Case {
                signed: &["host", "x-amz-content-sha256", "x-amz-date", "x-amz-meta-a"],
                ..Case::header()
            },
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        (
            "a signed header sent twice",
            {
                let mut c = Case::header();
                c.sent.push(("x-amz-date", "20130524T000000Z"));
                c
            },
            T0,
            Some(S3ErrorCode::InvalidArgument),
        ),
        (
            "a signed query parameter sent twice",
            Case {
                query: vec![("partNumber", "1"), ("partNumber", "2")],
                ..Case::header()
            },
            T0,
            Some(S3ErrorCode::InvalidArgument),
        ),
        (
            "an empty name among the signed headers",
            Case {
                signed: &["host", "", "x-amz-content-sha256", "x-amz-date"],
                ..Case::header()
            },
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        (
            "a signed header name no header can have",
            Case {
                signed: &["host", "x-amz-content-sha256", "x-amz-date", "x y"],
                ..Case::header()
            },
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        (
            "a query parameter repeated in a long query (hashed, not scanned)",
            Case {
                query: vec![
                    ("a", ""),
                    ("b", ""),
                    ("c", ""),
                    ("d", ""),
                    ("e", ""),
                    ("f", ""),
                    ("g", ""),
                    ("h", ""),
                    ("i", ""),
                    ("a", "2"),
                ],
                ..Case::header()
            },
            T0,
            Some(S3ErrorCode::InvalidArgument),
        ),
        (
            "a presigning parameter sent twice",
            Case {
                query: vec![("X-Amz-Date", "20130524T000000Z")],
                ..Case::presigned()
            },
            T0,
            Some(S3ErrorCode::InvalidArgument),
        ),
        (
            "x-amz-date missing",
            Case {
                signed: &["host", "x-amz-content-sha256"],
                ..without("x-amz-date")
            },
            T0,
            Some(S3ErrorCode::AccessDenied),
        ),
        (
            "x-amz-content-sha256 missing",
            Case {
                signed: &["host", "x-amz-date"],
                ..without("x-amz-content-sha256")
            },
            T0,
            Some(S3ErrorCode::InvalidRequest),
        ),
    ];
    for (name, case, now, expected) in cases {
        match (case.run(now), expected) {
            (Ok(_), None) => {}
            (Err(e), Some(code)) => assert_eq!(e.code, code, "{name}: {}", e.message),
            (got, _) => panic!("{name}: expected {expected:?}, got {got:?}"),
        }
    }
    // A credential scope of any other shape than five parts is malformed.
    for credential in [
        "AKID/20130524/us-east-1/s3",
        "AKID/20130524/us-east-1/s3/aws4_request/more",
        "AKID/20130524/us-east-1/s3/aws4_request/",
    ] {
        let mut h = HeaderMap::new();
        let value = format!(
            "AWS4-HMAC-SHA256 Credential={credential},SignedHeaders=host,Signature={}",
            "0".repeat(64)
        );
        h.insert("authorization", value.parse().unwrap());
        assert_eq!(
            parse(&[], &h).unwrap_err().code,
            S3ErrorCode::AuthorizationHeaderMalformed,
            "{credential}"
        );
    }
    // The envelope's metadata cannot come in through the query string.
    let q = uri::parse_query("X-Amz-Meta-Sealgate-Dek=forged").unwrap();
    assert_eq!(
        parse(&q, &HeaderMap::new()).unwrap_err().code,
        S3ErrorCode::InvalidArgument
    );
    // Signature Version 2 in the query string is refused, not taken for
    // an anonymous request.
    let q = uri::parse_query("AWSAccessKeyId=AKIA&Expires=1&Signature=abc").unwrap();
    assert_eq!(
        parse(&q, &HeaderMap::new()).unwrap_err().code,
        S3ErrorCode::InvalidRequest
    );
}
