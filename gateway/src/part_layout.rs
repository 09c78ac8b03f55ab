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
//! by the object's ETag, so a multipart downloader's many range reads of
//! one object cost the walk once.

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

/// Why no layout was found.
#[derive(Debug)]
pub enum LayoutError {
    /// The backend could not be asked: the client may retry.
    Unavailable(UpstreamError),
    /// The object was replaced while its headers were read.
    Changed,
    /// The headers do not describe an object of the stored size: tampered
    /// or truncated (never decrypted).
    Integrity,
}

/// One stored object version: its place, ETag, size and first part salt.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ObjectVersion {
    host: String,
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

/// Layouts found by this instance.
pub struct LayoutCache(Cache<ObjectVersion, Layout, LayoutWeight>);

impl Default for LayoutCache {
    fn default() -> Self {
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(LAYOUT_CACHE_ITEMS)
            .weight_capacity(LAYOUT_CACHE_WEIGHT)
            .shards(LAYOUT_CACHE_SHARDS)
            .build()
            .expect("the layout cache's options are valid");
        Self(Cache::with_options(
            options,
            LayoutWeight,
            Default::default(),
            Default::default(),
        ))
    }
}

/// Where a layout is read from: the object and the version probed.
#[derive(Clone, Copy)]
struct Object<'a> {
    host: &'a str,
    path: &'a str,
    etag: Option<&'a str>,
}

/// The part count a multipart ETag states (`"…-N"`).
pub fn etag_parts(etag: &str) -> Option<u64> {
    let (_, n) = etag.trim_matches('"').rsplit_once('-')?;
    n.parse().ok().filter(|n| (1..=MAX_PARTS).contains(n))
}

impl UpstreamTarget {
    /// The layout of the multipart object at `path`, whose first part
    /// header, stored size and ETag (if the backend sent one) a probe found.
    pub async fn part_layout(
        &self,
        host: &str,
        path: &str,
        first: &PartHeader,
        stored_total: u64,
        etag: Option<&str>,
    ) -> Result<Layout, LayoutError> {
        let version = etag.map(|etag| ObjectVersion {
            host: host.to_string(),
            path: path.to_string(),
            etag: etag.to_string(),
            stored_total,
            salt: first.salt,
        });
        if let Some(found) = version.as_ref().and_then(|v| self.layouts.0.get(v)) {
            return Ok(found);
        }
        let object = Object { host, path, etag };
        let layout = self.find_layout(&object, first, stored_total).await?;
        if let Some(v) = version {
            self.layouts.0.insert(v, layout.clone());
        }
        Ok(layout)
    }

    async fn find_layout(
        &self,
        object: &Object<'_>,
        first: &PartHeader,
        stored_total: u64,
    ) -> Result<Layout, LayoutError> {
        if first.number != 1 {
            return Err(LayoutError::Integrity);
        }
        let regular = Layout::new(first.size, stored_total).filter(|l| {
            object
                .etag
                .and_then(etag_parts)
                .is_none_or(|n| n == l.parts())
        });
        if let Some(layout) = regular {
            let last = layout.parts() - 1;
            if last == 0 {
                return Ok(layout);
            }
            // Where the regular layout is wrong, its last header lands in
            // another part's frames, or on another part's header.
            let header = self.header_at(object, layout.part_start(last)).await?;
            if header.is_some_and(|h| {
                u64::from(h.number) == layout.parts() && h.size == layout.last_part_size()
            }) {
                return Ok(layout);
            }
        }
        let mut walk = PartWalk::new(first, stored_total).map_err(|_| LayoutError::Integrity)?;
        while let Some(at) = walk.next_offset() {
            let header = self
                .header_at(object, at)
                .await?
                .ok_or(LayoutError::Integrity)?;
            walk.push(&header).map_err(|_| LayoutError::Integrity)?;
        }
        walk.finish().map_err(|_| LayoutError::Integrity)
    }

    /// The 48 bytes stored at `at` (of the object version `etag`) read as
    /// a part header; `None` if they are none.
    async fn header_at(
        &self,
        object: &Object<'_>,
        at: u64,
    ) -> Result<Option<PartHeader>, LayoutError> {
        let Object { host, path, etag } = *object;
        let range = format!("bytes={at}-{}", at + PART_HEADER_LEN - 1);
        let mut headers = vec![("range", range.as_str())];
        if let Some(e) = etag {
            headers.push(("if-match", e));
        }
        let (resp, body) = self
            .request(
                "GET",
                host,
                path,
                &headers,
                bytes::Bytes::new(),
                MAX_HEADER_ANSWER,
            )
            .await
            .map_err(LayoutError::Unavailable)?;
        let sent_etag = resp.headers.get("etag").and_then(|v| v.to_str().ok());
        let content_start = resp
            .headers
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split_once('-'))
            .and_then(|(start, _)| start.trim().parse::<u64>().ok());
        // Some backends ignore If-Match on GET: the ETag is compared too.
        if resp.status.as_u16() != 206
            || content_start != Some(at)
            || (etag.is_some() && sent_etag != etag)
        {
            return Err(LayoutError::Changed);
        }
        Ok(PartHeader::decode(&body))
    }
}

#[cfg(test)]
mod tests {
    use super::etag_parts;

    #[test]
    fn part_counts_come_from_multipart_etags_only() {
        assert_eq!(etag_parts("\"0123abcd-12\""), Some(12));
        assert_eq!(etag_parts("0123abcd-1"), Some(1));
        assert_eq!(etag_parts("\"0123abcd\""), None);
        assert_eq!(etag_parts("\"0123abcd-0\""), None);
        assert_eq!(etag_parts("\"0123abcd-10001\""), None);
        assert_eq!(etag_parts("\"ab-x\""), None);
    }
}
