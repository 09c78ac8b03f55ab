//! Readiness, as a load balancer should see it: ready once the S3
//! listener accepts connections; not ready while draining for shutdown.
//! Nothing every instance shares decides it: not the key providers (a
//! slow or failing KMS call fails that request) and not the upstream,
//! whose reachability is a metric (`sealgate_upstream_up`) and an alert.
//! During an S3 or VPC-endpoint blip every instance would otherwise turn
//! not ready at once, and the balancer would turn retryable `503`s into
//! refused connections (or fail open to all of them anyway).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the upstream is checked once the gateway serves.
pub const UPSTREAM_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Longest an upstream check may take before it counts as failed.
pub const UPSTREAM_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Consecutive failed upstream checks before the upstream counts as
/// unreachable (one slow answer does not make it flap); one success
/// turns it reachable again.
pub const UPSTREAM_FAILURES_NOT_READY: u32 = 3;

/// What `/readyz` reports.
#[derive(Debug, Default)]
pub struct Readiness {
    listening: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// `Ok` when ready, else why not (the `/readyz` body).
    pub fn report(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Acquire) {
            Err("draining")
        } else if !self.listening.load(Ordering::Acquire) {
            Err("starting")
        } else {
            Ok(())
        }
    }

    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Release);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// Consecutive upstream check results, reduced to up or down: down until
/// a first check succeeds (a backend away from the start never shows up).
#[derive(Debug)]
pub struct UpstreamHealth {
    failures: u32,
}

impl Default for UpstreamHealth {
    fn default() -> Self {
        Self {
            failures: UPSTREAM_FAILURES_NOT_READY,
        }
    }
}

impl UpstreamHealth {
    /// Takes one check's result; returns whether the upstream counts as up.
    pub fn observe(&mut self, ok: bool) -> bool {
        self.failures = if ok {
            0
        } else {
            self.failures.saturating_add(1)
        };
        self.failures < UPSTREAM_FAILURES_NOT_READY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failed_check_does_not_flap() {
        let mut h = UpstreamHealth::default();
        assert!(!h.observe(false), "down until a first success");
        assert!(h.observe(true), "a first success");
        assert!(h.observe(false), "one failure");
        assert!(h.observe(false), "two failures");
        assert!(h.observe(true), "a success resets");
        assert!(h.observe(false) && h.observe(false));
        assert!(!h.observe(false), "three in a row: down");
        assert!(!h.observe(false));
        assert!(h.observe(true), "up again at once");
    }

    #[test]
    fn readiness_reports_why_not() {
        let r = Readiness::default();
        assert_eq!(r.report(), Err("starting"));
        r.set_listening();
        assert_eq!(r.report(), Ok(()));
        r.set_draining();
        assert_eq!(r.report(), Err("draining"));
    }
}
