//! Finding where the parts of a stored multipart object lie.
//!
//! Mainstream clients upload every part but the last at one size: the
//! layout then follows from the first part's header and the stored size,
//! confirmed by one more read, of the last part's header where the regular
//! layout puts it (CompleteMultipartUpload refuses the rare other layouts
//! that would pass this check: `mistakable_for_regular`). Any other layout
//! (unequal parts, a part re-uploaded at another size, an empty or larger
//! last part) is found by reading each part's header in turn, since each
//! says where the next begins. Found layouts are kept per instance, keyed
//! by the object version (host, path, `versionId`), its ETag, stored size
//! and first part salt, so a multipart downloader's many range reads of
//! one object cost the walk once, whatever else their queries hold.
//!
//! Part headers are not authenticated until decryption, so what a walk
//! costs is bounded by what the backend says: a multipart ETag's part
//! count (`"…-N"`) must be the layout's, and a walk ends as soon as a
//! header would make it wrong; at most [`read_budget`] header reads and
//! [`MAX_LAYOUT_TIME`] per layout. Callers check that an object belongs to
//! the reader's bucket before asking for its layout, so a planted object
//! costs no walk at all.

use std::time::Duration;

use quick_cache::sync::Cache;
use sealgate_envelope::multipart::{Layout, PartHeader, PartWalk, MAX_PARTS, PART_HEADER_LEN};

use crate::upstream::{UpstreamError, UpstreamTarget};

/// Part sizes the kept layouts may hold in all (about 24 bytes each): a
/// few hundred irregular objects of many parts, or thousands of regular
/// ones (each weighs one).
const LAYOUT_CACHE_WEIGHT: u64 = 200_000;

/// Largest answer read for one part header (48 bytes asked for).
const MAX_HEADER_ANSWER: usize = 4096;

/// Layouts kept: the estimate quick_cache sizes its table by.
const LAYOUT_CACHE_ITEMS: usize = 4_096;

/// Shards of the layout cache: few, so that each shard's share of the
/// weight holds a table of the most parts an object can have (10,000).
const LAYOUT_CACHE_SHARDS: usize = 4;

/// Most header reads one layout may cost: the regular layout's check and
/// the headers after the first of an object of the most parts S3 allows.
const MAX_LAYOUT_READS: u64 = MAX_PARTS;

/// Longest finding one layout may take: header reads are sequential (each
/// says where the next is), so a slow backend or an object of many
/// irregular parts would otherwise hold the request and a connection for
/// thousands of round trips.
const MAX_LAYOUT_TIME: Duration = Duration::from_secs(30);

/// Why no layout was found.
#[derive(Debug)]
pub enum LayoutError {
    /// The backend could not be asked: the client may retry.
    Unavailable(UpstreamError),
    /// The object was replaced while its headers were read.
    Changed,
    /// The headers do not describe an object of the stored size (or of the
    /// part count its ETag states): tampered or truncated (never decrypted).
    Integrity,
    /// Reading the headers took longer than [`MAX_LAYOUT_TIME`]: the
    /// backend is slow; the client may retry.
    TimedOut,
}

/// One stored object version: its place, ETag, size and first part salt.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ObjectVersion {
    host: String,
    /// The object's path and its `versionId`, if one was asked for (no
    /// other query parameter: see [`object_address`]).
    path: String,
    etag: String,
    stored_total: u64,
    salt: [u8; 32],
}

#[derive(Clone)]
struct LayoutWeight;

impl quick_cache::Weighter<ObjectVersion, Layout> for LayoutWeight {
    fn weight(&self, _: &ObjectVersion, layout: &Layout) -> u64 {
        if layout.is_regular() {
            1
        } else {
            layout.parts()
        }
    }
}

/// Layouts found by this instance, and the object versions whose headers
/// describe no layout (a walk of a version is pinned to its ETag, so its
/// outcome never changes: a tampered object is walked once, not once per
/// read).
pub struct LayoutCache(
    Cache<ObjectVersion, Layout, LayoutWeight>,
    Cache<ObjectVersion, ()>,
);

/// Object versions kept as having no layout.
const FAILED_LAYOUTS: usize = 4_096;

impl Default for LayoutCache {
    fn default() -> Self {
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(LAYOUT_CACHE_ITEMS)
            .weight_capacity(LAYOUT_CACHE_WEIGHT)
            .shards(LAYOUT_CACHE_SHARDS)
            .build()
            .expect("the layout cache's options are valid");
        Self(
            Cache::with_options(
                options,
                LayoutWeight,
                Default::default(),
                Default::default(),
            ),
            Cache::new(FAILED_LAYOUTS),
        )
    }
}

