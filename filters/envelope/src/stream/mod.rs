//! The streaming encryptor and decryptor: pure state machines with
//! `push(input, end) -> Bytes`, no I/O. Each holds at most one frame.
//!
//! Frame `i` of part `p` is sealed with
//! ```text
//! nonce = p (u32 BE) || i (u64 BE)
//! aad   = "sealgate/v1/frame" || final (1 byte: 1 for the last frame, else 0)
//! ```
//! so frames cannot be reordered, moved between parts, or dropped from the
//! end without failing authentication.

use bytes::{Bytes, BytesMut};

use crate::aead::{FrameCipher, NONCE_LEN};
use crate::format::{frame_count, FramePlan, FRAME_SIZE, SEALED_FRAME_SIZE, TAG_LEN};

const AAD_LABEL: &[u8] = b"sealgate/v1/frame";

/// Why a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("the body is longer than the declared {declared} bytes")]
    TooLong { declared: u64 },
    #[error("the body ended after {got} of the declared {declared} bytes")]
    TooShort { declared: u64, got: u64 },
    #[error("frame {frame} failed authentication")]
    Auth { frame: u64 },
    #[error("the ciphertext ended inside frame {frame}")]
    Truncated { frame: u64 },
    #[error("bytes follow the final frame")]
    TrailingData,
}

fn nonce(part: u32, frame: u64) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..4].copy_from_slice(&part.to_be_bytes());
    n[4..].copy_from_slice(&frame.to_be_bytes());
    n
}

fn aad(is_final: bool) -> [u8; 18] {
    let mut a = [0u8; 18];
    a[..17].copy_from_slice(AAD_LABEL);
    a[17] = u8::from(is_final);
    a
}

/// Plaintext length of frame `i` of a stream of `total` bytes.
fn frame_plain_len(i: u64, total: u64) -> u64 {
    (total - (i * FRAME_SIZE).min(total)).min(FRAME_SIZE)
}

/// Encrypts a stream of exactly `total` bytes into frames.
///
/// Plaintext is copied once, into a buffer of its own frame, and sealed in
/// place; a piece that completes one frame (Pingora hands bodies over in
/// pieces of up to 64 KiB) returns that frame's buffer without another copy.
/// The final frame is sealed only by `push(.., end = true)`, so a caller
/// that verifies checksums at the end can withhold it: the upstream then
/// sees a short body and stores nothing.
pub struct Encryptor {
    cipher: Box<dyn FrameCipher>,
    part: u32,
    total: u64,
    consumed: u64,
    frame: u64,
    last_frame: u64,
    /// Plaintext of the open frame (capacity for the frame and its tag).
    open: BytesMut,
    /// Sealed frames not yet returned.
    ready: Vec<Bytes>,
}

/// Joins output pieces; one piece is returned as it is.
fn join(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().expect("one part"),
        _ => parts.concat().into(),
    }
}

impl Encryptor {
    pub fn new(cipher: Box<dyn FrameCipher>, part: u32, total: u64) -> Self {
        Self {
            cipher,
            part,
            total,
            consumed: 0,
            frame: 0,
            last_frame: frame_count(total) - 1,
            open: BytesMut::with_capacity(SEALED_FRAME_SIZE as usize),
            ready: Vec::new(),
        }
    }

    /// Plaintext bytes taken so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    fn seal_open_frame(&mut self, is_final: bool) {
        let tag = self.cipher.seal(
            &nonce(self.part, self.frame),
            &aad(is_final),
            &mut self.open[..],
        );
        self.open.extend_from_slice(&tag);
        let next = BytesMut::with_capacity(SEALED_FRAME_SIZE as usize);
        self.ready
            .push(std::mem::replace(&mut self.open, next).freeze());
        self.frame += 1;
    }

    /// Takes the next piece of plaintext; returns the frames it completed.
    /// With `end`, checks the length and seals the final frame.
    pub fn push(&mut self, input: &[u8], end: bool) -> Result<Bytes, StreamError> {
        self.feed(input, end)?;
        Ok(self.take_ready())
    }

    /// The sealed frames collected by [`Self::feed`] since the last call.
    pub fn take_ready(&mut self) -> Bytes {
        join(std::mem::take(&mut self.ready))
    }

    /// Like [`Self::push`] but keeps the sealed frames for [`Self::take_ready`],
    /// so several pieces (e.g. decoded aws-chunked data) make one output.
    pub fn feed(&mut self, mut input: &[u8], end: bool) -> Result<(), StreamError> {
        if self.consumed + input.len() as u64 > self.total {
            return Err(StreamError::TooLong {
                declared: self.total,
            });
        }
        while !input.is_empty() {
            let room = FRAME_SIZE as usize - self.open.len();
            let n = room.min(input.len());
            self.open.extend_from_slice(&input[..n]);
            input = &input[n..];
            self.consumed += n as u64;
            // A full frame is sealed now unless it is the last one, which waits for `end`.
            if self.open.len() == FRAME_SIZE as usize && self.frame < self.last_frame {
                self.seal_open_frame(false);
            }
        }
        if end {
            if self.consumed != self.total {
                return Err(StreamError::TooShort {
                    declared: self.total,
                    got: self.consumed,
                });
            }
            if self.frame == self.last_frame {
                self.seal_open_frame(true);
            }
        }
        Ok(())
    }
}

