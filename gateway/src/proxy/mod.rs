//! The Pingora adapter. Each phase calls the stages in a fixed order, and
//! the order is the design (docs/ARCHITECTURE.md has the table):
//!
//! | phase | stages, in order | why this order |
//! |---|---|---|
//! | `request_filter` | `auth` (bucket resolved, permission checked) → plan (`sealgate_filters::plan`, then `op`) → `route` → `token` → `upload`/`multipart` key work → `read` probe → `copy` probe; a copy the gateway makes is then served here | nothing is looked at before the client is authenticated and authorised; the plan needs the bucket's policy; the route's payload hash depends on the plan; a token is trusted only once its MAC checks; key work and probes are async and must finish before the upstream header goes out |
//! | `upstream_peer` | pooled prototype peer | one `HttpPeer` per endpoint so connections are reused |
//! | `upstream_request_filter` | `sign` (stage header changes, then signing last) | the signature must cover the final header; runs per attempt, so each attempt gets a fresh body state |
//! | `request_body_filter` | `multipart` part list, a held DeleteObjects/RestoreObject body (`auth`), or `upload` stream | a check that fails leaves the upstream body short: nothing is stored (or deleted) |
//! | `upstream_response_filter` | `upload` / `read` / `listing` / `multipart` responses | the data key is unwrapped here (async); the body phase is synchronous |
//! | `upstream_response_body_filter` | the response body transformation | decrypts or rewrites; never releases unauthenticated plaintext |
//! | `fail_to_proxy` / `logging` | `errors` / `observe`, then `uploads` records | one place writes S3 errors; one access line per request; upload records are kept before the connection serves its next request |

mod auth;
mod copy;
mod cors;
mod errors;
mod headers;
#[cfg(test)]
mod hostile_tests;
mod observe;
mod op;
mod read;
mod response;
mod route;
mod sign;
mod token;
mod upload;

// Each operation's parts, under the names the stages use.
use copy::{
    headers as copy_headers, part as part_copy, plain as plain_copy, source as copy_source,
    stream as copy_stream,
};
use read::{attributes, listing, target as read_target};
use upload::{multipart, post, records as uploads, stream as upload_stream};

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use sealgate_filters::plan::{self, Plan};
use sealgate_filters::policy;
use sealgate_filters::s3::multipart::upload_id::StoredMark;
use sealgate_filters::s3::{Operation, S3Error};

use crate::metrics::Metrics;
use crate::upstream::{UpstreamTarget, Upstreams};
pub use cors::CorsCache;
use multipart::Create;
use observe::{AuditRecord, RequestIds};
use read_target::ReadPlan;
use response::{set_sse_headers, strip_response, ResponseBody};
use route::Route;
use upload::Upload;
/// What the operator tools (`sealgate migrate`, `encrypt`) write with: the
/// gateway's own envelope and frame encryption.
pub(crate) use upload::{new_envelope, UploadPlan};
use upload_stream::UploadStream;
/// Keys the gateway keeps for itself (upload records, probes).
pub(crate) use uploads::looks_reserved;

/// The gateway's proxy logic, shared by all requests.
pub struct Gateway {
    /// Configuration, clients and key providers: swapped whole on reload.
    live: Arc<crate::live::LiveState>,
    /// Every backend; a request goes to its bucket's.
    upstreams: Arc<Upstreams>,
    metrics: Arc<Metrics>,
    request_ids: RequestIds,
}

