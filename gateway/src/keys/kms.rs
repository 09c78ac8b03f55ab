//! The `aws-kms` key provider: data keys from KMS GenerateDataKey (AES_256),
//! unwrapped by KMS Decrypt, both under the object's encryption context, so
//! KMS itself enforces it (a Decrypt with another context fails), records it
//! in CloudTrail, and key policies can condition on it
//! (`kms:EncryptionContext:application`). The plaintext data key never
//! leaves this process and is zeroized when dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyMetadata, KeyState, KeyUsageType};
use sealgate_config::{AwsKms, UpstreamCredentials};
use sealgate_filters::keys::{DataKey, KeyError, KeyProvider, DEK_LEN};
use zeroize::{Zeroize, Zeroizing};

/// Longest a KMS call may take before the request gets a clean 503: an
/// outage must not hang clients (retries included).
const KMS_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one attempt may take to connect.
const KMS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a configured id's resolved ARN is trusted (an alias can be
/// pointed at another key).
const ARN_TTL: Duration = Duration::from_secs(300);
/// How long a failed resolution is remembered, so a key that cannot be
/// described does not cost a KMS call on every read.
const ARN_FAILURE_TTL: Duration = Duration::from_secs(60);
/// How long a resolution that found KMS down or throttling is remembered:
/// long enough that one request (which may resolve several ids) and the
/// requests beside it wait out one KMS timeout, not one each; short enough
/// that KMS's return is seen at once.
const ARN_UNAVAILABLE_TTL: Duration = Duration::from_secs(5);

/// A configured key id's ARN (or why it could not be described), and until
/// when that answer is trusted.
type Resolution = (Result<String, KeyError>, Instant);

/// One configured `aws-kms` provider.
pub struct AwsKmsProvider {
    name: String,
    default_key_id: String,
    client: aws_sdk_kms::Client,
    /// Configured key ids (alias, key id or ARN) and the ARN KMS reported
    /// for them (or why it could not be described), learned from
    /// DescribeKey and GenerateDataKey, each until its instant.
    arns: RwLock<HashMap<String, Resolution>>,
}

impl AwsKmsProvider {
    /// Builds the client (no KMS call is made here). `fallback_region` is
    /// the upstream's region, used when the provider names none.
    pub async fn new(name: &str, cfg: &AwsKms, fallback_region: &str) -> Self {
        Self {
            name: name.to_string(),
            default_key_id: cfg.default_key_id.clone(),
            client: client(cfg, fallback_region).await,
            arns: RwLock::new(HashMap::new()),
        }
    }

    /// Describes `key_id`: its ARN, or why it cannot encrypt and decrypt.
    pub async fn describe(&self, key_id: &str) -> Result<String, KeyError> {
        let meta = self.key_metadata(key_id).await?;
        match meta.key_state() {
            Some(KeyState::Enabled) => {}
            Some(KeyState::Disabled) => return Err(KeyError::Disabled(key_id.to_string())),
            Some(other) => {
                return Err(KeyError::InvalidState(format!(
                    "{key_id} is {}",
                    other.as_str()
                )))
            }
            None => return Err(KeyError::InvalidState(format!("{key_id} has no state"))),
        }
        if meta.key_usage() != Some(&KeyUsageType::EncryptDecrypt) {
            return Err(KeyError::InvalidState(format!(
                "{key_id} is not an ENCRYPT_DECRYPT key"
            )));
        }
        let arn = meta.arn().unwrap_or(meta.key_id()).to_string();
        self.remember(key_id, Ok(&arn));
        Ok(arn)
    }

