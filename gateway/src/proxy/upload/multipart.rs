//! Multipart stage for encrypting buckets: CreateMultipartUpload stores
//! the envelope and hands out an upload-id token (so any instance can
//! encrypt any part); CompleteMultipartUpload reads the backend's parts,
//! checks the client's list against them and sends the backend its own
//! part checksums (the pure logic is `sealgate_filters::s3::multipart`).

use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use sealgate_filters::auth::Identity;
use sealgate_filters::policy::BucketEncryption;
use sealgate_filters::s3::auth::sigv4::PayloadHash;
use sealgate_filters::s3::multipart::upload_id::{
    StoredMark, TokenKey, UploadIdRewrite, UploadToken,
};
use sealgate_filters::s3::multipart::{self as mpu, ChecksumRequest, StoredPart};
use sealgate_filters::s3::{uri, S3Error, S3ErrorCode};

use crate::proxy::headers::strip_plaintext_body_headers;
use crate::proxy::response::{set_sse_headers, strip_response, ResponseBody, WholeRewrite};
use crate::proxy::upload::{meta_error, new_envelope};

use super::completed::Completed;
use crate::keys::key_error;
use crate::proxy::{Ctx, Gateway, Op};

/// Largest CompleteMultipartUpload body held for checking (10,000 parts
/// with checksums fit easily).
const MAX_COMPLETE_BODY: usize = 4 * 1024 * 1024;

/// Largest ListParts page read from the backend (1,000 parts).
const MAX_LIST_PARTS_BODY: usize = 4 * 1024 * 1024;

/// ListParts pages read at most for one Complete (10,000 parts at S3's
/// 1,000 a page, with room for backends that page smaller).
const MAX_LIST_PARTS_PAGES: usize = 100;

/// An encrypted CreateMultipartUpload: waiting for its data key, then
/// ready with the metadata to store and the token to hand out.
pub enum Create {
    Pending {
        key_id: Option<String>,
        checksum: Option<ChecksumRequest>,
        enc: BucketEncryption,
    },
    Ready(CreatePlan),
}

/// An encrypted CreateMultipartUpload: metadata to store, token to hand out.
pub struct CreatePlan {
    meta_headers: Vec<(String, String)>,
    key_id: String,
    token: UploadToken,
    /// Seals the token once the backend's upload id is known.
    token_key: TokenKey,
    /// Where the upload belongs: the upstream bucket and the object key.
    bucket: String,
    object: String,
}

/// An encrypted CompleteMultipartUpload: the backend's parts are read
/// first (their count fixes the upstream body's length), then the client's
/// list is checked against them and rewritten (see `filters::s3::multipart`).
pub struct CompletePlan {
    pub(in crate::proxy) token: UploadToken,
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
    /// The object this upload already made: a retried Complete (its first
    /// answer lost), answered by the gateway.
    pub(in crate::proxy) completed: Option<Completed>,
}

impl Gateway {
    /// The async half of an encrypted Create: a data key for the upload.
    pub(in crate::proxy) async fn prepare_create(&self, ctx: &mut Ctx) -> Result<(), S3Error> {
        let Op::Create(Create::Pending {
            key_id,
            checksum,
            enc,
        }) = &ctx.op
        else {
            return Ok(());
        };
        let provider = ctx.live.provider(&enc.provider)?;
        let key_id = key_id
            .clone()
            .unwrap_or_else(|| provider.default_key_id().to_string());
        let data_key = provider
            .generate_data_key(&key_id, &enc.write_context)
            .await
            .map_err(key_error)?;
        let meta = new_envelope(&enc.provider, &data_key, enc.write_context.clone(), true);
        let token_key = TokenKey::derive(data_key.plaintext.as_ref(), &meta.salt);
        let (Some(bucket), Some(object)) = (ctx.route.bucket.clone(), ctx.audit.key.clone()) else {
            return Err(S3Error::new(
                S3ErrorCode::InvalidRequest,
                "a multipart upload names a bucket and a key",
            ));
        };
        let meta_headers = meta.to_headers().map_err(meta_error)?;
        ctx.audit.key_id = Some(meta.key_id.clone());
        ctx.audit.provider = Some(enc.provider.clone());
        let plan = CreatePlan {
            meta_headers,
            key_id: meta.key_id.clone(),
            token: UploadToken {
                upload_id: String::new(),
                provider: enc.provider.clone(),
                key_id: meta.key_id,
                wrapped_dek: meta.wrapped_dek,
                salt: meta.salt,
                commitment: meta.commitment,
                checksum: *checksum,
                stored: StoredMark::of(ctx.stored_checksum),
                mac: [0; 32],
            },
            token_key,
            bucket,
            object,
        };
        ctx.op = Op::Create(Create::Ready(plan));
        Ok(())
    }

