//! The envelope encryptor against the raw AEAD of its own backend, single
//! core: how much the framing costs on top of AES-256-GCM.

use std::time::Instant;

use sealgate_envelope::aead::{Backend, NONCE_LEN};
use sealgate_envelope::{context_hash, Encryptor, ObjectKey, FRAME_SIZE};

/// A fixed benchmark key (never a real one).
const BENCH_KEY: [u8; 32] = [7; 32];

/// GB/s of sealing `total` bytes in 64 KiB frames with the backend directly.
pub fn raw_aead(backend: Backend, total: usize) -> f64 {
    let k = zeroize::Zeroizing::new(BENCH_KEY);
    let cipher = backend.cipher(&k);
    let mut buf = vec![1u8; FRAME_SIZE as usize];
    let frames = total / buf.len();
    let started = Instant::now();
    for i in 0..frames {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
        let tag = cipher.seal(&nonce, b"aad", &mut buf);
        std::hint::black_box(tag);
    }
    (frames * buf.len()) as f64 / 1e9 / started.elapsed().as_secs_f64()
}

/// GB/s of the envelope encryptor over `total` bytes fed in `piece`-byte
/// pieces (Pingora hands request bodies over in pieces of up to 64 KiB).
pub fn envelope(backend: Backend, total: usize, piece: usize) -> f64 {
    let key = ObjectKey::derive(&[3; 32], &[4; 32], &context_hash([]), backend);
    let input = vec![2u8; piece];
    let mut enc = Encryptor::new(key.cipher, 0, total as u64);
    let started = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = left.min(piece);
        left -= n;
        let out = enc.push(&input[..n], left == 0).expect("lengths match");
        std::hint::black_box(out);
    }
    total as f64 / 1e9 / started.elapsed().as_secs_f64()
}
