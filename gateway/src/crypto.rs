//! Encryption and decryption as the proxy phases see them: the per-request
//! plans (decided once) and the per-attempt body state machines (rebuilt on
//! every upstream attempt, because Pingora replays the body on retry).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use sealgate_config::{Config, ProviderKind};
use sealgate_envelope::format::{
    ciphertext_len, plaintext_len, plan_range, ByteRange, FRAME_SIZE, SEALED_FRAME_SIZE,
};
use sealgate_envelope::{Backend, Decryptor, Encryptor, EnvelopeMeta, ObjectKey, META_PREFIX};
use sealgate_filters::keys::{KeyError, KeyProvider, MasterKeyProvider};
use sealgate_filters::s3::checksum::{BodyChecks, ChecksumAlgorithm};
use sealgate_filters::s3::chunked::{ChunkSigner, ChunkedDecoder};
use sealgate_filters::s3::listing::SizeRewriter;
use sealgate_filters::s3::sigv4::Verified;
use sealgate_filters::s3::{S3Error, S3ErrorCode};
use zeroize::Zeroizing;

/// The SSE value reported for every object the gateway encrypted.
pub const SSE_ALGORITHM: &str = "aws:kms";

/// Request headers that describe the client's plaintext body or its own
/// encryption wishes: never forwarded on an encrypted write.
const PLAINTEXT_BODY_HEADERS: &[&str] = &[
    "content-md5",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-trailer",
    "x-amz-decoded-content-length",
    "transfer-encoding",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
];

/// The configured key providers by name.
pub struct Providers {
    by_name: HashMap<String, Arc<dyn KeyProvider>>,
}

impl Providers {
    /// Builds every provider; cloud providers are not available in this build yet.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut by_name: HashMap<String, Arc<dyn KeyProvider>> = HashMap::new();
        for (name, p) in &config.encryption.providers {
            let provider: Arc<dyn KeyProvider> = match &p.kind {
                ProviderKind::Local(l) => Arc::new(MasterKeyProvider::new(
                    name,
                    "local",
                    l.master_key.expose(),
                    None,
                )),
                ProviderKind::Custom(c) => Arc::new(MasterKeyProvider::new(
                    name,
                    "custom",
                    c.master_key.expose(),
                    c.key_derivation_salt.as_deref(),
                )),
                other => {
                    return Err(format!(
                        "key provider `{name}`: type {} is not available in this build yet",
                        other.type_name()
                    ))
                }
            };
            by_name.insert(name.clone(), provider);
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn KeyProvider>> {
        self.by_name.get(name)
    }
}

/// Maps a provider failure to the client's error (no key material in it).
pub fn key_error(e: KeyError) -> S3Error {
    match e {
        KeyError::Unavailable(_) => S3Error::new(
            S3ErrorCode::ServiceUnavailable,
            "the key provider is unavailable; retry",
        ),
        KeyError::Denied(_) => S3Error::new(
            S3ErrorCode::AccessDenied,
            "the key provider refused the key operation",
        ),
        KeyError::Invalid(_) => S3Error::new(
            S3ErrorCode::InternalError,
            "the object's key could not be used",
        ),
    }
}

/// How an encrypted PUT's body arrives.
pub enum BodyEncoding {
    Plain,
    /// aws-chunked; signed variants carry the client's verified signature.
    Chunked(Option<Verified>),
}

/// An encrypted PUT, decided in `request_filter`.
pub struct PutPlan {
    pub plaintext_len: u64,
    pub encoding: BodyEncoding,
    pub trailer_algorithm: Option<ChecksumAlgorithm>,
    pub payload_sha256: Option<[u8; 32]>,
    pub key_id: String,
    pub meta_headers: Vec<(String, String)>,
    dek: Zeroizing<[u8; 32]>,
    salt: [u8; 32],
    context_hash: [u8; 32],
}

impl PutPlan {
    pub fn new(
        plaintext_len: u64,
        encoding: BodyEncoding,
        trailer_algorithm: Option<ChecksumAlgorithm>,
        payload_sha256: Option<[u8; 32]>,
        provider: &str,
        data_key: sealgate_filters::keys::DataKey,
        context: BTreeMap<String, String>,
    ) -> Result<Self, S3Error> {
        let salt = sealgate_filters::keys::random_bytes::<32>();
        let context_hash =
            sealgate_envelope::context_hash(context.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let key = ObjectKey::derive(
            &data_key.plaintext,
            &salt,
            &context_hash,
            Backend::default_backend(),
        );
        let meta = EnvelopeMeta {
            provider: provider.to_string(),
            key_id: data_key.key_id.clone(),
            wrapped_dek: data_key.wrapped.clone(),
            context,
            salt,
            commitment: key.commitment,
        };
        let meta_headers = meta.to_headers().map_err(|e| {
            S3Error::new(
                S3ErrorCode::InternalError,
                format!("envelope metadata: {e}"),
            )
        })?;
        Ok(Self {
            plaintext_len,
            encoding,
            trailer_algorithm,
            payload_sha256,
            key_id: data_key.key_id,
            meta_headers,
            dek: data_key.plaintext,
            salt,
            context_hash,
        })
    }

    /// Rewrites the upstream request for the ciphertext body.
    pub fn apply(&self, req: &mut RequestHeader) -> pingora::Result<()> {
        strip_plaintext_body_headers(req);
        req.insert_header(
            http::header::CONTENT_LENGTH,
            ciphertext_len(self.plaintext_len).to_string(),
        )?;
        for (name, value) in &self.meta_headers {
            req.insert_header(name.clone(), value.as_str())?;
        }
        Ok(())
    }

    /// Fresh body state for one upstream attempt.
    pub fn body(&self, client_headers: &HeaderMap) -> Result<PutBody, S3Error> {
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
        let key = ObjectKey::derive(
            &self.dek,
            &self.salt,
            &self.context_hash,
            Backend::default_backend(),
        );
        Ok(PutBody {
            decoder,
            checks: Some(BodyChecks::from_request(
                client_headers,
                self.trailer_algorithm,
                self.payload_sha256,
            )?),
            encryptor: Encryptor::new(key.cipher, 0, self.plaintext_len),
            echo_checksum: None,
        })
    }
}

/// Removes the headers that describe the plaintext body, any client-sent
/// envelope fields, and aws-chunked content-encoding.
pub fn strip_plaintext_body_headers(req: &mut RequestHeader) {
    for h in PLAINTEXT_BODY_HEADERS {
        req.remove_header(*h);
    }
    for alg in ChecksumAlgorithm::ALL {
        req.remove_header(alg.header());
    }
    strip_envelope_headers(req);
    if let Some(ce) = req
        .headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        let rest: Vec<&str> = ce
            .split(',')
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("aws-chunked") && !t.is_empty())
            .collect();
        if rest.is_empty() {
            req.remove_header(http::header::CONTENT_ENCODING.as_str());
        } else {
            let joined = rest.join(",");
            let _ = req.insert_header(http::header::CONTENT_ENCODING, joined);
        }
    }
}

