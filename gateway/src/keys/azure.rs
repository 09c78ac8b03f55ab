//! The `azure-keyvault` key provider: a data key generated here, wrapped
//! and unwrapped by the vault's RSA key with RSA-OAEP-256 (wrapKey /
//! unwrapKey), through the official Azure SDK for Rust
//! (`azure_security_keyvault_keys` and `azure_identity`).
//!
//! The vault cannot bind an encryption context to a wrap, so the context
//! stays bound here: it enters the envelope's key derivation, and a read
//! checks it against the bucket's. Objects record the versioned key id the
//! vault answers (`https://<vault>/keys/<name>/<version>`), so a key
//! rotated in the vault keeps unwrapping what its older versions wrapped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::{ErrorKind, ErrorResponse};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_keys::models::{
    EncryptionAlgorithm, KeyClientGetKeyOptions, KeyClientWrapKeyOptions, KeyOperationParameters,
    KeyOperationResult, KeyType,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use sealgate_config::AzureKeyVault;
use sealgate_filters::keys::{random_bytes, DataKey, KeyError, KeyProvider, DEK_LEN};
use zeroize::{Zeroize, Zeroizing};

use crate::keys::azure_ids::{KeyRef, Vault};

/// Longest a vault call may take, retries and token fetch included, before
/// the request gets a clean 503: an outage must not hang clients.
const AZURE_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one attempt may take to connect.
const AZURE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Retries of one call (throttling, 5xx, connection errors) inside the
/// overall timeout.
const AZURE_MAX_RETRIES: u32 = 2;
/// Environment variable that selects workload identity (AKS): the path of
/// the federated service-account token.
const FEDERATED_TOKEN_ENV: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// The wrapping algorithm: the vault's RSA key, OAEP with SHA-256.
const WRAP_ALGORITHM: EncryptionAlgorithm = EncryptionAlgorithm::RsaOaep256;

/// One configured `azure-keyvault` provider.
pub struct AzureKeyVaultProvider {
    name: String,
    /// `key_name`, or `key_name/key_version` when a version is pinned.
    default_key_id: String,
    vault: Vault,
    client: KeyClient,
}

impl AzureKeyVaultProvider {
    /// Builds the credential and the client (nothing is sent here).
    pub fn new(name: &str, cfg: &AzureKeyVault) -> Result<Self, String> {
        let vault = Vault::parse(&cfg.vault_url)
            .map_err(|e| format!("key provider `{name}`: vault_url: {e}"))?;
        let client_options =
            client_options(cfg).map_err(|e| format!("key provider `{name}`: {e}"))?;
        let credential = credential(cfg, client_options.clone())
            .map_err(|e| format!("key provider `{name}`: credentials: {e}"))?;
        let options = KeyClientOptions {
            client_options,
            verify_challenge_resource: Some(cfg.verify_challenge_resource),
            ..Default::default()
        };
        let client = KeyClient::new(&vault.url(), credential, Some(options))
            .map_err(|e| format!("key provider `{name}`: {e}"))?;
        let default_key_id = match &cfg.key_version {
            Some(v) => format!("{}/{v}", cfg.key_name),
            None => cfg.key_name.clone(),
        };
        KeyRef::parse(&vault, &default_key_id)
            .map_err(|e| format!("key provider `{name}`: key_name: {e}"))?;
        Ok(Self {
            name: name.to_string(),
            default_key_id,
            vault,
            client,
        })
    }

