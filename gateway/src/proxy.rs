//! The Pingora `ProxyHttp` implementation: authenticate, authorise, map the
//! bucket, forward, re-sign. Request bodies and responses pass through
//! unchanged here; the encryption plans hang off the same phases.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use sealgate_config::Config;
use sealgate_filters::auth::{split_copy_source, Clients};
use sealgate_filters::s3::request::classify;
use sealgate_filters::s3::sigv4::{PayloadHash, RequestParts, UNSIGNED_PAYLOAD};
use sealgate_filters::s3::{uri, Operation, S3Error, S3ErrorCode};

use crate::metrics::{status_class, Metrics};
use crate::upstream::{encode_key, UpstreamTarget};

/// Query parameters of a presigned URL: consumed by the gateway, never forwarded.
const PRESIGN_PARAMS: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// The gateway's proxy logic, shared by all requests.
pub struct Gateway {
    pub config: Arc<Config>,
    clients: Clients,
    upstream: Arc<UpstreamTarget>,
    metrics: Arc<Metrics>,
    request_ids: RequestIds,
}

/// Per-request state.
pub struct Ctx {
    request_id: String,
    started: Instant,
    operation: Operation,
    bucket: Option<String>,
    access_key_id: Option<String>,
    /// Upstream `Host`, path and query, decided in `request_filter`.
    upstream_host: String,
    upstream_path_and_query: String,
    /// The upstream `x-amz-content-sha256`.
    payload_hash: String,
    /// Rewritten `x-amz-copy-source` (alias mapped to the real bucket).
    copy_source: Option<String>,
    /// The S3 error the gateway answered with, if any.
    rejected: Option<S3ErrorCode>,
}

impl Gateway {
    pub fn new(config: Arc<Config>, upstream: Arc<UpstreamTarget>, metrics: Arc<Metrics>) -> Self {
        let clients = Clients::new(&config.auth.clients, config.auth.max_clock_skew);
        Self {
            config,
            clients,
            upstream,
            metrics,
            request_ids: RequestIds::new(),
        }
    }

