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
//! follows from the first part's size `S` and the stored size where every
//! part but the last has size `S` (as mainstream clients upload), and from
//! reading each part's header in turn otherwise ([`PartWalk`]).

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

/// Most parts a multipart object can have (S3's limit).
pub const MAX_PARTS: u64 = 10_000;

/// Where the parts of a completed multipart object lie: either regular
/// (every part but the last of the first part's size, as mainstream
/// clients upload) and found by arithmetic, or any other layout, found by
/// reading each part's header and kept as a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Plaintext size of every part but the last (regular layouts).
    part_size: u64,
    parts: u64,
    last_part_size: u64,
    table: Option<std::sync::Arc<PartTable>>,
}

/// Each part's plaintext size and where it starts, in plaintext and stored.
#[derive(Debug, PartialEq, Eq)]
struct PartTable {
    sizes: Vec<u64>,
    plain_starts: Vec<u64>,
    stored_starts: Vec<u64>,
}

impl Layout {
    /// The regular layout from the first part's plaintext size and the
    /// stored object size (`None` when the size fits no regular layout).
    pub fn new(part_size: u64, stored_total: u64) -> Option<Self> {
        if part_size > crate::format::MAX_PLAINTEXT_LEN
            || stored_total > 2 * crate::format::MAX_PLAINTEXT_LEN
        {
            return None;
        }
        let full = stored_part_len(part_size);
        let (n_full, rest) = (stored_total / full, stored_total % full);
        let (parts, last_part_size) = match (n_full, rest) {
            (0, _) => return None,
            (n, 0) => (n, part_size),
            (n, r) => {
                let last = part_plaintext_len(r)?;
                if last == 0 || last >= part_size {
                    return None;
                }
                (n + 1, last)
            }
        };
        (parts <= MAX_PARTS).then_some(Self {
            part_size,
            parts,
            last_part_size,
            table: None,
        })
    }

    /// Any layout, from each part's plaintext size in order (as read from
    /// the part headers). `None` for no parts, too many, or too large.
    pub fn from_sizes(sizes: Vec<u64>) -> Option<Self> {
        let n = sizes.len() as u64;
        if n == 0 || n > MAX_PARTS {
            return None;
        }
        let (mut plain, mut stored) = (0u64, 0u64);
        let (mut plain_starts, mut stored_starts) = (Vec::new(), Vec::new());
        for &size in &sizes {
            if size > crate::format::MAX_PLAINTEXT_LEN {
                return None;
            }
            plain_starts.push(plain);
            stored_starts.push(stored);
            plain = plain.checked_add(size)?;
            stored = stored.checked_add(stored_part_len(size))?;
        }
        if plain > crate::format::MAX_PLAINTEXT_LEN {
            return None;
        }
        Some(Self {
            part_size: sizes[0],
            parts: n,
            last_part_size: sizes[sizes.len() - 1],
            table: Some(std::sync::Arc::new(PartTable {
                sizes,
                plain_starts,
                stored_starts,
            })),
        })
    }

    /// Regular: found by arithmetic; else each part's size was read.
    pub fn is_regular(&self) -> bool {
        self.table.is_none()
    }

    pub fn parts(&self) -> u64 {
        self.parts
    }

    pub fn last_part_size(&self) -> u64 {
        self.last_part_size
    }

    pub fn plaintext_total(&self) -> u64 {
        match &self.table {
            None => (self.parts - 1) * self.part_size + self.last_part_size,
            Some(t) => t.plain_starts[t.plain_starts.len() - 1] + self.last_part_size,
        }
    }

    /// Stored bytes of the whole object.
    pub fn stored_total(&self) -> u64 {
        self.part_start(self.parts - 1) + stored_part_len(self.last_part_size)
    }

    pub fn part_len(&self, index: u64) -> u64 {
        match &self.table {
            Some(t) => t.sizes[index as usize],
            None if index + 1 == self.parts => self.last_part_size,
            None => self.part_size,
        }
    }

    /// Stored offset of part `index` (its header).
    pub fn part_start(&self, index: u64) -> u64 {
        match &self.table {
            Some(t) => t.stored_starts[index as usize],
            None => index * stored_part_len(self.part_size),
        }
    }

