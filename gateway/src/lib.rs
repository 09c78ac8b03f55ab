//! sealgate: an S3 encryption edge gateway on Pingora.
//!
//! This crate wires the pure logic of `sealgate-filters` into Pingora's
//! phases, owns every socket (clients, upstream S3, admin) and the CLI.

mod keys;
mod live;
pub mod logging;
mod metrics;
pub mod ops;
mod part_layout;
mod proxy;
pub mod server;
mod upstream;

pub use server::{start, GatewayHandle, RunOptions, StartError};

/// `sealgate keys status`: each key provider, its keys, their state and
/// rotation (KMS keys are described live). Returns the report and whether
/// every key is usable.
pub fn keys_status(config: &sealgate_config::Config) -> Result<(String, bool), String> {
    block_on(keys::status(config))
}

/// Runs a command's future on a runtime of its own (the commands other
/// than `run` are one task each).
fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(rt.block_on(f))
}

/// `sealgate keys validate`: a data key generated and unwrapped again
/// under each configured key (or the key of `bucket`, under its writes'
/// encryption context). Returns the report and whether every key made it.
pub fn keys_validate(
    config: &sealgate_config::Config,
    bucket: Option<&str>,
) -> Result<(String, bool), String> {
    block_on(keys::validate(config, bucket))?
}

/// `sealgate backend status`: for each backend (`storage.s3`'s and each
/// bucket's own, or only `bucket`'s), its endpoint and region, the
/// configured `stored_checksum` and what a probe finds now (in `bucket`, in
/// a bucket that has its own backend, or in any bucket `storage.s3`'s
/// credentials list). Returns the report and whether the configuration
/// suits every backend (false: `crc32c` set on a backend that does not
/// verify aws-chunked trailers).
pub fn backend_status(
    config: &sealgate_config::Config,
    bucket: Option<&str>,
) -> Result<(String, bool), String> {
    block_on(async {
        let mut report = String::new();
        let mut suits = true;
        let mut reported: Vec<&sealgate_config::Upstream> = Vec::new();
        let own = config
            .buckets
            .iter()
            .filter(|(_, b)| b.backend.is_some())
            .map(|(alias, _)| Some(alias.as_str()));
        // A name as clients type it: the alias's rules (and backend) apply
        // to an addressable real name too.
        let wanted: Vec<Option<sealgate_config::ResolvedBucket>> = match bucket {
            Some(b) => vec![Some(config.resolve_bucket(b).ok_or_else(|| {
                format!("`{b}` is the real name of an alias that is not real_name_addressable: name the alias")
            })?)],
            None => std::iter::once(None)
                .chain(own.map(|a| a.and_then(|a| config.resolve_bucket(a))))
                .collect(),
        };
        let elsewhere: Vec<String> = config
            .bucket_backends()
            .into_iter()
            .filter(|(_, u)| !u.same_backend(&config.upstream))
            .map(|(real, _)| real.to_string())
            .collect();
        for resolved in wanted {
            let (cfg, setting) = match &resolved {
                Some(r) => config.upstream_for(&r.name),
                None => (&config.upstream, "storage.s3".to_string()),
            };
            if reported.iter().any(|r| r.same_backend(cfg)) {
                continue;
            }
            reported.push(cfg);
            let real = resolved.as_ref().map(|r| r.real.as_str());
            let avoid = if real.is_none() {
                elsewhere.clone()
            } else {
                Vec::new()
            };
            let (text, ok) = backend_report(cfg, &setting, real, avoid).await?;
            report.push_str(&text);
            suits &= ok;
        }
        Ok((report, suits))
    })?
}

/// One backend's part of [`backend_status`].
async fn backend_report(
    cfg: &sealgate_config::Upstream,
    setting: &str,
    bucket: Option<&str>,
    elsewhere: Vec<String>,
) -> Result<(String, bool), String> {
    use sealgate_config::StoredChecksum;
    let up = upstream::UpstreamTarget::named(cfg, setting)
        .await
        .map_err(|e| e.to_string())?
        .with_elsewhere(elsewhere);
    let found = up.check_trailers(bucket).await;
    let configured = cfg.stored_checksum;
    let endpoint = &cfg.endpoint;
    let mut out = format!(
        "backend: {setting}\nendpoint: {}://{} (region {})\n",
        if endpoint.tls { "https" } else { "http" },
        endpoint.authority(),
        cfg.region
    );
    let configured_name = match configured {
        StoredChecksum::Auto => "auto",
        StoredChecksum::Crc32c => "crc32c",
        StoredChecksum::None => "none",
    };
    out.push_str(&format!("stored_checksum: {configured_name}\n"));
    out.push_str(&format!(
        "aws-chunked trailers: {}\n",
        match found {
            Some(true) => "verified by the backend",
            Some(false) => "not verified by the backend",
            None =>
                "unknown (no bucket to probe in, or the backend could not be asked; see the log)",
        }
    ));
    let uses = match (configured, found) {
        (StoredChecksum::None, _) | (StoredChecksum::Auto, Some(false)) => {
            "none (plain Content-Length)"
        }
        (StoredChecksum::Crc32c, Some(false)) => {
            "crc32c, which this backend refuses: set stored_checksum to auto or none"
        }
        (_, Some(true)) | (StoredChecksum::Crc32c, None) => {
            "crc32c (aws-chunked with a trailing CRC32C)"
        }
        (StoredChecksum::Auto, None) => "decided at the first encrypted write",
    };
    out.push_str(&format!("encrypted uploads go with: {uses}\n\n"));
    Ok((
        out,
        !(configured == StoredChecksum::Crc32c && found == Some(false)),
    ))
}

/// Installs the process-wide rustls crypto provider. Pingora brings `ring`
/// and the AWS SDK brings `aws-lc-rs`; with both linked, rustls cannot pick
/// one by itself and panics, so call this first in `main` and in tests.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
