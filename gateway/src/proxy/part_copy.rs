//! UploadPartCopy into an upload the gateway began: the backend cannot
//! make the part (it would copy ciphertext under another key, or plaintext
//! into an encrypting bucket), so the gateway does. It reads the source's
//! range (decrypted after the same binding check as a GET; a plaintext
//! source as stored), encrypts it as part N of the destination upload and
//! sends it upstream as UploadPart, piece by piece: memory stays flat for
//! any part size. The client gets S3's `CopyPartResult`.
//!
//! Failure leaves nothing: the upstream part body is cut short (the
//! backend stores no part) whenever the source cannot be read, changes, or
//! fails authentication.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use sealgate_envelope::format::ByteRange;
use sealgate_envelope::multipart::PART_HEADER_LEN;
use sealgate_filters::plan::{BodyEncoding, UploadBody};
use sealgate_filters::policy::BucketEncryption;
use sealgate_filters::s3::chunked::encode::UNSIGNED_TRAILER;
use sealgate_filters::s3::sigv4::{format_amz_date, UNSIGNED_PAYLOAD};
use sealgate_filters::s3::upload_id::UploadToken;
use sealgate_filters::s3::{S3Error, S3ErrorCode};

use super::errors::internal;
use super::part_copy_source::{
    check_etag_conditions, check_source_status, source_failed, SourceBody, SOURCE_CONDITIONS,
};
use super::read_target::ReadTarget;
use super::response::set_sse_headers;
use super::route::Route;
use super::upload::UploadPlan;
use super::{Ctx, Gateway, Op};

/// Largest upstream answer read after the part went up (an error document
/// or an empty body).
const MAX_ANSWER: usize = 64 * 1024;

/// A planned UploadPartCopy.
pub struct PartCopy {
    pub number: u32,
    /// The source's plaintext bytes, inclusive; the whole object if `None`.
    pub range: Option<(u64, u64)>,
    pub token: Box<UploadToken>,
    /// The destination bucket's encryption.
    pub enc: BucketEncryption,
}

impl Gateway {
    /// Runs the copy and answers the client; errors are answered too.
    pub(super) async fn serve_part_copy(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let Op::PartCopy(copy) = std::mem::replace(&mut ctx.op, Op::PassThrough) else {
            return Ok(());
        };
        let headers = session.req_header().headers.clone();
        match self.copy_part(*copy, &headers, ctx).await {
            Ok(etag) => self.answer_part_copy(session, ctx, &etag).await,
            Err(e) => self.reject(session, ctx, &e).await,
        }
    }

