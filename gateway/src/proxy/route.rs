//! Route stage: where the request goes upstream. Aliases map to real
//! bucket names (also in `x-amz-copy-source`, whose bucket is authorised
//! like the request's own), the gateway's upload-id tokens become the
//! backend's ids, presigning parameters are consumed, and the upstream
//! payload hash is chosen for the body the gateway will send.

use pingora::http::RequestHeader;
use sealgate_config::Permission;
use sealgate_filters::auth::{split_copy_source, Identity};
use sealgate_filters::s3::auth::sigv2;
use sealgate_filters::s3::auth::sigv4::UNSIGNED_PAYLOAD;
use sealgate_filters::s3::body::checksum::ChecksumAlgorithm;
use sealgate_filters::s3::body::chunked::encode::UNSIGNED_TRAILER;
use sealgate_filters::s3::multipart::upload_id::UploadToken;
use sealgate_filters::s3::{uri, S3Error, S3ErrorCode};

use super::auth::Authenticated;
use super::{Ctx, Gateway};
use crate::upstream::encode_key;

/// Query parameters of a presigned URL: consumed by the gateway, never
/// forwarded (those of a V2 URL: `sigv2::is_presign_param`).
pub(super) const PRESIGN_PARAMS: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// The upstream side of a request, decided in `request_filter`.
#[derive(Default)]
pub struct Route {
    /// Upstream `Host`, path and query.
    pub upstream_host: String,
    pub upstream_path_and_query: String,
    /// The upstream `x-amz-content-sha256`.
    pub payload_hash: String,
    /// Rewritten `x-amz-copy-source` (alias mapped to the real bucket).
    pub copy_source: Option<String>,
    /// The copy source's bucket as clients name it (its policy applies).
    pub copy_source_bucket: Option<String>,
    /// The gateway's token from the request's `uploadId`, if it is one
    /// (its MAC is checked once its data key is unwrapped).
    pub upload_token: Option<UploadToken>,
    /// The upstream bucket (alias resolved), if the request names one.
    pub bucket: Option<String>,
}

/// The request's `uploadId` as a gateway token, if it is one. An id of the
/// gateway's form that does not decode (damaged, or an earlier version
/// without a MAC) is refused, never forwarded as the backend's own.
pub fn upload_token(query: &[(String, String)]) -> Result<Option<UploadToken>, S3Error> {
    let Some((_, id)) = query.iter().find(|(k, _)| k == "uploadId") else {
        return Ok(None);
    };
    match UploadToken::decode(id) {
        Some(t) => Ok(Some(t)),
        None if UploadToken::is_gateway_id(id) => Err(S3Error::new(
            S3ErrorCode::NoSuchUpload,
            "the specified upload does not exist",
        )),
        None => Ok(None),
    }
}

impl Gateway {
    /// Maps and authorises the copy source, and builds the upstream URI.
    pub(super) fn route(
        &self,
        req: &RequestHeader,
        auth: &Authenticated,
        ctx: &mut Ctx,
    ) -> Result<(), S3Error> {
        if let Some(src) = req.headers.get("x-amz-copy-source") {
            let (bucket, source) = self.copy_source(&ctx.live, src, &auth.identity)?;
            ctx.route.copy_source_bucket = Some(bucket);
            ctx.route.copy_source = Some(source);
        }
        let real_bucket = auth.bucket.as_ref().map(|b| b.real.as_str());
        ctx.route.bucket = real_bucket.map(str::to_string);
        let key = ctx.audit.key.as_deref().map(encode_key);
        let (host, path) = self
            .backend(real_bucket)
            .address(real_bucket, key.as_deref());
        let forwarded_query: Vec<String> = auth
            .query
            .iter()
            .filter(|(k, v)| {
                !(PRESIGN_PARAMS.contains(&k.as_str())
                    || auth.identity.verified.signature_v2 && sigv2::is_presign_param(k)
                    // S3 ignores an empty delimiter (minio-py sends one);
                    // a backend may group every key by it.
                    || k == "delimiter" && v.is_empty())
            })
            .map(|(k, v)| match (k.as_str(), &ctx.route.upload_token) {
                // The backend knows its own upload id, not the gateway's token.
                ("uploadId", Some(t)) => format!("uploadId={}", uri::encode(&t.upload_id)),
                // A listing resumed after a token: the backend's id it names.
                ("upload-id-marker", _) if UploadToken::decode(v).is_some() => format!(
                    "upload-id-marker={}",
                    uri::encode(&UploadToken::decode(v).expect("decoded above").upload_id)
                ),
                _ => format!("{}={}", uri::encode(k), uri::encode(v)),
            })
            .collect();
        ctx.route.upstream_host = host;
        ctx.route.upstream_path_and_query = if forwarded_query.is_empty() {
            path
        } else {
            format!("{path}?{}", forwarded_query.join("&"))
        };
        ctx.route.payload_hash = match ctx.op.upstream_payload_hash(ctx.stored_checksum) {
            Some(h) => h.to_string(),
            // The body goes as the client sent it: the client's hash holds.
            None => req
                .headers
                .get("x-amz-content-sha256")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(UNSIGNED_PAYLOAD)
                .to_string(),
        };
        Ok(())
    }

    /// Copy sources name a bucket too: authorise it and map its alias.
    /// Returns the bucket as clients name it and the rewritten source.
    fn copy_source(
        &self,
        live: &crate::live::Live,
        src: &http::HeaderValue,
        identity: &Identity,
    ) -> Result<(String, String), S3Error> {
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
        let resolved = live.resolve_bucket(&src_bucket)?;
        identity.authorize(&resolved.name, Some(Permission::Read))?;
        // The key as the backend will read it: decoded, without the version.
        // Only `?versionId=` may follow it: backends that decode first and
        // split there only would read any other `?...` as part of the key.
        let src_key = match rest.split_once('?') {
            None => rest,
            Some((k, version))
                if version.strip_prefix("versionId=").is_some_and(|v| {
                    uri::decode(v).is_some_and(|v| !v.contains(['?', '&', '#', '/']))
                }) =>
            {
                k
            }
            Some(_) => {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "x-amz-copy-source is /bucket/key with at most ?versionId=",
                ))
            }
        };
        let src_key = uri::decode(src_key)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    "x-amz-copy-source must be /bucket/key",
                )
            })?;
        live.check_key(&src_key)?;
        if super::uploads::looks_reserved(&src_key) {
            let encrypting =
                sealgate_filters::policy::for_bucket(&live.config, &resolved.name).is_some();
            self.refuse_reserved(encrypting, &src_key)?;
        }
        let source = format!("/{}/{rest}", resolved.real);
        Ok((resolved.name, source))
    }
}

impl super::Op {
    /// The upstream `x-amz-content-sha256` when the gateway makes the body
    /// itself; `None` when the client's body (and hash) goes as sent.
    fn upstream_payload_hash(&self, stored: Option<ChecksumAlgorithm>) -> Option<&'static str> {
        match self {
            // Ciphertext streamed as it is made, its checksum trailing.
            super::Op::Upload(u) if u.encrypts() && stored.is_some() => Some(UNSIGNED_TRAILER),
            // Ciphertext with a plain length, decoded plaintext, or a part
            // list the gateway rewrites.
            super::Op::Upload(_) | super::Op::Complete(_) => Some(UNSIGNED_PAYLOAD),
            _ => None,
        }
    }
}