/// A request counted in `sealgate_in_flight_requests` until it is dropped,
/// however it ends (a panic skips `logging`: the count must not grow, or
/// the load cap and a graceful shutdown would wait on it forever).
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Per-request state: who and where, what the plan is, and the body state
/// of each direction.
pub struct Ctx {
    _in_flight: InFlight,
    request_id: String,
    /// The configuration, clients and providers this request uses
    /// throughout, taken once when it begins (a reload swaps the set for
    /// later requests only).
    live: Arc<crate::live::Live>,
    started: Instant,
    route: Route,
    /// The operation's plan and its state.
    op: Op,
    /// The request body as the gateway sends it (rebuilt per attempt;
    /// boxed, so the state every request carries stays small).
    request_body: Option<Box<UploadStream>>,
    /// What happens to the response body.
    response_body: Option<ResponseBody>,
    /// A check that failed while the request body streamed.
    body_error: Option<S3Error>,
    audit: AuditRecord,
    /// Body bytes sent to and read from the upstream, and plaintext bytes
    /// released by decryption (for the metrics at the end).
    upstream_out: u64,
    upstream_in: u64,
    decrypted: u64,
    /// When the upstream request header went out.
    upstream_sent: Option<Instant>,
    /// How long after the start a proxied response's header went to the
    /// client (a response the gateway writes whole goes out at the end).
    first_byte: Option<std::time::Duration>,
    /// A failure during proxying was answered with a whole S3 error (not
    /// a response cut after its header).
    failure_answered: bool,
    /// Refused for its access key's `rate_limit`.
    throttled: bool,
    /// The checksum an encrypted write goes upstream with
    /// (`storage.s3.stored_checksum`, resolved for `auto` before routing).
    stored_checksum: Option<sealgate_filters::s3::body::checksum::ChecksumAlgorithm>,
    /// The bucket's CORS headers for a browser's request (one with an
    /// `Origin`): on every answer, the gateway's and the backend's.
    cors: Option<sealgate_filters::s3::cors::CorsHeaders>,
    /// The request sets or deletes its bucket's CORS rules: the cached
    /// ones are dropped once the backend took the change.
    forget_cors: bool,
}

/// What the gateway does with the request, and the state it needs.
pub enum Op {
    PassThrough,
    /// A body the gateway decodes (and, to encrypting buckets, encrypts).
    Upload(Upload),
    Create(Create),
    Complete(Box<multipart::CompletePlan>),
    /// ListParts of an upload the gateway began.
    ListParts,
    Read(ReadPlan),
    /// Object listings of an encrypting bucket.
    Listing,
    /// GetObjectAttributes in an encrypting bucket.
    Attributes(Box<attributes::AttributesPlan>),
    /// ListBuckets, filtered to the client's bucket patterns.
    ListBuckets(Arc<[sealgate_config::BucketGrant]>),
    /// CopyObject into an encrypting bucket: by the backend as stored, or
    /// made by the gateway (decided by a probe of the source).
    Copy(Box<copy::CopyObject>),
    /// UploadPartCopy into an encrypted upload: served by the gateway.
    PartCopy(Box<part_copy::PartCopy>),
    /// A copy out of an encrypting bucket into a pass-through one: served
    /// by the gateway, decrypted.
    PlainCopy(Box<plain_copy::PlainCopy>),
    /// ListMultipartUploads of an encrypting bucket: tokens by backend id.
    ListUploads(std::collections::HashMap<String, String>),
    /// DeleteObjects and RestoreObject: the body is held and checked.
    Checked(Box<auth::CheckedBody>),
}

