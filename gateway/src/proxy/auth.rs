//! Auth stage: what the request is (S3 classification of method, Host,
//! path and query), who sent it (SigV4, header or presigned), and whether
//! that client holds the permission the operation needs in the bucket it
//! names. The bucket is resolved first (alias -> real name): grants,
//! policies and bucket settings all follow the resolved name. First in
//! `request_filter`: nothing else looks at a request that is not
//! authenticated.

use std::time::{SystemTime, UNIX_EPOCH};

use pingora::http::RequestHeader;
use sealgate_config::ResolvedBucket;
use sealgate_filters::auth::Identity;
use sealgate_filters::permission;
use sealgate_filters::s3::request::classify;
use sealgate_filters::s3::sigv4::RequestParts;
use sealgate_filters::s3::{uri, Operation, S3Error, S3ErrorCode, S3Request};

use super::{Ctx, Gateway};

/// An authenticated, authorised request.
pub struct Authenticated {
    pub s3: S3Request,
    /// The request's bucket, resolved (`None` for ListBuckets).
    pub bucket: Option<ResolvedBucket>,
    pub identity: Identity,
    pub query: Vec<(String, String)>,
}

impl Gateway {
    /// Classifies, authenticates and authorises; fills the audit record
    /// (also for a request refused here).
    pub(super) fn authenticate(
        &self,
        req: &RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<Authenticated, S3Error> {
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
        let mut s3 = classify(
            &req.method,
            host,
            raw_path,
            &query,
            &req.headers,
            &ctx.live.config.server.domains,
        )?;
        ctx.audit.operation = s3.operation;
        ctx.audit.bucket = s3.bucket.clone();
        // Moved, not copied: the route reads the key from the audit record.
        ctx.audit.key = s3.key.take();

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let identity = ctx
            .live
            .clients
            .authenticate(
                &RequestParts {
                    method: req.method.as_str(),
                    raw_path,
                    query: &query,
                    headers: &req.headers,
                },
                now,
            )
            .inspect_err(|e| {
                self.metrics
                    .authentication_failures_total
                    .with_label_values(&[e.code.as_str()])
                    .inc();
            })?;
        ctx.audit.access_key_id = Some(identity.access_key_id.clone());
        let bucket = match &s3.bucket {
            Some(typed) => {
                let resolved = ctx
                    .live
                    .resolve_bucket(typed)
                    .map_err(|e| self.refused("bucket", e))?;
                let needed = permission::required(s3.operation, &req.method, &query, &req.headers);
                identity
                    .authorize(&resolved.name, needed)
                    .map_err(|e| self.refused("permission", e))?;
                Some(resolved)
            }
            // Only ListBuckets names no bucket; nothing else without one
            // is forwarded under the gateway's credentials.
            None if s3.operation == Operation::ListBuckets => None,
            None => {
                return Err(S3Error::new(
                    S3ErrorCode::MethodNotAllowed,
                    "the specified method is not allowed without a bucket",
                ))
            }
        };
        Ok(Authenticated {
            s3,
            bucket,
            identity,
            query,
        })
    }

    /// Counts an authenticated request refused for `reason`.
    pub(super) fn refused(&self, reason: &str, e: S3Error) -> S3Error {
        self.metrics
            .authorization_refusals_total
            .with_label_values(&[reason])
            .inc();
        e
    }
}

impl crate::live::Live {
    /// The typed bucket name resolved; the real name of an alias is
    /// refused unless the alias allows it (`real_name_addressable`).
    pub(super) fn resolve_bucket(&self, typed: &str) -> Result<ResolvedBucket, S3Error> {
        self.config.resolve_bucket(typed).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::AccessDenied,
                format!("bucket {typed} is served under another name here"),
            )
        })
    }
}
