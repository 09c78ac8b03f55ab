//! Signature Version 2, as the aws cli v1 and boto3 send it by default
//! (presigned URLs and POST policies in us-east-1) and as a client
//! configured for it signs every call, through an encrypting gateway on
//! every backend; hostile variants of each; and `auth.signature_v2: false`.

mod common;

use common::*;

const DEFAULTS: &str = include_str!("py/sigv2_defaults.py");

#[test]
fn v2_presigned_urls_forms_and_headers_work_and_hold() {
    for backend in every_backend(&["demo", "team-a"]) {
        let gw = encrypted_gateway(&*backend);
        let (id, secret) = backend.credentials();
        assert_eq!(
            python_ok(
                DEFAULTS,
                &[
                    &gw.url(),
                    &backend.url(),
                    id,
                    secret,
                    READER_KEY,
                    READER_SECRET,
                    TEAM_KEY,
                    TEAM_SECRET
                ]
            )
            .trim(),
            "ok",
            "{}",
            backend.name()
        );
        // Operators see V2 in use before turning it off.
        let (_, text) = gw.admin_get("/metrics");
        let v2 = metric(&text, "sealgate_signature_v2_requests_total").unwrap();
        assert!(v2 >= 20.0, "{v2}");
    }
}

const OFF: &str = r#"
import sys, urllib.error, urllib.request, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
url = s3.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": "k"})
assert "AWSAccessKeyId=" in url, url
try:
    urllib.request.urlopen(url)
    raise SystemExit("a V2 URL was served")
except urllib.error.HTTPError as e:
    body = e.read()
    assert e.code == 400 and b"<Code>InvalidRequest</Code>" in body, (e.code, body)
    assert b"auth.signature_v2" in body, body
# Header V2 and a V2 form: refused the same way.
from botocore.config import Config
import requests
v2 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  config=Config(signature_version="s3", retries={"max_attempts": 1}))
try:
    v2.put_object(Bucket="demo", Key="k", Body=b"x")
    raise SystemExit("a V2 header request was served")
except boto3.exceptions.botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidRequest", e.response
post = s3.generate_presigned_post("demo", "k")
assert "AWSAccessKeyId" in post["fields"], post
r = requests.post(post["url"], data=post["fields"], files={"file": ("k", b"x")})
assert r.status_code == 400 and "<Code>InvalidRequest</Code>" in r.text, (r.status_code, r.text)
print("ok")
"#;

/// With `auth.signature_v2: false` a V2 request is refused, naming the
/// setting.
#[test]
fn signature_v2_can_be_turned_off() {
    let backend = Backend::start(&["demo"]);
    let gw = Gateway::start_with(
        &backend,
        &Options {
            extra: LOCAL_PROVIDER,
            auth_extra: "  signature_v2: false\n",
            ..Options::default()
        },
    );
    assert_eq!(python_ok(OFF, &[&gw.url()]).trim(), "ok");
    let (_, text) = gw.admin_get("/metrics");
    assert_eq!(
        metric(&text, "sealgate_signature_v2_requests_total"),
        Some(0.0)
    );
}
