//! Auth stage: what the request is (S3 classification of method, Host,
//! path and query), who sent it (SigV4 or SigV2, header or presigned), and whether
//! that client holds the permission the operation needs in the bucket it
//! names. The bucket is resolved first (alias -> real name): grants,
//! policies and bucket settings all follow the resolved name. First in
//! `request_filter`: nothing else looks at a request that is not
//! authenticated.

use std::time::{SystemTime, UNIX_EPOCH};

use pingora::http::RequestHeader;
use sealgate_config::{AddressingStyle, ResolvedBucket};
use sealgate_filters::auth::Identity;
use sealgate_filters::permission;
use sealgate_filters::s3::auth::sigv2;
use sealgate_filters::s3::auth::sigv4::RequestParts;
use sealgate_filters::s3::key_rules::{check_key, check_key_params, check_restore, delete_keys};
use sealgate_filters::s3::request::classify;
use sealgate_filters::s3::{uri, Addressing, Operation, S3Error, S3ErrorCode, S3Request};

use super::{route, Ctx, Gateway};

/// An `x-amz-*` name, in any case.
fn is_amz_param(name: &str) -> bool {
    name.get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("x-amz-"))
}

/// An authenticated, authorised request.
pub struct Authenticated {
    pub s3: S3Request,
    /// The request's bucket, resolved (`None` for ListBuckets).
    pub bucket: Option<ResolvedBucket>,
    pub identity: Identity,
    pub query: Vec<(String, String)>,
}

impl Gateway {
    /// A presigned V2 URL's `x-amz-*` query parameters made the headers
    /// they stand for, before anything looks at the request (`sigv2::hoist`).
    pub(super) fn hoist_v2_headers(
        &self,
        session: &mut pingora::proxy::Session,
        ctx: &Ctx,
    ) -> Result<(), S3Error> {
        if !ctx.live.config.auth.signature_v2 {
            return Ok(());
        }
        let req = session.req_header();
        let Some(query) = req.uri.query() else {
            return Ok(());
        };
        let Some(hoisted) = sigv2::hoist(query, &req.headers)? else {
            return Ok(());
        };
        let path = req.uri.path();
        let uri: http::Uri = match hoisted.query.is_empty() {
            true => path.parse(),
            false => format!("{path}?{}", hoisted.query).parse(),
        }
        .map_err(|_| S3Error::new(S3ErrorCode::InvalidURI, "the request URI is not valid"))?;
        let req = session.req_header_mut();
        req.set_uri(uri);
        for (name, value) in hoisted.headers {
            req.insert_header(name, value)
                .map_err(|_| S3Error::new(S3ErrorCode::InvalidArgument, "a header is not valid"))?;
        }
        Ok(())
    }

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
        // A backend may read an `x-amz-*` query parameter as the header
        // it names (as S3 does for presigned URLs), where no check of the
        // gateway's would see it: only a presigned URL's own are taken (a
        // V2 URL's others were made headers above).
        if let Some((name, _)) = query
            .iter()
            .find(|(k, _)| is_amz_param(k) && !route::PRESIGN_PARAMS.contains(&k.as_str()))
        {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                format!("the query parameter {name} stands for a header; send it as a header"),
            ));
        }
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
        if let Some(key) = &s3.key {
            ctx.live.check_key(key)?;
        }
        check_key_params(&query, ctx.live.config.upstream.literal_keys)?;
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
                (s3.addressing == Addressing::VirtualHosted)
                    .then_some(s3.bucket.as_deref())
                    .flatten(),
                now,
            )
            .inspect_err(|e| {
                self.metrics
                    .authentication_failures_total
                    .with_label_values(&[e.code.as_str()])
                    .inc();
            })?;
        ctx.audit.access_key_id = Some(identity.access_key_id.clone());
        if identity.verified.signature_v2 {
            self.metrics.signature_v2_total.inc();
        }
        // Before anything this request would cost the backend or the KMS.
        if !ctx.live.within_rate(&identity.access_key_id) {
            return Err(self.over_rate(ctx));
        }
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
    /// Could a bucket name with capitals reach a bucket under other rules
    /// than its own? A host name is case-insensitive (`Legacy.s3...` is
    /// bucket `legacy` with virtual-host addressing), and a backend may
    /// fold names: refused when either could land on a bucket whose rules
    /// (a policy, a bucket entry, an alias) its lowercase name has and the
    /// typed name does not. Legacy buckets with capitals stay reachable
    /// path-style where nothing is configured for their lowercase name.
    fn case_folds_into_rules(&self, typed: &str) -> bool {
        if self.config.upstream.addressing_style == AddressingStyle::Virtual {
            return true;
        }
        let lower = typed.to_ascii_lowercase();
        let policy = |b: &str| self.config.policy_for(b).map(|p| p as *const _);
        policy(&lower) != policy(typed)
            || self.config.buckets.contains_key(&lower)
            || self
                .config
                .buckets
                .values()
                .any(|b| b.real_name.as_deref() == Some(lower.as_str()))
    }

    /// A key from a request, checked before anything uses it: refused
    /// when a backend mapping keys to file paths would resolve it into
    /// another place, unless the backend reads keys literally
    /// (`storage.s3.literal_keys`).
    pub(super) fn check_key(&self, key: &str) -> Result<(), S3Error> {
        check_key(key, self.config.upstream.literal_keys)
    }

    /// The typed bucket name resolved; the real name of an alias is
    /// refused unless the alias allows it (`real_name_addressable`).
    pub(super) fn resolve_bucket(&self, typed: &str) -> Result<ResolvedBucket, S3Error> {
        if typed.bytes().any(|c| c.is_ascii_uppercase()) && self.case_folds_into_rules(typed) {
            return Err(S3Error::new(
                S3ErrorCode::InvalidBucketName,
                "bucket names with capitals cannot be reached here (another bucket's rules apply to its lowercase name)",
            ));
        }
        self.config.resolve_bucket(typed).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::AccessDenied,
                format!("bucket {typed} is served under another name here"),
            )
        })
    }
}

