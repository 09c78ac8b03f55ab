//! The examples of S3's "Signing and authenticating REST requests" (V2),
//! their signatures computed independently (Python's hmac over the strings
//! to sign the documentation gives), and hostile variants of each.

use super::*;

const POST_SIGNATURE: &str = "z2FpTfmSL1TfW0+6DFcFdFuPpwE=";
const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SKEW: i64 = 900;

struct Req {
    method: &'static str,
    path: &'static str,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    bucket: Option<&'static str>,
}

fn req(method: &'static str, path: &'static str, query: &[(&str, &str)]) -> Req {
    Req {
        method,
        path,
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        headers: HeaderMap::new(),
        bucket: Some("awsexamplebucket1"),
    }
}

impl Req {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.append(name, value.parse().unwrap());
        self
    }

    fn check(&self, now: i64) -> Result<PayloadHash, S3ErrorCode> {
        let parts = RequestParts {
            method: self.method,
            raw_path: self.path,
            query: &self.query,
            headers: &self.headers,
        };
        let auth = parse(&self.query, &self.headers)
            .map_err(|e| e.code)?
            .expect("a V2 request");
        assert_eq!(auth.access_key_id, ID);
        let resource = Resource {
            virtual_bucket: self.bucket,
        };
        verify(&auth, &parts, &resource, SECRET, now, SKEW).map_err(|e| e.code)
    }
}

fn signed(r: Req, signature: &str) -> Req {
    r.header("authorization", &format!("AWS {ID}:{signature}"))
}

