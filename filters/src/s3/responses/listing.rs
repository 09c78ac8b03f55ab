//! Rewrites `<Size>` in ListObjects, ListObjectsV2, ListObjectVersions and
//! ListParts responses from the stored (ciphertext) size to the plaintext
//! size, as the body streams. The `<ETag>` that precedes each `<Size>` in
//! the same entry is passed along: a multipart ETag (`"…-N"`) tells the
//! part count, which the size arithmetic of multipart objects needs.
//! The carry-over between pieces is at most one unfinished element, so
//! memory stays bounded for any listing.

use bytes::{Bytes, BytesMut};

const OPEN: &[u8] = b"<Size>";
const CLOSE: &[u8] = b"</Size>";
const ETAG_OPEN: &[u8] = b"<ETag>";
const ETAG_CLOSE: &[u8] = b"</ETag>";
/// An ETag longer than this is not one S3 makes; it is not held back for.
const MAX_ETAG_ELEMENT: usize = 256;
/// Digits of the largest u64: a longer `<Size>` value is not a size and is
/// not held back for (so a hostile listing cannot grow the carry).
const MAX_SIZE_DIGITS: usize = 20;

/// Streaming `<Size>` rewriter; `map(stored, parts)` gives the size to show,
/// where `parts` is the part count of a multipart ETag in the same entry.
pub struct SizeRewriter<F: Fn(u64, Option<u64>) -> u64> {
    map: F,
    carry: BytesMut,
    parts: Option<u64>,
}

/// The part count of a multipart ETag (`"abc-3"`, possibly `&quot;`-escaped).
fn etag_parts(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let text = text
        .trim_matches('"')
        .trim_end_matches("&quot;")
        .trim_start_matches("&quot;");
    let (_, n) = text.rsplit_once('-')?;
    n.parse().ok()
}

impl<F: Fn(u64, Option<u64>) -> u64> SizeRewriter<F> {
    pub fn new(map: F) -> Self {
        Self {
            map,
            carry: BytesMut::new(),
            parts: None,
        }
    }

    /// Notes the last complete ETag in `segment`.
    fn scan_etags(&mut self, segment: &[u8]) {
        let mut at = 0;
        while let Some(i) = find(&segment[at..], ETAG_OPEN) {
            let start = at + i + ETAG_OPEN.len();
            match find(&segment[start..], ETAG_CLOSE) {
                // Only an element S3 could have made counts (bounded, no
                // markup inside): the same elements are seen however the
                // listing arrives in pieces (`safe_cut` holds back no
                // longer one).
                Some(j)
                    if ETAG_OPEN.len() + j + ETAG_CLOSE.len() <= MAX_ETAG_ELEMENT
                        && !segment[start..start + j].contains(&b'<') =>
                {
                    self.parts = etag_parts(&segment[start..start + j]);
                    at = start + j;
                }
                Some(_) => at = start,
                None => break,
            }
        }
    }

    /// Takes the next piece; returns what can be released. With `end`, releases everything.
    pub fn push(&mut self, input: &[u8], end: bool) -> Bytes {
        self.carry.extend_from_slice(input);
        let buf = std::mem::take(&mut self.carry);
        let mut out = BytesMut::with_capacity(buf.len());
        let mut pos = 0;
        let mut held = false;
        while let Some(i) = find(&buf[pos..], OPEN) {
            let open = pos + i;
            let digits_at = open + OPEN.len();
            let rest = &buf[digits_at..];
            let digits = rest
                .iter()
                .take(MAX_SIZE_DIGITS + 1)
                .take_while(|b| b.is_ascii_digit())
                .count();
            // More digits than a size has: not a size, in any piece.
            let complete = digits <= MAX_SIZE_DIGITS && rest[digits..].starts_with(CLOSE);
            let may_continue =
                !complete && digits <= MAX_SIZE_DIGITS && rest.len() - digits < CLOSE.len();
            if may_continue && !end {
                self.scan_etags(&buf[pos..open]);
                out.extend_from_slice(&buf[pos..open]);
                pos = open;
                held = true;
                break;
            }
            self.scan_etags(&buf[pos..open]);
            let value = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            out.extend_from_slice(&buf[pos..digits_at]);
            match (complete, value) {
                (true, Some(v)) => {
                    out.extend_from_slice((self.map)(v, self.parts.take()).to_string().as_bytes());
                    pos = digits_at + digits;
                }
                _ => pos = digits_at,
            }
        }
        if !held {
            let cut = if end { buf.len() } else { safe_cut(&buf, pos) };
            self.scan_etags(&buf[pos..cut]);
            out.extend_from_slice(&buf[pos..cut]);
            pos = cut;
        }
        self.carry.extend_from_slice(&buf[pos..]);
        out.freeze()
    }
}