    async fn copy_part(
        &self,
        copy: PartCopy,
        headers: &HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<String, S3Error> {
        let opened = self
            .open_token(
                &copy.token,
                Some(&copy.enc),
                &ctx.route,
                ctx.audit.key.as_deref(),
            )
            .await?;
        ctx.audit.provider = Some(copy.enc.provider.clone());
        ctx.audit.key_id = Some(copy.token.key_id.clone());
        let (host, path) = self.source_address(ctx.route.copy_source.as_deref())?;
        let source = Route {
            upstream_host: host,
            upstream_path_and_query: path,
            ..Route::default()
        };
        let conditions: Vec<(&str, &str)> = SOURCE_CONDITIONS
            .iter()
            .filter_map(|(from, to)| Some((*to, headers.get(*from)?.to_str().ok()?)))
            .collect();
        // The source's first bytes: its envelope, size and first part header.
        let head = format!("bytes=0-{}", PART_HEADER_LEN - 1);
        let mut probe_headers = conditions.clone();
        probe_headers.push(("range", &head));
        let (resp, body) = self
            .upstream
            .request(
                "GET",
                &source.upstream_host,
                &source.upstream_path_and_query,
                &probe_headers,
                Bytes::new(),
                MAX_ANSWER,
            )
            .await
            .map_err(|e| source_failed(&e))?;
        check_source_status(resp.status.as_u16())?;
        // An empty object cannot serve a first byte (416): nothing to decrypt.
        let empty = resp.status.as_u16() == 416;
        let want = match copy.range {
            Some((a, b)) => ByteRange::From {
                start: a,
                end: Some(b),
            },
            None => ByteRange::From {
                start: 0,
                end: None,
            },
        };
        let probed = if empty {
            Ok((ReadTarget::Plain, None))
        } else {
            self.target_from_probe(&resp, &body, want, &source, &ctx.request_id)
                .await
        };
        let (target, cipher_range) = match probed {
            Ok(t) => t,
            // An empty source copied whole is an empty part.
            Err(e) if e.code == S3ErrorCode::InvalidRange && copy.range.is_none() => {
                (ReadTarget::Plain, None)
            }
            Err(e) => return Err(e),
        };
        let etag = resp
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        check_etag_conditions(headers, etag.as_deref())?;
        let (span, fetch, body) = self
            .source_plan(&copy, &resp, target, cipher_range, &ctx.route)
            .await?;
        let len = span.map_or(0, |(a, b)| b - a + 1);
        self.check_size(sealgate_envelope::multipart::stored_part_len(len))?;
        let part = UploadPlan::for_part(
            UploadBody {
                plaintext_len: len,
                encoding: BodyEncoding::Plain,
                trailer_algorithm: None,
                payload_sha256: None,
            },
            copy.token.key_id.clone(),
            opened.dek,
            opened.ctx_hash,
            copy.number,
        )
        .with_stored_checksum(self.stored_checksum());
        // The source is pinned to the version the probe saw.
        let mut get_headers = conditions;
        let fetch_range = fetch.map(|(a, b)| format!("bytes={a}-{b}"));
        if let Some(r) = &fetch_range {
            get_headers.push(("range", r));
        }
        // (A client's own If-Match already held at the probe.)
        if let Some(t) = etag
            .as_deref()
            .filter(|_| !get_headers.iter().any(|(n, _)| *n == "if-match"))
        {
            get_headers.push(("if-match", t));
        }
        self.stream_part(&part, &source, &get_headers, body, len, ctx)
            .await
    }

    /// Streams the source's bytes through decryption and the part's
    /// encryption into an upstream UploadPart; returns the part's ETag.
    async fn stream_part(
        &self,
        part: &UploadPlan,
        source: &Route,
        get_headers: &[(&str, &str)],
        mut body: SourceBody,
        len: u64,
        ctx: &Ctx,
    ) -> Result<String, S3Error> {
        let mut put =
            RequestHeader::build("PUT", ctx.route.upstream_path_and_query.as_bytes(), None)
                .map_err(internal)?;
        put.insert_header(http::header::HOST, ctx.route.upstream_host.as_str())
            .map_err(internal)?;
        part.apply(&mut put).map_err(internal)?;
        let hash = if self.stored_checksum().is_some() {
            UNSIGNED_TRAILER
        } else {
            UNSIGNED_PAYLOAD
        };
        self.upstream
            .sign(&mut put, hash)
            .await
            .map_err(|e| dest_failed(&e))?;
        let mut cipher = part.body(&HeaderMap::new())?;
        let mut dst = self.upstream.session().await.map_err(|e| dest_failed(&e))?;
        dst.write_request_header(Box::new(put))
            .await
            .map_err(|e| dest_failed(&e))?;
        if len > 0 {
            let mut src = self.open_source(source, get_headers, &body).await?;
            let mut sent = 0u64;
            while let Some(chunk) = src
                .read_response_body()
                .await
                .map_err(|e| source_failed(&e))?
            {
                let plain = match &mut body {
                    SourceBody::Plain => chunk,
                    SourceBody::Decrypt(dec) => dec
                        .push(Some(chunk), false)
                        .map_err(|_| self.integrity("frame"))?
                        .unwrap_or_default(),
                };
                sent += plain.len() as u64;
                if sent > len {
                    return Err(super::read_target::changed());
                }
                let out = cipher.push(&plain, false)?;
                if !out.is_empty() {
                    dst.write_request_body(out, false)
                        .await
                        .map_err(|e| dest_failed(&e))?;
                }
            }
            if let SourceBody::Decrypt(dec) = &mut body {
                let tail = dec
                    .push(None, true)
                    .map_err(|_| self.integrity("frame"))?
                    .unwrap_or_default();
                sent += tail.len() as u64;
                let out = cipher.push(&tail, false)?;
                dst.write_request_body(out, false)
                    .await
                    .map_err(|e| dest_failed(&e))?;
            }
            if sent != len {
                return Err(super::read_target::changed());
            }
            self.upstream.release(src).await;
        }
        let last = cipher.push(&[], true)?;
        dst.write_request_body(last, true)
            .await
            .map_err(|e| dest_failed(&e))?;
        dst.finish_request_body()
            .await
            .map_err(|e| dest_failed(&e))?;
        self.part_answer(dst).await
    }

    /// The backend's answer to the part: its ETag, or its error as sent.
    async fn part_answer(&self, mut dst: HttpSession) -> Result<String, S3Error> {
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
        let etag = resp
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(unreachable_dest)?;
        self.upstream.release(dst).await;
        Ok(etag)
    }

    async fn answer_part_copy(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        etag: &str,
    ) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let d = format_amz_date(now);
        let modified = format!(
            "{}-{}-{}T{}:{}:{}.000Z",
            &d[0..4],
            &d[4..6],
            &d[6..8],
            &d[9..11],
            &d[11..13],
            &d[13..15]
        );
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyPartResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LastModified>{modified}</LastModified><ETag>{}</ETag></CopyPartResult>",
            etag.replace('"', "&quot;")
        );
        let mut resp = ResponseHeader::build(200, Some(4))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/xml")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        resp.insert_header("x-amz-request-id", ctx.request_id.as_str())?;
        set_sse_headers(&mut resp, ctx.audit.key_id.as_deref().unwrap_or(""))?;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
        Ok(())
    }
}

/// A failed exchange with the destination, logged.
fn dest_failed(e: &dyn std::fmt::Display) -> S3Error {
    tracing::warn!(error = %e, "part copy: storing the part failed");
    unreachable_dest()
}

fn unreachable_dest() -> S3Error {
    S3Error::new(
        S3ErrorCode::ServiceUnavailable,
        "the part could not be stored by the storage backend; retry",
    )
}

/// The backend's refusal of the part, in the codes a client acts on.
fn backend_refusal(status: u16, code: &str) -> S3Error {
    let known = [
        S3ErrorCode::NoSuchUpload,
        S3ErrorCode::EntityTooLarge,
        S3ErrorCode::AccessDenied,
        S3ErrorCode::InvalidArgument,
        S3ErrorCode::InvalidRequest,
        S3ErrorCode::SlowDown,
    ];
    match known.into_iter().find(|k| k.as_str() == code) {
        Some(k) => S3Error::new(k, format!("the storage backend refused the part ({code})")),
        None if status >= 500 => unreachable_dest(),
        None => S3Error::new(
            S3ErrorCode::InternalError,
            format!("the storage backend refused the part ({status} {code})"),
        ),
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}
