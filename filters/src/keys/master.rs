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
/// Version 1 wraps (read only): nonce || wrapped DEK || tag under one
/// key-encryption key per master key.
const WRAPPED_V1_LEN: usize = NONCE_LEN + DEK_LEN + TAG_LEN;

const WRAP_V2: u8 = 2;
const MASTER_ID_INFO: &[u8] = b"sealgate/v2/master-id";
const KEK_V2_INFO: &[u8] = b"sealgate/v2/kek";
const WRAP_V2_LABEL: &[u8] = b"sealgate/v2/wrap";
/// Bytes of the master key's public identifier in a wrap.
const MASTER_ID_LEN: usize = 8;
/// Bytes of the per-wrap KDF salt.
const WRAP_SALT_LEN: usize = 32;
/// Version 2 wraps: 0x02 || master id || salt || wrapped DEK || tag. Each
/// wrap has its own key-encryption key (HKDF with the random salt), so the
/// nonce can be fixed and the number of wraps under one master key has no
/// practical bound (one fixed key with random 96-bit nonces allows ~2^32).
const WRAPPED_V2_LEN: usize = 1 + MASTER_ID_LEN + WRAP_SALT_LEN + DEK_LEN + TAG_LEN;
/// The fixed nonce of version 2 wraps (every wrap key is used once).
const WRAP_V2_NONCE: [u8; NONCE_LEN] = [0; NONCE_LEN];

/// One master key: its extracted secret, public id and version 1 KEK.
struct Master {
    prk: Zeroizing<[u8; 32]>,
    id: [u8; MASTER_ID_LEN],
    kek_v1: Box<dyn FrameCipher>,
}

impl Master {
    fn new(master_key: &[u8], kdf_salt: &[u8]) -> Self {
        let (prk, hk) = Hkdf::<Sha256>::extract(Some(kdf_salt), master_key);
        let mut kek = Zeroizing::new([0u8; 32]);
        hk.expand(KEK_INFO, &mut kek[..])
            .expect("32 bytes is a valid HKDF output length");
        let mut id = [0u8; MASTER_ID_LEN];
        hk.expand(MASTER_ID_INFO, &mut id)
            .expect("8 bytes is a valid HKDF output length");
        let mut prk_bytes = Zeroizing::new([0u8; 32]);
        prk_bytes.copy_from_slice(&prk);
        let mut prk = prk;
        zeroize::Zeroize::zeroize(prk.as_mut_slice());
        Self {
            prk: prk_bytes,
            id,
            kek_v1: Backend::default_backend().cipher(&kek),
        }
    }

    /// The key-encryption key of one version 2 wrap.
    fn kek_v2(&self, salt: &[u8]) -> Box<dyn FrameCipher> {
        let mut kek = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(salt), &self.prk[..])
            .expand(KEK_V2_INFO, &mut kek[..])
            .expect("32 bytes is a valid HKDF output length");
        Backend::default_backend().cipher(&kek)
    }
}

/// A provider whose key-encryption keys derive from a master key; earlier
/// master keys stay to unwrap what they wrapped (rotation without
/// re-wrapping: like a KMS key's rotation, the key id stays the same).
pub struct MasterKeyProvider {
    name: String,
    type_name: &'static str,
    key_id: String,
    /// The current master key first; it alone wraps.
    masters: Vec<Master>,
}

fn invalid() -> KeyError {
    // As KMS answers InvalidCiphertextException: the stored wrap (or its
    // context) is not what this key wrapped.
    KeyError::Invalid("the wrapped key does not open under this master key and context".into())
}

impl MasterKeyProvider {
    /// `type_name` is `custom` or `local`; the key id is `<type>:<name>`.
    pub fn new(
        name: &str,
        type_name: &'static str,
        master_key: &[u8],
        salt: Option<&[u8]>,
    ) -> Self {
        Self::with_previous(name, type_name, master_key, &[], salt)
    }

    /// Like [`Self::new`], with earlier master keys that only unwrap.
    pub fn with_previous(
        name: &str,
        type_name: &'static str,
        master_key: &[u8],
        previous: &[&[u8]],
        salt: Option<&[u8]>,
    ) -> Self {
        let kdf_salt = salt.unwrap_or(KEK_SALT);
        let masters = std::iter::once(master_key)
            .chain(previous.iter().copied())
            .map(|k| Master::new(k, kdf_salt))
            .collect();
        Self {
            name: name.to_string(),
            type_name,
            key_id: format!("{type_name}:{name}"),
            masters,
        }
    }

    /// The one-way identifiers of the master keys, current first (hex), as
    /// wraps name them: what `sealgate keys status` shows.
    pub fn master_ids(&self) -> Vec<String> {
        self.masters.iter().map(|m| hex::encode(m.id)).collect()
    }

