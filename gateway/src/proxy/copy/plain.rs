//! Copies out of an encrypting bucket into one the gateway does not
//! encrypt (CopyObject or UploadPartCopy): the backend would copy
//! ciphertext that nothing could read there. Out of a `mandatory` bucket
//! such a copy is refused (its objects never rest in plaintext); otherwise
//! the gateway makes it, streaming: the source read as a GET would read it
//! (decrypted after its bucket's checks) and stored in plaintext.

use http::HeaderMap;
use pingora::http::RequestHeader;
use sealgate_filters::plan::{copy_source_range, replaces_metadata, UploadBody};
use sealgate_filters::policy;
use sealgate_filters::s3::request::Operation;
use sealgate_filters::s3::{S3Error, S3ErrorCode};

use crate::proxy::copy_stream::Stored;
use crate::proxy::errors::internal;
use crate::proxy::upload::UploadPlan;
use crate::proxy::{Ctx, Gateway, Op};

/// A copy out of an encrypting bucket into a pass-through one.
pub struct PlainCopy {
    /// UploadPartCopy (else CopyObject).
    pub part: bool,
    /// The source's plaintext bytes, inclusive (part copies).
    pub range: Option<(u64, u64)>,
    /// `MetadataDirective: REPLACE` (CopyObject).
    pub replace: bool,
}

impl Gateway {
    /// Turns a pass-through copy whose source bucket encrypts, or lives on
    /// another backend, into a copy the gateway makes, or refuses it (a
    /// mandatory source bucket).
    pub(in crate::proxy) fn plan_plain_copy(
        &self,
        req: &RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<(), S3Error> {
        let part = match ctx.audit.operation {
            Operation::CopyObject => false,
            Operation::UploadPartCopy => true,
            _ => return Ok(()),
        };
        if !matches!(ctx.op, Op::PassThrough) {
            return Ok(());
        }
        let source_enc = ctx
            .route
            .copy_source_bucket
            .as_deref()
            .and_then(|b| policy::for_bucket(&ctx.live.config, b));
        if source_enc.is_none() && !self.crosses_backends(&ctx.route) {
            return Ok(()); // plaintext to plaintext: the backend copies
        }
        if source_enc.is_some_and(|e| e.mandatory) {
            return Err(S3Error::new(
                S3ErrorCode::AccessDenied,
                "the copy source's bucket requires encryption: its objects are copied only into buckets the gateway encrypts",
            ));
        }
        crate::proxy::copy_headers::refuse_customer_key_source(&req.headers)?;
        let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
        let range = match (part, header("x-amz-copy-source-range")) {
            (true, Some(r)) => Some(copy_source_range(r)?),
            _ => None,
        };
        let replace = replaces_metadata(&req.headers)?;
        ctx.op = Op::PlainCopy(Box::new(PlainCopy {
            part,
            range,
            replace,
        }));
        Ok(())
    }

    /// Reads the source (decrypted) and stores it in plaintext.
    pub(in crate::proxy) async fn plain_copy(
        &self,
        copy: PlainCopy,
        headers: &HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<Stored, S3Error> {
        let src = self
            .probe_copy_source(&ctx.live, headers, copy.range, &ctx.route, &ctx.request_id)
            .await?;
        let len = src.len();
        ctx.live.check_size(len)?;
        if let Some(meta) = src.meta() {
            ctx.audit.provider = Some(meta.provider.clone());
        }
        let body = self.source_body(&ctx.live, &src).await?;
        let plan = UploadPlan::decode_only(UploadBody::plain(len));
        let mut put =
            RequestHeader::build("PUT", ctx.route.upstream_path_and_query.as_bytes(), None)
                .map_err(internal)?;
        put.insert_header(http::header::HOST, ctx.route.upstream_host.as_str())
            .map_err(internal)?;
        if !copy.part {
            self.copy_object_headers(&mut put, copy.replace, headers, &src)
                .await?;
        }
        crate::proxy::copy_headers::copy_request_headers(&mut put, headers, copy.part, true)?;
        let dest = self.backend(ctx.route.bucket.as_deref());
        self.stream_copy(&plan, put, dest, &src, body).await
    }
}
