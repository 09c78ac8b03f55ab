//! The S3 protocol: request classification, SigV4, errors, URI encoding.

pub mod attributes;
pub mod backend_error;
pub mod checksum;
pub mod chunked;
pub mod cors;
pub mod error;
pub mod key_rules;
pub mod listing;
pub mod multipart;
pub mod multipart_checksum;
pub mod post_form;
pub mod post_policy;
pub mod request;
pub mod sigv2;
pub mod sigv4;
pub mod upload_id;
pub mod upload_records;
pub mod uri;
pub(crate) mod xml;

pub use error::{S3Error, S3ErrorCode};
pub use request::{Addressing, Operation, S3Request};
