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

use crate::aead::{FrameCipher, NONCE_LEN, TAG_LEN};
use crate::format::{frame_count, FramePlan, FRAME_SIZE, SEALED_FRAME_SIZE};

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
/// A frame that lies whole inside one input piece is sealed straight from
/// that piece into the output buffer (Pingora hands bodies over in pieces
/// of up to 64 KiB), so those bytes are never copied; only a frame split
/// across pieces is gathered (one copy) in a reused buffer first. The
/// frames one call completes are written back to back into one buffer.
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
    /// Plaintext of a frame split across pieces (reused, never handed out).
    open: Vec<u8>,
    /// Sealed frames not yet returned.
    ready: BytesMut,
}

/// Appends `n` bytes to `out` and returns them for a cipher to write.
fn append_slot(out: &mut BytesMut, n: usize) -> &mut [u8] {
    let at = out.len();
    out.resize(at + n, 0);
    &mut out[at..]
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
            open: Vec::with_capacity(FRAME_SIZE as usize),
            ready: BytesMut::new(),
        }
    }

    /// Plaintext bytes taken so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Seals `plain` as the current frame onto `ready`.
    fn seal_frame(
        cipher: &dyn FrameCipher,
        nonce: [u8; NONCE_LEN],
        is_final: bool,
        plain: &[u8],
        ready: &mut BytesMut,
    ) {
        let slot = append_slot(ready, plain.len() + TAG_LEN);
        let (ct, tag_out) = slot.split_at_mut(plain.len());
        let tag = cipher.seal_into(&nonce, &aad(is_final), plain, ct);
        tag_out.copy_from_slice(&tag);
    }

    /// Takes the next piece of plaintext; returns the frames it completed.
    /// With `end`, checks the length and seals the final frame.
    pub fn push(&mut self, input: &[u8], end: bool) -> Result<Bytes, StreamError> {
        self.feed(input, end)?;
        Ok(self.take_ready())
    }

    /// The sealed frames collected by [`Self::feed`] since the last call.
    pub fn take_ready(&mut self) -> Bytes {
        self.ready.split().freeze()
    }

    /// Like [`Self::push`] but keeps the sealed frames for [`Self::take_ready`],
    /// so several pieces (e.g. decoded aws-chunked data) make one output.
    pub fn feed(&mut self, mut input: &[u8], end: bool) -> Result<(), StreamError> {
        if self.consumed + input.len() as u64 > self.total {
            return Err(StreamError::TooLong {
                declared: self.total,
            });
        }
        let frames = (self.open.len() + input.len()) / FRAME_SIZE as usize + usize::from(end);
        self.ready.reserve(frames * SEALED_FRAME_SIZE as usize);
        let frame = FRAME_SIZE as usize;
        while !input.is_empty() {
            let nonce = nonce(self.part, self.frame);
            // A whole frame in this piece is sealed from it directly; the
            // final one only once `end` says the length is right.
            let whole = if self.frame < self.last_frame {
                Some((frame, false))
            } else {
                let rest = (self.total - self.consumed) as usize;
                (end && input.len() == rest).then_some((rest, true))
            };
            if let Some((n, is_final)) =
                whole.filter(|&(n, _)| self.open.is_empty() && input.len() >= n)
            {
                Self::seal_frame(&*self.cipher, nonce, is_final, &input[..n], &mut self.ready);
                input = &input[n..];
                self.consumed += n as u64;
                self.frame += 1;
                continue;
            }
            let n = (frame - self.open.len()).min(input.len());
            self.open.extend_from_slice(&input[..n]);
            input = &input[n..];
            self.consumed += n as u64;
            // A full frame is sealed now unless it is the last one, which waits for `end`.
            if self.open.len() == frame && self.frame < self.last_frame {
                Self::seal_frame(&*self.cipher, nonce, false, &self.open, &mut self.ready);
                self.open.clear();
                self.frame += 1;
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
                let nonce = nonce(self.part, self.frame);
                Self::seal_frame(&*self.cipher, nonce, true, &self.open, &mut self.ready);
                self.open.clear();
                self.frame += 1;
            }
        }
        Ok(())
    }
}

/// Decrypts a framed stream (or the frames of a range plan) and trims to
/// the requested plaintext bytes. Plaintext is released one authenticated
/// frame at a time; after a failure nothing more is released. Like the
/// encryptor, it opens a frame that lies whole in one piece straight into
/// the output and gathers only frames split across pieces.
pub struct Decryptor {
    cipher: Box<dyn FrameCipher>,
    part: u32,
    total: u64,
    frame: u64,
    last_frame: u64,
    /// The last frame to open: the object's last, or the range's.
    stop_frame: u64,
    /// Ciphertext of a frame split across pieces (reused).
    buf: Vec<u8>,
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
            buf: Vec::new(),
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
        frame_plain_len(self.frame, self.total) as usize + TAG_LEN
    }

    /// Takes the next piece of ciphertext; returns authenticated plaintext.
    pub fn push(&mut self, input: &[u8], end: bool) -> Result<Bytes, StreamError> {
        let mut out = BytesMut::with_capacity(self.buf.len() + input.len());
        let used = self.decrypt_into(input, &mut out)?;
        // A whole-object read must end exactly after the final frame; a
        // range read ignores what follows its last frame.
        if used < input.len() && self.stop_frame == self.last_frame {
            return Err(StreamError::TrailingData);
        }
        if end && !self.done() {
            return Err(StreamError::Truncated { frame: self.frame });
        }
        Ok(out.freeze())
    }

    /// Decrypts from `input` up to the plan's last frame, appending each
    /// authenticated frame's plaintext (trimmed to the plan) to `out`;
    /// returns how many input bytes it used (the rest follows the plan).
    pub fn decrypt_into(
        &mut self,
        mut input: &[u8],
        out: &mut BytesMut,
    ) -> Result<usize, StreamError> {
        if self.failed {
            return Err(StreamError::Auth { frame: self.frame });
        }
        let total_in = input.len();
        while !input.is_empty() && self.frame <= self.stop_frame {
            let sealed = self.sealed_len();
            let src: &[u8] = if self.buf.is_empty() && input.len() >= sealed {
                let (frame, rest) = input.split_at(sealed);
                input = rest;
                frame
            } else {
                let n = (sealed - self.buf.len()).min(input.len());
                self.buf.extend_from_slice(&input[..n]);
                input = &input[n..];
                if self.buf.len() < sealed {
                    break;
                }
                &self.buf
            };
            let plain = sealed - TAG_LEN;
            let at = out.len();
            let is_final = self.frame == self.last_frame;
            let opened = self.cipher.open_into(
                &nonce(self.part, self.frame),
                &aad(is_final),
                src,
                append_slot(out, plain),
            );
            self.buf.clear();
            if opened.is_err() {
                out.truncate(at);
                self.failed = true;
                return Err(StreamError::Auth { frame: self.frame });
            }
            let start = (self.skip as usize).min(plain);
            let len = ((plain - start) as u64).min(self.remaining) as usize;
            if start > 0 {
                out.copy_within(at + start..at + start + len, at);
            }
            out.truncate(at + len);
            self.skip = self.skip.saturating_sub(plain as u64);
            self.remaining -= len as u64;
            self.frame += 1;
        }
        Ok(total_in - input.len())
    }
}

#[cfg(test)]
mod tests;
