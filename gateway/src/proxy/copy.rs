//! Copy stage: a server-side copy keeps the stored bytes as they are, so a
//! copy into a mandatory bucket must come from an encrypted source.

use sealgate_filters::s3::{uri, S3Error, S3ErrorCode};

use super::{Ctx, Gateway, Op};
use crate::upstream::encode_key;

impl Gateway {
    /// A server-side copy into a mandatory bucket keeps the stored bytes as
    /// they are, so the source must already be encrypted.
    pub(super) async fn check_copy_source(&self, ctx: &mut Ctx) -> Result<(), S3Error> {
        if !matches!(ctx.op, Op::CopyNeedsEnvelope) {
            return Ok(());
        }
        let source = ctx.route.copy_source.as_deref().unwrap_or("");
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
        let (resp, _) = self.upstream.probe(&host, &path, 0, 0).await.map_err(|_| {
            S3Error::new(
                S3ErrorCode::ServiceUnavailable,
                "the storage backend could not be reached; retry",
            )
        })?;
        if resp.status.as_u16() == 416 {
            // Unsatisfiable first byte: an empty object, which no envelope makes.
            return Err(S3Error::new(
                S3ErrorCode::AccessDenied,
                "the copy source is not encrypted and this bucket's policy requires encryption",
            ));
        }
        if !resp.status.is_success() {
            return Ok(()); // the copy itself reports the missing source
        }
        match self.read_meta(&resp, &ctx.request_id)? {
            Some(_) => Ok(()),
            None => Err(S3Error::new(
                S3ErrorCode::AccessDenied,
                "the copy source is not encrypted and this bucket's policy requires encryption",
            )),
        }
    }
}
