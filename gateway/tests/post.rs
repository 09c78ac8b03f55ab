//! Browser POST uploads (HTML forms with a signed POST policy), built
//! with boto3's `generate_presigned_post` and sent by `requests`, on
//! s3s-fs and Garage.

mod common;

use common::*;

const UPLOADS: &str = include_str!("py/post_uploads.py");

#[test]
fn browser_post_uploads_are_encrypted_and_checked() {
    for backend in both_backends(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let (id, secret) = backend.credentials();
        assert_eq!(
            python_ok(UPLOADS, &[&gw.url(), &backend.url(), id, secret]).trim(),
            "ok",
            "{}",
            backend.name()
        );
    }
}