/// The part count a multipart ETag states (`"…-N"`).
pub fn etag_parts(etag: &str) -> Option<u64> {
    let (_, n) = etag.trim_matches('"').rsplit_once('-')?;
    n.parse().ok().filter(|n| (1..=MAX_PARTS).contains(n))
}

/// Header reads a layout of an object stating `parts` parts (if its ETag
/// does) may cost: one for the regular layout's check and one for each
/// part after the first, never more than [`MAX_LAYOUT_READS`].
fn read_budget(parts: Option<u64>) -> u64 {
    parts.map_or(MAX_LAYOUT_READS, |n| {
        n.saturating_add(1).min(MAX_LAYOUT_READS)
    })
}

/// The object version an upstream path and query addresses: the path and
/// its `versionId`, every other query parameter (`response-*`, whatever a
/// client adds) dropped, so that one version has one place in the cache
/// and the walk asks for nothing but its bytes.
fn object_address(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    match query
        .split('&')
        .find(|p| p.split('=').next() == Some("versionId"))
    {
        Some(version) => format!("{path}?{version}"),
        None => path.to_string(),
    }
}

impl UpstreamTarget {
    /// The layout of the multipart object at `path` (query parameters other
    /// than `versionId` are ignored), whose first part header, stored size
    /// and ETag (if the backend sent one) a probe found. The caller has
    /// checked that the reader may have the object decrypted.
    pub async fn part_layout(
        &self,
        host: &str,
        path: &str,
        first: &PartHeader,
        stored_total: u64,
        etag: Option<&str>,
    ) -> Result<Layout, LayoutError> {
        let address = object_address(path);
        let version = etag.map(|etag| ObjectVersion {
            host: host.to_string(),
            path: address.clone(),
            etag: etag.to_string(),
            stored_total,
            salt: first.salt,
        });
        if let Some(found) = version.as_ref().and_then(|v| self.layouts.0.get(v)) {
            return Ok(found);
        }
        if version
            .as_ref()
            .is_some_and(|v| self.layouts.1.get(v).is_some())
        {
            return Err(LayoutError::Integrity);
        }
        let parts = etag.and_then(etag_parts);
        let mut reader = HeaderReader {
            upstream: self,
            host,
            path: &address,
            etag,
            reads_left: read_budget(parts),
        };
        let found = find_layout(&mut reader, first, stored_total, parts);
        let layout = match tokio::time::timeout(MAX_LAYOUT_TIME, found).await {
            Err(_) => return Err(LayoutError::TimedOut),
            Ok(Err(LayoutError::Integrity)) => {
                if let Some(v) = version {
                    self.layouts.1.insert(v, ());
                }
                return Err(LayoutError::Integrity);
            }
            Ok(found) => found?,
        };
        if let Some(v) = version {
            self.layouts.0.insert(v, layout.clone());
        }
        Ok(layout)
    }
}

/// The layout from the first part's header and the stored size: the
/// regular one if its last header confirms it, else a walk of every
/// header; both must have `parts` parts when the ETag states a count.
async fn find_layout(
    reader: &mut HeaderReader<'_>,
    first: &PartHeader,
    stored_total: u64,
    parts: Option<u64>,
) -> Result<Layout, LayoutError> {
    if first.number != 1 {
        return Err(LayoutError::Integrity);
    }
    let regular =
        Layout::new(first.size, stored_total).filter(|l| parts.is_none_or(|n| n == l.parts()));
    if let Some(layout) = regular {
        let last = layout.parts() - 1;
        if last == 0 {
            return Ok(layout);
        }
        // Where the regular layout is wrong, its last header lands in
        // another part's frames, or on another part's header.
        let header = reader.header_at(layout.part_start(last)).await?;
        if header.is_some_and(|h| {
            u64::from(h.number) == layout.parts() && h.size == layout.last_part_size()
        }) {
            return Ok(layout);
        }
    }
    let mut walk =
        PartWalk::expecting(first, stored_total, parts).map_err(|_| LayoutError::Integrity)?;
    while let Some(at) = walk.next_offset() {
        let header = reader.header_at(at).await?.ok_or(LayoutError::Integrity)?;
        walk.push(&header).map_err(|_| LayoutError::Integrity)?;
    }
    walk.finish().map_err(|_| LayoutError::Integrity)
}

