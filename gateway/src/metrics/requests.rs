//! The per-request side of the metrics, on every request's path: each
//! operation's children of the request families resolved once and kept in
//! fixed slots, so a request adds to them without hashing label values.

use std::sync::OnceLock;

use prometheus::{Histogram, HistogramVec, IntCounter};
use sealgate_filters::s3::Operation;

use super::Metrics;

/// Operations the gateway tells apart, by `Operation::Unknown` being the
/// last (one declared after it is still recorded, just not kept).
const OPERATIONS: usize = Operation::Unknown as usize + 1;
/// The `status_class` label's values, in [`status_class_index`] order.
pub(super) const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// How a request's exchange ended, the `result` label of
/// `sealgate_requests_total`. The status class alone cannot tell it: a
/// download cut mid-body by a backend or a failed integrity check has
/// already sent `200`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    /// The response went out whole, with a status below 500.
    Ok,
    /// The gateway or the backend failed the request: a 5xx answer, or a
    /// response cut after its header.
    Error,
    /// The client went away or broke the exchange before it ended.
    ClientAbort,
    /// Refused for its access key's `rate_limit`: the client's quota, not
    /// a failure of the service (a `503 SlowDown` that is no error).
    Throttled,
}

/// The `result` label's values, in [`RequestResult`] order.
const RESULTS: [&str; 4] = ["ok", "error", "client_abort", "throttled"];

impl RequestResult {
    pub fn as_str(self) -> &'static str {
        RESULTS[self as usize]
    }
}

/// Children of `requests_total`, `request_duration_seconds` and
/// `upstream_response_seconds`, resolved on an operation's first request
/// and kept, so later ones add to them without hashing label values. Lazy,
/// so the exposition shows only operations that were seen.
pub(super) struct ByOperation {
    requests: [[[OnceLock<IntCounter>; RESULTS.len()]; STATUS_CLASSES.len()]; OPERATIONS],
    duration: [OnceLock<Histogram>; OPERATIONS],
    first_byte: [OnceLock<Histogram>; OPERATIONS],
    upstream: [OnceLock<Histogram>; OPERATIONS],
}

/// Observes `seconds` in `op`'s child of `family`, resolved into its slot
/// of `slots` on first use.
fn observe_kept(
    slots: &[OnceLock<Histogram>; OPERATIONS],
    family: &HistogramVec,
    op: Operation,
    seconds: f64,
) {
    let resolve = || family.with_label_values(&[op.as_str()]);
    match slots.get(op as usize) {
        Some(slot) => slot.get_or_init(resolve).observe(seconds),
        // An operation declared after `Unknown`: recorded, just not kept.
        None => resolve().observe(seconds),
    }
}

impl ByOperation {
    pub(super) fn new() -> Self {
        Self {
            requests: std::array::from_fn(|_| {
                std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new()))
            }),
            duration: std::array::from_fn(|_| OnceLock::new()),
            first_byte: std::array::from_fn(|_| OnceLock::new()),
            upstream: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

impl Metrics {
    /// Counts a finished request of `op` answered with `status`, ended as
    /// `result` says.
    pub fn count_request(&self, op: Operation, status: u16, result: RequestResult) {
        let class = status_class_index(status);
        let resolve = || {
            self.requests_total.with_label_values(&[
                op.as_str(),
                STATUS_CLASSES[class],
                result.as_str(),
            ])
        };
        match self.by_operation.requests.get(op as usize) {
            Some(slots) => slots[class][result as usize].get_or_init(resolve).inc(),
            // An operation declared after `Unknown`: counted, just not kept.
            None => resolve().inc(),
        }
    }

    /// Records a request's latency, for its operation.
    pub fn observe_request_duration(&self, op: Operation, seconds: f64) {
        observe_kept(
            &self.by_operation.duration,
            &self.request_duration_seconds,
            op,
            seconds,
        );
    }

    /// Records how long the response header took, for the operation.
    pub fn observe_first_byte(&self, op: Operation, seconds: f64) {
        observe_kept(
            &self.by_operation.first_byte,
            &self.first_byte_seconds,
            op,
            seconds,
        );
    }

    /// Records how long the upstream took to answer, for the operation.
    pub fn observe_upstream_response(&self, op: Operation, seconds: f64) {
        observe_kept(
            &self.by_operation.upstream,
            &self.upstream_response_seconds,
            op,
            seconds,
        );
    }
}

/// The index in [`STATUS_CLASSES`] (`2xx`, `4xx`, ...: a closed label set
/// for status codes) of `status`'s class.
pub(super) fn status_class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => STATUS_CLASSES.len() - 1,
    }
}
