//! Verified against the worked examples in the Amazon S3 API reference
//! ("Signature Calculations for the Authorization Header" and "Query String
//! Authentication"), which use these credentials.

use super::*;
use http::HeaderValue;

pub(super) const AK: &str = "AKIAIOSFODNN7EXAMPLE";
pub(super) const SK: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// 20130524T000000Z
pub(super) const T0: i64 = 1_369_353_600;
pub(super) const SKEW: i64 = 900;

pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

pub(super) fn check(
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
    // Years of fewer than four digits are padded; beyond four, the
    // formatter writes them whole.
    assert_eq!(format_amz_date(-30_610_306_739), "09991231T010101Z");
    assert_eq!(format_amz_date(253_402_300_800), "100000101T000000Z");
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