    /// Authenticates, authorises and plans the upstream request.
    fn plan(&self, req: &RequestHeader, ctx: &mut Ctx) -> Result<(), S3Error> {
        let raw_path = req.uri.path();
        let raw_query = req.uri.query().unwrap_or("");
        let query = uri::parse_query(raw_query).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidURI,
                "the query string is not valid UTF-8",
            )
        })?;
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let s3 = classify(
            &req.method,
            host,
            raw_path,
            &query,
            &req.headers,
            &self.config.server.domains,
        )?;
        ctx.operation = s3.operation;
        ctx.bucket = s3.bucket.clone();

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let identity = self.clients.authenticate(
            &RequestParts {
                method: req.method.as_str(),
                raw_path,
                query: &query,
                headers: &req.headers,
            },
            now,
        )?;
        ctx.access_key_id = Some(identity.access_key_id.clone());
        if let Some(bucket) = &s3.bucket {
            identity.authorize(bucket)?;
        }
        if matches!(
            identity.verified.payload,
            PayloadHash::StreamingSigned | PayloadHash::StreamingSignedTrailer
        ) {
            // Chunk signatures chain from the client's seed signature and key;
            // forwarding needs them re-signed, which the aws-chunked decoder does.
            return Err(S3Error::new(
                S3ErrorCode::NotImplemented,
                "aws-chunked bodies with chunk signatures are not supported yet; use UNSIGNED-PAYLOAD, a payload SHA-256 or STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            ));
        }

        // Copy sources name a bucket too: authorise and map it.
        if let Some(src) = req.headers.get("x-amz-copy-source") {
            let src = src.to_str().map_err(|_| {
                S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "x-amz-copy-source is not ASCII",
                )
            })?;
            let (src_bucket, rest) = split_copy_source(src).ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "x-amz-copy-source must be /bucket/key",
                )
            })?;
            let src_bucket = uri::decode(src_bucket).ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "x-amz-copy-source is badly encoded",
                )
            })?;
            identity.authorize(&src_bucket)?;
            ctx.copy_source = Some(format!("/{}/{rest}", self.config.real_bucket(&src_bucket)));
        }

        let real_bucket = s3.bucket.as_deref().map(|b| self.config.real_bucket(b));
        let key = s3.key.as_deref().map(encode_key);
        let (host, path) = self.upstream.address(real_bucket, key.as_deref());
        let forwarded_query: Vec<String> = query
            .iter()
            .filter(|(k, _)| !PRESIGN_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| format!("{}={}", uri::encode(k), uri::encode(v)))
            .collect();
        ctx.upstream_host = host;
        ctx.upstream_path_and_query = if forwarded_query.is_empty() {
            path
        } else {
            format!("{path}?{}", forwarded_query.join("&"))
        };
        ctx.payload_hash = req
            .headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(UNSIGNED_PAYLOAD)
            .to_string();
        Ok(())
    }

    /// Answers an S3 XML error and records it.
    async fn reject(&self, session: &mut Session, ctx: &mut Ctx, err: &S3Error) -> Result<()> {
        ctx.rejected = Some(err.code);
        self.metrics
            .rejected_total
            .with_label_values(&[err.code.as_str()])
            .inc();
        let resource = session.req_header().uri.path().to_string();
        let is_head = session.req_header().method == http::Method::HEAD;
        let body = err.to_xml(&resource, &ctx.request_id);
        let mut resp = ResponseHeader::build(err.status(), Some(4))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/xml")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        resp.insert_header("x-amz-request-id", ctx.request_id.as_str())?;
        // The request body (if any) was not read: the connection cannot be reused.
        session.set_keepalive(None);
        session
            .write_response_header(Box::new(resp), is_head)
            .await?;
        if !is_head {
            session
                .write_response_body(Some(Bytes::from(body)), true)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        self.metrics.in_flight_requests.inc();
        Ctx {
            request_id: self.request_ids.next(),
            started: Instant::now(),
            operation: Operation::Unknown,
            bucket: None,
            access_key_id: None,
            upstream_host: String::new(),
            upstream_path_and_query: String::new(),
            payload_hash: String::new(),
            copy_source: None,
            rejected: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        match self.plan(session.req_header(), ctx) {
            Ok(()) => Ok(false),
            Err(err) => {
                self.reject(session, ctx, &err).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Ok(self.upstream.peer())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let uri: http::Uri = ctx.upstream_path_and_query.parse().map_err(|e| {
            Error::because(ErrorType::InternalError, "building the upstream URI", e)
        })?;
        upstream_request.set_uri(uri);
        upstream_request.insert_header(http::header::HOST, ctx.upstream_host.as_str())?;
        if let Some(src) = &ctx.copy_source {
            upstream_request.insert_header("x-amz-copy-source", src.as_str())?;
        }
        // Hop-by-hop and client-identity headers are not the upstream's business.
        upstream_request.remove_header("proxy-authorization");
        self.upstream
            .sign(upstream_request, &ctx.payload_hash)
            .await
            .map_err(|e| {
                Error::because(ErrorType::InternalError, "signing the upstream request", e)
            })?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if upstream_response.headers.get("x-amz-request-id").is_none() {
            if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
                upstream_response.insert_header("x-amz-request-id", v)?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
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
            if session.response_written().is_none() {
                let _ = self.reject(session, ctx, &err).await;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        self.metrics.in_flight_requests.dec();
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let op = ctx.operation.as_str();
        self.metrics
            .requests_total
            .with_label_values(&[op, status_class(status)])
            .inc();
        self.metrics
            .request_duration_seconds
            .with_label_values(&[op])
            .observe(ctx.started.elapsed().as_secs_f64());
        tracing::info!(
            target: "sealgate::access",
            request_id = %ctx.request_id,
            operation = op,
            bucket = ctx.bucket.as_deref().unwrap_or("-"),
            access_key_id = ctx.access_key_id.as_deref().unwrap_or("-"),
            status,
            rejected = ctx.rejected.map(|c| c.as_str()).unwrap_or("-"),
            error = e.map(|e| e.etype().as_str()).unwrap_or("-"),
            duration_ms = ctx.started.elapsed().as_millis() as u64,
            "request"
        );
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

/// Request ids: unique per process start, cheap, sortable in logs.
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        Self {
            prefix: nanos ^ std::process::id().rotate_left(16),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{:08X}{:012X}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}
