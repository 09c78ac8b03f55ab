//! Property test of the real auth and route stages: whatever Host, path,
//! query and copy source a client with narrow rights sends, a request that
//! gets through names upstream (as the backend will read it) only buckets
//! the client holds the needed permission in, and the object key it meant.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pingora::http::RequestHeader;
use pingora::proxy::ProxyHttp;
use proptest::prelude::*;
use sealgate_config::{Config, Permission};
use sealgate_filters::auth::permissions_in;
use sealgate_filters::permission;
use sealgate_filters::s3::request::classify;
use sealgate_filters::s3::sigv4::{format_amz_date, ScopedKey, ToSign, UNSIGNED_PAYLOAD};
use sealgate_filters::s3::uri;

use super::Gateway;
use crate::keys::Providers;
use crate::metrics::Metrics;
use crate::upstream::UpstreamTarget;

const KEY: &str = "NARROWKEY";
const SECRET: &str = "NARROWSECRET0123456789";

/// A client with data rights in `team-*`, read in `ops`, and an alias
/// whose real name must never be reached by typing it.
const CONFIG: &str = r#"
server:
  domains: ["s3.sealgate.test"]
storage:
  s3:
    endpoint: http://127.0.0.1:9
    credentials:
      access_key_id: UPSTREAM
      secret_access_key: upstreamsecret
    bucket_configs:
      team-secure:
        real_name: vault-upstream
auth:
  clients:
    - access_key_id: NARROWKEY
      secret_access_key: NARROWSECRET0123456789
      buckets:
        - "team-*"
        - pattern: "ops"
          permissions: [read]
"#;

/// One gateway for every case (building one per case dominated the run).
fn gateway() -> &'static Gateway {
    static GATEWAY: std::sync::OnceLock<Gateway> = std::sync::OnceLock::new();
    GATEWAY.get_or_init(build)
}

fn build() -> Gateway {
    let config = Arc::new(sealgate_config::load_str(CONFIG, &|_| None).unwrap().config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(UpstreamTarget::new(&config.upstream)).unwrap();
    let metrics = Metrics::register(prometheus::Registry::new()).unwrap();
    let providers = rt.block_on(Providers::from_config(&config, None)).unwrap();
    let live = crate::live::LiveState::from_pointee(crate::live::Live::new(config, providers));
    Gateway::new(Arc::new(live), Arc::new(upstream), Arc::new(metrics))
}

/// The client-visible name the rules use for an upstream bucket.
fn rules_name<'a>(config: &'a Config, real: &'a str) -> &'a str {
    config
        .buckets
        .iter()
        .find(|(_, b)| b.real_name.as_deref() == Some(real))
        .map_or(real, |(alias, _)| alias.as_str())
}

/// Builds and signs a request as the narrow client; `None` when the
/// generated parts are not an HTTP request at all.
fn signed(
    method: &str,
    host: &str,
    path: &str,
    query: &str,
    copy_source: Option<&str>,
) -> Option<RequestHeader> {
    let target = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let mut req = RequestHeader::build(method, target.as_bytes(), None).ok()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let date = format_amz_date(now);
    let mut headers = vec![
        ("host", host),
        ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        ("x-amz-date", date.as_str()),
    ];
    if let Some(src) = copy_source {
        headers.push(("x-amz-copy-source", src));
    }
    let key = ScopedKey::new(KEY, SECRET.as_bytes(), &date[..8], "us-east-1");
    let authorization = key.authorization(&ToSign {
        method,
        path,
        query,
        headers: &headers,
        payload_hash: UNSIGNED_PAYLOAD,
        amz_date: &date,
    });
    for (n, v) in headers {
        req.insert_header(n, v).ok()?;
    }
    req.insert_header("authorization", authorization).ok()?;
    Some(req)
}

/// Hostile bucket-ish text: names of granted, ungranted and aliased
/// buckets, and the characters that change how a host or path is read.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("team-a".to_string()),
        Just("team-secure".to_string()),
        Just("vault-upstream".to_string()),
        Just("ops".to_string()),
        Just("secret".to_string()),
        Just("/".to_string()),
        Just("%2F".to_string()),
        Just("%2f".to_string()),
        Just("?".to_string()),
        Just("..".to_string()),
        Just("%2E%2E".to_string()),
        Just(".".to_string()),
        Just("%00".to_string()),
        Just("%".to_string()),
        Just(".s3.sealgate.test".to_string()),
        Just(":8080".to_string()),
        Just("k".to_string()),
        "[a-z0-9.-]{1,8}",
    ]
}

