//! `storage.s3.stored_checksum: auto`: whether this backend verifies
//! aws-chunked trailers, found out once (and again when the endpoint's
//! address changes) by the probe of `filters::s3::body::chunked::probe`, in the
//! bucket of the first encrypted write, under the reserved prefix.
//!
//! The probe runs once at a time (other writes wait for its answer). An
//! inconclusive probe (the backend unreachable, the bucket refused) decides
//! nothing: writes go plain meanwhile, which every backend stores, and the
//! probe is tried again after [`RETRY_AFTER`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sealgate_config::StoredChecksum;
use sealgate_filters::ops::rewrap::element_text;
use sealgate_filters::s3::body::checksum::ChecksumAlgorithm;
use sealgate_filters::s3::body::chunked::encode::{STORED_CHECKSUM, UNSIGNED_TRAILER};
use sealgate_filters::s3::body::chunked::probe::{
    after_right_trailer, after_wrong_trailer, probe_body, probe_headers, Step, PROBE_DATA,
    PROBE_PREFIX,
};

use super::{encode_key, UpstreamError, UpstreamTarget};

/// How long an inconclusive probe is not repeated.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Longest a probe's steps may take, and then each deletion of what it
/// stored (writes wait for it).
const MAX_PROBE_TIME: Duration = Duration::from_secs(10);

/// Largest answer the probe reads.
const MAX_PROBE_ANSWER: usize = 64 * 1024;

/// Largest ListBuckets answer read to find a bucket to probe in.
const MAX_BUCKET_LIST: usize = 4 * 1024 * 1024;

/// What is known of the backend's trailers.
#[derive(Default)]
pub(crate) struct TrailerSupport {
    /// The probe's last definite finding (kept while a new one is sought).
    found: Mutex<Option<bool>>,
    /// The endpoint's address changed since: ask again.
    recheck: std::sync::atomic::AtomicBool,
    /// When the last probe was inconclusive.
    inconclusive: Mutex<Option<Instant>>,
    /// One probe at a time.
    probing: tokio::sync::Mutex<()>,
}

impl TrailerSupport {
    /// The endpoint's address changed: it may be another backend. The last
    /// finding stands until the next probe gives a definite one.
    pub(crate) fn forget(&self) {
        self.recheck
            .store(true, std::sync::atomic::Ordering::SeqCst);
        *self.inconclusive.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn settled(&self) -> Option<bool> {
        let recheck = self.recheck.load(std::sync::atomic::Ordering::SeqCst);
        self.found().filter(|_| !recheck)
    }

    fn found(&self) -> Option<bool> {
        *self.found.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the gateway's uploads go with, as `sealgate backend status` and the
/// metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredChecksumState {
    Crc32c,
    None,
    /// `auto`, not probed yet (or inconclusive so far).
    Unknown,
}

impl StoredChecksumState {
    pub const ALL: [Self; 3] = [Self::Crc32c, Self::None, Self::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crc32c => "crc32c",
            Self::None => "none",
            Self::Unknown => "unknown",
        }
    }
}

impl UpstreamTarget {
    /// AWS S3 verifies trailers on every endpoint: never probed.
    fn is_aws(&self) -> bool {
        let host = self.cfg.endpoint.host.to_ascii_lowercase();
        host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
    }

    /// The checksum a write into `bucket` goes upstream with: as configured,
    /// or for `auto` as the backend was found to take (probing it first if
    /// nobody has yet).
    pub async fn stored_checksum(&self, bucket: &str) -> Option<ChecksumAlgorithm> {
        match self.cfg.stored_checksum {
            StoredChecksum::Crc32c => Some(STORED_CHECKSUM),
            StoredChecksum::None => None,
            StoredChecksum::Auto if self.is_aws() => Some(STORED_CHECKSUM),
            StoredChecksum::Auto => self
                .trailers_verified(bucket)
                .await
                .then_some(STORED_CHECKSUM),
        }
    }

    /// The state to report, without probing.
    pub fn stored_checksum_state(&self) -> StoredChecksumState {
        match self.cfg.stored_checksum {
            StoredChecksum::Crc32c => StoredChecksumState::Crc32c,
            StoredChecksum::None => StoredChecksumState::None,
            StoredChecksum::Auto if self.is_aws() => StoredChecksumState::Crc32c,
            StoredChecksum::Auto => match self.trailers.settled() {
                Some(true) => StoredChecksumState::Crc32c,
                Some(false) => StoredChecksumState::None,
                None => StoredChecksumState::Unknown,
            },
        }
    }

