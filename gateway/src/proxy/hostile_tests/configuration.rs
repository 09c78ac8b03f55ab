//! The configuration a request runs under: one set from start to end
//! (a reload mid-request changes nothing for it), and bucket names that
//! differ only in case never reach another bucket's rules.

use pingora::proxy::ProxyHttp;
use std::sync::Arc;

use super::{build, build_with, signed, CONFIG};
use crate::keys::Providers;

/// A request keeps the configuration it began with: a reload that removes
/// its client while it runs neither fails it nor mixes two sets into it;
/// the next request sees the new set.
#[test]
fn a_request_keeps_the_configuration_it_began_with() {
    let gw = build();
    let req = signed("GET", "s3.sealgate.test", "/team-a/k", "", None).unwrap();
    let mut begun = gw.new_ctx();
    let without = CONFIG.replace("access_key_id: NARROWKEY", "access_key_id: OTHERKEY");
    let config = Arc::new(
        sealgate_config::load_str(&without, &|_| None)
            .unwrap()
            .config,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let providers = rt.block_on(Providers::from_config(&config, None)).unwrap();
    gw.live
        .store(Arc::new(crate::live::Live::new(config, providers)));
    assert!(
        gw.authenticate(&req, &mut begun).is_ok(),
        "begun before the reload: its own set"
    );
    let mut later = gw.new_ctx();
    let Err(refused) = gw.authenticate(&req, &mut later) else {
        panic!("begun after the reload: the client is gone");
    };
    assert_eq!(
        refused.code,
        sealgate_filters::s3::S3ErrorCode::InvalidAccessKeyId
    );
}

/// The finding: a bucket name with capitals matched a `*` grant but not
/// the exact policy of its lowercase name, so on a backend that folds
/// names (or by virtual host, always) it could reach the mandatory bucket
/// unencrypted. Refused wherever its lowercase name has rules of its own.
#[test]
fn capitals_never_reach_another_buckets_rules() {
    let with_policy = CONFIG.replace(
        "auth:",
        "encryption:\n  local:\n    master_key: dGVzdGtleQ==\n  policies:\n    - bucket_pattern: \"team-billing\"\n      key_provider: local\n      mandatory: true\nauth:",
    );
    let gw = build_with(&with_policy);
    let code = |path: &str| {
        let req = signed("GET", "gateway:8080", path, "", None).unwrap();
        gw.authenticate(&req, &mut gw.new_ctx())
            .err()
            .map(|e| e.code)
    };
    use sealgate_filters::s3::S3ErrorCode::InvalidBucketName;
    assert_eq!(code("/team-BILLING/k"), Some(InvalidBucketName));
    assert_eq!(code("/TEAM-SECURE/k"), Some(InvalidBucketName), "an alias");
    assert_eq!(
        code("/VAULT-UPSTREAM/k"),
        Some(InvalidBucketName),
        "a real name"
    );
    assert_eq!(code("/team-billing/k"), None);
    assert_eq!(
        code("/team-Legacy/k"),
        None,
        "nothing configured for team-legacy"
    );
    let virtual_host = with_policy.replace(
        "    endpoint: http://127.0.0.1:9\n",
        "    endpoint: http://127.0.0.1:9\n    addressing_style: virtual\n",
    );
    let gw = build_with(&virtual_host);
    let req = signed("GET", "gateway:8080", "/team-Legacy/k", "", None).unwrap();
    let refused = gw
        .authenticate(&req, &mut gw.new_ctx())
        .err()
        .map(|e| e.code);
    assert_eq!(refused, Some(InvalidBucketName), "by virtual host, always");
}
