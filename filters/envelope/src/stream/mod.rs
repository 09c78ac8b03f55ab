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

use crate::aead::{FrameCipher, FrameKey, NONCE_LEN, TAG_LEN};
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

/// What a caller writes around each sealed frame as the encryptor emits it,
/// without copying the frame: a transfer framing (aws-chunked) and a
/// checksum of the sealed bytes (so the storage backend can verify every
/// byte it stores). The wrapping goes into the frame's own buffer.
pub trait FrameWrap: Send + Sync {
    /// Writes what goes before a sealed frame of `sealed_len` bytes.
    fn before(&mut self, sealed_len: usize, out: &mut BytesMut);
    /// Sees a whole sealed frame; returns what goes after it.
    fn after(&mut self, sealed: &[u8]) -> &'static [u8];
    /// What follows the final frame (called once, after it).
    fn finish(&mut self) -> Bytes;
}

/// Most bytes a [`FrameWrap`] writes around one frame (reserved up front so
/// a frame's buffer never grows while it is filled).
pub const MAX_WRAP_LEN: usize = 32;

/// Encrypts a stream of exactly `total` bytes into frames.
///
/// With a streaming backend (aws-lc), every piece of plaintext is encrypted
/// straight into its frame's output buffer as it arrives, whatever the
/// pieces' alignment: no byte is copied to be sealed (frames completed by
/// one piece are joined into one output, a copy only for pieces larger
/// than a frame, which Pingora never hands over). Otherwise a frame that lies whole in
/// one piece is sealed from it directly and only a frame split across
/// pieces is gathered (one copy) first. The final frame is sealed only by
/// `push(.., end = true)`, so a caller that verifies checksums at the end
/// can withhold it: the upstream then sees a short body and stores nothing.
pub struct Encryptor {
    key: FrameKey,
    part: u32,
    total: u64,
    consumed: u64,
    frame: u64,
    last_frame: u64,
    /// Streaming: the open frame's sealed bytes so far, and whether it began.
    frame_out: BytesMut,
    begun: bool,
    /// One-shot: plaintext of a frame split across pieces (reused).
    open: Vec<u8>,
    /// Sealed frames not yet returned.
    ready: Vec<Bytes>,
    /// One-shot: frames sealed by this call, back to back.
    sealed: BytesMut,
    /// Framing written around each sealed frame, if any.
    wrap: Option<Box<dyn FrameWrap>>,
    /// Streaming: where the open frame's sealed bytes start in `frame_out`.
    lead: usize,
}

