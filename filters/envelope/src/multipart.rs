//! Multipart objects: each uploaded part is stored as a part header and its
//! own frame stream, so any gateway instance can encrypt any part.
//!
//! ```text
//! part   = header || frames
//! header = salt (32) || u64be(plaintext size) || u32be(part number) || u32be(0)
//! K_part = HKDF(DEK, salt, "sealgate/v1/object" || context_hash)   (as for a whole object)
//! frame nonces use the part number; the final flag marks each part's last frame
//! ```
//! A fresh random salt per UploadPart attempt means a retried or replaced
//! part never reuses a key and nonce. The layout of a completed object
//! follows from the first part's size `S` (every part but the last has it,
//! as every mainstream client uploads) and the stored size.

use bytes::Bytes;
use zeroize::Zeroizing;

use crate::aead::Backend;
use crate::format::{ciphertext_len, plaintext_len, plan_range, FramePlan};
use crate::keys::{ObjectKey, DEK_LEN, SALT_LEN};
use crate::stream::{Decryptor, StreamError};

/// Bytes of a part header.
pub const PART_HEADER_LEN: u64 = 48;

/// A parsed part header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartHeader {
    pub salt: [u8; SALT_LEN],
    pub size: u64,
    pub number: u32,
}

impl PartHeader {
    pub fn encode(&self) -> [u8; PART_HEADER_LEN as usize] {
        let mut h = [0u8; PART_HEADER_LEN as usize];
        h[..32].copy_from_slice(&self.salt);
        h[32..40].copy_from_slice(&self.size.to_be_bytes());
        h[40..44].copy_from_slice(&self.number.to_be_bytes());
        h
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < PART_HEADER_LEN as usize || b[44..48] != [0; 4] {
            return None;
        }
        Some(Self {
            salt: b[..32].try_into().ok()?,
            size: u64::from_be_bytes(b[32..40].try_into().ok()?),
            number: u32::from_be_bytes(b[40..44].try_into().ok()?),
        })
    }
}

/// Stored bytes of a part of `plain` plaintext bytes.
pub fn stored_part_len(plain: u64) -> u64 {
    PART_HEADER_LEN + ciphertext_len(plain)
}

/// Plaintext size of a stored part of `stored` bytes.
pub fn part_plaintext_len(stored: u64) -> Option<u64> {
    plaintext_len(stored.checked_sub(PART_HEADER_LEN)?)
}

/// Where the parts of a completed multipart object lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Plaintext size of every part but the last.
    pub part_size: u64,
    pub parts: u64,
    pub last_part_size: u64,
}

impl Layout {
    /// From the first part's plaintext size and the stored object size.
    pub fn new(part_size: u64, stored_total: u64) -> Option<Self> {
        if part_size > crate::format::MAX_PLAINTEXT_LEN
            || stored_total > 2 * crate::format::MAX_PLAINTEXT_LEN
        {
            return None;
        }
        let full = stored_part_len(part_size);
        let (n_full, rest) = (stored_total / full, stored_total % full);
        match (n_full, rest) {
            (0, _) => None,
            (n, 0) => Some(Self {
                part_size,
                parts: n,
                last_part_size: part_size,
            }),
            (n, r) => {
                let last = part_plaintext_len(r)?;
                (last > 0 && last < part_size).then_some(Self {
                    part_size,
                    parts: n + 1,
                    last_part_size: last,
                })
            }
        }
    }

    pub fn plaintext_total(&self) -> u64 {
        (self.parts - 1) * self.part_size + self.last_part_size
    }

    pub fn part_len(&self, index: u64) -> u64 {
        if index + 1 == self.parts {
            self.last_part_size
        } else {
            self.part_size
        }
    }

    /// Stored offset of part `index` (its header).
    pub fn part_start(&self, index: u64) -> u64 {
        index * stored_part_len(self.part_size)
    }

    /// The part holding plaintext offset `at`, and the offset within it.
    pub fn locate(&self, at: u64) -> (u64, u64) {
        let i = (at / self.part_size).min(self.parts - 1);
        (i, at - i * self.part_size)
    }

    /// Stored bytes to fetch for plaintext `first..=last`, when the first
    /// part's header is known separately: from the first needed frame to
    /// the end of the last needed frame.
    pub fn fetch_range(&self, first: u64, last: u64) -> (u64, u64) {
        let (pi, off_i) = self.locate(first);
        let (pj, off_j) = self.locate(last);
        let start_plan = plan_range(off_i, off_i, self.part_len(pi));
        let end_plan = plan_range(off_j, off_j, self.part_len(pj));
        (
            self.part_start(pi) + PART_HEADER_LEN + start_plan.cipher_start,
            self.part_start(pj) + PART_HEADER_LEN + end_plan.cipher_end,
        )
    }
}

