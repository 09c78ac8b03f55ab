//! Copy stage: a server-side copy keeps the stored bytes as they are, so a
//! copy into a mandatory bucket must come from an encrypted source.

use pingora::http::RequestHeader;
use sealgate_filters::s3::{uri, S3Error, S3ErrorCode};

use super::{Ctx, Gateway, Op};
use crate::upstream::encode_key;

impl Gateway {
    /// The upstream host and path (with `versionId`) of a rewritten
    /// `x-amz-copy-source` (`/real-bucket/key[?versionId=...]`).
    pub(super) fn source_address(&self, source: Option<&str>) -> Result<(String, String), S3Error> {
        let source = source.unwrap_or("");
        let (path, query) = source.split_once('?').unwrap_or((source, ""));
        let (bucket, key) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        let key = uri::decode(key).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidArgument,
                "x-amz-copy-source is badly encoded",
            )
        })?;
        let (host, mut path) = self.upstream.address(Some(bucket), Some(&encode_key(&key)));
        if let Some(v) =
            uri::parse_query(query).and_then(|q| q.into_iter().find(|(k, _)| k == "versionId"))
        {
            path = format!("{path}?versionId={}", uri::encode(&v.1));
        }
        Ok((host, path))
    }

    /// A server-side copy into a mandatory bucket keeps the stored bytes as
    /// they are, so the source must already be encrypted. Fails closed: a
    /// source that cannot be probed is refused, and the copy is pinned to
    /// the probed object (`x-amz-copy-source-if-match` on its ETag), so a
    /// source replaced between probe and copy makes the copy fail.
    pub(super) async fn check_copy_source(
        &self,
        req: &RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<(), S3Error> {
        if !matches!(ctx.op, Op::CopyNeedsEnvelope { .. }) {
            return Ok(());
        }
        let (host, path) = self.source_address(ctx.route.copy_source.as_deref())?;
        let (resp, _) = self.upstream.probe(&host, &path, 0, 0).await.map_err(|_| {
            S3Error::new(
                S3ErrorCode::ServiceUnavailable,
                "the storage backend could not be reached; retry",
            )
        })?;
        let not_encrypted = || {
            S3Error::new(
                S3ErrorCode::AccessDenied,
                "the copy source is not encrypted and this bucket's policy requires encryption",
            )
        };
        match resp.status.as_u16() {
            200 | 206 => {}
            // Unsatisfiable first byte: an empty object, which no envelope makes.
            416 => return Err(not_encrypted()),
            404 => {
                return Err(S3Error::new(
                    S3ErrorCode::NoSuchKey,
                    "the copy source does not exist",
                ))
            }
            status => {
                tracing::warn!(request_id = %ctx.request_id, status, "copy source probe refused");
                return Err(S3Error::new(
                    S3ErrorCode::AccessDenied,
                    "the copy source could not be checked; this bucket's policy requires an encrypted source",
                ));
            }
        }
        if self.read_meta(&resp, &ctx.request_id)?.is_none() {
            return Err(not_encrypted());
        }
        let etag = resp
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::ServiceUnavailable,
                    "the backend sent no ETag for the copy source; retry",
                )
            })?;
        let bare = |t: &str| t.trim().trim_matches('"').to_string();
        if let Some(given) = req
            .headers
            .get("x-amz-copy-source-if-match")
            .and_then(|v| v.to_str().ok())
        {
            if bare(given) != bare(&etag) {
                return Err(S3Error::new(
                    S3ErrorCode::PreconditionFailed,
                    "at least one of the preconditions you specified did not hold",
                ));
            }
        }
        ctx.op = Op::CopyNeedsEnvelope {
            source_etag: Some(etag),
        };
        Ok(())
    }
}
