//! SigV4 signing of the requests the gateway sends upstream under its own
//! credentials. It builds the canonical request [`super::verify`] checks,
//! but streams it into the hash instead of formatting strings, and the
//! derived key is kept for the day ([`ScopedKey`]): signing runs on every
//! proxied request, so its cost shows directly in small-object throughput.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use hmac::Mac;

use super::{hex32, signing_key, HmacSha256, ALGORITHM};

/// What a signature covers, in exactly the form the upstream receives it.
pub struct ToSign<'a> {
    pub method: &'a str,
    /// The path as sent, each segment already URI-encoded once.
    pub path: &'a str,
    /// The query as sent (without `?`): `k=v` pairs joined by `&`, each
    /// side already URI-encoded.
    pub query: &'a str,
    /// Headers to sign: lowercase names in any order; a repeated name's
    /// values are joined with commas, in the order given.
    pub headers: &'a [(&'a str, &'a str)],
    /// `x-amz-content-sha256` as sent.
    pub payload_hash: &'a str,
    /// `x-amz-date` as sent (`yyyymmddThhmmssZ`).
    pub amz_date: &'a str,
}

/// A derived signing key with its credential scope: valid for one access
/// key, day and region, so the four HMACs of the derivation run once a day
/// rather than once a request. The key is zeroized on drop.
pub struct ScopedKey {
    access_key_id: String,
    /// The secret the key was derived from: a secret replaced under the
    /// same access key id must not keep signing with the old key. Kept
    /// (zeroized on drop, like the key) rather than hashed, so checking a
    /// key against the current credentials on every request is a
    /// constant-time compare, not a SHA-256 run inside the caller's lock.
    secret: Zeroizing<Vec<u8>>,
    date: String,
    /// `yyyymmdd/region/s3/aws4_request`
    scope: String,
    key: Zeroizing<[u8; 32]>,
}

impl ScopedKey {
    /// Derives the key of `secret` for `date` (`yyyymmdd`) and `region`.
    pub fn new(access_key_id: &str, secret: &[u8], date: &str, region: &str) -> Self {
        Self {
            access_key_id: access_key_id.to_string(),
            secret: Zeroizing::new(secret.to_vec()),
            date: date.to_string(),
            scope: format!("{date}/{region}/s3/aws4_request"),
            key: signing_key(secret, date, region, "s3"),
        }
    }

    /// True if this key signs for `access_key_id` with `secret` on `date`
    /// (`yyyymmdd`).
    pub fn fits(&self, access_key_id: &str, secret: &[u8], date: &str) -> bool {
        self.access_key_id == access_key_id
            && self.date == date
            && bool::from(self.secret.as_slice().ct_eq(secret))
    }

    /// The `Authorization` value for an outgoing request as it stands:
    /// signs `host`, every `x-amz-*` header, `content-md5` and
    /// `content-type` (what S3 wants signed, and every header a proxy
    /// sets), the path and query as they will be sent, `payload_hash` as
    /// `x-amz-content-sha256` and `amz_date` as `x-amz-date` (both already
    /// set on `headers`). Values are signed as the bytes that are sent, so
    /// UTF-8 metadata a client signed reaches the backend signed too; a
    /// value that is not UTF-8 at all cannot be, and is left out for the
    /// backend to refuse (the client's own check reads it lossily).
    pub fn authorize_request(
        &self,
        method: &str,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        payload_hash: &str,
        amz_date: &str,
    ) -> String {
        let signed: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(n, _)| {
                let n = n.as_str();
                n == "host" || n.starts_with("x-amz-") || n == "content-md5" || n == "content-type"
            })
            .filter_map(|(n, v)| Some((n.as_str(), std::str::from_utf8(v.as_bytes()).ok()?)))
            .collect();
        self.authorization(&ToSign {
            method,
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &signed,
            payload_hash,
            amz_date,
        })
    }

    /// The `Authorization` header value for `req`, whose date must fall on
    /// this key's day.
    pub fn authorization(&self, req: &ToSign) -> String {
        debug_assert!(req.amz_date.starts_with(&self.date));
        let mut headers = req.headers.to_vec();
        headers.sort_by(|a, b| a.0.cmp(b.0));
        let mut signed_headers = String::with_capacity(headers.len() * 16);
        let mut canonical = Sha256::new();
        canonical.update(req.method.as_bytes());
        canonical.update(b"\n");
        canonical.update(req.path.as_bytes());
        canonical.update(b"\n");
        hash_canonical_query(&mut canonical, req.query);
        canonical.update(b"\n");
        let mut previous: Option<&str> = None;
        for (name, value) in &headers {
            if previous == Some(name) {
                canonical.update(b",");
            } else {
                if previous.is_some() {
                    canonical.update(b"\n");
                    signed_headers.push(';');
                }
                signed_headers.push_str(name);
                canonical.update(name.as_bytes());
                canonical.update(b":");
                previous = Some(name);
            }
            hash_collapsed(&mut canonical, value);
        }
        if previous.is_some() {
            canonical.update(b"\n");
        }
        canonical.update(b"\n");
        canonical.update(signed_headers.as_bytes());
        canonical.update(b"\n");
        canonical.update(req.payload_hash.as_bytes());
        // The string to sign goes straight into the MAC, and the header is
        // assembled in one buffer: no formatting on the per-request path.
        let mut mac = HmacSha256::new_from_slice(&self.key[..]).expect("HMAC takes any key length");
        for part in [ALGORITHM, "\n", req.amz_date, "\n", &self.scope, "\n"] {
            mac.update(part.as_bytes());
        }
        mac.update(hex32(&canonical.finalize().into()).as_bytes());
        let signature = hex32(&mac.finalize().into_bytes().into());
        [
            ALGORITHM,
            " Credential=",
            &self.access_key_id,
            "/",
            &self.scope,
            ", SignedHeaders=",
            &signed_headers,
            ", Signature=",
            signature.as_str(),
        ]
        .concat()
    }
}

