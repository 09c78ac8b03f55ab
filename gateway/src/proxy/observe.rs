//! Observe stage: the audit record every stage fills as the request goes
//! through, and at the end the metrics and one access line per request.
//! Never key material or secrets: only names and ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use pingora::prelude::*;
use pingora::proxy::Session;
use sealgate_filters::s3::{Operation, S3ErrorCode};

use super::{Ctx, Gateway};
use crate::metrics::RequestResult;

/// What happened to one request, for the access line (and later the
/// audit trail): filled by the stages, written by [`Gateway::observe`].
#[derive(Debug)]
pub struct AuditRecord {
    pub operation: Operation,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub access_key_id: Option<String>,
    /// The key provider and key of an encrypted write or read.
    pub provider: Option<String>,
    pub key_id: Option<String>,
    /// The bucket's policy: `mandatory`, `optional` or none (pass-through).
    pub policy: Option<&'static str>,
    /// The S3 error the gateway answered with, if any.
    pub error: Option<S3ErrorCode>,
    /// The error code the backend answered with, if any.
    pub backend_error: Option<String>,
    /// The backend's status and request ids (`x-amz-request-id`,
    /// `x-amz-id-2`), so a request can be followed into the backend's logs
    /// and AWS support cases.
    pub upstream_status: Option<u16>,
    pub upstream_request_id: Option<String>,
    pub upstream_id2: Option<String>,
}

impl Default for AuditRecord {
    fn default() -> Self {
        Self {
            operation: Operation::Unknown,
            bucket: None,
            key: None,
            access_key_id: None,
            provider: None,
            key_id: None,
            policy: None,
            error: None,
            backend_error: None,
            upstream_status: None,
            upstream_request_id: None,
            upstream_id2: None,
        }
    }
}

impl Gateway {
    /// Metrics and the access line, once the request is done.
    pub(super) fn observe(&self, session: &Session, e: Option<&Error>, ctx: &Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let a = &ctx.audit;
        let op = a.operation.as_str();
        let result = if ctx.throttled {
            RequestResult::Throttled
        } else {
            request_result(status, e, ctx.failure_answered)
        };
        let elapsed = ctx.started.elapsed();
        self.metrics.count_request(a.operation, status, result);
        self.metrics
            .observe_request_duration(a.operation, elapsed.as_secs_f64());
        if status != 0 {
            let first_byte = ctx.first_byte.unwrap_or(elapsed);
            self.metrics
                .observe_first_byte(a.operation, first_byte.as_secs_f64());
        }
        let fixed = &self.metrics.fixed;
        fixed.client_in.inc_by(session.body_bytes_read() as u64);
        fixed.client_out.inc_by(session.body_bytes_sent() as u64);
        fixed.upstream_out.inc_by(ctx.upstream_out);
        fixed.upstream_in.inc_by(ctx.upstream_in);
        fixed.decrypted.inc_by(ctx.decrypted);
        if let (200..=299, super::Op::Upload(super::Upload::Ready(plan))) = (status, &ctx.op) {
            if plan.encrypts() {
                fixed.encrypted.inc_by(plan.plaintext_len);
            }
        }
        tracing::info!(
            target: "sealgate::access",
            request_id = %ctx.request_id,
            // The peer, or behind a PROXY protocol balancer the client it
            // named; formatted only when the line is written.
            client = %ClientAddr(session.client_addr()),
            operation = op,
            bucket = a.bucket.as_deref().unwrap_or("-"),
            key = a.key.as_deref().unwrap_or("-"),
            access_key_id = a.access_key_id.as_deref().unwrap_or("-"),
            policy = a.policy.unwrap_or("-"),
            provider = a.provider.as_deref().unwrap_or("-"),
            key_id = a.key_id.as_deref().unwrap_or("-"),
            status,
            result = result.as_str(),
            bytes_in = session.body_bytes_read(),
            bytes_out = session.body_bytes_sent(),
            rejected = a.error.map(|c| c.as_str()).unwrap_or("-"),
            backend_error = a.backend_error.as_deref().unwrap_or("-"),
            upstream_status = a.upstream_status.unwrap_or(0),
            upstream_request_id = a.upstream_request_id.as_deref().unwrap_or("-"),
            upstream_id2 = a.upstream_id2.as_deref().unwrap_or("-"),
            error = e.map(|e| e.etype().as_str()).unwrap_or("-"),
            duration_ms = elapsed.as_millis() as u64,
            "request"
        );
    }
}

/// How a request ended, from the status sent (0: none), the error that
/// ended it, if any, and whether that error was answered whole. An error
/// after a response header went out (a download the backend cut, a
/// stored frame that failed its check) is a failure whatever the status.
fn request_result(status: u16, e: Option<&Error>, failure_answered: bool) -> RequestResult {
    match e {
        Some(e) if *e.esource() == ErrorSource::Downstream => RequestResult::ClientAbort,
        _ if status >= 500 || status == 0 => RequestResult::Error,
        Some(_) if !failure_answered => RequestResult::Error,
        _ => RequestResult::Ok,
    }
}

