//! The Pingora `ProxyHttp` implementation: authenticate, authorise, map the
//! bucket, plan (pass through, encrypt a PUT, decrypt a read, rewrite a
//! listing), forward, re-sign. The plans' body work lives in `crypto`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use sealgate_config::Config;
use sealgate_config::StoredChecksum;
use sealgate_envelope::format::{plaintext_len, ByteRange};
use sealgate_envelope::{Backend, Decryptor, EnvelopeMeta, ObjectKey};
use sealgate_filters::auth::{split_copy_source, Clients, Identity};
use sealgate_filters::policy::{self, BucketEncryption};
use sealgate_filters::s3::checksum::ChecksumAlgorithm;
use sealgate_filters::s3::chunked::encode::{STORED_CHECKSUM, UNSIGNED_TRAILER};
use sealgate_filters::s3::multipart::{self as mpu, ChecksumRequest, StoredPart};
use sealgate_filters::s3::request::classify;
use sealgate_filters::s3::sigv4::{PayloadHash, RequestParts, UNSIGNED_PAYLOAD};
use sealgate_filters::s3::{uri, Operation, S3Error, S3ErrorCode};

use crate::crypto::{
    self, BodyEncoding, Providers, PutBody, PutPlan, ReadBody, ReadPlan, ReadTarget, UploadBody,
};
use crate::metrics::{status_class, Metrics};
use crate::upstream::{encode_key, UpstreamTarget};
use sealgate_envelope::multipart::{Layout, PartHeader, PartsDecryptor, PART_HEADER_LEN};
use sealgate_filters::s3::upload_id::{UploadIdRewrite, UploadToken};

/// Query parameters of a presigned URL: consumed by the gateway, never forwarded.
const PRESIGN_PARAMS: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// The gateway's proxy logic, shared by all requests.
pub struct Gateway {
    pub config: Arc<Config>,
    clients: Clients,
    upstream: Arc<UpstreamTarget>,
    metrics: Arc<Metrics>,
    providers: Providers,
    request_ids: RequestIds,
}

/// Per-request state.
pub struct Ctx {
    request_id: String,
    started: Instant,
    operation: Operation,
    bucket: Option<String>,
    access_key_id: Option<String>,
    /// Upstream `Host`, path and query, decided in `request_filter`.
    upstream_host: String,
    upstream_path_and_query: String,
    /// The upstream `x-amz-content-sha256`.
    payload_hash: String,
    /// Rewritten `x-amz-copy-source` (alias mapped to the real bucket).
    copy_source: Option<String>,
    /// The S3 error the gateway answered with, if any.
    rejected: Option<S3ErrorCode>,
    /// The bucket's encryption settings (None: pass-through bucket).
    encryption: Option<BucketEncryption>,
    /// An encrypted upload waiting for its data key (decided synchronously).
    pending: Option<Pending>,
    /// The gateway's token from the request's `uploadId`, if it is one.
    upload_token: Option<UploadToken>,
    /// An encrypted CreateMultipartUpload.
    create: Option<CreatePlan>,
    put: Option<PutPlan>,
    put_body: Option<PutBody>,
    /// A check that failed while the body streamed.
    body_error: Option<S3Error>,
    read: Option<ReadPlan>,
    read_body: Option<ReadBody>,
    /// Rewrite listing sizes (objects or parts).
    list_rewrite: Option<fn() -> ReadBody>,
    /// An encrypted CompleteMultipartUpload.
    complete: Option<CompletePlan>,
    /// A copy into a mandatory bucket: the source must carry an envelope.
    copy_needs_envelope: bool,
    /// A checksum header the client sent and the gateway verified.
    client_checksum: Option<(&'static str, String)>,
}

/// Largest CompleteMultipartUpload body held for checking (10,000 parts
/// with checksums fit easily).
const MAX_COMPLETE_BODY: usize = 4 * 1024 * 1024;

/// Largest ListParts page read from the backend (1,000 parts).
const MAX_LIST_PARTS_BODY: usize = 4 * 1024 * 1024;

/// ListParts pages read at most for one Complete (10,000 parts at S3's
/// 1,000 a page, with room for backends that page smaller).
const MAX_LIST_PARTS_PAGES: usize = 100;

/// S3's largest part number.
const MAX_PART_NUMBER: u32 = 10_000;

/// The synchronous half of an encrypted upload plan; the key work follows.
pub enum Pending {
    /// PutObject, with a key id chosen by config or client.
    Put(UploadBody, Option<String>),
    CreateMultipart(Option<String>, Option<ChecksumRequest>),
    /// UploadPart: body, the upload's token, the part number.
    Part(UploadBody, Box<UploadToken>, u32),
}

/// An encrypted CompleteMultipartUpload: the backend's parts are read
/// first (their count fixes the upstream body's length), then the client's
/// list is checked against them and rewritten (see `filters::s3::multipart`).
pub struct CompletePlan {
    token: UploadToken,
    stored: Vec<StoredPart>,
    upstream_len: u64,
    /// The client's part list as it arrives.
    body: bytes::BytesMut,
    /// The signed hex `x-amz-content-sha256` of the client's list.
    payload_sha256: Option<[u8; 32]>,
    /// A full-object checksum the client sent with the Complete.
    given: Option<String>,
    /// `x-amz-mp-object-size`: the plaintext total the client expects.
    object_size: Option<u64>,
    /// The checksum the client is answered, once its list was read.
    answer: Option<(ChecksumRequest, String)>,
}

/// An encrypted CreateMultipartUpload: metadata to store, token to hand out.
pub struct CreatePlan {
    meta_headers: Vec<(String, String)>,
    key_id: String,
    token: UploadToken,
}

impl Gateway {
    pub fn new(
        config: Arc<Config>,
        upstream: Arc<UpstreamTarget>,
        metrics: Arc<Metrics>,
        providers: Providers,
    ) -> Self {
        let clients = Clients::new(&config.auth.clients, config.auth.max_clock_skew);
        Self {
            config,
            clients,
            upstream,
            metrics,
            providers,
            request_ids: RequestIds::new(),
        }
    }

