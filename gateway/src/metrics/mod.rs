//! Prometheus metrics, registered into an injected registry so several
//! gateways can live in one process (tests) without sharing counters.
//!
//! Naming: `sealgate_` prefix, unit suffixes, `_total` only on counters,
//! closed label sets (operation names, S3 error codes, status classes).

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
mod requests;
use requests::ByOperation;
pub use requests::RequestResult;
#[cfg(test)]
use requests::{status_class_index, STATUS_CLASSES};

/// Latency buckets from 1 ms to ~60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Every metric the gateway exports (docs/METRICS.md is the reference).
pub struct Metrics {
    pub registry: Registry,
    /// Requests by operation, HTTP status class (`2xx`, `4xx`, ...) and
    /// result (how the exchange ended: see [`RequestResult`]).
    pub requests_total: IntCounterVec,
    /// Request latency by operation.
    pub request_duration_seconds: HistogramVec,
    /// Time from the request to its response header, by operation: what a
    /// client waits before data flows (a download's latency without its
    /// size).
    pub first_byte_seconds: HistogramVec,
    /// Requests refused by the gateway itself, by S3 error code.
    pub rejected_total: IntCounterVec,
    /// Requests whose signature, credentials or time did not check, by
    /// S3 error code.
    pub authentication_failures_total: IntCounterVec,
    /// Authenticated requests refused for lack of permission, by reason
    /// (`permission`, `bucket`, `reserved`).
    pub authorization_refusals_total: IntCounterVec,
    /// Requests a bucket's encryption policy refused, by S3 error code.
    pub policy_refusals_total: IntCounterVec,
    /// Body bytes by side (`client`, `upstream`) and direction (`in`:
    /// towards the gateway, `out`: from it). Client bytes are plaintext,
    /// upstream bytes stored bytes.
    pub body_bytes_total: IntCounterVec,
    /// Plaintext bytes by operation (`encrypt`, `decrypt`).
    pub crypto_bytes_total: IntCounterVec,
    /// Upstream failures (connect, reset, timeout) by kind.
    pub upstream_errors_total: IntCounterVec,
    /// Upstream connections used, by whether they were reused.
    pub upstream_connections_total: IntCounterVec,
    /// Time from the upstream request to its response header.
    pub upstream_response_seconds: HistogramVec,
    /// Requests being served now.
    pub in_flight_requests: IntGauge,
    /// Requests refused over `server.max_in_flight`.
    pub load_refusals_total: prometheus::IntCounter,
    /// Requests refused over their access key's `rate_limit`.
    /// Requests authenticated by a Signature Version 2 signature: whether
    /// `auth.signature_v2` can be turned off without breaking a client.
    pub signature_v2_total: IntCounter,
    pub rate_limited_total: IntCounter,
    /// Stored objects that failed a check on read, by reason
    /// (`frame`, `commitment`, `metadata`, `length`, `key`, `part`).
    pub decrypt_failures_total: IntCounterVec,
    /// Requests refused because what the client handed back or asked to
    /// decrypt is not bound to where it was used, by reason (`token`:
    /// a forged or moved upload id; `key`: an object under a provider or
    /// key its bucket does not allow; `context`: an object whose
    /// encryption context lacks its bucket's; `bucket`: an object of
    /// another bucket).
    pub binding_refusals_total: IntCounterVec,
    /// Key provider operations by provider, operation and result
    /// (`cache_hit`, `ok`, `error`): how well the data-key cache works and
    /// how often the KMS is really called.
    pub key_provider_calls_total: IntCounterVec,
    pub key_provider_errors_total: IntCounterVec,
    /// Latency of the key provider calls that were made (not cache hits).
    pub key_provider_call_duration_seconds: HistogramVec,
    /// Data keys cached now, by provider and cache (`encrypt`, `decrypt`).
    pub data_key_cache_entries: IntGaugeVec,
    /// Data keys dropped from a cache, by provider, cache and reason
    /// (`expired`; `used`: an encrypt key that reached its object limit).
    pub data_key_cache_evictions_total: IntCounterVec,
    /// Connections refused for lacking a valid PROXY protocol v2 header,
    /// by reason (`no_header`, `unsupported`, `too_long`, `malformed`,
    /// `timeout`).
    pub proxy_protocol_refusals_total: IntCounterVec,
    /// Client connections closed because a request header took longer
    /// than `server.request_header_timeout`.
    pub request_header_timeouts_total: IntCounter,
    /// When the HTTPS listener's certificate expires, in Unix seconds, by
    /// listener (`https`; absent without `server.tls`), set as it is
    /// scraped.
    pub tls_certificate_expiry: IntGaugeVec,
    /// Log lines dropped because the log output could not keep up (set
    /// as it is scraped).
    pub log_lines_dropped_total: IntCounter,
    /// 1 when the last configuration reload took (or none was tried), 0
    /// after one was refused: the running configuration is not the file's.
    pub config_last_reload_successful: IntGauge,
    /// Configuration reloads (SIGHUP or a watched file) by result (`ok`,
    /// `error`).
    pub config_reloads_total: IntCounterVec,
    /// 1 when `/readyz` would answer 200, else 0 (set as it is scraped).
    pub ready: IntGauge,
    /// 1 while `storage.s3`'s backend answers the readiness probe's checks.
    pub upstream_up: IntGauge,
    /// Always 1, labelled with the version.
    pub build_info: IntGaugeVec,
    /// 1 for the checksum ciphertext goes upstream with (`crc32c`, `none`,
    /// or `unknown` while `auto` has not probed the backend), set as it is
    /// scraped.
    pub backend_stored_checksum: IntGaugeVec,
    /// The children of the families above whose labels are fixed words,
    /// resolved once: every request adds to them without hashing labels.
    pub fixed: FixedCounters,
    /// The per-operation children every request adds to, kept once used.
    by_operation: ByOperation,
}