/// Hashes the canonical query: the encoded pairs sorted by name, then value.
fn hash_canonical_query(h: &mut Sha256, query: &str) {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            h.update(b"&");
        }
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
}

/// Hashes a header value trimmed, with inner runs of whitespace as one space.
fn hash_collapsed(h: &mut Sha256, value: &str) {
    for (i, word) in value.split_whitespace().enumerate() {
        if i > 0 {
            h.update(b" ");
        }
        h.update(word.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    //! The worked examples of the Amazon S3 API reference ("Signature
    //! Calculations for the Authorization Header"), signed instead of verified.
    use super::*;
    use crate::s3::auth::sigv4::EMPTY_SHA256;

    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SK: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20130524T000000Z";

    fn key() -> ScopedKey {
        ScopedKey::new(AK, SK, "20130524", "us-east-1")
    }

    fn signature(auth: &str) -> &str {
        auth.rsplit_once("Signature=").unwrap().1
    }

    #[test]
    fn aws_example_get_object() {
        let headers = [
            ("x-amz-date", DATE),
            ("range", "bytes=0-9"),
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_SHA256),
        ];
        let auth = key().authorization(&ToSign {
            method: "GET",
            path: "/test.txt",
            query: "",
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            amz_date: DATE,
        });
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn aws_example_put_object_with_padded_header_values() {
        let hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("date", "  Fri,  24 May 2013 00:00:00 GMT "),
            ("x-amz-date", DATE),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", hash),
        ];
        let auth = key().authorization(&ToSign {
            method: "PUT",
            path: "/test%24file.text",
            query: "",
            headers: &headers,
            payload_hash: hash,
            amz_date: DATE,
        });
        assert_eq!(
            signature(&auth),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn aws_example_list_sorts_the_query() {
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", DATE),
            ("x-amz-content-sha256", EMPTY_SHA256),
        ];
        let sign = |query: &str| {
            key().authorization(&ToSign {
                method: "GET",
                path: "/",
                query,
                headers: &headers,
                payload_hash: EMPTY_SHA256,
                amz_date: DATE,
            })
        };
        let expected = "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7";
        assert_eq!(signature(&sign("max-keys=2&prefix=J")), expected);
        assert_eq!(signature(&sign("prefix=J&max-keys=2")), expected);
        assert_eq!(
            signature(&sign("lifecycle")),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        assert_eq!(
            signature(&sign("lifecycle=")),
            signature(&sign("lifecycle"))
        );
    }

    /// An outgoing request signs what S3 wants signed and what a proxy
    /// sets, and leaves the rest (`user-agent`, hop-by-hop headers) out.
    #[test]
    fn an_outgoing_request_signs_host_amz_and_content_headers_only() {
        let mut headers = http::HeaderMap::new();
        for (n, v) in [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", DATE),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-meta-colour", "blue"),
            ("content-type", "text/plain"),
            ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
            ("user-agent", "aws-cli/2"),
            ("connection", "keep-alive"),
        ] {
            headers.insert(n, http::HeaderValue::from_static(v));
        }
        let uri: http::Uri = "/test.txt?tagging".parse().unwrap();
        let got = key().authorize_request("GET", &uri, &headers, EMPTY_SHA256, DATE);
        let listed: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(n, _)| !matches!(n.as_str(), "user-agent" | "connection"))
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        let want = key().authorization(&ToSign {
            method: "GET",
            path: "/test.txt",
            query: "tagging",
            headers: &listed,
            payload_hash: EMPTY_SHA256,
            amz_date: DATE,
        });
        assert_eq!(got, want);
        assert!(got.contains(
            "SignedHeaders=content-md5;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-colour,"
        ));
    }

    /// Header values are signed as sent: UTF-8 metadata is signed (it was
    /// once left out, so a backend that checks refused the request), and
    /// bytes that are no text at all are left out rather than guessed at.
    #[test]
    fn an_outgoing_request_signs_utf8_values_as_sent() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", http::HeaderValue::from_static("b.s3.example"));
        headers.insert("x-amz-date", http::HeaderValue::from_static(DATE));
        let city = "Z\u{fc}rich";
        headers.insert(
            "x-amz-meta-city",
            http::HeaderValue::from_bytes(city.as_bytes()).unwrap(),
        );
        headers.insert(
            "x-amz-meta-raw",
            http::HeaderValue::from_bytes(b"a\xffb").unwrap(),
        );
        let uri: http::Uri = "/k".parse().unwrap();
        let got = key().authorize_request("PUT", &uri, &headers, EMPTY_SHA256, DATE);
        let want = key().authorization(&ToSign {
            method: "PUT",
            path: "/k",
            query: "",
            headers: &[
                ("host", "b.s3.example"),
                ("x-amz-date", DATE),
                ("x-amz-meta-city", city),
            ],
            payload_hash: EMPTY_SHA256,
            amz_date: DATE,
        });
        assert_eq!(got, want);
        assert!(got.contains("SignedHeaders=host;x-amz-date;x-amz-meta-city,"));
    }

    #[test]
    fn a_key_fits_one_access_key_and_day() {
        let k = key();
        assert!(k.fits(AK, SK, "20130524"));
        assert!(!k.fits(AK, SK, "20130525"));
        assert!(!k.fits("AKIDOTHER", SK, "20130524"));
        assert!(!k.fits(AK, b"a rotated secret", "20130524"));
    }
}
