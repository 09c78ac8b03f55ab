//! Sign stage: the upstream request header. Every stage's header changes
//! are applied first (route, upload, read, multipart); re-signing with the
//! gateway's credentials is always the last step, so the backend verifies
//! exactly what goes out. Runs once per upstream attempt.

use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::headers::strip_envelope_headers;
use super::multipart::Create;
use super::upload::Upload;
use super::{Ctx, Gateway, Op};

impl Gateway {
    /// Builds the upstream request header for this attempt and signs it.
    pub(super) async fn upstream_request(
        &self,
        session: &Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let uri: http::Uri = ctx.route.upstream_path_and_query.parse().map_err(|e| {
            Error::because(ErrorType::InternalError, "building the upstream URI", e)
        })?;
        req.set_uri(uri);
        req.insert_header(http::header::HOST, ctx.route.upstream_host.as_str())?;
        if let Some(src) = &ctx.route.copy_source {
            req.insert_header("x-amz-copy-source", src.as_str())?;
        }
        // Hop-by-hop and client-identity headers are not the upstream's business.
        req.remove_header("proxy-authorization");
        strip_envelope_headers(req);
        match &mut ctx.op {
            Op::Upload(Upload::Ready(plan)) => {
                plan.apply(req)?;
                // A fresh body state per attempt: Pingora replays the body on retry.
                match plan.body(&session.req_header().headers) {
                    Ok(b) => ctx.request_body = Some(Box::new(b)),
                    Err(e) => {
                        ctx.body_error = Some(e);
                        return Err(Error::new(ErrorType::InvalidHTTPHeader));
                    }
                }
            }
            Op::Read(read) => read.apply(req)?,
            Op::Create(Create::Ready(create)) => create.apply(req, ctx.stored_checksum)?,
            Op::Complete(complete) => complete.apply(req)?,
            Op::Copy(copy) => {
                // The backend must not apply the client's SSE or checksum
                // wishes to the stored ciphertext.
                super::headers::strip_plaintext_body_headers(req);
                if let Some(s) = &copy.server_side {
                    // Pinned to the source the gateway checked.
                    if let Some(etag) = &s.etag {
                        req.insert_header("x-amz-copy-source-if-match", etag.as_str())?;
                    }
                    // A re-wrapped copy under COPY: REPLACE with the source's
                    // own metadata and content headers.
                    if let Some(source) = &s.source_headers {
                        for name in super::copy_headers::client_described(req) {
                            req.remove_header(&name);
                        }
                        for (name, value) in source {
                            req.append_header(name.clone(), value.as_str())?;
                        }
                        req.insert_header("x-amz-metadata-directive", "REPLACE")?;
                    }
                    // REPLACE: the client's metadata, the envelope.
                    for (name, value) in &s.envelope {
                        req.insert_header(name.clone(), value.as_str())?;
                    }
                }
            }
            _ => {}
        }
        self.backend(ctx.route.bucket.as_deref())
            .sign(req, &ctx.route.payload_hash)
            .await
            .map_err(|e| {
                Error::because(ErrorType::InternalError, "signing the upstream request", e)
            })?;
        Ok(())
    }
}
