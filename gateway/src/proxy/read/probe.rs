//! The request side of a read: before the upstream GET goes out, a ranged
//! read looks at the stored object (envelope, size, first part header) so
//! the upstream range fetches exactly the frames the client's range needs.

use super::*;

impl Gateway {
    /// For ranged reads: looks at the stored object first (envelope, size,
    /// first part header) so the upstream range fetches exactly the frames
    /// the client's range needs.
    pub(in crate::proxy) async fn probe_read(&self, ctx: &mut Ctx) -> Result<(), S3Error> {
        let Op::Read(read) = &ctx.op else {
            return Ok(());
        };
        if let Some(n) = read.part_number {
            return self.probe_part_read(n, ctx).await;
        }
        let Some(range) = read.range else {
            return Ok(());
        };
        let head_len = PART_HEADER_LEN - 1;
        let (resp, body) = self
            .backend(ctx.route.bucket.as_deref())
            .probe(
                &ctx.route.upstream_host,
                &ctx.route.upstream_path_and_query,
                0,
                head_len,
            )
            .await
            .map_err(|e| unavailable(&ctx.request_id, e))?;
        let status = resp.status.as_u16();
        if status != 200 && status != 206 {
            return Ok(()); // the real request reports the error (404, 403, ...)
        }
        let reader = Reader {
            live: &ctx.live,
            read,
            what: "the object",
        };
        let (target, upstream_range) = self
            .target_from_probe(&resp, &body, range, &ctx.route, reader, &ctx.request_id)
            .await?;
        let Op::Read(read) = &mut ctx.op else {
            unreachable!("checked above")
        };
        read.target = Some(target);
        read.upstream_range = upstream_range;
        Ok(())
    }

    /// What a probe of the stored object at `route` (its first bytes:
    /// `resp`, `body`) says about plaintext `range`: the target and the
    /// stored range to fetch for it (`None`: a plaintext object). An
    /// encrypted object must belong to the `reader`'s bucket, checked on
    /// the probe's envelope before any part header is read: an object
    /// planted from elsewhere costs the probe only.
    pub(in crate::proxy) async fn target_from_probe(
        &self,
        resp: &ResponseHeader,
        body: &[u8],
        range: ByteRange,
        route: &Route,
        reader: Reader<'_>,
        request_id: &str,
    ) -> Result<(ReadTarget, Option<(u64, u64)>), S3Error> {
        let meta = self.read_meta(resp, request_id)?;
        if let Some(m) = &meta {
            self.require_bound(reader.live, reader.read, m, reader.what)
                .await?;
        }
        self.bound_target(meta, resp, body, range, route, request_id)
            .await
    }

    /// [`Self::target_from_probe`] once the probe's envelope `meta` (if
    /// any) is known to belong to the reader's bucket.
    pub(in crate::proxy) async fn bound_target(
        &self,
        meta: Option<EnvelopeMeta>,
        resp: &ResponseHeader,
        body: &[u8],
        range: ByteRange,
        route: &Route,
        request_id: &str,
    ) -> Result<(ReadTarget, Option<(u64, u64)>), S3Error> {
        let (_, stored_total) = stored_extent(resp).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InternalError,
                "the backend sent no object size",
            )
        })?;
        Ok(match meta {
            None => (ReadTarget::Plain, None),
            Some(meta) if !meta.multipart => {
                let total = plaintext_len(stored_total).ok_or_else(|| self.integrity("length"))?;
                let span = range.resolve(total).ok_or_else(invalid_range)?;
                let plan = sealgate_envelope::plan_range(span.0, span.1, total);
                (
                    ReadTarget::Single { meta, total, span },
                    Some((plan.cipher_start, plan.cipher_end)),
                )
            }
            Some(meta) => {
                self.probe_parts(meta, resp, body, stored_total, range, route, request_id)
                    .await?
            }
        })
    }

    /// A multipart object's probe (its envelope `meta` bound to the
    /// reader's bucket): the part layout from the first part's header, and
    /// the header of the part where the range starts (a second probe,
    /// checked to be the same object).
    #[allow(clippy::too_many_arguments)]
    async fn probe_parts(
        &self,
        meta: EnvelopeMeta,
        resp: &ResponseHeader,
        first: &[u8],
        stored_total: u64,
        range: ByteRange,
        route: &Route,
        request_id: &str,
    ) -> Result<(ReadTarget, Option<(u64, u64)>), S3Error> {
        let head_len = PART_HEADER_LEN - 1;
        let first = PartHeader::decode(first).ok_or_else(|| self.integrity("part"))?;
        let layout = self
            .layout_of(route, resp, &first, stored_total, request_id)
            .await?;
        let span = range
            .resolve(layout.plaintext_total())
            .ok_or_else(invalid_range)?;
        let (part, _) = layout.locate(span.0);
        let header = if part == 0 {
            first
        } else {
            let at = layout.part_start(part);
            let (r, b) = self
                .backend(route.bucket.as_deref())
                .probe(
                    &route.upstream_host,
                    &route.upstream_path_and_query,
                    at,
                    at + head_len,
                )
                .await
                .map_err(|e| unavailable(request_id, e))?;
            let same = self
                .read_meta(&r, request_id)?
                .is_some_and(|m| same_object(&m, &meta));
            if !same {
                return Err(changed());
            }
            PartHeader::decode(&b).ok_or_else(|| self.integrity("part"))?
        };
        let fetch = layout.fetch_range(span.0, span.1);
        Ok((
            ReadTarget::Multipart {
                meta,
                layout,
                span,
                header,
            },
            Some(fetch),
        ))
    }
}
