//! Browser POST uploads (`POST /bucket` with a `multipart/form-data` body
//! and a signed POST policy). The client is known only from the form's
//! fields, so the gateway reads the form itself: the fields before the
//! file (bounded), the policy's signature and conditions
//! (`sealgate_filters::s3::auth::post_policy`), the client's write permission,
//! and then the file streams into an upstream PUT, encrypted when the
//! bucket encrypts (`copy_stream` writes the same way). The file must be
//! the form's last field, as S3 requires; anything else after it, or a
//! body that ends early, cuts the upstream body short: nothing is stored.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use sealgate_envelope::META_PREFIX;
use sealgate_filters::permission;
use sealgate_filters::plan::UploadBody;
use sealgate_filters::policy;
use sealgate_filters::s3::auth::post_policy::PostPolicy;
use sealgate_filters::s3::body::post_form::{self, FormReader, MAX_FORM_PREFIX};
use sealgate_filters::s3::request::classify;
use sealgate_filters::s3::responses::error::xml_escape;
use sealgate_filters::s3::{uri, Operation, S3Error, S3ErrorCode};

use crate::keys::key_error;
use crate::proxy::copy_stream::Stored;
use crate::proxy::errors::internal;
use crate::proxy::response::set_sse_headers;
use crate::proxy::upload::UploadPlan;
use crate::proxy::{Ctx, Gateway};
use crate::upstream::encode_key;

/// Longest the fields before the file may take to arrive: they are read
/// before the client is known, so a slow sender cannot hold a connection
/// and its buffer for long.
const FORM_PREFIX_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
/// Form fields that become the object's headers (besides `x-amz-meta-*`).
const OBJECT_FIELDS: [&str; 9] = [
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "expires",
    "x-amz-storage-class",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-website-redirect-location",
];

/// A POST to a bucket with a form body: a browser upload.
pub(in crate::proxy) fn is_post_upload(req: &RequestHeader) -> bool {
    req.method == Method::POST
        && req.uri.query().is_none_or(str::is_empty)
        && req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            })
}

/// What the upload stored, and how the client asked to be answered.
struct Posted {
    stored: Stored,
    bucket: String,
    key: String,
    status: Option<String>,
    redirect: Option<String>,
}

