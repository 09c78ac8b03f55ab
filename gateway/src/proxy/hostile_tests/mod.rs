//! Property test of the real auth and route stages: whatever Host, path,
//! query and copy source a client with narrow rights sends, a request that
//! gets through names upstream (as the backend will read it) only buckets
//! the client holds the needed permission in, and the object key it meant.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pingora::http::RequestHeader;
use pingora::proxy::ProxyHttp;
use proptest::prelude::*;
use sealgate_config::Config;
use sealgate_filters::s3::auth::sigv4::{format_amz_date, ScopedKey, ToSign, UNSIGNED_PAYLOAD};
use sealgate_filters::s3::request::classify;
use sealgate_filters::s3::uri;

use super::Gateway;
use crate::keys::Providers;
use crate::metrics::Metrics;
use crate::upstream::UpstreamTarget;

mod configuration;

const KEY: &str = "NARROWKEY";
const SECRET: &str = "NARROWSECRET0123456789";

/// A client with data rights in `team-*`, read in `ops`, and an alias
/// whose real name must never be reached by typing it.
pub(super) const CONFIG: &str = r#"
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

pub(super) fn build() -> Gateway {
    build_with(CONFIG)
}

pub(super) fn build_with(yaml: &str) -> Gateway {
    let config = Arc::new(sealgate_config::load_str(yaml, &|_| None).unwrap().config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(UpstreamTarget::new(&config.upstream)).unwrap();
    let metrics = Metrics::register(prometheus::Registry::new()).unwrap();
    let providers = rt.block_on(Providers::from_config(&config, None)).unwrap();
    let live = crate::live::LiveState::from_pointee(crate::live::Live::new(config, providers));
    Gateway::new(
        Arc::new(live),
        Arc::new(crate::upstream::Upstreams::single(Arc::new(upstream))),
        Arc::new(metrics),
    )
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
pub(super) fn signed(
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

/// What the backend reads from an upstream path, as one that maps keys
/// to file paths reads it: percent-decoded, then `.` and `..` segments
/// resolved and empty ones dropped (s3s-fs does this). The first
/// segment is the bucket, the rest the key.
fn as_a_path_backend_reads(raw_path: &str) -> (String, String) {
    let decoded = uri::decode(raw_path).unwrap();
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let bucket = out.first().map_or(String::new(), |b| b.to_string());
    let key = out.get(1..).map_or(String::new(), |k| k.join("/"));
    (bucket, key)
}

/// The independent table of what the narrow client may do, written from
/// its configuration and S3's semantics, not from the gateway's
/// permission code: `team-*` holds data rights (read, write, delete; no
/// bucket administration), `ops` reads only, nothing else is granted.
fn may(bucket: &str, method: &str, query: &str, has_key: bool) -> Result<(), String> {
    let team = bucket.starts_with("team-");
    let reads = matches!(method, "GET" | "HEAD");
    // Configuration of a bucket or object: only the administrator writes it.
    let config = ["acl", "policy", "lifecycle"].contains(&query)
        || (["tagging", "unknownsub"].contains(&query) && !has_key);
    match (team, bucket == "ops") {
        (false, false) => Err(format!("bucket {bucket} is not granted")),
        (false, true) if !reads => Err(format!("{method} in read-only {bucket}")),
        _ if !has_key && matches!(method, "PUT" | "DELETE") => {
            Err(format!("{method} of bucket {bucket} needs admin"))
        }
        _ if config && !reads => Err(format!("{method} ?{query} needs admin")),
        _ => Ok(()),
    }
}

/// How many generated requests of each kind got through: the property is
/// only as strong as the cases that reach its checks.
#[derive(Default, Debug)]
struct Routed {
    path_style: usize,
    virtual_host: usize,
    bucket_level: usize,
    copies: usize,
    refused: usize,
}

#[allow(clippy::too_many_arguments)]
fn one_case(
    gw: &Gateway,
    routed: &mut Routed,
    method: &str,
    host: &str,
    path: &str,
    query: &str,
    copy_source: Option<&str>,
) -> Result<(), TestCaseError> {
    let Some(req) = signed(method, host, path, query, copy_source) else {
        routed.refused += 1;
        return Ok(());
    };
    let mut ctx = gw.new_ctx();
    let Ok(auth) = gw.authenticate(&req, &mut ctx) else {
        routed.refused += 1;
        return Ok(());
    };
    if gw.route(&req, &auth, &mut ctx).is_err() {
        routed.refused += 1;
        return Ok(());
    }
    let upstream = &ctx.route.upstream_path_and_query;
    let raw_path = upstream.split('?').next().unwrap();
    let (bucket, key) = as_a_path_backend_reads(raw_path);
    // A literal backend reads the first raw segment as the bucket: both
    // readings must name the same bucket and key.
    let mut literal = raw_path.trim_start_matches('/').splitn(2, '/');
    let literal_bucket = uri::decode(literal.next().unwrap()).unwrap();
    let literal_key = literal
        .next()
        .map(|k| uri::decode(k).unwrap())
        .unwrap_or_default();
    prop_assert_eq!(&bucket, &literal_bucket, "{} {}", method, upstream);
    if bucket.is_empty() {
        // ListBuckets: no bucket upstream (and its answer is filtered).
        prop_assert_eq!(
            auth.s3.operation,
            sealgate_filters::s3::Operation::ListBuckets
        );
        return Ok(());
    }
    // The same key either way, but for empty segments a path backend
    // drops (`a//b` is `a/b` there: a key of the same bucket).
    let collapsed: Vec<&str> = literal_key.split('/').filter(|s| !s.is_empty()).collect();
    prop_assert_eq!(&key, &collapsed.join("/"), "{}", upstream);
    let live = gw.live.load_full();
    let name = rules_name(&live.config, &bucket);
    prop_assert!(
        name != "vault-upstream",
        "the alias's real name was typed through"
    );
    if let Err(why) = may(name, method, query, !key.is_empty()) {
        prop_assert!(false, "{} {} got through: {}", method, upstream, why);
    }
    // The key upstream is the key the classifier saw.
    prop_assert_eq!(
        Some(literal_key).filter(|k| !k.is_empty()),
        ctx.audit.key.clone()
    );
    if let Some(src) = &ctx.route.copy_source {
        let (src_bucket, _) = as_a_path_backend_reads(src.split('?').next().unwrap());
        let src_name = rules_name(&live.config, &src_bucket);
        prop_assert!(
            may(src_name, "GET", "", true).is_ok(),
            "copy source {} not readable",
            src
        );
        routed.copies += 1;
    }
    if key.is_empty() {
        routed.bucket_level += 1;
    } else if host.ends_with(".s3.sealgate.test") {
        routed.virtual_host += 1;
    } else {
        routed.path_style += 1;
    }
    // Whatever got through was classified the same way again.
    let again = classify(
        &req.method,
        Some(host),
        req.uri.path(),
        &auth.query,
        &req.headers,
        &live.config.server.domains,
    );
    prop_assert!(again.is_ok());
    Ok(())
}

/// Least of each kind that must get through for the run to count (a
/// generator that stops reaching the checks fails here, not silently).
const MIN_ROUTED_OF_EACH_KIND: usize = 10;

#[test]
fn only_granted_buckets_reach_the_backend() {
    let methods = prop_oneof![
        Just("GET"),
        Just("PUT"),
        Just("DELETE"),
        Just("HEAD"),
        Just("POST")
    ];
    let host = prop_oneof![
        3 => Just("gateway:8080".to_string()),
        1 => bucket().prop_map(|b| format!("{b}.s3.sealgate.test")),
        1 => text(4).prop_map(|h| format!("{h}.s3.sealgate.test")),
        1 => text(4),
    ];
    let path = prop_oneof![
        3 => (bucket(), text(4)).prop_map(|(b, k)| format!("/{b}/{k}")),
        1 => bucket().prop_map(|b| format!("/{b}")),
        1 => text(6).prop_map(|p| format!("/{p}")),
    ];
    let query = prop_oneof![
        Just(""),
        Just("acl"),
        Just("policy"),
        Just("lifecycle"),
        Just("uploads"),
        Just("list-type=2"),
        Just("location"),
        Just("tagging"),
        Just("delete"),
        Just("partNumber=1&uploadId=x"),
        Just("unknownsub"),
    ];
    let copy_source = proptest::option::weighted(
        0.7,
        prop_oneof![
            (bucket(), text(3)).prop_map(|(b, k)| format!("/{b}/{k}")),
            text(5),
        ],
    );
    let gw = gateway();
    let routed = std::cell::RefCell::new(Routed::default());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(2048));
    runner
        .run(
            &(methods, host, path, query, copy_source),
            |(method, host, path, query, copy_source)| {
                one_case(
                    gw,
                    &mut routed.borrow_mut(),
                    method,
                    &host,
                    &path,
                    query,
                    copy_source.as_deref(),
                )
            },
        )
        .unwrap();
    let routed = routed.into_inner();
    for (kind, n) in [
        ("path-style", routed.path_style),
        ("virtual-host", routed.virtual_host),
        ("bucket-level", routed.bucket_level),
        ("copies", routed.copies),
    ] {
        assert!(
            n >= MIN_ROUTED_OF_EACH_KIND,
            "only {n} {kind} cases got through: {routed:?}"
        );
    }
}