impl Gateway {
    pub fn new(
        live: Arc<crate::live::LiveState>,
        upstreams: Arc<Upstreams>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            live,
            upstreams,
            metrics,
            request_ids: RequestIds::new(),
        }
    }

    /// The backend of an upstream (real) bucket: its own, or
    /// `storage.s3`'s.
    fn backend(&self, real_bucket: Option<&str>) -> &Arc<UpstreamTarget> {
        self.upstreams.of(real_bucket)
    }

    /// Everything `request_filter` does before the upstream request, in
    /// the order the module documentation gives.
    async fn prepare(&self, req: &RequestHeader, ctx: &mut Ctx) -> Result<(), S3Error> {
        // A browser's request: whatever a backend adds, the answer carries
        // the bucket's CORS headers or none.
        if req.headers.contains_key(http::header::ORIGIN) {
            ctx.cors = Some(Vec::new());
        }
        let auth = match self.authenticate(req, ctx) {
            Ok(auth) => auth,
            Err(e) => {
                // A browser reads the refusal only with the CORS headers.
                if req.headers.contains_key(http::header::ORIGIN) {
                    Box::pin(self.cors_for_refused(req, ctx)).await;
                }
                return Err(e);
            }
        };
        if let Some(bucket) = &auth.bucket {
            // A browser's request (authorised): its answer carries the
            // bucket's CORS headers, refusals included.
            if req.headers.contains_key(http::header::ORIGIN) {
                Box::pin(self.cors_for_response(req, ctx, &bucket.real)).await?;
            }
            ctx.forget_cors = cors::changes_rules(&req.method, &auth.query);
        }
        ctx.route.upload_token = route::upload_token(&auth.query)?;
        let live = ctx.live.clone();
        let enc = auth
            .bucket
            .as_ref()
            .and_then(|b| policy::for_bucket(&live.config, &b.name));
        let default_key_id = enc
            .as_ref()
            .and_then(|e| live.providers.get(&e.provider))
            .map(|p| p.default_key_id());
        let plan = plan::decide(&plan::Request {
            operation: auth.s3.operation,
            headers: &req.headers,
            query: &auth.query,
            verified: &auth.identity.verified,
            encryption: enc.as_ref(),
            default_key_id,
            has_token: ctx.route.upload_token.is_some(),
        })
        .inspect_err(|e| {
            self.metrics
                .policy_refusals_total
                .with_label_values(&[e.code.as_str()])
                .inc();
        })?;
        // Complete, ListParts, Abort: the token must be genuine and for
        // this object (UploadPart checks it as it unwraps the key).
        let token_enc = match (&ctx.route.upload_token, &plan) {
            (Some(_), Plan::Part { .. } | Plan::PartCopy { .. }) | (None, _) => None,
            (Some(_), _) => Some(enc.clone()),
        };
        ctx.op = self.op_for(plan, enc, req, &auth.identity, ctx)?;
        let check = match auth.s3.operation {
            Operation::DeleteObjects => Some(auth::BodyCheck::DeleteKeys {
                encrypting: ctx.audit.policy.is_some(),
            }),
            Operation::RestoreObject => Some(auth::BodyCheck::Restore),
            _ => None,
        };
        if let Some(check) = check {
            // Both are passed through by every plan; were one ever planned
            // otherwise, its body would go unchecked: refused instead.
            if !matches!(ctx.op, Op::PassThrough) {
                return Err(S3Error::new(
                    sealgate_filters::s3::S3ErrorCode::NotImplemented,
                    "this request's body cannot be checked here",
                ));
            }
            ctx.op = Op::Checked(Box::new(auth::CheckedBody::new(check)));
        }
        if let (true, Some(bucket)) = (
            ctx.audit.policy.is_some() && writes_ciphertext(auth.s3.operation),
            &auth.bucket,
        ) {
            // An upload's parts go as its Create decided (it was created
            // with that checksum algorithm, or without one).
            let mark = match (&ctx.route.upload_token, auth.s3.operation) {
                (Some(t), Operation::UploadPart | Operation::UploadPartCopy) => t.stored,
                _ => StoredMark::Unrecorded,
            };
            ctx.stored_checksum = match mark {
                StoredMark::Unrecorded => {
                    self.backend(Some(&bucket.real))
                        .stored_checksum(&bucket.real)
                        .await
                }
                decided => decided.or(None),
            };
        }
        self.route(req, &auth, ctx)?;
        self.plan_plain_copy(req, ctx)?;
        if let (Some(token), Some(enc)) = (&ctx.route.upload_token, token_enc) {
            self.open_token(
                &ctx.live,
                token,
                enc.as_ref(),
                &ctx.route,
                ctx.audit.key.as_deref(),
            )
            .await?;
        }
        self.prepare_upload(ctx).await?;
        self.prepare_create(ctx).await?;
        self.prepare_complete(ctx).await?;
        self.prepare_uploads(ctx).await?;
        // The steps that probe the backend carry large futures: each is
        // boxed and reached only by its operation, so the future every
        // request makes (and moves into a box) stays small.
        match ctx.op {
            Op::Read(_) => Box::pin(self.probe_read(ctx)).await,
            Op::Attributes(_) => Box::pin(self.prepare_attributes(ctx)).await,
            Op::Copy(_) => Box::pin(self.prepare_copy(req, ctx)).await,
            _ => Ok(()),
        }
    }
}

