//! Who sent a request: SigV4 (headers, presigned URLs, streaming chunk
//! signatures), SigV2 (headers and presigned URLs), and the policies of
//! browser POST uploads.

pub mod post_policy;
pub mod sigv2;
pub mod sigv4;
