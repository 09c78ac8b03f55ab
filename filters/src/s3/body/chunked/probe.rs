//! Does a backend verify aws-chunked trailers? (`storage.s3.stored_checksum: auto`)
//!
//! The gateway stores ciphertext with a trailing CRC32C so the backend
//! checks every byte it keeps. Not every backend reads that encoding: Ceph
//! RGW 16 ("Pacific") refuses it with `XAmzContentSHA256Mismatch`, and a
//! backend that ignores `Content-Encoding` would store the framing as data.
//! So before the first encrypted write the gateway asks the backend itself,
//! under the reserved prefix:
//!
//! 1. a body whose trailer is wrong must be refused as a bad digest (the
//!    backend reads and verifies trailers);
//! 2. the same body with the right trailer must be stored (200), and
//! 3. read back as exactly the data (not the framing).
//!
//! Only when all three hold are trailers used; a definite "no" (the wrong
//! trailer stored, the encoding refused, other bytes read back) sends bodies
//! plain; anything else (a transient or unrelated error) decides nothing.
//! Either way nothing is stored for good: the probe object is deleted.

use bytes::Bytes;

use super::encode::{TrailingChecksum, STORED_CHECKSUM};
use crate::s3::body::checksum::{Checksum, ChecksumAlgorithm};

/// Where probe objects go (inside the gateway's reserved prefix).
pub const PROBE_PREFIX: &str = ".sealgate/probe/";

/// The probe object's data.
pub const PROBE_DATA: &[u8] = b"sealgate stored-checksum probe";

/// Error codes with which S3 implementations refuse a body whose checksum
/// does not match: AWS S3 and s3s (`BadDigest`), Garage (`InvalidDigest`),
/// MinIO (`XAmzContentChecksumMismatch`).
const DIGEST_REFUSALS: [&str; 3] = ["BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"];

/// The aws-chunked body of the probe with the right trailer, or with one
/// for other data (`wrong`).
pub fn probe_body(wrong: bool) -> Bytes {
    let mut wrap = TrailingChecksum::new(STORED_CHECKSUM);
    let mut body = Vec::from(&wrap.chunk(PROBE_DATA)[..]);
    let trailer = if wrong {
        let mut other = Checksum::new(STORED_CHECKSUM);
        other.update(b"not the probe data");
        format!(
            "0\r\n{}:{}\r\n\r\n",
            STORED_CHECKSUM.header(),
            other.finish_base64()
        )
    } else {
        let mut right = Checksum::new(STORED_CHECKSUM);
        right.update(PROBE_DATA);
        format!(
            "0\r\n{}:{}\r\n\r\n",
            STORED_CHECKSUM.header(),
            right.finish_base64()
        )
    };
    body.extend_from_slice(trailer.as_bytes());
    Bytes::from(body)
}

/// The request headers the probe goes with (besides signing and length).
pub fn probe_headers() -> [(&'static str, String); 4] {
    [
        ("content-encoding", "aws-chunked".into()),
        ("x-amz-decoded-content-length", PROBE_DATA.len().to_string()),
        ("x-amz-trailer", STORED_CHECKSUM.header().into()),
        ("content-type", "application/octet-stream".into()),
    ]
}

/// The algorithm probed.
pub fn probed_algorithm() -> ChecksumAlgorithm {
    STORED_CHECKSUM
}

/// Codes with which a backend refuses the encoding itself (Ceph RGW 16:
/// `XAmzContentSHA256Mismatch`, whether the trailer is right or not).
const ENCODING_REFUSALS: [&str; 3] = [
    "XAmzContentSHA256Mismatch",
    "InvalidContentEncoding",
    "NotImplemented",
];

/// Where a probe step leaves the question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// On to the next step.
    Next,
    /// The backend does not verify trailers: a definite answer.
    Unverified,
    /// No answer (a transient or unrelated error): ask again later.
    Inconclusive,
}

/// A refusal of the encoding itself.
fn refuses_encoding(status: u16, code: Option<&str>) -> bool {
    status == 501 || (status == 400 && code.is_some_and(|c| ENCODING_REFUSALS.contains(&c)))
}

/// Step 1, the wrong trailer: refused as a bad digest goes on; stored, or
/// the encoding refused, is a definite no; anything else says nothing.
pub fn after_wrong_trailer(status: u16, code: Option<&str>) -> Step {
    if status == 400 && code.is_some_and(|c| DIGEST_REFUSALS.contains(&c)) {
        Step::Next
    } else if (200..300).contains(&status) || refuses_encoding(status, code) {
        Step::Unverified
    } else {
        Step::Inconclusive
    }
}

/// Step 2, the right trailer: stored goes on; the encoding refused is a
/// definite no; anything else says nothing.
pub fn after_right_trailer(status: u16, code: Option<&str>) -> Step {
    if (200..300).contains(&status) {
        Step::Next
    } else if refuses_encoding(status, code) {
        Step::Unverified
    } else {
        Step::Inconclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::body::chunked::ChunkedDecoder;

    /// The probe bodies decode (by the gateway's own decoder, the one its
    /// clients' uploads go through) to the data, with the trailer right or
    /// not.
    #[test]
    fn the_probe_bodies_are_well_formed_and_differ_only_in_the_trailer() {
        for wrong in [false, true] {
            let body = probe_body(wrong);
            let mut dec = ChunkedDecoder::new(None);
            let mut data = Vec::new();
            dec.push(&body, |d| data.extend_from_slice(d)).unwrap();
            dec.finish().unwrap();
            assert_eq!(data, PROBE_DATA);
            let (name, value) = &dec.trailers()[0];
            assert_eq!(name, STORED_CHECKSUM.header());
            let mut right = Checksum::new(STORED_CHECKSUM);
            right.update(PROBE_DATA);
            assert_eq!(*value == right.finish_base64(), !wrong);
        }
    }

    #[test]
    fn only_definite_answers_decide() {
        use Step::*;
        for (status, code, wrong, right) in [
            (400, Some("BadDigest"), Next, Inconclusive),
            (400, Some("InvalidDigest"), Next, Inconclusive),
            (200, None, Unverified, Next),
            (
                400,
                Some("XAmzContentSHA256Mismatch"),
                Unverified,
                Unverified,
            ),
            (501, Some("NotImplemented"), Unverified, Unverified),
            // Transient or unrelated: nothing learnt.
            (400, Some("RequestTimeout"), Inconclusive, Inconclusive),
            (400, Some("InvalidBucketName"), Inconclusive, Inconclusive),
            (400, None, Inconclusive, Inconclusive),
            (403, Some("AccessDenied"), Inconclusive, Inconclusive),
            (404, Some("NoSuchBucket"), Inconclusive, Inconclusive),
            (500, Some("BadDigest"), Inconclusive, Inconclusive),
            (503, Some("SlowDown"), Inconclusive, Inconclusive),
        ] {
            assert_eq!(
                after_wrong_trailer(status, code),
                wrong,
                "{status} {code:?}"
            );
            assert_eq!(
                after_right_trailer(status, code),
                right,
                "{status} {code:?}"
            );
        }
    }
}
