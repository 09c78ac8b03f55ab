//! The source side of UploadPartCopy: which plaintext bytes the part
//! takes from the source, whether this client may have them decrypted
//! (the same binding check as a GET), and the source GET itself, pinned
//! to the version the probe saw.

use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use sealgate_envelope::format::ByteRange;
use sealgate_filters::plan::ReadRequest;
use sealgate_filters::policy;
use sealgate_filters::s3::{S3Error, S3ErrorCode};

use super::errors::internal;
use super::part_copy::PartCopy;
use super::read_target::{invalid_range, ReadBinding, ReadPlan, ReadTarget};
use super::response::ResponseBody;
use super::route::Route;
use super::Gateway;

/// Copy conditions on the source, as the conditional GET headers they are.
pub(super) const SOURCE_CONDITIONS: [(&str, &str); 4] = [
    ("x-amz-copy-source-if-match", "if-match"),
    ("x-amz-copy-source-if-none-match", "if-none-match"),
    ("x-amz-copy-source-if-modified-since", "if-modified-since"),
    (
        "x-amz-copy-source-if-unmodified-since",
        "if-unmodified-since",
    ),
];

/// How the source's bytes become the part's plaintext.
pub(super) enum SourceBody {
    /// A plaintext object's stored bytes.
    Plain,
    /// An encrypted object's frames, decrypted.
    Decrypt(Box<ResponseBody>),
}

impl Gateway {
    /// The plaintext span to copy, the stored range to fetch for it and
    /// how its bytes become plaintext, once the source is known to be one
    /// this client may have decrypted.
    pub(super) async fn source_plan(
        &self,
        copy: &PartCopy,
        resp: &ResponseHeader,
        target: ReadTarget,
        cipher_range: Option<(u64, u64)>,
        route: &Route,
    ) -> Result<(Option<(u64, u64)>, Option<(u64, u64)>, SourceBody), S3Error> {
        let source_bucket = route.copy_source_bucket.as_deref().unwrap_or("");
        let source_enc = policy::for_bucket(&self.config, source_bucket);
        let asked_end = copy.range.map(|(_, b)| b);
        match target {
            ReadTarget::Plain => {
                if source_enc.as_ref().is_some_and(|e| e.mandatory) {
                    return Err(S3Error::new(
                        S3ErrorCode::AccessDenied,
                        "the copy source was not written through the encryption gateway and its bucket's policy requires encryption",
                    ));
                }
                let total = match resp.status.as_u16() {
                    416 => 0,
                    _ => super::read_target::stored_extent(resp).map_or(0, |(_, t)| t),
                };
                let span = match copy.range {
                    None if total == 0 => None,
                    None => Some((0, total - 1)),
                    Some((a, b)) if b < total => Some((a, b)),
                    Some(_) => return Err(invalid_range()),
                };
                Ok((span, span, SourceBody::Plain))
            }
            ReadTarget::Single { ref meta, span, .. }
            | ReadTarget::Multipart { ref meta, span, .. } => {
                // A clamped end: the range reached past the object.
                if asked_end.is_some_and(|b| b != span.1) {
                    return Err(invalid_range());
                }
                let binding = source_enc.and_then(|enc| {
                    let default_key_id = self.providers.get(&enc.provider)?.default_key_id();
                    Some(ReadBinding {
                        default_key_id: default_key_id.to_string(),
                        enc,
                    })
                });
                let read = ReadPlan::new(
                    ReadRequest {
                        range: None,
                        part_number: false,
                        head: false,
                        mandatory: false,
                    },
                    binding,
                );
                if let Err(why) = self.check_bound(&read, meta).await? {
                    self.metrics
                        .binding_refusals_total
                        .with_label_values(&[why.as_str()])
                        .inc();
                    return Err(S3Error::new(
                        S3ErrorCode::AccessDenied,
                        "the copy source is not encrypted under a key and context its bucket's policy allows",
                    ));
                }
                let meta = meta.clone();
                let whole = ByteRange::From {
                    start: span.0,
                    end: Some(span.1),
                };
                let dec = self.decrypting_body(&meta, target, Some(whole)).await?;
                Ok((Some(span), cipher_range, SourceBody::Decrypt(Box::new(dec))))
            }
        }
    }

