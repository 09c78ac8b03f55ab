//! SigV4 refusals, each request signed by aws-sigv4 (the AWS SDK's signer,
//! not this crate's code) and then changed in the one way its row names, so
//! it fails only because of that change. Positive rows prove the signer and
//! the verifier agree on the unchanged request.

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    self, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use super::tests::{check, AK, SK, SKEW, T0};
use super::*;

const HOST: &str = "examplebucket.s3.amazonaws.com";

/// How aws-sigv4 signs a row's `GET /test.txt`.
struct Signing {
    /// Query parameters (`X-Amz-Expires`) instead of `Authorization`.
    presigned: bool,
    /// The signer's clock, Unix seconds.
    at: i64,
    service: &'static str,
    /// Presigned lifetime, seconds.
    expires_in: u64,
    /// Query of the URL signed, before any presigning parameters.
    query: &'static str,
    /// Headers signed beside host and those aws-sigv4 adds.
    headers: &'static [(&'static str, &'static str)],
    /// Header auth: aws-sigv4 adds and signs `x-amz-content-sha256`, as
    /// the SDK does for S3; without it the request has none.
    content_sha256: bool,
}

impl Signing {
    fn header() -> Self {
        Self {
            presigned: false,
            at: T0,
            service: "s3",
            expires_in: 0,
            query: "",
            headers: &[],
            content_sha256: true,
        }
    }

    fn presigned() -> Self {
        Self {
            presigned: true,
            expires_in: 3600,
            content_sha256: false,
            ..Self::header()
        }
    }

    /// The request as aws-sigv4 would send it.
    fn sign(&self) -> Sent {
        let url = match self.query {
            "" => format!("http://{HOST}/test.txt"),
            q => format!("http://{HOST}/test.txt?{q}"),
        };
        let mut builder = http::Request::builder()
            .method("GET")
            .uri(url.as_str())
            .header("host", HOST);
        for (name, value) in self.headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).unwrap();

        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let body = if self.presigned {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(self.expires_in));
            SignableBody::UnsignedPayload
        } else {
            if self.content_sha256 {
                settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            }
            SignableBody::empty()
        };
        let secret = std::str::from_utf8(SK).unwrap();
        let identity: Identity =
            Credentials::new(AK, secret, None, None, "sigv4_negative_table").into();
        let params: http_request::SigningParams = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(self.service)
            .time(UNIX_EPOCH + Duration::from_secs(u64::try_from(self.at).unwrap()))
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "GET",
            url.as_str(),
            request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str(), v.to_str().unwrap())),
            body,
        )
        .unwrap();
        let (instructions, _) = http_request::sign(signable, &params).unwrap().into_parts();
        instructions.apply_to_request_http1x(&mut request);
        Sent {
            path: request.uri().path().to_string(),
            query: request.uri().query().unwrap_or_default().to_string(),
            headers: request.headers().clone(),
        }
    }
}

/// A signed request as sent, for a row to change.
struct Sent {
    path: String,
    query: String,
    headers: HeaderMap,
}

impl Sent {
    fn edit_authorization(&mut self, from: &str, to: &str) {
        let mut value = self.headers["authorization"].to_str().unwrap().to_string();
        replace_once(&mut value, from, to);
        self.headers.insert("authorization", value.parse().unwrap());
    }

    fn edit_query(&mut self, from: &str, to: &str) {
        replace_once(&mut self.query, from, to);
    }

    fn remove_header(&mut self, name: &str) {
        assert!(self.headers.remove(name).is_some(), "{name} was not sent");
    }
}

/// Replaces the one `from` in `text`: a change that did not apply would
/// leave its row testing nothing.
fn replace_once(text: &mut String, from: &str, to: &str) {
    assert_eq!(text.matches(from).count(), 1, "`{from}` once in `{text}`");
    *text = text.replacen(from, to, 1);
}

fn unchanged(_: &mut Sent) {}

struct Row {
    name: &'static str,
    signing: Signing,
    /// The one change made to the signed request.
    change: fn(&mut Sent),
    /// The gateway's clock.
    now: i64,
    /// `None`: the request verifies.
    expected: Option<S3ErrorCode>,
}

fn row(
    name: &'static str,
    signing: Signing,
    change: fn(&mut Sent),
    now: i64,
    expected: Option<S3ErrorCode>,
) -> Row {
    Row {
        name,
        signing,
        change,
        now,
        expected,
    }
}

