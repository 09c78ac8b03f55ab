//! The source of a copy the gateway makes itself (UploadPartCopy, and a
//! CopyObject into an encrypting bucket that the backend cannot do as
//! stored): a probe of its first bytes (envelope, size, first part
//! header, ETag), the client's copy conditions, the same policy and
//! binding checks as a GET, and the source GET itself, pinned to the
//! version the probe saw.

use bytes::Bytes;
use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use sealgate_envelope::format::ByteRange;
use sealgate_envelope::multipart::PART_HEADER_LEN;
use sealgate_envelope::EnvelopeMeta;
use sealgate_filters::plan::ReadRequest;
use sealgate_filters::policy;
use sealgate_filters::s3::{S3Error, S3ErrorCode};

use crate::proxy::errors::internal;
use crate::proxy::read_target::{
    changed, invalid_range, stored_extent, ReadPlan, ReadTarget, Reader,
};
use crate::proxy::response::ResponseBody;
use crate::proxy::route::Route;
use crate::proxy::Gateway;

/// Largest probe answer read (a first part header, or an error document).
const MAX_PROBE_ANSWER: usize = 64 * 1024;
/// Copy conditions on the source, as the conditional GET headers they are.
const SOURCE_CONDITIONS: [(&str, &str); 5] = [
    // The client's check that the source bucket is the one it means.
    (
        "x-amz-source-expected-bucket-owner",
        "x-amz-expected-bucket-owner",
    ),
    ("x-amz-copy-source-if-match", "if-match"),
    ("x-amz-copy-source-if-none-match", "if-none-match"),
    ("x-amz-copy-source-if-modified-since", "if-modified-since"),
    (
        "x-amz-copy-source-if-unmodified-since",
        "if-unmodified-since",
    ),
];

/// How the source's bytes become the copy's plaintext.
pub(in crate::proxy) enum SourceBody {
    /// A plaintext object's stored bytes.
    Plain,
    /// An encrypted object's frames, decrypted.
    Decrypt(Box<ResponseBody>),
}

/// A probed copy source that this client may have read.
pub(in crate::proxy) struct CopySource {
    route: Route,
    /// The client's copy conditions as GET headers.
    conditions: Vec<(&'static str, String)>,
    /// The probe's answer: ETag, user metadata, content headers.
    pub probe: ResponseHeader,
    pub etag: Option<String>,
    /// Plain, or the envelope and the span's place in it.
    pub target: ReadTarget,
    /// The source's envelope (also of an empty encrypted object, which
    /// has no span to target).
    envelope: Option<EnvelopeMeta>,
    /// The plaintext bytes copied (inclusive); `None` for nothing.
    pub span: Option<(u64, u64)>,
    /// The stored bytes to fetch for them.
    fetch: Option<(u64, u64)>,
}

impl CopySource {
    /// The source's upstream bucket.
    pub fn bucket(&self) -> Option<&str> {
        self.route.bucket.as_deref()
    }

    /// Plaintext bytes copied.
    pub fn len(&self) -> u64 {
        self.span.map_or(0, |(a, b)| b - a + 1)
    }

    /// Where the source's tags are read (GetObjectTagging).
    pub fn tagging_address(&self) -> (String, String) {
        let p = &self.route.upstream_path_and_query;
        let sep = if p.contains('?') { '&' } else { '?' };
        (self.route.upstream_host.clone(), format!("{p}{sep}tagging"))
    }

    /// The source's envelope, if it is encrypted.
    pub fn meta(&self) -> Option<&EnvelopeMeta> {
        self.envelope.as_ref()
    }

