//! The key-provider registry: every configured provider by name, and the
//! start-up checks of cloud keys. The cloud providers live beside it
//! (`kms.rs`); the provider trait and the master-key provider are pure and
//! live in `sealgate_filters::keys`.

pub(crate) mod azure;
pub(crate) mod azure_ids;
pub(crate) mod cache;
pub(crate) mod kms;

use std::collections::HashMap;
use std::sync::Arc;

use sealgate_config::{Config, ProviderKind};
use sealgate_filters::keys::{KeyError, KeyProvider, MasterKeyProvider};
use sealgate_filters::s3::{S3Error, S3ErrorCode};

use crate::keys::azure::AzureKeyVaultProvider;
use crate::keys::cache::CachingProvider;
use crate::keys::kms::AwsKmsProvider;

/// The configured key providers by name.
pub struct Providers {
    by_name: HashMap<String, Arc<dyn KeyProvider>>,
}

impl Providers {
    /// Builds every provider. No provider is called here: cloud clients
    /// connect on first use, on the runtime that serves requests.
    pub async fn from_config(
        config: &Config,
        metrics: Option<crate::keys::cache::KeyMetrics>,
    ) -> Result<Self, String> {
        let mut by_name: HashMap<String, Arc<dyn KeyProvider>> = HashMap::new();
        for (name, p) in &config.encryption.providers {
            let provider: Arc<dyn KeyProvider> = match &p.kind {
                ProviderKind::Local(l) => Arc::new(MasterKeyProvider::with_previous(
                    name,
                    "local",
                    l.master_key.expose(),
                    &exposed(&l.previous_master_keys),
                    None,
                )),
                ProviderKind::Custom(c) => Arc::new(MasterKeyProvider::with_previous(
                    name,
                    "custom",
                    c.master_key.expose(),
                    &exposed(&c.previous_master_keys),
                    c.key_derivation_salt.as_deref(),
                )),
                ProviderKind::AwsKms(k) => {
                    Arc::new(AwsKmsProvider::new(name, k, &config.upstream.region).await)
                }
                ProviderKind::AzureKeyVault(a) => Arc::new(AzureKeyVaultProvider::new(name, a)?),
            };
            let mut cached = CachingProvider::new(
                provider,
                p.kind.data_key_cache_ttl(),
                config.logging.kms_operations,
            );
            if let Some(m) = &metrics {
                cached = cached.with_metrics(m.clone());
            }
            by_name.insert(name.clone(), Arc::new(cached));
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn KeyProvider>> {
        self.by_name.get(name)
    }
}

fn exposed(keys: &[sealgate_config::Secret]) -> Vec<&[u8]> {
    keys.iter().map(|k| k.expose()).collect()
}

/// Every KMS key id the configuration names for `provider`: its default,
/// the bucket keys of buckets its policies cover, keys clients may pick
/// and keys kept readable.
fn kms_key_ids(config: &Config, provider: &str, default: &str) -> Vec<String> {
    let mut ids = vec![default.to_string()];
    for p in config
        .encryption
        .policies
        .iter()
        .filter(|p| p.key_provider == provider)
    {
        ids.extend(p.allowed_key_ids.iter().cloned());
        ids.extend(p.readable_key_ids.iter().cloned());
    }
    for (bucket, b) in &config.buckets {
        let uses = config
            .policy_for(bucket)
            .map(|p| p.key_provider.as_str())
            .or(config.encryption.default_provider.as_deref());
        if uses == Some(provider) {
            ids.extend(b.kms_key_id.iter().cloned());
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// `sealgate keys status`: each provider, its keys, their state and
/// rotation. Returns the report and whether every key is usable.
pub async fn status(config: &Config) -> (String, bool) {
    let mut out = String::new();
    let mut usable = true;
    for (name, p) in &config.encryption.providers {
        let ttl = p.kind.data_key_cache_ttl().as_secs();
        match &p.kind {
            ProviderKind::AwsKms(k) => {
                out.push_str(&format!("{name} (aws-kms, data keys cached {ttl}s)\n"));
                let kms = AwsKmsProvider::new(name, k, &config.upstream.region).await;
                for key_id in kms_key_ids(config, name, &k.default_key_id) {
                    let line = match kms.describe(&key_id).await {
                        Ok(arn) => {
                            // Rotation calls take a key id or ARN, not an alias.
                            let rotation = match kms.rotation_enabled(&arn).await {
                                Ok(true) => "rotation on".to_string(),
                                Ok(false) => "rotation off".to_string(),
                                Err(e) => format!("rotation unknown ({e})"),
                            };
                            format!("  {key_id}: {arn}, enabled, {rotation}\n")
                        }
                        Err(e) => {
                            usable = false;
                            format!("  {key_id}: UNUSABLE: {e}\n")
                        }
                    };
                    out.push_str(&line);
                }
            }
            ProviderKind::Custom(c) => {
                let m = MasterKeyProvider::with_previous(
                    name,
                    "custom",
                    c.master_key.expose(),
                    &exposed(&c.previous_master_keys),
                    c.key_derivation_salt.as_deref(),
                );
                out.push_str(&master_status(name, "custom", ttl, &m));
            }
            ProviderKind::Local(l) => {
                let m = MasterKeyProvider::with_previous(
                    name,
                    "local",
                    l.master_key.expose(),
                    &exposed(&l.previous_master_keys),
                    None,
                );
                out.push_str(&master_status(name, "local", ttl, &m));
            }
            ProviderKind::AzureKeyVault(a) => {
                out.push_str(&format!(
                    "{name} (azure-keyvault, data keys cached {ttl}s)\n"
                ));
                let line = match AzureKeyVaultProvider::new(name, a) {
                    Err(e) => Err(e),
                    Ok(vault) => vault
                        .describe(vault.default_key_id())
                        .await
                        .map_err(|e| e.to_string()),
                };
                match line {
                    Ok(kid) => out.push_str(&format!(
                        "  {}: {kid}, enabled, wraps with RSA-OAEP-256\n",
                        key_label(a)
                    )),
                    Err(e) => {
                        usable = false;
                        out.push_str(&format!("  {}: UNUSABLE: {e}\n", key_label(a)));
                    }
                }
            }
        }
    }
    if config.encryption.providers.is_empty() {
        out.push_str("no key providers: every bucket is passed through\n");
    }
    (out, usable)
}

fn key_label(a: &sealgate_config::AzureKeyVault) -> String {
    match &a.key_version {
        Some(v) => format!("{}/{v}", a.key_name),
        None => a.key_name.clone(),
    }
}

fn master_status(name: &str, ty: &str, ttl: u64, m: &MasterKeyProvider) -> String {
    let ids = m.master_ids();
    let mut out = format!(
        "{name} ({ty}, data keys cached {ttl}s)\n  {}: master key {} wraps",
        m.default_key_id(),
        ids[0]
    );
    if ids.len() > 1 {
        out.push_str(&format!("; previous keys {} unwrap", ids[1..].join(", ")));
    }
    out.push('\n');
    out
}

/// Start-up checks of the `aws-kms` providers that ask for them:
/// `validate_keys` describes every configured key and refuses to start,
/// naming the key and why, when one is missing, disabled, pending deletion
/// or not an ENCRYPT_DECRYPT key; `enable_key_rotation` turns automatic
/// rotation on where it is off. Runs with its own clients, on the start-up
/// runtime, so no connection outlives it.
pub async fn check_at_start(config: &Config) -> Result<(), String> {
    for (name, p) in &config.encryption.providers {
        if let ProviderKind::AzureKeyVault(a) = &p.kind {
            if a.validate_keys {
                let vault = AzureKeyVaultProvider::new(name, a)?;
                let kid = vault.describe(vault.default_key_id()).await.map_err(|e| {
                    format!(
                        "key provider `{name}`: key {} cannot be used: {e}",
                        key_label(a)
                    )
                })?;
                tracing::info!(provider = %name, key_id = %kid, "Key Vault key can wrap and unwrap");
            }
            continue;
        }
        let ProviderKind::AwsKms(k) = &p.kind else {
            continue;
        };
        if !k.validate_keys && !k.enable_key_rotation {
            continue;
        }
        let kms = AwsKmsProvider::new(name, k, &config.upstream.region).await;
        for key_id in kms_key_ids(config, name, &k.default_key_id) {
            let arn = match kms.describe(&key_id).await {
                Ok(arn) => arn,
                Err(e) if k.validate_keys => {
                    return Err(format!(
                        "key provider `{name}`: key {key_id} cannot be used: {e}"
                    ))
                }
                Err(e) => {
                    tracing::warn!(provider = %name, key_id = %key_id, error = %e,
                        "KMS key could not be described; its rotation is not checked");
                    continue;
                }
            };
            tracing::info!(provider = %name, key_id = %key_id, arn = %arn, "KMS key is enabled");
            if k.enable_key_rotation {
                // Rotation calls take a key id or ARN, not an alias.
                match kms.ensure_rotation(&arn).await {
                    Ok(true) => {
                        tracing::info!(provider = %name, key_id = %key_id, "KMS key rotation is on")
                    }
                    Ok(false) => {
                        tracing::info!(provider = %name, key_id = %key_id, "KMS key rotation turned on")
                    }
                    Err(e) => tracing::warn!(
                        provider = %name, key_id = %key_id, error = %e,
                        "KMS key rotation could not be checked or turned on"
                    ),
                }
            }
        }
    }
    Ok(())
}

/// Maps a provider failure to the client's error (no key material in it).
pub fn key_error(e: KeyError) -> S3Error {
    match e {
        KeyError::Unavailable(_) => S3Error::new(
            S3ErrorCode::ServiceUnavailable,
            "the key provider is unavailable; retry",
        ),
        KeyError::Denied(_) => S3Error::new(
            S3ErrorCode::AccessDenied,
            "the key provider refused the key operation",
        ),
        KeyError::Invalid(_) => S3Error::new(
            S3ErrorCode::InternalError,
            "the object's key could not be used",
        ),
        KeyError::Throttled(_) => S3Error::new(
            S3ErrorCode::SlowDown,
            "the key provider is throttling requests; retry with backoff",
        ),
        KeyError::NotFound(_) => S3Error::new(
            S3ErrorCode::KmsNotFound,
            "the encryption key does not exist",
        ),
        KeyError::Disabled(_) => {
            S3Error::new(S3ErrorCode::KmsDisabled, "the encryption key is disabled")
        }
        KeyError::InvalidState(_) => S3Error::new(
            S3ErrorCode::KmsInvalidState,
            "the encryption key's state does not allow this operation",
        ),
    }
}