    /// Reads `key_id` from the vault: its versioned id, or why it cannot
    /// wrap and unwrap (missing, disabled, expired, not yet valid, not an
    /// RSA key, or wrapKey/unwrapKey not among its operations).
    pub async fn describe(&self, key_id: &str) -> Result<String, KeyError> {
        let key_ref = self.key_ref(key_id)?;
        let options = KeyClientGetKeyOptions {
            key_version: key_ref.version.clone(),
            ..Default::default()
        };
        let key = bounded(key_id, async {
            self.client
                .get_key(&key_ref.name, Some(options))
                .await?
                .into_model()
        })
        .await?;
        let attributes = key.attributes.unwrap_or_default();
        if attributes.enabled == Some(false) {
            return Err(KeyError::Disabled(format!("{key_id} is disabled")));
        }
        let now = azure_core::time::OffsetDateTime::now_utc();
        if attributes.expires.is_some_and(|t| t <= now) {
            return Err(KeyError::InvalidState(format!("{key_id} has expired")));
        }
        if attributes.not_before.is_some_and(|t| t > now) {
            return Err(KeyError::InvalidState(format!("{key_id} is not valid yet")));
        }
        let jwk = key.key.ok_or_else(|| {
            KeyError::Invalid(format!("the vault described {key_id} without a key"))
        })?;
        if !matches!(jwk.kty, Some(KeyType::Rsa | KeyType::RsaHsm)) {
            return Err(KeyError::InvalidState(format!(
                "{key_id} is not an RSA key"
            )));
        }
        let ops = jwk.key_ops.unwrap_or_default();
        for op in ["wrapKey", "unwrapKey"] {
            if !ops.iter().any(|o| o == op) {
                return Err(KeyError::InvalidState(format!(
                    "{key_id} does not permit {op}"
                )));
            }
        }
        let kid = jwk.kid.ok_or_else(|| {
            KeyError::Invalid(format!("the vault described {key_id} without an id"))
        })?;
        self.key_ref(&kid)?;
        Ok(kid)
    }

    /// A configured or stored key id as a reference into this vault.
    fn key_ref(&self, key_id: &str) -> Result<KeyRef, KeyError> {
        KeyRef::parse(&self.vault, key_id).map_err(|e| KeyError::Invalid(format!("{key_id}: {e}")))
    }

    /// The vault's answer to wrap or unwrap: the versioned key id (checked
    /// to be the key asked for, in this vault) and the result bytes.
    fn operation_result(
        &self,
        asked: &KeyRef,
        key_id: &str,
        out: KeyOperationResult,
    ) -> Result<(String, Vec<u8>), KeyError> {
        let bytes = out
            .result
            .ok_or_else(|| KeyError::Invalid(format!("the vault returned no key for {key_id}")))?;
        let kid = out.kid.ok_or_else(|| {
            KeyError::Invalid(format!("the vault returned no key id for {key_id}"))
        })?;
        let answered = self.key_ref(&kid)?;
        // Key Vault names are case-insensitive.
        if !answered.name.eq_ignore_ascii_case(&asked.name) || answered.version.is_none() {
            return Err(KeyError::Invalid(format!(
                "the vault answered for {kid}, not {key_id}"
            )));
        }
        Ok((answered.kid(&self.vault), bytes))
    }
}

/// HTTP for the vault and the token authority: bounded timeouts, few
/// retries, and the extra CA certificates of `ca_file`.
fn client_options(cfg: &AzureKeyVault) -> Result<ClientOptions, String> {
    let mut http = reqwest::Client::builder()
        .connect_timeout(AZURE_CONNECT_TIMEOUT)
        .timeout(AZURE_CALL_TIMEOUT);
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("ca_file `{}` cannot be read: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file `{}` is not PEM certificates: {e}", path.display()))?;
        http = http.tls_certs_merge(certs);
    }
    let http = http
        .build()
        .map_err(|e| format!("HTTP client cannot be built: {e}"))?;
    let mut options = ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            max_retries: AZURE_MAX_RETRIES,
            max_total_elapsed: azure_core::time::Duration::seconds(
                AZURE_CALL_TIMEOUT.as_secs() as i64
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(host) = &cfg.authority_host {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = host.clone();
        options.cloud = Some(Arc::new(CloudConfiguration::from(custom)));
    }
    Ok(options)
}

/// A service principal when a secret is configured; else workload identity
/// where its token file is set (AKS); else managed identity (with
/// `client_id` naming a user-assigned identity).
fn credential(
    cfg: &AzureKeyVault,
    client_options: ClientOptions,
) -> Result<Arc<dyn TokenCredential>, azure_core::Error> {
    if let (Some(secret), Some(tenant), Some(client)) =
        (&cfg.client_secret, &cfg.tenant_id, &cfg.client_id)
    {
        let secret = Secret::new(secret.expose_str().unwrap_or_default().to_string());
        let options = ClientSecretCredentialOptions { client_options };
        return Ok(ClientSecretCredential::new(
            tenant,
            client.clone(),
            secret,
            Some(options),
        )?);
    }
    if std::env::var_os(FEDERATED_TOKEN_ENV).is_some() {
        let mut options = WorkloadIdentityCredentialOptions::default();
        options.credential_options.client_options = client_options;
        options.client_id = cfg.client_id.clone();
        options.tenant_id = cfg.tenant_id.clone();
        return Ok(WorkloadIdentityCredential::new(Some(options))?);
    }
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: cfg.client_id.clone().map(UserAssignedId::ClientId),
        client_options,
    };
    Ok(ManagedIdentityCredential::new(Some(options))?)
}

