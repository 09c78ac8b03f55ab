//! sealgate's envelope format v1 (see `docs/FORMAT.md`): per-object keys
//! derived with HKDF from a provider's data key, a key commitment, and
//! 64 KiB frames of AES-256-GCM whose nonce encodes (part, frame) and whose
//! AAD carries the final-frame flag.
//!
//! Everything here is pure (no I/O, no async): size and range arithmetic,
//! key derivation, metadata, and the streaming [`Encryptor`]/[`Decryptor`]
//! state machines. The crate is small and built with `opt-level = 3` even in
//! debug builds, so tests with large objects stay fast.

pub mod aead;
pub mod format;
pub mod keys;
pub mod meta;
pub mod multipart;
pub mod stream;

pub use aead::{Backend, FrameCipher, FrameKey};
pub use format::{ciphertext_len, plaintext_len, plan_range, ByteRange, FramePlan, FRAME_SIZE};
pub use keys::{
    commitment_of, context_hash, context_hash_sorted, random_bytes, ObjectKey, SealingKey,
    COMMITMENT_LEN, DEK_LEN, SALT_LEN,
};
pub use meta::{EnvelopeMeta, MetaError, META_PREFIX};
pub use stream::{Decryptor, Encryptor, FrameWrap, StreamError};
