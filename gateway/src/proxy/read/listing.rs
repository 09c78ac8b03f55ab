//! Listing stage: object listings and ListParts of encrypting buckets show
//! plaintext sizes (and no checksums of stored bytes), rewritten as the
//! response streams (ListParts: one bounded page, rewritten whole).

use std::sync::Arc;

use sealgate_config::{BucketGrant, Config};
use sealgate_filters::auth::permissions_in;
use sealgate_filters::s3::multipart;
use sealgate_filters::s3::responses::listing::{
    filter_buckets, listed_part_size, listed_size, SizeRewriter,
};

use crate::proxy::response::{ResponseBody, WholeRewrite};

/// Object listings (ListObjects, ListObjectsV2, ListObjectVersions).
pub fn objects() -> ResponseBody {
    ResponseBody::Rewrite(SizeRewriter::new(
        listed_size as fn(u64, Option<u64>) -> u64,
    ))
}

/// ListBuckets (of `storage.s3`'s backend): only the buckets the client
/// holds some permission in, each by the name clients use (its alias),
/// rewritten whole (a small document). A bucket of the same name that the
/// configuration puts on a backend of its own is not this one: not shown.
pub fn buckets(config: Arc<Config>, grants: Arc<[BucketGrant]>) -> ResponseBody {
    ResponseBody::Whole(WholeRewrite::new(move |text| {
        let elsewhere = config.bucket_backends();
        filter_buckets(text, |real| {
            if elsewhere.contains_key(real) {
                return None;
            }
            config
                .visible_name(real)
                .filter(|name| !permissions_in(&grants, name).is_empty())
                .map(str::to_string)
        })
    }))
}

/// ListParts of an upload the gateway began, whose token the client sent
/// as `client_id` (if it sent one: then the backend's id is replaced).
pub fn parts(client_id: Option<String>) -> ResponseBody {
    ResponseBody::Whole(list_parts_rewrite(client_id))
}

/// ListParts of an encrypted upload: plaintext part sizes, no checksums
/// of stored bytes (the client's own were not kept), and the client's
/// upload id, not the backend's.
fn list_parts_rewrite(client_id: Option<String>) -> WholeRewrite {
    WholeRewrite::new(move |text| {
        let stripped = multipart::strip_checksums(text, true);
        let mut sizes = SizeRewriter::new(listed_part_size);
        let sized = String::from_utf8_lossy(&sizes.push(stripped.as_bytes(), true)).into_owned();
        match client_id {
            Some(id) => multipart::with_client_upload_id(&sized, &id),
            None => sized,
        }
    })
}