    /// Reads the length, encoding and integrity checks of an upload body.
    fn body_plan(&self, req: &RequestHeader, identity: &Identity) -> Result<UploadBody, S3Error> {
        let streaming = identity.verified.payload.is_streaming();
        let signed_chunks = matches!(
            identity.verified.payload,
            PayloadHash::StreamingSigned | PayloadHash::StreamingSignedTrailer
        );
        let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
        let length_header = if streaming {
            "x-amz-decoded-content-length"
        } else {
            "content-length"
        };
        let plaintext_len: u64 = header(length_header)
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::MissingContentLength,
                    format!("an encrypted upload needs {length_header}"),
                )
            })?;
        if plaintext_len > sealgate_envelope::format::MAX_PLAINTEXT_LEN {
            return Err(S3Error::new(
                S3ErrorCode::EntityTooLarge,
                "the object is larger than S3's 5 TiB limit",
            ));
        }
        let trailer_algorithm = match header("x-amz-trailer") {
            None => None,
            Some(t) => Some(ChecksumAlgorithm::from_header(t.trim()).ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    "x-amz-trailer names no known checksum",
                )
            })?),
        };
        let payload_sha256 = match &identity.verified.payload {
            PayloadHash::Sha256(h) => Some(*h),
            _ => None,
        };
        let encoding = if streaming {
            BodyEncoding::Chunked(signed_chunks.then(|| identity.verified.clone()))
        } else {
            BodyEncoding::Plain
        };
        Ok(UploadBody {
            plaintext_len,
            encoding,
            trailer_algorithm,
            payload_sha256,
        })
    }

    /// The checksum ciphertext goes upstream with (`storage.s3.stored_checksum`).
    fn stored_checksum(&self) -> Option<ChecksumAlgorithm> {
        match self.config.upstream.stored_checksum {
            StoredChecksum::Crc32c => Some(STORED_CHECKSUM),
            StoredChecksum::None => None,
        }
    }

    fn check_size(&self, stored: u64) -> Result<(), S3Error> {
        let max = self.config.upstream.max_put_size;
        if stored > max {
            return Err(S3Error::new(
                S3ErrorCode::EntityTooLarge,
                format!("the encrypted body would exceed the backend's {max}-byte limit for one upload; use a multipart upload with smaller parts"),
            ));
        }
        Ok(())
    }

    /// Decides what happens to the body: encrypt, decrypt, rewrite, refuse.
    fn plan_encryption(
        &self,
        req: &RequestHeader,
        query: &[(String, String)],
        op: Operation,
        identity: &Identity,
        ctx: &mut Ctx,
    ) -> Result<(), S3Error> {
        let enc = ctx
            .bucket
            .as_deref()
            .and_then(|b| policy::for_bucket(&self.config, b));
        let signed_chunks = matches!(
            identity.verified.payload,
            PayloadHash::StreamingSigned | PayloadHash::StreamingSignedTrailer
        );
        let not_yet = |what: &str| {
            S3Error::new(
                S3ErrorCode::NotImplemented,
                format!("{what} is not supported on encrypted buckets yet"),
            )
        };
        let provider_of = |enc: &BucketEncryption| {
            self.providers.get(&enc.provider).cloned().ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InternalError,
                    "the bucket's key provider is not configured",
                )
            })
        };
        match (op, &enc) {
            (Operation::PutObject, Some(enc)) => {
                let provider = provider_of(enc)?;
                let chosen =
                    policy::check_write_headers(enc, provider.default_key_id(), &req.headers)?;
                let body = self.body_plan(req, identity)?;
                self.check_size(sealgate_envelope::ciphertext_len(body.plaintext_len))?;
                ctx.pending = Some(Pending::Put(body, chosen.or_else(|| enc.key_id.clone())));
            }
            (Operation::CreateMultipartUpload, Some(enc)) => {
                let provider = provider_of(enc)?;
                let chosen =
                    policy::check_write_headers(enc, provider.default_key_id(), &req.headers)?;
                let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
                let checksum = ChecksumRequest::from_headers(
                    header("x-amz-checksum-algorithm"),
                    header("x-amz-checksum-type"),
                )?;
                ctx.pending = Some(Pending::CreateMultipart(
                    chosen.or_else(|| enc.key_id.clone()),
                    checksum,
                ));
            }
            (Operation::UploadPart, Some(_)) => {
                let token = ctx.upload_token.clone().ok_or_else(|| {
                    S3Error::new(
                        S3ErrorCode::InvalidArgument,
                        "this multipart upload was not started through the encryption gateway",
                    )
                })?;
                let number: u32 = query
                    .iter()
                    .find(|(k, _)| k == "partNumber")
                    .and_then(|(_, v)| v.parse().ok())
                    .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
                    .ok_or_else(|| {
                        S3Error::new(
                            S3ErrorCode::InvalidArgument,
                            "partNumber must be 1 to 10000",
                        )
                    })?;
                let body = self.body_plan(req, identity)?;
                self.check_size(sealgate_envelope::multipart::stored_part_len(
                    body.plaintext_len,
                ))?;
                ctx.pending = Some(Pending::Part(body, Box::new(token), number));
            }
            (Operation::GetObject | Operation::HeadObject, _) => {
                let range = req
                    .headers
                    .get(http::header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(ByteRange::parse);
                let part_number = query.iter().any(|(k, _)| k == "partNumber");
                ctx.read = Some(ReadPlan {
                    range,
                    part_number,
                    head: op == Operation::HeadObject,
                    mandatory: enc.as_ref().is_some_and(|e| e.mandatory),
                    target: None,
                    upstream_range: None,
                });
            }
            (
                Operation::ListObjects | Operation::ListObjectsV2 | Operation::ListObjectVersions,
                Some(_),
            ) => {
                ctx.list_rewrite = Some(ReadBody::listing as fn() -> ReadBody);
            }
            (Operation::ListParts, Some(_)) if ctx.upload_token.is_some() => {
                ctx.list_rewrite = Some(list_parts_body as fn() -> ReadBody);
            }
            (Operation::UploadPartCopy, Some(_)) => return Err(not_yet("UploadPartCopy")),
            (Operation::Unknown, Some(_)) => return Err(not_yet("this request")),
            (Operation::CompleteMultipartUpload, Some(_)) => {
                if let Some(token) = ctx.upload_token.clone() {
                    ctx.complete = Some(complete_plan(req, identity, token)?);
                }
            }
            (Operation::SelectObjectContent, Some(_)) => return Err(not_yet("S3 Select")),
            (Operation::PostObject, Some(_)) => return Err(not_yet("browser form upload (POST)")),
            (Operation::CopyObject, Some(_))
                if req
                    .headers
                    .get("x-amz-metadata-directive")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"REPLACE")) =>
            {
                return Err(not_yet("CopyObject with MetadataDirective REPLACE"))
            }
            (Operation::CopyObject, Some(enc)) if enc.mandatory => ctx.copy_needs_envelope = true,
            _ => {}
        }
        let decodes_body = matches!(ctx.pending, Some(Pending::Put(..) | Pending::Part(..)));
        if signed_chunks && !decodes_body {
            // Chunk signatures chain from the client's key, so they cannot be
            // forwarded under the gateway's: decode, verify, forward plain.
            if !matches!(op, Operation::PutObject | Operation::UploadPart) {
                return Err(S3Error::new(
                    S3ErrorCode::NotImplemented,
                    "aws-chunked bodies with chunk signatures are accepted for PutObject and UploadPart only",
                ));
            }
            ctx.put = Some(PutPlan::decode_only(self.body_plan(req, identity)?));
        }
        ctx.client_checksum = ChecksumAlgorithm::ALL.into_iter().find_map(|a| {
            req.headers
                .get(a.header())
                .and_then(|v| v.to_str().ok())
                .map(|v| (a.header(), v.to_string()))
        });
        ctx.encryption = enc;
        Ok(())
    }

    /// The async half of an upload plan: data keys from the provider.
    async fn prepare_upload(&self, ctx: &mut Ctx) -> Result<(), S3Error> {
        let Some(pending) = ctx.pending.take() else {
            return Ok(());
        };
        let enc = ctx
            .encryption
            .as_ref()
            .expect("an upload plan has a bucket policy");
        let provider = self
            .providers
            .get(&enc.provider)
            .expect("checked in plan")
            .clone();
        match pending {
            Pending::Put(body, key_id) => {
                let key_id = key_id.unwrap_or_else(|| provider.default_key_id().to_string());
                let data_key = provider
                    .generate_data_key(&key_id, &enc.context)
                    .await
                    .map_err(crypto::key_error)?;
                ctx.put = Some(
                    PutPlan::new(body, &enc.provider, data_key, enc.context.clone())?
                        .with_stored_checksum(self.stored_checksum()),
                );
            }
            Pending::CreateMultipart(key_id, checksum) => {
                let key_id = key_id.unwrap_or_else(|| provider.default_key_id().to_string());
                let data_key = provider
                    .generate_data_key(&key_id, &enc.context)
                    .await
                    .map_err(crypto::key_error)?;
                let meta =
                    crypto::new_envelope(&enc.provider, &data_key, enc.context.clone(), true);
                let meta_headers = meta.to_headers().map_err(crypto::meta_error)?;
                ctx.create = Some(CreatePlan {
                    meta_headers,
                    key_id: meta.key_id.clone(),
                    token: UploadToken {
                        upload_id: String::new(),
                        provider: enc.provider.clone(),
                        key_id: meta.key_id,
                        wrapped_dek: meta.wrapped_dek,
                        salt: meta.salt,
                        commitment: meta.commitment,
                        checksum,
                    },
                });
            }
            Pending::Part(body, token, number) => {
                if token.provider != enc.provider {
                    return Err(S3Error::new(
                        S3ErrorCode::InvalidArgument,
                        "the upload was started under another key provider",
                    ));
                }
                let dek = provider
                    .decrypt_data_key(&token.key_id, &token.wrapped_dek, &enc.context)
                    .await
                    .map_err(crypto::key_error)?;
                let ctx_hash = sealgate_envelope::context_hash(
                    enc.context.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                );
                ObjectKey::derive_checked(
                    &dek,
                    &token.salt,
                    &ctx_hash,
                    &token.commitment,
                    Backend::default_backend(),
                )
                .map_err(|_| {
                    S3Error::new(
                        S3ErrorCode::InvalidArgument,
                        "the upload id's key does not match its commitment",
                    )
                })?;
                ctx.put = Some(
                    PutPlan::for_part(body, token.key_id.clone(), dek, ctx_hash, number)
                        .with_stored_checksum(self.stored_checksum()),
                );
            }
        }
        Ok(())
    }

    /// An encrypted Complete reads the backend's parts first: every page of
    /// ListParts (the upload id is the backend's; any instance can do this).
    async fn prepare_complete(&self, ctx: &mut Ctx) -> Result<(), S3Error> {
        let Some(complete) = &mut ctx.complete else {
            return Ok(());
        };
        let unavailable = |e: crate::upstream::UpstreamError| {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "listing parts failed");
            S3Error::new(
                S3ErrorCode::ServiceUnavailable,
                "the storage backend could not be reached; retry",
            )
        };
        // ListParts names the backend's upload id and nothing else the client sent.
        let object = ctx.upstream_path_and_query.split('?').next().unwrap_or("");
        let list = format!(
            "{object}?uploadId={}",
            uri::encode(&complete.token.upload_id)
        );
        let mut marker: Option<u32> = None;
        for _ in 0..MAX_LIST_PARTS_PAGES {
            let path = match marker {
                None => list.clone(),
                Some(m) => format!("{list}&part-number-marker={m}"),
            };
            let (resp, body) = self
                .upstream
                .get(&ctx.upstream_host, &path, None, MAX_LIST_PARTS_BODY)
                .await
                .map_err(unavailable)?;
            match resp.status.as_u16() {
                200 => {}
                404 => {
                    return Err(S3Error::new(
                        S3ErrorCode::NoSuchUpload,
                        "the specified multipart upload does not exist",
                    ))
                }
                status => {
                    tracing::warn!(request_id = %ctx.request_id, status, "the backend refused ListParts");
                    return Err(S3Error::new(
                        S3ErrorCode::ServiceUnavailable,
                        "the storage backend did not list the upload's parts; retry",
                    ));
                }
            }
            let page = mpu::parse_list_parts(&body)?;
            complete.stored.extend(page.parts);
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => {
                    complete.stored.sort_by_key(|p| p.number);
                    complete.stored.dedup_by_key(|p| p.number);
                    complete.upstream_len = mpu::upstream_len(&complete.stored);
                    return Ok(());
                }
            }
        }
        Err(S3Error::new(
            S3ErrorCode::InternalError,
            "the backend's part list did not end",
        ))
    }

    /// For ranged reads: looks at the stored object first (envelope, size,
    /// first part header) so the upstream range fetches exactly the frames
    /// the client's range needs.
    async fn probe_read(&self, ctx: &mut Ctx) -> Result<(), S3Error> {
        let Some(read) = &ctx.read else { return Ok(()) };
        let Some(range) = read.range else {
            return Ok(());
        };
        let unavailable = |e: crate::upstream::UpstreamError| {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "probe failed");
            S3Error::new(
                S3ErrorCode::ServiceUnavailable,
                "the storage backend could not be reached; retry",
            )
        };
        let head_len = PART_HEADER_LEN - 1;
        let (resp, body) = self
            .upstream
            .probe(
                &ctx.upstream_host,
                &ctx.upstream_path_and_query,
                0,
                head_len,
            )
            .await
            .map_err(unavailable)?;
        let status = resp.status.as_u16();
        if status != 200 && status != 206 {
            return Ok(()); // the real request reports the error (404, 403, ...)
        }
        let meta = self.read_meta(&resp, &ctx.request_id)?;
        let (_, stored_total) = crypto::stored_extent(&resp).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InternalError,
                "the backend sent no object size",
            )
        })?;
        let (target, upstream_range) = match meta {
            None => (ReadTarget::Plain, None),
            Some(meta) if !meta.multipart => {
                let total = plaintext_len(stored_total).ok_or_else(|| self.integrity("length"))?;
                let span = range.resolve(total).ok_or_else(crypto::invalid_range)?;
                let plan = sealgate_envelope::plan_range(span.0, span.1, total);
                (
                    ReadTarget::Single { meta, total, span },
                    Some((plan.cipher_start, plan.cipher_end)),
                )
            }
            Some(meta) => {
                let first = PartHeader::decode(&body).ok_or_else(|| self.integrity("part"))?;
                let layout = Layout::new(first.size, stored_total)
                    .ok_or_else(|| self.integrity("length"))?;
                let span = range
                    .resolve(layout.plaintext_total())
                    .ok_or_else(crypto::invalid_range)?;
                let (part, _) = layout.locate(span.0);
                let header = if part == 0 {
                    first
                } else {
                    let at = layout.part_start(part);
                    let (r, b) = self
                        .upstream
                        .probe(
                            &ctx.upstream_host,
                            &ctx.upstream_path_and_query,
                            at,
                            at + head_len,
                        )
                        .await
                        .map_err(unavailable)?;
                    let same = self
                        .read_meta(&r, &ctx.request_id)?
                        .is_some_and(|m| crypto::same_object(&m, &meta));
                    if !same {
                        return Err(changed());
                    }
                    PartHeader::decode(&b).ok_or_else(|| self.integrity("part"))?
                };
                let fetch = layout.fetch_range(span.0, span.1);
                (
                    ReadTarget::Multipart {
                        meta,
                        layout,
                        span,
                        header,
                    },
                    Some(fetch),
                )
            }
        };
        let read = ctx.read.as_mut().expect("checked above");
        read.target = Some(target);
        read.upstream_range = upstream_range;
        Ok(())
    }

    /// A server-side copy into a mandatory bucket keeps the stored bytes as
    /// they are, so the source must already be encrypted.
    async fn check_copy_source(&self, ctx: &mut Ctx) -> Result<(), S3Error> {
        if !ctx.copy_needs_envelope {
            return Ok(());
        }
        let source = ctx.copy_source.as_deref().unwrap_or("");
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

    fn integrity(&self, reason: &str) -> S3Error {
        self.metrics
            .decrypt_failures_total
            .with_label_values(&[reason])
            .inc();
        integrity_error()
    }

    fn read_meta(
        &self,
        resp: &ResponseHeader,
        request_id: &str,
    ) -> Result<Option<EnvelopeMeta>, S3Error> {
        EnvelopeMeta::from_headers(|n| resp.headers.get(n).and_then(|v| v.to_str().ok())).map_err(|e| {
            tracing::warn!(request_id = %request_id, error = %e, "unreadable envelope metadata");
            self.integrity("metadata")
        })
    }

    /// Sets up decryption of an object's response, or refuses.
    async fn prepare_read(&self, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<(), S3Error> {
        let Some(read) = &ctx.read else { return Ok(()) };
        let status = resp.status.as_u16();
        if status != 200 && status != 206 {
            return Ok(());
        }
        let (head, mandatory, range) = (read.head, read.mandatory, read.range);
        let (part_number, planned) = (read.part_number, read.upstream_range);
        let meta = self.read_meta(resp, &ctx.request_id)?;
        if meta.is_some() && part_number {
            return Err(S3Error::new(
                S3ErrorCode::NotImplemented,
                "reading one part (partNumber) of an encrypted object is not supported; read ranges instead",
            ));
        }
        let (upstream_start, stored_total) = crypto::stored_extent(resp).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InternalError,
                "the backend sent no object size",
            )
        })?;
        let target = match (read.target.clone(), meta) {
            (Some(ReadTarget::Plain), None) | (None, None) => {
                if mandatory {
                    return Err(S3Error::new(
                        S3ErrorCode::AccessDenied,
                        "this object was not written through the encryption gateway and the bucket's policy requires encryption",
                    ));
                }
                return Ok(()); // plaintext: served as stored
            }
            (Some(t @ ReadTarget::Single { .. }), Some(m))
            | (Some(t @ ReadTarget::Multipart { .. }), Some(m)) => {
                let probed = match &t {
                    ReadTarget::Single { meta, .. } | ReadTarget::Multipart { meta, .. } => meta,
                    ReadTarget::Plain => unreachable!("matched above"),
                };
                if !crypto::same_object(probed, &m) {
                    return Err(changed());
                }
                t
            }
            (None, Some(m)) if range.is_none() && !m.multipart => {
                let total = plaintext_len(stored_total).ok_or_else(|| self.integrity("length"))?;
                ReadTarget::Single {
                    meta: m,
                    total,
                    span: (0, total.saturating_sub(1)),
                }
            }
            (None, Some(m)) if range.is_none() => {
                let (_, body) = self
                    .upstream
                    .probe(
                        &ctx.upstream_host,
                        &ctx.upstream_path_and_query,
                        0,
                        PART_HEADER_LEN - 1,
                    )
                    .await
                    .map_err(|_| {
                        S3Error::new(
                            S3ErrorCode::ServiceUnavailable,
                            "the storage backend could not be reached; retry",
                        )
                    })?;
                let first = PartHeader::decode(&body).ok_or_else(|| self.integrity("part"))?;
                let layout = Layout::new(first.size, stored_total)
                    .ok_or_else(|| self.integrity("length"))?;
                let total = layout.plaintext_total();
                ReadTarget::Multipart {
                    meta: m,
                    layout,
                    span: (0, total.saturating_sub(1)),
                    header: first,
                }
            }
            // The object changed between the probe and the read.
            _ => return Err(changed()),
        };
        // The body must be exactly what was planned: the whole object, or
        // the planned stored range.
        let as_planned = head
            || match planned {
                Some((start, _)) => status == 206 && upstream_start == start,
                None => status == 200,
            };
        if !as_planned {
            return Err(changed());
        }
        let (meta, total) = match &target {
            ReadTarget::Single { meta, total, .. } => (meta.clone(), *total),
            ReadTarget::Multipart { meta, layout, .. } => (meta.clone(), layout.plaintext_total()),
            ReadTarget::Plain => unreachable!("returned above"),
        };
        crypto::strip_response(resp);
        crypto::set_sse_headers(resp, &meta.key_id).map_err(internal)?;
        let span = match &target {
            ReadTarget::Single { span, .. } | ReadTarget::Multipart { span, .. } => *span,
            ReadTarget::Plain => unreachable!("returned above"),
        };
        if range.is_some() {
            set_range_headers(resp, span.0, span.1, total)?;
        } else {
            resp.insert_header(http::header::CONTENT_LENGTH, total.to_string())
                .map_err(internal)?;
        }
        if head {
            return Ok(()); // sizes and SSE headers only: no key provider call for HEAD
        }
        let provider = self.providers.get(&meta.provider).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InternalError,
                format!(
                    "the object's key provider `{}` is not configured",
                    meta.provider
                ),
            )
        })?;
        let dek = provider
            .decrypt_data_key(&meta.key_id, &meta.wrapped_dek, &meta.context)
            .await
            .map_err(|e| {
                self.metrics
                    .decrypt_failures_total
                    .with_label_values(&["key"])
                    .inc();
                crypto::key_error(e)
            })?;
        let ctx_hash = meta.context_hash();
        let key = ObjectKey::derive_checked(
            &dek,
            &meta.salt,
            &ctx_hash,
            &meta.commitment,
            Backend::default_backend(),
        )
        .map_err(|_| self.integrity("commitment"))?;
        ctx.read_body = Some(match target {
            ReadTarget::Single { span, total, .. } => {
                let dec = if range.is_some() {
                    Decryptor::for_plan(
                        key.cipher,
                        0,
                        total,
                        sealgate_envelope::plan_range(span.0, span.1, total),
                    )
                } else {
                    Decryptor::new(key.cipher, 0, total)
                };
                ReadBody::Decrypt(dec)
            }
            ReadTarget::Multipart {
                layout,
                span,
                header,
                ..
            } => {
                let dec = if total == 0 {
                    // An empty multipart object: one empty part, nothing to release.
                    ctx.read_body = Some(ReadBody::Replace(None));
                    return Ok(());
                } else if range.is_some() {
                    PartsDecryptor::from_frame(&dek, ctx_hash, layout, span.0, span.1, &header)
                        .map_err(|_| self.integrity("part"))?
                } else {
                    PartsDecryptor::from_part_start(&dek, ctx_hash, layout, span.0, span.1)
                };
                ReadBody::Parts(Box::new(dec))
            }
            ReadTarget::Plain => unreachable!("returned above"),
        });
        Ok(())
    }

    /// Authenticates, authorises and plans the upstream request.
    fn plan(&self, req: &RequestHeader, ctx: &mut Ctx) -> Result<(), S3Error> {
        let raw_path = req.uri.path();
        let raw_query = req.uri.query().unwrap_or("");
        let query = uri::parse_query(raw_query).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidURI,
                "the query string is not valid UTF-8",
            )
        })?;
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let s3 = classify(
            &req.method,
            host,
            raw_path,
            &query,
            &req.headers,
            &self.config.server.domains,
        )?;
        ctx.operation = s3.operation;
        ctx.bucket = s3.bucket.clone();

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let identity = self.clients.authenticate(
            &RequestParts {
                method: req.method.as_str(),
                raw_path,
                query: &query,
                headers: &req.headers,
            },
            now,
        )?;
        ctx.access_key_id = Some(identity.access_key_id.clone());
        if let Some(bucket) = &s3.bucket {
            identity.authorize(bucket)?;
        }
        ctx.upload_token = query
            .iter()
            .find(|(k, _)| k == "uploadId")
            .and_then(|(_, v)| UploadToken::decode(v));
        self.plan_encryption(req, &query, s3.operation, &identity, ctx)?;

        // Copy sources name a bucket too: authorise and map it.
        if let Some(src) = req.headers.get("x-amz-copy-source") {
            let src = src.to_str().map_err(|_| {
                S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "x-amz-copy-source is not ASCII",
                )
            })?;
            let (src_bucket, rest) = split_copy_source(src).ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "x-amz-copy-source must be /bucket/key",
                )
            })?;
            let src_bucket = uri::decode(src_bucket).ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "x-amz-copy-source is badly encoded",
                )
            })?;
            sealgate_config::check_bucket_name(&src_bucket).map_err(|e| {
                S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    format!("x-amz-copy-source: {e}"),
                )
            })?;
            identity.authorize(&src_bucket)?;
            ctx.copy_source = Some(format!("/{}/{rest}", self.config.real_bucket(&src_bucket)));
        }

        let real_bucket = s3.bucket.as_deref().map(|b| self.config.real_bucket(b));
        let key = s3.key.as_deref().map(encode_key);
        let (host, path) = self.upstream.address(real_bucket, key.as_deref());
        let forwarded_query: Vec<String> = query
            .iter()
            .filter(|(k, _)| !PRESIGN_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| match (k.as_str(), &ctx.upload_token) {
                // The backend knows its own upload id, not the gateway's token.
                ("uploadId", Some(t)) => format!("uploadId={}", uri::encode(&t.upload_id)),
                _ => format!("{}={}", uri::encode(k), uri::encode(v)),
            })
            .collect();
        ctx.upstream_host = host;
        ctx.upstream_path_and_query = if forwarded_query.is_empty() {
            path
        } else {
            format!("{path}?{}", forwarded_query.join("&"))
        };
        let encrypts = matches!(ctx.pending, Some(Pending::Put(..) | Pending::Part(..)));
        ctx.payload_hash = if encrypts && self.stored_checksum().is_some() {
            // Ciphertext streamed as it is made, its checksum trailing.
            UNSIGNED_TRAILER.to_string()
        } else if encrypts || ctx.put.is_some() || ctx.complete.is_some() {
            // Ciphertext with a plain length, decoded plaintext, or a part
            // list the gateway rewrites.
            UNSIGNED_PAYLOAD.to_string()
        } else {
            req.headers
                .get("x-amz-content-sha256")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(UNSIGNED_PAYLOAD)
                .to_string()
        };
        Ok(())
    }

    /// Answers an S3 XML error and records it.
    async fn reject(&self, session: &mut Session, ctx: &mut Ctx, err: &S3Error) -> Result<()> {
        ctx.rejected = Some(err.code);
        self.metrics
            .rejected_total
            .with_label_values(&[err.code.as_str()])
            .inc();
        let resource = session.req_header().uri.path().to_string();
        let is_head = session.req_header().method == http::Method::HEAD;
        let body = err.to_xml(&resource, &ctx.request_id);
        let mut resp = ResponseHeader::build(err.status(), Some(4))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/xml")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        resp.insert_header("x-amz-request-id", ctx.request_id.as_str())?;
        // The request body (if any) was not read: the connection cannot be reused.
        session.set_keepalive(None);
        session
            .write_response_header(Box::new(resp), is_head)
            .await?;
        if !is_head {
            session
                .write_response_body(Some(Bytes::from(body)), true)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        self.metrics.in_flight_requests.inc();
        Ctx {
            request_id: self.request_ids.next(),
            started: Instant::now(),
            operation: Operation::Unknown,
            bucket: None,
            access_key_id: None,
            upstream_host: String::new(),
            upstream_path_and_query: String::new(),
            payload_hash: String::new(),
            copy_source: None,
            rejected: None,
            encryption: None,
            pending: None,
            upload_token: None,
            create: None,
            put: None,
            put_body: None,
            body_error: None,
            read: None,
            read_body: None,
            list_rewrite: None,
            copy_needs_envelope: false,
            complete: None,
            client_checksum: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let planned = match self.plan(session.req_header(), ctx) {
            Ok(()) => match self.prepare_upload(ctx).await {
                Ok(()) => match async {
                    self.prepare_complete(ctx).await?;
                    self.probe_read(ctx).await
                }
                .await
                {
                    Ok(()) => self.check_copy_source(ctx).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match planned {
            Ok(()) => Ok(false),
            Err(err) => {
                self.reject(session, ctx, &err).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Ok(self.upstream.peer())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let uri: http::Uri = ctx.upstream_path_and_query.parse().map_err(|e| {
            Error::because(ErrorType::InternalError, "building the upstream URI", e)
        })?;
        upstream_request.set_uri(uri);
        upstream_request.insert_header(http::header::HOST, ctx.upstream_host.as_str())?;
        if let Some(src) = &ctx.copy_source {
            upstream_request.insert_header("x-amz-copy-source", src.as_str())?;
        }
        // Hop-by-hop and client-identity headers are not the upstream's business.
        upstream_request.remove_header("proxy-authorization");
        crypto::strip_envelope_headers(upstream_request);
        if let Some(put) = &ctx.put {
            put.apply(upstream_request)?;
            // A fresh body state per attempt: Pingora replays the body on retry.
            match put.body(&session.req_header().headers) {
                Ok(b) => ctx.put_body = Some(b),
                Err(e) => {
                    ctx.body_error = Some(e);
                    return Err(Error::new(ErrorType::InvalidHTTPHeader));
                }
            }
        }
        if let Some(read) = &ctx.read {
            read.apply(upstream_request)?;
        }
        if let Some(create) = &ctx.create {
            crypto::strip_plaintext_body_headers(upstream_request);
            // The backend checksums what it stores: the gateway's ciphertext.
            upstream_request.remove_header("x-amz-checksum-type");
            upstream_request.remove_header("x-amz-checksum-algorithm");
            if let Some(alg) = self.stored_checksum() {
                upstream_request.insert_header("x-amz-checksum-algorithm", alg.name())?;
            }
            for (name, value) in &create.meta_headers {
                upstream_request.insert_header(name.clone(), value.as_str())?;
            }
        }
        if let Some(complete) = &mut ctx.complete {
            // A fresh list per attempt: Pingora replays the body on retry.
            complete.body.clear();
            complete.answer = None;
            // The body becomes the gateway's part list: nothing that
            // describes the client's list or its plaintext goes along.
            crypto::strip_plaintext_body_headers(upstream_request);
            for h in ["x-amz-checksum-type", "x-amz-mp-object-size"] {
                upstream_request.remove_header(h);
            }
            upstream_request.insert_header(
                http::header::CONTENT_LENGTH,
                complete.upstream_len.to_string(),
            )?;
        }
        self.upstream
            .sign(upstream_request, &ctx.payload_hash)
            .await
            .map_err(|e| {
                Error::because(ErrorType::InternalError, "signing the upstream request", e)
            })?;
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(complete) = &mut ctx.complete {
            // Hold the part list until it is whole and checked.
            let input = body.take().unwrap_or_default();
            let buf = &mut complete.body;
            if buf.len() + input.len() > MAX_COMPLETE_BODY {
                ctx.body_error = Some(S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    format!("the part list exceeds {MAX_COMPLETE_BODY} bytes"),
                ));
                return Err(Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "part list too large",
                ));
            }
            buf.extend_from_slice(&input);
            if !end_of_stream {
                *body = Some(Bytes::new());
                return Ok(());
            }
            match complete_body(complete) {
                Ok(upstream) => *body = Some(Bytes::from(upstream)),
                Err(e) => {
                    ctx.body_error = Some(e);
                    return Err(Error::explain(
                        ErrorType::InvalidHTTPHeader,
                        "part list refused",
                    ));
                }
            }
            return Ok(());
        }
        let Some(put) = &mut ctx.put_body else {
            return Ok(());
        };
        let input = body.take().unwrap_or_default();
        match put.push(&input, end_of_stream) {
            // Some(empty) while holding bytes back: None would end the upstream body.
            Ok(out) => {
                *body = Some(out);
                Ok(())
            }
            Err(e) => {
                ctx.body_error = Some(e);
                Err(Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "request body check failed",
                ))
            }
        }
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(put) = ctx.put.as_ref().filter(|p| p.encrypts()) {
            crypto::strip_response(upstream_response);
            if upstream_response.status.is_success() {
                crypto::set_sse_headers(upstream_response, &put.key_id)?;
                let echo = ctx
                    .put_body
                    .as_ref()
                    .and_then(|b| b.echo_checksum.clone())
                    .or_else(|| ctx.client_checksum.clone());
                if let Some((name, value)) = echo {
                    upstream_response.insert_header(name, value)?;
                }
            }
        }
        if ctx.read.is_some() {
            if let Err(err) = self.prepare_read(upstream_response, ctx).await {
                self.replace_response(upstream_response, ctx, &err)?;
            } else {
                crypto::strip_response(upstream_response);
            }
        }
        if let Some(rewrite) = ctx.list_rewrite {
            if upstream_response.status.as_u16() == 200 {
                // The rewritten body's length differs: stream it chunked.
                upstream_response.remove_header(http::header::CONTENT_LENGTH.as_str());
                ctx.read_body = Some(rewrite());
            }
        }
        if let Some(complete) = &ctx.complete {
            crypto::strip_response(upstream_response);
            if upstream_response.status.is_success() {
                crypto::set_sse_headers(upstream_response, &complete.token.key_id)?;
                upstream_response.remove_header(http::header::CONTENT_LENGTH.as_str());
                let answer = complete.answer.clone();
                ctx.read_body = Some(ReadBody::Whole(crypto::WholeRewrite::new(move |text| {
                    mpu::complete_result(text, answer.as_ref().map(|(r, v)| (*r, v.as_str())))
                })));
            }
        }
        if let Some(create) = &ctx.create {
            // S3 answers with the checksum the client asked for, not the gateway's.
            upstream_response.remove_header("x-amz-checksum-algorithm");
            upstream_response.remove_header("x-amz-checksum-type");
            if let Some(c) = create.token.checksum {
                upstream_response.insert_header("x-amz-checksum-algorithm", c.algorithm.name())?;
                upstream_response.insert_header("x-amz-checksum-type", c.type_name())?;
            }
            if upstream_response.status.is_success() {
                crypto::set_sse_headers(upstream_response, &create.key_id)?;
                upstream_response.remove_header(http::header::CONTENT_LENGTH.as_str());
                ctx.read_body = Some(ReadBody::UploadId(UploadIdRewrite::new(
                    create.token.clone(),
                )));
            }
        }
        if upstream_response.headers.get("x-amz-request-id").is_none() {
            if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
                upstream_response.insert_header("x-amz-request-id", v)?;
            }
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        let Some(read) = &mut ctx.read_body else {
            return Ok(None);
        };
        match read.push(body.take(), end_of_stream) {
            Ok(out) => {
                *body = out;
                Ok(None)
            }
            Err(e) => {
                // Never release unauthenticated plaintext: abort the response.
                self.metrics
                    .decrypt_failures_total
                    .with_label_values(&["frame"])
                    .inc();
                tracing::warn!(request_id = %ctx.request_id, error = %e, "stored object failed authentication");
                Err(Error::explain(
                    ErrorType::InternalError,
                    "stored object failed authentication",
                ))
            }
        }
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        if let Some(err) = ctx.body_error.take() {
            if final_response_pending(session) {
                let _ = self.reject(session, ctx, &err).await;
            }
            return FailToProxy {
                error_code: err.status().as_u16(),
                can_reuse_downstream: false,
            };
        }
        let (code, s3) = match e.esource() {
            ErrorSource::Upstream => {
                self.metrics
                    .upstream_errors_total
                    .with_label_values(&[upstream_error_kind(e)])
                    .inc();
                (
                    503,
                    Some(S3Error::new(
                        S3ErrorCode::ServiceUnavailable,
                        "the storage backend could not be reached; retry",
                    )),
                )
            }
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    (0, None)
                }
                _ => (
                    400,
                    Some(S3Error::new(
                        S3ErrorCode::IncompleteBody,
                        "the request body could not be read",
                    )),
                ),
            },
            _ => (
                500,
                Some(S3Error::new(
                    S3ErrorCode::InternalError,
                    "the gateway failed; retry",
                )),
            ),
        };
        if let Some(err) = s3 {
            if final_response_pending(session) {
                let _ = self.reject(session, ctx, &err).await;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        self.metrics.in_flight_requests.dec();
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let op = ctx.operation.as_str();
        self.metrics
            .requests_total
            .with_label_values(&[op, status_class(status)])
            .inc();
        self.metrics
            .request_duration_seconds
            .with_label_values(&[op])
            .observe(ctx.started.elapsed().as_secs_f64());
        tracing::info!(
            target: "sealgate::access",
            request_id = %ctx.request_id,
            operation = op,
            bucket = ctx.bucket.as_deref().unwrap_or("-"),
            access_key_id = ctx.access_key_id.as_deref().unwrap_or("-"),
            status,
            rejected = ctx.rejected.map(|c| c.as_str()).unwrap_or("-"),
            error = e.map(|e| e.etype().as_str()).unwrap_or("-"),
            duration_ms = ctx.started.elapsed().as_millis() as u64,
            "request"
        );
    }
}

fn upstream_error_kind(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectTimedout => "connect_timeout",
        ErrorType::ConnectRefused => "connect_refused",
        ErrorType::ConnectError | ErrorType::ConnectNoRoute => "connect_error",
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert => "tls",
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
        _ => "other",
    }
}

/// Request ids: unique per process start, cheap, sortable in logs.
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        Self {
            prefix: nanos ^ std::process::id().rotate_left(16),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{:08X}{:012X}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

fn internal(e: impl std::fmt::Display) -> S3Error {
    S3Error::new(
        S3ErrorCode::InternalError,
        format!("building the response failed: {e}"),
    )
}

/// A stored object that fails its integrity checks: never any plaintext.
fn integrity_error() -> S3Error {
    S3Error::new(
        S3ErrorCode::InternalError,
        "the stored object failed its integrity checks and cannot be decrypted",
    )
}

/// 206 headers for plaintext bytes `first..=last` of `total`.
fn set_range_headers(
    resp: &mut ResponseHeader,
    first: u64,
    last: u64,
    total: u64,
) -> std::result::Result<(), S3Error> {
    resp.set_status(206).map_err(internal)?;
    resp.insert_header(
        http::header::CONTENT_RANGE,
        format!("bytes {first}-{last}/{total}"),
    )
    .map_err(internal)?;
    resp.insert_header(http::header::CONTENT_LENGTH, (last - first + 1).to_string())
        .map_err(internal)?;
    Ok(())
}

impl Gateway {
    /// Replaces an upstream response with the gateway's error document.
    fn replace_response(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
        err: &S3Error,
    ) -> Result<()> {
        ctx.rejected = Some(err.code);
        self.metrics
            .rejected_total
            .with_label_values(&[err.code.as_str()])
            .inc();
        let head = ctx.read.as_ref().is_some_and(|r| r.head);
        let body = err.to_xml("", &ctx.request_id);
        *resp = crypto::error_response(err.status(), body.len(), &ctx.request_id)?;
        ctx.read_body = Some(ReadBody::Replace((!head).then(|| Bytes::from(body))));
        Ok(())
    }
}

/// True while no final (non-1xx) response has gone to the client: after
/// `100 Continue` the gateway can still answer with an error.
fn final_response_pending(session: &Session) -> bool {
    session
        .response_written()
        .is_none_or(|r| r.status.is_informational())
}

/// The stored object changed between the gateway's probe and its read.
fn changed() -> S3Error {
    S3Error::new(
        S3ErrorCode::ServiceUnavailable,
        "the object changed while it was being read; retry",
    )
}

fn list_parts_body() -> ReadBody {
    ReadBody::Whole(crypto::list_parts_rewrite())
}

/// The synchronous part of an encrypted Complete's plan: what the client
/// sent besides its part list.
fn complete_plan(
    req: &RequestHeader,
    identity: &Identity,
    token: UploadToken,
) -> Result<CompletePlan, S3Error> {
    let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    let given = token
        .checksum
        .filter(|c| c.full_object)
        .and_then(|c| header(c.algorithm.header()))
        .map(str::to_string);
    let object_size = match header("x-amz-mp-object-size") {
        None => None,
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            S3Error::new(
                S3ErrorCode::InvalidArgument,
                "x-amz-mp-object-size must be a number",
            )
        })?),
    };
    Ok(CompletePlan {
        token,
        stored: Vec::new(),
        upstream_len: 0,
        body: bytes::BytesMut::new(),
        payload_sha256: match &identity.verified.payload {
            PayloadHash::Sha256(h) => Some(*h),
            _ => None,
        },
        given,
        object_size,
        answer: None,
    })
}

