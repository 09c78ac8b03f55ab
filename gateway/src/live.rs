//! What a SIGHUP can change without a restart: the configuration's
//! clients, bucket policies and aliases, key providers and the HTTPS
//! certificate, swapped in whole once the new file loaded and every
//! provider in it validated. A
//! file that fails leaves the running set in force (logged and counted).
//! Listeners, the upstream and the admin port are fixed at start: a change
//! there is logged as needing a restart and otherwise ignored.
//! Each request takes the set in force when it begins (`Ctx::live`) and
//! keeps it to its end: one begun before a reload finishes under the old
//! set, never a mix of both.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use sealgate_config::Config;
use sealgate_filters::auth::Clients;
use sealgate_filters::rate::TokenBucket;

use crate::keys::Providers;
use crate::metrics::Metrics;

/// The reloadable part of the gateway.
pub struct Live {
    pub config: Arc<Config>,
    pub clients: Clients,
    pub providers: Providers,
    /// The token bucket of each access key with a `rate_limit`, full when
    /// the configuration is loaded (a reload starts them afresh).
    rate_limits: HashMap<String, Mutex<TokenBucket>>,
    /// Buckets' CORS rules as last read (a reload starts afresh).
    pub cors: crate::proxy::CorsCache,
}

impl Live {
    pub fn new(config: Arc<Config>, providers: Providers) -> Self {
        let clients = Clients::new(
            &config.auth.clients,
            config.auth.max_clock_skew,
            config.auth.signature_v2,
        );
        let now = Instant::now();
        let rate_limits = config
            .auth
            .clients
            .iter()
            .filter_map(|c| {
                let limit = c.rate_limit?;
                Some((
                    c.access_key_id.clone(),
                    Mutex::new(TokenBucket::new(limit, now)),
                ))
            })
            .collect();
        Self {
            config,
            clients,
            providers,
            rate_limits,
            cors: Default::default(),
        }
    }

    /// Takes a request's token from `access_key_id`'s bucket: `false` when
    /// the key is over its rate. Keys without a limit always pass (and
    /// cost no lookup when no key has one).
    pub fn within_rate(&self, access_key_id: &str) -> bool {
        if self.rate_limits.is_empty() {
            return true;
        }
        match self.rate_limits.get(access_key_id) {
            Some(bucket) => bucket
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(Instant::now()),
            None => true,
        }
    }
}

/// The set in force, swapped whole by a reload.
pub type LiveState = ArcSwap<Live>;

/// Parts of a new configuration that take effect only on restart.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut parts = Vec::new();
    let (a, b) = (&old.server, &new.server);
    if a.listen != b.listen
        || a.admin_listen != b.admin_listen
        || a.threads != b.threads
        || a.proxy_protocol != b.proxy_protocol
        || a.request_header_timeout != b.request_header_timeout
        || a.tls.as_ref().map(|t| t.listen) != b.tls.as_ref().map(|t| t.listen)
        || a.drain_delay != b.drain_delay
        || a.grace_period != b.grace_period
        || a.upgrade_sock != b.upgrade_sock
    {
        parts.push(
            "server (listeners, threads, proxy_protocol, request_header_timeout, drain_delay, grace_period, upgrade_sock)",
        );
    }
    let (u, v) = (&old.upstream, &new.upstream);
    if u.endpoint != v.endpoint
        || u.region != v.region
        || !u.credentials.same_as(&v.credentials)
        || u.dns_refresh != v.dns_refresh
        || u.connect_timeout != v.connect_timeout
        || u.read_timeout != v.read_timeout
        || u.stored_checksum != v.stored_checksum
    {
        parts.push(
            "storage.s3 (endpoint, region, credentials, timeouts, dns_refresh, stored_checksum)",
        );
    }
    parts
}

/// Buckets' own backends are fixed for the process (each has its pool,
/// DNS refresh and probe finding): a reload that moves a bucket to another
/// backend, or gives one a backend, is refused whole, so no request ever
/// goes where the running configuration does not say.
fn check_bucket_backends(old: &Config, new: &Config) -> Result<(), String> {
    let (a, b) = (old.bucket_backends(), new.bucket_backends());
    let same = a.len() == b.len()
        && a.iter()
            .all(|(real, u)| b.get(real).is_some_and(|v| u.same_backend(v)));
    if same {
        Ok(())
    } else {
        Err("storage.s3.bucket_configs: a bucket's backend (endpoint, region, credentials, addressing_style, stored_checksum) changes only on restart; restart the gateway to apply it".into())
    }
}

