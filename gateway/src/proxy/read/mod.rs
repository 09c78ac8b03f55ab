//! Read stage: GetObject and HeadObject. Ranged reads probe the stored
//! object first (envelope, size, part header) so the upstream range fetches
//! exactly the frames needed; the response's envelope decides whether it
//! is decrypted (any object carrying one) or refused (plaintext in a
//! mandatory bucket); the data key is unwrapped here, in the async
//! response-header phase, because the body phase is synchronous.

pub(super) mod attributes;
pub(super) mod listing;
pub(super) mod part;
mod probe;
pub(super) mod target;

use pingora::http::ResponseHeader;
use sealgate_envelope::format::{plaintext_len, ByteRange};
use sealgate_envelope::multipart::{PartHeader, PartsDecryptor, PART_HEADER_LEN};
use sealgate_envelope::{Backend, Decryptor, EnvelopeMeta, ObjectKey};
use sealgate_filters::s3::{S3Error, S3ErrorCode};

use super::errors::internal;
use super::read_target::{
    changed, integrity_error, invalid_range, same_object, set_range_headers, stored_extent,
    ReadPlan, ReadTarget, Reader,
};
use super::response::{set_sse_headers, strip_response, ResponseBody};
use super::route::Route;
use super::{Ctx, Gateway, Op};
use crate::keys::key_error;
use sealgate_filters::keys::KeyError;

impl Gateway {
    /// The answer to a stored object's wrapped data key failing to unwrap.
    /// Only a wrapped key the provider finds invalid says the stored
    /// object is damaged (the integrity alarm); an outage, a throttle or
    /// a refusal is the provider's error (`sealgate_key_provider_errors_total`).
    pub(super) fn stored_key_error(&self, e: KeyError) -> S3Error {
        if matches!(e, KeyError::Invalid(_)) {
            self.metrics
                .decrypt_failures_total
                .with_label_values(&["key"])
                .inc();
        }
        key_error(e)
    }

    pub(super) fn integrity(&self, reason: &str) -> S3Error {
        self.metrics
            .decrypt_failures_total
            .with_label_values(&[reason])
            .inc();
        integrity_error()
    }