enum State {
    /// Collecting the next part's header.
    Header(Vec<u8>),
    Body(Decryptor),
    Done,
}

/// Decrypts plaintext `first..=last` of a multipart object from stored
/// bytes that start either at a part's header or (with the header given)
/// at the first needed frame.
pub struct PartsDecryptor {
    dek: Zeroizing<[u8; DEK_LEN]>,
    context_hash: [u8; 32],
    backend: Backend,
    layout: Layout,
    part: u64,
    first: u64,
    last: u64,
    state: State,
}

impl PartsDecryptor {
    /// The stream starts with the header of the part holding `first`.
    pub fn from_part_start(
        dek: &[u8; DEK_LEN],
        context_hash: [u8; 32],
        layout: Layout,
        first: u64,
        last: u64,
    ) -> Self {
        Self {
            dek: Zeroizing::new(*dek),
            context_hash,
            backend: Backend::default_backend(),
            layout,
            part: layout.locate(first).0,
            first,
            last,
            state: State::Header(Vec::new()),
        }
    }

    /// As [`Self::from_part_start`], for a stream that starts at the first
    /// needed frame of a part whose header was read separately.
    pub fn from_frame(
        dek: &[u8; DEK_LEN],
        context_hash: [u8; 32],
        layout: Layout,
        first: u64,
        last: u64,
        header: &PartHeader,
    ) -> Result<Self, StreamError> {
        let mut d = Self::from_part_start(dek, context_hash, layout, first, last);
        d.state = State::Body(d.part_decryptor(header, true)?);
        Ok(d)
    }

    /// The decryptor for the current part, over the needed frames.
    fn part_decryptor(&self, header: &PartHeader, mid: bool) -> Result<Decryptor, StreamError> {
        let len = self.layout.part_len(self.part);
        // Parts are numbered 1..=n in order (the gateway refuses other
        // numbering at upload), so a moved or dropped middle part fails.
        if header.size != len || u64::from(header.number) != self.part + 1 {
            return Err(StreamError::Auth { frame: 0 });
        }
        let part_start = self.part * self.layout.part_size;
        let lo = self.first.max(part_start) - part_start;
        let hi = self.last.min(part_start + len.max(1) - 1) - part_start;
        let key = ObjectKey::derive(&self.dek, &header.salt, &self.context_hash, self.backend);
        let plan = if len == 0 {
            FramePlan {
                first_frame: 0,
                cipher_start: 0,
                cipher_end: ciphertext_len(0) - 1,
                skip: 0,
                take: 0,
            }
        } else if mid {
            plan_range(lo, hi, len)
        } else {
            let p = plan_range(0, hi, len);
            FramePlan {
                skip: lo,
                take: hi - lo + 1,
                ..p
            }
        };
        Ok(Decryptor::for_plan(key.cipher, header.number, len, plan))
    }

    fn wants_more_parts(&self) -> bool {
        let part_end = self.part * self.layout.part_size + self.layout.part_len(self.part);
        self.last + 1 > part_end && self.part + 1 < self.layout.parts
    }

