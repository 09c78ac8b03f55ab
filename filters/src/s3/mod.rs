//! The S3 protocol: request classification, SigV4, errors, URI encoding.

pub mod auth;
pub mod body;
pub mod cors;
pub mod key_rules;
pub mod multipart;
pub mod request;
pub mod responses;
pub mod uri;
pub(crate) mod xml;

pub use request::{Addressing, Operation, S3Request};
pub use responses::error::{S3Error, S3ErrorCode};
