//! A retried CompleteMultipartUpload (its first answer lost on the way):
//! the upload is gone at the backend, and if the object now at the key is
//! the one this upload made (its envelope has the upload's salt and key
//! commitment), the gateway answers as S3 does, 200 with the object.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use sealgate_filters::s3::multipart::upload_id::UploadToken;
use sealgate_filters::s3::{uri, S3Error, S3ErrorCode};

use crate::proxy::response::set_sse_headers;
use crate::proxy::{Ctx, Gateway, Op};

/// What a retried Complete answers of the object its upload made, as the
/// backend has it now (a rewrap may have changed its key since).
#[derive(Clone)]
pub(in crate::proxy) struct Completed {
    etag: String,
    key_id: String,
    version_id: Option<String>,
}

impl Gateway {
    /// The object at `object` if this upload made it: its envelope has the
    /// upload's salt and key commitment (random per upload, and the token
    /// holding them passed its MAC for this bucket and key). `Ok(None)` for
    /// no object or another's; an unreachable or failing backend is a
    /// retryable `503` (a completed upload must not look failed).
    pub(super) async fn made_by(
        &self,
        bucket: Option<&str>,
        host: &str,
        object: &str,
        token: &UploadToken,
    ) -> Result<Option<Completed>, S3Error> {
        let unavailable = || {
            S3Error::new(
                S3ErrorCode::ServiceUnavailable,
                "the storage backend could not be reached; retry",
            )
        };
        let (resp, _) = self
            .backend(bucket)
            .request("HEAD", host, object, &[], Bytes::new(), 0)
            .await
            .map_err(|_| unavailable())?;
        match resp.status.as_u16() {
            200 => {}
            500..=599 => return Err(unavailable()),
            _ => return Ok(None),
        }
        let get = |n: &str| resp.headers.get(n).and_then(|v| v.to_str().ok());
        let Ok(Some(meta)) = sealgate_envelope::EnvelopeMeta::from_headers(get) else {
            return Ok(None);
        };
        let same = meta.multipart
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                &meta.salt[..],
                &token.salt[..],
            ))
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                &meta.commitment[..],
                &token.commitment[..],
            ));
        Ok(same.then(|| Completed {
            etag: get("etag").unwrap_or_default().to_string(),
            key_id: meta.key_id,
            version_id: get("x-amz-version-id").map(str::to_string),
        }))
    }

    /// The answer to a retried Complete of an upload already completed:
    /// S3's CompleteMultipartUploadResult for the object it made, with its
    /// ETag, as the first answer had it.
    pub(in crate::proxy) async fn answer_completed(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        let Some(Completed {
            etag,
            key_id,
            version_id,
        }) = (match &ctx.op {
            Op::Complete(c) => c.completed.clone(),
            _ => None,
        })
        else {
            return Ok(());
        };
        let esc = sealgate_filters::s3::responses::error::xml_escape;
        let bucket = ctx.audit.bucket.as_deref().unwrap_or("");
        let key = ctx.audit.key.as_deref().unwrap_or("");
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>/{}/{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
            esc(bucket),
            esc(&uri::encode_path(key)),
            esc(bucket),
            esc(key),
            esc(&etag),
        );
        let mut resp = ResponseHeader::build(200, Some(5))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/xml")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        resp.insert_header("x-amz-request-id", ctx.request_id.as_str())?;
        if let Some(v) = &version_id {
            resp.insert_header("x-amz-version-id", v.as_str())?;
        }
        set_sse_headers(&mut resp, &key_id)?;
        crate::proxy::cors::apply(&mut resp, &ctx.cors)?;
        ctx.audit.key_id = Some(key_id);
        // The client's part list was not read: the connection is not reused.
        session.set_keepalive(None);
        session
            .write_response_header(Box::new(resp), false)
            .await
            .map_err(|e| e.into_down())?;
        session
            .write_response_body(Some(bytes::Bytes::from(body)), true)
            .await
            .map_err(|e| e.into_down())?;
        Ok(())
    }
}
