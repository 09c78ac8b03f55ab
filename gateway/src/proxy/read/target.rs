//! What a read is after (from the plan) and what the stored object turned
//! out to be: the types the read stage passes between its probe, its
//! response check and its decryptor, and the pure helpers around them.

use pingora::http::{RequestHeader, ResponseHeader};
use sealgate_envelope::format::ByteRange;
use sealgate_envelope::multipart::{Layout, PartHeader};
use sealgate_envelope::EnvelopeMeta;
use sealgate_filters::keys::KeyError;
use sealgate_filters::plan::ReadRequest;
use sealgate_filters::policy::{BucketEncryption, Unbound};
use sealgate_filters::s3::{S3Error, S3ErrorCode};

use crate::keys::key_error;
use crate::part_layout::LayoutError;
use crate::proxy::errors::internal;

/// What the client asked to read (from the plan), and what a probe found.
pub struct ReadPlan {
    pub range: Option<ByteRange>,
    /// `?partNumber=N`: a read of one part.
    pub part_number: Option<u32>,
    /// The parts of a multipart object read by part number
    /// (`x-amz-mp-parts-count`).
    pub parts_count: Option<u64>,
    pub head: bool,
    /// Plaintext objects are refused (the bucket's policy is mandatory).
    pub mandatory: bool,
    /// What a probe of the object found (ranged reads probe first, so the
    /// upstream range fetches exactly the frames needed).
    pub target: Option<ReadTarget>,
    /// The stored byte range to ask upstream for, replacing the client's.
    pub upstream_range: Option<(u64, u64)>,
    /// Which stored objects this bucket's clients may have decrypted.
    pub binding: Option<ReadBinding>,
}

/// Who reads: a probed object must be bound to the reader's bucket before
/// anything else is read of it (its part headers are not authenticated,
/// so a planted object's could ask for thousands of reads).
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    pub live: &'a crate::live::Live,
    /// The read, with the binding of the bucket read from.
    pub read: &'a ReadPlan,
    /// Names the object in a refusal ("the object", "the copy source").
    pub what: &'a str,
}

