//! Size and range arithmetic of the framed format. Everything here is a pure
//! function of sizes, so Content-Length, HEAD and listing sizes are computed,
//! never stored, and a range read fetches only the frames it needs.
//!
//! A body of `P` plaintext bytes is cut into frames of [`FRAME_SIZE`] bytes
//! (the last one shorter; an empty body is one empty frame), and each frame
//! gains a [`TAG_LEN`]-byte GCM tag.

/// Plaintext bytes per frame.
pub const FRAME_SIZE: u64 = 64 * 1024;
/// AES-GCM tag length.
pub const TAG_LEN: u64 = 16;
/// Ciphertext bytes of a full frame.
pub const SEALED_FRAME_SIZE: u64 = FRAME_SIZE + TAG_LEN;

/// Largest plaintext object: S3's 5 TiB object limit. Lengths from requests
/// and stored headers are checked against it before any size arithmetic.
pub const MAX_PLAINTEXT_LEN: u64 = 5 << 40;

/// Number of frames for `plain` bytes (at least one).
pub fn frame_count(plain: u64) -> u64 {
    plain.div_ceil(FRAME_SIZE).max(1)
}

/// Ciphertext length of `plain` plaintext bytes.
pub fn ciphertext_len(plain: u64) -> u64 {
    plain + TAG_LEN * frame_count(plain)
}

/// Plaintext length of a well-formed ciphertext of `cipher` bytes; `None`
/// when no plaintext length produces that ciphertext length.
pub fn plaintext_len(cipher: u64) -> Option<u64> {
    if cipher < TAG_LEN {
        return None;
    }
    let frames = cipher.div_ceil(SEALED_FRAME_SIZE);
    let plain = cipher - frames * TAG_LEN;
    (ciphertext_len(plain) == cipher).then_some(plain)
}

/// The largest plaintext whose ciphertext fits in `limit` bytes.
pub fn max_plaintext_for(limit: u64) -> u64 {
    let full = limit / SEALED_FRAME_SIZE;
    let rest = limit % SEALED_FRAME_SIZE;
    full * FRAME_SIZE + rest.saturating_sub(TAG_LEN)
}

/// Which ciphertext bytes serve a plaintext range, and how to trim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePlan {
    /// First frame to fetch.
    pub first_frame: u64,
    /// Byte offset of that frame in the ciphertext.
    pub cipher_start: u64,
    /// Last ciphertext byte to fetch (inclusive).
    pub cipher_end: u64,
    /// Plaintext bytes to drop from the start of the first frame.
    pub skip: u64,
    /// Plaintext bytes to emit in total.
    pub take: u64,
}

/// Plans the fetch of plaintext bytes `start..=end` of an object of `total`
/// plaintext bytes. Callers have already clamped `end < total` and checked
/// `start <= end`.
pub fn plan_range(start: u64, end: u64, total: u64) -> FramePlan {
    debug_assert!(start <= end && end < total.max(1));
    let first_frame = start / FRAME_SIZE;
    let last_frame = end / FRAME_SIZE;
    let cipher_start = first_frame * SEALED_FRAME_SIZE;
    let last_frame_plain = (total - last_frame * FRAME_SIZE).min(FRAME_SIZE);
    let cipher_end = last_frame * SEALED_FRAME_SIZE + last_frame_plain + TAG_LEN - 1;
    FramePlan {
        first_frame,
        cipher_start,
        cipher_end,
        skip: start - first_frame * FRAME_SIZE,
        take: end - start + 1,
    }
}

