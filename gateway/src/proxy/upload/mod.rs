//! Upload stage: request bodies the gateway decodes itself. PutObject and
//! UploadPart to encrypting buckets are encrypted frame by frame (after the
//! data key is fetched in `request_filter`); signed aws-chunked bodies to
//! pass-through buckets are decoded and verified. Every check the client
//! asked for is verified over the plaintext before the last bytes go
//! upstream, so a failure leaves the backend's body short and nothing is
//! stored.

pub(super) mod completed;
pub(super) mod multipart;
pub(super) mod post;
pub(super) mod records;
pub(super) mod stream;

use std::collections::BTreeMap;

use bytes::Bytes;
use http::HeaderMap;
use pingora::http::RequestHeader;
use sealgate_envelope::format::ciphertext_len;
use sealgate_envelope::multipart::{PartHeader, PART_HEADER_LEN};
use sealgate_envelope::{Backend, Encryptor, EnvelopeMeta, SealingKey};
use sealgate_filters::holdback::Holdback;

use super::headers::{strip_chunked_headers, strip_plaintext_body_headers};
use super::upload_stream::{Sink, UploadStream};
use sealgate_filters::plan::{BodyEncoding, UploadBody};
use sealgate_filters::policy::BucketEncryption;
use sealgate_filters::s3::body::checksum::{BodyChecks, ChecksumAlgorithm};
use sealgate_filters::s3::body::chunked::encode::{self, TrailingChecksum};
use sealgate_filters::s3::body::chunked::{ChunkSigner, ChunkedDecoder};
use sealgate_filters::s3::multipart::upload_id::UploadToken;
use sealgate_filters::s3::{S3Error, S3ErrorCode};
use zeroize::Zeroizing;

use super::{Ctx, Gateway, Op};
use crate::keys::key_error;

/// An upload body the gateway decodes itself, planned once per request:
/// encrypted (PutObject or UploadPart), or only decoded and verified (signed
/// aws-chunked bodies to pass-through buckets). Each upstream attempt
/// builds a fresh [`UploadStream`] from it (Pingora replays the body on retry).
pub struct UploadPlan {
    pub plaintext_len: u64,
    pub encoding: BodyEncoding,
    pub trailer_algorithm: Option<ChecksumAlgorithm>,
    pub payload_sha256: Option<[u8; 32]>,
    pub key_id: String,
    pub meta_headers: Vec<(&'static str, std::borrow::Cow<'static, str>)>,
    /// `None`: forward the decoded plaintext.
    cipher: Option<CipherParams>,
    /// The checksum the ciphertext goes upstream with (trailing); `None`
    /// sends it with a plain `Content-Length`.
    stored_checksum: Option<ChecksumAlgorithm>,
    /// The checksum header the client sent, echoed once verified.
    pub echo: Option<(&'static str, String)>,
}

/// What an encrypting upload needs per attempt: the object's (or part's)
/// key, derived once per plan from the data key and salt.
struct CipherParams {
    key: SealingKey,
    /// Part number (0 for a whole object) used in frame nonces.
    part: u32,
    /// The part header written before a part's frames.
    prefix: Option<[u8; PART_HEADER_LEN as usize]>,
}

impl UploadPlan {
    pub fn new(
        body: UploadBody,
        provider: &str,
        data_key: sealgate_filters::keys::DataKey,
        context: BTreeMap<String, String>,
    ) -> Result<Self, S3Error> {
        let (meta, key) = sealed_envelope(provider, &data_key, context, false);
        let meta_headers = meta.header_fields().map_err(meta_error)?;
        Ok(Self {
            plaintext_len: body.plaintext_len,
            encoding: body.encoding,
            trailer_algorithm: body.trailer_algorithm,
            payload_sha256: body.payload_sha256,
            key_id: data_key.key_id,
            meta_headers,
            cipher: Some(CipherParams {
                key,
                part: 0,
                prefix: None,
            }),
            stored_checksum: None,
            echo: None,
        })
    }

    /// A signed aws-chunked upload to a pass-through bucket: decoded,
    /// verified and forwarded as plain bytes.
    pub fn decode_only(body: UploadBody) -> Self {
        Self {
            plaintext_len: body.plaintext_len,
            encoding: body.encoding,
            trailer_algorithm: body.trailer_algorithm,
            payload_sha256: body.payload_sha256,
            key_id: String::new(),
            meta_headers: Vec::new(),
            cipher: None,
            stored_checksum: None,
            echo: None,
        }
    }

    /// True when the upload is encrypted.
    pub fn encrypts(&self) -> bool {
        self.cipher.is_some()
    }

    /// One part of a multipart upload: a fresh salt per attempt, so a
    /// retried or replaced part never reuses a key and nonce.
    pub fn for_part(
        body: UploadBody,
        key_id: String,
        dek: Zeroizing<[u8; 32]>,
        context_hash: [u8; 32],
        part_number: u32,
    ) -> Self {
        let salt = sealgate_filters::keys::random_bytes::<32>();
        let header = PartHeader {
            salt,
            size: body.plaintext_len,
            number: part_number,
        };
        Self {
            plaintext_len: body.plaintext_len,
            encoding: body.encoding,
            trailer_algorithm: body.trailer_algorithm,
            payload_sha256: body.payload_sha256,
            key_id,
            meta_headers: Vec::new(),
            cipher: Some(CipherParams {
                key: SealingKey::derive(&dek, &salt, &context_hash),
                part: part_number,
                prefix: Some(header.encode()),
            }),
            stored_checksum: None,
            echo: None,
        }
    }

