//! Listing stage: object listings and ListParts of encrypting buckets show
//! plaintext sizes (and no checksums of stored bytes), rewritten as the
//! response streams (ListParts: one bounded page, rewritten whole).

use std::sync::Arc;

use sealgate_config::Glob;
use sealgate_filters::s3::listing::{filter_buckets, listed_part_size, listed_size, SizeRewriter};

use super::response::{ResponseBody, WholeRewrite};

/// Object listings (ListObjects, ListObjectsV2, ListObjectVersions).
pub fn objects() -> ResponseBody {
    ResponseBody::Rewrite(SizeRewriter::new(
        listed_size as fn(u64, Option<u64>) -> u64,
    ))
}

/// ListBuckets: only the buckets the client's patterns name (a small
/// document, rewritten whole).
pub fn buckets(patterns: Arc<[Glob]>) -> ResponseBody {
    ResponseBody::Whole(WholeRewrite::new(move |text| {
        filter_buckets(text, |b| patterns.iter().any(|g| g.matches(b)))
    }))
}

/// ListParts of an upload the gateway began.
pub fn parts() -> ResponseBody {
    ResponseBody::Whole(list_parts_rewrite())
}

/// ListParts of an encrypted upload: plaintext part sizes, and no
/// checksums of stored bytes (the client's own were not kept).
fn list_parts_rewrite() -> WholeRewrite {
    WholeRewrite::new(|text| {
        let stripped = sealgate_filters::s3::multipart::strip_checksums(text, true);
        let mut sizes = SizeRewriter::new(listed_part_size);
        String::from_utf8_lossy(&sizes.push(stripped.as_bytes(), true)).into_owned()
    })
}
