//! Browser POST uploads (HTML forms with a signed POST policy), built
//! with boto3's `generate_presigned_post` and sent by `requests`, on
//! s3s-fs and Garage.

mod common;

use common::*;

const UPLOADS: &str = include_str!("py/post_uploads.py");

#[test]
fn browser_post_uploads_are_encrypted_and_checked() {
    for backend in every_backend(&["demo"]) {
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

const ENVELOPE_FIELDS: &str = include_str!("py/post_envelope_fields.py");

/// The finding: a POST into a pass-through bucket stored client-chosen
/// `x-amz-meta-sealgate-*` fields (POST never reached the header strip).
/// On both backends, into an encrypting and a pass-through bucket, the
/// stored metadata holds none of them.
#[test]
fn form_envelope_fields_are_never_stored() {
    for backend in every_backend(&["enc", "plain", "other"]) {
        let gw = Gateway::start_with(
            &*backend,
            &Options {
                extra: &encrypting_only("enc"),
                ..Options::default()
            },
        );
        let (id, secret) = backend.credentials();
        assert_eq!(
            python_ok(ENVELOPE_FIELDS, &[&gw.url(), &backend.url(), id, secret]).trim(),
            "ok",
            "{}",
            backend.name()
        );
        assert!(backend.keys("other").is_empty(), "{}", backend.name());
    }
}