    /// Whether automatic rotation of `key_id` is on (nothing changed).
    pub async fn rotation_enabled(&self, key_id: &str) -> Result<bool, KeyError> {
        Ok(self
            .client
            .get_key_rotation_status()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| map_error(e, key_id))?
            .key_rotation_enabled())
    }

    /// Turns on automatic rotation of `key_id` where it is off; returns
    /// whether it was already on.
    pub async fn ensure_rotation(&self, key_id: &str) -> Result<bool, KeyError> {
        let status = self
            .client
            .get_key_rotation_status()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| map_error(e, key_id))?;
        if status.key_rotation_enabled() {
            return Ok(true);
        }
        self.client
            .enable_key_rotation()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| map_error(e, key_id))?;
        Ok(false)
    }

    fn remember(&self, key_id: &str, arn: Result<&str, &KeyError>) {
        if arn == Ok(key_id) {
            return;
        }
        let ttl = match arn {
            Ok(_) => ARN_TTL,
            Err(KeyError::Unavailable(_) | KeyError::Throttled(_)) => ARN_UNAVAILABLE_TTL,
            Err(_) => ARN_FAILURE_TTL,
        };
        self.arns.write().unwrap_or_else(|e| e.into_inner()).insert(
            key_id.to_string(),
            (
                arn.map(str::to_string).map_err(Clone::clone),
                Instant::now() + ttl,
            ),
        );
    }

    /// The remembered resolution of `key_id`, if still fresh.
    fn known_arn(&self, key_id: &str) -> Option<Result<String, KeyError>> {
        self.arns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key_id)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(arn, _)| arn.clone())
    }

    /// The ARN `key_id` last resolved to, however long ago.
    fn last_arn(&self, key_id: &str) -> Option<String> {
        match self
            .arns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key_id)
        {
            Some((Ok(arn), _)) => Some(arn.clone()),
            _ => None,
        }
    }

    /// The ARN of `key_id` whatever the key's state (for comparing ids:
    /// a disabled key's objects are still the bucket's).
    async fn resolve_arn(&self, key_id: &str) -> Result<String, KeyError> {
        let meta = self.key_metadata(key_id).await?;
        Ok(meta.arn().unwrap_or(meta.key_id()).to_string())
    }

    /// DescribeKey's answer for `key_id`.
    async fn key_metadata(&self, key_id: &str) -> Result<KeyMetadata, KeyError> {
        self.client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| map_error(e, key_id))?
            .key_metadata
            .ok_or_else(|| KeyError::Invalid(format!("KMS described {key_id} without metadata")))
    }
}

/// The KMS client: the provider's region (else the upstream's), its
/// endpoint (else `AWS_ENDPOINT_URL_KMS` / `AWS_ENDPOINT_URL`, else AWS),
/// its credentials (else the standard chain), bounded timeouts.
async fn client(cfg: &AwsKms, fallback_region: &str) -> aws_sdk_kms::Client {
    let region = cfg
        .region
        .clone()
        .unwrap_or_else(|| fallback_region.to_string());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(KMS_CALL_TIMEOUT)
                .connect_timeout(KMS_CONNECT_TIMEOUT)
                .build(),
        );
    if let UpstreamCredentials::Static {
        access_key_id,
        secret_access_key,
        session_token,
    } = &cfg.credentials
    {
        loader = loader.credentials_provider(Credentials::new(
            access_key_id,
            secret_access_key.expose_str().unwrap_or_default(),
            session_token
                .as_ref()
                .and_then(|t| t.expose_str())
                .map(str::to_string),
            None,
            "sealgate-config",
        ));
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_kms::config::Builder::from(&shared);
    if let Some(endpoint) = &cfg.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_kms::Client::from_conf(builder.build())
}

/// KMS errors as the gateway's key errors: each cause a client or operator
/// can act on stays distinct (and never carries key material).
fn map_error<E: ProvideErrorMetadata + std::fmt::Debug>(
    err: SdkError<E>,
    key_id: &str,
) -> KeyError {
    let what = |e: &dyn ProvideErrorMetadata| {
        format!(
            "{}: {} (key {key_id})",
            e.code().unwrap_or("error"),
            e.message().unwrap_or("")
        )
    };
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            match e.code().unwrap_or("") {
                "AccessDeniedException" => KeyError::Denied(what(e)),
                "NotFoundException" => KeyError::NotFound(what(e)),
                "DisabledException" => KeyError::Disabled(what(e)),
                "KMSInvalidStateException" => KeyError::InvalidState(what(e)),
                "ThrottlingException" | "LimitExceededException" => KeyError::Throttled(what(e)),
                "InvalidCiphertextException"
                | "IncorrectKeyException"
                | "InvalidKeyUsageException" => KeyError::Invalid(what(e)),
                _ => KeyError::Unavailable(what(e)),
            }
        }
        SdkError::TimeoutError(_) => KeyError::Unavailable(format!("KMS timed out (key {key_id})")),
        _ => KeyError::Unavailable(format!("KMS could not be reached (key {key_id}): {err}")),
    }
}