impl Gateway {
    /// Runs the upload and answers the client, errors included.
    pub(in crate::proxy) async fn serve_post(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<()> {
        match self.post_upload(session, ctx).await {
            Ok(posted) => self.answer_post(session, ctx, posted).await,
            Err(e) => self.reject(session, ctx, &e).await,
        }
    }

    async fn post_upload(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Posted, S3Error> {
        let req = session.req_header().clone();
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok());
        let s3 = classify(
            &req.method,
            host,
            req.uri.path(),
            &[],
            &req.headers,
            &ctx.live.config.server.domains,
        )?;
        ctx.audit.operation = s3.operation;
        ctx.audit.bucket = s3.bucket.clone();
        let (Operation::PostObject, Some(typed)) = (s3.operation, s3.bucket) else {
            return Err(S3Error::new(
                S3ErrorCode::MethodNotAllowed,
                "a form upload is a POST to a bucket",
            ));
        };
        let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
        let boundary = post_form::boundary(header("content-type").unwrap_or(""))?;
        let length: usize = header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::MissingContentLength,
                    "a form upload needs a Content-Length",
                )
            })?;
        let malformed =
            |why: &str| S3Error::new(S3ErrorCode::MalformedPOSTRequest, why.to_string());
        let read_failed =
            |_| S3Error::new(S3ErrorCode::IncompleteBody, "the form could not be read");

        // The fields, up to the file's first byte: read before anyone is
        // authenticated, so bounded in size, time and parser work.
        let mut form = FormReader::new(&boundary);
        let read_fields = async {
            let mut piece = Bytes::new();
            loop {
                if let Some(s) = form.push(&piece)? {
                    return Ok(s);
                }
                if form.buffer().len() > MAX_FORM_PREFIX {
                    return Err(S3Error::new(
                        S3ErrorCode::MaxPostPreDataLengthExceededError,
                        "the form's fields before the file are too large",
                    ));
                }
                match session.read_request_body().await.map_err(read_failed)? {
                    Some(b) => piece = b,
                    None => {
                        return Err(S3Error::new(
                            S3ErrorCode::IncorrectNumberOfFilesInPostRequest,
                            "POST requires exactly one file upload per request",
                        ))
                    }
                }
            }
        };
        let start = tokio::time::timeout(FORM_PREFIX_DEADLINE, read_fields)
            .await
            .map_err(|_| {
                S3Error::new(
                    S3ErrorCode::RequestTimeout,
                    "the form's fields before the file did not arrive in time",
                )
            })??;
        let prefix = form.buffer();
        let fields = start.fields;
        let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());

        let identity = ctx.live.clients.authenticate_post(&fields)?;
        ctx.audit.access_key_id = Some(identity.access_key_id.clone());
        if identity.verified.signature_v2 {
            self.metrics.signature_v2_total.inc();
        }
        if !ctx.live.within_rate(&identity.access_key_id) {
            return Err(self.over_rate(ctx));
        }
        let resolved = ctx.live.resolve_bucket(&typed)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let range = PostPolicy::parse(field("policy").unwrap_or(""))?.check(
            &fields,
            &typed,
            now,
            identity.verified.signature_v2,
        )?;
        let key = field("key")
            .ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "a form upload needs the field key",
                )
            })?
            .replace("${filename}", start.filename.as_deref().unwrap_or(""));
        if key.is_empty() {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                "the key must be 1 to 1024 bytes",
            ));
        }
        ctx.live.check_key(&key)?;
        ctx.audit.key = Some(key.clone());
        let encrypting = policy::for_bucket(&ctx.live.config, &resolved.name).is_some();
        self.refuse_reserved(encrypting, &key)?;
        let headers = object_headers(&fields)?;
        let needed = permission::required(Operation::PutObject, &Method::PUT, &[], &headers);
        identity.authorize(&resolved.name, needed)?;
        if req.headers.contains_key(http::header::ORIGIN) {
            ctx.cors = Some(Vec::new());
            self.cors_for_response(&req, ctx, &resolved.real).await?;
        }

        let closing = post_form::closing_delimiter(&boundary);
        let file_len = length
            .checked_sub(start.offset + closing.len())
            .ok_or_else(|| malformed("the form is shorter than its fields"))?
            as u64;
        if let Some((min, max)) = range {
            if file_len < min {
                return Err(S3Error::new(
                    S3ErrorCode::EntityTooSmall,
                    "the file is smaller than the policy allows",
                ));
            }
            if file_len > max {
                return Err(S3Error::new(
                    S3ErrorCode::EntityTooLarge,
                    "the file is larger than the policy allows",
                ));
            }
        }
        let plan = self
            .post_plan((&resolved.name, &resolved.real), file_len, &headers, ctx)
            .await?;
        let (host, path) = self
            .backend(Some(&resolved.real))
            .address(Some(&resolved.real), Some(&encode_key(&key)));
        let mut put = RequestHeader::build("PUT", path.as_bytes(), None).map_err(internal)?;
        put.insert_header(http::header::HOST, host.as_str())
            .map_err(internal)?;
        for (name, value) in &headers {
            put.append_header(name.clone(), value.clone())
                .map_err(internal)?;
        }
        let mut file = BytesMut::from(&prefix[start.offset..]);
        let pending = self
            .stream_upload(
                &plan,
                put,
                self.backend(Some(&resolved.real)),
                &mut file,
                closing.len(),
                session,
            )
            .await?;
        if file[..] != closing[..] {
            return Err(malformed("the file must be the form's last field"));
        }
        let stored = self.finish_upload(pending).await?;
        if plan.encrypts() {
            self.metrics.fixed.encrypted.inc_by(file_len);
        }
        Ok(Posted {
            stored,
            bucket: typed,
            key,
            status: field("success_action_status").map(str::to_string),
            redirect: field("success_action_redirect")
                .or(field("redirect"))
                .map(str::to_string),
        })
    }

    /// The upload's body plan: encrypted under the bucket's provider, or
    /// plaintext for a bucket the gateway does not encrypt.
    async fn post_plan(
        &self,
        (bucket, real): (&str, &str),
        len: u64,
        headers: &HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<UploadPlan, S3Error> {
        let body = UploadBody::plain(len);
        let Some(enc) = policy::for_bucket(&ctx.live.config, bucket) else {
            ctx.live.check_size(len)?;
            return Ok(UploadPlan::decode_only(body));
        };
        ctx.live
            .check_size(sealgate_envelope::ciphertext_len(len))?;
        let provider = ctx.live.provider(&enc.provider)?;
        let chosen = policy::check_write_headers(&enc, provider.default_key_id(), headers)?;
        let key_id = chosen
            .or_else(|| enc.key_id.clone())
            .unwrap_or_else(|| provider.default_key_id().to_string());
        let data_key = provider
            .generate_data_key(&key_id, &enc.write_context)
            .await
            .map_err(key_error)?;
        ctx.audit.provider = Some(enc.provider.clone());
        ctx.audit.key_id = Some(data_key.key_id.clone());
        ctx.stored_checksum = self.backend(Some(real)).stored_checksum(real).await;
        Ok(
            UploadPlan::new(body, &enc.provider, data_key, enc.write_context.clone())?
                .with_stored_checksum(ctx.stored_checksum),
        )
    }

    async fn answer_post(&self, session: &mut Session, ctx: &mut Ctx, p: Posted) -> Result<()> {
        let location = format!("/{}/{}", p.bucket, encode_key(&p.key));
        // A redirect that is not a valid header value (CR, LF) is not
        // followed: the upload is answered as if none was asked for.
        let redirect = p.redirect.as_deref().and_then(|url| {
            HeaderValue::from_str(&format!(
                "{url}{}bucket={}&key={}&etag={}",
                if url.contains('?') { '&' } else { '?' },
                uri::encode(&p.bucket),
                uri::encode(&p.key),
                uri::encode(&p.stored.etag)
            ))
            .ok()
        });
        let (status, body) = match (&redirect, p.status.as_deref()) {
            (Some(_), _) => (303, String::new()),
            (None, Some("200")) => (200, String::new()),
            (None, Some("201")) => (
                201,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></PostResponse>",
                    xml_escape(&location),
                    xml_escape(&p.bucket),
                    xml_escape(&p.key),
                    xml_escape(&p.stored.etag)
                ),
            ),
            _ => (204, String::new()),
        };
        let mut resp = ResponseHeader::build(status, Some(6))?;
        resp.insert_header("x-amz-request-id", ctx.request_id.as_str())?;
        resp.insert_header(http::header::ETAG, p.stored.etag.as_str())?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        match redirect {
            Some(v) => resp.insert_header(http::header::LOCATION, v)?,
            None => resp.insert_header(http::header::LOCATION, location.as_str())?,
        }
        if !body.is_empty() {
            resp.insert_header(http::header::CONTENT_TYPE, "application/xml")?;
        }
        if let Some(key_id) = &ctx.audit.key_id {
            set_sse_headers(&mut resp, key_id)?;
        }
        crate::proxy::cors::apply(&mut resp, &ctx.cors)?;
        session
            .write_response_header(Box::new(resp), false)
            .await
            .map_err(|e| e.into_down())?;
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await
            .map_err(|e| e.into_down())?;
        Ok(())
    }
}

/// The object's headers from the form's fields; a value that is not a
/// valid header is refused.
fn object_headers(fields: &[(String, String)]) -> Result<HeaderMap, S3Error> {
    let mut h = HeaderMap::new();
    for (name, value) in fields {
        let header = match name.as_str() {
            "acl" => "x-amz-acl",
            // Envelope fields are the gateway's alone, in every bucket.
            n if n.starts_with(META_PREFIX) => continue,
            n if OBJECT_FIELDS.contains(&n) || n.starts_with("x-amz-meta-") => n,
            _ => continue,
        };
        let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(header.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                format!("the form field {name} is not a valid header value"),
            ));
        };
        h.insert(n, v);
    }
    Ok(h)
}