/// The bucket's encryption and its provider's default key: what a stored
/// object's envelope must agree with before it is decrypted here.
#[derive(Clone)]
pub struct ReadBinding {
    pub enc: BucketEncryption,
    pub default_key_id: String,
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

impl ReadTarget {
    /// Takes the envelope out (leaving an empty one): a read that decrypts
    /// needs it beside the target, and a copy costs about ten allocations.
    pub fn take_meta(&mut self) -> EnvelopeMeta {
        match self {
            ReadTarget::Single { meta, .. } | ReadTarget::Multipart { meta, .. } => {
                std::mem::take(meta)
            }
            ReadTarget::Plain => EnvelopeMeta::default(),
        }
    }
}

impl ReadPlan {
    pub fn new(r: ReadRequest, binding: Option<ReadBinding>) -> Self {
        Self {
            binding,
            range: r.range,
            part_number: r.part_number,
            parts_count: None,
            head: r.head,
            mandatory: r.mandatory,
            target: None,
            upstream_range: None,
        }
    }

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

/// 206 headers for plaintext bytes `first..=last` of `total`.
pub fn set_range_headers(
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

/// A stored object that fails its integrity checks: never any plaintext.
pub fn integrity_error() -> S3Error {
    S3Error::new(
        S3ErrorCode::InternalError,
        "the stored object failed its integrity checks and cannot be decrypted",
    )
}

/// The stored object changed between the gateway's probe and its read.
pub fn changed() -> S3Error {
    S3Error::new(
        S3ErrorCode::ServiceUnavailable,
        "the object changed while it was being read; retry",
    )
}

impl crate::proxy::Gateway {
    /// The part layout of the multipart object at `route`, from a probe's
    /// answer `resp` (its ETag) and the first part's header.
    pub(in crate::proxy) async fn layout_of(
        &self,
        route: &crate::proxy::route::Route,
        resp: &ResponseHeader,
        first: &PartHeader,
        stored_total: u64,
        request_id: &str,
    ) -> Result<Layout, S3Error> {
        let etag = resp.headers.get("etag").and_then(|v| v.to_str().ok());
        self.backend(route.bucket.as_deref())
            .part_layout(
                &route.upstream_host,
                &route.upstream_path_and_query,
                first,
                stored_total,
                etag,
            )
            .await
            .map_err(|e| match e {
                LayoutError::Unavailable(e) => {
                    tracing::warn!(request_id = %request_id, error = %e, "reading part headers failed");
                    S3Error::new(
                        S3ErrorCode::ServiceUnavailable,
                        "the storage backend could not be reached; retry",
                    )
                }
                LayoutError::Changed => changed(),
                LayoutError::Integrity => self.integrity("part"),
                LayoutError::TimedOut => {
                    tracing::warn!(request_id = %request_id, "reading part headers took too long");
                    S3Error::new(
                        S3ErrorCode::ServiceUnavailable,
                        "the storage backend was too slow to describe the object's parts; retry",
                    )
                }
            })
    }

    /// Refuses (counted, `AccessDenied`) an object that does not belong to
    /// this bucket; `what` names it in the message ("the object", "the copy
    /// source").
    pub(in crate::proxy) async fn require_bound(
        &self,
        live: &crate::live::Live,
        read: &ReadPlan,
        meta: &EnvelopeMeta,
        what: &str,
    ) -> Result<(), S3Error> {
        self.check_bound(live, read, meta).await?.map_err(|reason| {
            self.metrics
                .binding_refusals_total
                .with_label_values(&[reason.as_str()])
                .inc();
            S3Error::new(
                S3ErrorCode::AccessDenied,
                format!(
                    "{what} is not encrypted under a key and context its bucket's policy allows"
                ),
            )
        })
    }

    /// Does the object belong to this bucket? Key ids compare as written
    /// first; where they differ, the bucket's configured ids are compared
    /// in the form objects record (a KMS alias as its key's ARN).
    async fn check_bound(
        &self,
        live: &crate::live::Live,
        read: &ReadPlan,
        meta: &EnvelopeMeta,
    ) -> Result<Result<(), Unbound>, S3Error> {
        match &read.binding {
            None => Ok(Err(Unbound::Key)),
            Some(b) => {
                self.key_bound(
                    live,
                    &b.enc,
                    &b.default_key_id,
                    &meta.provider,
                    &meta.key_id,
                    &meta.context,
                )
                .await
            }
        }
    }

    /// May data sealed under `provider`/`key_id` with `context` be opened
    /// for the bucket `b` binds? Key ids compare as written first; where
    /// they differ, the bucket's configured ids are compared in the form
    /// objects record (a KMS alias as its key's ARN). Only the bucket's
    /// own configured ids are ever resolved at the provider, never the
    /// id given.
    pub(in crate::proxy) async fn key_bound(
        &self,
        live: &crate::live::Live,
        bucket: &BucketEncryption,
        default_key_id: &str,
        provider_name: &str,
        key_id: &str,
        context: &std::collections::BTreeMap<String, String>,
    ) -> Result<Result<(), Unbound>, S3Error> {
        let first = bucket.check_stored(default_key_id, provider_name, key_id, context);
        if first != Err(Unbound::Key) || provider_name != bucket.provider {
            return Ok(first);
        }
        let provider = live.provider(&bucket.provider)?;
        // Each configured id on its own: one that cannot be resolved (a
        // deleted alias, no DescribeKey right) matches nothing, and fails
        // no read of objects under the others.
        // A provider that could not be asked (down, throttled) makes a
        // failed match a 503 the client may retry, not an AccessDenied.
        let mut unavailable = None;
        let mut canon = async |id: String| match provider.canonical_key_id(&id).await {
            Ok(arn) => provider.binding_key_id(&arn),
            Err(e @ (KeyError::Unavailable(_) | KeyError::Throttled(_))) => {
                unavailable = Some(e);
                id
            }
            Err(_) => id,
        };
        let mut enc = bucket.clone();
        let own = enc
            .key_id
            .take()
            .unwrap_or_else(|| default_key_id.to_string());
        enc.key_id = Some(canon(own).await);
        for list in [&mut enc.allowed_key_ids, &mut enc.readable_key_ids] {
            for id in list.iter_mut() {
                *id = canon(std::mem::take(id)).await;
            }
        }
        let checked = enc.check_stored(
            default_key_id,
            provider_name,
            &provider.binding_key_id(key_id),
            context,
        );
        if let (Err(Unbound::Key), Some(e)) = (&checked, unavailable) {
            return Err(key_error(e));
        }
        Ok(checked)
    }
}

impl crate::live::Live {
    /// The binding reads in a bucket with `enc` are checked against.
    pub(in crate::proxy) fn read_binding(
        &self,
        enc: Option<BucketEncryption>,
    ) -> Option<ReadBinding> {
        let enc = enc?;
        let default_key_id = self.providers.get(&enc.provider)?.default_key_id();
        Some(ReadBinding {
            default_key_id: default_key_id.to_string(),
            enc,
        })
    }
}
