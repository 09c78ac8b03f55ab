//! Encryption and decryption as the proxy phases see them: the per-request
//! plans (decided once) and the per-attempt body state machines (rebuilt on
//! every upstream attempt, because Pingora replays the body on retry).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use sealgate_config::{Config, ProviderKind};
use sealgate_envelope::format::{ciphertext_len, plaintext_len, plan_range, ByteRange};
use sealgate_envelope::multipart::{Layout, PartHeader, PART_HEADER_LEN};
use sealgate_envelope::{Backend, Decryptor, Encryptor, EnvelopeMeta, ObjectKey, META_PREFIX};
use sealgate_filters::keys::{KeyError, KeyProvider, MasterKeyProvider};
use sealgate_filters::s3::checksum::{BodyChecks, ChecksumAlgorithm};
use sealgate_filters::s3::chunked::encode::{self, TrailingChecksum};
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

/// An upload body as the request describes it.
pub struct UploadBody {
    pub plaintext_len: u64,
    pub encoding: BodyEncoding,
    pub trailer_algorithm: Option<ChecksumAlgorithm>,
    pub payload_sha256: Option<[u8; 32]>,
}

/// An upload body the gateway decodes itself, decided in `request_filter`:
/// encrypted (PUT or part), or only decoded and verified (signed aws-chunked
/// bodies to pass-through buckets).
pub struct PutPlan {
    pub plaintext_len: u64,
    pub encoding: BodyEncoding,
    pub trailer_algorithm: Option<ChecksumAlgorithm>,
    pub payload_sha256: Option<[u8; 32]>,
    pub key_id: String,
    pub meta_headers: Vec<(String, String)>,
    /// `None`: forward the decoded plaintext.
    cipher: Option<CipherParams>,
    /// The checksum the ciphertext goes upstream with (trailing); `None`
    /// sends it with a plain `Content-Length`.
    stored_checksum: Option<ChecksumAlgorithm>,
}

/// What an encrypting upload needs per attempt.
struct CipherParams {
    dek: Zeroizing<[u8; 32]>,
    salt: [u8; 32],
    context_hash: [u8; 32],
    /// Part number (0 for a whole object) used in frame nonces.
    part: u32,
    /// The part header written before a part's frames.
    prefix: Option<[u8; PART_HEADER_LEN as usize]>,
}

