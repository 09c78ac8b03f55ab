//! sealgate: an S3 encryption edge gateway on Pingora.
//!
//! This crate wires the pure logic of `sealgate-filters` into Pingora's
//! phases, owns every socket (clients, upstream S3, admin) and the CLI.

mod admin;
mod azure;
mod azure_ids;
mod header_deadline;
mod keycache;
mod keys;
mod kms;
mod live;
mod metrics;
mod part_layout;
mod proxy;
mod proxy_protocol;
mod readiness;
pub mod rewrap;
pub mod server;
mod services;
mod tls;
mod upstream;

pub use server::{start, GatewayHandle, RunOptions, StartError};

/// `sealgate keys status`: each key provider, its keys, their state and
/// rotation (KMS keys are described live). Returns the report and whether
/// every key is usable.
pub fn keys_status(config: &sealgate_config::Config) -> Result<(String, bool), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(rt.block_on(keys::status(config)))
}

/// Installs the process-wide rustls crypto provider. Pingora brings `ring`
/// and the AWS SDK brings `aws-lc-rs`; with both linked, rustls cannot pick
/// one by itself and panics, so call this first in `main` and in tests.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