/// Runs one vault call within [`AZURE_CALL_TIMEOUT`], its error mapped.
async fn bounded<T>(
    key_id: &str,
    call: impl std::future::Future<Output = azure_core::Result<T>>,
) -> Result<T, KeyError> {
    match tokio::time::timeout(AZURE_CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| map_error(e, key_id)),
        Err(_) => Err(KeyError::Unavailable(format!(
            "Key Vault timed out (key {key_id})"
        ))),
    }
}

/// Vault errors as the gateway's key errors: each cause a client or
/// operator can act on stays distinct (and never carries key material:
/// the vault's messages name operations and keys, not key bytes).
fn map_error(err: azure_core::Error, key_id: &str) -> KeyError {
    let status = match err.kind() {
        ErrorKind::HttpResponse { status, .. } => u16::from(*status),
        ErrorKind::Credential => return credential_error(&err, key_id),
        _ => {
            return KeyError::Unavailable(format!(
                "Key Vault could not be reached (key {key_id}): {}",
                chain(&err)
            ))
        }
    };
    let message = err.to_string();
    let (code, inner) = match ErrorResponse::try_from(err).ok().and_then(|r| r.error) {
        Some(d) => (
            d.code.unwrap_or_default(),
            d.inner_error.and_then(|i| i.code).unwrap_or_default(),
        ),
        None => (String::new(), String::new()),
    };
    let what = format!("{status} {code} {inner}: {message} (key {key_id})");
    let disabled = inner == "KeyDisabled" || message.contains("disabled key");
    match status {
        401 | 403 if disabled => KeyError::Disabled(what),
        401 | 403 => KeyError::Denied(what),
        404 => KeyError::NotFound(what),
        429 => KeyError::Throttled(what),
        400 => KeyError::Invalid(what),
        409 => KeyError::InvalidState(what),
        _ => KeyError::Unavailable(what),
    }
}

/// A token that could not be had, by why: Entra ID unreachable, failing
/// or throttling is an outage (retryable, alerts as one); a token endpoint
/// that answered and refused (a wrong secret, an unknown client) or a
/// credential that could not even be built is a refusal.
fn credential_error(err: &azure_core::Error, key_id: &str) -> KeyError {
    let what = format!("no Key Vault token for {key_id}: {}", chain(err));
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(c) = cause {
        if let Some(e) = c.downcast_ref::<azure_core::Error>() {
            match e.kind() {
                ErrorKind::Connection | ErrorKind::Io => return KeyError::Unavailable(what),
                ErrorKind::HttpResponse { status, .. } => {
                    return match u16::from(*status) {
                        429 => KeyError::Throttled(what),
                        408 | 500..=599 => KeyError::Unavailable(what),
                        _ => KeyError::Denied(what),
                    }
                }
                _ => {}
            }
        }
        cause = c.source();
    }
    KeyError::Denied(what)
}

/// An error and its causes on one line: the SDK's retry layer wraps the
/// reason (a refused challenge, a failed token request) inside its own.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Copies an unwrapped key into a zeroizing key and wipes the SDK's copy.
fn take_key(mut bytes: Vec<u8>, key_id: &str) -> Result<Zeroizing<[u8; DEK_LEN]>, KeyError> {
    let out = if bytes.len() == DEK_LEN {
        let mut key = Zeroizing::new([0u8; DEK_LEN]);
        key.copy_from_slice(&bytes);
        Ok(key)
    } else {
        Err(KeyError::Invalid(format!(
            "the vault unwrapped a {}-byte key for {key_id}",
            bytes.len()
        )))
    };
    bytes.zeroize();
    out
}

