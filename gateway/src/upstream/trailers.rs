//! `storage.s3.stored_checksum: auto`: whether this backend verifies
//! aws-chunked trailers, found out once (and again when the endpoint's
//! address changes) by the probe of `filters::s3::chunked::probe`, in the
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
use sealgate_filters::rewrap::element_text;
use sealgate_filters::s3::checksum::ChecksumAlgorithm;
use sealgate_filters::s3::chunked::encode::{STORED_CHECKSUM, UNSIGNED_TRAILER};
use sealgate_filters::s3::chunked::probe::{
    probe_body, probe_headers, refused_as_bad_digest, PROBE_DATA, PROBE_PREFIX,
};

use super::{encode_key, UpstreamTarget};

/// How long an inconclusive probe is not repeated.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Largest answer the probe reads.
const MAX_PROBE_ANSWER: usize = 64 * 1024;

/// Largest ListBuckets answer read to find a bucket to probe in.
const MAX_BUCKET_LIST: usize = 4 * 1024 * 1024;

/// What is known of the backend's trailers.
#[derive(Default)]
pub(crate) struct TrailerSupport {
    /// The probe's finding, for the current address.
    found: Mutex<Option<bool>>,
    /// When the last probe was inconclusive.
    inconclusive: Mutex<Option<Instant>>,
    /// One probe at a time.
    probing: tokio::sync::Mutex<()>,
}

impl TrailerSupport {
    /// The endpoint's address changed: it may be another backend.
    pub(crate) fn forget(&self) {
        *self.found.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.inconclusive.lock().unwrap_or_else(|e| e.into_inner()) = None;
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
            StoredChecksum::Auto => match self.trailers.found() {
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
        Ok(element_text(&body, "Name"))
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
        if let Some(found) = self.trailers.found() {
            return found;
        }
        let recent = |at: &Option<Instant>| at.is_some_and(|t| t.elapsed() < RETRY_AFTER);
        if recent(
            &self
                .trailers
                .inconclusive
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        ) {
            return false;
        }
        let _one = self.trailers.probing.lock().await;
        if let Some(found) = self.trailers.found() {
            return found;
        }
        if recent(
            &self
                .trailers
                .inconclusive
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        ) {
            return false;
        }
        match self.probe_trailers(bucket).await {
            Ok(found) => {
                *self
                    .trailers
                    .found
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(found);
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
                *self
                    .trailers
                    .inconclusive
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                tracing::warn!(
                    endpoint = %self.authority,
                    bucket,
                    reason = %reason,
                    "storage.s3.stored_checksum auto: the probe was inconclusive; writes go without a stored checksum until it succeeds"
                );
                false
            }
        }
    }

    /// Asks the backend (see `filters::s3::chunked::probe`): `Ok(true)` when
    /// it refuses a wrong trailer as a bad digest, stores a right one and
    /// reads the data back exactly; `Ok(false)` when it answers the wrong
    /// trailer otherwise; `Err` when it could not be asked. The probe
    /// object is deleted in every case.
    pub async fn probe_trailers(&self, bucket: &str) -> Result<bool, String> {
        // Unique enough: one probe at a time per process.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let key = format!("{PROBE_PREFIX}{now:x}-{:x}", std::process::id());
        let (host, path) = self.address(Some(bucket), Some(&encode_key(&key)));
        let verdict = self.probe_steps(&host, &path).await;
        let deleted = self
            .request("DELETE", &host, &path, &[], Bytes::new(), MAX_PROBE_ANSWER)
            .await;
        match (&verdict, deleted) {
            (Ok(_), Ok((resp, _))) if !resp.status.is_success() && resp.status != 404 => {
                tracing::warn!(
                    bucket,
                    key,
                    status = resp.status.as_u16(),
                    "deleting the stored-checksum probe failed"
                )
            }
            (Ok(_), Err(e)) => {
                tracing::warn!(bucket, key, error = %e, "deleting the stored-checksum probe failed")
            }
            _ => {}
        }
        verdict
    }

    async fn probe_steps(&self, host: &str, path: &str) -> Result<bool, String> {
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
        let (resp, body) = put(true).await.map_err(|e| e.to_string())?;
        let status = resp.status.as_u16();
        if status == 403 || status == 404 || status >= 500 {
            return Err(format!(
                "the backend answered {status} {}",
                element_text(&body, "Code").unwrap_or_default()
            ));
        }
        if !refused_as_bad_digest(status, element_text(&body, "Code").as_deref()) {
            return Ok(false);
        }
        let (resp, _) = put(false).await.map_err(|e| e.to_string())?;
        if !resp.status.is_success() {
            return Ok(false);
        }
        let (resp, stored) = self
            .get(host, path, None, MAX_PROBE_ANSWER)
            .await
            .map_err(|e| e.to_string())?;
        Ok(resp.status.as_u16() == 200 && stored.as_ref() == PROBE_DATA)
    }
}
