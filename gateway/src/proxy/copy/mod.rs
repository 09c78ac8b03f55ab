//! CopyObject into an encrypting bucket. When the source's envelope is
//! already this bucket's (same provider, key and a context that includes
//! the bucket's) and the source is stored as one stream, the backend
//! copies the stored bytes (no data through the gateway), the copy pinned
//! to the probed source; with `MetadataDirective: REPLACE` the gateway
//! puts the source's envelope back beside the client's new metadata.
//! Otherwise (a plaintext source, another key or context, a multipart
//! source whose part layout a single-object copy would lose) the gateway
//! makes the copy: the source decrypted and encrypted again as a new
//! object under this bucket's key, streamed (`copy_stream`).

pub(super) mod headers;
pub(super) mod part;
pub(super) mod plain;
pub(super) mod source;
pub(super) mod stream;

use http::HeaderMap;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use sealgate_envelope::{Backend, EnvelopeMeta, ObjectKey};
use sealgate_filters::plan::UploadBody;
use sealgate_filters::policy::{BucketEncryption, BUCKET_CONTEXT_KEY};
use sealgate_filters::s3::{uri, S3Error, S3ErrorCode};

use super::copy_headers::{copy_request_headers, described_headers};
use super::copy_source::CopySource;
use super::copy_stream::Stored;
use super::errors::internal;
use super::upload::{meta_error, UploadPlan};
use super::{Ctx, Gateway, Op};
use crate::keys::key_error;
use crate::upstream::encode_key;

/// A planned CopyObject into an encrypting bucket.
pub struct CopyObject {
    /// The key for a copy the gateway makes (`None`: the provider's default).
    pub key_id: Option<String>,
    pub replace: bool,
    pub enc: BucketEncryption,
    /// Set once the source was probed: the backend copies the stored
    /// bytes. `None` then means the gateway makes the copy from `source`.
    pub server_side: Option<ServerSide>,
    pub(super) source: Option<CopySource>,
}

/// A copy the backend makes as stored.
pub struct ServerSide {
    /// The probed source's ETag: the copy is pinned to it.
    pub etag: Option<String>,
    /// The envelope sent under `REPLACE`: the source's, or the source's
    /// wrapped again for this bucket.
    pub envelope: Vec<(String, String)>,
    pub key_id: String,
    /// A re-wrapped copy under `COPY`: sent as `REPLACE` (only then can
    /// the envelope change) with the source's metadata and content headers.
    pub source_headers: Option<Vec<(String, String)>>,
}

