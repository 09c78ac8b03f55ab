//! The key-provider registry: every configured provider by name. The
//! cloud providers (AWS KMS, Azure Key Vault) and the data-key caches go
//! here too; the provider trait and the master-key provider are pure and
//! live in `sealgate_filters::keys`.

use std::collections::HashMap;
use std::sync::Arc;

use sealgate_config::{Config, ProviderKind};
use sealgate_filters::keys::{KeyError, KeyProvider, MasterKeyProvider};
use sealgate_filters::s3::{S3Error, S3ErrorCode};

/// The configured key providers by name.
pub struct Providers {
    by_name: HashMap<String, Arc<dyn KeyProvider>>,
}

impl Providers {
    /// Builds every provider; cloud providers are not available in this build yet.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut by_name: HashMap<String, Arc<dyn KeyProvider>> = HashMap::new();
        for (name, p) in &config.encryption.providers {
            let provider: Arc<dyn KeyProvider> = match &p.kind {
                ProviderKind::Local(l) => Arc::new(MasterKeyProvider::new(
                    name,
                    "local",
                    l.master_key.expose(),
                    None,
                )),
                ProviderKind::Custom(c) => Arc::new(MasterKeyProvider::new(
                    name,
                    "custom",
                    c.master_key.expose(),
                    c.key_derivation_salt.as_deref(),
                )),
                other => {
                    return Err(format!(
                        "key provider `{name}`: type {} is not available in this build yet",
                        other.type_name()
                    ))
                }
            };
            by_name.insert(name.clone(), provider);
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn KeyProvider>> {
        self.by_name.get(name)
    }
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
    }
}