/// Loads `path`, validates its key providers, and swaps it in; on any
/// failure the running set stays. Never logs a secret: problems name YAML
/// paths, providers and keys.
pub async fn reload(
    path: &Path,
    state: &LiveState,
    metrics: &Metrics,
    cert: Option<&crate::server::tls::ReloadableCert>,
) -> Result<(), String> {
    let result = async {
        let env = |name: &str| std::env::var(name).ok();
        // One line: each problem with its YAML path and fix.
        let loaded = sealgate_config::load_file(path, &env).map_err(|p| {
            let text = p.to_string();
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let config = Arc::new(loaded.config);
        check_bucket_backends(&state.load().config, &config)?;
        crate::keys::check_at_start(&config).await?;
        let providers =
            Providers::from_config(&config, Some(crate::keys::cache::KeyMetrics::from(metrics)))
                .await?;
        let restart = needs_restart(&state.load().config, &config);
        if !restart.is_empty() {
            tracing::warn!(
                parts = ?restart,
                "configuration reloaded; these parts change only on restart"
            );
        }
        // The certificate last: a file that fails leaves everything as it was.
        if let (Some(cert), Some(tls)) = (cert, &config.server.tls) {
            cert.reload(&tls.cert_file, &tls.key_file)?;
        }
        state.store(Arc::new(Live::new(config, providers)));
        Ok::<(), String>(())
    }
    .await;
    count_reload(metrics, result.is_ok());
    match &result {
        Ok(()) => tracing::info!(path = %path.display(), "configuration reloaded"),
        Err(e) => tracing::error!(
            path = %path.display(),
            problems = %e,
            "configuration reload refused; the running configuration stays"
        ),
    }
    result
}

/// Counts a reload and keeps whether the last one took.
fn count_reload(metrics: &Metrics, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics
        .config_reloads_total
        .with_label_values(&[outcome])
        .inc();
    metrics.config_last_reload_successful.set(i64::from(ok));
}

/// Reads the HTTPS certificate and key again, alone: when only they
/// changed (a renewal), the configuration, clients and key providers (and
/// their data-key caches) stay as they are, and no key provider is asked
/// anything, so a renewal goes through during a KMS outage too.
pub fn reload_certificate(
    state: &LiveState,
    metrics: &Metrics,
    cert: &crate::server::tls::ReloadableCert,
) -> Result<(), String> {
    let live = state.load();
    let result = match &live.config.server.tls {
        Some(tls) => cert.reload(&tls.cert_file, &tls.key_file),
        None => Ok(()),
    };
    count_reload(metrics, result.is_ok());
    match &result {
        Ok(()) => tracing::info!("certificate reloaded"),
        Err(e) => tracing::error!(
            problems = %e,
            "certificate reload refused; the certificate in use stays"
        ),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str, secret: &str, drain: &str) -> Config {
        let yaml = format!(
            "server: {{listen: \"127.0.0.1:8080\", drain_delay: {drain}}}\n\
             storage: {{s3: {{endpoint: \"{endpoint}\", credentials: {{access_key_id: K, secret_access_key: {secret}}}}}}}\n\
             auth: {{clients: [{{access_key_id: c, secret_access_key: s, buckets: [\"*\"]}}]}}\n"
        );
        sealgate_config::load_str(&yaml, &|_| None).unwrap().config
    }

    /// A reload names exactly the parts that wait for a restart: the
    /// upstream endpoint or its secret, and the server's drain delay.
    #[test]
    fn reloads_name_the_parts_that_need_a_restart() {
        let base = config("http://127.0.0.1:9000", "secret-one", "0s");
        assert!(needs_restart(&base, &base.clone()).is_empty());
        let endpoint = config("http://127.0.0.1:9001", "secret-one", "0s");
        let secret = config("http://127.0.0.1:9000", "secret-two", "0s");
        let drain = config("http://127.0.0.1:9000", "secret-one", "5s");
        for (changed, part) in [
            (endpoint, "storage.s3"),
            (secret, "storage.s3"),
            (drain, "server"),
        ] {
            let parts = needs_restart(&base, &changed);
            assert_eq!(parts.len(), 1, "{parts:?}");
            assert!(parts[0].starts_with(part), "{parts:?}");
        }
    }

    /// A reload that gives a bucket a backend, moves it, or changes its
    /// backend's credentials is refused whole; other bucket settings reload.
    #[test]
    fn a_buckets_backend_changes_only_on_restart() {
        let with = |buckets: &str| {
            let yaml = format!(
                "storage: {{s3: {{endpoint: \"http://127.0.0.1:9000\", credentials: {{access_key_id: K, secret_access_key: s}}, bucket_configs: {{{buckets}}}}}}}\n"
            );
            sealgate_config::load_str(&yaml, &|_| None).unwrap().config
        };
        let base = with("ceph: {endpoint: \"http://127.0.0.1:7480\", credentials: {access_key_id: R, secret_access_key: r}, kms_key_id: a}");
        assert!(check_bucket_backends(&base, &base.clone()).is_ok());
        let key = with("ceph: {endpoint: \"http://127.0.0.1:7480\", credentials: {access_key_id: R, secret_access_key: r}, kms_key_id: b}");
        assert!(check_bucket_backends(&base, &key).is_ok());
        for changed in [
            with("ceph: {endpoint: \"http://127.0.0.1:7481\", credentials: {access_key_id: R, secret_access_key: r}}"),
            with("ceph: {kms_key_id: a}"),
            with("ceph: {endpoint: \"http://127.0.0.1:7480\", credentials: {access_key_id: R, secret_access_key: r}, region: eu-west-1}"),
            with("ceph: {endpoint: \"http://127.0.0.1:7480\", credentials: {access_key_id: R, secret_access_key: t}}"),
            with("ceph: {endpoint: \"http://127.0.0.1:7480\", credentials: {access_key_id: R, secret_access_key: r}}, more: {endpoint: \"http://127.0.0.1:7480\", credentials: {access_key_id: R, secret_access_key: r}}"),
        ] {
            let e = check_bucket_backends(&base, &changed).unwrap_err();
            assert!(e.contains("only on restart"), "{e}");
        }
    }
}