    /// Plaintext offset of part `index`'s first byte.
    pub fn plain_start(&self, index: u64) -> u64 {
        match &self.table {
            Some(t) => t.plain_starts[index as usize],
            None => index * self.part_size,
        }
    }

    /// The part holding plaintext offset `at`, and the offset within it.
    pub fn locate(&self, at: u64) -> (u64, u64) {
        let i = match &self.table {
            // The last part starting at or before `at` that is not empty
            // (an empty part starts where the next one does).
            Some(t) => {
                let after = t.plain_starts.partition_point(|&s| s <= at);
                let mut i = after.saturating_sub(1);
                while i > 0 && t.sizes[i] == 0 {
                    i -= 1;
                }
                i as u64
            }
            None => (at / self.part_size.max(1)).min(self.parts - 1),
        };
        (i, at - self.plain_start(i))
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

/// Reads a multipart object's part headers one after another (each says
/// its part's size, so where the next begins): the layout of any object,
/// with the reading left to the caller.
#[derive(Debug)]
pub struct PartWalk {
    sizes: Vec<u64>,
    next: u64,
    stored_total: u64,
    /// The most parts the walk may find: the part count the object states
    /// elsewhere (a multipart ETag), else [`MAX_PARTS`].
    most: u64,
    /// The walk must find exactly [`Self::most`] parts.
    exact: bool,
}

/// A part header that cannot belong where it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkError;

impl PartWalk {
    /// Starts from the first part's header.
    pub fn new(first: &PartHeader, stored_total: u64) -> Result<Self, WalkError> {
        Self::expecting(first, stored_total, None)
    }

    /// Starts from the first part's header, for an object of `parts` parts
    /// if its part count is known (a multipart ETag `"…-N"`): a header
    /// that would make one part more, or an object that ends before its
    /// last part, is refused as soon as it is read, so the walk costs at
    /// most `parts - 1` reads whatever the headers claim.
    pub fn expecting(
        first: &PartHeader,
        stored_total: u64,
        parts: Option<u64>,
    ) -> Result<Self, WalkError> {
        let mut walk = Self {
            sizes: Vec::new(),
            next: 0,
            stored_total,
            // No object has more parts than S3 allows: such a count is
            // refused at the first header.
            most: match parts {
                Some(n) if n > MAX_PARTS => 0,
                Some(n) => n,
                None => MAX_PARTS,
            },
            exact: parts.is_some(),
        };
        walk.push(first)?;
        Ok(walk)
    }

    /// Stored offset of the next header to read; `None` when all are read.
    pub fn next_offset(&self) -> Option<u64> {
        (self.next < self.stored_total).then_some(self.next)
    }

    /// The header read at [`Self::next_offset`].
    pub fn push(&mut self, header: &PartHeader) -> Result<(), WalkError> {
        let n = self.sizes.len() as u64;
        if u64::from(header.number) != n + 1
            || n >= self.most
            || header.size > crate::format::MAX_PLAINTEXT_LEN
        {
            return Err(WalkError);
        }
        let next = self
            .next
            .checked_add(stored_part_len(header.size))
            .filter(|&end| end <= self.stored_total)
            .ok_or(WalkError)?;
        // With a known part count, the last part ends the object and no
        // earlier one does: found here, not one read later.
        let last = n + 1 == self.most;
        let ends = next == self.stored_total;
        if self.exact && last != ends {
            return Err(WalkError);
        }
        self.next = next;
        self.sizes.push(header.size);
        Ok(())
    }

    /// Parts found so far.
    pub fn parts(&self) -> u64 {
        self.sizes.len() as u64
    }

    /// The layout, once every header is read.
    pub fn finish(self) -> Result<Layout, WalkError> {
        let counted = !self.exact || self.parts() == self.most;
        if self.next_offset().is_some() || !counted {
            return Err(WalkError);
        }
        Layout::from_sizes(self.sizes).ok_or(WalkError)
    }
}

/// Would a reader that finds the regular layout of `sizes` (from the
/// first part's size and the stored total), confirmed by the last part's
/// header where it expects it, read another layout than `sizes`? Such a
/// layout cannot be told from a regular one by its stored size and last
/// header: the gateway refuses to complete it.
pub fn mistakable_for_regular(sizes: &[u64]) -> bool {
    let Some((&first, _)) = sizes.split_first() else {
        return false;
    };
    let stored: u64 = sizes.iter().map(|&s| stored_part_len(s)).sum();
    let Some(regular) = Layout::new(first, stored) else {
        return false;
    };
    let n = sizes.len() as u64;
    let same = regular.parts == n && (0..n).all(|i| regular.part_len(i) == sizes[i as usize]);
    !same && regular.parts == n && regular.last_part_size == sizes[sizes.len() - 1]
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
    /// The stream starts with the header of the part holding `first`; for
    /// `first` 0, with the object's first byte (the first part's header,
    /// even an empty part's).
    pub fn from_part_start(
        dek: &[u8; DEK_LEN],
        context_hash: [u8; 32],
        layout: Layout,
        first: u64,
        last: u64,
    ) -> Self {
        let part = if first == 0 {
            0
        } else {
            layout.locate(first).0
        };
        Self::at_part(dek, context_hash, layout, part, first, last)
    }

    fn at_part(
        dek: &[u8; DEK_LEN],
        context_hash: [u8; 32],
        layout: Layout,
        part: u64,
        first: u64,
        last: u64,
    ) -> Self {
        Self {
            dek: Zeroizing::new(*dek),
            context_hash,
            backend: Backend::default_backend(),
            part,
            layout,
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
        let part = layout.locate(first).0;
        let mut d = Self::at_part(dek, context_hash, layout, part, first, last);
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
        let part_start = self.layout.plain_start(self.part);
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
        let part_end = self.layout.plain_start(self.part) + self.layout.part_len(self.part);
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
        let chunks: Vec<&[u8]> = if plain.is_empty() {
            vec![plain]
        } else {
            plain.chunks(part_size).collect()
        };
        store_chunks(&chunks)
    }

    /// Stores `plain` as parts of the given sizes.
    fn store_sizes(plain: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut rest = plain;
        let chunks: Vec<&[u8]> = sizes
            .iter()
            .map(|&n| {
                let (c, r) = rest.split_at(n);
                rest = r;
                c
            })
            .collect();
        assert!(rest.is_empty());
        store_chunks(&chunks)
    }

    fn store_chunks(chunks: &[&[u8]]) -> Vec<u8> {
        let ctx = context_hash([]);
        let mut out = Vec::new();
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
        let mut d =
            PartsDecryptor::from_part_start(&DEK, ctx, layout.clone(), 0, plain.len() as u64 - 1);
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
            let mut d = PartsDecryptor::from_frame(
                &DEK,
                ctx,
                layout.clone(),
                first as u64,
                last as u64,
                &header,
            )
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
        let mut d = PartsDecryptor::from_part_start(&DEK, ctx, layout.clone(), 0, 3 * s as u64 - 1);
        assert!(d.push(&swapped, true).is_err(), "reordered parts must fail");
        let mut bad = stored.clone();
        bad[40] ^= 1; // part number of part 1
        let mut d = PartsDecryptor::from_part_start(&DEK, ctx, layout.clone(), 0, 3 * s as u64 - 1);
        assert!(d.push(&bad, true).is_err());
        let mut truncated_part = stored.clone();
        truncated_part.truncate(2 * p + 100);
        let mut d = PartsDecryptor::from_part_start(&DEK, ctx, layout.clone(), 0, 3 * s as u64 - 1);
        assert!(d.push(&truncated_part, true).is_err());
    }

    /// Reads `first..=last` of `stored` through `layout` as the gateway
    /// does (the first needed part's header read separately).
    fn read_range(stored: &[u8], layout: &Layout, first: u64, last: u64) -> Vec<u8> {
        let ctx = context_hash([]);
        let (a, b) = layout.fetch_range(first, last);
        let (pi, _) = layout.locate(first);
        let header = PartHeader::decode(&stored[layout.part_start(pi) as usize..]).unwrap();
        let mut d =
            PartsDecryptor::from_frame(&DEK, ctx, layout.clone(), first, last, &header).unwrap();
        d.push(&stored[a as usize..=b as usize], true)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn any_layout_reads_back_from_its_part_table() {
        let f = 65_536;
        for sizes in [
            vec![3 * f, f, 5 * f + 7, 2 * f],
            vec![2 * f + 1, 3 * f - 5, 10, 4 * f],
            vec![f, 0, 2 * f, 7],
            vec![0, 2 * f + 3, 5],
            vec![3 * f, 3 * f, 3 * f, 0],
            vec![17],
        ] {
            let total: usize = sizes.iter().sum();
            let plain = data(total);
            let stored = store_sizes(&plain, &sizes);
            let layout = Layout::from_sizes(sizes.iter().map(|&s| s as u64).collect()).unwrap();
            assert!(!layout.is_regular());
            assert_eq!(layout.plaintext_total(), total as u64);
            assert_eq!(layout.stored_total(), stored.len() as u64);
            // The whole object from the first header, in odd pieces.
            let ctx = context_hash([]);
            let mut d =
                PartsDecryptor::from_part_start(&DEK, ctx, layout.clone(), 0, total as u64 - 1);
            let mut out = Vec::new();
            let pieces: Vec<&[u8]> = stored.chunks(9_973).collect();
            for (i, p) in pieces.iter().enumerate() {
                out.extend_from_slice(&d.push(p, i + 1 == pieces.len()).unwrap());
            }
            assert_eq!(out, plain, "{sizes:?}");
            // Every range that starts or ends at a part edge, and inside.
            let mut edges: Vec<usize> = vec![0, total - 1, total / 2];
            let mut at = 0;
            for s in &sizes {
                at += s;
                edges.extend([at.saturating_sub(1), at.min(total - 1)]);
            }
            for &a in &edges {
                for &b in edges.iter().filter(|&&b| b >= a) {
                    let got = read_range(&stored, &layout, a as u64, b as u64);
                    assert_eq!(got, &plain[a..=b], "{sizes:?} {a}-{b}");
                }
            }
        }
    }

    #[test]
    fn a_regular_layout_is_not_taken_for_an_irregular_one() {
        let f = 65_536u64;
        let stored = |sizes: &[u64]| sizes.iter().map(|&s| stored_part_len(s)).sum::<u64>();
        // A part re-uploaded smaller: the regular reading has another last
        // part, so the last header is not where it expects it.
        let reuploaded = [8 * f, 4 * f, 8 * f, 8 * f];
        let regular = Layout::new(8 * f, stored(&reuploaded)).unwrap();
        assert_eq!(regular.parts(), 4);
        assert_ne!(regular.last_part_size(), 8 * f);
        assert!(!mistakable_for_regular(&reuploaded));
        // Two middle parts that trade sizes: same count, total and last part.
        assert!(mistakable_for_regular(&[8 * f, 4 * f, 12 * f, 8 * f]));
        // Frame overheads that cancel: stored offsets agree, plaintext not.
        assert!(mistakable_for_regular(&[8 * f, 8 * f - 17, 8 * f + 1, 3]));
        for regular in [vec![8 * f, 8 * f, 3], vec![8 * f], vec![5, 5, 5]] {
            assert!(!mistakable_for_regular(&regular), "{regular:?}");
        }
        assert!(!mistakable_for_regular(&[]));
    }

    #[test]
    fn part_tables_refuse_what_no_object_can_be() {
        assert!(Layout::from_sizes(vec![]).is_none());
        assert!(Layout::from_sizes(vec![1; MAX_PARTS as usize + 1]).is_none());
        assert!(Layout::from_sizes(vec![crate::format::MAX_PLAINTEXT_LEN + 1]).is_none());
        assert!(Layout::from_sizes(vec![1; MAX_PARTS as usize]).is_some());
    }

    #[test]
    fn a_walk_reads_each_header_where_the_last_one_ends() {
        let f = 65_536;
        let sizes = [3 * f, f + 9, 0, 2 * f];
        let stored = store_sizes(&data(sizes.iter().sum()), &sizes);
        let header_at = |at: u64| PartHeader::decode(&stored[at as usize..]).unwrap();
        let mut walk = PartWalk::new(&header_at(0), stored.len() as u64).unwrap();
        let mut reads = 0;
        while let Some(at) = walk.next_offset() {
            walk.push(&header_at(at)).unwrap();
            reads += 1;
        }
        assert_eq!(reads, 3);
        let layout = walk.finish().unwrap();
        assert_eq!(
            (0..4).map(|i| layout.part_len(i)).collect::<Vec<_>>(),
            sizes.map(|s| s as u64)
        );
        // A header out of place, or one that runs past the object.
        let first = header_at(0);
        let mut walk = PartWalk::new(&first, stored.len() as u64).unwrap();
        assert_eq!(walk.push(&first), Err(WalkError), "part 1 again");
        let mut walk = PartWalk::new(&first, stored.len() as u64).unwrap();
        let long = PartHeader {
            size: 10 * f as u64,
            ..header_at(walk.next_offset().unwrap())
        };
        assert_eq!(walk.push(&long), Err(WalkError));
        let second = PartWalk::new(&header_at(walk.next_offset().unwrap()), stored.len() as u64);
        assert!(second.is_err(), "a walk starts at part 1");
        // Stopped early: not a layout.
        let walk = PartWalk::new(&first, stored.len() as u64).unwrap();
        assert!(walk.finish().is_err());
    }

    /// Headers for `n` parts of `size` plaintext bytes each, one after
    /// another, and the stored size they claim (no frames needed: a walk
    /// reads headers only).
    fn claimed_parts(n: u32, size: u64) -> (Vec<PartHeader>, u64) {
        let headers = (1..=n)
            .map(|number| PartHeader {
                salt: [number as u8; SALT_LEN],
                size,
                number,
            })
            .collect();
        (headers, u64::from(n) * stored_part_len(size))
    }

    #[test]
    fn a_known_part_count_ends_the_walk_at_that_part() {
        // Headers claiming 1,000 parts in an object whose ETag says 2: the
        // second header is the last one read.
        let (headers, stored) = claimed_parts(1000, 5000);
        let mut walk = PartWalk::expecting(&headers[0], stored, Some(2)).unwrap();
        let mut reads = 0;
        let mut refused = false;
        while let Some(at) = walk.next_offset() {
            reads += 1;
            let i = (at / stored_part_len(5000)) as usize;
            if walk.push(&headers[i]).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
        assert_eq!(reads, 1, "one header past the first, none after");
        // The stated count agrees: the same walk finds the layout.
        let mut walk = PartWalk::expecting(&headers[0], stored, Some(1000)).unwrap();
        while let Some(at) = walk.next_offset() {
            let i = (at / stored_part_len(5000)) as usize;
            walk.push(&headers[i]).unwrap();
        }
        assert_eq!(walk.finish().unwrap().parts(), 1000);
        // An object that ends before its stated last part.
        let (headers, stored) = claimed_parts(3, 5000);
        let mut walk = PartWalk::expecting(&headers[0], stored, Some(4)).unwrap();
        assert_eq!(walk.push(&headers[1]), Ok(()));
        assert_eq!(
            walk.push(&headers[2]),
            Err(WalkError),
            "ends at part 3 of 4"
        );
        // One part stated: the first header must span the object.
        assert!(PartWalk::expecting(&headers[0], stored, Some(1)).is_err());
        let (one, stored_one) = claimed_parts(1, 5000);
        let walk = PartWalk::expecting(&one[0], stored_one, Some(1)).unwrap();
        assert_eq!(walk.finish().unwrap().parts(), 1);
        // No count an object cannot have.
        assert!(PartWalk::expecting(&one[0], stored_one, Some(0)).is_err());
        assert!(PartWalk::expecting(&one[0], stored_one, Some(MAX_PARTS + 1)).is_err());
    }

    #[test]
    fn an_unknown_part_count_stops_at_the_most_parts_an_object_has() {
        let (headers, stored) = claimed_parts(MAX_PARTS as u32 + 1, 0);
        let mut walk = PartWalk::new(&headers[0], stored).unwrap();
        for h in &headers[1..MAX_PARTS as usize] {
            walk.push(h).unwrap();
        }
        assert_eq!(walk.parts(), MAX_PARTS);
        assert_eq!(walk.push(&headers[MAX_PARTS as usize]), Err(WalkError));
    }
}