/// Reads the part headers of one object version, within a budget.
struct HeaderReader<'a> {
    upstream: &'a UpstreamTarget,
    host: &'a str,
    /// Path and `versionId` only.
    path: &'a str,
    /// The version probed, when the backend sent its ETag.
    etag: Option<&'a str>,
    /// Reads left ([`read_budget`]): past it, the object claims more
    /// parts than it can have.
    reads_left: u64,
}

impl HeaderReader<'_> {
    /// The 48 bytes stored at `at` (of the object version `etag`) read as
    /// a part header; `None` if they are none.
    async fn header_at(&mut self, at: u64) -> Result<Option<PartHeader>, LayoutError> {
        self.reads_left = self
            .reads_left
            .checked_sub(1)
            .ok_or(LayoutError::Integrity)?;
        let etag = self.etag;
        let range = format!("bytes={at}-{}", at + PART_HEADER_LEN - 1);
        let mut headers = vec![("range", range.as_str())];
        if let Some(e) = etag {
            headers.push(("if-match", e));
        }
        let (resp, body) = self
            .upstream
            .request(
                "GET",
                self.host,
                self.path,
                &headers,
                bytes::Bytes::new(),
                MAX_HEADER_ANSWER,
            )
            .await
            .map_err(LayoutError::Unavailable)?;
        let sent_etag = resp.headers.get("etag").and_then(|v| v.to_str().ok());
        let content_range = resp
            .headers
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(content_range);
        // Some backends ignore If-Match on GET: the ETag is compared too.
        // The answer must be the whole range asked for (up to the object's
        // end): a reply cut short says nothing about the stored bytes, and
        // a failed walk is kept as the version's (`part_layout`).
        let whole = content_range.is_some_and(|(start, end, total)| {
            start == at
                && end == (at + PART_HEADER_LEN - 1).min(total.saturating_sub(1))
                && body.len() as u64 == end - start + 1
        });
        if resp.status.as_u16() != 206 || !whole || (etag.is_some() && sent_etag != etag) {
            return Err(LayoutError::Changed);
        }
        Ok(PartHeader::decode(&body))
    }
}

/// `bytes start-end/total` of a `Content-Range`.
fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start <= end).then_some((start, end, total.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::{content_range, etag_parts, object_address, read_budget, MAX_LAYOUT_READS};

    #[test]
    fn content_ranges_are_read_whole_or_not_at_all() {
        assert_eq!(content_range("bytes 0-47/100"), Some((0, 47, 100)));
        assert_eq!(content_range("bytes 52-99/100"), Some((52, 99, 100)));
        for bad in [
            "bytes 0-47/*",
            "bytes 47-0/100",
            "0-47/100",
            "bytes 0-x/100",
            "bytes 0-47",
        ] {
            assert_eq!(content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn part_counts_come_from_multipart_etags_only() {
        assert_eq!(etag_parts("\"0123abcd-12\""), Some(12));
        assert_eq!(etag_parts("0123abcd-1"), Some(1));
        assert_eq!(etag_parts("\"0123abcd\""), None);
        assert_eq!(etag_parts("\"0123abcd-0\""), None);
        assert_eq!(etag_parts("\"0123abcd-10001\""), None);
        assert_eq!(etag_parts("\"ab-x\""), None);
    }

    #[test]
    fn a_stated_part_count_bounds_the_reads() {
        assert_eq!(read_budget(Some(2)), 3);
        assert_eq!(read_budget(Some(1)), 2);
        assert_eq!(read_budget(Some(10_000)), MAX_LAYOUT_READS);
        assert_eq!(read_budget(None), MAX_LAYOUT_READS);
    }

    #[test]
    fn one_version_has_one_address_whatever_the_query() {
        assert_eq!(object_address("/b/k"), "/b/k");
        assert_eq!(object_address("/b/k?junk=1"), "/b/k");
        assert_eq!(
            object_address("/b/k?response-content-type=x&junk=2"),
            "/b/k"
        );
        assert_eq!(
            object_address("/b/k?junk=1&versionId=v1"),
            "/b/k?versionId=v1"
        );
        assert_eq!(object_address("/b/k?versionId=v1"), "/b/k?versionId=v1");
        assert_eq!(object_address("/b/k?versionIdX=1"), "/b/k");
        assert_eq!(object_address("/k?versionId=a%2Bb"), "/k?versionId=a%2Bb");
    }
}
