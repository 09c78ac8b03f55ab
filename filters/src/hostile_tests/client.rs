//! What a client sends before or during authentication: POST forms and
//! their policies, CORS preflights (against any rules), upload-id tokens,
//! SigV4 and SigV2 fields, and the ListMultipartUploads query.

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::{changed, cut, syntax, text};
use crate::s3::auth::post_policy::PostPolicy;
use crate::s3::auth::{sigv2, sigv4};
use crate::s3::body::post_form::{self, FormReader};
use crate::s3::cors::{check_preflight, Cors};
use crate::s3::multipart::upload_id::UploadToken;
use crate::s3::multipart::upload_records::cap_max_uploads;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// A POST form's boundary from any Content-Type, and its start read in
    /// any pieces: the same answer as read whole, for work linear in the
    /// bytes read.
    #[test]
    fn any_form_in_any_pieces_reads_as_whole(
        content_type in text(&["multipart/form-data", "; ", "boundary=", "\"", "b7", "----x", ",", "text/plain"], 12),
        fields in prop::collection::vec(
            (prop::sample::select(&["key", "policy", "x-amz-meta-a", "acl", "KEY"][..]), text(&["v", "b7", "--b7", "\r\n", "\r\n\r\n"], 6)),
            0..4,
        ),
        filename in any::<bool>(),
        noise in syntax(&["--b7", "\r\n", "Content-Disposition: form-data; name=\"", "file", "\"", "\r\n\r\n"], 12),
        flip in any::<Option<(usize, u8)>>(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        // A well-formed form most of the time (so that its delimiters fall
        // across the cuts), then one byte changed or junk appended.
        let mut body = Vec::new();
        for (name, value) in &fields {
            body.extend_from_slice(format!("--b7\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
        }
        let file = if filename { "; filename=\"a.txt\"" } else { "" };
        body.extend_from_slice(format!("--b7\r\nContent-Disposition: form-data; name=\"file\"{file}\r\nContent-Type: text/plain\r\n\r\nf").as_bytes());
        body.extend_from_slice(&noise);
        changed(&mut body, flip);
        if let Ok(b) = post_form::boundary(&content_type) {
            prop_assert!(!b.is_empty() && b.len() <= 70, "{:?}", b);
        }
        let whole = post_form::parse_start(&body, "b7");
        let mut reader = FormReader::new("b7");
        let mut read = 0;
        let mut piecewise = Ok(None);
        for piece in cut(&body, &cuts) {
            read += piece.len();
            piecewise = reader.push(&piece);
            if !matches!(piecewise, Ok(None)) {
                break;
            }
        }
        prop_assert!(reader.scanned() <= read * ("b7".len() + 4));
        match (piecewise, whole) {
            (Ok(Some(a)), Ok(Some(b))) => prop_assert_eq!(a, b),
            (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "piecewise found {:?}, whole found {:?}", a.map(|s| s.is_some()), b.map(|s| s.is_some())),
        }
    }

    /// Any policy field: as sent, and as base64 of a policy document
    /// (expiration, conditions of every kind with any values), one byte of
    /// it changed half the time.
    #[test]
    fn any_post_policy_is_parsed_or_refused(
        raw in text(&["eyJ", "=", "+", "/", "A"], 20),
        expiration in prop_oneof![
            Just("2030-01-01T00:00:00.000Z".to_string()),
            Just("2030-01-01T00:00:00Z".to_string()),
            "[0-9TZ:.+-]{0,30}",
        ],
        conditions in prop::collection::vec(
            prop_oneof![
                ("[a-z$-]{0,12}", "[ -~]{0,12}").prop_map(|(k, v)| format!("{{\"{k}\":\"{v}\"}}")),
                (prop::sample::select(&["eq", "starts-with", "EQ", "other"][..]), "[$a-z-]{0,16}", "[ -~]{0,12}")
                    .prop_map(|(op, k, v)| format!("[\"{op}\",\"{k}\",\"{v}\"]")),
                (any::<i64>(), any::<u64>()).prop_map(|(a, b)| format!("[\"content-length-range\",{a},{b}]")),
                Just("[\"content-length-range\",1e400,2]".to_string()),
                Just("null".to_string()),
            ],
            0..8,
        ),
        flip in prop::option::weighted(0.5, (any::<usize>(), any::<u8>())),
    ) {
        let _ = PostPolicy::parse(&raw);
        let mut json = format!(
            "{{\"expiration\":\"{expiration}\",\"conditions\":[{}]}}",
            conditions.join(",")
        )
        .into_bytes();
        changed(&mut json, flip);
        let _ = PostPolicy::parse(&base64::engine::general_purpose::STANDARD.encode(json));
    }

    /// Any CORS configuration from the backend (rules of any fields and
    /// values, one byte changed half the time), and any preflight against
    /// it.
    #[test]
    fn any_cors_rules_and_preflight_are_answered(
        rules in prop::collection::vec(
            prop::collection::vec(
                (
                    prop::sample::select(&["AllowedOrigin", "AllowedMethod", "AllowedHeader", "ExposeHeader", "MaxAgeSeconds", "ID", "Other"][..]),
                    prop_oneof![
                        prop::sample::select(&["*", "https://a.example", "https://*.example", "http://*", "GET", "PUT", "HEAD", "x-amz-*", "content-type", "3000", "-1", "99999999999999999999", "", "&amp;", "**"][..]).prop_map(str::to_string),
                        "[ -~]{0,16}",
                    ],
                ),
                0..8,
            ),
            0..4,
        ),
        flip in prop::option::weighted(0.5, (any::<usize>(), any::<u8>())),
        origin in text(&["https://a.example", "https://b.a.example", "*", "http://", ":8080", ""], 4),
        method in text(&["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS"], 2),
        headers in text(&["x-amz-date", ",", " ", "content-type", "x-amz-meta-a", "*", "\u{0}"], 8),
    ) {
        let mut xml = String::from("<CORSConfiguration>");
        for rule in &rules {
            xml.push_str("<CORSRule>");
            for (name, value) in rule {
                xml.push_str(&format!("<{name}>{value}</{name}>"));
            }
            xml.push_str("</CORSRule>");
        }
        xml.push_str("</CORSConfiguration>");
        let mut xml = xml.into_bytes();
        changed(&mut xml, flip);
        if let Ok(cors) = Cors::parse(&xml) {
            let _ = cors.preflight(&origin, &method, Some(&headers));
            let _ = cors.response(&origin, &http::Method::GET);
        }
        let _ = check_preflight(Some(&origin), Some(&method));
    }

    /// Any upload id a client sends (as text, and as the token's own
    /// framing of length-prefixed fields with any lengths and contents):
    /// only well-formed tokens decode, and a decoded token encodes back to
    /// itself.
    #[test]
    fn any_upload_id_is_decoded_or_refused(
        id in text(&["sgmp3.", "AAAA", "_", "-", ".", "=", "~", "%2F"], 30),
        fields in prop::collection::vec(
            (
                prop::option::weighted(0.05, any::<u32>()),
                prop_oneof![
                    3 => "[ -~]{0,24}".prop_map(String::into_bytes),
                    1 => prop::collection::vec(any::<u8>(), 0..40),
                ],
            ),
            3..=5,
        ),
        checksum in prop::sample::select(&["", ";crc32c", "CRC32/COMPOSITE;crc32c", "SHA256/FULL_OBJECT;none", "x;y", "CRC32"][..]),
        tail in prop_oneof![
            prop::collection::vec(any::<u8>(), 96..=96),
            prop::collection::vec(any::<u8>(), 0..100),
        ],
    ) {
        // The token's framing: length-prefixed fields (upload id, provider,
        // key id, wrapped key; the length right, mostly), the checksum
        // field, then the salt, commitment and MAC.
        let mut raw = Vec::new();
        for (len, bytes) in fields.iter().map(|(l, b)| (*l, &b[..])).chain([(None, checksum.as_bytes())]) {
            let len = len.unwrap_or(bytes.len() as u32);
            raw.extend_from_slice(&len.to_be_bytes());
            raw.extend_from_slice(bytes);
        }
        raw.extend_from_slice(&tail);
        let framed = format!(
            "sgmp3.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        for id in [id, framed] {
            let _ = UploadToken::is_gateway_id(&id);
            if let Some(t) = UploadToken::decode(&id) {
                prop_assert_eq!(UploadToken::decode(&t.encode()), Some(t));
            }
        }
    }

    /// Any Authorization header (its fields in any order and form, a
    /// signature of the right shape half the time) and any presigned query
    /// (every parameter present most of the time), in both signature
    /// versions: parsed or refused.
    #[test]
    fn any_authorization_is_parsed_or_refused(
        value in syntax(&["AWS4-HMAC-SHA256 ", "AWS ", "Credential=", "AKID", "/20260101/us-east-1/s3/aws4_request", "/", ",", " ", "SignedHeaders=", "host;x-amz-date", ";", "Signature=", ":", "="], 20),
        signature in prop_oneof!["[0-9a-f]{64}", "[0-9a-fA-F]{0,70}"],
        query in prop::collection::vec(
            (
                prop::sample::select(&["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature", "AWSAccessKeyId", "Signature", "Expires", "x-amz-security-token", "uploads"][..]),
                text(&["AWS4-HMAC-SHA256", "AKID/20260101/us-east-1/s3/aws4_request", "20260101T000000Z", "604800", "0", "-1", "99999999999999999999", "1767225600", "host", "host;x-amz-date", ";", "ab12"], 3),
            ),
            0..9,
        ),
        all_presign in any::<bool>(),
    ) {
        let mut query: Vec<(String, String)> = query.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if all_presign {
            for (k, v) in [
                ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
                ("X-Amz-Credential", "AKID/20260101/us-east-1/s3/aws4_request"),
                ("X-Amz-Date", "20260101T000000Z"),
                ("X-Amz-Expires", "3600"),
                ("X-Amz-SignedHeaders", "host"),
                ("X-Amz-Signature", signature.as_str()),
            ] {
                if !query.iter().any(|(n, _)| n == k) {
                    query.push((k.to_string(), v.to_string()));
                }
            }
        }
        let raw: String = query
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace(['&', '#'], "")))
            .collect::<Vec<_>>()
            .join("&");
        let mut value = value;
        value.extend_from_slice(signature.as_bytes());
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.insert(http::header::AUTHORIZATION, v.clone());
            headers.insert(HeaderName::from_static("x-amz-date"), v);
        }
        let _ = sigv4::parse(&query, &headers);
        let _ = sigv2::parse(&query, &headers);
        let _ = sigv2::hoist(&raw, &headers);
        let unsigned = HeaderMap::new();
        let _ = sigv4::parse(&query, &unsigned);
        let _ = sigv2::parse(&query, &unsigned);
    }

    /// Any ListMultipartUploads query the client sends reaches the backend
    /// asking for at most `cap` uploads in every `max-uploads` it holds
    /// (a bare one included), its other parameters kept.
    #[test]
    fn any_upload_listing_query_is_capped(
        pairs in prop::collection::vec(
            prop_oneof![
                Just("uploads".to_string()),
                Just("max-uploads".to_string()),
                "max-uploads=[0-9-]{0,22}",
                "[a-z-]{1,12}=[ -%'-~]{0,8}",
                Just("prefix=a%26max-uploads%3D9".to_string()),
            ],
            0..6,
        ),
        cap in 1usize..2000,
    ) {
        let asked = format!("/b?{}", pairs.join("&"));
        let sent = cap_max_uploads(&asked, cap);
        let (_, query) = sent.split_once('?').unwrap();
        let params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        let caps: Vec<&str> = params
            .iter()
            .filter(|p| p.split('=').next() == Some("max-uploads"))
            .copied()
            .collect();
        prop_assert!(!caps.is_empty(), "{}", sent);
        for c in caps {
            let n: usize = c.strip_prefix("max-uploads=").and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
            prop_assert!(n <= cap, "{} from {}", sent, asked);
        }
        for p in pairs.iter().filter(|p| !p.is_empty() && p.split('=').next() != Some("max-uploads")) {
            prop_assert!(params.contains(&p.as_str()), "{} lost from {}", p, sent);
        }
    }
}