    /// Takes stored bytes; returns authenticated plaintext of the range.
    pub fn push(&mut self, mut input: &[u8], end: bool) -> Result<Bytes, StreamError> {
        let mut out = Vec::new();
        while !input.is_empty() {
            match &mut self.state {
                State::Header(buf) => {
                    let need = PART_HEADER_LEN as usize - buf.len();
                    let n = need.min(input.len());
                    buf.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if buf.len() == PART_HEADER_LEN as usize {
                        let header =
                            PartHeader::decode(buf).ok_or(StreamError::Auth { frame: 0 })?;
                        self.state = State::Body(self.part_decryptor(&header, false)?);
                    }
                }
                State::Body(dec) => {
                    let used = dec.decrypt_into(input, &mut out)?;
                    input = &input[used..];
                    if dec.done() {
                        if self.wants_more_parts() {
                            self.part += 1;
                            self.state = State::Header(Vec::new());
                        } else {
                            self.state = State::Done;
                        }
                    }
                }
                State::Done => break,
            }
        }
        if end && !matches!(self.state, State::Done) {
            return Err(StreamError::Truncated { frame: 0 });
        }
        Ok(match out.len() {
            0 => Bytes::new(),
            1 => out.pop().expect("one piece"),
            _ => out.concat().into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::context_hash;
    use crate::stream::Encryptor;

    const DEK: [u8; 32] = [4; 32];

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    /// Stores `plain` as parts of `part_size` (numbers from 1).
    fn store(plain: &[u8], part_size: usize) -> Vec<u8> {
        let ctx = context_hash([]);
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = if plain.is_empty() {
            vec![plain]
        } else {
            plain.chunks(part_size).collect()
        };
        for (i, c) in chunks.iter().enumerate() {
            let salt = [i as u8 + 1; 32];
            let header = PartHeader {
                salt,
                size: c.len() as u64,
                number: i as u32 + 1,
            };
            out.extend_from_slice(&header.encode());
            let key = ObjectKey::derive(&DEK, &salt, &ctx, Backend::default_backend());
            let mut enc = Encryptor::new(key.cipher, i as u32 + 1, c.len() as u64);
            out.extend_from_slice(&enc.push(c, true).unwrap());
        }
        out
    }

    #[test]
    fn layout_from_first_part_and_total() {
        let s = 5 * 65_536;
        for total in [1usize, s - 1, s, s + 1, 3 * s, 3 * s + 17] {
            let stored = store(&data(total), s);
            let first = PartHeader::decode(&stored).unwrap();
            let layout = Layout::new(first.size, stored.len() as u64).unwrap();
            assert_eq!(layout.plaintext_total(), total as u64, "total {total}");
        }
    }

    #[test]
    fn whole_and_ranged_reads() {
        let s = 3 * 65_536;
        let plain = data(4 * s + 1000);
        let stored = store(&plain, s);
        let ctx = context_hash([]);
        let layout = Layout::new(s as u64, stored.len() as u64).unwrap();
        // Whole object from the start, in odd pieces.
        let mut d = PartsDecryptor::from_part_start(&DEK, ctx, layout, 0, plain.len() as u64 - 1);
        let mut out = Vec::new();
        let pieces: Vec<&[u8]> = stored.chunks(10_007).collect();
        for (i, p) in pieces.iter().enumerate() {
            out.extend_from_slice(&d.push(p, i + 1 == pieces.len()).unwrap());
        }
        assert_eq!(out, plain);
        // Ranges across part boundaries, starting mid-part.
        for (first, last) in [
            (5usize, 5usize),
            (s - 3, s + 3),
            (65_530, 3 * s + 70_000),
            (4 * s, 4 * s + 999),
            (0, 4 * s + 999),
        ] {
            let (a, b) = layout.fetch_range(first as u64, last as u64);
            let (pi, _) = layout.locate(first as u64);
            let header = PartHeader::decode(&stored[layout.part_start(pi) as usize..]).unwrap();
            let mut d =
                PartsDecryptor::from_frame(&DEK, ctx, layout, first as u64, last as u64, &header)
                    .unwrap();
            let got = d.push(&stored[a as usize..=b as usize], true).unwrap();
            assert_eq!(&got[..], &plain[first..=last], "{first}-{last}");
        }
    }

    #[test]
    fn swapped_parts_and_altered_headers_fail() {
        let s = 65_536;
        let plain = data(3 * s);
        let stored = store(&plain, s);
        let ctx = context_hash([]);
        let layout = Layout::new(s as u64, stored.len() as u64).unwrap();
        let p = stored_part_len(s as u64) as usize;
        let mut swapped = stored.clone();
        swapped[..p].copy_from_slice(&stored[p..2 * p]);
        swapped[p..2 * p].copy_from_slice(&stored[..p]);
        let mut d = PartsDecryptor::from_part_start(&DEK, ctx, layout, 0, 3 * s as u64 - 1);
        assert!(d.push(&swapped, true).is_err(), "reordered parts must fail");
        let mut bad = stored.clone();
        bad[40] ^= 1; // part number of part 1
        let mut d = PartsDecryptor::from_part_start(&DEK, ctx, layout, 0, 3 * s as u64 - 1);
        assert!(d.push(&bad, true).is_err());
        let mut truncated_part = stored.clone();
        truncated_part.truncate(2 * p + 100);
        let mut d = PartsDecryptor::from_part_start(&DEK, ctx, layout, 0, 3 * s as u64 - 1);
        assert!(d.push(&truncated_part, true).is_err());
    }
}
