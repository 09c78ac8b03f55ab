//! The write side of copies the gateway makes itself: the source's
//! plaintext, piece by piece, through the destination's encryption into
//! an upstream PUT (an object or a part), and S3's copy result to the
//! client. Memory stays flat for any size; a source that fails, changes
//! or ends early cuts the upstream body short, so nothing is stored.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use sealgate_filters::s3::auth::sigv4::{format_iso8601, parse_http_date, UNSIGNED_PAYLOAD};
use sealgate_filters::s3::body::chunked::encode::UNSIGNED_TRAILER;
use sealgate_filters::s3::{S3Error, S3ErrorCode};

use crate::proxy::copy_source::{source_failed, CopySource, SourceBody};
use crate::proxy::errors::internal;
use crate::proxy::read_target::changed;
use crate::proxy::response::set_sse_headers;
use crate::proxy::upload::UploadPlan;
use crate::proxy::{Ctx, Gateway};
use crate::upstream::UpstreamTarget;

/// Largest upstream answer read after the body went up (an error
/// document, or the empty body of a PUT).
const MAX_ANSWER: usize = 64 * 1024;

/// A streamed upload whose body has not ended: the upstream session and
/// the body state. Dropped unfinished, the backend stores nothing.
pub(in crate::proxy) struct PendingUpload {
    dst: HttpSession,
    /// The backend `dst` is a connection to (its pool takes it back).
    to: Arc<UpstreamTarget>,
    cipher: crate::proxy::upload_stream::UploadStream,
}

/// What the backend answered for the copy's PUT.
pub(in crate::proxy) struct Stored {
    pub etag: String,
    pub version_id: Option<String>,
    /// The source's version, as S3 reports it for a versioned source.
    pub source_version_id: Option<String>,
}

