//! A real browser (headless Chromium, Debian's `chromium`) on a page from
//! another origin: presigned PUTs and GETs (SigV4 and boto3's default V2)
//! and HTML form uploads (V4 and V2 policies) through an encrypting
//! gateway, on the backends that keep CORS rules.

mod common;

use common::*;

const CHROMIUM: &str = include_str!("py/browser_chromium.py");

#[test]
fn a_browser_uploads_and_reads_back_through_the_gateway() {
    assert!(
        std::process::Command::new("chromium")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "chromium is missing (apt-get install chromium)"
    );
    // s3s-fs keeps no CORS rules, so no page could use it.
    let backends: Vec<Box<dyn Upstream>> = vec![
        Box::new(Garage::start(&["demo"])),
        Box::new(Rgw::start(&["demo"])),
    ];
    for backend in backends {
        let gw = encrypted_gateway(&*backend);
        let (id, secret) = backend.credentials();
        assert_eq!(
            python_ok(CHROMIUM, &[&gw.url(), &backend.url(), id, secret]).trim(),
            "ok",
            "{}",
            backend.name()
        );
    }
}
