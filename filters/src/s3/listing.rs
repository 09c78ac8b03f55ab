//! Rewrites `<Size>` in ListObjects, ListObjectsV2 and ListObjectVersions
//! responses from the stored (ciphertext) size to the plaintext size, as
//! the body streams: the carry-over between pieces is at most one
//! unfinished `<Size>` element, so memory stays bounded for any listing.

use bytes::{Bytes, BytesMut};

const OPEN: &[u8] = b"<Size>";
const CLOSE: &[u8] = b"</Size>";
/// Longest `<Size>` element we rewrite: 20 digits (u64::MAX).
const MAX_ELEMENT: usize = OPEN.len() + 20 + CLOSE.len();

/// Streaming `<Size>` rewriter; `map` turns a stored size into the size to show.
pub struct SizeRewriter<F: Fn(u64) -> u64> {
    map: F,
    carry: BytesMut,
}

impl<F: Fn(u64) -> u64> SizeRewriter<F> {
    pub fn new(map: F) -> Self {
        Self {
            map,
            carry: BytesMut::new(),
        }
    }

    /// Takes the next piece; returns what can be released. With `end`, releases everything.
    pub fn push(&mut self, input: &[u8], end: bool) -> Bytes {
        self.carry.extend_from_slice(input);
        let buf = &self.carry[..];
        let mut out = BytesMut::with_capacity(buf.len());
        let mut pos = 0;
        while let Some(i) = find(&buf[pos..], OPEN) {
            let open = pos + i;
            let digits_at = open + OPEN.len();
            let rest = &buf[digits_at..];
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits_at + digits == buf.len() && !end {
                // The element may continue in the next piece.
                out.extend_from_slice(&buf[pos..open]);
                pos = open;
                break;
            }
            let complete = rest[digits..].starts_with(CLOSE);
            if !complete && buf.len() - digits_at - digits < CLOSE.len() && !end {
                out.extend_from_slice(&buf[pos..open]);
                pos = open;
                break;
            }
            let value = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            match (complete, value) {
                (true, Some(v)) => {
                    out.extend_from_slice(&buf[pos..digits_at]);
                    out.extend_from_slice((self.map)(v).to_string().as_bytes());
                    pos = digits_at + digits;
                }
                _ => {
                    out.extend_from_slice(&buf[pos..digits_at]);
                    pos = digits_at;
                }
            }
        }
        if end {
            out.extend_from_slice(&buf[pos..]);
            pos = buf.len();
        } else if find(&buf[pos..], OPEN).is_none() {
            // Keep a tail that could be the start of "<Size>".
            let keep = (buf.len() - pos).min(OPEN.len() - 1);
            let tail_start = buf.len() - keep;
            let cut = buf[tail_start..]
                .iter()
                .position(|&b| b == b'<')
                .map_or(buf.len(), |i| tail_start + i);
            out.extend_from_slice(&buf[pos..cut]);
            pos = cut;
        }
        debug_assert!(self.carry.len() - pos <= MAX_ELEMENT || end);
        let _ = self.carry.split_to(pos);
        out.freeze()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = "<?xml version=\"1.0\"?><ListBucketResult><Contents><Key>a</Key><Size>32</Size></Contents><Contents><Key>b&lt;Size&gt;</Key><Size>65552</Size></Contents><Contents><Key>c</Key><Size>7</Size></Contents></ListBucketResult>";

    fn rewrite(xml: &str, piece: usize) -> String {
        let mut r = SizeRewriter::new(|v| v * 10);
        let mut out = Vec::new();
        let bytes = xml.as_bytes();
        let chunks: Vec<&[u8]> = bytes.chunks(piece).collect();
        for (i, c) in chunks.iter().enumerate() {
            out.extend_from_slice(&r.push(c, i + 1 == chunks.len()));
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rewrites_every_size_whatever_the_split() {
        let expected = XML
            .replace("<Size>32<", "<Size>320<")
            .replace("<Size>65552<", "<Size>655520<")
            .replace("<Size>7<", "<Size>70<");
        for piece in 1..=XML.len() {
            assert_eq!(rewrite(XML, piece), expected, "piece {piece}");
        }
    }

    #[test]
    fn leaves_non_numbers_alone_and_keeps_memory_bounded() {
        assert_eq!(rewrite("<Size>abc</Size>", 3), "<Size>abc</Size>");
        let mut r = SizeRewriter::new(|v| v);
        let big = "x".repeat(100_000);
        let out = r.push(big.as_bytes(), false);
        assert!(out.len() >= 100_000 - OPEN.len());
        assert!(r.carry.len() < OPEN.len());
    }
}
