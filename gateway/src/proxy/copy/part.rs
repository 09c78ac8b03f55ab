//! UploadPartCopy into an upload the gateway began: the backend cannot
//! make the part (it would copy ciphertext under another key, or
//! plaintext, into the upload), so the gateway does. It reads the source's
//! range as a GET would (`copy_source`), encrypts it as part N of the
//! destination upload under the upload's data key and sends it upstream as
//! UploadPart (`copy_stream`); the client gets S3's `CopyPartResult`.

use http::HeaderMap;
use pingora::http::RequestHeader;
use sealgate_filters::plan::UploadBody;
use sealgate_filters::policy::BucketEncryption;
use sealgate_filters::s3::multipart::upload_id::UploadToken;
use sealgate_filters::s3::S3Error;

use crate::proxy::copy_stream::Stored;
use crate::proxy::errors::internal;
use crate::proxy::upload::UploadPlan;
use crate::proxy::{Ctx, Gateway};

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
    pub(in crate::proxy) async fn copy_part(
        &self,
        copy: PartCopy,
        headers: &HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<Stored, S3Error> {
        crate::proxy::copy_headers::refuse_customer_key_source(headers)?;
        let opened = self
            .open_token(
                &ctx.live,
                &copy.token,
                Some(&copy.enc),
                &ctx.route,
                ctx.audit.key.as_deref(),
            )
            .await?;
        ctx.audit.provider = Some(copy.enc.provider.clone());
        ctx.audit.key_id = Some(copy.token.key_id.clone());
        let src = self
            .probe_copy_source(&ctx.live, headers, copy.range, &ctx.route, &ctx.request_id)
            .await?;
        let len = src.len();
        ctx.live
            .check_size(sealgate_envelope::multipart::stored_part_len(len))?;
        let body = self.source_body(&ctx.live, &src).await?;
        let part = UploadPlan::for_part(
            UploadBody::plain(len),
            copy.token.key_id.clone(),
            opened.dek,
            opened.ctx_hash,
            copy.number,
        )
        .with_stored_checksum(ctx.stored_checksum);
        let mut put =
            RequestHeader::build("PUT", ctx.route.upstream_path_and_query.as_bytes(), None)
                .map_err(internal)?;
        put.insert_header(http::header::HOST, ctx.route.upstream_host.as_str())
            .map_err(internal)?;
        crate::proxy::copy_headers::copy_request_headers(&mut put, headers, true, false)?;
        let dest = self.backend(ctx.route.bucket.as_deref());
        self.stream_copy(&part, put, dest, &src, body).await
    }
}
