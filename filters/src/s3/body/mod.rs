//! Request bodies: the checksums a client asks for, aws-chunked framing,
//! and the multipart/form-data of browser POST uploads.

pub mod checksum;
pub mod chunked;
pub mod post_form;
