//! Per-object key derivation and key commitment.
//!
//! The data key (DEK) from the key provider is cached and shared by many
//! objects, so it never encrypts directly. Each object (and each multipart
//! part) draws a random salt, and
//!
//! ```text
//! PRK        = HKDF-Extract(salt, DEK)
//! K_obj      = HKDF-Expand(PRK, "sealgate/v1/object" || context_hash, 32)
//! commitment = HKDF-Expand(PRK, "sealgate/v1/commit" || context_hash, 32)
//! ```
//! The commitment is stored beside the ciphertext and checked in constant
//! time before any frame is opened, so a ciphertext cannot decrypt under two
//! different keys (key commitment).

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::aead::{Backend, FrameKey, KEY_LEN};

/// Random salt per object or part.
pub const SALT_LEN: usize = 32;
/// Key commitment length.
pub const COMMITMENT_LEN: usize = 32;
/// Data key length (AES-256).
pub const DEK_LEN: usize = 32;

const OBJECT_LABEL: &[u8] = b"sealgate/v1/object";
const COMMIT_LABEL: &[u8] = b"sealgate/v1/commit";

/// Cryptographically random bytes (salts, data keys, nonces of wrapped
/// keys). With aws-lc, AWS-LC's per-thread DRBG, seeded and reseeded from
/// the operating system: a draw costs no system call, where a `getrandom`
/// per object showed in the small-PUT profile. Otherwise the operating
/// system's source directly.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[cfg(feature = "aws-lc")]
    aws_lc_rs::rand::fill(&mut out).expect("AWS-LC's random generator is available");
    #[cfg(not(feature = "aws-lc"))]
    getrandom::fill(&mut out).expect("the operating system's random source is available");
    out
}

/// The key commitment did not match: wrong data key or swapped metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("key commitment mismatch")]
pub struct CommitmentMismatch;

/// SHA-256 over an unambiguous encoding of the encryption context
/// (sorted pairs, each string length-prefixed), so the context is bound to
/// the object key without being stored twice.
pub fn context_hash<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> [u8; 32] {
    let mut sorted: Vec<(&str, &str)> = pairs.into_iter().collect();
    sorted.sort();
    context_hash_sorted(sorted)
}

/// [`context_hash`] of pairs already in order (a `BTreeMap`'s), without
/// collecting them first.
pub fn context_hash_sorted<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> [u8; 32] {
    let mut h = Sha256::new();
    for (k, v) in pairs {
        h.update((k.len() as u32).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u32).to_be_bytes());
        h.update(v.as_bytes());
    }
    h.finalize().into()
}

/// The keys of one object (or part): its frame cipher and its commitment.
pub struct ObjectKey {
    pub cipher: FrameKey,
    pub commitment: [u8; COMMITMENT_LEN],
}

/// The object key and commitment of one salt: one HKDF-Extract, two
/// Expands with the label written into a fixed buffer (no allocation).
fn derive_raw(
    dek: &[u8; DEK_LEN],
    salt: &[u8; SALT_LEN],
    context_hash: &[u8; 32],
) -> (Zeroizing<[u8; KEY_LEN]>, [u8; COMMITMENT_LEN]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), dek);
    let mut k_obj = Zeroizing::new([0u8; KEY_LEN]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    hk.expand_multi_info(&[OBJECT_LABEL, context_hash], &mut k_obj[..])
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    hk.expand_multi_info(&[COMMIT_LABEL, context_hash], &mut commitment)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    (k_obj, commitment)
}

/// The key commitment alone (what a new envelope records), without
/// setting up a cipher.
pub fn commitment_of(
    dek: &[u8; DEK_LEN],
    salt: &[u8; SALT_LEN],
    context_hash: &[u8; 32],
) -> [u8; COMMITMENT_LEN] {
    let hk = Hkdf::<Sha256>::new(Some(salt), dek);
    let mut commitment = [0u8; COMMITMENT_LEN];
    hk.expand_multi_info(&[COMMIT_LABEL, context_hash], &mut commitment)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    commitment
}