impl Gateway {
    /// Streams `src` (through `body`) into `plan`'s encryption and the
    /// upstream `put` (method, path, host and extra headers set; the plan
    /// adds its own and the request is signed here).
    pub(in crate::proxy) async fn stream_copy(
        &self,
        plan: &UploadPlan,
        put: RequestHeader,
        to: &Arc<UpstreamTarget>,
        src: &CopySource,
        mut body: SourceBody,
    ) -> Result<Stored, S3Error> {
        let (mut dst, mut cipher) = self.open_put(plan, put, to).await?;
        let len = src.len();
        if len > 0 {
            let mut from = self.open_source(src).await?;
            let mut sent = 0u64;
            loop {
                let chunk = from
                    .read_response_body()
                    .await
                    .map_err(|e| source_failed(&e))?;
                let end = chunk.is_none();
                let plain = match &mut body {
                    SourceBody::Plain => chunk.unwrap_or_default(),
                    SourceBody::Decrypt(dec) => dec
                        .push(chunk, end)
                        .map_err(|_| self.integrity("frame"))?
                        .unwrap_or_default(),
                };
                sent += plain.len() as u64;
                if sent > len {
                    return Err(changed());
                }
                let out = cipher.push(&plain, false)?;
                if !out.is_empty() {
                    dst.write_request_body(out, false)
                        .await
                        .map_err(|e| dest_failed(&e))?;
                }
                if end {
                    break;
                }
            }
            if sent != len {
                return Err(changed());
            }
            self.backend(src.bucket()).release(from).await;
        }
        let pending = PendingUpload {
            dst,
            to: to.clone(),
            cipher,
        };
        let mut stored = self.finish_upload(pending).await?;
        if plan.encrypts() {
            self.metrics.fixed.encrypted.inc_by(len);
        }
        if matches!(body, SourceBody::Decrypt(_)) {
            self.metrics.fixed.decrypted.inc_by(len);
        }
        stored.source_version_id = src
            .probe
            .headers
            .get("x-amz-version-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(stored)
    }

    /// Streams a client's body through `plan` into the upstream `put`:
    /// `body` holds what was read already; the rest comes from `session`.
    /// The last `keep` bytes of the body are held back in `body` (a form's
    /// closing delimiter, for the caller to check); exactly the plan's
    /// plaintext length must come before them. Finish with
    /// [`Self::finish_upload`], or drop the result to store nothing.
    pub(in crate::proxy) async fn stream_upload(
        &self,
        plan: &UploadPlan,
        put: RequestHeader,
        to: &Arc<UpstreamTarget>,
        body: &mut BytesMut,
        keep: usize,
        session: &mut pingora::proxy::Session,
    ) -> Result<PendingUpload, S3Error> {
        let (mut dst, mut cipher) = self.open_put(plan, put, to).await?;
        let mut sent = 0u64;
        loop {
            if body.len() > keep {
                let piece = body.split_to(body.len() - keep);
                sent += piece.len() as u64;
                if sent > plan.plaintext_len {
                    return Err(S3Error::new(
                        S3ErrorCode::MalformedPOSTRequest,
                        "the file must be the form's last field",
                    ));
                }
                let out = cipher.push(&piece, false)?;
                if !out.is_empty() {
                    dst.write_request_body(out, false)
                        .await
                        .map_err(|e| dest_failed(&e))?;
                }
            }
            match session.read_request_body().await {
                Ok(Some(b)) => body.extend_from_slice(&b),
                Ok(None) => break,
                Err(_) => {
                    return Err(S3Error::new(
                        S3ErrorCode::IncompleteBody,
                        "the request body ended early",
                    ))
                }
            }
        }
        if sent != plan.plaintext_len {
            return Err(S3Error::new(
                S3ErrorCode::IncompleteBody,
                "the request body is shorter than its Content-Length",
            ));
        }
        Ok(PendingUpload {
            dst,
            to: to.clone(),
            cipher,
        })
    }

    /// Ends a streamed upload: the last frame, then the backend's answer.
    pub(in crate::proxy) async fn finish_upload(
        &self,
        p: PendingUpload,
    ) -> Result<Stored, S3Error> {
        let PendingUpload {
            mut dst,
            to,
            mut cipher,
        } = p;
        let last = cipher.push(&[], true)?;
        dst.write_request_body(last, true)
            .await
            .map_err(|e| dest_failed(&e))?;
        dst.finish_request_body()
            .await
            .map_err(|e| dest_failed(&e))?;
        self.stored(dst, &to).await
    }

    /// The upstream PUT of a body the gateway makes: the plan's headers,
    /// signed, the header sent; the body state to feed it.
    async fn open_put(
        &self,
        plan: &UploadPlan,
        mut put: RequestHeader,
        to: &UpstreamTarget,
    ) -> Result<(HttpSession, crate::proxy::upload_stream::UploadStream), S3Error> {
        plan.apply(&mut put).map_err(internal)?;
        let hash = if plan.sends_trailer() {
            UNSIGNED_TRAILER
        } else {
            UNSIGNED_PAYLOAD
        };
        to.sign(&mut put, hash).await.map_err(|e| dest_failed(&e))?;
        let cipher = plan.body(&HeaderMap::new())?;
        let mut dst = to.session().await.map_err(|e| dest_failed(&e))?;
        dst.write_request_header(Box::new(put))
            .await
            .map_err(|e| dest_failed(&e))?;
        Ok((dst, cipher))
    }

    /// The backend's answer to the PUT: its ETag, or its refusal.
    async fn stored(&self, mut dst: HttpSession, to: &UpstreamTarget) -> Result<Stored, S3Error> {
        dst.read_response_header()
            .await
            .map_err(|e| dest_failed(&e))?;
        let resp = dst
            .response_header()
            .cloned()
            .ok_or_else(unreachable_dest)?;
        let mut answer = Vec::new();
        while let Some(chunk) = dst
            .read_response_body()
            .await
            .map_err(|e| dest_failed(&e))?
        {
            answer.extend_from_slice(&chunk);
            if answer.len() > MAX_ANSWER {
                return Err(unreachable_dest());
            }
        }
        let status = resp.status.as_u16();
        if status != 200 {
            let text = String::from_utf8_lossy(&answer);
            let code = between(&text, "<Code>", "</Code>").unwrap_or("");
            return Err(backend_refusal(status, code));
        }
        let header = |n: &str| {
            resp.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag").ok_or_else(unreachable_dest)?;
        let version_id = header("x-amz-version-id");
        to.release(dst).await;
        Ok(Stored {
            etag,
            version_id,
            source_version_id: None,
        })
    }

    /// S3's answer to a copy: `<{root}>` (`CopyObjectResult` or
    /// `CopyPartResult`) with the ETag and time, and the SSE headers.
    pub(in crate::proxy) async fn answer_copy(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        root: &str,
        stored: &Stored,
    ) -> Result<()> {
        let modified = self.copy_modified(ctx, root, &stored.etag).await;
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LastModified>{modified}</LastModified><ETag>{}</ETag></{root}>",
            stored.etag.replace('"', "&quot;")
        );
        let mut resp = ResponseHeader::build(200, Some(5))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/xml")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        resp.insert_header("x-amz-request-id", ctx.request_id.as_str())?;
        if let Some(v) = &stored.version_id {
            resp.insert_header("x-amz-version-id", v.as_str())?;
        }
        if let Some(v) = &stored.source_version_id {
            resp.insert_header("x-amz-copy-source-version-id", v.as_str())?;
        }
        // A plaintext copy (out of an encrypting bucket) has no SSE to claim.
        if let Some(key_id) = &ctx.audit.key_id {
            set_sse_headers(&mut resp, key_id)?;
        }
        crate::proxy::cors::apply(&mut resp, &ctx.cors)?;
        session
            .write_response_header(Box::new(resp), false)
            .await
            .map_err(|e| e.into_down())?;
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await
            .map_err(|e| e.into_down())?;
        Ok(())
    }
}

impl Gateway {
    /// The copy's `LastModified`: the stored object's own (a HEAD pinned to
    /// the copy's ETag), so it matches what HEAD and listings say; a part
    /// copy, or a HEAD that fails, gets the gateway's clock.
    async fn copy_modified(&self, ctx: &Ctx, root: &str, etag: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if root != "CopyObjectResult" {
            return format_iso8601(now);
        }
        let path = ctx
            .route
            .upstream_path_and_query
            .split('?')
            .next()
            .unwrap_or("/");
        let headed = self
            .backend(ctx.route.bucket.as_deref())
            .request(
                "HEAD",
                &ctx.route.upstream_host,
                path,
                &[("if-match", etag)],
                Bytes::new(),
                0,
            )
            .await;
        let stored = headed.ok().and_then(|(resp, _)| {
            let v = resp.headers.get(http::header::LAST_MODIFIED)?;
            (resp.status.as_u16() == 200).then(|| parse_http_date(v.to_str().ok()?))?
        });
        format_iso8601(stored.unwrap_or(now))
    }
}

/// A failed exchange with the destination, logged.
fn dest_failed(e: &dyn std::fmt::Display) -> S3Error {
    tracing::warn!(error = %e, "copy: storing the copy failed");
    unreachable_dest()
}

fn unreachable_dest() -> S3Error {
    S3Error::new(
        S3ErrorCode::ServiceUnavailable,
        "the copy could not be stored by the storage backend; retry",
    )
}

/// The backend's refusal of the PUT, in the codes a client acts on.
fn backend_refusal(status: u16, code: &str) -> S3Error {
    let known = [
        S3ErrorCode::NoSuchUpload,
        S3ErrorCode::EntityTooLarge,
        S3ErrorCode::AccessDenied,
        S3ErrorCode::InvalidArgument,
        S3ErrorCode::InvalidRequest,
        S3ErrorCode::SlowDown,
        // The client's destination conditions, kept on the PUT.
        S3ErrorCode::PreconditionFailed,
        S3ErrorCode::ConditionalRequestConflict,
    ];
    match known.into_iter().find(|k| k.as_str() == code) {
        Some(k) => S3Error::new(k, format!("the storage backend refused the copy ({code})")),
        None if status >= 500 => unreachable_dest(),
        None => S3Error::new(
            S3ErrorCode::InternalError,
            format!("the storage backend refused the copy ({status} {code})"),
        ),
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}