/// Longest one write to a client may wait for it to read (as each read
/// from it waits at most 60 s): a client that stops reading is cut.
const CLIENT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Operations that may store ciphertext the gateway frames (and so need to
/// know the stored checksum before they are routed).
fn writes_ciphertext(op: Operation) -> bool {
    matches!(
        op,
        Operation::PutObject
            | Operation::CopyObject
            | Operation::CreateMultipartUpload
            | Operation::UploadPart
            | Operation::UploadPartCopy
    )
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            _in_flight: InFlight::new(&self.metrics.in_flight_requests),
            request_id: self.request_ids.next(),
            live: self.live.load_full(),
            started: Instant::now(),
            route: Route::default(),
            op: Op::PassThrough,
            request_body: None,
            response_body: None,
            body_error: None,
            audit: AuditRecord::default(),
            upstream_out: 0,
            upstream_in: 0,
            decrypted: 0,
            upstream_sent: None,
            first_byte: None,
            failure_answered: false,
            throttled: false,
            stored_checksum: None,
            cors: None,
            forget_cors: false,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Pingora waits on a client that does not read forever by default.
        session.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        // Over the cap, before any work (this request is counted in).
        let in_flight = self.metrics.in_flight_requests.get();
        if in_flight > 0 && in_flight as u64 > ctx.live.config.server.max_in_flight {
            self.metrics.load_refusals_total.inc();
            let err = sealgate_filters::s3::S3Error::new(
                sealgate_filters::s3::S3ErrorCode::SlowDown,
                "this instance is serving as many requests as it takes; retry with backoff",
            );
            self.reject(session, ctx, &err).await?;
            return Ok(true);
        }
        // A browser form upload: the client is known only from its fields.
        // The rare paths that serve a request themselves are boxed, so the
        // future every request makes (and moves) stays small.
        // A browser's CORS preflight: never signed, answered here.
        if session.req_header().method == http::Method::OPTIONS {
            Box::pin(self.serve_preflight(session, ctx)).await?;
            return Ok(true);
        }
        if post::is_post_upload(session.req_header()) {
            Box::pin(self.serve_post(session, ctx)).await?;
            return Ok(true);
        }
        if let Err(err) = self.hoist_v2_headers(session, ctx) {
            self.reject(session, ctx, &err).await?;
            return Ok(true);
        }
        match self.prepare(session.req_header(), ctx).await {
            // A retried Complete of an upload already completed.
            Ok(()) if matches!(&ctx.op, Op::Complete(c) if c.completed.is_some()) => {
                Box::pin(self.answer_completed(session, ctx)).await?;
                Ok(true)
            }
            // A copy (or part copy) the gateway makes itself: it answers.
            Ok(()) if ctx.op.served_by_gateway() => {
                Box::pin(self.serve_copy(session, ctx)).await?;
                Ok(true)
            }
            Ok(()) => Ok(false),
            Err(err) => {
                self.reject(session, ctx, &err).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Ok(self.backend(ctx.route.bucket.as_deref()).peer())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.upstream_request(session, upstream_request, ctx)
            .await?;
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        let fixed = &self.metrics.fixed;
        match reused {
            true => fixed.connections_reused.inc(),
            false => fixed.connections_new.inc(),
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let input = match (&ctx.op, &ctx.request_body) {
            (Op::Complete(_) | Op::Checked(_), _) | (_, Some(_)) => body.take().unwrap_or_default(),
            _ => {
                ctx.upstream_out += body.as_ref().map_or(0, |b| b.len() as u64);
                return Ok(());
            }
        };
        let out = match (&mut ctx.op, &mut ctx.request_body) {
            // Hold the part list until it is whole and checked.
            (Op::Complete(complete), _) => complete.push(input, end_of_stream),
            // Held until every key it names is checked.
            (Op::Checked(held), _) => self.push_checked_body(&ctx.live, held, input, end_of_stream),
            (_, Some(stream)) => stream.push(&input, end_of_stream),
            _ => unreachable!("matched above"),
        };
        match out {
            // Some(empty) while holding bytes back: None would end the upstream body.
            Ok(out) => {
                ctx.upstream_out += out.len() as u64;
                *body = Some(out);
                Ok(())
            }
            Err(e) => {
                ctx.body_error = Some(e);
                Err(Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "request body check failed",
                ))
            }
        }
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(sent) = ctx.upstream_sent.take() {
            self.metrics
                .observe_upstream_response(ctx.audit.operation, sent.elapsed().as_secs_f64());
        }
        ctx.audit.upstream_status = Some(resp.status.as_u16());
        if ctx.forget_cors && resp.status.is_success() {
            if let Some(bucket) = &ctx.route.bucket {
                ctx.live.cors.forget(bucket);
            }
        }
        ctx.audit.upstream_request_id = observe::upstream_id(resp, "x-amz-request-id");
        ctx.audit.upstream_id2 = observe::upstream_id(resp, "x-amz-id-2");
        match &ctx.op {
            Op::Upload(Upload::Ready(plan)) if plan.encrypts() => {
                strip_response(resp);
                if resp.status.is_success() {
                    set_sse_headers(resp, &plan.key_id)?;
                    let echo = ctx
                        .request_body
                        .as_ref()
                        .and_then(|b| b.echo_checksum.clone())
                        .or_else(|| plan.echo.clone());
                    if let Some((name, value)) = echo {
                        resp.insert_header(name, value)?;
                    }
                }
            }
            Op::Attributes(_) if resp.status.as_u16() == 200 => {
                self.respond_attributes(resp, ctx)?
            }
            Op::Copy(copy) => {
                if let (true, Some(s)) = (resp.status.is_success(), &copy.server_side) {
                    set_sse_headers(resp, &s.key_id)?;
                }
            }
            Op::Read(_) => {
                // Boxed like the probes in `prepare`: pass-through requests
                // do not carry this future.
                if let Err(err) = Box::pin(self.prepare_read(resp, ctx)).await {
                    self.replace_response(resp, ctx, &err)?;
                } else {
                    strip_response(resp);
                }
            }
            Op::Listing | Op::ListParts if resp.status.as_u16() == 200 => {
                // The rewritten body's length differs: stream it chunked.
                resp.remove_header(http::header::CONTENT_LENGTH.as_str());
                ctx.response_body = Some(match ctx.op {
                    Op::Listing => listing::objects(),
                    _ => listing::parts(ctx.route.upload_token.as_ref().map(|t| t.encode())),
                });
            }
            Op::ListBuckets(grants) if resp.status.as_u16() == 200 => {
                resp.remove_header(http::header::CONTENT_LENGTH.as_str());
                ctx.response_body = Some(listing::buckets(ctx.live.config.clone(), grants.clone()));
            }
            Op::ListUploads(t) if resp.status.as_u16() == 200 => {
                ctx.response_body = Some(Self::list_uploads_body(resp, t))
            }
            Op::Complete(complete) => ctx.response_body = complete.respond(resp)?,
            Op::Create(Create::Ready(create)) => ctx.response_body = create.respond(resp)?,
            _ => {}
        }
        // An error document the steps above left alone: completed for the
        // client (its length then changes: streamed chunked).
        if resp.status.as_u16() >= 400
            && ctx.response_body.is_none()
            && session.req_header().method != http::Method::HEAD
        {
            let gateway_encoded = matches!(&ctx.op, Op::Upload(Upload::Ready(p)) if p.encrypts());
            resp.remove_header(http::header::CONTENT_LENGTH.as_str());
            ctx.response_body = Some(ResponseBody::BackendError(response::BackendErrorDoc::new(
                gateway_encoded,
            )));
        }
        if resp.headers.get("x-amz-request-id").is_none() {
            if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
                resp.insert_header("x-amz-request-id", v)?;
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.first_byte = Some(ctx.started.elapsed());
        cors::apply(resp, &ctx.cors)
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        ctx.upstream_in += body.as_ref().map_or(0, |b| b.len() as u64);
        let Some(transform) = &mut ctx.response_body else {
            return Ok(None);
        };
        let decrypts = matches!(transform, ResponseBody::Decrypt(_) | ResponseBody::Parts(_));
        match transform.push(body.take(), end_of_stream) {
            Ok(out) => {
                if decrypts {
                    ctx.decrypted += out.as_ref().map_or(0, |b| b.len() as u64);
                }
                if let ResponseBody::BackendError(doc) = transform {
                    if doc.code.is_some() {
                        ctx.audit.backend_error = doc.code.take();
                    }
                }
                *body = out;
                Ok(None)
            }
            Err(e) => {
                // Never release unauthenticated plaintext: abort the response.
                self.metrics
                    .decrypt_failures_total
                    .with_label_values(&["frame"])
                    .inc();
                tracing::warn!(request_id = %ctx.request_id, error = %e, "stored object failed authentication");
                Err(Error::explain(
                    ErrorType::InternalError,
                    "stored object failed authentication",
                ))
            }
        }
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        self.fail(session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        self.observe(session, e, ctx);
        self.keep_upload_records(session, ctx).await;
        // The request leaves the in-flight count when its `Ctx` is dropped,
        // after this: a binary shutting down exits once nothing is in flight.
    }
}
