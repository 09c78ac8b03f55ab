//! GetObjectAttributes in an encrypting bucket. The backend describes the
//! stored ciphertext, so the gateway probes the object first (its
//! envelope and layout give the plaintext size, after the same binding
//! check as a GET) and rewrites the answer: plaintext `ObjectSize`, no
//! `Checksum` or `ObjectParts` (`sealgate_filters::s3::responses::attributes`). A
//! plaintext object is described as stored, unless the bucket is mandatory.

use sealgate_envelope::format::plaintext_len;
use sealgate_envelope::multipart::{PartHeader, PART_HEADER_LEN};
use sealgate_filters::plan::ReadRequest;
use sealgate_filters::s3::responses::attributes;
use sealgate_filters::s3::{S3Error, S3ErrorCode};

use crate::proxy::read_target::{stored_extent, ReadBinding, ReadPlan};
use crate::proxy::response::{ResponseBody, WholeRewrite};
use crate::proxy::{Ctx, Gateway, Op};

/// GetObjectAttributes on an encrypting bucket.
pub struct AttributesPlan {
    pub mandatory: bool,
    /// The object's plaintext size once probed (`None`: a plaintext object).
    pub plaintext_size: Option<u64>,
    /// The probe found the object: an answer about an object the probe
    /// did not see (a race) is not passed on.
    pub probed: bool,
    pub binding: Option<ReadBinding>,
}

impl AttributesPlan {
    pub fn new(mandatory: bool, binding: Option<ReadBinding>) -> Self {
        Self {
            mandatory,
            plaintext_size: None,
            probed: false,
            binding,
        }
    }
}

impl Gateway {
    /// A 200 answer: rewritten for a probed encrypted object, passed on
    /// for a probed plaintext one, refused for an object the probe did not
    /// find (it changed in between).
    pub(in crate::proxy) fn respond_attributes(
        &self,
        resp: &mut pingora::http::ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        let Op::Attributes(a) = &ctx.op else {
            return Ok(());
        };
        match (a.plaintext_size, a.probed) {
            (Some(size), _) => {
                crate::proxy::response::strip_response(resp);
                resp.remove_header(http::header::CONTENT_LENGTH.as_str());
                ctx.response_body = Some(Self::attributes_body(size));
            }
            (None, true) => {}
            (None, false) => {
                self.replace_response(resp, ctx, &crate::proxy::read_target::changed())?;
            }
        }
        Ok(())
    }

    /// Probes the object for its plaintext size.
    pub(in crate::proxy) async fn prepare_attributes(&self, ctx: &mut Ctx) -> Result<(), S3Error> {
        if !matches!(ctx.op, Op::Attributes(_)) {
            return Ok(());
        }
        let path = object_path(&ctx.route.upstream_path_and_query);
        let (resp, body) = self
            .backend(ctx.route.bucket.as_deref())
            .probe(&ctx.route.upstream_host, &path, 0, PART_HEADER_LEN - 1)
            .await
            .map_err(|_| {
                S3Error::new(
                    S3ErrorCode::ServiceUnavailable,
                    "the storage backend could not be reached; retry",
                )
            })?;
        if !matches!(resp.status.as_u16(), 200 | 206) {
            return Ok(()); // the real request reports the error
        }
        if let Op::Attributes(plan) = &mut ctx.op {
            plan.probed = true;
        }
        let Op::Attributes(plan) = &ctx.op else {
            unreachable!("matched above")
        };
        let Some(meta) = self.read_meta(&resp, &ctx.request_id)? else {
            if plan.mandatory {
                return Err(S3Error::new(
                    S3ErrorCode::AccessDenied,
                    "this object was not written through the encryption gateway and the bucket's policy requires encryption",
                ));
            }
            return Ok(());
        };
        let read = ReadPlan::new(
            ReadRequest {
                range: None,
                part_number: None,
                head: true,
                mandatory: plan.mandatory,
            },
            plan.binding.clone(),
        );
        self.require_bound(&ctx.live, &read, &meta, "the object")
            .await?;
        let (_, stored) = stored_extent(&resp).ok_or_else(|| self.integrity("length"))?;
        let size = if meta.multipart {
            let first = PartHeader::decode(&body).ok_or_else(|| self.integrity("part"))?;
            let source = crate::proxy::route::Route {
                upstream_host: ctx.route.upstream_host.clone(),
                upstream_path_and_query: path,
                bucket: ctx.route.bucket.clone(),
                ..Default::default()
            };
            self.layout_of(&source, &resp, &first, stored, &ctx.request_id)
                .await?
                .plaintext_total()
        } else {
            plaintext_len(stored).ok_or_else(|| self.integrity("length"))?
        };
        if let Op::Attributes(plan) = &mut ctx.op {
            plan.plaintext_size = Some(size);
        }
        Ok(())
    }

    /// The response body rewrite for a probed encrypted object.
    pub(in crate::proxy) fn attributes_body(size: u64) -> ResponseBody {
        ResponseBody::Whole(WholeRewrite::new(move |xml: &str| {
            attributes::rewrite(xml, size).unwrap_or_else(|| {
                // Never the stored sizes: an answer of an unexpected shape is dropped.
                S3Error::new(
                    S3ErrorCode::InternalError,
                    "the object's attributes could not be described",
                )
                .to_xml("", "")
            })
        }))
    }
}

/// The object's path, with `versionId` only (the probe is a plain GET).
fn object_path(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    match query.split('&').find(|p| p.starts_with("versionId=")) {
        Some(v) => format!("{path}?{v}"),
        None => path.to_string(),
    }
}