/// Clients must never set envelope fields themselves.
pub fn strip_envelope_headers(req: &mut RequestHeader) {
    let names: Vec<String> = req
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with(META_PREFIX))
        .map(str::to_string)
        .collect();
    for n in names {
        req.remove_header(n.as_str());
    }
}

/// The body of one encrypted PUT attempt.
pub struct PutBody {
    decoder: Option<ChunkedDecoder>,
    checks: Option<BodyChecks>,
    encryptor: Encryptor,
    /// The verified client checksum, echoed in the response.
    pub echo_checksum: Option<(&'static str, String)>,
}

impl PutBody {
    /// Decodes, checks and encrypts one piece. At `end`, everything is
    /// verified before the final frame is released: a failed check leaves
    /// the upstream body short, so nothing is stored.
    pub fn push(&mut self, input: &[u8], end: bool) -> Result<Bytes, S3Error> {
        let stream_err = |e: sealgate_envelope::StreamError| {
            S3Error::new(S3ErrorCode::IncompleteBody, e.to_string())
        };
        let checks = self.checks.as_mut().expect("checks live until the end");
        match &mut self.decoder {
            Some(d) => {
                let mut failed = None;
                let enc = &mut self.encryptor;
                d.push(input, |data| {
                    checks.update(data);
                    if failed.is_none() {
                        if let Err(e) = enc.feed(data, false) {
                            failed = Some(e);
                        }
                    }
                })?;
                if let Some(e) = failed {
                    return Err(stream_err(e));
                }
            }
            None => {
                checks.update(input);
                self.encryptor.feed(input, false).map_err(stream_err)?;
            }
        }
        if end {
            if let Some(d) = &self.decoder {
                d.finish()?;
                for (name, value) in d.trailers() {
                    checks.set_trailer(name, value)?;
                }
            }
            let checks = self.checks.take().expect("checked once");
            let alg = checks.algorithm();
            checks.finish()?;
            if let Some(alg) = alg {
                self.echo_checksum = self
                    .decoder
                    .as_ref()
                    .and_then(|d| {
                        d.trailers()
                            .iter()
                            .find(|(n, _)| n == alg.header())
                            .map(|(_, v)| v.clone())
                    })
                    .map(|v| (alg.header(), v));
            }
            self.encryptor.feed(&[], true).map_err(stream_err)?;
        }
        Ok(self.encryptor.take_ready())
    }
}

/// What the client asked to read, decided in `request_filter`.
pub struct ReadPlan {
    pub range: Option<ByteRange>,
    pub head: bool,
    /// Plaintext objects are refused (the bucket's policy is mandatory).
    pub mandatory: bool,
    /// The upstream range asked for (its start, for trimming).
    pub upstream_range_sent: bool,
}

impl ReadPlan {
    /// Asks upstream for a byte range that serves the client's range
    /// whether the object turns out encrypted or not.
    pub fn apply(&mut self, req: &mut RequestHeader) -> pingora::Result<()> {
        req.remove_header("x-amz-checksum-mode");
        let Some(range) = self.range else {
            return Ok(());
        };
        let value = match range {
            ByteRange::From { start, end } => {
                let frame_start = (start / FRAME_SIZE) * SEALED_FRAME_SIZE;
                let first = start.min(frame_start);
                match end {
                    Some(e) => format!(
                        "bytes={first}-{}",
                        (e / FRAME_SIZE + 1) * SEALED_FRAME_SIZE - 1
                    ),
                    None => format!("bytes={first}-"),
                }
            }
            ByteRange::Suffix(n) => {
                let frames = n.div_ceil(FRAME_SIZE) + 1;
                format!("bytes=-{}", n.max(frames * SEALED_FRAME_SIZE))
            }
        };
        req.insert_header(http::header::RANGE, value)?;
        self.upstream_range_sent = true;
        Ok(())
    }
}

/// How the response body is transformed.
pub enum ReadBody {
    /// Skip `lead` ciphertext bytes, then decrypt.
    Decrypt { lead: u64, dec: Decryptor },
    /// Plaintext object read through a widened range: skip, then take.
    Trim { skip: u64, take: u64 },
    /// The gateway answered instead (an error document); upstream bytes are dropped.
    Replace(Option<Bytes>),
    /// Listing sizes.
    Rewrite(SizeRewriter<fn(u64) -> u64>),
}

fn listed_size(stored: u64) -> u64 {
    plaintext_len(stored).unwrap_or(stored)
}

impl ReadBody {
    pub fn listing() -> Self {
        ReadBody::Rewrite(SizeRewriter::new(listed_size as fn(u64) -> u64))
    }