    /// Echoes the client's checksum header in the response (it is verified
    /// over the plaintext before the body ends).
    pub fn with_echo(mut self, echo: Option<(&'static str, String)>) -> Self {
        self.echo = echo;
        self
    }

    /// Sends the ciphertext with a trailing checksum the backend verifies.
    /// Whether the body goes aws-chunked with a trailing checksum.
    pub fn sends_trailer(&self) -> bool {
        self.cipher.is_some() && self.stored_checksum.is_some()
    }

    pub fn with_stored_checksum(mut self, algorithm: Option<ChecksumAlgorithm>) -> Self {
        self.stored_checksum = algorithm;
        self
    }

    /// Bytes the backend stores.
    pub fn stored_len(&self) -> u64 {
        match &self.cipher {
            Some(c) => c.prefix.map_or(0, |p| p.len() as u64) + ciphertext_len(self.plaintext_len),
            None => self.plaintext_len,
        }
    }

    /// Rewrites the upstream request for the body the gateway sends: the
    /// decoded plaintext as it is, or the ciphertext aws-chunked with a
    /// trailing checksum the backend verifies (see `chunked::encode`).
    pub fn apply(&self, req: &mut RequestHeader) -> pingora::Result<()> {
        let Some(c) = &self.cipher else {
            strip_chunked_headers(req);
            req.insert_header(http::header::CONTENT_LENGTH, self.stored_len().to_string())?;
            return Ok(());
        };
        strip_plaintext_body_headers(req);
        let Some(alg) = self.stored_checksum else {
            req.insert_header(http::header::CONTENT_LENGTH, self.stored_len().to_string())?;
            for (name, value) in &self.meta_headers {
                req.insert_header(*name, value.as_ref())?;
            }
            return Ok(());
        };
        let prefix = c.prefix.map_or(0, |p| p.len() as u64);
        let encoded = encode::encoded_len(prefix, ciphertext_len(self.plaintext_len), alg);
        req.insert_header(http::header::CONTENT_LENGTH, encoded.to_string())?;
        req.insert_header(
            "x-amz-decoded-content-length",
            self.stored_len().to_string(),
        )?;
        req.insert_header("x-amz-trailer", alg.header())?;
        let encoding = match req
            .headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
        {
            Some(rest) => format!("aws-chunked,{rest}"),
            None => "aws-chunked".to_string(),
        };
        req.insert_header(http::header::CONTENT_ENCODING, encoding)?;
        for (name, value) in &self.meta_headers {
            req.insert_header(*name, value.as_ref())?;
        }
        Ok(())
    }

    /// Fresh body state for one upstream attempt.
    pub fn body(&self, client_headers: &HeaderMap) -> Result<UploadStream, S3Error> {
        let decoder = match &self.encoding {
            BodyEncoding::Plain => None,
            BodyEncoding::Chunked(signed) => {
                Some(ChunkedDecoder::new(signed.as_ref().map(|v| ChunkSigner {
                    signing_key: v.signing_key.clone(),
                    amz_date: v.amz_date.clone(),
                    scope: v.scope.clone(),
                    previous: v.signature.clone(),
                })))
            }
        };
        let (sink, prefix) = match &self.cipher {
            Some(c) => {
                let cipher = c.key.cipher(Backend::default_backend());
                let encryptor = Encryptor::new(cipher, c.part, self.plaintext_len);
                match self.stored_checksum {
                    Some(alg) => {
                        let mut wrap = TrailingChecksum::new(alg);
                        let prefix = c.prefix.map(|p| wrap.chunk(&p));
                        (Sink::Encrypt(encryptor.with_wrap(Box::new(wrap))), prefix)
                    }
                    None => (
                        Sink::Encrypt(encryptor),
                        c.prefix.map(|p| Bytes::copy_from_slice(&p)),
                    ),
                }
            }
            None => (Sink::Forward(Holdback::new(self.plaintext_len)), None),
        };
        Ok(UploadStream {
            decoder,
            checks: Some(BodyChecks::from_request(
                client_headers,
                self.trailer_algorithm,
                self.payload_sha256,
            )?),
            sink,
            prefix,
            echo_checksum: None,
        })
    }
}

/// A new object's envelope: a fresh salt, the key commitment, the wrapped
/// data key and its context.
pub fn new_envelope(
    provider: &str,
    data_key: &sealgate_filters::keys::DataKey,
    context: BTreeMap<String, String>,
    multipart: bool,
) -> EnvelopeMeta {
    sealed_envelope(provider, data_key, context, multipart).0
}

/// [`new_envelope`] and the object key its commitment belongs to, from
/// one derivation (a PutObject seals its body under it).
pub fn sealed_envelope(
    provider: &str,
    data_key: &sealgate_filters::keys::DataKey,
    context: BTreeMap<String, String>,
    multipart: bool,
) -> (EnvelopeMeta, SealingKey) {
    let salt = sealgate_filters::keys::random_bytes::<32>();
    let context_hash = sealgate_envelope::context_hash_sorted(
        context.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let key = SealingKey::derive(&data_key.plaintext, &salt, &context_hash);
    let meta = EnvelopeMeta {
        provider: provider.to_string(),
        key_id: data_key.key_id.clone(),
        wrapped_dek: data_key.wrapped.clone(),
        context,
        salt,
        commitment: key.commitment,
        multipart,
    };
    (meta, key)
}

/// Envelope metadata that cannot be written (a key id or provider name
/// S3 metadata cannot carry).
pub fn meta_error(e: sealgate_envelope::MetaError) -> S3Error {
    S3Error::new(
        S3ErrorCode::InternalError,
        format!("envelope metadata: {e}"),
    )
}

/// An upload on its way: waiting for its data key (decided synchronously
/// in the plan), then ready to build each attempt's body.
pub enum Upload {
    /// PutObject to an encrypting bucket, with a key chosen by config or client.
    Put {
        body: UploadBody,
        key_id: Option<String>,
        enc: BucketEncryption,
        echo: Option<(&'static str, String)>,
    },
    /// UploadPart of an upload the gateway began.
    Part {
        body: UploadBody,
        number: u32,
        token: Box<UploadToken>,
        enc: BucketEncryption,
        echo: Option<(&'static str, String)>,
    },
    Ready(UploadPlan),
}

impl Upload {
    /// True when the body is encrypted (not only decoded).
    pub fn encrypts(&self) -> bool {
        match self {
            Upload::Put { .. } | Upload::Part { .. } => true,
            Upload::Ready(p) => p.encrypts(),
        }
    }
}

/// The checksum header a client sent with its body (echoed once verified).
pub fn client_checksum(headers: &HeaderMap) -> Option<(&'static str, String)> {
    ChecksumAlgorithm::ALL.into_iter().find_map(|a| {
        headers
            .get(a.header())
            .and_then(|v| v.to_str().ok())
            .map(|v| (a.header(), v.to_string()))
    })
}

/// What a request reads of the configuration: from the set it began with
/// (`Ctx::live`), so a reload never mixes two sets in one request.
impl crate::live::Live {
    /// Refuses an upload whose stored size exceeds the backend's single-PUT limit.
    pub(super) fn check_size(&self, stored: u64) -> Result<(), S3Error> {
        let max = self.config.upstream.max_put_size;
        if stored > max {
            return Err(S3Error::new(
                S3ErrorCode::EntityTooLarge,
                format!("the encrypted body would exceed the backend's {max}-byte limit for one upload; use a multipart upload with smaller parts"),
            ));
        }
        Ok(())
    }

    /// The configured provider `name`.
    pub(super) fn provider(
        &self,
        name: &str,
    ) -> Result<std::sync::Arc<dyn sealgate_filters::keys::KeyProvider>, S3Error> {
        self.providers.get(name).cloned().ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InternalError,
                format!("the key provider `{name}` is not configured"),
            )
        })
    }
}

impl Gateway {
    /// The async half of an encrypted upload: its data key from the provider.
    pub(super) async fn prepare_upload(&self, ctx: &mut Ctx) -> Result<(), S3Error> {
        if !matches!(ctx.op, Op::Upload(Upload::Put { .. } | Upload::Part { .. })) {
            return Ok(());
        }
        let Op::Upload(upload) = std::mem::replace(&mut ctx.op, Op::PassThrough) else {
            unreachable!("matched above")
        };
        let (plan, echo) = match upload {
            Upload::Ready(_) => unreachable!("matched above"),
            Upload::Put {
                body,
                key_id,
                enc,
                echo,
            } => {
                let provider = ctx.live.provider(&enc.provider)?;
                let key_id = key_id.unwrap_or_else(|| provider.default_key_id().to_string());
                let data_key = provider
                    .generate_data_key(&key_id, &enc.write_context)
                    .await
                    .map_err(key_error)?;
                let plan = UploadPlan::new(body, &enc.provider, data_key, enc.write_context)?;
                ctx.audit.provider = Some(enc.provider);
                (plan, echo)
            }
            Upload::Part {
                body,
                number,
                token,
                enc,
                echo,
            } => {
                let opened = self
                    .open_token(
                        &ctx.live,
                        &token,
                        Some(&enc),
                        &ctx.route,
                        ctx.audit.key.as_deref(),
                    )
                    .await?;
                let (dek, ctx_hash) = (opened.dek, opened.ctx_hash);
                let plan = UploadPlan::for_part(body, token.key_id.clone(), dek, ctx_hash, number);
                ctx.audit.provider = Some(enc.provider);
                (plan, echo)
            }
        };
        ctx.audit.key_id = Some(plan.key_id.clone());
        ctx.op = Op::Upload(Upload::Ready(
            plan.with_stored_checksum(ctx.stored_checksum)
                .with_echo(echo),
        ));
        Ok(())
    }
}