    /// The source GET, checked to be the probed object.
    pub(super) async fn open_source(
        &self,
        source: &Route,
        headers: &[(&str, &str)],
        body: &SourceBody,
    ) -> Result<HttpSession, S3Error> {
        let mut get = RequestHeader::build("GET", source.upstream_path_and_query.as_bytes(), None)
            .map_err(internal)?;
        get.insert_header(http::header::HOST, source.upstream_host.as_str())
            .map_err(internal)?;
        for (n, v) in headers {
            get.append_header(n.to_string(), *v).map_err(internal)?;
        }
        self.upstream
            .sign(&mut get, sealgate_filters::s3::sigv4::EMPTY_SHA256)
            .await
            .map_err(|e| source_failed(&e))?;
        let mut src = self
            .upstream
            .session()
            .await
            .map_err(|e| source_failed(&e))?;
        src.write_request_header(Box::new(get))
            .await
            .map_err(|e| source_failed(&e))?;
        src.finish_request_body()
            .await
            .map_err(|e| source_failed(&e))?;
        src.read_response_header()
            .await
            .map_err(|e| source_failed(&e))?;
        let resp = src
            .response_header()
            .cloned()
            .ok_or_else(unreachable_source)?;
        match resp.status.as_u16() {
            200 | 206 => {}
            412 => return Err(super::read_target::changed()),
            other => check_source_status(other)?,
        }
        if let SourceBody::Decrypt(_) = body {
            if self.read_meta(&resp, "")?.is_none() {
                return Err(super::read_target::changed());
            }
        }
        Ok(src)
    }
}

/// The source's status as the client's error (404 NoSuchKey, 412 and 304
/// PreconditionFailed as S3 answers copy conditions, other refusals
/// AccessDenied).
pub(super) fn check_source_status(status: u16) -> Result<(), S3Error> {
    match status {
        200 | 206 => Ok(()),
        // An empty object cannot serve a first byte.
        416 => Ok(()),
        404 => Err(S3Error::new(
            S3ErrorCode::NoSuchKey,
            "the copy source does not exist",
        )),
        304 | 412 => Err(S3Error::new(
            S3ErrorCode::PreconditionFailed,
            "at least one of the preconditions you specified did not hold",
        )),
        403 => Err(S3Error::new(
            S3ErrorCode::AccessDenied,
            "the copy source cannot be read",
        )),
        _ => Err(unreachable_source()),
    }
}

/// A failed exchange with the source, logged (no secrets in it).
pub(super) fn source_failed(e: &dyn std::fmt::Display) -> S3Error {
    tracing::warn!(error = %e, "part copy: reading the source failed");
    unreachable_source()
}

/// `x-amz-copy-source-if-match` / `-if-none-match` against the probed
/// ETag: checked here too, since not every backend honours them on GET.
pub(super) fn check_etag_conditions(
    headers: &HeaderMap,
    etag: Option<&str>,
) -> Result<(), S3Error> {
    let bare = |t: &str| t.trim().trim_matches('"').to_string();
    let given = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(bare);
    let etag = etag.map(bare);
    let failed = match (
        given("x-amz-copy-source-if-match"),
        given("x-amz-copy-source-if-none-match"),
    ) {
        (Some(m), _) if m != "*" && Some(&m) != etag.as_ref() => true,
        (_, Some(n)) if n == "*" || Some(&n) == etag.as_ref() => true,
        _ => false,
    };
    if failed {
        return Err(S3Error::new(
            S3ErrorCode::PreconditionFailed,
            "at least one of the preconditions you specified did not hold",
        ));
    }
    Ok(())
}

pub(super) fn unreachable_source() -> S3Error {
    S3Error::new(
        S3ErrorCode::ServiceUnavailable,
        "the copy source could not be read from the storage backend; retry",
    )
}