/// Copies a KMS plaintext into a zeroizing key and wipes the SDK's copy.
fn take_key(blob: Option<Blob>, key_id: &str) -> Result<Zeroizing<[u8; DEK_LEN]>, KeyError> {
    let mut bytes = blob.map(Blob::into_inner).unwrap_or_default();
    let out = if bytes.len() == DEK_LEN {
        let mut key = Zeroizing::new([0u8; DEK_LEN]);
        key.copy_from_slice(&bytes);
        Ok(key)
    } else {
        Err(KeyError::Invalid(format!(
            "KMS returned a {}-byte data key for {key_id}",
            bytes.len()
        )))
    };
    bytes.zeroize();
    out
}

/// The ARN KMS reports and the wrapped key it returned.
fn wrapped_under(
    arn: Option<&str>,
    blob: Option<&Blob>,
    key_id: &str,
) -> Result<(String, Vec<u8>), KeyError> {
    let wrapped = blob
        .map(|b| b.as_ref().to_vec())
        .ok_or_else(|| KeyError::Invalid(format!("KMS returned no wrapped key for {key_id}")))?;
    Ok((arn.unwrap_or(key_id).to_string(), wrapped))
}

fn kms_context(context: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| context.clone().into_iter().collect())
}

#[async_trait]
impl KeyProvider for AwsKmsProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn default_key_id(&self) -> &str {
        &self.default_key_id
    }

    fn type_name(&self) -> &'static str {
        "aws-kms"
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(kms_context(context))
            .send()
            .await
            .map_err(|e| map_error(e, key_id))?;
        let (arn, wrapped) = wrapped_under(out.key_id(), out.ciphertext_blob(), key_id)?;
        let mut out = out;
        let plaintext = take_key(out.plaintext.take(), key_id)?;
        self.remember(key_id, Ok(&arn));
        Ok(DataKey {
            plaintext,
            wrapped,
            key_id: arn,
        })
    }

    async fn decrypt_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<[u8; DEK_LEN]>, KeyError> {
        let mut out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(kms_context(context))
            .send()
            .await
            .map_err(|e| map_error(e, key_id))?;
        take_key(out.plaintext.take(), key_id)
    }

    async fn wrap_data_key(
        &self,
        key_id: &str,
        dek: &Zeroizing<[u8; DEK_LEN]>,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError> {
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(dek.to_vec()))
            .set_encryption_context(kms_context(context))
            .send()
            .await
            .map_err(|e| map_error(e, key_id))?;
        let (arn, wrapped) = wrapped_under(out.key_id(), out.ciphertext_blob(), key_id)?;
        self.remember(key_id, Ok(&arn));
        Ok(DataKey {
            plaintext: dek.clone(),
            wrapped,
            key_id: arn,
        })
    }

    async fn canonical_key_id(&self, key_id: &str) -> Result<String, KeyError> {
        // A key ARN is what objects record; an alias ARN is resolved.
        if key_id.starts_with("arn:") && key_id.contains(":key/") {
            return Ok(key_id.to_string());
        }
        if let Some(known) = self.known_arn(key_id) {
            return known;
        }
        let resolved = self.resolve_arn(key_id).await;
        if let Err(KeyError::Unavailable(_) | KeyError::Throttled(_)) = &resolved {
            // KMS down or throttling: the ARN last resolved still names the
            // key (an alias is rarely repointed); kept until KMS answers.
            if let Some(arn) = self.last_arn(key_id) {
                // Trusted again for a few seconds: requests meanwhile do not
                // each wait out a KMS timeout to learn KMS is still away.
                self.arns.write().unwrap_or_else(|e| e.into_inner()).insert(
                    key_id.to_string(),
                    (Ok(arn.clone()), Instant::now() + ARN_UNAVAILABLE_TTL),
                );
                return Ok(arn);
            }
        }
        // A provider that was down or throttling may answer soon: that is
        // remembered only briefly (see ARN_UNAVAILABLE_TTL).
        self.remember(key_id, resolved.as_deref());
        resolved
    }
}