impl PutPlan {
    pub fn new(
        body: UploadBody,
        provider: &str,
        data_key: sealgate_filters::keys::DataKey,
        context: BTreeMap<String, String>,
    ) -> Result<Self, S3Error> {
        let meta = new_envelope(provider, &data_key, context, false);
        let meta_headers = meta.to_headers().map_err(meta_error)?;
        let (salt, context_hash) = (meta.salt, meta.context_hash());
        Ok(Self {
            plaintext_len: body.plaintext_len,
            encoding: body.encoding,
            trailer_algorithm: body.trailer_algorithm,
            payload_sha256: body.payload_sha256,
            key_id: data_key.key_id,
            meta_headers,
            cipher: Some(CipherParams {
                dek: data_key.plaintext,
                salt,
                context_hash,
                part: 0,
                prefix: None,
            }),
            stored_checksum: None,
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
                dek,
                salt,
                context_hash,
                part: part_number,
                prefix: Some(header.encode()),
            }),
            stored_checksum: None,
        }
    }

    /// Sends the ciphertext with a trailing checksum the backend verifies.
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
                req.insert_header(name.clone(), value.as_str())?;
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
        let (sink, prefix) = match &self.cipher {
            Some(c) => {
                let key =
                    ObjectKey::derive(&c.dek, &c.salt, &c.context_hash, Backend::default_backend());
                let encryptor = Encryptor::new(key.cipher, c.part, self.plaintext_len);
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
            None => (Sink::Forward(Forward::new(self.plaintext_len)), None),
        };
        Ok(PutBody {
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

/// Bytes of decoded plaintext held back on a decode-only upload until the
/// body's checks pass, so a failed check leaves the upstream body short.
const FORWARD_HOLDBACK: usize = 64 * 1024;

/// Where decoded upload bytes go.
enum Sink {
    Encrypt(Encryptor),
    Forward(Forward),
}

impl Sink {
    fn feed(&mut self, input: &[u8], end: bool) -> Result<(), sealgate_envelope::StreamError> {
        match self {
            Sink::Encrypt(e) => e.feed(input, end),
            Sink::Forward(f) => f.feed(input, end),
        }
    }

    fn take_ready(&mut self) -> Bytes {
        match self {
            Sink::Encrypt(e) => e.take_ready(),
            Sink::Forward(f) => f.take_ready(),
        }
    }
}

/// Forwards decoded bytes, holding back the tail until the end.
struct Forward {
    declared: u64,
    got: u64,
    buf: BytesMut,
    ended: bool,
}

impl Forward {
    fn new(declared: u64) -> Self {
        Self {
            declared,
            got: 0,
            buf: BytesMut::new(),
            ended: false,
        }
    }

    fn feed(&mut self, input: &[u8], end: bool) -> Result<(), sealgate_envelope::StreamError> {
        use sealgate_envelope::StreamError;
        self.got += input.len() as u64;
        if self.got > self.declared {
            return Err(StreamError::TooLong {
                declared: self.declared,
            });
        }
        self.buf.extend_from_slice(input);
        if end {
            if self.got != self.declared {
                return Err(StreamError::TooShort {
                    declared: self.declared,
                    got: self.got,
                });
            }
            self.ended = true;
        }
        Ok(())
    }

    fn take_ready(&mut self) -> Bytes {
        let keep = if self.ended {
            0
        } else {
            FORWARD_HOLDBACK.min(self.buf.len())
        };
        let n = self.buf.len() - keep;
        self.buf.split_to(n).freeze()
    }
}

/// Removes aws-chunked framing headers and the checksums the gateway
/// verified (a trailer's value cannot be sent ahead as a header).
pub fn strip_chunked_headers(req: &mut RequestHeader) {
    for h in [
        "x-amz-trailer",
        "x-amz-decoded-content-length",
        "transfer-encoding",
        "x-amz-sdk-checksum-algorithm",
    ] {
        req.remove_header(h);
    }
    for alg in ChecksumAlgorithm::ALL {
        req.remove_header(alg.header());
    }
    strip_aws_chunked_encoding(req);
}

fn strip_aws_chunked_encoding(req: &mut RequestHeader) {
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

/// A new object's envelope: a fresh salt, the key commitment, the wrapped
/// data key and its context.
pub fn new_envelope(
    provider: &str,
    data_key: &sealgate_filters::keys::DataKey,
    context: BTreeMap<String, String>,
    multipart: bool,
) -> EnvelopeMeta {
    let salt = sealgate_filters::keys::random_bytes::<32>();
    let context_hash =
        sealgate_envelope::context_hash(context.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let commitment = sealgate_envelope::commitment_of(&data_key.plaintext, &salt, &context_hash);
    EnvelopeMeta {
        provider: provider.to_string(),
        key_id: data_key.key_id.clone(),
        wrapped_dek: data_key.wrapped.clone(),
        context,
        salt,
        commitment,
        multipart,
    }
}

/// Envelope metadata that cannot be written (a key id or provider name
/// S3 metadata cannot carry).
pub fn meta_error(e: sealgate_envelope::MetaError) -> S3Error {
    S3Error::new(
        S3ErrorCode::InternalError,
        format!("envelope metadata: {e}"),
    )
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
    strip_aws_chunked_encoding(req);
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
    sink: Sink,
    /// A part header still to send ahead of the frames.
    prefix: Option<Bytes>,
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
                let enc = &mut self.sink;
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
                self.sink.feed(input, false).map_err(stream_err)?;
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
            self.sink.feed(&[], true).map_err(stream_err)?;
        }
        let ready = self.sink.take_ready();
        Ok(match self.prefix.take() {
            Some(p) => [p, ready].concat().into(),
            None => ready,
        })
    }
}

/// What the client asked to read, decided in `request_filter`.
pub struct ReadPlan {
    pub range: Option<ByteRange>,
    /// `?partNumber=`: a read of one stored part.
    pub part_number: bool,
    pub head: bool,
    /// Plaintext objects are refused (the bucket's policy is mandatory).
    pub mandatory: bool,
    /// What a probe of the object found (ranged reads probe first, so the
    /// upstream range fetches exactly the frames needed).
    pub target: Option<ReadTarget>,
    /// The stored byte range to ask upstream for, replacing the client's.
    pub upstream_range: Option<(u64, u64)>,
}

/// The object as a probe found it, with the plaintext span to serve.
#[derive(Debug, Clone)]
pub enum ReadTarget {
    /// Not written by the gateway.
    Plain,
    Single {
        meta: EnvelopeMeta,
        total: u64,
        span: (u64, u64),
    },
    Multipart {
        meta: EnvelopeMeta,
        layout: Layout,
        span: (u64, u64),
        /// Header of the part holding the span's first byte.
        header: PartHeader,
    },
}

impl ReadPlan {
    /// Sets the upstream range planned from the probe; drops checksum mode
    /// (stored checksums describe ciphertext).
    pub fn apply(&self, req: &mut RequestHeader) -> pingora::Result<()> {
        req.remove_header("x-amz-checksum-mode");
        match self.upstream_range {
            Some((a, b)) => req.insert_header(http::header::RANGE, format!("bytes={a}-{b}"))?,
            // A Range the gateway could not parse is ignored, as S3 does;
            // the backend must not serve part of an object unplanned.
            None if self.range.is_none() => req
                .remove_header(http::header::RANGE.as_str())
                .map(|_| ())
                .unwrap_or(()),
            None => {}
        }
        Ok(())
    }
}

/// S3's 416 for a range the object cannot satisfy.
pub fn invalid_range() -> S3Error {
    S3Error::new(
        S3ErrorCode::InvalidRange,
        "the requested range is not satisfiable",
    )
}

/// True when two envelopes describe the same stored object version.
pub fn same_object(a: &EnvelopeMeta, b: &EnvelopeMeta) -> bool {
    a.salt == b.salt && a.commitment == b.commitment && a.multipart == b.multipart
}

/// How the response body is transformed.
pub enum ReadBody {
    /// Decrypt a single-stream object (the body is exactly the planned frames).
    Decrypt(Decryptor),
    /// The gateway answered instead (an error document); upstream bytes are dropped.
    Replace(Option<Bytes>),
    /// Listing sizes.
    Rewrite(SizeRewriter<fn(u64, Option<u64>) -> u64>),
    /// A CreateMultipartUpload response's upload id.
    UploadId(sealgate_filters::s3::upload_id::UploadIdRewrite),
    /// Decrypt a multipart object's parts.
    Parts(Box<sealgate_envelope::multipart::PartsDecryptor>),
    /// A small document rewritten whole once it ended (ListParts of an
    /// encrypted upload, a CompleteMultipartUpload result).
    Whole(WholeRewrite),
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

/// ListParts of an encrypted upload: plaintext part sizes, and no
/// checksums of stored bytes (the client's own were not kept).
pub fn list_parts_rewrite() -> WholeRewrite {
    WholeRewrite::new(|text| {
        let stripped = sealgate_filters::s3::multipart::strip_checksums(text, true);
        let mut sizes = SizeRewriter::new(listed_part_size);
        String::from_utf8_lossy(&sizes.push(stripped.as_bytes(), true)).into_owned()
    })
}

/// A listed object's plaintext size. Multipart objects (ETag `…-N`) hold N
/// part headers; with every part but the last a multiple of the frame size
/// (all mainstream clients), their frames total as one stream's would.
fn listed_size(stored: u64, parts: Option<u64>) -> u64 {
    let headers = parts.unwrap_or(0) * PART_HEADER_LEN;
    stored
        .checked_sub(headers)
        .and_then(plaintext_len)
        .or_else(|| plaintext_len(stored))
        .unwrap_or(stored)
}

impl ReadBody {
    pub fn listing() -> Self {
        ReadBody::Rewrite(SizeRewriter::new(
            listed_size as fn(u64, Option<u64>) -> u64,
        ))
    }

    pub fn push(
        &mut self,
        input: Option<Bytes>,
        end: bool,
    ) -> Result<Option<Bytes>, sealgate_envelope::StreamError> {
        let data = input.unwrap_or_default();
        match self {
            ReadBody::Decrypt(dec) => Ok(Some(dec.push(&data, end)?)),
            ReadBody::Replace(body) => Ok(Some(body.take().unwrap_or_default())),
            ReadBody::Rewrite(r) => Ok(Some(r.push(&data, end))),
            ReadBody::UploadId(r) => r
                .push(&data, end)
                .map(Some)
                .ok_or(sealgate_envelope::StreamError::TrailingData),
            ReadBody::Parts(dec) => Ok(Some(dec.push(&data, end)?)),
            ReadBody::Whole(r) => Ok(Some(r.push(&data, end)?)),
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

/// Stored part size (in ListParts) to plaintext size.
fn listed_part_size(stored: u64, _parts: Option<u64>) -> u64 {
    sealgate_envelope::multipart::part_plaintext_len(stored).unwrap_or(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_sizes() {
        let c = sealgate_envelope::ciphertext_len(10 * 65_536 + 5);
        assert_eq!(listed_size(c, None), 10 * 65_536 + 5);
        assert_eq!(
            listed_size(c + 3 * PART_HEADER_LEN, Some(3)),
            10 * 65_536 + 5
        );
        assert_eq!(listed_size(7, None), 7, "impossible sizes stay as stored");
    }
}