/// Decrypts a framed stream (or the frames of a range plan) and trims to
/// the requested plaintext bytes. Plaintext is released one authenticated
/// frame at a time; after a failure nothing more is released.
pub struct Decryptor {
    cipher: Box<dyn FrameCipher>,
    part: u32,
    total: u64,
    frame: u64,
    last_frame: u64,
    /// The last frame to open: the object's last, or the range's.
    stop_frame: u64,
    /// Ciphertext of the frame being collected.
    buf: BytesMut,
    skip: u64,
    remaining: u64,
    failed: bool,
}

impl Decryptor {
    /// Decrypts a whole stream of `total` plaintext bytes; every frame,
    /// including the empty final frame of an empty object, is authenticated.
    pub fn new(cipher: Box<dyn FrameCipher>, part: u32, total: u64) -> Self {
        Self::for_plan(
            cipher,
            part,
            total,
            FramePlan {
                first_frame: 0,
                cipher_start: 0,
                cipher_end: crate::format::ciphertext_len(total) - 1,
                skip: 0,
                take: total,
            },
        )
    }

    /// Decrypts the frames of `plan` (ciphertext starting at its first frame).
    pub fn for_plan(cipher: Box<dyn FrameCipher>, part: u32, total: u64, plan: FramePlan) -> Self {
        Self {
            cipher,
            part,
            total,
            frame: plan.first_frame,
            last_frame: frame_count(total) - 1,
            stop_frame: plan.cipher_end / SEALED_FRAME_SIZE,
            buf: BytesMut::with_capacity(SEALED_FRAME_SIZE as usize),
            skip: plan.skip,
            remaining: plan.take,
            failed: false,
        }
    }

    /// True once every frame of the plan was authenticated.
    pub fn done(&self) -> bool {
        self.frame > self.stop_frame
    }

    fn sealed_len(&self) -> usize {
        (frame_plain_len(self.frame, self.total) + TAG_LEN) as usize
    }

    /// Takes the next piece of ciphertext; returns authenticated plaintext.
    pub fn push(&mut self, input: &[u8], end: bool) -> Result<Bytes, StreamError> {
        let mut out = Vec::new();
        let used = self.decrypt_into(input, &mut out)?;
        // A whole-object read must end exactly after the final frame; a
        // range read ignores what follows its last frame.
        if used < input.len() && self.stop_frame == self.last_frame {
            return Err(StreamError::TrailingData);
        }
        if end && !self.done() {
            return Err(StreamError::Truncated { frame: self.frame });
        }
        Ok(join(out))
    }

    /// Decrypts from `input` up to the plan's last frame, appending each
    /// authenticated frame's plaintext (its own buffer, opened in place) to
    /// `out`; returns how many input bytes it used (the rest follows the plan).
    pub fn decrypt_into(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<usize, StreamError> {
        if self.failed {
            return Err(StreamError::Auth { frame: self.frame });
        }
        let total_in = input.len();
        while !input.is_empty() {
            if self.frame > self.stop_frame {
                break;
            }
            let sealed = self.sealed_len();
            let need = sealed - self.buf.len();
            let n = need.min(input.len());
            self.buf.extend_from_slice(&input[..n]);
            input = &input[n..];
            if self.buf.len() == sealed {
                let is_final = self.frame == self.last_frame;
                let mut frame = std::mem::replace(
                    &mut self.buf,
                    BytesMut::with_capacity(SEALED_FRAME_SIZE as usize),
                );
                let plain = self
                    .cipher
                    .open(&nonce(self.part, self.frame), &aad(is_final), &mut frame)
                    .map_err(|_| {
                        self.failed = true;
                        StreamError::Auth { frame: self.frame }
                    })?;
                let start = (self.skip as usize).min(plain);
                let len = ((plain - start) as u64).min(self.remaining) as usize;
                frame.truncate(start + len);
                let _ = frame.split_to(start);
                if len > 0 {
                    out.push(frame.freeze());
                }
                self.skip = self.skip.saturating_sub(plain as u64);
                self.remaining -= len as u64;
                self.frame += 1;
            }
        }
        Ok(total_in - input.len())
    }
}

#[cfg(test)]
mod tests;