/// Every `reason` of `sealgate_decrypt_failures_total` (the checks a
/// stored object fails on read).
pub const DECRYPT_FAILURE_REASONS: [&str; 6] =
    ["key", "frame", "part", "length", "metadata", "commitment"];

/// See [`Metrics::fixed`].
pub struct FixedCounters {
    pub client_in: IntCounter,
    pub client_out: IntCounter,
    pub upstream_in: IntCounter,
    pub upstream_out: IntCounter,
    pub encrypted: IntCounter,
    pub decrypted: IntCounter,
    pub connections_new: IntCounter,
    pub connections_reused: IntCounter,
}

impl FixedCounters {
    fn resolve(body: &IntCounterVec, crypto: &IntCounterVec, connections: &IntCounterVec) -> Self {
        Self {
            client_in: body.with_label_values(&["client", "in"]),
            client_out: body.with_label_values(&["client", "out"]),
            upstream_in: body.with_label_values(&["upstream", "in"]),
            upstream_out: body.with_label_values(&["upstream", "out"]),
            encrypted: crypto.with_label_values(&["encrypt"]),
            decrypted: crypto.with_label_values(&["decrypt"]),
            connections_new: connections.with_label_values(&["false"]),
            connections_reused: connections.with_label_values(&["true"]),
        }
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
}

impl Metrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: Registry) -> prometheus::Result<Self> {
        let body_bytes_total = counter(
            "sealgate_body_bytes_total",
            "Body bytes, by side (client: plaintext, upstream: stored) and direction",
            &["side", "direction"],
        )?;
        let crypto_bytes_total = counter(
            "sealgate_crypto_bytes_total",
            "Plaintext bytes encrypted or decrypted",
            &["operation"],
        )?;
        let upstream_connections_total = counter(
            "sealgate_upstream_connections_total",
            "Upstream connections used, by reuse",
            &["reused"],
        )?;
        let fixed = FixedCounters::resolve(
            &body_bytes_total,
            &crypto_bytes_total,
            &upstream_connections_total,
        );
        let m = Self {
            requests_total: counter(
                "sealgate_requests_total",
                "S3 requests served, by operation, status class and result (ok, error: a 5xx or a response cut after its header, client_abort, throttled: over the key's rate_limit)",
                &["operation", "status_class", "result"],
            )?,
            request_duration_seconds: histogram(
                "sealgate_request_duration_seconds",
                "Time from request to last response byte",
                &["operation"],
            )?,
            first_byte_seconds: histogram(
                "sealgate_request_first_byte_seconds",
                "Time from request to response header, by operation",
                &["operation"],
            )?,
            rejected_total: counter(
                "sealgate_rejected_requests_total",
                "Requests the gateway refused, by S3 error code",
                &["code"],
            )?,
            authentication_failures_total: counter(
                "sealgate_authentication_failures_total",
                "Requests that failed authentication, by S3 error code",
                &["code"],
            )?,
            authorization_refusals_total: counter(
                "sealgate_authorization_refusals_total",
                "Authenticated requests refused, by reason",
                &["reason"],
            )?,
            policy_refusals_total: counter(
                "sealgate_policy_refusals_total",
                "Requests a bucket's encryption policy refused, by S3 error code",
                &["code"],
            )?,
            body_bytes_total: body_bytes_total.clone(),
            crypto_bytes_total: crypto_bytes_total.clone(),
            upstream_errors_total: counter(
                "sealgate_upstream_errors_total",
                "Failed exchanges with the upstream S3, by kind",
                &["kind"],
            )?,
            upstream_connections_total: upstream_connections_total.clone(),
            upstream_response_seconds: histogram(
                "sealgate_upstream_response_seconds",
                "Time from the upstream request to its response header, by operation",
                &["operation"],
            )?,
            in_flight_requests: IntGauge::new(
                "sealgate_in_flight_requests",
                "Requests being served",
            )?,
            load_refusals_total: prometheus::IntCounter::new(
                "sealgate_load_refusals_total",
                "Requests answered 503 SlowDown because server.max_in_flight were being served",
            )?,
            rate_limited_total: IntCounter::new(
                "sealgate_rate_limited_requests_total",
                "Requests answered 503 SlowDown because their access key was over its rate_limit",
            )?,
            signature_v2_total: IntCounter::new(
                "sealgate_signature_v2_requests_total",
                "Requests authenticated by a Signature Version 2 signature (header, presigned URL or POST form)",
            )?,
            decrypt_failures_total: counter(
                "sealgate_decrypt_failures_total",
                "Stored objects that failed an integrity check on read, by reason (key: the provider found the stored wrapped key invalid)",
                &["reason"],
            )?,
            binding_refusals_total: counter(
                "sealgate_binding_refusals_total",
                "Tokens and objects refused for not belonging where they were used, by reason",
                &["reason"],
            )?,
            key_provider_calls_total: counter(
                "sealgate_key_provider_calls_total",
                "Key provider operations, by provider, operation and result (cache_hit, ok, error)",
                &["provider", "operation", "result"],
            )?,
            key_provider_errors_total: counter(
                "sealgate_key_provider_errors_total",
                "Failed key provider calls, by provider, operation and code (unavailable, throttled, denied, invalid, not_found, disabled, invalid_state)",
                &["provider", "operation", "code"],
            )?,
            key_provider_call_duration_seconds: histogram(
                "sealgate_key_provider_call_duration_seconds",
                "Latency of key provider calls made (not answered from the cache)",
                &["provider", "operation"],
            )?,
            data_key_cache_entries: IntGaugeVec::new(
                Opts::new(
                    "sealgate_data_key_cache_entries",
                    "Data keys cached, by provider and cache",
                ),
                &["provider", "cache"],
            )?,
            data_key_cache_evictions_total: counter(
                "sealgate_data_key_cache_evictions_total",
                "Data keys dropped from a cache, by provider, cache and reason",
                &["provider", "cache", "reason"],
            )?,
            proxy_protocol_refusals_total: counter(
                "sealgate_proxy_protocol_refusals_total",
                "Connections refused for lacking a valid PROXY protocol v2 header, by reason",
                &["reason"],
            )?,
            request_header_timeouts_total: IntCounter::new(
                "sealgate_request_header_timeouts_total",
                "Client connections closed for a request header slower than server.request_header_timeout",
            )?,
            tls_certificate_expiry: IntGaugeVec::new(
                Opts::new(
                    "sealgate_tls_certificate_expiry_timestamp_seconds",
                    "When the certificate of a TLS listener stops being valid (notAfter), in Unix seconds",
                ),
                &["listener"],
            )?,
            log_lines_dropped_total: IntCounter::new(
                "sealgate_log_lines_dropped_total",
                "Log lines dropped because the log output could not keep up (logging.buffer_lines were waiting)",
            )?,
            config_reloads_total: counter(
                "sealgate_config_reloads_total",
                "Configuration reloads (SIGHUP or a watched file's change), by result",
                &["result"],
            )?,
            config_last_reload_successful: IntGauge::new(
                "sealgate_config_last_reload_successful",
                "1 when the last configuration reload took (or none was tried), 0 after one was refused",
            )?,
            ready: IntGauge::new(
                "sealgate_ready",
                "1 when the instance is ready to serve (as /readyz), else 0",
            )?,
            upstream_up: IntGauge::new(
                "sealgate_upstream_up",
                "1 while storage.s3's backend answers (any HTTP answer to a HEAD every 5 s); 0 after 3 checks in a row failed",
            )?,
            build_info: IntGaugeVec::new(
                Opts::new("sealgate_build_info", "Always 1, labelled with the version"),
                &["version"],
            )?,
            backend_stored_checksum: IntGaugeVec::new(
                Opts::new(
                    "sealgate_backend_stored_checksum",
                    "1 for the checksum ciphertext goes to each backend with (its stored_checksum; unknown: auto, not probed yet)",
                ),
                &["backend", "checksum"],
            )?,
            fixed,
            by_operation: ByOperation::new(),
            registry,
        };
        let r = &m.registry;
        for c in [
            &m.requests_total,
            &m.rejected_total,
            &m.authentication_failures_total,
            &m.authorization_refusals_total,
            &m.policy_refusals_total,
            &m.body_bytes_total,
            &m.crypto_bytes_total,
            &m.upstream_errors_total,
            &m.upstream_connections_total,
            &m.decrypt_failures_total,
            &m.binding_refusals_total,
            &m.key_provider_calls_total,
            &m.key_provider_errors_total,
            &m.data_key_cache_evictions_total,
            &m.proxy_protocol_refusals_total,
            &m.config_reloads_total,
        ] {
            r.register(Box::new(c.clone()))?;
        }
        // Closed label values exist from the start, at 0: an alert on
        // `increase()` sees the first (often the only) event of a pod.
        for reason in DECRYPT_FAILURE_REASONS {
            m.decrypt_failures_total.with_label_values(&[reason]);
        }
        for h in [
            &m.request_duration_seconds,
            &m.first_byte_seconds,
            &m.upstream_response_seconds,
            &m.key_provider_call_duration_seconds,
        ] {
            r.register(Box::new(h.clone()))?;
        }
        r.register(Box::new(m.data_key_cache_entries.clone()))?;
        r.register(Box::new(m.build_info.clone()))?;
        r.register(Box::new(m.backend_stored_checksum.clone()))?;
        r.register(Box::new(m.in_flight_requests.clone()))?;
        r.register(Box::new(m.load_refusals_total.clone()))?;
        r.register(Box::new(m.rate_limited_total.clone()))?;
        r.register(Box::new(m.signature_v2_total.clone()))?;
        r.register(Box::new(m.request_header_timeouts_total.clone()))?;
        r.register(Box::new(m.log_lines_dropped_total.clone()))?;
        r.register(Box::new(m.config_last_reload_successful.clone()))?;
        r.register(Box::new(m.tls_certificate_expiry.clone()))?;
        r.register(Box::new(m.ready.clone()))?;
        r.register(Box::new(m.upstream_up.clone()))?;
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.config_last_reload_successful.set(1);
        Ok(m)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = String::new();
        let encoder = prometheus::TextEncoder::new();
        if encoder
            .encode_utf8(&self.registry.gather(), &mut buf)
            .is_err()
        {
            buf.clear();
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealgate_filters::s3::Operation;

    #[test]
    fn registers_and_renders() {
        let m = Metrics::register(Registry::new()).unwrap();
        m.count_request(Operation::GetObject, 200, RequestResult::Ok);
        m.count_request(Operation::GetObject, 200, RequestResult::Error);
        m.rejected_total.with_label_values(&["AccessDenied"]).inc();
        let text = m.render();
        assert!(text.contains(
            "sealgate_requests_total{operation=\"GetObject\",result=\"ok\",status_class=\"2xx\"} 1"
        ));
        assert!(text.contains(
            "sealgate_requests_total{operation=\"GetObject\",result=\"error\",status_class=\"2xx\"} 1"
        ));
        assert!(text.contains("sealgate_rejected_requests_total{code=\"AccessDenied\"} 1"));
        // A second gateway in the same process gets its own registry.
        assert!(Metrics::register(Registry::new()).is_ok());
    }

    /// docs/METRICS.md lists exactly the families the gateway registers.
    #[test]
    fn every_family_is_documented() {
        let m = Metrics::register(Registry::new()).unwrap();
        // One child each, so that every labelled family is gathered.
        m.requests_total.with_label_values(&["x", "y", "z"]).inc();
        for c in [
            &m.key_provider_calls_total,
            &m.data_key_cache_evictions_total,
        ] {
            c.with_label_values(&["x", "y", "z"]).inc();
        }
        for c in [
            &m.rejected_total,
            &m.authentication_failures_total,
            &m.authorization_refusals_total,
            &m.policy_refusals_total,
            &m.crypto_bytes_total,
            &m.upstream_errors_total,
            &m.upstream_connections_total,
            &m.decrypt_failures_total,
            &m.binding_refusals_total,
            &m.proxy_protocol_refusals_total,
            &m.config_reloads_total,
        ] {
            c.with_label_values(&["x"]).inc();
        }
        m.body_bytes_total.with_label_values(&["x", "y"]).inc();
        for h in [
            &m.request_duration_seconds,
            &m.first_byte_seconds,
            &m.upstream_response_seconds,
        ] {
            h.with_label_values(&["x"]).observe(1.0);
        }
        m.key_provider_call_duration_seconds
            .with_label_values(&["x", "y"])
            .observe(1.0);
        m.data_key_cache_entries
            .with_label_values(&["x", "y"])
            .set(1);
        m.backend_stored_checksum
            .with_label_values(&["x", "y"])
            .set(1);
        m.key_provider_errors_total
            .with_label_values(&["x", "y", "z"])
            .inc();
        m.tls_certificate_expiry.with_label_values(&["x"]).set(1);
        let registered: std::collections::BTreeSet<String> = m
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let documented: std::collections::BTreeSet<String> =
            include_str!("../../../docs/METRICS.md")
                .lines()
                .filter_map(|l| l.strip_prefix("| `sealgate_"))
                .filter_map(|l| l.split('`').next())
                .map(|n| format!("sealgate_{n}"))
                .collect();
        assert_eq!(registered, documented);
    }

    #[test]
    fn status_classes() {
        let class = |status| STATUS_CLASSES[status_class_index(status)];
        for (status, want) in [
            (100, "1xx"),
            (199, "1xx"),
            (204, "2xx"),
            (304, "3xx"),
            (404, "4xx"),
            (503, "5xx"),
            (599, "5xx"),
            (0, "none"),
            (99, "none"),
            (600, "none"),
        ] {
            assert_eq!(class(status), want, "{status}");
        }
    }

    /// The kept children are the families' own series: what a request adds
    /// shows under its operation and class, and only operations seen appear.
    #[test]
    fn per_operation_children_are_the_labelled_series() {
        let m = Metrics::register(Registry::new()).unwrap();
        m.count_request(Operation::PutObject, 200, RequestResult::Ok);
        m.count_request(Operation::PutObject, 201, RequestResult::Ok);
        m.count_request(Operation::PutObject, 200, RequestResult::ClientAbort);
        m.count_request(Operation::Unknown, 404, RequestResult::Ok);
        m.observe_request_duration(Operation::GetObject, 0.002);
        m.observe_first_byte(Operation::GetObject, 0.001);
        m.observe_upstream_response(Operation::HeadObject, 0.002);
        let text = m.render();
        for line in [
            "sealgate_requests_total{operation=\"PutObject\",result=\"ok\",status_class=\"2xx\"} 2",
            "sealgate_requests_total{operation=\"PutObject\",result=\"client_abort\",status_class=\"2xx\"} 1",
            "sealgate_requests_total{operation=\"Unknown\",result=\"ok\",status_class=\"4xx\"} 1",
            "sealgate_request_duration_seconds_count{operation=\"GetObject\"} 1",
            "sealgate_request_first_byte_seconds_count{operation=\"GetObject\"} 1",
            "sealgate_upstream_response_seconds_count{operation=\"HeadObject\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("operation=\"DeleteObject\""));
    }
}
