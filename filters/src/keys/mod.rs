//! Key providers: where data keys come from and how they are unwrapped.
//!
//! The gateway holds one [`KeyProvider`] per configured provider. Cloud
//! providers (AWS KMS, Azure Key Vault) live in the `gateway` crate, which
//! links their SDKs; the `custom` and `local` providers, which need only a
//! master key, live here.

mod master;

use std::collections::BTreeMap;

use async_trait::async_trait;
use zeroize::Zeroizing;

pub use master::MasterKeyProvider;

/// Data key length (AES-256).
pub const DEK_LEN: usize = 32;

/// A fresh data key and its wrapped form.
pub struct DataKey {
    pub plaintext: Zeroizing<[u8; DEK_LEN]>,
    pub wrapped: Vec<u8>,
    /// The wrapping key's id as the provider reports it (KMS returns the ARN).
    pub key_id: String,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Why a key operation failed. Messages never carry key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The provider could not be reached or throttled us: retryable.
    #[error("key provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused (permissions, disabled key, wrong context).
    #[error("key provider refused: {0}")]
    Denied(String),
    /// The wrapped key or key id is not valid for this provider.
    #[error("invalid wrapped key: {0}")]
    Invalid(String),
    /// The provider throttled the call: retryable, with backoff.
    #[error("key provider throttled: {0}")]
    Throttled(String),
    /// The key does not exist.
    #[error("key not found: {0}")]
    NotFound(String),
    /// The key is disabled.
    #[error("key disabled: {0}")]
    Disabled(String),
    /// The key's state forbids the operation (pending deletion, pending import, ...).
    #[error("key in an unusable state: {0}")]
    InvalidState(String),
}

impl KeyError {
    /// Every [`KeyError::code`], for metrics whose label values exist
    /// before the first failure.
    pub const CODES: [&'static str; 7] = [
        "unavailable",
        "denied",
        "invalid",
        "throttled",
        "not_found",
        "disabled",
        "invalid_state",
    ];

    /// A short, fixed name for the kind of failure (a metric label): an
    /// outage (`unavailable`, `throttled`) is told apart from a refusal.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Unavailable(_) => "unavailable",
            KeyError::Denied(_) => "denied",
            KeyError::Invalid(_) => "invalid",
            KeyError::Throttled(_) => "throttled",
            KeyError::NotFound(_) => "not_found",
            KeyError::Disabled(_) => "disabled",
            KeyError::InvalidState(_) => "invalid_state",
        }
    }
}

/// A source of data keys.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// The configured provider name (stored in object metadata).
    fn name(&self) -> &str;
    /// The key used when nothing selects another.
    fn default_key_id(&self) -> &str;
    /// The provider type as configured (`aws-kms`, `local`, ...).
    fn type_name(&self) -> &'static str;
    /// A new data key under `key_id`, bound to `context`.
    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError>;
    /// Unwraps a data key written under `key_id` with `context`.
    async fn decrypt_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<[u8; DEK_LEN]>, KeyError>;
    /// Wraps an existing data key under `key_id` with `context`: how
    /// `sealgate rewrap` moves an object to another key without touching
    /// its data (the data key, salt and commitment stay the same).
    async fn wrap_data_key(
        &self,
        key_id: &str,
        dek: &Zeroizing<[u8; DEK_LEN]>,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError>;
    /// True when `wrapped` is wrapped the way this provider wraps now
    /// (master-key providers: under the current master key), so `rewrap`
    /// knows an object under the right key id still needs moving after a
    /// rotation that kept the id.
    fn is_current_wrap(&self, wrapped: &[u8]) -> bool {
        let _ = wrapped;
        true
    }
    /// The id objects record for a configured key id (KMS: the key's ARN
    /// for an alias, key id or ARN), so configured and stored ids compare.
    async fn canonical_key_id(&self, key_id: &str) -> Result<String, KeyError> {
        Ok(key_id.to_string())
    }
    /// The part of a stored key id that binds an object to a configured
    /// key, compared with [`Self::canonical_key_id`] of the configured ids:
    /// the whole id, except where a provider's keys have versions that all
    /// belong to the one configured key (Key Vault).
    fn binding_key_id(&self, stored_key_id: &str) -> String {
        stored_key_id.to_string()
    }
}

/// Cryptographically random bytes (see the envelope's `random_bytes`).
pub use sealgate_envelope::random_bytes;
