//! CORS stage: browsers' preflights answered by the gateway from the
//! bucket's CORS rules (a preflight is never signed, and the presigned
//! signature it carries was made for another method), and the rules'
//! headers on real responses to requests with an `Origin`. The rules are
//! the bucket's own (PutBucketCors, kept by the backend), read with
//! GetBucketCors and kept for `CORS_CACHE_TTL`; the backend sees nothing
//! of a preflight but that read, and the gateway's headers replace any the
//! backend adds, so every backend answers browsers alike.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, Method};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use sealgate_config::RateLimit;
use sealgate_filters::rate::TokenBucket;
use sealgate_filters::s3::cors::{self, Cors, CorsHeaders, MAX_CORS_DOCUMENT};
use sealgate_filters::s3::request::classify;
use sealgate_filters::s3::{Operation, S3Error, S3ErrorCode};

use super::{Ctx, Gateway};

/// How long a bucket's rules are used before they are read again: a
/// PutBucketCors through another instance takes effect here within it
/// (through this one, at once).
pub const CORS_CACHE_TTL: Duration = Duration::from_secs(30);
/// Buckets whose rules are kept; past it the cache starts afresh.
const MAX_CORS_CACHE_ENTRIES: usize = 10_000;
/// Reads of rules on behalf of requests no one signed (preflights, and
/// refusals to browsers) per second and instance, and at once: anyone can
/// send those, for any bucket name a grant pattern matches, and each read
/// the cache misses costs the backend a request. Past it such requests
/// are `503 SlowDown`; signed requests read rules without this limit.
const ANONYMOUS_CORS_READS: RateLimit = RateLimit {
    per_second: 20,
    burst: 100,
};

/// Each bucket's CORS rules as last read, by upstream bucket name.
pub struct CorsCache {
    entries: Mutex<HashMap<String, (Instant, Arc<Cors>)>>,
    anonymous_reads: Mutex<TokenBucket>,
}

impl Default for CorsCache {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            anonymous_reads: Mutex::new(TokenBucket::new(ANONYMOUS_CORS_READS, Instant::now())),
        }
    }
}

/// A bucket's rules as the cache has them.
enum Cached {
    Fresh(Arc<Cors>),
    /// Older than `CORS_CACHE_TTL`: read again, or used when that cannot be.
    Stale(Arc<Cors>),
    Missing,
}

impl CorsCache {
    /// Takes a read of rules for a request no one signed: `false` past
    /// `ANONYMOUS_CORS_READS`.
    fn anonymous_read(&self) -> bool {
        self.anonymous_reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now())
    }

    fn get(&self, bucket: &str) -> Cached {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(bucket) {
            Some((at, c)) if at.elapsed() < CORS_CACHE_TTL => Cached::Fresh(c.clone()),
            Some((_, c)) => Cached::Stale(c.clone()),
            None => Cached::Missing,
        }
    }

    /// Keeps `cors` for `bucket`. When full, entries without rules that
    /// are no longer fresh go first; rules a bucket really has are always
    /// kept (their number is the operator's), names without rules (anyone
    /// can make those up) only while there is room.
    fn put(&self, bucket: &str, cors: Arc<Cors>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_CORS_CACHE_ENTRIES && !entries.contains_key(bucket) {
            entries.retain(|_, (at, c)| !c.is_empty() || at.elapsed() < CORS_CACHE_TTL);
            if entries.len() >= MAX_CORS_CACHE_ENTRIES && cors.is_empty() {
                return;
            }
        }
        entries.insert(bucket.to_string(), (Instant::now(), cors));
    }

    /// Drops a bucket's rules (changed through this gateway).
    pub fn forget(&self, bucket: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(bucket);
    }
}

