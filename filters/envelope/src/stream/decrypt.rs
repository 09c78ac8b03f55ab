//! The streaming decryptor (see the module above for the frame format).

use bytes::{Buf, Bytes, BytesMut};

use super::{aad, append_slot, frame_plain_len, frames_for_buffer, join, nonce, StreamError};
use crate::aead::{FrameKey, TAG_LEN};
use crate::format::{frame_count, FramePlan, FRAME_SIZE, SEALED_FRAME_SIZE};

/// Decrypts a framed stream (or the frames of a range plan) and trims to
/// the requested plaintext bytes. Only authenticated frames are released;
/// after a failure nothing more is released. Like the encryptor, a
/// streaming backend decrypts each piece straight into one output buffer,
/// frame after frame (a frame's bytes held until its tag checks out), and
/// each call releases the frames it completed as one piece without joining
/// them; otherwise frames split across pieces are gathered first.
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
    /// Streaming: authenticated plaintext not yet released (`opened`
    /// bytes), then the current frame's unauthenticated plaintext; its tag.
    frame_out: BytesMut,
    opened: usize,
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
            opened: 0,
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

    /// Moves past an authenticated frame of `n` plaintext bytes; returns
    /// the part of it the plan keeps (`start`, `len`).
    fn next_frame(&mut self, n: usize) -> (usize, usize) {
        let start = (self.skip as usize).min(n);
        let len = ((n - start) as u64).min(self.remaining) as usize;
        self.skip = self.skip.saturating_sub(n as u64);
        self.remaining -= len as u64;
        self.frame += 1;
        self.taken = 0;
        (start, len)
    }

    /// One-shot: trims an authenticated frame's plaintext to the plan and
    /// emits it.
    fn release(&mut self, plain: Bytes, out: &mut Vec<Bytes>) {
        let (start, len) = self.next_frame(plain.len());
        if len > 0 {
            out.push(plain.slice(start..start + len));
        }
    }

    fn decrypt_streaming(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<usize, StreamError> {
        let total_in = input.len();
        let hint = input.len();
        while !input.is_empty() && self.frame <= self.stop_frame {
            let plain = frame_plain_len(self.frame, self.total) as usize;
            if self.taken == 0 && self.frame_out.is_empty() {
                let left = self.stop_frame + 1 - self.frame;
                let stop_len = frame_plain_len(self.stop_frame, self.total) as usize + TAG_LEN;
                let to_end =
                    (self.stop_frame - self.frame) as usize * SEALED_FRAME_SIZE as usize + stop_len;
                let frames = frames_for_buffer(
                    plain + TAG_LEN,
                    SEALED_FRAME_SIZE as usize,
                    input.len(),
                    hint,
                    to_end,
                    left,
                );
                // Takes the last buffer's memory back once the caller has
                // dropped it, else allocates afresh.
                self.frame_out.reserve(frames * FRAME_SIZE as usize);
            }
            let stream = self.key.stream_mut().expect("streaming backend");
            if self.taken == 0 {
                let is_final = self.frame == self.last_frame;
                stream.begin(false, &nonce(self.part, self.frame), &aad(is_final));
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
                    // Unauthenticated plaintext never leaves (nor does any
                    // held with it).
                    self.frame_out.clear();
                    self.opened = 0;
                    return Err(StreamError::Auth { frame: self.frame });
                }
                self.trim_opened(plain);
                // The next frame starts a buffer of its own unless this
                // piece completes it: opened frames leave as they are.
                let next = frame_plain_len(self.frame, self.total) as usize + TAG_LEN;
                if self.opened > 0 && (self.frame > self.stop_frame || input.len() < next) {
                    out.push(self.frame_out.split().freeze());
                    self.opened = 0;
                }
            }
        }
        if self.opened > 0 {
            out.push(self.frame_out.split_to(self.opened).freeze());
            self.opened = 0;
        }
        Ok(total_in - input.len())
    }

    /// Streaming: trims the frame just authenticated (its `n` bytes end
    /// `frame_out`) to the plan and counts it as opened.
    fn trim_opened(&mut self, n: usize) {
        let (start, len) = self.next_frame(n);
        if start > 0 {
            // Only the plan's first frame has bytes to skip, and nothing is
            // held before it.
            debug_assert_eq!(self.opened, 0);
            self.frame_out.advance(start);
        }
        self.frame_out.truncate(self.opened + len);
        self.opened += len;
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