/// Largest request XML held for checking: a DeleteObjects list (1,000
/// keys of 1,024 bytes, each byte escaped as `&amp;` at worst, with
/// version ids) or a RestoreObject request.
const MAX_CHECKED_BODY: usize = 8 * 1024 * 1024;

/// A request body the backend acts on as a list of further orders, held
/// until it is whole and checked before any of it goes upstream.
pub struct CheckedBody {
    body: bytes::BytesMut,
    kind: BodyCheck,
}

/// What a held body is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCheck {
    /// DeleteObjects: each key it names is checked as a key in a path
    /// would be (the backend deletes them in the request's bucket); in an
    /// encrypting bucket the upload records' keys are the gateway's.
    DeleteKeys { encrypting: bool },
    /// RestoreObject: a plain restore only. A SELECT restore runs a query
    /// over the stored bytes and writes its result to an `OutputLocation`
    /// (another bucket, outside the client's grants and unencrypted).
    Restore,
}

impl CheckedBody {
    pub fn new(kind: BodyCheck) -> Self {
        Self {
            body: bytes::BytesMut::new(),
            kind,
        }
    }
}

impl Gateway {
    /// Holds a checked body until it is whole, then checks it and
    /// releases it unchanged.
    pub(super) fn push_checked_body(
        &self,
        live: &crate::live::Live,
        held: &mut CheckedBody,
        input: bytes::Bytes,
        end: bool,
    ) -> Result<bytes::Bytes, S3Error> {
        if held.body.len() + input.len() > MAX_CHECKED_BODY {
            return Err(S3Error::new(
                S3ErrorCode::MaxMessageLengthExceeded,
                format!("the request's XML exceeds {MAX_CHECKED_BODY} bytes"),
            ));
        }
        held.body.extend_from_slice(&input);
        if !end {
            return Ok(bytes::Bytes::new());
        }
        match held.kind {
            BodyCheck::DeleteKeys { encrypting } => {
                for key in delete_keys(&held.body)? {
                    live.check_key(&key)?;
                    self.refuse_reserved(encrypting, &key)?;
                }
            }
            BodyCheck::Restore => check_restore(&held.body)?,
        }
        Ok(std::mem::take(&mut held.body).freeze())
    }
}