    /// Records a finding made by another target (the start-up check's).
    pub(crate) fn assume_trailers(&self, found: bool) {
        *self
            .trailers
            .found
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(found);
    }

    /// A bucket the gateway's credentials list, to probe in.
    pub async fn any_bucket(&self) -> Result<Option<String>, String> {
        let (host, path) = self.address(None, None);
        let (resp, body) = self
            .get(&host, &path, None, MAX_BUCKET_LIST)
            .await
            .map_err(|e| e.to_string())?;
        if resp.status.as_u16() != 200 {
            return Err(format!(
                "listing buckets answered {} {}",
                resp.status.as_u16(),
                element_text(&body, "Code").unwrap_or_default()
            ));
        }
        // The first bucket that is this backend's own: a name the
        // configuration puts on another backend is not the bucket a client
        // of that name reaches, so the probe writes nothing there.
        // (Bucket names need no XML escapes.)
        let text = String::from_utf8_lossy(&body);
        Ok(text
            .split("<Name>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Name>").map(|(n, _)| n))
            .find(|n| !self.elsewhere.iter().any(|e| e == n))
            .map(str::to_string))
    }

    /// At start-up (and for `sealgate backend status`): whether the backend
    /// verifies trailers, probed in `bucket` or any listed one; `None` when
    /// there is none to probe in or nothing could be asked (logged).
    pub async fn check_trailers(&self, bucket: Option<&str>) -> Option<bool> {
        if self.is_aws() {
            return Some(true);
        }
        let bucket = match bucket {
            Some(b) => b.to_string(),
            None => match self.any_bucket().await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    tracing::info!(endpoint = %self.authority, "stored checksum: no bucket to probe the backend in yet; probed at the first encrypted write");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(endpoint = %self.authority, error = %e, "stored checksum: the backend could not be probed; probed at the first encrypted write");
                    return None;
                }
            },
        };
        match self.probe_trailers(&bucket).await {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::warn!(endpoint = %self.authority, bucket, error = %e, "stored checksum: the probe was inconclusive; probed again at the first encrypted write");
                None
            }
        }
    }

    async fn trailers_verified(&self, bucket: &str) -> bool {
        let t = &self.trailers;
        if let Some(found) = t.settled() {
            return found;
        }
        let recent = |at: &Option<Instant>| at.is_some_and(|t| t.elapsed() < RETRY_AFTER);
        // While unanswered: the last finding, else plain bodies (which
        // every backend stores).
        let meanwhile = || t.found().unwrap_or(false);
        if recent(&t.inconclusive.lock().unwrap_or_else(|e| e.into_inner())) {
            return meanwhile();
        }
        let _one = t.probing.lock().await;
        if let Some(found) = t.settled() {
            return found;
        }
        if recent(&t.inconclusive.lock().unwrap_or_else(|e| e.into_inner())) {
            return meanwhile();
        }
        match self.probe_trailers(bucket).await {
            Ok(found) => {
                *t.found.lock().unwrap_or_else(|e| e.into_inner()) = Some(found);
                t.recheck.store(false, std::sync::atomic::Ordering::SeqCst);
                tracing::info!(
                    endpoint = %self.authority,
                    stored_checksum = if found { "crc32c" } else { "none" },
                    "storage.s3.stored_checksum auto: {}",
                    if found {
                        "the backend verifies aws-chunked trailers; ciphertext goes with a trailing CRC32C"
                    } else {
                        "the backend does not verify aws-chunked trailers; ciphertext goes with a plain Content-Length"
                    }
                );
                found
            }
            Err(reason) => {
                *t.inconclusive.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                tracing::warn!(
                    endpoint = %self.authority,
                    bucket = ?bucket,
                    reason = ?reason,
                    "storage.s3.stored_checksum auto: the probe was inconclusive; the last finding (or plain bodies) until it succeeds"
                );
                meanwhile()
            }
        }
    }

    /// Asks the backend (see `filters::s3::body::chunked::probe`): `Ok(true)` when
    /// it refuses a wrong trailer as a bad digest, stores a right one and
    /// reads the data back exactly; `Ok(false)` when it answers the wrong
    /// trailer otherwise; `Err` when it could not be asked. The probe
    /// object is deleted in every case.
    pub async fn probe_trailers(&self, bucket: &str) -> Result<bool, String> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| e.to_string())?;
        let key = format!("{PROBE_PREFIX}{}", hex::encode(random));
        let (host, path) = self.address(Some(bucket), Some(&encode_key(&key)));
        let mut versions = Vec::new();
        let verdict = tokio::time::timeout(
            MAX_PROBE_TIME,
            self.probe_steps(&host, &path, &mut versions),
        )
        .await
        .unwrap_or_else(|_| Err("the probe took too long".to_string()));
        // Every version a step stored (a versioned bucket keeps each), or
        // the object itself.
        if versions.is_empty() {
            versions.push(None);
        }
        for version in versions {
            let target = match &version {
                Some(v) => format!("{path}?versionId={}", sealgate_filters::s3::uri::encode(v)),
                None => path.clone(),
            };
            let delete = self.request(
                "DELETE",
                &host,
                &target,
                &[],
                Bytes::new(),
                MAX_PROBE_ANSWER,
            );
            match tokio::time::timeout(MAX_PROBE_TIME, delete)
                .await
                .unwrap_or_else(|_| Err(UpstreamError::Probe("timed out".into())))
            {
                Ok((resp, _)) if resp.status.is_success() || resp.status == 404 => {}
                Ok((resp, _)) => {
                    tracing::warn!(bucket = ?bucket, key = ?key, status = resp.status.as_u16(), "deleting the stored-checksum probe failed")
                }
                Err(e) => {
                    tracing::warn!(bucket = ?bucket, key = ?key, error = %e, "deleting the stored-checksum probe failed")
                }
            }
        }
        verdict
    }

    /// The probe's three steps (see `filters::s3::body::chunked::probe`); notes
    /// the version of every object a step stored.
    async fn probe_steps(
        &self,
        host: &str,
        path: &str,
        versions: &mut Vec<Option<String>>,
    ) -> Result<bool, String> {
        let extra = probe_headers();
        let headers: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let put = |wrong: bool| {
            self.request_hashed(
                "PUT",
                host,
                path,
                &headers,
                probe_body(wrong),
                UNSIGNED_TRAILER,
                MAX_PROBE_ANSWER,
            )
        };
        let mut stored = |resp: &pingora::http::ResponseHeader| {
            if resp.status.is_success() {
                versions.push(
                    resp.headers
                        .get("x-amz-version-id")
                        .and_then(|v| v.to_str().ok())
                        .filter(|v| !v.is_empty() && *v != "null")
                        .map(str::to_string),
                );
            }
        };
        let inconclusive = |step: &str, status: u16, body: &[u8]| {
            format!(
                "{step} answered {status} {}",
                element_text(body, "Code").unwrap_or_default()
            )
        };
        let (resp, body) = put(true).await.map_err(|e| e.to_string())?;
        stored(&resp);
        let code = element_text(&body, "Code");
        match after_wrong_trailer(resp.status.as_u16(), code.as_deref()) {
            Step::Next => {}
            Step::Unverified => return Ok(false),
            Step::Inconclusive => {
                return Err(inconclusive("a wrong trailer", resp.status.as_u16(), &body))
            }
        }
        let (resp, body) = put(false).await.map_err(|e| e.to_string())?;
        stored(&resp);
        let code = element_text(&body, "Code");
        match after_right_trailer(resp.status.as_u16(), code.as_deref()) {
            Step::Next => {}
            Step::Unverified => return Ok(false),
            Step::Inconclusive => {
                return Err(inconclusive(
                    "the right trailer",
                    resp.status.as_u16(),
                    &body,
                ))
            }
        }
        let (resp, data) = self
            .get(host, path, None, MAX_PROBE_ANSWER)
            .await
            .map_err(|e| e.to_string())?;
        match resp.status.as_u16() {
            // The framing stored as data, or anything but the data: no.
            200 => Ok(data.as_ref() == PROBE_DATA),
            status => Err(inconclusive("reading it back", status, &data)),
        }
    }
}
