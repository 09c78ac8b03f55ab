//! The key-provider registry: every configured provider by name, and the
//! start-up checks of cloud keys. The cloud providers live beside it
//! (`kms.rs`); the provider trait and the master-key provider are pure and
//! live in `sealgate_filters::keys`.

pub(crate) mod azure;
pub(crate) mod azure_ids;
pub(crate) mod cache;
pub(crate) mod kms;

use std::collections::{BTreeMap, HashMap};
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
        if !config.encryption.providers.is_empty() {
            // The random generator seeds itself once per process (from CPU
            // jitter and the OS, milliseconds): here, not in the first PUT.
            let _ = sealgate_filters::keys::random_bytes::<1>();
        }
        for (name, p) in &config.encryption.providers {
            let provider = uncached(config, name, &p.kind).await?;
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

/// The provider `name` as configured, without the data-key cache (every
/// call reaches the provider).
async fn uncached(
    config: &Config,
    name: &str,
    kind: &ProviderKind,
) -> Result<Arc<dyn KeyProvider>, String> {
    Ok(match kind {
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
    })
}

/// `sealgate keys validate`: a real round trip through each configured
/// key, as a write and a read make it: a new data key generated under it
/// and unwrapped again (KMS GenerateDataKey and Decrypt; a wrap and an
/// unwrap for the others), not from the cache. Start-up validation only
/// describes keys, so a key that can be described but not used (a key
/// policy without `kms:GenerateDataKey`, a disabled Key Vault key
/// operation) passes it and fails here. With `bucket`, only that bucket's
/// provider and key, under the encryption context its writes carry (which
/// a key policy with a `kms:EncryptionContext:sealgate:bucket` condition
/// requires); without, every key under an empty context. Returns the
/// report and whether every key made the round trip.
pub async fn validate(config: &Config, bucket: Option<&str>) -> Result<(String, bool), String> {
    let mut checks: Vec<(String, String, BTreeMap<String, String>)> = Vec::new();
    match bucket {
        Some(b) => {
            let resolved = config
                .resolve_bucket(b)
                .ok_or_else(|| format!("{b} is an alias's real name: name the alias"))?;
            let enc = sealgate_filters::policy::for_bucket(config, &resolved.name)
                .ok_or_else(|| format!("bucket {b} has no key provider"))?;
            let provider = config
                .encryption
                .providers
                .get(&enc.provider)
                .ok_or_else(|| format!("its key provider {} is not configured", enc.provider))?;
            let key_id = match (&enc.key_id, &provider.kind) {
                (Some(k), _) => k.clone(),
                (None, ProviderKind::AwsKms(k)) => k.default_key_id.clone(),
                (None, _) => String::new(),
            };
            checks.push((enc.provider.clone(), key_id, enc.write_context.clone()));
        }
        None => {
            for (name, p) in &config.encryption.providers {
                let ids = match &p.kind {
                    ProviderKind::AwsKms(k) => kms_key_ids(config, name, &k.default_key_id),
                    _ => vec![String::new()],
                };
                for id in ids {
                    checks.push((name.clone(), id, BTreeMap::new()));
                }
            }
        }
    }
    let mut out = String::new();
    let mut usable = true;
    let mut built: HashMap<String, Arc<dyn KeyProvider>> = HashMap::new();
    for (name, key_id, context) in checks {
        let provider = match built.get(&name) {
            Some(p) => p.clone(),
            None => {
                let kind = &config.encryption.providers[&name].kind;
                let p = uncached(config, &name, kind).await?;
                built.insert(name.clone(), p.clone());
                p
            }
        };
        // Providers with one key (master keys, a Key Vault key) name it.
        let key_id = if key_id.is_empty() {
            provider.default_key_id().to_string()
        } else {
            key_id
        };
        // A KMS key's state first: KMS itself refuses a key pending deletion,
        // but not every implementation does (moto), and the state names why.
        let state = match &config.encryption.providers[&name].kind {
            ProviderKind::AwsKms(k) => AwsKmsProvider::new(&name, k, &config.upstream.region)
                .await
                .describe(&key_id)
                .await
                .map(|_| ()),
            _ => Ok(()),
        };
        let outcome = match state {
            Ok(()) => round_trip(&*provider, &key_id, &context).await,
            Err(e) => Err(e),
        };
        out.push_str(&match outcome {
            Ok(wrapped_by) => format!(
                "{name} ({}) {key_id}: a data key generated under {wrapped_by} and unwrapped again\n",
                provider.type_name()
            ),
            Err(e) => {
                usable = false;
                format!(
                    "{name} ({}) {key_id}: FAILED ({}): {e}\n",
                    provider.type_name(),
                    e.code()
                )
            }
        });
    }
    if config.encryption.providers.is_empty() {
        out.push_str("no key providers: every bucket is passed through\n");
    }
    Ok((out, usable))
}

/// One data key through `key_id` and back; the id that wrapped it.
async fn round_trip(
    provider: &dyn KeyProvider,
    key_id: &str,
    context: &BTreeMap<String, String>,
) -> Result<String, KeyError> {
    let key = provider.generate_data_key(key_id, context).await?;
    let back = provider
        .decrypt_data_key(&key.key_id, &key.wrapped, context)
        .await?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&back[..], &key.plaintext[..])) {
        return Err(KeyError::Invalid(
            "the unwrapped data key is not the one generated".into(),
        ));
    }
    Ok(key.key_id)
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