fn get() -> Req {
    signed(
        req("GET", "/photos/puppy.jpg", &[]).header("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
        "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
    )
}
const GET_AT: i64 = 1_175_024_202;

#[test]
fn the_documented_examples_verify() {
    assert_eq!(get().check(GET_AT), Ok(PayloadHash::Unsigned));
    let put = req("PUT", "/photos/puppy.jpg", &[])
        .header("content-type", "image/jpeg")
        .header("content-length", "94328")
        .header("date", "Tue, 27 Mar 2007 21:15:45 +0000");
    assert!(signed(put, "iqRzw+ileNPu1fhspnRs8nOjjIA=")
        .check(1_175_030_145)
        .is_ok());
    // prefix, max-keys and marker are not signed (a listing's page).
    let list = req(
        "GET",
        "/",
        &[
            ("prefix", "photos"),
            ("max-keys", "50"),
            ("marker", "puppy"),
        ],
    )
    .header("date", "Tue, 27 Mar 2007 19:42:41 +0000");
    assert!(signed(list, "m0WP8eCtspQl5Ahe6L1SozdX9YA=")
        .check(1_175_024_561)
        .is_ok());
    let acl = || req("GET", "/", &[("acl", "")]).header("date", "Tue, 27 Mar 2007 19:44:46 +0000");
    assert!(signed(acl(), "82ZHiFIjc+WbcwFKGUVEQspPn+0=")
        .check(1_175_024_686)
        .is_ok());
    // The same bucket request path-style, with or without the slash.
    for path in ["/awsexamplebucket1", "/awsexamplebucket1/"] {
        let mut r = acl();
        r.path = path;
        r.bucket = None;
        assert!(
            signed(r, "82ZHiFIjc+WbcwFKGUVEQspPn+0=")
                .check(1_175_024_686)
                .is_ok(),
            "{path}"
        );
    }
    // Path-style, x-amz-date instead of Date (the Date line is then empty
    // even with a Date header).
    let mut delete = req("DELETE", "/awsexamplebucket1/photos/puppy.jpg", &[])
        .header("date", "Tue, 27 Mar 2007 21:20:27 +0000")
        .header("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000");
    delete.bucket = None;
    assert!(signed(delete, "Ri1hpB1zpS9pGqR7y8kuNFCl4sE=")
        .check(1_175_030_426)
        .is_ok());
    // Content-MD5, x-amz-* headers sorted (a header with two values is
    // one line, joined by a comma).
    let upload = || {
        let mut r = req("PUT", "/db-backup.dat.gz", &[])
            .header("date", "Tue, 27 Mar 2007 21:06:08 +0000")
            .header("x-amz-acl", "public-read")
            .header("content-type", "application/x-download")
            .header("content-md5", "4gJE4saaMU4BqNR0kLY+lw==")
            .header("x-amz-meta-reviewedby", "joe@example.com,jane@example.com")
            .header("x-amz-meta-filechecksum", "0x02661779")
            .header("x-amz-meta-checksumalgorithm", "crc32");
        r.bucket = Some("static.example.com");
        signed(r, "jtBQa0Aq+DkULFI8qrpwIjGEx0E=")
    };
    assert!(upload().check(1_175_029_568).is_ok());
    // Header auth does not sign the query's x-amz-*: refused.
    let mut added = upload();
    added
        .query
        .push(("x-amz-meta-note".into(), "unsigned".into()));
    assert_eq!(added.check(1_175_029_568), Err(S3ErrorCode::AccessDenied));
    // Nor a changed Content-MD5.
    let changed = upload();
    let mut changed = changed;
    changed
        .headers
        .insert("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg==".parse().unwrap());
    assert_eq!(
        changed.check(1_175_029_568),
        Err(S3ErrorCode::SignatureDoesNotMatch)
    );
    // Sub-resources sorted, values decoded.
    let multi = req(
        "GET",
        "/k",
        &[
            ("uploadId", "abc"),
            ("response-content-type", "text/plain"),
            ("partNumber", "2"),
        ],
    )
    .header("date", "Tue, 27 Mar 2007 19:44:46 +0000");
    assert!(signed(multi, "zxhsv3aqf2E63hZHz76+/2PyBQs=")
        .check(1_175_024_686)
        .is_ok());
}

#[test]
fn presigned_urls_verify_until_they_expire() {
    let url = |expires: &str, sig: &str| {
        req(
            "GET",
            "/photos/puppy.jpg",
            &[
                ("AWSAccessKeyId", ID),
                ("Expires", expires),
                ("Signature", sig),
            ],
        )
    };
    let good = url("1175139620", "1No4mq5ETf02z8aet9voy6gui6E=");
    assert!(good.check(1_175_139_620 - 3600).is_ok());
    assert!(good.check(1_175_139_620).is_ok());
    assert_eq!(good.check(1_175_139_621), Err(S3ErrorCode::AccessDenied));
    // Longer than SigV4 allows: refused even if signed.
    assert_eq!(
        good.check(1_175_139_620 - 8 * 24 * 3600),
        Err(S3ErrorCode::AccessDenied)
    );
    // The expiry is signed: moved, the signature fails.
    assert_eq!(
        url("1175139621", "1No4mq5ETf02z8aet9voy6gui6E=").check(1_175_100_000),
        Err(S3ErrorCode::SignatureDoesNotMatch)
    );
    assert_eq!(
        url("soon", "1No4mq5ETf02z8aet9voy6gui6E=").check(1_175_100_000),
        Err(S3ErrorCode::AccessDenied)
    );
    // Replayed against another bucket, another key, another method.
    let mut other = url("1175139620", "1No4mq5ETf02z8aet9voy6gui6E=");
    other.bucket = Some("awsexamplebucket2");
    assert_eq!(
        other.check(1_175_100_000),
        Err(S3ErrorCode::SignatureDoesNotMatch)
    );
    let mut other = url("1175139620", "1No4mq5ETf02z8aet9voy6gui6E=");
    other.path = "/photos/kitten.jpg";
    assert_eq!(
        other.check(1_175_100_000),
        Err(S3ErrorCode::SignatureDoesNotMatch)
    );
    let mut other = url("1175139620", "1No4mq5ETf02z8aet9voy6gui6E=");
    other.method = "PUT";
    assert_eq!(
        other.check(1_175_100_000),
        Err(S3ErrorCode::SignatureDoesNotMatch)
    );
    // A header the holder adds (a copy source) is signed: refused.
    let added =
        url("1175139620", "1No4mq5ETf02z8aet9voy6gui6E=").header("x-amz-copy-source", "/secret/k");
    assert_eq!(
        added.check(1_175_100_000),
        Err(S3ErrorCode::SignatureDoesNotMatch)
    );
    // A sub-resource the holder adds is signed: refused.
    let mut added = url("1175139620", "1No4mq5ETf02z8aet9voy6gui6E=");
    added.query.push(("acl".into(), "".into()));
    assert_eq!(
        added.check(1_175_100_000),
        Err(S3ErrorCode::SignatureDoesNotMatch)
    );
    // A parameter that would change the operation and that V2 does not
    // sign: refused before any signature is computed.
    for name in ["attributes", "legal-hold", "retention", "uploadIdx"] {
        let mut added = url("1175139620", "1No4mq5ETf02z8aet9voy6gui6E=");
        added.query.push((name.into(), "".into()));
        assert_eq!(
            added.check(1_175_100_000),
            Err(S3ErrorCode::AccessDenied),
            "{name}"
        );
    }
    // Incomplete.
    let partial = req("GET", "/k", &[("AWSAccessKeyId", ID), ("Signature", "x")]);
    assert_eq!(partial.check(0), Err(S3ErrorCode::AccessDenied));
}

#[test]
fn tampered_or_stale_header_requests_are_refused() {
    assert_eq!(
        get().check(GET_AT + SKEW + 1),
        Err(S3ErrorCode::RequestTimeTooSkewed)
    );
    assert_eq!(
        get().check(GET_AT - SKEW - 1),
        Err(S3ErrorCode::RequestTimeTooSkewed)
    );
    let wrong = |sig: &str| {
        signed(
            req("GET", "/photos/puppy.jpg", &[]).header("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
            sig,
        )
        .check(GET_AT)
    };
    for sig in [
        "qgk2+6Sv9/oM7G3qLEjTH1a1l1h=",
        "qgk2+6Sv9/oM7G3qLEjTH1a1",
        "not base64!",
        "",
    ] {
        let code = if sig.is_empty() {
            S3ErrorCode::InvalidArgument
        } else {
            S3ErrorCode::SignatureDoesNotMatch
        };
        assert_eq!(wrong(sig), Err(code), "{sig}");
    }
    // Another key's secret.
    let r = get();
    let parts = RequestParts {
        method: r.method,
        raw_path: r.path,
        query: &r.query,
        headers: &r.headers,
    };
    let auth = parse(&r.query, &r.headers).unwrap().unwrap();
    let resource = Resource {
        virtual_bucket: r.bucket,
    };
    assert_eq!(
        verify(&auth, &parts, &resource, b"another secret", GET_AT, SKEW).map_err(|e| e.code),
        Err(S3ErrorCode::SignatureDoesNotMatch)
    );
    // A query parameter added to a header-signed request.
    let mut added = get();
    added.query.push(("versionId".into(), "1".into()));
    assert_eq!(added.check(GET_AT), Err(S3ErrorCode::SignatureDoesNotMatch));
    // No date at all.
    let undated = signed(
        req("GET", "/photos/puppy.jpg", &[]),
        "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
    );
    assert_eq!(undated.check(GET_AT), Err(S3ErrorCode::AccessDenied));
    // Chunk signatures need a V4 key.
    let chunked = get().header("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    assert_eq!(chunked.check(GET_AT), Err(S3ErrorCode::InvalidRequest));
}

#[test]
fn only_v2_requests_parse_as_v2() {
    let none = |q: &[(&str, &str)], auth: Option<&str>| {
        let mut r = req("GET", "/k", q);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        parse(&r.query, &r.headers).map(|a| a.is_none())
    };
    assert_eq!(none(&[], None), Ok(true));
    assert_eq!(
        none(
            &[],
            Some("AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host, Signature=y")
        ),
        Ok(true)
    );
    assert_eq!(
        none(
            &[
                ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
                ("AWSAccessKeyId", "x")
            ],
            None
        ),
        Ok(true)
    );
    assert_eq!(none(&[], Some("AWS AKID:sig")), Ok(false));
    assert!(none(&[], Some("AWS AKID")).is_err());
    assert!(none(&[], Some("AWS :sig")).is_err());
}

#[test]
fn post_policies_verify_under_the_key() {
    // Python: base64(hmac_sha1(SECRET, policy)).
    let policy = "eyJleHBpcmF0aW9uIjogIjIwMjYtMTItMDVUMDk6MzM6MDJaIiwgImNvbmRpdGlvbnMiOiBbeyJidWNrZXQiOiAiZGVtbyJ9LCB7ImtleSI6ICJrIn1dfQ==";
    let sig = POST_SIGNATURE;
    assert!(verify_post(policy, sig, SECRET).is_ok());
    assert_eq!(
        verify_post(policy, sig, b"another").map_err(|e| e.code),
        Err(S3ErrorCode::SignatureDoesNotMatch)
    );
    assert_eq!(
        verify_post(&policy.replace("eyJ", "eyK"), sig, SECRET).map_err(|e| e.code),
        Err(S3ErrorCode::SignatureDoesNotMatch)
    );
}

#[test]
fn a_presigned_urls_amz_parameters_become_headers() {
    let q = "AWSAccessKeyId=AK&Signature=s&x-amz-meta-a=b%20c&Expires=1&X-Amz-Copy-Source=demo%2Fsrc&acl";
    let h = hoist(q, &HeaderMap::new()).unwrap().unwrap();
    assert_eq!(h.query, "AWSAccessKeyId=AK&Signature=s&Expires=1&acl");
    let names: Vec<_> = h
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [("x-amz-meta-a", "b c"), ("x-amz-copy-source", "demo/src")]
    );
    // Also sent as a header, or twice: which would the backend take?
    let mut both = HeaderMap::new();
    both.insert("x-amz-meta-a", "d".parse().unwrap());
    assert_eq!(
        hoist(q, &both).unwrap_err().code,
        S3ErrorCode::InvalidArgument
    );
    assert_eq!(
        hoist(
            "AWSAccessKeyId=AK&x-amz-acl=a&X-AMZ-ACL=b",
            &HeaderMap::new()
        )
        .unwrap_err()
        .code,
        S3ErrorCode::InvalidArgument
    );
    // Not a V2 URL, or nothing to move: left alone.
    for q in [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&AWSAccessKeyId=AK&x-amz-acl=a",
        "x-amz-acl=a",
        "AWSAccessKeyId=AK&Signature=s&Expires=1",
    ] {
        assert!(hoist(q, &HeaderMap::new()).unwrap().is_none(), "{q}");
    }
    let mut signed = HeaderMap::new();
    signed.insert("authorization", "AWS AK:sig".parse().unwrap());
    assert!(hoist(q, &signed).unwrap().is_none());
    // Bounded before any signature is checked.
    let many = |n: usize| {
        let params: String = (0..n).map(|i| format!("&x-amz-meta-{i}=v")).collect();
        hoist(&format!("AWSAccessKeyId=AK{params}"), &HeaderMap::new())
    };
    assert_eq!(
        many(MAX_HOISTED_PARAMS).unwrap().unwrap().headers.len(),
        MAX_HOISTED_PARAMS
    );
    assert_eq!(
        many(MAX_HOISTED_PARAMS + 1).unwrap_err().code,
        S3ErrorCode::InvalidArgument
    );
}

#[test]
fn repeated_parameters_and_headers_are_refused_before_anything() {
    let r = req(
        "GET",
        "/k",
        &[
            ("AWSAccessKeyId", ID),
            ("Expires", "1"),
            ("Expires", "2"),
            ("Signature", "x"),
        ],
    );
    assert_eq!(
        parse(&r.query, &r.headers).unwrap_err().code,
        S3ErrorCode::InvalidArgument
    );
    let twice = get()
        .header("content-type", "a")
        .header("content-type", "b");
    assert_eq!(twice.check(GET_AT), Err(S3ErrorCode::InvalidArgument));
}
