//! Prometheus metrics, registered into an injected registry so several
//! gateways can live in one process (tests) without sharing counters.
//!
//! Naming: `sealgate_` prefix, unit suffixes, `_total` only on counters,
//! closed label sets (operation names, S3 error codes, status classes).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Latency buckets from 1 ms to ~60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Every metric the gateway exports.
pub struct Metrics {
    pub registry: Registry,
    /// Requests by operation and HTTP status class (`2xx`, `4xx`, ...).
    pub requests_total: IntCounterVec,
    /// Request latency by operation.
    pub request_duration_seconds: HistogramVec,
    /// Requests refused by the gateway itself, by S3 error code.
    pub rejected_total: IntCounterVec,
    /// Upstream failures (connect, reset, timeout) by kind.
    pub upstream_errors_total: IntCounterVec,
    /// Requests being served now.
    pub in_flight_requests: IntGauge,
    /// Stored objects that failed a check on read, by reason
    /// (`frame`, `commitment`, `metadata`, `length`, `key`).
    pub decrypt_failures_total: IntCounterVec,
    /// Requests refused because what the client handed back or asked to
    /// decrypt is not bound to where it was used, by reason (`token`:
    /// a forged or moved upload id; `key`: an object under a provider or
    /// key its bucket does not allow; `context`: an object whose
    /// encryption context lacks its bucket's).
    pub binding_refusals_total: IntCounterVec,
    /// Key provider operations by provider, operation and result
    /// (`cache_hit`, `ok`, `error`): how well the data-key cache works and
    /// how often the KMS is really called.
    pub key_provider_calls_total: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: Registry) -> prometheus::Result<Self> {
        let requests_total = IntCounterVec::new(
            Opts::new(
                "sealgate_requests_total",
                "S3 requests served, by operation and status class",
            ),
            &["operation", "status_class"],
        )?;
        let request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "sealgate_request_duration_seconds",
                "Time from request to last response byte",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["operation"],
        )?;
        let rejected_total = IntCounterVec::new(
            Opts::new(
                "sealgate_rejected_requests_total",
                "Requests the gateway refused, by S3 error code",
            ),
            &["code"],
        )?;
        let upstream_errors_total = IntCounterVec::new(
            Opts::new(
                "sealgate_upstream_errors_total",
                "Failed exchanges with the upstream S3, by kind",
            ),
            &["kind"],
        )?;
        let in_flight_requests =
            IntGauge::new("sealgate_in_flight_requests", "Requests being served")?;
        let decrypt_failures_total = IntCounterVec::new(
            Opts::new(
                "sealgate_decrypt_failures_total",
                "Stored objects that failed an integrity check on read, by reason",
            ),
            &["reason"],
        )?;
        let binding_refusals_total = IntCounterVec::new(
            Opts::new(
                "sealgate_binding_refusals_total",
                "Tokens and objects refused for not belonging where they were used, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(binding_refusals_total.clone()))?;
        let key_provider_calls_total = IntCounterVec::new(
            Opts::new(
                "sealgate_key_provider_calls_total",
                "Key provider operations, by provider, operation and result (cache_hit, ok, error)",
            ),
            &["provider", "operation", "result"],
        )?;
        registry.register(Box::new(key_provider_calls_total.clone()))?;
        registry.register(Box::new(decrypt_failures_total.clone()))?;
        registry.register(Box::new(requests_total.clone()))?;
        registry.register(Box::new(request_duration_seconds.clone()))?;
        registry.register(Box::new(rejected_total.clone()))?;
        registry.register(Box::new(upstream_errors_total.clone()))?;
        registry.register(Box::new(in_flight_requests.clone()))?;
        Ok(Self {
            registry,
            requests_total,
            request_duration_seconds,
            rejected_total,
            upstream_errors_total,
            in_flight_requests,
            decrypt_failures_total,
            binding_refusals_total,
            key_provider_calls_total,
        })
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

/// `2xx`, `4xx`, ...: a closed label set for status codes.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_renders() {
        let m = Metrics::register(Registry::new()).unwrap();
        m.requests_total
            .with_label_values(&["GetObject", "2xx"])
            .inc();
        m.rejected_total.with_label_values(&["AccessDenied"]).inc();
        let text = m.render();
        assert!(text
            .contains("sealgate_requests_total{operation=\"GetObject\",status_class=\"2xx\"} 1"));
        assert!(text.contains("sealgate_rejected_requests_total{code=\"AccessDenied\"} 1"));
        // A second gateway in the same process gets its own registry.
        assert!(Metrics::register(Registry::new()).is_ok());
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(0), "none");
    }
}