/// Bucket names the client may use, may not use, and the aliased one.
fn bucket() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("team-a".to_string()),
        Just("team-secure".to_string()),
        Just("vault-upstream".to_string()),
        Just("ops".to_string()),
        Just("secret".to_string()),
        Just("team-x.y".to_string()),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(piece(), 0..max).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    #[test]
    fn only_granted_buckets_reach_the_backend(
        method in prop_oneof![Just("GET"), Just("PUT"), Just("DELETE"), Just("HEAD"), Just("POST")],
        host in prop_oneof![
            3 => Just("gateway:8080".to_string()),
            1 => bucket().prop_map(|b| format!("{b}.s3.sealgate.test")),
            1 => text(4).prop_map(|h| format!("{h}.s3.sealgate.test")),
            1 => text(4),
        ],
        path in prop_oneof![
            3 => (bucket(), text(4)).prop_map(|(b, k)| format!("/{b}/{k}")),
            1 => bucket().prop_map(|b| format!("/{b}")),
            1 => text(6).prop_map(|p| format!("/{p}")),
        ],
        query in prop_oneof![
            Just(""), Just("acl"), Just("policy"), Just("lifecycle"), Just("uploads"),
            Just("list-type=2"), Just("location"), Just("tagging"), Just("delete"),
            Just("partNumber=1&uploadId=x"), Just("unknownsub"),
        ],
        copy_source in proptest::option::of(prop_oneof![
            (bucket(), text(3)).prop_map(|(b, k)| format!("/{b}/{k}")),
            text(5),
        ]),
    ) {
        let gw = gateway();
        let Some(req) = signed(method, &host, &path, query, copy_source.as_deref()) else {
            return Ok(());
        };
        let mut ctx = gw.new_ctx();
        let Ok(auth) = gw.authenticate(&req, &mut ctx) else {
            return Ok(());
        };
        if gw.route(&req, &auth, &mut ctx).is_err() {
            return Ok(());
        }
        let grants = auth.identity.grants();
        // The upstream path as a backend reads it: the first segment of
        // the raw path, percent-decoded, is the bucket.
        let upstream = &ctx.route.upstream_path_and_query;
        let raw_path = upstream.split('?').next().unwrap();
        let mut segments = raw_path.trim_start_matches('/').splitn(2, '/');
        let bucket = uri::decode(segments.next().unwrap()).unwrap();
        if bucket.is_empty() {
            // ListBuckets: no bucket upstream (and its answer is filtered).
            prop_assert_eq!(auth.s3.operation, sealgate_filters::s3::Operation::ListBuckets);
        } else {
            let live = gw.live.load_full();
            let name = rules_name(&live.config, &bucket);
            let needed = permission::required(auth.s3.operation, &req.method, &auth.query, &req.headers)
                .expect("refused operations never route");
            prop_assert!(
                permissions_in(&grants, name).contains(needed),
                "{} {} reached bucket {} ({}) without {:?}", method, upstream, bucket, name, needed
            );
            // The typed real name of an alias never gets through.
            prop_assert!(auth.bucket.as_ref().unwrap().name != "vault-upstream");
            // The key upstream is the key the classifier saw.
            let key = segments.next().map(|k| uri::decode(k).unwrap()).unwrap_or_default();
            prop_assert_eq!(Some(key).filter(|k| !k.is_empty()), ctx.audit.key.clone());
        }
        if let Some(src) = &ctx.route.copy_source {
            let src_bucket = uri::decode(src.trim_start_matches('/').split('/').next().unwrap()).unwrap();
            prop_assert!(
                permissions_in(&grants, rules_name(&gw.live.load_full().config, &src_bucket)).contains(Permission::Read),
                "copy source {} readable", src
            );
        }
        // Whatever got through was classified the same way again.
        let again = classify(
            &req.method,
            Some(&host),
            req.uri.path(),
            &auth.query,
            &req.headers,
            &gw.live.load_full().config.server.domains,
        );
        prop_assert!(again.is_ok());
    }
}

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