/// Checks the client's whole part list and makes the backend's.
fn complete_body(complete: &mut CompletePlan) -> Result<Vec<u8>, S3Error> {
    use sha2::Digest;
    if let Some(expected) = complete.payload_sha256 {
        let got: [u8; 32] = sha2::Sha256::digest(&complete.body).into();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&got[..], &expected[..])) {
            return Err(S3Error::new(
                S3ErrorCode::XAmzContentSHA256Mismatch,
                "the provided x-amz-content-sha256 header does not match what was computed",
            ));
        }
    }
    let client = mpu::parse_complete(&complete.body)?;
    let upstream = mpu::upstream_body(&client, &complete.stored, complete.upstream_len)?;
    if let Some(expected) = complete.object_size {
        let total: u64 = client
            .iter()
            .filter_map(|p| {
                let i = complete
                    .stored
                    .binary_search_by_key(&p.number, |s| s.number)
                    .ok()?;
                sealgate_envelope::multipart::part_plaintext_len(complete.stored[i].size)
            })
            .sum();
        if total != expected {
            return Err(S3Error::new(
                S3ErrorCode::InvalidRequest,
                format!("x-amz-mp-object-size is {expected} but the parts hold {total} bytes"),
            ));
        }
    }
    if let Some(request) = complete.token.checksum {
        let value = mpu::client_checksum(
            request,
            &client,
            &complete.stored,
            complete.given.as_deref(),
        )?;
        complete.answer = Some((request, value));
    }
    Ok(upstream)
}