/// Where to stop releasing so that no `<Size>` or `<ETag>` element (or a
/// prefix of its tag) is split across pieces.
fn safe_cut(buf: &[u8], pos: usize) -> usize {
    let tail = &buf[pos..];
    // An ETag element opened but not closed: hold it back (bounded).
    if let Some(i) = rfind(tail, ETAG_OPEN) {
        if find(&tail[i..], ETAG_CLOSE).is_none() && tail.len() - i <= MAX_ETAG_ELEMENT {
            return pos + i;
        }
    }
    // A possible prefix of "<Size>" or "<ETag>" at the very end.
    let keep = tail.len().min(OPEN.len() - 1);
    let start = buf.len() - keep;
    buf[start..]
        .iter()
        .position(|&b| b == b'<')
        .map_or(buf.len(), |i| start + i)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// A listed object's plaintext size. Multipart objects (ETag `…-N`) hold N
/// part headers; with every part but the last a multiple of the frame size
/// (all mainstream clients), their frames total as one stream's would.
/// Sizes no envelope makes are shown as stored.
pub fn listed_size(stored: u64, parts: Option<u64>) -> u64 {
    use sealgate_envelope::format::plaintext_len;
    use sealgate_envelope::multipart::PART_HEADER_LEN;
    let headers = parts.unwrap_or(0) * PART_HEADER_LEN;
    stored
        .checked_sub(headers)
        .and_then(plaintext_len)
        .or_else(|| plaintext_len(stored))
        .unwrap_or(stored)
}

/// A part's stored size (in ListParts) to its plaintext size.
pub fn listed_part_size(stored: u64, _parts: Option<u64>) -> u64 {
    sealgate_envelope::multipart::part_plaintext_len(stored).unwrap_or(stored)
}

/// A ListBuckets answer with only the buckets `allowed` accepts: a client
/// sees the buckets it may use, not every bucket of the upstream account.
/// (The backend's document is S3's: `<Bucket>` entries with one `<Name>`.)
pub fn filter_buckets(xml: &str, shown_as: impl Fn(&str) -> Option<String>) -> String {
    const OPEN: &str = "<Bucket>";
    const CLOSE: &str = "</Bucket>";
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(a) = rest.find(OPEN) {
        let Some(len) = rest[a..].find(CLOSE).map(|b| b + CLOSE.len()) else {
            break;
        };
        let entry = &rest[a..a + len];
        let name = entry
            .split_once("<Name>")
            .and_then(|(_, n)| n.split_once("</Name>"))
            .map(|(n, _)| n.trim());
        out.push_str(&rest[..a]);
        if let Some((name, shown)) = name.and_then(|n| Some((n, shown_as(n)?))) {
            if shown == name {
                out.push_str(entry);
            } else {
                // Bucket names need no XML escaping: the shown name is a
                // configured alias, checked as a bucket name.
                out.push_str(&entry.replacen(
                    &format!("<Name>{name}</Name>"),
                    &format!("<Name>{shown}</Name>"),
                    1,
                ));
            }
        }
        rest = &rest[a + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use sealgate_envelope::multipart::PART_HEADER_LEN;

    #[test]
    fn bucket_lists_keep_only_allowed_buckets() {
        let xml = "<ListAllMyBucketsResult><Owner><ID>o</ID></Owner><Buckets><Bucket><Name>demo</Name><CreationDate>d</CreationDate></Bucket><Bucket><Name>team-a</Name><CreationDate>d</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>";
        let out = filter_buckets(xml, |b| b.starts_with("team-").then(|| b.to_string()));
        assert!(out.contains("<Name>team-a</Name>"), "{out}");
        assert!(!out.contains("demo"), "{out}");
        assert!(
            out.starts_with("<ListAllMyBucketsResult><Owner>")
                && out.ends_with("</Buckets></ListAllMyBucketsResult>")
        );
        assert_eq!(filter_buckets(xml, |b| Some(b.to_string())), xml);
        let aliased = filter_buckets(xml, |b| (b == "demo").then(|| "shown".to_string()));
        assert!(
            aliased.contains("<Bucket><Name>shown</Name><CreationDate>d</CreationDate></Bucket>"),
            "{aliased}"
        );
        assert!(
            !aliased.contains("team-a") && !aliased.contains("demo"),
            "{aliased}"
        );
    }

    #[test]
    fn listed_sizes() {
        let c = sealgate_envelope::ciphertext_len(10 * 65_536 + 5);
        assert_eq!(listed_size(c, None), 10 * 65_536 + 5);
        assert_eq!(
            listed_size(c + 3 * PART_HEADER_LEN, Some(3)),
            10 * 65_536 + 5
        );
        assert_eq!(listed_size(7, None), 7, "impossible sizes stay as stored");
        let part = sealgate_envelope::multipart::stored_part_len(1000);
        assert_eq!(listed_part_size(part, None), 1000);
    }

    use super::*;

    const XML: &str = "<?xml version=\"1.0\"?><ListBucketResult><Contents><Key>a</Key><ETag>&quot;abc&quot;</ETag><Size>32</Size></Contents><Contents><Key>b&lt;Size&gt;</Key><ETag>\"d41d-3\"</ETag><Size>65552</Size></Contents><Contents><Key>c</Key><Size>7</Size></Contents></ListBucketResult>";

    fn rewrite(xml: &str, piece: usize) -> String {
        let mut r = SizeRewriter::new(|v, parts: Option<u64>| v * 10 + parts.unwrap_or(0));
        let mut out = Vec::new();
        let bytes = xml.as_bytes();
        let chunks: Vec<&[u8]> = bytes.chunks(piece).collect();
        for (i, c) in chunks.iter().enumerate() {
            out.extend_from_slice(&r.push(c, i + 1 == chunks.len()));
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rewrites_every_size_with_its_entrys_part_count_whatever_the_split() {
        let expected = XML
            .replace("<Size>32<", "<Size>320<")
            .replace("<Size>65552<", "<Size>655523<")
            .replace("<Size>7<", "<Size>70<");
        for piece in 1..=XML.len() {
            assert_eq!(rewrite(XML, piece), expected, "piece {piece}");
        }
    }

    #[test]
    fn leaves_non_numbers_alone_and_keeps_memory_bounded() {
        assert_eq!(rewrite("<Size>abc</Size>", 3), "<Size>abc</Size>");
        let mut r = SizeRewriter::new(|v, _| v);
        let big = "x".repeat(100_000);
        let out = r.push(big.as_bytes(), false);
        assert!(out.len() >= 100_000 - OPEN.len());
        assert!(r.carry.len() < OPEN.len());
    }

    #[test]
    fn etag_part_counts() {
        assert_eq!(
            etag_parts(b"&quot;9b2cf535f27731c974343645a3985328-12&quot;"),
            Some(12)
        );
        assert_eq!(etag_parts(b"\"9b2cf535f27731c974343645a3985328\""), None);
    }

    mod hostile {
        use super::super::*;
        use proptest::prelude::*;

        /// A `<Size>` with endless digits is no size: it is passed on, not
        /// held (the carry would otherwise grow with the listing).
        #[test]
        fn endless_digits_are_not_held() {
            let mut r = SizeRewriter::new(listed_size as fn(u64, Option<u64>) -> u64);
            let mut out = r.push(b"<Size>", false).to_vec();
            for _ in 0..1000 {
                out.extend_from_slice(&r.push(b"1234567890", false));
                assert!(r.carry.len() <= OPEN.len() + MAX_SIZE_DIGITS + CLOSE.len());
            }
            out.extend_from_slice(&r.push(b"</Size>", true));
            assert_eq!(out.len(), 6 + 10_000 + 7);
        }

        /// Listing-like bytes: tags, digits, quotes and noise.
        fn listing_like() -> impl Strategy<Value = Vec<u8>> {
            let token = prop_oneof![
                Just(b"<Size>".to_vec()),
                Just(b"</Size>".to_vec()),
                Just(b"<ETag>".to_vec()),
                Just(b"</ETag>".to_vec()),
                Just(b"&quot;".to_vec()),
                Just(b"-3".to_vec()),
                Just(b"<".to_vec()),
                "[0-9]{1,25}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..32),
            ];
            proptest::collection::vec(token, 0..60).prop_map(|t| t.concat())
        }

        fn rewrite_in(pieces: &[&[u8]]) -> (Vec<u8>, usize) {
            let mut r = SizeRewriter::new(listed_size as fn(u64, Option<u64>) -> u64);
            let mut out = Vec::new();
            let mut most_held = 0;
            for (i, p) in pieces.iter().enumerate() {
                out.extend_from_slice(&r.push(p, i + 1 == pieces.len()));
                most_held = most_held.max(r.carry.len());
            }
            (out, most_held)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// However the backend's listing is cut into pieces, the output
            /// is the same, nothing is lost, and the carry stays bounded.
            #[test]
            fn any_listing_in_any_pieces(body in listing_like(), piece in 1usize..64) {
                let whole = rewrite_in(&[&body]).0;
                let pieces: Vec<&[u8]> = body.chunks(piece).collect();
                let (split, most_held) = rewrite_in(&pieces);
                prop_assert_eq!(&split, &whole);
                prop_assert!(most_held <= MAX_ETAG_ELEMENT + OPEN.len() + MAX_SIZE_DIGITS + CLOSE.len());
                // With sizes shown as stored, nothing changes at all (but
                // leading zeros, which a number loses).
                if find(&body, b"<Size>0").is_none() {
                    let mut same = SizeRewriter::new(|v: u64, _| v);
                    let mut out = Vec::new();
                    for (i, p) in pieces.iter().enumerate() {
                        out.extend_from_slice(&same.push(p, i + 1 == pieces.len()));
                    }
                    prop_assert_eq!(out, body);
                }
            }
        }
    }
}
