//! The gateway's own upload bodies to the backend, as aws-chunked with a
//! trailing checksum of the stored bytes:
//!
//! ```text
//! STREAMING-UNSIGNED-PAYLOAD-TRAILER   hex-size CRLF data CRLF ... 0 CRLF x-amz-checksum-crc32c:B64 CRLF CRLF
//! ```
//!
//! The checksum is only known once the last byte is sealed, so it can only
//! travel as a trailer; the backend then verifies every byte it stores
//! (and AWS S3 keeps it as the object's or part's checksum, which
//! CompleteMultipartUpload of an upload created with that algorithm needs).
//!
//! The upstream `Content-Length` is sent before the body, so the encoding's
//! length must follow from the stored length alone: each chunk is one
//! sealed frame (or the part header), never whatever piece the network
//! handed over. [`TrailingChecksum`] writes the framing into each frame's
//! own buffer as the encryptor seals it ([`FrameWrap`]), so no byte is
//! copied to be framed.

use bytes::{Bytes, BytesMut};
use sealgate_envelope::format::SEALED_FRAME_SIZE;
use sealgate_envelope::FrameWrap;

use crate::s3::body::checksum::{Checksum, ChecksumAlgorithm};

/// The checksum the gateway computes over what it stores: CRC32C has a
/// hardware instruction on every server CPU and is what AWS recommends.
pub const STORED_CHECKSUM: ChecksumAlgorithm = ChecksumAlgorithm::Crc32c;

/// The `x-amz-content-sha256` of such a body.
pub use crate::s3::auth::sigv4::STREAMING_UNSIGNED_TRAILER as UNSIGNED_TRAILER;

const CRLF: &[u8] = b"\r\n";

/// Frames chunks and checksums their data as they pass.
pub struct TrailingChecksum {
    checksum: Option<Checksum>,
    algorithm: ChecksumAlgorithm,
}

impl TrailingChecksum {
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        Self {
            checksum: Some(Checksum::new(algorithm)),
            algorithm,
        }
    }

    /// One whole chunk holding `data` (e.g. a part header), copied.
    pub fn chunk(&mut self, data: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(data.len() + 16);
        self.before(data.len(), &mut out);
        out.extend_from_slice(data);
        let tail = self.after(data);
        out.extend_from_slice(tail);
        out.freeze()
    }
}

impl FrameWrap for TrailingChecksum {
    fn before(&mut self, sealed_len: usize, out: &mut BytesMut) {
        use std::fmt::Write;
        // Written in place: no allocation per frame.
        let _ = write!(out, "{sealed_len:x}\r\n");
    }

    fn after(&mut self, sealed: &[u8]) -> &'static [u8] {
        if let Some(c) = &mut self.checksum {
            c.update(sealed);
        }
        CRLF
    }

    fn finish(&mut self) -> Bytes {
        let value = self
            .checksum
            .take()
            .map(Checksum::finish_base64)
            .unwrap_or_default();
        Bytes::from(format!("0\r\n{}:{value}\r\n\r\n", self.algorithm.header()))
    }
}

/// Bytes of one chunk carrying `len` data bytes.
fn chunk_len(len: u64) -> u64 {
    let digits = (64 - len.max(1).leading_zeros() as u64).div_ceil(4);
    digits + 2 + len + 2
}

/// The encoded length of a body whose chunks carry `prefix` bytes (a part
/// header; 0 for none) and then the sealed frames of `stored_frames` bytes.
pub fn encoded_len(prefix: u64, stored_frames: u64, algorithm: ChecksumAlgorithm) -> u64 {
    let full = stored_frames / SEALED_FRAME_SIZE;
    let rest = stored_frames % SEALED_FRAME_SIZE;
    let mut len = full * chunk_len(SEALED_FRAME_SIZE);
    if rest > 0 {
        len += chunk_len(rest);
    }
    if prefix > 0 {
        len += chunk_len(prefix);
    }
    // "0\r\n" + "name:value\r\n" + "\r\n"
    len + 3 + algorithm.header().len() as u64 + 1 + algorithm.base64_len() as u64 + 2 + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::body::chunked::ChunkedDecoder;

    fn encode(prefix: &[u8], frames: &[&[u8]]) -> Vec<u8> {
        let mut w = TrailingChecksum::new(STORED_CHECKSUM);
        let mut out = Vec::new();
        if !prefix.is_empty() {
            out.extend_from_slice(&w.chunk(prefix));
        }
        for f in frames {
            let mut b = BytesMut::new();
            w.before(f.len(), &mut b);
            b.extend_from_slice(f);
            let tail = w.after(f);
            b.extend_from_slice(tail);
            out.extend_from_slice(&b);
        }
        out.extend_from_slice(&w.finish());
        out
    }

    /// What the encoder writes, the gateway's own decoder (the one that
    /// reads clients' bodies) reads back, with the checksum of the data.
    #[test]
    fn encoded_bodies_decode_with_their_checksum_and_predicted_length() {
        let full = vec![7u8; SEALED_FRAME_SIZE as usize];
        let cases: Vec<(Vec<u8>, Vec<&[u8]>)> = vec![
            (vec![], vec![&[1u8; 16][..]]),
            (vec![9u8; 48], vec![&full[..], &full[..], &[3u8; 100][..]]),
            (vec![], vec![&full[..]]),
            (vec![9u8; 48], vec![&[5u8; 16][..]]),
        ];
        for (prefix, frames) in cases {
            let body = encode(&prefix, &frames);
            let stored: u64 = frames.iter().map(|f| f.len() as u64).sum();
            assert_eq!(
                body.len() as u64,
                encoded_len(prefix.len() as u64, stored, STORED_CHECKSUM)
            );
            let mut decoder = ChunkedDecoder::new(None);
            let mut decoded = Vec::new();
            decoder
                .push(&body, |d| decoded.extend_from_slice(d))
                .unwrap();
            decoder.finish().unwrap();
            let expected: Vec<u8> = prefix
                .iter()
                .chain(frames.iter().flat_map(|f| f.iter()))
                .copied()
                .collect();
            assert_eq!(decoded, expected);
            let mut c = Checksum::new(STORED_CHECKSUM);
            c.update(&expected);
            assert_eq!(
                decoder.trailers(),
                &[("x-amz-checksum-crc32c".to_string(), c.finish_base64())]
            );
        }
    }

    #[test]
    fn chunk_lengths_count_hex_digits() {
        assert_eq!(chunk_len(16), 2 + 2 + 16 + 2);
        assert_eq!(chunk_len(15), 1 + 2 + 15 + 2);
        assert_eq!(chunk_len(SEALED_FRAME_SIZE), 5 + 2 + SEALED_FRAME_SIZE + 2);
    }
}