impl Gateway {
    /// The upstream bucket, host and path (with `versionId`) of a
    /// rewritten `x-amz-copy-source` (`/real-bucket/key[?versionId=...]`).
    pub(super) fn source_address(
        &self,
        source: Option<&str>,
    ) -> Result<(String, String, String), S3Error> {
        let source = source.unwrap_or("");
        let (path, query) = source.split_once('?').unwrap_or((source, ""));
        let (bucket, key) = split_source(path);
        let key = uri::decode(key).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidArgument,
                "x-amz-copy-source is badly encoded",
            )
        })?;
        let (host, mut path) = self
            .backend(Some(bucket))
            .address(Some(bucket), Some(&encode_key(&key)));
        if let Some(v) =
            uri::parse_query(query).and_then(|q| q.into_iter().find(|(k, _)| k == "versionId"))
        {
            path = format!("{path}?versionId={}", uri::encode(&v.1));
        }
        Ok((bucket.to_string(), host, path))
    }

    /// The copy's source lives on another backend than its destination
    /// (buckets on backends of their own): that backend cannot copy it, so
    /// the gateway makes the copy; the request never goes to a backend
    /// that would look the source's name up among its own buckets.
    pub(super) fn crosses_backends(&self, route: &super::route::Route) -> bool {
        let Some(source) = route.copy_source.as_deref() else {
            return false;
        };
        let (bucket, _) = split_source(source.split('?').next().unwrap_or(""));
        !std::sync::Arc::ptr_eq(
            self.backend(Some(bucket)),
            self.backend(route.bucket.as_deref()),
        )
    }

    /// Probes the source and decides who makes the copy.
    pub(super) async fn prepare_copy(
        &self,
        req: &RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<(), S3Error> {
        let Op::Copy(copy) = &mut ctx.op else {
            return Ok(());
        };
        let src = self
            .probe_copy_source(&ctx.live, &req.headers, None, &ctx.route, &ctx.request_id)
            .await?;
        ctx.audit.provider = Some(copy.enc.provider.clone());
        // Kept as stored only when the copy can be pinned to what was
        // checked, and the backend holds both buckets.
        let same_backend = !self.crosses_backends(&ctx.route);
        if let Some(meta) = src
            .meta()
            .filter(|m| same_backend && !m.multipart && src.etag.is_some())
        {
            if self
                .envelope_fits(&ctx.live, &copy.enc, copy.key_id.as_deref(), meta)
                .await
            {
                let envelope = if copy.replace {
                    meta.to_headers().map_err(meta_error)?
                } else {
                    Vec::new()
                };
                ctx.audit.key_id = Some(meta.key_id.clone());
                copy.server_side = Some(ServerSide {
                    etag: src.etag.clone(),
                    envelope,
                    key_id: meta.key_id.clone(),
                    source_headers: None,
                });
                return Ok(());
            }
            // Only the wrapping differs: a new wrap of the same data key,
            // and the backend copies the stored bytes.
            if let Some(rewrapped) = self
                .rewrapped(&ctx.live, &copy.enc, copy.key_id.as_deref(), meta)
                .await?
            {
                ctx.audit.key_id = Some(rewrapped.key_id.clone());
                // Under COPY the source's own metadata goes along: the
                // envelope can only change under REPLACE.
                let source_headers = (!copy.replace).then(|| described_headers(&src.probe.headers));
                copy.server_side = Some(ServerSide {
                    etag: src.etag.clone(),
                    envelope: rewrapped.to_headers().map_err(meta_error)?,
                    key_id: rewrapped.key_id,
                    source_headers,
                });
                return Ok(());
            }
        }
        copy.source = Some(src);
        Ok(())
    }

    /// The source's envelope with its data key wrapped again under this
    /// bucket's provider and key, when its context already holds the
    /// bucket's (the context enters the object key, so it cannot change
    /// without re-encrypting); `None` when it does not. The data key is
    /// checked against the commitment before it is wrapped again.
    async fn rewrapped(
        &self,
        live: &crate::live::Live,
        enc: &BucketEncryption,
        key_id: Option<&str>,
        meta: &EnvelopeMeta,
    ) -> Result<Option<EnvelopeMeta>, S3Error> {
        if !names_this_bucket(enc, meta)
            || enc
                .context
                .iter()
                .any(|(k, v)| meta.context.get(k) != Some(v))
        {
            return Ok(None);
        }
        let (Some(from), Some(to)) = (
            live.providers.get(&meta.provider),
            live.providers.get(&enc.provider),
        ) else {
            return Ok(None);
        };
        let dek = from
            .decrypt_data_key(&meta.key_id, &meta.wrapped_dek, &meta.context)
            .await
            .map_err(|e| self.stored_key_error(e))?;
        ObjectKey::derive_checked(
            &dek,
            &meta.salt,
            &meta.context_hash(),
            &meta.commitment,
            Backend::default_backend(),
        )
        .map_err(|_| self.integrity("commitment"))?;
        let key_id = key_id.unwrap_or(to.default_key_id());
        let wrapped = to
            .wrap_data_key(key_id, &dek, &meta.context)
            .await
            .map_err(key_error)?;
        Ok(Some(EnvelopeMeta {
            provider: enc.provider.clone(),
            key_id: wrapped.key_id,
            wrapped_dek: wrapped.wrapped,
            ..meta.clone()
        }))
    }

    /// Is `meta` an envelope this bucket would write: its provider, the
    /// key a copy here is made under, and a context with the bucket's?
    async fn envelope_fits(
        &self,
        live: &crate::live::Live,
        enc: &BucketEncryption,
        key_id: Option<&str>,
        meta: &EnvelopeMeta,
    ) -> bool {
        let Some(provider) = live.providers.get(&enc.provider) else {
            return false;
        };
        if !names_this_bucket(enc, meta)
            || meta.provider != enc.provider
            || enc
                .context
                .iter()
                .any(|(k, v)| meta.context.get(k) != Some(v))
        {
            return false;
        }
        let want = key_id.unwrap_or(provider.default_key_id());
        if meta.key_id == want {
            return true;
        }
        match provider.canonical_key_id(want).await {
            Ok(c) => provider.binding_key_id(&meta.key_id) == provider.binding_key_id(&c),
            Err(_) => false,
        }
    }

    /// Makes a copy the backend cannot make (see [`Op::served_by_gateway`])
    /// and answers the client, errors included.
    pub(super) async fn serve_copy(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let headers = session.req_header().headers.clone();
        let (made, root) = match std::mem::replace(&mut ctx.op, Op::PassThrough) {
            Op::Copy(copy) => (
                self.copy_object(*copy, &headers, ctx).await,
                "CopyObjectResult",
            ),
            Op::PartCopy(copy) => (self.copy_part(*copy, &headers, ctx).await, "CopyPartResult"),
            Op::PlainCopy(copy) => {
                let root = if copy.part {
                    "CopyPartResult"
                } else {
                    "CopyObjectResult"
                };
                (self.plain_copy(*copy, &headers, ctx).await, root)
            }
            _ => return Ok(()),
        };
        match made {
            Ok(stored) => self.answer_copy(session, ctx, root, &stored).await,
            Err(e) => self.reject(session, ctx, &e).await,
        }
    }

    async fn copy_object(
        &self,
        mut copy: CopyObject,
        headers: &HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<Stored, S3Error> {
        let src = copy.source.take().ok_or_else(|| {
            S3Error::new(S3ErrorCode::InternalError, "the copy source was not probed")
        })?;
        let len = src.len();
        ctx.live
            .check_size(sealgate_envelope::ciphertext_len(len))?;
        let provider = ctx.live.provider(&copy.enc.provider)?;
        let key_id = copy
            .key_id
            .clone()
            .unwrap_or_else(|| provider.default_key_id().to_string());
        let data_key = provider
            .generate_data_key(&key_id, &copy.enc.write_context)
            .await
            .map_err(key_error)?;
        ctx.audit.key_id = Some(data_key.key_id.clone());
        let body = self.source_body(&ctx.live, &src).await?;
        let plan = UploadPlan::new(
            UploadBody::plain(len),
            &copy.enc.provider,
            data_key,
            copy.enc.write_context.clone(),
        )?
        .with_stored_checksum(ctx.stored_checksum);
        let mut put =
            RequestHeader::build("PUT", ctx.route.upstream_path_and_query.as_bytes(), None)
                .map_err(internal)?;
        put.insert_header(http::header::HOST, ctx.route.upstream_host.as_str())
            .map_err(internal)?;
        self.copy_object_headers(&mut put, copy.replace, headers, &src)
            .await?;
        copy_request_headers(&mut put, headers, false, false)?;
        let dest = self.backend(ctx.route.bucket.as_deref());
        self.stream_copy(&plan, put, dest, &src, body).await
    }
}

/// Does `meta`'s context name this bucket (or no bucket, as objects written
/// before the entry existed)? A copy kept with another bucket's entry
/// would show KMS (and its key policies) the wrong bucket.
fn names_this_bucket(enc: &BucketEncryption, meta: &EnvelopeMeta) -> bool {
    meta.context
        .get(BUCKET_CONTEXT_KEY)
        .is_none_or(|b| enc.write_context.get(BUCKET_CONTEXT_KEY) == Some(b))
}

impl Op {
    /// A copy the backend cannot make as stored: the gateway reads the
    /// source and writes the copy itself, and answers the client.
    pub(super) fn served_by_gateway(&self) -> bool {
        match self {
            Op::Copy(c) => c.server_side.is_none(),
            Op::PartCopy(_) | Op::PlainCopy(_) => true,
            _ => false,
        }
    }
}

/// `real-bucket` and the encoded key of `/real-bucket/key`.
fn split_source(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.split_once('/').unwrap_or((path, ""))
}