/// An object's key material before a cipher is set up for it: what a new
/// upload derives once and then hands to each attempt's cipher (the data
/// key itself is not kept past the derivation).
pub struct SealingKey {
    pub key: Zeroizing<[u8; KEY_LEN]>,
    pub commitment: [u8; COMMITMENT_LEN],
}

impl SealingKey {
    /// Derives the object key and its commitment for a new object or part.
    pub fn derive(dek: &[u8; DEK_LEN], salt: &[u8; SALT_LEN], context_hash: &[u8; 32]) -> Self {
        let (key, commitment) = derive_raw(dek, salt, context_hash);
        Self { key, commitment }
    }

    /// A frame cipher under this key.
    pub fn cipher(&self, backend: Backend) -> FrameKey {
        backend.frame_key(&self.key)
    }
}

impl ObjectKey {
    /// Derives the object key and commitment.
    pub fn derive(
        dek: &[u8; DEK_LEN],
        salt: &[u8; SALT_LEN],
        context_hash: &[u8; 32],
        backend: Backend,
    ) -> Self {
        let (k_obj, commitment) = derive_raw(dek, salt, context_hash);
        Self {
            cipher: backend.frame_key(&k_obj),
            commitment,
        }
    }

    /// Derives and checks the stored commitment in constant time.
    pub fn derive_checked(
        dek: &[u8; DEK_LEN],
        salt: &[u8; SALT_LEN],
        context_hash: &[u8; 32],
        stored_commitment: &[u8; COMMITMENT_LEN],
        backend: Backend,
    ) -> Result<Self, CommitmentMismatch> {
        let key = Self::derive(dek, salt, context_hash, backend);
        if bool::from(key.commitment.ct_eq(stored_commitment)) {
            Ok(key)
        } else {
            Err(CommitmentMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_hash_is_order_independent_and_unambiguous() {
        assert_eq!(
            context_hash([("a", "1"), ("b", "2")]),
            context_hash([("b", "2"), ("a", "1")])
        );
        assert_ne!(context_hash([("ab", "c")]), context_hash([("a", "bc")]));
        assert_ne!(context_hash([]), context_hash([("", "")]));
    }

    #[test]
    fn random_draws_differ() {
        assert_ne!(random_bytes::<32>(), random_bytes::<32>());
        assert_ne!(random_bytes::<32>(), [0u8; 32]);
    }

    #[test]
    fn commitment_binds_dek_salt_and_context() {
        let dek = [1u8; 32];
        let salt = [2u8; 32];
        let ctx = context_hash([("app", "x")]);
        let k = ObjectKey::derive(&dek, &salt, &ctx, Backend::default_backend());
        assert_eq!(commitment_of(&dek, &salt, &ctx), k.commitment);
        assert_eq!(
            SealingKey::derive(&dek, &salt, &ctx).commitment,
            k.commitment
        );
        assert_eq!(
            context_hash_sorted([("a", "1"), ("b", "2")]),
            context_hash([("b", "2"), ("a", "1")])
        );
        assert_ne!(commitment_of(&dek, &[3u8; 32], &ctx), k.commitment);
        assert!(ObjectKey::derive_checked(
            &dek,
            &salt,
            &ctx,
            &k.commitment,
            Backend::default_backend()
        )
        .is_ok());
        let other = [9u8; 32];
        assert!(ObjectKey::derive_checked(
            &other,
            &salt,
            &ctx,
            &k.commitment,
            Backend::default_backend()
        )
        .is_err());
        assert!(ObjectKey::derive_checked(
            &dek,
            &other,
            &ctx,
            &k.commitment,
            Backend::default_backend()
        )
        .is_err());
        let ctx2 = context_hash([("app", "y")]);
        assert!(ObjectKey::derive_checked(
            &dek,
            &salt,
            &ctx2,
            &k.commitment,
            Backend::default_backend()
        )
        .is_err());
    }
}
