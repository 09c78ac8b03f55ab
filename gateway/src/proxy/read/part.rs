//! `?partNumber=N` reads of encrypted objects. The backend's parts are
//! stored parts (headers and frames), so the gateway reads part N's
//! plaintext as a byte range of the whole object instead: the part
//! layout comes from the part headers, the upstream request loses
//! `partNumber`, and the answer is S3's: 206 with the part's plaintext
//! `Content-Range`, and `x-amz-mp-parts-count`. A single-stream object is
//! one part; a plaintext object is left to the backend.

use sealgate_envelope::format::ByteRange;
use sealgate_envelope::multipart::{PartHeader, PART_HEADER_LEN};
use sealgate_filters::s3::{S3Error, S3ErrorCode};

use crate::proxy::read_target::stored_extent;
use crate::proxy::route::Route;
use crate::proxy::{Ctx, Gateway, Op};

impl Gateway {
    /// Plans the read of part `n` (1-based) as a plaintext range.
    pub(in crate::proxy) async fn probe_part_read(
        &self,
        n: u32,
        ctx: &mut Ctx,
    ) -> Result<(), S3Error> {
        let whole = without_part_number(&ctx.route.upstream_path_and_query);
        let source = Route {
            upstream_host: ctx.route.upstream_host.clone(),
            upstream_path_and_query: whole.clone(),
            bucket: ctx.route.bucket.clone(),
            ..Route::default()
        };
        let (resp, body) = self
            .backend(source.bucket.as_deref())
            .probe(&source.upstream_host, &whole, 0, PART_HEADER_LEN - 1)
            .await
            .map_err(|e| {
                tracing::warn!(request_id = %ctx.request_id, error = %e, "part probe failed");
                S3Error::new(
                    S3ErrorCode::ServiceUnavailable,
                    "the storage backend could not be reached; retry",
                )
            })?;
        let status = resp.status.as_u16();
        if status != 200 && status != 206 {
            return Ok(()); // the real request reports the error (404, 403, ...)
        }
        let Some(meta) = self.read_meta(&resp, &ctx.request_id)? else {
            return Ok(()); // plaintext: the backend serves its own part
        };
        let Op::Read(read) = &ctx.op else {
            return Ok(());
        };
        // This bucket's object, before any part header is read.
        self.require_bound(&ctx.live, read, &meta, "the object")
            .await?;
        let no_such_part = || {
            S3Error::new(
                S3ErrorCode::InvalidPartNumber,
                "the requested partnumber is not satisfiable",
            )
        };
        if !meta.multipart {
            // One part: part 1 is the whole object, answered as S3 does, as
            // a range (206, Content-Range), without a parts count.
            if n != 1 {
                return Err(no_such_part());
            }
            let range = ByteRange::From {
                start: 0,
                end: None,
            };
            let probed = self
                .bound_target(Some(meta), &resp, &body, range, &source, &ctx.request_id)
                .await;
            ctx.route.upstream_path_and_query = whole;
            match probed {
                Ok((target, upstream_range)) => {
                    if let Op::Read(read) = &mut ctx.op {
                        read.range = Some(range);
                        read.target = Some(target);
                        read.upstream_range = upstream_range;
                    }
                }
                // An empty object has no byte to range over: read whole.
                Err(e) if e.code == S3ErrorCode::InvalidRange => {}
                Err(e) => return Err(e),
            }
            return Ok(());
        }
        let (_, stored_total) = stored_extent(&resp).ok_or_else(|| self.integrity("length"))?;
        let first = PartHeader::decode(&body).ok_or_else(|| self.integrity("part"))?;
        let layout = self
            .layout_of(&source, &resp, &first, stored_total, &ctx.request_id)
            .await?;
        let index = u64::from(n) - 1;
        if index >= layout.parts() || layout.part_len(index) == 0 {
            return Err(no_such_part());
        }
        let start = layout.plain_start(index);
        let range = ByteRange::From {
            start,
            end: Some(start + layout.part_len(index) - 1),
        };
        let (target, upstream_range) = self
            .bound_target(Some(meta), &resp, &body, range, &source, &ctx.request_id)
            .await?;
        ctx.route.upstream_path_and_query = whole;
        if let Op::Read(read) = &mut ctx.op {
            read.range = Some(range);
            read.target = Some(target);
            read.upstream_range = upstream_range;
            read.parts_count = Some(layout.parts());
        }
        Ok(())
    }
}

/// The upstream path and query without `partNumber`.
fn without_part_number(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| p.split('=').next() != Some("partNumber"))
        .collect();
    if rest.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", rest.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::without_part_number;

    #[test]
    fn part_number_is_dropped_from_the_query() {
        assert_eq!(without_part_number("/b/k?partNumber=3"), "/b/k");
        assert_eq!(
            without_part_number("/b/k?partNumber=3&versionId=v1"),
            "/b/k?versionId=v1"
        );
        assert_eq!(
            without_part_number("/b/k?versionId=v1&partNumber=3"),
            "/b/k?versionId=v1"
        );
        assert_eq!(without_part_number("/b/k"), "/b/k");
        assert_eq!(
            without_part_number("/b/k?partNumberX=1"),
            "/b/k?partNumberX=1"
        );
    }
}