    /// An encrypted Complete reads the backend's parts first: every page of
    /// ListParts (the upload id is the backend's; any instance can do this).
    pub(in crate::proxy) async fn prepare_complete(&self, ctx: &mut Ctx) -> Result<(), S3Error> {
        let Op::Complete(complete) = &mut ctx.op else {
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
        let object = ctx
            .route
            .upstream_path_and_query
            .split('?')
            .next()
            .unwrap_or("");
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
                .backend(ctx.route.bucket.as_deref())
                .get(&ctx.route.upstream_host, &path, None, MAX_LIST_PARTS_BODY)
                .await
                .map_err(unavailable)?;
            match resp.status.as_u16() {
                200 => {}
                404 => {
                    // Gone: completed already (a retry whose first answer
                    // was lost) if the object at the key is this upload's.
                    let etag = self
                        .made_by(
                            ctx.route.bucket.as_deref(),
                            &ctx.route.upstream_host,
                            object,
                            &complete.token,
                        )
                        .await?;
                    return match etag {
                        Some(made) => {
                            complete.completed = Some(made);
                            Ok(())
                        }
                        None => Err(S3Error::new(
                            S3ErrorCode::NoSuchUpload,
                            "the specified multipart upload does not exist",
                        )),
                    };
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
                // No part at all: an upload no Complete can finish, or one
                // already completed on a backend that still lists it
                // (s3s-fs answers an empty list where S3 answers 404).
                None if complete.stored.is_empty() => {
                    let host = &ctx.route.upstream_host;
                    let bucket = ctx.route.bucket.as_deref();
                    return match self.made_by(bucket, host, object, &complete.token).await? {
                        Some(made) => {
                            complete.completed = Some(made);
                            Ok(())
                        }
                        // Nothing a Complete could finish: refused here,
                        // before the backend is asked anything.
                        None => Err(S3Error::new(
                            S3ErrorCode::InvalidPart,
                            "the upload has no parts",
                        )),
                    };
                }
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
}

impl CreatePlan {
    /// The upstream Create: the envelope stored as metadata, the backend
    /// asked for the gateway's checksum of stored bytes (not the client's).
    pub fn apply(
        &self,
        req: &mut RequestHeader,
        stored_checksum: Option<sealgate_filters::s3::body::checksum::ChecksumAlgorithm>,
    ) -> pingora::Result<()> {
        strip_plaintext_body_headers(req);
        req.remove_header("x-amz-checksum-type");
        req.remove_header("x-amz-checksum-algorithm");
        if let Some(alg) = stored_checksum {
            req.insert_header("x-amz-checksum-algorithm", alg.name())?;
        }
        for (name, value) in &self.meta_headers {
            req.insert_header(name.clone(), value.as_str())?;
        }
        Ok(())
    }

    /// The client's answer: its own checksum choice, SSE headers, and the
    /// backend's upload id replaced by the gateway's token.
    pub fn respond(&self, resp: &mut ResponseHeader) -> pingora::Result<Option<ResponseBody>> {
        // S3 answers with the checksum the client asked for, not the gateway's.
        resp.remove_header("x-amz-checksum-algorithm");
        resp.remove_header("x-amz-checksum-type");
        if let Some(c) = self.token.checksum {
            resp.insert_header("x-amz-checksum-algorithm", c.algorithm.name())?;
            resp.insert_header("x-amz-checksum-type", c.type_name())?;
        }
        if !resp.status.is_success() {
            return Ok(None);
        }
        set_sse_headers(resp, &self.key_id)?;
        resp.remove_header(http::header::CONTENT_LENGTH.as_str());
        Ok(Some(ResponseBody::UploadId(UploadIdRewrite::new(
            self.token.clone(),
            self.token_key.clone(),
            self.bucket.clone(),
            self.object.clone(),
        ))))
    }
}

impl CompletePlan {
    /// A fresh list per attempt (Pingora replays the body on retry); the
    /// body becomes the gateway's part list, so nothing that describes the
    /// client's list or its plaintext goes along.
    pub fn apply(&mut self, req: &mut RequestHeader) -> pingora::Result<()> {
        self.body.clear();
        self.answer = None;
        strip_plaintext_body_headers(req);
        for h in ["x-amz-checksum-type", "x-amz-mp-object-size"] {
            req.remove_header(h);
        }
        req.insert_header(http::header::CONTENT_LENGTH, self.upstream_len.to_string())?;
        Ok(())
    }

    /// Holds the client's list until it is whole, then checks it and
    /// returns the backend's list.
    pub fn push(&mut self, input: Bytes, end: bool) -> Result<Bytes, S3Error> {
        if self.body.len() + input.len() > MAX_COMPLETE_BODY {
            return Err(S3Error::new(
                S3ErrorCode::MaxMessageLengthExceeded,
                format!("the part list exceeds {MAX_COMPLETE_BODY} bytes"),
            ));
        }
        self.body.extend_from_slice(&input);
        if !end {
            return Ok(Bytes::new());
        }
        complete_body(self).map(Bytes::from)
    }

    /// The client's answer: SSE headers, and the backend's checksums of
    /// stored bytes replaced by the client's plaintext checksum.
    pub fn respond(&self, resp: &mut ResponseHeader) -> pingora::Result<Option<ResponseBody>> {
        strip_response(resp);
        if !resp.status.is_success() {
            return Ok(None);
        }
        set_sse_headers(resp, &self.token.key_id)?;
        resp.remove_header(http::header::CONTENT_LENGTH.as_str());
        let answer = self.answer.clone();
        Ok(Some(ResponseBody::Whole(WholeRewrite::new(move |text| {
            mpu::complete_result(text, answer.as_ref().map(|(r, v)| (*r, v.as_str())))
        }))))
    }
}

/// The synchronous part of an encrypted Complete's plan: what the client
/// sent besides its part list.
pub fn complete_plan(
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
        body: BytesMut::new(),
        payload_sha256: match &identity.verified.payload {
            PayloadHash::Sha256(h) => Some(*h),
            _ => None,
        },
        given,
        object_size,
        answer: None,
        completed: None,
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