/// True for a request that sets or deletes a bucket's CORS rules.
pub fn changes_rules(method: &Method, query: &[(String, String)]) -> bool {
    (method == Method::PUT || method == Method::DELETE) && query.iter().any(|(k, _)| k == "cors")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Gateway {
    /// The rules of `bucket` (upstream name), from the cache or the
    /// backend. A backend that keeps none (404) or cannot keep any (501)
    /// has none; one that fails is `503`, not remembered. For a request
    /// no one signed (`anonymous`), reads are limited per instance.
    pub(super) async fn cors_rules(
        &self,
        ctx: &Ctx,
        bucket: &str,
        anonymous: bool,
    ) -> Result<Arc<Cors>, S3Error> {
        let stale = match ctx.live.cors.get(bucket) {
            Cached::Fresh(c) => return Ok(c),
            Cached::Stale(c) => Some(c),
            Cached::Missing => None,
        };
        // A read for a request no one signed is budgeted, but for the
        // refresh of rules a bucket really has: made-up bucket names
        // cannot starve the preflights of real ones.
        let budgeted = anonymous && stale.as_ref().is_none_or(|c| c.is_empty());
        if budgeted && !ctx.live.cors.anonymous_read() {
            return stale.ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::SlowDown,
                    "too many CORS requests for buckets whose rules are not at hand; retry with backoff",
                )
            });
        }
        let backend = self.backend(Some(bucket));
        let (host, path) = backend.address(Some(bucket), None);
        let path = format!("{path}?cors");
        let unavailable = || {
            S3Error::new(
                S3ErrorCode::ServiceUnavailable,
                "the bucket's CORS rules could not be read; retry",
            )
        };
        let (resp, body) = match backend.get(&host, &path, None, MAX_CORS_DOCUMENT).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(bucket, error = %e, "GetBucketCors failed");
                return stale.ok_or_else(unavailable);
            }
        };
        let rules = match resp.status.as_u16() {
            200 => Cors::parse(&body).unwrap_or_else(|e| {
                tracing::warn!(bucket, error = %e, "the backend's CORS rules do not parse; none apply");
                Cors::default()
            }),
            // This backend keeps no CORS rules (s3s-fs).
            501 => Cors::default(),
            status @ 500..=599 => {
                tracing::warn!(bucket, status, "the backend did not answer GetBucketCors");
                return stale.ok_or_else(unavailable);
            }
            // No rules (404), or a bucket that is not the gateway's to read
            // (403, 301): alike to a browser, so a preflight tells nothing
            // of the bucket.
            _ => Cors::default(),
        };
        let rules = Arc::new(rules);
        ctx.live.cors.put(bucket, rules.clone());
        Ok(rules)
    }

    /// Answers a preflight: `Origin` and the method checked first, then
    /// the bucket (one some client may use, or no backend is asked), then
    /// its rules.
    pub(super) async fn serve_preflight(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        ctx.audit.operation = Operation::CorsPreflight;
        let answer = self.preflight(session.req_header(), ctx).await;
        match answer {
            Ok(headers) => {
                // A preflight's body (it should have none) is not read.
                session.set_keepalive(None);
                let mut resp = ResponseHeader::build(200, Some(headers.len() + 3))?;
                for (name, value) in headers {
                    resp.insert_header(name, value)?;
                }
                resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
                resp.insert_header("x-amz-request-id", ctx.request_id.as_str())?;
                session
                    .write_response_header(Box::new(resp), false)
                    .await
                    .map_err(|e| e.into_down())?;
                session
                    .write_response_body(Some(Bytes::new()), true)
                    .await
                    .map_err(|e| e.into_down())?;
                Ok(())
            }
            Err(err) => self.reject(session, ctx, &err).await,
        }
    }

    async fn preflight(
        &self,
        req: &pingora::http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<CorsHeaders, S3Error> {
        let (origin, method) = cors::check_preflight(
            header(&req.headers, "origin"),
            header(&req.headers, "access-control-request-method"),
        )?;
        let host = header(&req.headers, "host").or_else(|| req.uri.authority().map(|a| a.as_str()));
        // Only the bucket and key are read: as a HEAD without a query.
        let s3 = classify(
            &Method::HEAD,
            host,
            req.uri.path(),
            &[],
            &HeaderMap::new(),
            &ctx.live.config.server.domains,
        )?;
        ctx.audit.bucket = s3.bucket.clone();
        let typed = s3.bucket.ok_or_else(cors::not_enabled)?;
        let resolved = ctx
            .live
            .resolve_bucket(&typed)
            .map_err(|_| cors::not_enabled())?;
        if !ctx.live.clients.any_grant(&resolved.name) {
            return Err(cors::not_enabled());
        }
        let rules = self.cors_rules(ctx, &resolved.real, true).await?;
        rules.preflight(
            origin,
            method,
            header(&req.headers, "access-control-request-headers"),
        )
    }

    /// The CORS headers of a refusal (the signature, the grants) to a
    /// browser, under the same conditions as a preflight's: a bucket some
    /// client may use, its rules (none if they cannot be read).
    pub(super) async fn cors_for_refused(&self, req: &pingora::http::RequestHeader, ctx: &mut Ctx) {
        let Some(origin) = header(&req.headers, "origin") else {
            return;
        };
        let Some(typed) = ctx.audit.bucket.clone() else {
            return;
        };
        let Ok(resolved) = ctx.live.resolve_bucket(&typed) else {
            return;
        };
        if !ctx.live.clients.any_grant(&resolved.name) {
            return;
        }
        if let Ok(rules) = self.cors_rules(ctx, &resolved.real, true).await {
            ctx.cors = Some(rules.response(origin, &req.method));
        }
    }

    /// The CORS headers a response to this authenticated request carries,
    /// when it came with an `Origin` (from a browser).
    pub(super) async fn cors_for_response(
        &self,
        req: &pingora::http::RequestHeader,
        ctx: &mut Ctx,
        real_bucket: &str,
    ) -> Result<(), S3Error> {
        let Some(origin) = header(&req.headers, "origin") else {
            return Ok(());
        };
        let rules = self.cors_rules(ctx, real_bucket, false).await?;
        ctx.cors = Some(rules.response(origin, &req.method));
        Ok(())
    }
}

/// Puts the gateway's CORS headers on a response to a browser's request
/// (`Some`: it came with an `Origin`), replacing whatever the backend
/// added, even when no rule allows it: a backend's own CORS answer never
/// reaches a browser. Requests without an `Origin` are left alone.
pub fn apply(resp: &mut ResponseHeader, cors: &Option<CorsHeaders>) -> pingora::Result<()> {
    let Some(cors) = cors else {
        return Ok(());
    };
    let theirs: Vec<http::HeaderName> = resp
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in theirs {
        resp.remove_header(&name);
    }
    for (name, value) in cors {
        resp.insert_header(*name, value.as_str())?;
    }
    // Beside the backend's own (Accept-Encoding, ...): the answer depends
    // on the origin, whether or not a rule allowed it.
    resp.append_header("vary", HeaderValue::from_static("Origin"))?;
    Ok(())
}
