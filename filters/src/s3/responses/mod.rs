//! What the client is answered: S3 errors (the gateway's own and the
//! backend's, made fit for the client), and backend answers about stored
//! bytes rewritten in plaintext terms (listings, object attributes).

pub mod attributes;
pub mod backend_error;
pub mod error;
pub mod listing;