/// Appends `n` bytes to `out` and returns them for a cipher to write.
fn append_slot(out: &mut BytesMut, n: usize) -> &mut [u8] {
    let at = out.len();
    out.resize(at + n, 0);
    &mut out[at..]
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
    pub fn new(key: FrameKey, part: u32, total: u64) -> Self {
        Self {
            key,
            part,
            total,
            consumed: 0,
            frame: 0,
            last_frame: frame_count(total) - 1,
            frame_out: BytesMut::new(),
            begun: false,
            open: Vec::new(),
            ready: Vec::new(),
            sealed: BytesMut::new(),
            wrap: None,
            lead: 0,
        }
    }

    /// Writes `wrap`'s framing around every sealed frame, and its finish
    /// after the final one.
    pub fn with_wrap(mut self, wrap: Box<dyn FrameWrap>) -> Self {
        self.wrap = Some(wrap);
        self
    }

    /// Plaintext bytes taken so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Takes the next piece of plaintext; returns the frames it completed.
    /// With `end`, checks the length and seals the final frame.
    pub fn push(&mut self, input: &[u8], end: bool) -> Result<Bytes, StreamError> {
        self.feed(input, end)?;
        Ok(self.take_ready())
    }

    /// The sealed frames collected by [`Self::feed`] since the last call.
    pub fn take_ready(&mut self) -> Bytes {
        if !self.sealed.is_empty() {
            self.ready.push(self.sealed.split().freeze());
        }
        join(std::mem::take(&mut self.ready))
    }

    /// Like [`Self::push`] but keeps the sealed frames for [`Self::take_ready`],
    /// so several pieces (e.g. decoded aws-chunked data) make one output.
    pub fn feed(&mut self, input: &[u8], end: bool) -> Result<(), StreamError> {
        if self.consumed + input.len() as u64 > self.total {
            return Err(StreamError::TooLong {
                declared: self.total,
            });
        }
        if self.key.stream_mut().is_some() {
            self.feed_streaming(input);
        } else {
            self.feed_one_shot(input, end);
        }
        if end {
            if self.consumed != self.total {
                return Err(StreamError::TooShort {
                    declared: self.total,
                    got: self.consumed,
                });
            }
            if self.frame == self.last_frame {
                if self.key.stream_mut().is_some() {
                    self.begin_frame();
                    self.close_frame();
                } else {
                    self.seal_gathered(true);
                }
            }
            // The final frame is sealed now (here or from the last piece).
            if let Some(w) = &mut self.wrap {
                if !self.sealed.is_empty() {
                    self.ready.push(self.sealed.split().freeze());
                }
                self.ready.push(w.finish());
            }
        }
        Ok(())
    }

    /// Starts the current frame's stream unless it has begun.
    fn begin_frame(&mut self) {
        if self.begun {
            return;
        }
        let stream = self.key.stream_mut().expect("streaming backend");
        let is_final = self.frame == self.last_frame;
        stream.begin(true, &nonce(self.part, self.frame), &aad(is_final));
        let len = frame_plain_len(self.frame, self.total) as usize;
        // Empty since the last frame left: this takes that frame's memory
        // back when the caller has dropped it, else allocates afresh.
        self.frame_out.reserve(len + TAG_LEN + MAX_WRAP_LEN);
        if let Some(w) = &mut self.wrap {
            w.before(len + TAG_LEN, &mut self.frame_out);
        }
        self.lead = self.frame_out.len();
        self.begun = true;
    }

    /// Seals the current frame's tag and queues the frame.
    fn close_frame(&mut self) {
        let stream = self.key.stream_mut().expect("streaming backend");
        let tag = stream.seal_tag();
        self.frame_out.extend_from_slice(&tag);
        if let Some(w) = &mut self.wrap {
            let tail = w.after(&self.frame_out[self.lead..]);
            self.frame_out.extend_from_slice(tail);
        }
        self.ready.push(self.frame_out.split().freeze());
        self.frame += 1;
        self.begun = false;
    }

    fn feed_streaming(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            self.begin_frame();
            let len = frame_plain_len(self.frame, self.total) as usize;
            let n = (len - (self.frame_out.len() - self.lead)).min(input.len());
            let stream = self.key.stream_mut().expect("streaming backend");
            stream.update(&input[..n], &mut self.frame_out);
            input = &input[n..];
            self.consumed += n as u64;
            // A full frame is sealed now unless it is the last one, which waits for `end`.
            if self.frame_out.len() - self.lead == len && self.frame < self.last_frame {
                self.close_frame();
            }
        }
    }

    /// One-shot: seals the gathered frame and starts the next.
    fn seal_gathered(&mut self, is_final: bool) {
        seal_one_shot(
            self.key.one_shot().expect("one-shot backend"),
            nonce(self.part, self.frame),
            is_final,
            &self.open,
            &mut self.sealed,
            self.wrap.as_deref_mut(),
        );
        self.open.clear();
        self.frame += 1;
    }

    fn feed_one_shot(&mut self, mut input: &[u8], end: bool) {
        let frames = (self.open.len() + input.len()) / FRAME_SIZE as usize + usize::from(end);
        self.sealed
            .reserve(frames * (SEALED_FRAME_SIZE as usize + MAX_WRAP_LEN));
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
                seal_one_shot(
                    self.key.one_shot().expect("one-shot backend"),
                    nonce,
                    is_final,
                    &input[..n],
                    &mut self.sealed,
                    self.wrap.as_deref_mut(),
                );
                input = &input[n..];
                self.consumed += n as u64;
                self.frame += 1;
                continue;
            }
            let n = (frame - self.open.len()).min(input.len());
            self.open.extend_from_slice(&input[..n]);
            input = &input[n..];
            self.consumed += n as u64;
            if self.open.len() == frame && self.frame < self.last_frame {
                self.seal_gathered(false);
            }
        }
    }
}