    pub fn push(
        &mut self,
        input: Option<Bytes>,
        end: bool,
    ) -> Result<Option<Bytes>, sealgate_envelope::StreamError> {
        let data = input.unwrap_or_default();
        match self {
            ReadBody::Decrypt { lead, dec } => {
                let skip = (*lead).min(data.len() as u64) as usize;
                *lead -= skip as u64;
                Ok(Some(dec.push(&data[skip..], end)?))
            }
            ReadBody::Trim { skip, take } => {
                let s = (*skip).min(data.len() as u64) as usize;
                *skip -= s as u64;
                let n = ((data.len() - s) as u64).min(*take) as usize;
                *take -= n as u64;
                Ok(Some(data.slice(s..s + n)))
            }
            ReadBody::Replace(body) => Ok(Some(body.take().unwrap_or_default())),
            ReadBody::Rewrite(r) => Ok(Some(r.push(&data, end))),
        }
    }
}

/// Total size from `Content-Range: bytes a-b/total` or `Content-Length`,
/// and the range start (0 for a whole body).
pub fn stored_extent(resp: &ResponseHeader) -> Option<(u64, u64)> {
    let header = |n: &str| resp.headers.get(n).and_then(|v| v.to_str().ok());
    if resp.status.as_u16() == 206 {
        let cr = header("content-range")?.strip_prefix("bytes ")?;
        let (span, total) = cr.split_once('/')?;
        let (start, _) = span.split_once('-')?;
        Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
    } else {
        Some((0, header("content-length")?.trim().parse().ok()?))
    }
}

/// Removes envelope metadata and checksums of stored bytes from a response.
pub fn strip_response(resp: &mut ResponseHeader) {
    let names: Vec<String> = resp
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with(META_PREFIX) || k.starts_with("x-amz-checksum-"))
        .map(str::to_string)
        .collect();
    for n in names {
        resp.remove_header(n.as_str());
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

/// Resolves the client's range against `total` plaintext bytes: the
/// inclusive span, `None` for the whole object, or S3's 416 InvalidRange.
pub fn resolve(range: Option<ByteRange>, total: u64) -> Result<Option<(u64, u64)>, S3Error> {
    match range {
        None => Ok(None),
        Some(r) => r.resolve(total).map(Some).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidRange,
                "the requested range is not satisfiable",
            )
        }),
    }
}

/// The frames and trimming for an encrypted range read.
pub fn encrypted_range(first: u64, last: u64, total: u64) -> sealgate_envelope::FramePlan {
    plan_range(first, last, total)
}

/// Copies the response's non-entity headers into an error response.
pub fn error_response(
    status: http::StatusCode,
    body_len: usize,
    request_id: &str,
) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/xml")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body_len.to_string())?;
    resp.insert_header("x-amz-request-id", request_id.to_string())?;
    Ok(resp)
}
