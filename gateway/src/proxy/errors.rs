//! Errors stage: the one place an S3 error response is written, whether
//! the gateway refuses a request before it goes upstream (`reject`),
//! replaces a backend response (`replace_response`), or proxying failed
//! (`fail`).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, Session};
use sealgate_filters::s3::{S3Error, S3ErrorCode};

use super::response::ResponseBody;
use super::{Ctx, Gateway, Op};

/// `Retry-After` on the gateway's own `503 SlowDown` answers.
const RETRY_AFTER_SECONDS: u32 = 1;

impl Gateway {
    /// Every S3 error the gateway answers: in the audit record and the
    /// refusal metric.
    fn record_error(&self, ctx: &mut Ctx, err: &S3Error) {
        ctx.audit.error = Some(err.code);
        self.metrics
            .rejected_total
            .with_label_values(&[err.code.as_str()])
            .inc();
    }

    /// The answer to a request over its access key's `rate_limit`: `503
    /// SlowDown` (with `Retry-After`), as S3 answers a prefix over its
    /// request rate; every SDK backs off and retries it. Counted.
    /// Marked on `ctx`: the key's quota, not a failure of the service
    /// (`result="throttled"`, outside the availability objective).
    pub(super) fn over_rate(&self, ctx: &mut Ctx) -> S3Error {
        self.metrics.rate_limited_total.inc();
        ctx.throttled = true;
        S3Error::new(
            S3ErrorCode::SlowDown,
            "this access key is over its request rate; retry with backoff",
        )
    }

    /// Answers an S3 XML error and records it. A failed write is the
    /// client's doing (it went away): marked so, for the `result` label.
    pub(super) async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        err: &S3Error,
    ) -> Result<()> {
        self.record_error(ctx, err);
        let resource = session.req_header().uri.path().to_string();
        let is_head = session.req_header().method == http::Method::HEAD;
        let body = err.to_xml(&resource, &ctx.request_id);
        let mut resp = error_response(err.status(), body.len(), &ctx.request_id)?;
        super::cors::apply(&mut resp, &ctx.cors)?;
        if err.code == sealgate_filters::s3::S3ErrorCode::SlowDown {
            // When to try again, for clients that read it (S3 sends none;
            // SDKs back off on SlowDown by themselves).
            resp.insert_header("retry-after", RETRY_AFTER_SECONDS.to_string())?;
        }
        // The request body (if any) was not read: the connection cannot be reused.
        session.set_keepalive(None);
        session
            .write_response_header(Box::new(resp), is_head)
            .await
            .map_err(|e| e.into_down())?;
        if !is_head {
            session
                .write_response_body(Some(Bytes::from(body)), true)
                .await
                .map_err(|e| e.into_down())?;
        }
        Ok(())
    }

    /// Replaces an upstream response with the gateway's error document.
    pub(super) fn replace_response(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
        err: &S3Error,
    ) -> Result<()> {
        self.record_error(ctx, err);
        let head = matches!(&ctx.op, Op::Read(r) if r.head);
        let body = err.to_xml("", &ctx.request_id);
        *resp = error_response(err.status(), body.len(), &ctx.request_id)?;
        ctx.response_body = Some(ResponseBody::Replace((!head).then(|| Bytes::from(body))));
        Ok(())
    }

    /// The client's answer when proxying failed: the body check that failed,
    /// an unreachable backend (503, so SDKs retry), or the gateway itself.
    pub(super) async fn fail(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Ctx,
    ) -> FailToProxy {
        if let Some(err) = ctx.body_error.take() {
            if final_response_pending(session) {
                ctx.failure_answered = self.reject(session, ctx, &err).await.is_ok();
            }
            return FailToProxy {
                error_code: err.status().as_u16(),
                can_reuse_downstream: false,
            };
        }
        let (code, s3) = match e.esource() {
            ErrorSource::Upstream => {
                self.metrics
                    .upstream_errors_total
                    .with_label_values(&[upstream_error_kind(e)])
                    .inc();
                (
                    503,
                    Some(S3Error::new(
                        S3ErrorCode::ServiceUnavailable,
                        "the storage backend could not be reached; retry",
                    )),
                )
            }
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    (0, None)
                }
                _ => (
                    400,
                    Some(S3Error::new(
                        S3ErrorCode::IncompleteBody,
                        "the request body could not be read",
                    )),
                ),
            },
            _ => (
                500,
                Some(S3Error::new(
                    S3ErrorCode::InternalError,
                    "the gateway failed; retry",
                )),
            ),
        };
        if let Some(err) = s3 {
            if final_response_pending(session) {
                ctx.failure_answered = self.reject(session, ctx, &err).await.is_ok();
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

fn upstream_error_kind(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectTimedout => "connect_timeout",
        ErrorType::ConnectRefused => "connect_refused",
        ErrorType::ConnectError | ErrorType::ConnectNoRoute => "connect_error",
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert => "tls",
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
        _ => "other",
    }
}

pub fn internal(e: impl std::fmt::Display) -> S3Error {
    S3Error::new(
        S3ErrorCode::InternalError,
        format!("building the response failed: {e}"),
    )
}

/// An S3 error response header: XML, its length, the request id.
pub fn error_response(
    status: http::StatusCode,
    body_len: usize,
    request_id: &str,
) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/xml")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body_len.to_string())?;
    resp.insert_header("x-amz-request-id", request_id.to_string())?;
    Ok(resp)
}

/// True while no final (non-1xx) response has gone to the client: after
/// `100 Continue` the gateway can still answer with an error.
fn final_response_pending(session: &Session) -> bool {
    session
        .response_written()
        .is_none_or(|r| r.status.is_informational())
}