/// Seals `plain` as one frame onto `out`, wrapped if asked.
fn seal_one_shot(
    cipher: &dyn FrameCipher,
    nonce: [u8; NONCE_LEN],
    is_final: bool,
    plain: &[u8],
    out: &mut BytesMut,
    mut wrap: Option<&mut (dyn FrameWrap + 'static)>,
) {
    if let Some(w) = wrap.as_deref_mut() {
        w.before(plain.len() + TAG_LEN, out);
    }
    let start = out.len();
    let slot = append_slot(out, plain.len() + TAG_LEN);
    let (ct, tag_out) = slot.split_at_mut(plain.len());
    let tag = cipher.seal_into(&nonce, &aad(is_final), plain, ct);
    tag_out.copy_from_slice(&tag);
    if let Some(w) = wrap {
        let tail = w.after(&out[start..]);
        out.extend_from_slice(tail);
    }
}

/// Decrypts a framed stream (or the frames of a range plan) and trims to
/// the requested plaintext bytes. Plaintext is released one authenticated
/// frame at a time; after a failure nothing more is released. Like the
/// encryptor, a streaming backend decrypts each piece straight into its
/// frame's buffer (held until the tag checks out); otherwise frames split
/// across pieces are gathered first.
pub struct Decryptor {
    key: FrameKey,
    part: u32,
    total: u64,
    frame: u64,
    last_frame: u64,
    /// The last frame to open: the object's last, or the range's.
    stop_frame: u64,
    /// Ciphertext bytes of the current frame taken so far.
    taken: usize,
    /// Streaming: the current frame's (unauthenticated) plaintext, and its tag.
    frame_out: BytesMut,
    tag: [u8; TAG_LEN],
    /// One-shot: ciphertext of a frame split across pieces (reused).
    buf: Vec<u8>,
    skip: u64,
    remaining: u64,
    failed: bool,
}

impl Decryptor {
    /// Decrypts a whole stream of `total` plaintext bytes; every frame,
    /// including the empty final frame of an empty object, is authenticated.
    pub fn new(key: FrameKey, part: u32, total: u64) -> Self {
        Self::for_plan(
            key,
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
    pub fn for_plan(key: FrameKey, part: u32, total: u64, plan: FramePlan) -> Self {
        Self {
            key,
            part,
            total,
            frame: plan.first_frame,
            last_frame: frame_count(total) - 1,
            stop_frame: plan.cipher_end / SEALED_FRAME_SIZE,
            taken: 0,
            frame_out: BytesMut::new(),
            tag: [0; TAG_LEN],
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
    /// authenticated frame's plaintext (trimmed to the plan) to `out`;
    /// returns how many input bytes it used (the rest follows the plan).
    pub fn decrypt_into(
        &mut self,
        input: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<usize, StreamError> {
        if self.failed {
            return Err(StreamError::Auth { frame: self.frame });
        }
        let used = if self.key.stream_mut().is_some() {
            self.decrypt_streaming(input, out)
        } else {
            self.decrypt_one_shot(input, out)
        };
        used.inspect_err(|_| self.failed = true)
    }

    /// Trims an authenticated frame's plaintext to the plan and emits it.
    fn release(&mut self, plain: Bytes, out: &mut Vec<Bytes>) {
        let n = plain.len();
        let start = (self.skip as usize).min(n);
        let len = ((n - start) as u64).min(self.remaining) as usize;
        if len > 0 {
            out.push(plain.slice(start..start + len));
        }
        self.skip = self.skip.saturating_sub(n as u64);
        self.remaining -= len as u64;
        self.frame += 1;
        self.taken = 0;
    }

    fn decrypt_streaming(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<usize, StreamError> {
        let total_in = input.len();
        while !input.is_empty() && self.frame <= self.stop_frame {
            let plain = frame_plain_len(self.frame, self.total) as usize;
            let stream = self.key.stream_mut().expect("streaming backend");
            if self.taken == 0 {
                let is_final = self.frame == self.last_frame;
                stream.begin(false, &nonce(self.part, self.frame), &aad(is_final));
                // Reuses the previous frame's memory once the caller dropped it.
                self.frame_out.reserve(plain);
            }
            if self.taken < plain {
                let n = (plain - self.taken).min(input.len());
                stream.update(&input[..n], &mut self.frame_out);
                input = &input[n..];
                self.taken += n;
                continue;
            }
            let at = self.taken - plain;
            let n = (TAG_LEN - at).min(input.len());
            self.tag[at..at + n].copy_from_slice(&input[..n]);
            input = &input[n..];
            self.taken += n;
            if self.taken == plain + TAG_LEN {
                if stream.check_tag(&self.tag).is_err() {
                    // Unauthenticated plaintext never leaves.
                    self.frame_out.clear();
                    return Err(StreamError::Auth { frame: self.frame });
                }
                let frame = self.frame_out.split().freeze();
                self.release(frame, out);
            }
        }
        Ok(total_in - input.len())
    }

    fn decrypt_one_shot(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<usize, StreamError> {
        let total_in = input.len();
        while !input.is_empty() && self.frame <= self.stop_frame {
            let plain = frame_plain_len(self.frame, self.total) as usize;
            let sealed = plain + TAG_LEN;
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
            let mut opened = BytesMut::new();
            let is_final = self.frame == self.last_frame;
            let result = self.key.one_shot().expect("one-shot backend").open_into(
                &nonce(self.part, self.frame),
                &aad(is_final),
                src,
                append_slot(&mut opened, plain),
            );
            self.buf.clear();
            if result.is_err() {
                return Err(StreamError::Auth { frame: self.frame });
            }
            self.release(opened.freeze(), out);
        }
        Ok(total_in - input.len())
    }
}

#[cfg(test)]
mod tests;