/// Longest backend request id kept for the access line (S3's are 16 and
/// about 76 characters).
const MAX_UPSTREAM_ID_LEN: usize = 128;

/// A backend's request id as the access line shows it: only characters
/// request ids are made of (base64 and `-`, `_`, `.`, `:`), at most
/// [`MAX_UPSTREAM_ID_LEN`]; `None` when there is none or nothing of it
/// is left. The backend is not trusted to write into the log.
pub fn upstream_id(resp: &pingora::http::ResponseHeader, name: &str) -> Option<String> {
    let raw = resp.headers.get(name)?.as_bytes();
    let id: String = raw
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || b"+/=-_.:".contains(b))
        .take(MAX_UPSTREAM_ID_LEN)
        .map(|&b| char::from(b))
        .collect();
    (!id.is_empty()).then_some(id)
}

/// A client address for the access line, `-` when there is none.
struct ClientAddr<'a>(Option<&'a pingora::protocols::l4::socket::SocketAddr>);

impl std::fmt::Display for ClientAddr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Length of a request id: 8 + 12 hex digits.
const REQUEST_ID_LEN: usize = 20;
/// Digits of a request id (upper case, as S3's own request ids).
const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Request ids: unique per process start, cheap, sortable in logs.
pub struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        Self {
            prefix: nanos ^ std::process::id().rotate_left(16),
            next: AtomicU64::new(1),
        }
    }

    /// 8 hex digits of the instance prefix, 12 of the counter (its low 48
    /// bits: 2.8e14 requests before an id repeats within one process).
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(REQUEST_ID_LEN);
        for (value, digits) in [(u64::from(self.prefix), 8), (n, 12)] {
            for place in (0..digits).rev() {
                id.push(char::from(UPPER_HEX[(value >> (4 * place)) as usize & 0xF]));
            }
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_tell_cut_responses_and_client_aborts_apart() {
        let upstream = Error::new(ErrorType::ReadError).into_up();
        let client = Error::new(ErrorType::WriteError).into_down();
        let internal = Error::new(ErrorType::InternalError).into_in();
        for (status, e, answered, want) in [
            (200, None, false, RequestResult::Ok),
            (404, None, false, RequestResult::Ok),
            (503, None, false, RequestResult::Error),
            (0, None, false, RequestResult::Error),
            // Headers sent, then the backend cut the body.
            (200, Some(&upstream), false, RequestResult::Error),
            // A stored frame failed its check after the header went out.
            (200, Some(&internal), false, RequestResult::Error),
            // A body check failed and was answered with its S3 error.
            (400, Some(&internal), true, RequestResult::Ok),
            (503, Some(&upstream), true, RequestResult::Error),
            (200, Some(&client), false, RequestResult::ClientAbort),
            (0, Some(&client), false, RequestResult::ClientAbort),
        ] {
            assert_eq!(
                request_result(status, e.map(|e| &**e), answered),
                want,
                "{status} {e:?}"
            );
        }
    }

    #[test]
    fn upstream_ids_keep_only_id_characters_and_are_bounded() {
        let mut resp = pingora::http::ResponseHeader::build(200, None).unwrap();
        resp.insert_header("x-amz-request-id", "4442587FB7D0A2F9")
            .unwrap();
        resp.insert_header("x-amz-id-2", "a b\"c=\\d").unwrap();
        assert_eq!(
            upstream_id(&resp, "x-amz-request-id").as_deref(),
            Some("4442587FB7D0A2F9")
        );
        assert_eq!(upstream_id(&resp, "x-amz-id-2").as_deref(), Some("abc=d"));
        resp.insert_header("x-amz-id-2", "x".repeat(500)).unwrap();
        assert_eq!(
            upstream_id(&resp, "x-amz-id-2").unwrap().len(),
            MAX_UPSTREAM_ID_LEN
        );
        resp.insert_header("x-amz-id-2", "\"\"").unwrap();
        assert_eq!(upstream_id(&resp, "x-amz-id-2"), None);
        assert_eq!(upstream_id(&resp, "x-absent"), None);
    }

    #[test]
    fn request_ids_are_the_prefix_and_a_counter_in_upper_hex() {
        let ids = RequestIds {
            prefix: 0x00AB_CDEF,
            next: AtomicU64::new(0x1F),
        };
        assert_eq!(ids.next(), "00ABCDEF00000000001F");
        assert_eq!(ids.next(), "00ABCDEF000000000020");
        assert_eq!(ids.next().len(), REQUEST_ID_LEN);
    }
}