/// A parsed `Range` header (one range; S3 serves no multi-range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` or `bytes=a-`.
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n`. `None` for anything else
    /// (S3 then ignores the header and serves the whole object).
    pub fn parse(value: &str) -> Option<Self> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() {
            return Some(Self::Suffix(b.parse().ok()?));
        }
        let start = a.parse().ok()?;
        let end = if b.is_empty() {
            None
        } else {
            Some(b.parse().ok()?)
        };
        if end.is_some_and(|e| e < start) {
            return None;
        }
        Some(Self::From { start, end })
    }

    /// Resolves against an object of `total` bytes: the inclusive range to
    /// serve, or `None` when it is unsatisfiable (S3's 416 InvalidRange).
    pub fn resolve(self, total: u64) -> Option<(u64, u64)> {
        match self {
            Self::From { start, end } => {
                if start >= total {
                    return None;
                }
                Some((start, end.map_or(total - 1, |e| e.min(total - 1))))
            }
            Self::Suffix(0) => None,
            Self::Suffix(n) => {
                if total == 0 {
                    return None;
                }
                Some((total.saturating_sub(n), total - 1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_at_the_edges() {
        assert_eq!(ciphertext_len(0), 16);
        assert_eq!(ciphertext_len(1), 17);
        assert_eq!(ciphertext_len(FRAME_SIZE - 1), FRAME_SIZE - 1 + 16);
        assert_eq!(ciphertext_len(FRAME_SIZE), FRAME_SIZE + 16);
        assert_eq!(ciphertext_len(FRAME_SIZE + 1), FRAME_SIZE + 1 + 32);
        assert_eq!(plaintext_len(16), Some(0));
        assert_eq!(plaintext_len(15), None);
        assert_eq!(
            plaintext_len(SEALED_FRAME_SIZE + 5),
            None,
            "a 5-byte frame cannot hold a tag"
        );
        assert_eq!(
            plaintext_len(SEALED_FRAME_SIZE + 16),
            None,
            "no empty frame after a full one"
        );
        assert_eq!(plaintext_len(SEALED_FRAME_SIZE + 17), Some(FRAME_SIZE + 1));
    }

    proptest! {
        #[test]
        fn plaintext_len_inverts_ciphertext_len(p in 0u64..(1 << 40)) {
            prop_assert_eq!(plaintext_len(ciphertext_len(p)), Some(p));
        }

        #[test]
        fn max_plaintext_fits(limit in 16u64..(1 << 40)) {
            let p = max_plaintext_for(limit);
            prop_assert!(ciphertext_len(p) <= limit);
            prop_assert!(ciphertext_len(p + 1) > limit);
        }

        #[test]
        fn range_plans_cover_exactly(total in 1u64..(1 << 24), a in 0u64..(1 << 24), len in 1u64..(1 << 20)) {
            let start = a % total;
            let end = (start + len - 1).min(total - 1);
            let plan = plan_range(start, end, total);
            let c = ciphertext_len(total);
            prop_assert!(plan.cipher_end < c);
            prop_assert_eq!(plan.cipher_start % SEALED_FRAME_SIZE, 0);
            // The fetched frames hold exactly skip + take plaintext bytes or more.
            let frames = (plan.cipher_end + 1 - plan.cipher_start).div_ceil(SEALED_FRAME_SIZE);
            let fetched_plain = plan.cipher_end + 1 - plan.cipher_start - frames * TAG_LEN;
            prop_assert!(plan.skip + plan.take <= fetched_plain);
            prop_assert!(fetched_plain - (plan.skip + plan.take) < FRAME_SIZE);
            // The fetch ends on a frame boundary or at the object's end.
            prop_assert!((plan.cipher_end + 1).is_multiple_of(SEALED_FRAME_SIZE) || plan.cipher_end + 1 == c);
        }
    }

    #[test]
    fn ranges_parse_and_resolve() {
        assert_eq!(
            ByteRange::parse("bytes=0-9"),
            Some(ByteRange::From {
                start: 0,
                end: Some(9)
            })
        );
        assert_eq!(
            ByteRange::parse("bytes=5-"),
            Some(ByteRange::From {
                start: 5,
                end: None
            })
        );
        assert_eq!(ByteRange::parse("bytes=-3"), Some(ByteRange::Suffix(3)));
        assert_eq!(ByteRange::parse("bytes=9-5"), None);
        assert_eq!(ByteRange::parse("bytes=0-1,4-5"), None);
        assert_eq!(ByteRange::parse("items=0-1"), None);
        let r = |s: &str, t| ByteRange::parse(s).unwrap().resolve(t);
        assert_eq!(r("bytes=0-9", 5), Some((0, 4)));
        assert_eq!(r("bytes=5-", 5), None);
        assert_eq!(r("bytes=-3", 10), Some((7, 9)));
        assert_eq!(r("bytes=-30", 10), Some((0, 9)));
        assert_eq!(r("bytes=-0", 10), None);
        assert_eq!(r("bytes=0-", 0), None);
    }
}
