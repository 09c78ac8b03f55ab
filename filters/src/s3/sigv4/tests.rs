//! Verified against the worked examples in the Amazon S3 API reference
//! ("Signature Calculations for the Authorization Header" and "Query String
//! Authentication"), which use these credentials.

use super::*;
use http::HeaderValue;

const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SK: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// 20130524T000000Z
const T0: i64 = 1_369_353_600;
const SKEW: i64 = 900;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn check(
    method: &str,
    path: &str,
    query: &str,
    h: &HeaderMap,
    now: i64,
) -> Result<Verified, S3Error> {
    let q = uri::parse_query(query).unwrap();
    let auth = parse(&q, h)?.expect("has auth");
    verify(
        &auth,
        &RequestParts {
            method,
            raw_path: path,
            query: &q,
            headers: h,
        },
        SK,
        now,
        SKEW,
    )
}

fn get_object_headers(signature: &str) -> HeaderMap {
    headers(&[
        ("host", "examplebucket.s3.amazonaws.com"),
        ("range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", "20130524T000000Z"),
        (
            "authorization",
            &format!("AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature={signature}"),
        ),
    ])
}

#[test]
fn aws_example_get_object() {
    let h = get_object_headers("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    let v = check("GET", "/test.txt", "", &h, T0 + 60).unwrap();
    assert_eq!(v.access_key_id, AK);
    assert_eq!(
        v.payload,
        PayloadHash::Sha256(hex::decode(EMPTY_SHA256).unwrap().try_into().unwrap())
    );
}

#[test]
fn aws_example_put_object_with_dollar_in_key() {
    let h = headers(&[
        ("host", "examplebucket.s3.amazonaws.com"),
        ("date", "Fri, 24 May 2013 00:00:00 GMT"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"),
        ("authorization", &format!("AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")),
    ]);
    // Sent encoded and unencoded: both canonicalise to /test%24file.text.
    check("PUT", "/test%24file.text", "", &h, T0).unwrap();
    check("PUT", "/test$file.text", "", &h, T0).unwrap();
}

#[test]
fn aws_example_get_bucket_lifecycle_and_list() {
    let base = [
        ("host", "examplebucket.s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-content-sha256", EMPTY_SHA256),
    ];
    let auth = |sig: &str| {
        format!("AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature={sig}")
    };
    let mut h = headers(&base);
    h.insert(
        "authorization",
        auth("fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
            .parse()
            .unwrap(),
    );
    check("GET", "/", "lifecycle", &h, T0).unwrap();
    let mut h = headers(&base);
    h.insert(
        "authorization",
        auth("34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
            .parse()
            .unwrap(),
    );
    check("GET", "/", "max-keys=2&prefix=J", &h, T0).unwrap();
}

const PRESIGNED: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

#[test]
fn aws_example_presigned_url() {
    let h = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
    let v = check("GET", "/test.txt", PRESIGNED, &h, T0 + 3600).unwrap();
    assert_eq!(v.payload, PayloadHash::Unsigned);
}

#[test]
fn presigned_expiry_and_tampering() {
    let h = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
    let e = check("GET", "/test.txt", PRESIGNED, &h, T0 + 86_401).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (S3ErrorCode::AccessDenied, "the request has expired")
    );
    let e = check("GET", "/test2.txt", PRESIGNED, &h, T0).unwrap_err();
    assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch);
    let e = check(
        "GET",
        "/test.txt",
        &PRESIGNED.replace("86400", "86401"),
        &h,
        T0,
    )
    .unwrap_err();
    assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch);
    let e = check(
        "GET",
        "/test.txt",
        &PRESIGNED.replace("86400", "604801"),
        &h,
        T0,
    )
    .unwrap_err();
    assert_eq!(e.code, S3ErrorCode::AuthorizationQueryParametersError);
}

#[test]
fn wrong_signature_skew_and_malformed() {
    let h = get_object_headers("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb42");
    assert_eq!(
        check("GET", "/test.txt", "", &h, T0).unwrap_err().code,
        S3ErrorCode::SignatureDoesNotMatch
    );
    let h = get_object_headers("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    assert_eq!(
        check("GET", "/test.txt", "", &h, T0 + 901)
            .unwrap_err()
            .code,
        S3ErrorCode::RequestTimeTooSkewed
    );
    // A header that was signed changed.
    let mut h2 = h.clone();
    h2.insert("range", "bytes=0-10".parse().unwrap());
    assert_eq!(
        check("GET", "/test.txt", "", &h2, T0).unwrap_err().code,
        S3ErrorCode::SignatureDoesNotMatch
    );
    // An unsigned header may change freely.
    let mut h3 = h.clone();
    h3.insert("user-agent", "anything".parse().unwrap());
    check("GET", "/test.txt", "", &h3, T0).unwrap();
    let bad = headers(&[("authorization", "AWS4-HMAC-SHA256 Credential=AK/2013/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=00")]);
    assert_eq!(
        check("GET", "/", "", &bad, T0).unwrap_err().code,
        S3ErrorCode::AuthorizationHeaderMalformed
    );
    let v2 = headers(&[("authorization", "AWS AKIA:abc")]);
    assert_eq!(
        check("GET", "/", "", &v2, T0).unwrap_err().code,
        S3ErrorCode::InvalidRequest
    );
}

#[test]
fn no_authorization_is_anonymous() {
    assert!(parse(&[], &HeaderMap::new()).unwrap().is_none());
}

#[test]
fn amz_dates_round_trip() {
    assert_eq!(parse_amz_date("20130524T000000Z"), Some(T0));
    assert_eq!(format_amz_date(T0 + 3661), "20130524T010101Z");
    assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
    assert_eq!(format_amz_date(951_782_400), "20000229T000000Z");
    assert!(parse_amz_date("20131324T000000Z").is_none());
    assert!(parse_amz_date("2013-05-24").is_none());
}

#[test]
fn payload_hash_values() {
    assert_eq!(
        PayloadHash::parse(STREAMING_UNSIGNED_TRAILER).unwrap(),
        PayloadHash::StreamingUnsignedTrailer
    );
    assert!(PayloadHash::parse("zz").is_err());
    assert_eq!(
        PayloadHash::parse(EMPTY_SHA256).unwrap().header_value(),
        EMPTY_SHA256
    );
}

#[test]
fn unsigned_amz_headers_are_refused() {
    // The presigned example signs only `host`; an added x-amz-copy-source
    // must not ride along under the gateway's credentials.
    let mut h = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
    h.insert("x-amz-copy-source", "/other/secret".parse().unwrap());
    let e = check("GET", "/test.txt", PRESIGNED, &h, T0 + 10).unwrap_err();
    assert_eq!(e.code, S3ErrorCode::AccessDenied);
    assert!(e.message.contains("x-amz-copy-source"), "{}", e.message);
    // Unsigned headers outside x-amz-* are fine (user-agent, ...).
    let mut h = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
    h.insert("user-agent", "x".parse().unwrap());
    check("GET", "/test.txt", PRESIGNED, &h, T0 + 10).unwrap();
}

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
            "X-Amz-Expires 0",
            Case {
                expires: "0",
                ..Case::presigned()
            },
            T0,
            Some(S3ErrorCode::AuthorizationQueryParametersError),
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
