//! What the data-key cache counts and logs: provider calls (latency,
//! failures by code), cache answers, entries and evictions
//! (docs/METRICS.md). Key material is never logged.

use std::time::Instant;

use sealgate_filters::keys::KeyError;

use super::CachingProvider;

/// The provider operations a call is made for (metric label values).
const PROVIDER_OPERATIONS: [&str; 4] = ["GenerateDataKey", "Decrypt", "Encrypt", "DescribeKey"];

/// The key provider and data-key cache metrics (docs/METRICS.md).
#[derive(Clone)]
pub struct KeyMetrics {
    pub calls: prometheus::IntCounterVec,
    /// Failed calls by the kind of failure ([`KeyError::code`]).
    pub errors: prometheus::IntCounterVec,
    pub duration: prometheus::HistogramVec,
    pub entries: prometheus::IntGaugeVec,
    pub evictions: prometheus::IntCounterVec,
}

impl KeyMetrics {
    pub fn from(m: &crate::metrics::Metrics) -> Self {
        Self {
            calls: m.key_provider_calls_total.clone(),
            errors: m.key_provider_errors_total.clone(),
            duration: m.key_provider_call_duration_seconds.clone(),
            entries: m.data_key_cache_entries.clone(),
            evictions: m.data_key_cache_evictions_total.clone(),
        }
    }
}

impl CachingProvider {
    /// Counts provider operations and cache state into `metrics`; every
    /// error series of this provider exists from the start, at 0 (an
    /// alert on `increase()` sees the first failure).
    pub fn with_metrics(mut self, metrics: KeyMetrics) -> Self {
        for operation in PROVIDER_OPERATIONS {
            for code in KeyError::CODES {
                metrics
                    .errors
                    .with_label_values(&[self.inner.name(), operation, code]);
            }
        }
        let hit = |operation| {
            metrics
                .calls
                .with_label_values(&[self.inner.name(), operation, "cache_hit"])
        };
        self.hits = Some([hit("GenerateDataKey"), hit("Decrypt")]);
        self.metrics = Some(metrics);
        self
    }

    pub(super) fn count(&self, operation: &str, result: &str) {
        if let Some(m) = &self.metrics {
            m.calls
                .with_label_values(&[self.inner.name(), operation, result])
                .inc();
        }
    }

    /// A cached key dropped (`expired`, or `used` up), and the entries left.
    pub(super) fn evicted(&self, cache: &str, reason: &str) {
        if let Some(m) = &self.metrics {
            m.evictions
                .with_label_values(&[self.inner.name(), cache, reason])
                .inc();
        }
        self.count_entries();
    }

    pub(super) fn count_entries(&self) {
        if let Some(m) = &self.metrics {
            let name = self.inner.name();
            m.entries
                .with_label_values(&[name, "encrypt"])
                .set(self.encrypt.len() as i64);
            m.entries
                .with_label_values(&[name, "decrypt"])
                .set(self.decrypt.len() as i64);
        }
    }

    /// A cache answer, logged when asked for.
    pub(super) fn hit(&self, operation: &str, key_id: &str) {
        match (&self.hits, operation) {
            (Some([generate, _]), "GenerateDataKey") => generate.inc(),
            (Some([_, decrypt]), "Decrypt") => decrypt.inc(),
            _ => self.count(operation, "cache_hit"),
        }
        if self.log_calls {
            tracing::debug!(
                target: "sealgate::kms",
                provider = %self.inner.name(), operation, key_id, cache = "hit",
                "key provider call answered from the cache"
            );
        }
    }

    /// Runs one provider call: its latency logged when asked for, a
    /// failure always (provider, operation, key id; never key material).
    pub(super) async fn call<T>(
        &self,
        operation: &str,
        key_id: &str,
        fut: impl std::future::Future<Output = Result<T, KeyError>>,
    ) -> Result<T, KeyError> {
        let started = Instant::now();
        let out = fut.await;
        let seconds = started.elapsed().as_secs_f64();
        let ms = seconds * 1000.0;
        self.count(operation, if out.is_ok() { "ok" } else { "error" });
        if let (Err(e), Some(m)) = (&out, &self.metrics) {
            m.errors
                .with_label_values(&[self.inner.name(), operation, e.code()])
                .inc();
        }
        if let Some(m) = &self.metrics {
            m.duration
                .with_label_values(&[self.inner.name(), operation])
                .observe(seconds);
        }
        match &out {
            Err(e) => tracing::warn!(
                target: "sealgate::kms",
                provider = %self.inner.name(), operation, key_id, latency_ms = ms, error = %e,
                "key provider call failed"
            ),
            Ok(_) if self.log_calls => tracing::debug!(
                target: "sealgate::kms",
                provider = %self.inner.name(), operation, key_id, latency_ms = ms, cache = "miss",
                "key provider call"
            ),
            Ok(_) => {}
        }
        out
    }
}
