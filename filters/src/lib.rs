//! sealgate's per-request logic with no I/O: everything here is a pure
//! function or state machine over bytes and headers, so it can be unit-,
//! property- and fuzz-tested without a network. The `gateway` crate drives
//! it from Pingora's phases.

pub mod auth;
pub mod header_watch;
pub mod holdback;
pub mod keys;
pub mod ops;
pub mod permission;
pub mod plan;
pub mod policy;
pub mod proxy_protocol;
pub mod rate;
pub mod s3;

#[cfg(test)]
mod hostile_tests;