    pub(super) fn read_meta(
        &self,
        resp: &ResponseHeader,
        request_id: &str,
    ) -> Result<Option<EnvelopeMeta>, S3Error> {
        // Most responses carry no envelope: one lookup says so; an
        // envelope is then read in one pass over the headers.
        let read = if resp
            .headers
            .contains_key(sealgate_envelope::meta::VERSION_HEADER)
        {
            EnvelopeMeta::from_header_pairs(
                resp.headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.to_str().ok())),
            )
        } else {
            Ok(None)
        };
        read.map_err(|e| {
            tracing::warn!(request_id = %request_id, error = %e, "unreadable envelope metadata");
            self.integrity("metadata")
        })
    }

    /// Sets up decryption of an object's response, or refuses.
    pub(super) async fn prepare_read(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<(), S3Error> {
        let Op::Read(read) = &ctx.op else {
            return Ok(());
        };
        let status = resp.status.as_u16();
        if status != 200 && status != 206 {
            return Ok(());
        }
        let (head, range) = (read.head, read.range);
        let (parts_count, planned) = (read.parts_count, read.upstream_range);
        let meta = self.read_meta(resp, &ctx.request_id)?;
        // Before any part header is read (`read_target`'s layout).
        if let Some(m) = &meta {
            self.require_bound(&ctx.live, read, m, "the object").await?;
        }
        let (upstream_start, stored_total) = stored_extent(resp).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InternalError,
                "the backend sent no object size",
            )
        })?;
        let Some(mut target) = self
            .read_target(read, meta, stored_total, &ctx.route, &ctx.request_id)
            .await?
        else {
            return Ok(()); // plaintext: served as stored
        };
        // The body must be exactly what was planned: the whole object, or
        // the planned stored range.
        let as_planned = head
            || match planned {
                Some((start, _)) => status == 206 && upstream_start == start,
                None => status == 200,
            };
        if !as_planned {
            return Err(changed());
        }
        let total = match &target {
            ReadTarget::Single { total, .. } => *total,
            ReadTarget::Multipart { layout, .. } => layout.plaintext_total(),
            ReadTarget::Plain => unreachable!("returned above"),
        };
        let meta = target.take_meta();
        strip_response(resp);
        set_sse_headers(resp, &meta.key_id).map_err(internal)?;
        if let Some(parts) = parts_count {
            resp.insert_header("x-amz-mp-parts-count", parts.to_string())
                .map_err(internal)?;
        }
        let span = match &target {
            ReadTarget::Single { span, .. } | ReadTarget::Multipart { span, .. } => *span,
            ReadTarget::Plain => unreachable!("returned above"),
        };
        if range.is_some() {
            set_range_headers(resp, span.0, span.1, total)?;
        } else {
            resp.insert_header(http::header::CONTENT_LENGTH, total.to_string())
                .map_err(internal)?;
        }
        if head {
            return Ok(()); // sizes and SSE headers only: no key provider call for HEAD
        }
        ctx.response_body = Some(
            self.decrypting_body(&ctx.live, &meta, target, read.range)
                .await?,
        );
        ctx.audit.provider = Some(meta.provider);
        ctx.audit.key_id = Some(meta.key_id);
        Ok(())
    }

    /// What the response holds: `None` for a plaintext object served as
    /// stored; the probed target (checked to be the same object), or the
    /// whole object's (multipart objects: probes for the part layout). The
    /// envelope `meta` is bound to the reader's bucket (`prepare_read`).
    async fn read_target(
        &self,
        read: &ReadPlan,
        meta: Option<EnvelopeMeta>,
        stored_total: u64,
        route: &super::route::Route,
        request_id: &str,
    ) -> Result<Option<ReadTarget>, S3Error> {
        Ok(Some(match (read.target.clone(), meta) {
            (Some(ReadTarget::Plain), None) | (None, None) => {
                if read.mandatory {
                    return Err(S3Error::new(
                        S3ErrorCode::AccessDenied,
                        "this object was not written through the encryption gateway and the bucket's policy requires encryption",
                    ));
                }
                return Ok(None);
            }
            (Some(t @ ReadTarget::Single { .. }), Some(m))
            | (Some(t @ ReadTarget::Multipart { .. }), Some(m)) => {
                let probed = match &t {
                    ReadTarget::Single { meta, .. } | ReadTarget::Multipart { meta, .. } => meta,
                    ReadTarget::Plain => unreachable!("matched above"),
                };
                if !same_object(probed, &m) {
                    return Err(changed());
                }
                t
            }
            (None, Some(m)) if read.range.is_none() && !m.multipart => {
                let total = plaintext_len(stored_total).ok_or_else(|| self.integrity("length"))?;
                ReadTarget::Single {
                    meta: m,
                    total,
                    span: (0, total.saturating_sub(1)),
                }
            }
            (None, Some(m)) if read.range.is_none() => {
                let (probe, body) = self
                    .backend(route.bucket.as_deref())
                    .probe(
                        &route.upstream_host,
                        &route.upstream_path_and_query,
                        0,
                        PART_HEADER_LEN - 1,
                    )
                    .await
                    .map_err(|_| {
                        S3Error::new(
                            S3ErrorCode::ServiceUnavailable,
                            "the storage backend could not be reached; retry",
                        )
                    })?;
                let same = self
                    .read_meta(&probe, request_id)?
                    .is_some_and(|p| same_object(&p, &m));
                if !same {
                    return Err(changed());
                }
                let first = PartHeader::decode(&body).ok_or_else(|| self.integrity("part"))?;
                let layout = self
                    .layout_of(route, &probe, &first, stored_total, request_id)
                    .await?;
                let total = layout.plaintext_total();
                ReadTarget::Multipart {
                    meta: m,
                    layout,
                    span: (0, total.saturating_sub(1)),
                    header: first,
                }
            }
            // The object changed between the probe and the read.
            _ => return Err(changed()),
        }))
    }

    /// The data key unwrapped (async, cached by the provider), checked
    /// against the commitment, and a decryptor for exactly the target's span.
    pub(super) async fn decrypting_body(
        &self,
        live: &crate::live::Live,
        meta: &EnvelopeMeta,
        target: ReadTarget,
        range: Option<ByteRange>,
    ) -> Result<ResponseBody, S3Error> {
        let provider = live.providers.get(&meta.provider).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InternalError,
                format!(
                    "the object's key provider `{}` is not configured",
                    meta.provider
                ),
            )
        })?;
        let dek = provider
            .decrypt_data_key(&meta.key_id, &meta.wrapped_dek, &meta.context)
            .await
            .map_err(|e| self.stored_key_error(e))?;
        let ctx_hash = meta.context_hash();
        let key = ObjectKey::derive_checked(
            &dek,
            &meta.salt,
            &ctx_hash,
            &meta.commitment,
            Backend::default_backend(),
        )
        .map_err(|_| self.integrity("commitment"))?;
        Ok(match target {
            ReadTarget::Single { span, total, .. } => {
                let dec = if range.is_some() {
                    Decryptor::for_plan(
                        key.cipher,
                        0,
                        total,
                        sealgate_envelope::plan_range(span.0, span.1, total),
                    )
                } else {
                    Decryptor::new(key.cipher, 0, total)
                };
                ResponseBody::Decrypt(dec)
            }
            ReadTarget::Multipart {
                layout,
                span,
                header,
                ..
            } => {
                let total = layout.plaintext_total();
                let dec = if total == 0 {
                    // An empty multipart object: one empty part, nothing to release.
                    return Ok(ResponseBody::Replace(None));
                } else if range.is_some() {
                    PartsDecryptor::from_frame(&dek, ctx_hash, layout, span.0, span.1, &header)
                        .map_err(|_| self.integrity("part"))?
                } else {
                    PartsDecryptor::from_part_start(&dek, ctx_hash, layout, span.0, span.1)
                };
                ResponseBody::Parts(Box::new(dec))
            }
            ReadTarget::Plain => unreachable!("returned above"),
        })
    }
}

/// A probe that could not reach the backend: the client may retry.
fn unavailable(request_id: &str, e: crate::upstream::UpstreamError) -> S3Error {
    tracing::warn!(request_id = %request_id, error = %e, "probe failed");
    S3Error::new(
        S3ErrorCode::ServiceUnavailable,
        "the storage backend could not be reached; retry",
    )
}
