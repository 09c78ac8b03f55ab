//! The envelope encryptor and decryptor against the raw AEAD of their own
//! backend, single core: how much the framing costs on top of AES-256-GCM.

use std::time::Instant;

use sealgate_envelope::aead::{Backend, NONCE_LEN, TAG_LEN};
use sealgate_envelope::{context_hash, Decryptor, Encryptor, ObjectKey, FRAME_SIZE};

/// A fixed benchmark key (never a real one).
const BENCH_KEY: [u8; 32] = [7; 32];
/// Size of the object the decryption benchmark reads over and over: small
/// enough to stay in cache, as a body piece fresh from the socket is (and
/// as the encryption benchmark's input is), so both measure the framing,
/// not the machine's memory bandwidth.
const DECRYPT_OBJECT: usize = 1 << 20;

fn nonce(i: usize) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
    nonce
}

fn gb_per_s(bytes: usize, started: Instant) -> f64 {
    bytes as f64 / 1e9 / started.elapsed().as_secs_f64()
}

/// GB/s of sealing `total` bytes in 64 KiB frames with the backend directly
/// (in place, one buffer: the AEAD's best case).
pub fn raw_seal(backend: Backend, total: usize) -> f64 {
    let k = zeroize::Zeroizing::new(BENCH_KEY);
    let cipher = backend.cipher(&k);
    let mut buf = vec![1u8; FRAME_SIZE as usize];
    let frames = total / buf.len();
    let started = Instant::now();
    for i in 0..frames {
        let tag = cipher.seal(&nonce(i), b"aad", &mut buf);
        std::hint::black_box(tag);
    }
    gb_per_s(frames * buf.len(), started)
}

/// GB/s of opening `total` bytes of 64 KiB frames with the backend directly
/// (from one buffer into another, as a proxy must).
pub fn raw_open(backend: Backend, total: usize) -> f64 {
    let k = zeroize::Zeroizing::new(BENCH_KEY);
    let cipher = backend.cipher(&k);
    let frame = FRAME_SIZE as usize;
    let mut sealed = vec![1u8; frame];
    let tag = cipher.seal(&nonce(0), b"aad", &mut sealed);
    sealed.extend_from_slice(&tag);
    let mut out = vec![0u8; frame];
    let frames = total / frame;
    let started = Instant::now();
    for _ in 0..frames {
        cipher
            .open_into(&nonce(0), b"aad", &sealed, &mut out)
            .expect("sealed above");
        std::hint::black_box(&out);
    }
    gb_per_s(frames * frame, started)
}

fn object_key(backend: Backend) -> ObjectKey {
    ObjectKey::derive(&[3; 32], &[4; 32], &context_hash([]), backend)
}

/// GB/s of the envelope encryptor over `total` bytes fed in `piece`-byte
/// pieces (Pingora hands request bodies over in pieces of up to 64 KiB).
pub fn encrypt(backend: Backend, total: usize, piece: usize) -> f64 {
    let key = object_key(backend);
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
    gb_per_s(total, started)
}

/// GB/s of the envelope decryptor reading a 1 MiB object over and over
/// until `total` bytes, in `piece`-byte pieces of ciphertext.
pub fn decrypt(backend: Backend, total: usize, piece: usize) -> f64 {
    let sealed = {
        let mut enc = Encryptor::new(object_key(backend).cipher, 0, DECRYPT_OBJECT as u64);
        enc.push(&vec![5u8; DECRYPT_OBJECT], true)
            .expect("lengths match")
    };
    debug_assert!(sealed.len() > DECRYPT_OBJECT + TAG_LEN);
    let rounds = (total / DECRYPT_OBJECT).max(1);
    let started = Instant::now();
    for _ in 0..rounds {
        let mut dec = Decryptor::new(object_key(backend).cipher, 0, DECRYPT_OBJECT as u64);
        let pieces: Vec<&[u8]> = sealed.chunks(piece).collect();
        for (i, p) in pieces.iter().enumerate() {
            let out = dec.push(p, i + 1 == pieces.len()).expect("authentic");
            std::hint::black_box(out);
        }
    }
    gb_per_s(rounds * DECRYPT_OBJECT, started)
}
