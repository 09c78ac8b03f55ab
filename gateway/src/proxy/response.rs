//! What the gateway does to response bodies, and the response headers
//! of encrypted objects. Each request has at most one transformation.

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use sealgate_envelope::{Decryptor, META_PREFIX};
use sealgate_filters::s3::responses::backend_error;
use sealgate_filters::s3::responses::listing::SizeRewriter;

/// The SSE value reported for every object the gateway encrypted.
pub const SSE_ALGORITHM: &str = "aws:kms";

/// How the response body is transformed.
pub enum ResponseBody {
    /// Decrypt a single-stream object (the body is exactly the planned frames).
    Decrypt(Decryptor),
    /// The gateway answered instead (an error document); upstream bytes are dropped.
    Replace(Option<Bytes>),
    /// Listing sizes.
    Rewrite(SizeRewriter<fn(u64, Option<u64>) -> u64>),
    /// A CreateMultipartUpload response's upload id.
    UploadId(sealgate_filters::s3::multipart::upload_id::UploadIdRewrite),
    /// Decrypt a multipart object's parts.
    Parts(Box<sealgate_envelope::multipart::PartsDecryptor>),
    /// A small document rewritten whole once it ended (ListParts of an
    /// encrypted upload, a CompleteMultipartUpload result).
    Whole(WholeRewrite),
    /// A backend's error document, passed on fit for the client.
    BackendError(BackendErrorDoc),
}

/// Largest backend error document held to be completed; a longer one
/// (none is) passes on as it came.
const MAX_ERROR_DOCUMENT: usize = 64 * 1024;

/// A backend error document (see `filters::s3::responses::backend_error`): held
/// whole, then answered with S3's message where it has none, or as the
/// gateway's own error when the backend refused the gateway's encoding.
pub struct BackendErrorDoc {
    buf: BytesMut,
    /// The gateway chose the request body's encoding (an encrypted write).
    gateway_encoded: bool,
    /// Too long to hold: passed on as it came.
    passing: bool,
    /// The backend's code, for the access line.
    pub code: Option<String>,
}

impl BackendErrorDoc {
    pub fn new(gateway_encoded: bool) -> Self {
        Self {
            buf: BytesMut::new(),
            gateway_encoded,
            passing: false,
            code: None,
        }
    }

    fn push(&mut self, input: Bytes, end: bool) -> Bytes {
        if self.passing {
            return input;
        }
        if self.buf.len() + input.len() > MAX_ERROR_DOCUMENT {
            self.passing = true;
            self.buf.extend_from_slice(&input);
            return self.buf.split().freeze();
        }
        self.buf.extend_from_slice(&input);
        if !end {
            return Bytes::new();
        }
        let doc = self.buf.split().freeze();
        // Backend input, bound for the log: S3 codes are short words.
        self.code = backend_error::code_and_message(&doc).map(|(code, _)| {
            let word = code.len() <= 64
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
            if word {
                code
            } else {
                "unreadable".to_string()
            }
        });
        match backend_error::for_client(&doc, self.gateway_encoded) {
            Some(fit) => Bytes::from(fit),
            None => doc,
        }
    }
}

/// Largest response held to be rewritten whole: a ListParts page (1,000
/// parts) or a Complete result, with room for S3's keep-alive whitespace.
const MAX_WHOLE_RESPONSE: usize = 4 * 1024 * 1024;

/// Buffers a response (bounded) and rewrites it at its end.
pub struct WholeRewrite {
    buf: BytesMut,
    rewrite: Box<dyn FnOnce(&str) -> String + Send + Sync>,
}

impl WholeRewrite {
    pub fn new(rewrite: impl FnOnce(&str) -> String + Send + Sync + 'static) -> Self {
        Self {
            buf: BytesMut::new(),
            rewrite: Box::new(rewrite),
        }
    }

    fn push(&mut self, input: &[u8], end: bool) -> Result<Bytes, sealgate_envelope::StreamError> {
        if self.buf.len() + input.len() > MAX_WHOLE_RESPONSE {
            return Err(sealgate_envelope::StreamError::TrailingData);
        }
        self.buf.extend_from_slice(input);
        if !end {
            return Ok(Bytes::new());
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        let rewrite = std::mem::replace(&mut self.rewrite, Box::new(|t: &str| t.to_string()));
        Ok(Bytes::from(rewrite(&text)))
    }
}

impl ResponseBody {
    pub fn push(
        &mut self,
        input: Option<Bytes>,
        end: bool,
    ) -> Result<Option<Bytes>, sealgate_envelope::StreamError> {
        let data = input.unwrap_or_default();
        match self {
            ResponseBody::Decrypt(dec) => Ok(Some(dec.push(&data, end)?)),
            ResponseBody::Replace(body) => Ok(Some(body.take().unwrap_or_default())),
            ResponseBody::Rewrite(r) => Ok(Some(r.push(&data, end))),
            ResponseBody::UploadId(r) => r
                .push(&data, end)
                .map(Some)
                .ok_or(sealgate_envelope::StreamError::TrailingData),
            ResponseBody::Parts(dec) => Ok(Some(dec.push(&data, end)?)),
            ResponseBody::Whole(r) => Ok(Some(r.push(&data, end)?)),
            ResponseBody::BackendError(doc) => Ok(Some(doc.push(data, end))),
        }
    }
}

/// Removes envelope metadata and checksums of stored bytes from a response,
/// and the `aws-chunked` coding some backends keep in the stored
/// `Content-Encoding` of a body the gateway sent framed (S3 drops it).
pub fn strip_response(resp: &mut ResponseHeader) {
    match super::headers::coding_without_aws_chunked(&resp.headers) {
        None => {}
        Some(Some(rest)) => {
            let _ = resp.insert_header(http::header::CONTENT_ENCODING, rest);
        }
        Some(None) => {
            resp.remove_header(http::header::CONTENT_ENCODING.as_str());
        }
    }
    // Names are shared, not copied: an encrypted object's response drops
    // about ten of them.
    let names: Vec<http::HeaderName> = resp
        .headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.starts_with(META_PREFIX) || k.starts_with("x-amz-checksum-")
        })
        .cloned()
        .collect();
    for n in &names {
        resp.remove_header(n);
    }
}

/// Sets the SSE headers S3 clients expect on encrypted objects.
pub fn set_sse_headers(resp: &mut ResponseHeader, key_id: &str) -> pingora::Result<()> {
    resp.insert_header("x-amz-server-side-encryption", SSE_ALGORITHM)?;
    resp.insert_header(
        "x-amz-server-side-encryption-aws-kms-key-id",
        key_id.to_string(),
    )?;
    Ok(())
}