#[test]
fn sigv4_negative_table() {
    let header = Signing::header;
    let presigned = Signing::presigned;
    let rows = [
        // Positive controls: aws-sigv4 and the verifier agree.
        row("header baseline", header(), unchanged, T0, None),
        row(
            "header baseline with a signed x-amz-meta header",
            Signing {
                headers: &[("x-amz-meta-a", "1")],
                ..header()
            },
            unchanged,
            T0,
            None,
        ),
        row(
            "presigned baseline",
            presigned(),
            unchanged,
            T0 + 3600,
            None,
        ),
        // The signature is checked: one signed byte changed.
        row(
            "a signed header changed after signing",
            Signing {
                headers: &[("x-amz-meta-a", "1")],
                ..header()
            },
            |s| {
                s.headers.insert("x-amz-meta-a", "2".parse().unwrap());
            },
            T0,
            Some(S3ErrorCode::SignatureDoesNotMatch),
        ),
        row(
            "presigned path changed after signing",
            presigned(),
            |s| replace_once(&mut s.path, "/test.txt", "/test2.txt"),
            T0,
            Some(S3ErrorCode::SignatureDoesNotMatch),
        ),
        row(
            "header auth signed more than the skew ago",
            Signing {
                at: T0 - SKEW - 1,
                ..header()
            },
            unchanged,
            T0,
            Some(S3ErrorCode::RequestTimeTooSkewed),
        ),
        row(
            "presigned dated in the future",
            Signing {
                at: T0 + SKEW + 1,
                ..presigned()
            },
            unchanged,
            T0,
            Some(S3ErrorCode::AccessDenied),
        ),
        row(
            "presigned expired",
            presigned(),
            unchanged,
            T0 + 3601,
            Some(S3ErrorCode::AccessDenied),
        ),
        // S3: a URL that expires at once has expired (403).
        row(
            "X-Amz-Expires 0",
            Signing {
                expires_in: 0,
                ..presigned()
            },
            unchanged,
            T0,
            Some(S3ErrorCode::AccessDenied),
        ),
        row(
            "X-Amz-Expires not a number",
            presigned(),
            |s| s.edit_query("X-Amz-Expires=3600", "X-Amz-Expires=soon"),
            T0,
            Some(S3ErrorCode::AuthorizationQueryParametersError),
        ),
        row(
            "wrong service",
            Signing {
                service: "ec2",
                ..header()
            },
            unchanged,
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        row(
            "scope date is not the request date",
            header(),
            |s| s.edit_authorization("/20130524/", "/20130523/"),
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        row(
            "presigned scope date is not the request date",
            presigned(),
            |s| s.edit_query("%2F20130524%2F", "%2F20130523%2F"),
            T0,
            Some(S3ErrorCode::AuthorizationQueryParametersError),
        ),
        row(
            "SignedHeaders without host",
            header(),
            |s| s.edit_authorization("SignedHeaders=host;", "SignedHeaders="),
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        row(
            "a signed header missing from the request",
            Signing {
                headers: &[("x-amz-meta-a", "1")],
                ..header()
            },
            |s| s.remove_header("x-amz-meta-a"),
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        row(
            "a signed header sent twice",
            header(),
            |s| {
                s.headers
                    .append("x-amz-date", "20130524T000000Z".parse().unwrap());
            },
            T0,
            Some(S3ErrorCode::InvalidArgument),
        ),
        row(
            "a signed query parameter sent twice",
            Signing {
                query: "partNumber=1&partNumber=2",
                ..header()
            },
            unchanged,
            T0,
            Some(S3ErrorCode::InvalidArgument),
        ),
        row(
            "an empty name among the signed headers",
            header(),
            |s| s.edit_authorization("SignedHeaders=host;", "SignedHeaders=host;;"),
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        row(
            "a signed header name no header can have",
            header(),
            |s| s.edit_authorization("x-amz-date,", "x-amz-date;x y,"),
            T0,
            Some(S3ErrorCode::AuthorizationHeaderMalformed),
        ),
        row(
            "a query parameter repeated in a long query (hashed, not scanned)",
            Signing {
                query: "a=&b=&c=&d=&e=&f=&g=&h=&i=&a=2",
                ..header()
            },
            unchanged,
            T0,
            Some(S3ErrorCode::InvalidArgument),
        ),
        row(
            "a presigning parameter sent twice",
            presigned(),
            |s| s.query.push_str("&X-Amz-Date=20130524T000000Z"),
            T0,
            Some(S3ErrorCode::InvalidArgument),
        ),
        row(
            "x-amz-date missing",
            header(),
            |s| s.remove_header("x-amz-date"),
            T0,
            Some(S3ErrorCode::AccessDenied),
        ),
        row(
            "x-amz-content-sha256 missing",
            Signing {
                content_sha256: false,
                ..header()
            },
            unchanged,
            T0,
            Some(S3ErrorCode::InvalidRequest),
        ),
    ];
    for r in rows {
        let mut sent = r.signing.sign();
        (r.change)(&mut sent);
        let got = check("GET", &sent.path, &sent.query, &sent.headers, r.now);
        match (got, r.expected) {
            (Ok(v), None) => assert_eq!(v.access_key_id, AK, "{}", r.name),
            (Err(e), Some(code)) => assert_eq!(e.code, code, "{}: {}", r.name, e.message),
            (got, expected) => panic!("{}: expected {expected:?}, got {got:?}", r.name),
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