    /// The source GET's headers: the client's conditions, the stored
    /// range, and the probed ETag (unless the client pinned one itself).
    fn get_headers(&self) -> Vec<(&str, String)> {
        // The client's If-Match held at the probe; the probed ETag
        // replaces it (it also pins a client's `*`).
        let mut h: Vec<(&str, String)> = self
            .conditions
            .iter()
            .filter(|(n, _)| self.etag.is_none() || *n != "if-match")
            .map(|(n, v)| (*n, v.clone()))
            .collect();
        if let Some((a, b)) = self.fetch {
            h.push(("range", format!("bytes={a}-{b}")));
        }
        if let Some(t) = &self.etag {
            h.push(("if-match", t.clone()));
        }
        h
    }
}

impl Gateway {
    /// Probes the copy source of the request at `route` for plaintext
    /// `range` (the whole object if `None`) and checks that the client may
    /// read it: its bucket's policy (no plaintext from a mandatory bucket)
    /// and binding (an encrypted object must belong to its bucket).
    pub(in crate::proxy) async fn probe_copy_source(
        &self,
        live: &crate::live::Live,
        headers: &HeaderMap,
        range: Option<(u64, u64)>,
        route: &Route,
        request_id: &str,
    ) -> Result<CopySource, S3Error> {
        let (bucket, host, path) = self.source_address(route.copy_source.as_deref())?;
        let source = Route {
            upstream_host: host,
            upstream_path_and_query: path,
            bucket: Some(bucket),
            ..Route::default()
        };
        let conditions: Vec<(&'static str, String)> = SOURCE_CONDITIONS
            .iter()
            .filter_map(|(from, to)| Some((*to, headers.get(*from)?.to_str().ok()?.to_string())))
            .collect();
        let head = format!("bytes=0-{}", PART_HEADER_LEN - 1);
        let mut probe_headers: Vec<(&str, &str)> =
            conditions.iter().map(|(n, v)| (*n, v.as_str())).collect();
        probe_headers.push(("range", &head));
        let (probe, body) = self
            .backend(source.bucket.as_deref())
            .request(
                "GET",
                &source.upstream_host,
                &source.upstream_path_and_query,
                &probe_headers,
                Bytes::new(),
                MAX_PROBE_ANSWER,
            )
            .await
            .map_err(|e| source_failed(&e))?;
        let status = probe.status.as_u16();
        check_source_status(status)?;
        let etag = probe
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        check_etag_conditions(headers, etag.as_deref())?;
        // The source bucket's binding, checked on the probe's envelope
        // before any part header of the source is read.
        let source_bucket = route.copy_source_bucket.as_deref().unwrap_or("");
        let source_enc = policy::for_bucket(&live.config, source_bucket);
        let read = ReadPlan::new(
            ReadRequest {
                range: None,
                part_number: None,
                head: false,
                mandatory: source_enc.as_ref().is_some_and(|e| e.mandatory),
            },
            live.read_binding(source_enc),
        );
        let reader = Reader {
            live,
            read: &read,
            what: "the copy source",
        };
        // An empty object cannot serve a first byte (416).
        let probed = if status == 416 {
            Ok((ReadTarget::Plain, None))
        } else {
            let want = ByteRange::From {
                start: range.map_or(0, |r| r.0),
                end: range.map(|r| r.1),
            };
            self.target_from_probe(&probe, &body, want, &source, reader, request_id)
                .await
        };
        let (target, fetch) = match probed {
            Ok(t) => t,
            // An empty encrypted source copied whole: nothing to copy.
            Err(e) if e.code == S3ErrorCode::InvalidRange && range.is_none() => {
                (ReadTarget::Plain, None)
            }
            Err(e) => return Err(e),
        };
        let envelope = match status {
            416 => None,
            _ => self.read_meta(&probe, request_id)?,
        };
        let mut src = CopySource {
            route: source,
            conditions,
            probe,
            etag,
            target,
            envelope,
            span: None,
            fetch,
        };
        check_source_policy(&mut src, range, read.mandatory)?;
        Ok(src)
    }

    /// How the source's bytes become plaintext (an encrypted source's data
    /// key is unwrapped here).
    pub(in crate::proxy) async fn source_body(
        &self,
        live: &crate::live::Live,
        src: &CopySource,
    ) -> Result<SourceBody, S3Error> {
        let (Some(meta), Some(span)) = (src.meta(), src.span) else {
            return Ok(SourceBody::Plain);
        };
        let whole = ByteRange::From {
            start: span.0,
            end: Some(span.1),
        };
        let dec = self
            .decrypting_body(live, meta, src.target.clone(), Some(whole))
            .await?;
        Ok(SourceBody::Decrypt(Box::new(dec)))
    }

    /// The source GET, checked to be the probed (encrypted) object.
    pub(in crate::proxy) async fn open_source(
        &self,
        src: &CopySource,
    ) -> Result<HttpSession, S3Error> {
        let route = &src.route;
        let mut get = RequestHeader::build("GET", route.upstream_path_and_query.as_bytes(), None)
            .map_err(internal)?;
        get.insert_header(http::header::HOST, route.upstream_host.as_str())
            .map_err(internal)?;
        for (n, v) in src.get_headers() {
            get.append_header(n.to_string(), v).map_err(internal)?;
        }
        let from = self.backend(src.bucket());
        from.sign(&mut get, sealgate_filters::s3::auth::sigv4::EMPTY_SHA256)
            .await
            .map_err(|e| source_failed(&e))?;
        let mut session = from.session().await.map_err(|e| source_failed(&e))?;
        session
            .write_request_header(Box::new(get))
            .await
            .map_err(|e| source_failed(&e))?;
        session
            .finish_request_body()
            .await
            .map_err(|e| source_failed(&e))?;
        session
            .read_response_header()
            .await
            .map_err(|e| source_failed(&e))?;
        let resp = session
            .response_header()
            .cloned()
            .ok_or_else(unreachable_source)?;
        match resp.status.as_u16() {
            200 | 206 => {}
            412 => return Err(changed()),
            other => check_source_status(other)?,
        }
        if src.meta().is_some() && self.read_meta(&resp, "")?.is_none() {
            return Err(changed());
        }
        Ok(session)
    }
}

/// The source bucket's policy (no plaintext from a `mandatory` bucket),
/// and the span to copy. An encrypted source was found bound to its bucket
/// by the probe (`target_from_probe`), before any of its part headers was
/// read.
fn check_source_policy(
    src: &mut CopySource,
    range: Option<(u64, u64)>,
    mandatory: bool,
) -> Result<(), S3Error> {
    match (&src.envelope, &src.target) {
        (None, _) => {
            if mandatory {
                return Err(S3Error::new(
                    S3ErrorCode::AccessDenied,
                    "the copy source was not written through the encryption gateway and its bucket's policy requires encryption",
                ));
            }
            let total = match src.probe.status.as_u16() {
                416 => 0,
                _ => stored_extent(&src.probe).map_or(0, |(_, t)| t),
            };
            src.span = match range {
                None if total == 0 => None,
                None => Some((0, total - 1)),
                Some((a, b)) if b < total => Some((a, b)),
                Some(_) => return Err(invalid_range()),
            };
            src.fetch = src.span;
        }
        (Some(_), target) => {
            let span = match target {
                ReadTarget::Single { span, .. } | ReadTarget::Multipart { span, .. } => Some(*span),
                // An empty encrypted object copied whole.
                ReadTarget::Plain => None,
            };
            // A clamped end: the range reached past the object.
            if range.is_some_and(|(_, b)| span.map(|s| s.1) != Some(b)) {
                return Err(invalid_range());
            }
            src.span = span;
        }
    }
    Ok(())
}

/// The source's status as the client's error: 404 NoSuchKey, 412 and 304
/// PreconditionFailed (S3's answer to copy conditions), other refusals
/// (an SSE-C object, no access) AccessDenied, 5xx a 503 to retry.
fn check_source_status(status: u16) -> Result<(), S3Error> {
    match status {
        // 416: an empty object cannot serve a first byte.
        200 | 206 | 416 => Ok(()),
        404 => Err(S3Error::new(
            S3ErrorCode::NoSuchKey,
            "the copy source does not exist",
        )),
        304 | 412 => Err(S3Error::new(
            S3ErrorCode::PreconditionFailed,
            "at least one of the preconditions you specified did not hold",
        )),
        400..=499 => Err(S3Error::new(
            S3ErrorCode::AccessDenied,
            "the copy source could not be read by the gateway",
        )),
        _ => Err(unreachable_source()),
    }
}

/// `x-amz-copy-source-if-match` / `-if-none-match` against the probed
/// ETag: checked here too, since not every backend honours them on GET.
fn check_etag_conditions(headers: &HeaderMap, etag: Option<&str>) -> Result<(), S3Error> {
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

/// A failed exchange with the source, logged (no secrets in it).
pub(in crate::proxy) fn source_failed(e: &dyn std::fmt::Display) -> S3Error {
    tracing::warn!(error = %e, "copy: reading the source failed");
    unreachable_source()
}

fn unreachable_source() -> S3Error {
    S3Error::new(
        S3ErrorCode::ServiceUnavailable,
        "the copy source could not be read from the storage backend; retry",
    )
}