/// The wrap/unwrap request body; the caller's copy of `value` is wiped
/// once serialized.
fn operation(
    mut value: Vec<u8>,
) -> Result<azure_core::http::RequestContent<KeyOperationParameters>, KeyError> {
    let params = KeyOperationParameters {
        algorithm: Some(WRAP_ALGORITHM),
        value: Some(value.clone()),
        ..Default::default()
    };
    value.zeroize();
    let content = params.clone().try_into();
    if let Some(mut v) = params.value {
        v.zeroize();
    }
    content.map_err(|e: azure_core::Error| KeyError::Invalid(format!("wrap request: {e}")))
}

#[async_trait]
impl KeyProvider for AzureKeyVaultProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn default_key_id(&self) -> &str {
        &self.default_key_id
    }

    fn type_name(&self) -> &'static str {
        "azure-keyvault"
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError> {
        let dek = Zeroizing::new(random_bytes::<DEK_LEN>());
        self.wrap_data_key(key_id, &dek, context).await
    }

    async fn decrypt_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        _context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<[u8; DEK_LEN]>, KeyError> {
        let key_ref = self.key_ref(key_id)?;
        // An unversioned id would unwrap with whatever version is newest.
        let Some(version) = key_ref.version.as_deref() else {
            return Err(KeyError::Invalid(format!("{key_id} names no key version")));
        };
        let body = operation(wrapped.to_vec())?;
        let out = bounded(key_id, async {
            self.client
                .unwrap_key(&key_ref.name, version, body, None)
                .await?
                .into_model()
        })
        .await?;
        let (_, bytes) = self.operation_result(&key_ref, key_id, out)?;
        take_key(bytes, key_id)
    }

    async fn wrap_data_key(
        &self,
        key_id: &str,
        dek: &Zeroizing<[u8; DEK_LEN]>,
        _context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError> {
        let key_ref = self.key_ref(key_id)?;
        let body = operation(dek.to_vec())?;
        let options = KeyClientWrapKeyOptions {
            key_version: key_ref.version.clone(),
            ..Default::default()
        };
        let out = bounded(key_id, async {
            self.client
                .wrap_key(&key_ref.name, body, Some(options))
                .await?
                .into_model()
        })
        .await?;
        let (kid, wrapped) = self.operation_result(&key_ref, key_id, out)?;
        Ok(DataKey {
            plaintext: dek.clone(),
            wrapped,
            key_id: kid,
        })
    }

    /// A pinned version's full id, else the key's id without a version.
    async fn canonical_key_id(&self, key_id: &str) -> Result<String, KeyError> {
        Ok(self.key_ref(key_id)?.kid(&self.vault))
    }

    fn binding_key_id(&self, stored_key_id: &str) -> String {
        self.key_ref(stored_key_id)
            .map(|k| k.family(&self.vault))
            .unwrap_or_else(|_| stored_key_id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::StatusCode;

    /// What the credential chain reports when the token endpoint fails
    /// with `inner`, as the gateway maps it.
    fn mapped(inner: azure_core::Error) -> &'static str {
        let err = azure_core::Error::with_error(
            ErrorKind::Credential,
            inner,
            "ClientSecretCredential authentication failed.",
        );
        map_error(err, "sealgate").code()
    }

    fn answered(status: StatusCode) -> azure_core::Error {
        ErrorKind::HttpResponse {
            status,
            error_code: None,
            raw_response: None,
        }
        .into_error()
    }

    #[test]
    fn a_token_endpoint_outage_is_not_a_refusal() {
        let unreachable =
            azure_core::Error::with_message(ErrorKind::Connection, "connection refused");
        assert_eq!(mapped(unreachable), "unavailable");
        let io = azure_core::Error::with_message(ErrorKind::Io, "reset by peer");
        assert_eq!(mapped(io), "unavailable");
        assert_eq!(
            mapped(answered(StatusCode::ServiceUnavailable)),
            "unavailable"
        );
        assert_eq!(mapped(answered(StatusCode::TooManyRequests)), "throttled");
        // The endpoint answered and refused: a wrong secret or client.
        assert_eq!(mapped(answered(StatusCode::Unauthorized)), "denied");
        assert_eq!(mapped(answered(StatusCode::BadRequest)), "denied");
        // Nothing to tell by: a refusal, as before.
        let other = azure_core::Error::with_message(ErrorKind::Other, "no credential");
        assert_eq!(mapped(other), "denied");
    }
}
