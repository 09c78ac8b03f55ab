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

mod decrypt;
pub use decrypt::Decryptor;

use crate::aead::{FrameCipher, FrameKey, NONCE_LEN, TAG_LEN};
use crate::format::{frame_count, FRAME_SIZE, SEALED_FRAME_SIZE};

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

/// How many frames an output buffer begun for a frame should hold, so that
/// no buffer grows (a copy) and none is joined to another: the frames
/// that the `rest` input bytes left of this piece complete, starting with
/// this one (`first` input bytes long, each next `unit`; all `left` frames
/// when `rest` reaches the end, `to_end` bytes away, whose last frame may
/// be shorter); or, when `rest` does not complete this frame, this frame
/// and those a next piece as long as this one (`hint`) would complete
/// after it. A frame that will not complete in the piece at hand starts a
/// buffer of its own (see the callers), so its partial bytes never sit
/// behind frames already handed out.
fn frames_for_buffer(
    first: usize,
    unit: usize,
    rest: usize,
    hint: usize,
    to_end: usize,
    left: u64,
) -> usize {
    let left = usize::try_from(left.max(1)).unwrap_or(usize::MAX);
    let reach = if rest >= first {
        rest
    } else {
        first + hint.saturating_sub(first - rest)
    };
    if reach >= to_end {
        return left;
    }
    (1 + reach.saturating_sub(first) / unit).min(left)
}

/// Slack for what a [`FrameWrap`] writes after the final frame.
const FINISH_SLACK: usize = 256;

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
/// straight into the output buffer as it arrives, whatever the pieces'
/// alignment: no byte is copied to be sealed, and frames follow each other
/// in that buffer, so the frames one piece completes leave as one output
/// piece without being joined (and nothing sealed is held past the call).
/// Otherwise a frame that lies whole in one piece is sealed from it
/// directly and only a frame split across pieces is gathered (one copy)
/// first. The final frame is sealed only by `push(.., end = true)`, so a
/// caller that verifies checksums at the end can withhold it: the upstream
/// then sees a short body and stores nothing.
pub struct Encryptor {
    key: FrameKey,
    part: u32,
    total: u64,
    consumed: u64,
    frame: u64,
    last_frame: u64,
    /// Streaming: sealed frames not yet handed out (`done` bytes), then the
    /// open frame's sealed bytes so far; and whether that frame began.
    frame_out: BytesMut,
    done: usize,
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
    /// Streaming: the length of the last piece of input (buffer sizing).
    hint: usize,
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
            done: 0,
            begun: false,
            open: Vec::new(),
            ready: Vec::new(),
            sealed: BytesMut::new(),
            wrap: None,
            lead: 0,
            hint: 0,
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
        // Streaming: the sealed frames lead `frame_out` (the open frame's
        // bytes stay behind them, in place).
        if self.done > 0 {
            self.ready.push(self.frame_out.split_to(self.done).freeze());
            self.lead = self.lead.saturating_sub(self.done);
            self.done = 0;
        }
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
                    self.begin_frame(0);
                    self.close_frame();
                } else {
                    self.seal_gathered(true);
                }
            }
            // The final frame is sealed now (here or from the last piece);
            // the wrap's finish goes into the same buffer (no join).
            if let Some(w) = &mut self.wrap {
                let finish = w.finish();
                if self.key.stream_mut().is_some() {
                    self.frame_out.extend_from_slice(&finish);
                    self.done = self.frame_out.len();
                } else {
                    self.sealed.extend_from_slice(&finish);
                }
            }
        }
        Ok(())
    }

    /// Starts the current frame's stream unless it has begun; `rest` input
    /// bytes are left of the piece at hand.
    fn begin_frame(&mut self, rest: usize) {
        if self.begun {
            return;
        }
        let stream = self.key.stream_mut().expect("streaming backend");
        let is_final = self.frame == self.last_frame;
        stream.begin(true, &nonce(self.part, self.frame), &aad(is_final));
        let len = frame_plain_len(self.frame, self.total) as usize;
        let sealed = FRAME_SIZE as usize + TAG_LEN + MAX_WRAP_LEN;
        let want = if is_final {
            len + TAG_LEN + MAX_WRAP_LEN + FINISH_SLACK
        } else if self.frame_out.is_empty() {
            let left = self.last_frame + 1 - self.frame;
            let to_end = (self.total - self.consumed) as usize;
            let frames = frames_for_buffer(len, FRAME_SIZE as usize, rest, self.hint, to_end, left);
            frames * sealed + FINISH_SLACK
        } else {
            len + TAG_LEN + MAX_WRAP_LEN
        };
        // Empty since its frames left: this takes their memory back when the
        // caller has dropped them, else allocates afresh.
        self.frame_out.reserve(want);
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
        self.done = self.frame_out.len();
        self.frame += 1;
        self.begun = false;
    }

    fn feed_streaming(&mut self, mut input: &[u8]) {
        self.hint = input.len();
        while !input.is_empty() {
            self.begin_frame(input.len());
            let len = frame_plain_len(self.frame, self.total) as usize;
            let n = (len - (self.frame_out.len() - self.lead)).min(input.len());
            let stream = self.key.stream_mut().expect("streaming backend");
            stream.update(&input[..n], &mut self.frame_out);
            input = &input[n..];
            self.consumed += n as u64;
            // A full frame is sealed now unless it is the last one, which waits for `end`.
            if self.frame_out.len() - self.lead == len && self.frame < self.last_frame {
                self.close_frame();
                // The next frame starts a buffer of its own unless this
                // piece completes it (the final one's plaintext, sealed at
                // the end): sealed frames leave as they are.
                let next = frame_plain_len(self.frame, self.total) as usize;
                if input.len() < next {
                    self.ready.push(self.frame_out.split().freeze());
                    self.done = 0;
                }
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

#[cfg(test)]
mod tests;
