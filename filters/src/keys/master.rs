//! The `custom` and `local` providers: a fresh random data key per request,
//! wrapped with AES-256-GCM under a key-encryption key derived from the
//! configured master key (see docs/FORMAT.md, "Local and custom wrapping").

use std::collections::BTreeMap;

use async_trait::async_trait;
use hkdf::Hkdf;
use sealgate_envelope::aead::{Backend, FrameCipher, NONCE_LEN, TAG_LEN};
use sealgate_envelope::context_hash;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{random_bytes, DataKey, KeyError, KeyProvider, DEK_LEN};

const KEK_SALT: &[u8] = b"sealgate/v1/kek-salt";
const KEK_INFO: &[u8] = b"sealgate/v1/kek";
const WRAP_LABEL: &[u8] = b"sealgate/v1/wrap";
/// nonce || wrapped DEK || tag
const WRAPPED_LEN: usize = NONCE_LEN + DEK_LEN + TAG_LEN;

/// A provider whose key-encryption key is derived from a master key.
pub struct MasterKeyProvider {
    name: String,
    type_name: &'static str,
    key_id: String,
    kek: Box<dyn FrameCipher>,
}

impl MasterKeyProvider {
    /// `type_name` is `custom` or `local`; the key id is `<type>:<name>`.
    pub fn new(
        name: &str,
        type_name: &'static str,
        master_key: &[u8],
        salt: Option<&[u8]>,
    ) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(salt.unwrap_or(KEK_SALT)), master_key);
        let mut kek = Zeroizing::new([0u8; 32]);
        hk.expand(KEK_INFO, &mut kek[..])
            .expect("32 bytes is a valid HKDF output length");
        Self {
            name: name.to_string(),
            type_name,
            key_id: format!("{type_name}:{name}"),
            kek: Backend::default_backend().cipher(&kek),
        }
    }

    fn aad(&self, key_id: &str, context: &BTreeMap<String, String>) -> Vec<u8> {
        let mut aad = WRAP_LABEL.to_vec();
        aad.extend_from_slice(key_id.as_bytes());
        aad.extend_from_slice(&context_hash(
            context.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ));
        aad
    }

    fn check_key_id(&self, key_id: &str) -> Result<(), KeyError> {
        if key_id == self.key_id {
            Ok(())
        } else {
            Err(KeyError::Invalid(format!(
                "provider {} holds only the key {}, not {key_id}",
                self.name, self.key_id
            )))
        }
    }
}

#[async_trait]
impl KeyProvider for MasterKeyProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn default_key_id(&self) -> &str {
        &self.key_id
    }

    fn type_name(&self) -> &'static str {
        self.type_name
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError> {
        self.check_key_id(key_id)?;
        let plaintext = Zeroizing::new(random_bytes::<DEK_LEN>());
        let nonce = random_bytes::<NONCE_LEN>();
        let mut wrapped = Vec::with_capacity(WRAPPED_LEN);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&plaintext[..]);
        let tag = self.kek.seal(
            &nonce,
            &self.aad(key_id, context),
            &mut wrapped[NONCE_LEN..],
        );
        wrapped.extend_from_slice(&tag);
        Ok(DataKey {
            plaintext,
            wrapped,
            key_id: key_id.to_string(),
        })
    }

    async fn decrypt_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<[u8; DEK_LEN]>, KeyError> {
        self.check_key_id(key_id)?;
        if wrapped.len() != WRAPPED_LEN {
            return Err(KeyError::Invalid("wrapped key has the wrong length".into()));
        }
        let nonce: [u8; NONCE_LEN] = wrapped[..NONCE_LEN].try_into().expect("length checked");
        let mut buf = Zeroizing::new(wrapped[NONCE_LEN..].to_vec());
        let n = self
            .kek
            .open(&nonce, &self.aad(key_id, context), &mut buf)
            // As KMS answers InvalidCiphertextException: the stored wrap
            // (or its context) is not what this key wrapped.
            .map_err(|_| {
                KeyError::Invalid(
                    "the wrapped key does not open under this master key and context".into(),
                )
            })?;
        let mut dek = Zeroizing::new([0u8; DEK_LEN]);
        dek.copy_from_slice(&buf[..n]);
        Ok(dek)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(v: &str) -> BTreeMap<String, String> {
        [("app".to_string(), v.to_string())].into()
    }

    #[tokio::test]
    async fn wraps_and_unwraps_bound_to_key_and_context() {
        let p = MasterKeyProvider::new("dev", "local", b"testkey", None);
        assert_eq!(p.default_key_id(), "local:dev");
        let dk = p.generate_data_key("local:dev", &ctx("a")).await.unwrap();
        assert_eq!(dk.wrapped.len(), WRAPPED_LEN);
        assert!(
            !dk.wrapped.windows(DEK_LEN).any(|w| w == &dk.plaintext[..]),
            "DEK appears in clear"
        );
        let back = p
            .decrypt_data_key("local:dev", &dk.wrapped, &ctx("a"))
            .await
            .unwrap();
        assert_eq!(&back[..], &dk.plaintext[..]);
        assert!(matches!(
            p.decrypt_data_key("local:dev", &dk.wrapped, &ctx("b"))
                .await,
            Err(KeyError::Invalid(_))
        ));
        let other = MasterKeyProvider::new("dev", "local", b"otherkey", None);
        assert!(other
            .decrypt_data_key("local:dev", &dk.wrapped, &ctx("a"))
            .await
            .is_err());
        assert!(matches!(
            p.generate_data_key("local:else", &ctx("a")).await,
            Err(KeyError::Invalid(_))
        ));
        let mut bad = dk.wrapped.clone();
        bad[20] ^= 1;
        assert!(p
            .decrypt_data_key("local:dev", &bad, &ctx("a"))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn every_data_key_is_fresh() {
        let p = MasterKeyProvider::new("c", "custom", &[5; 32], Some(b"salt"));
        let a = p
            .generate_data_key("custom:c", &BTreeMap::new())
            .await
            .unwrap();
        let b = p
            .generate_data_key("custom:c", &BTreeMap::new())
            .await
            .unwrap();
        assert_ne!(&a.plaintext[..], &b.plaintext[..]);
    }
}