    fn aad(label: &[u8], key_id: &str, context: &BTreeMap<String, String>) -> Vec<u8> {
        let mut aad = label.to_vec();
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

    fn unwrap_v1(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<[u8; DEK_LEN]>, KeyError> {
        let nonce: [u8; NONCE_LEN] = wrapped[..NONCE_LEN].try_into().expect("length checked");
        for m in &self.masters {
            let mut buf = Zeroizing::new(wrapped[NONCE_LEN..].to_vec());
            if let Ok(n) = m.kek_v1.open(&nonce, aad, &mut buf) {
                let mut dek = Zeroizing::new([0u8; DEK_LEN]);
                dek.copy_from_slice(&buf[..n]);
                return Ok(dek);
            }
        }
        Err(invalid())
    }

    fn unwrap_v2(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<[u8; DEK_LEN]>, KeyError> {
        let id = &wrapped[1..1 + MASTER_ID_LEN];
        let salt = &wrapped[1 + MASTER_ID_LEN..1 + MASTER_ID_LEN + WRAP_SALT_LEN];
        let master = self.masters.iter().find(|m| m.id == id).ok_or_else(|| {
            KeyError::Invalid(format!(
                "the data key was wrapped under a master key provider {} does not hold (rotated out of previous_master_keys?)",
                self.name
            ))
        })?;
        let mut buf = Zeroizing::new(wrapped[1 + MASTER_ID_LEN + WRAP_SALT_LEN..].to_vec());
        let n = master
            .kek_v2(salt)
            .open(&WRAP_V2_NONCE, aad, &mut buf)
            .map_err(|_| invalid())?;
        let mut dek = Zeroizing::new([0u8; DEK_LEN]);
        dek.copy_from_slice(&buf[..n]);
        Ok(dek)
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
        let plaintext = Zeroizing::new(random_bytes::<DEK_LEN>());
        self.wrap_data_key(key_id, &plaintext, context).await
    }

    async fn wrap_data_key(
        &self,
        key_id: &str,
        dek: &Zeroizing<[u8; DEK_LEN]>,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError> {
        self.check_key_id(key_id)?;
        let master = &self.masters[0];
        let salt = random_bytes::<WRAP_SALT_LEN>();
        let mut wrapped = Vec::with_capacity(WRAPPED_V2_LEN);
        wrapped.push(WRAP_V2);
        wrapped.extend_from_slice(&master.id);
        wrapped.extend_from_slice(&salt);
        let body = wrapped.len();
        wrapped.extend_from_slice(&dek[..]);
        let tag = master.kek_v2(&salt).seal(
            &WRAP_V2_NONCE,
            &Self::aad(WRAP_V2_LABEL, key_id, context),
            &mut wrapped[body..],
        );
        wrapped.extend_from_slice(&tag);
        Ok(DataKey {
            plaintext: dek.clone(),
            wrapped,
            key_id: key_id.to_string(),
        })
    }

    fn is_current_wrap(&self, wrapped: &[u8]) -> bool {
        wrapped.len() == WRAPPED_V2_LEN
            && wrapped[0] == WRAP_V2
            && wrapped[1..1 + MASTER_ID_LEN] == self.masters[0].id
    }

    async fn decrypt_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<[u8; DEK_LEN]>, KeyError> {
        self.check_key_id(key_id)?;
        match wrapped.len() {
            WRAPPED_V2_LEN if wrapped[0] == WRAP_V2 => {
                self.unwrap_v2(wrapped, &Self::aad(WRAP_V2_LABEL, key_id, context))
            }
            WRAPPED_V1_LEN => self.unwrap_v1(wrapped, &Self::aad(WRAP_LABEL, key_id, context)),
            _ => Err(KeyError::Invalid("wrapped key has the wrong length".into())),
        }
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
        assert_eq!(dk.wrapped.len(), WRAPPED_V2_LEN);
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

    #[tokio::test]
    async fn rotated_master_keys_still_unwrap_and_only_the_current_wraps() {
        let old = MasterKeyProvider::new("c", "custom", &[1; 32], None);
        let before = old.generate_data_key("custom:c", &ctx("a")).await.unwrap();
        let rotated = MasterKeyProvider::with_previous("c", "custom", &[2; 32], &[&[1; 32]], None);
        assert_eq!(
            rotated.default_key_id(),
            "custom:c",
            "the key id survives rotation"
        );
        let back = rotated
            .decrypt_data_key("custom:c", &before.wrapped, &ctx("a"))
            .await
            .unwrap();
        assert_eq!(&back[..], &before.plaintext[..]);
        let after = rotated
            .generate_data_key("custom:c", &ctx("a"))
            .await
            .unwrap();
        assert_ne!(
            after.wrapped[1..9],
            before.wrapped[1..9],
            "wrapped under the new key"
        );
        assert!(old
            .decrypt_data_key("custom:c", &after.wrapped, &ctx("a"))
            .await
            .is_err());
        // Dropped from previous_master_keys: its wraps no longer open.
        let forgot = MasterKeyProvider::new("c", "custom", &[2; 32], None);
        let err = forgot
            .decrypt_data_key("custom:c", &before.wrapped, &ctx("a"))
            .await
            .unwrap_err();
        assert!(matches!(&err, KeyError::Invalid(m) if m.contains("previous_master_keys")));
    }

    #[tokio::test]
    async fn every_wrap_has_its_own_key_and_version_1_wraps_still_open() {
        let p = MasterKeyProvider::new("dev", "local", b"testkey", None);
        let a = p.generate_data_key("local:dev", &ctx("a")).await.unwrap();
        let b = p.generate_data_key("local:dev", &ctx("a")).await.unwrap();
        assert_ne!(a.wrapped[9..41], b.wrapped[9..41], "fresh salt per wrap");
        // A version 1 wrap (one KEK per master key, random nonce).
        let dek = [7u8; DEK_LEN];
        let nonce = [3u8; NONCE_LEN];
        let mut v1 = nonce.to_vec();
        v1.extend_from_slice(&dek);
        let aad = MasterKeyProvider::aad(WRAP_LABEL, "local:dev", &ctx("a"));
        let tag = p.masters[0].kek_v1.seal(&nonce, &aad, &mut v1[NONCE_LEN..]);
        v1.extend_from_slice(&tag);
        assert_eq!(v1.len(), WRAPPED_V1_LEN);
        let back = p
            .decrypt_data_key("local:dev", &v1, &ctx("a"))
            .await
            .unwrap();
        assert_eq!(*back, dek);
    }
}
