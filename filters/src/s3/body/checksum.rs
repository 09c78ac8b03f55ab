//! Integrity checks a client asks for, computed over the plaintext as it
//! streams: `Content-MD5`, `x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}`
//! (as a header or an aws-chunked trailer) and a hex `x-amz-content-sha256`.
//! Nothing is buffered; `finish` compares in constant time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http::HeaderMap;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::s3::responses::error::{S3Error, S3ErrorCode};

/// The flexible checksum algorithms S3 supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [
        Self::Crc32,
        Self::Crc32c,
        Self::Crc64Nvme,
        Self::Sha1,
        Self::Sha256,
    ];

    /// The header (and trailer) name.
    pub fn header(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    pub fn from_header(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(name))
    }

    /// The name S3 uses in XML and `x-amz-checksum-algorithm` (`CRC32`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The XML element S3 uses for a value (`ChecksumCRC32`, ...).
    pub fn element(self) -> &'static str {
        match self {
            Self::Crc32 => "ChecksumCRC32",
            Self::Crc32c => "ChecksumCRC32C",
            Self::Crc64Nvme => "ChecksumCRC64NVME",
            Self::Sha1 => "ChecksumSHA1",
            Self::Sha256 => "ChecksumSHA256",
        }
    }

    pub fn from_element(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.element() == name)
    }

    /// The CRC behind a CRC checksum (`None` for the SHA family), for
    /// combining part checksums into a full-object one.
    pub fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Self::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Self::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Self::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            Self::Sha1 | Self::Sha256 => None,
        }
    }

    /// Digest length in bytes.
    pub fn width(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// Length of the base64 value.
    pub fn base64_len(self) -> usize {
        self.width().div_ceil(3) * 4
    }

    fn hasher(self) -> Hasher {
        match self {
            Self::Crc32 => Hasher::Crc(
                crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
                4,
            ),
            Self::Crc32c => {
                Hasher::Crc(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi), 4)
            }
            Self::Crc64Nvme => {
                Hasher::Crc(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme), 8)
            }
            Self::Sha1 => Hasher::Sha1(Sha1::new()),
            Self::Sha256 => Hasher::Sha256(Sha256::new()),
        }
    }
}

enum Hasher {
    /// A CRC and its width in bytes (the digest is big-endian).
    Crc(crc_fast::Digest, usize),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc(d, _) => d.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Crc(d, width) => d.finalize().to_be_bytes()[8 - width..].to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// A running checksum of one algorithm (for bytes the gateway itself sends).
pub struct Checksum {
    algorithm: ChecksumAlgorithm,
    hasher: Hasher,
}

impl Checksum {
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        Self {
            algorithm,
            hasher: algorithm.hasher(),
        }
    }

    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// The digest (big-endian for CRCs), as S3 sends it before base64.
    pub fn finish(self) -> Vec<u8> {
        self.hasher.finish()
    }

    pub fn finish_base64(self) -> String {
        B64.encode(self.finish())
    }
}

/// Every check requested for one body.
#[derive(Default)]
pub struct BodyChecks {
    md5: Option<(Md5, Vec<u8>)>,
    /// Algorithm, running hash, and the expected value (None until a trailer supplies it).
    flexible: Option<(ChecksumAlgorithm, Hasher, Option<Vec<u8>>)>,
    payload_sha256: Option<(Sha256, [u8; 32])>,
}

impl BodyChecks {
    /// Reads the checks a request asks for. `trailer_algorithm` is the
    /// checksum an aws-chunked body announces in `x-amz-trailer`;
    /// `payload_sha256` is a hex `x-amz-content-sha256` that was signed.
    pub fn from_request(
        headers: &HeaderMap,
        trailer_algorithm: Option<ChecksumAlgorithm>,
        payload_sha256: Option<[u8; 32]>,
    ) -> Result<Self, S3Error> {
        let mut checks = BodyChecks::default();
        if let Some(v) = headers.get("content-md5") {
            let expected = v
                .to_str()
                .ok()
                .and_then(|s| B64.decode(s.trim()).ok())
                .filter(|d| d.len() == 16)
                .ok_or_else(|| {
                    S3Error::new(
                        S3ErrorCode::InvalidDigest,
                        "Content-MD5 is not a base64 MD5",
                    )
                })?;
            checks.md5 = Some((Md5::new(), expected));
        }
        let mut given = ChecksumAlgorithm::ALL
            .into_iter()
            .filter_map(|a| headers.get(a.header()).map(|v| (a, v)));
        if let Some((alg, v)) = given.next() {
            if given.next().is_some() {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    "expecting a single x-amz-checksum- header; multiple checksum types are not allowed",
                ));
            }
            let expected = v
                .to_str()
                .ok()
                .and_then(|s| B64.decode(s.trim()).ok())
                .ok_or_else(|| {
                    S3Error::new(
                        S3ErrorCode::InvalidRequest,
                        format!("{} is not base64", alg.header()),
                    )
                })?;
            checks.flexible = Some((alg, alg.hasher(), Some(expected)));
        } else if let Some(alg) = trailer_algorithm {
            checks.flexible = Some((alg, alg.hasher(), None));
        }
        checks.payload_sha256 = payload_sha256.map(|h| (Sha256::new(), h));
        Ok(checks)
    }

    /// True when nothing is checked (the fast path skips hashing).
    pub fn is_empty(&self) -> bool {
        self.md5.is_none() && self.flexible.is_none() && self.payload_sha256.is_none()
    }

    /// The checksum algorithm in use, if any.
    pub fn algorithm(&self) -> Option<ChecksumAlgorithm> {
        self.flexible.as_ref().map(|(a, _, _)| *a)
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some((h, _)) = &mut self.md5 {
            h.update(data);
        }
        if let Some((_, h, _)) = &mut self.flexible {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.payload_sha256 {
            h.update(data);
        }
    }

    /// Supplies a trailer's checksum value (`name`, base64 `value`).
    pub fn set_trailer(&mut self, name: &str, value: &str) -> Result<(), S3Error> {
        let Some(alg) = ChecksumAlgorithm::from_header(name) else {
            return Ok(()); // other trailers are not ours to check
        };
        match &mut self.flexible {
            Some((a, _, expected)) if *a == alg => {
                let v = B64.decode(value.trim()).map_err(|_| {
                    S3Error::new(
                        S3ErrorCode::InvalidRequest,
                        format!("trailer {name} is not base64"),
                    )
                })?;
                *expected = Some(v);
                Ok(())
            }
            _ => Err(S3Error::new(
                S3ErrorCode::InvalidRequest,
                format!("trailer {name} was not announced in x-amz-trailer"),
            )),
        }
    }

    /// Compares everything; the error is S3's for the first mismatch.
    pub fn finish(self) -> Result<(), S3Error> {
        if let Some((h, expected)) = self.md5 {
            if !bool::from(h.finalize().as_slice().ct_eq(&expected)) {
                return Err(S3Error::new(
                    S3ErrorCode::BadDigest,
                    "the Content-MD5 you specified did not match what we received",
                ));
            }
        }
        if let Some((h, expected)) = self.payload_sha256 {
            if !bool::from(h.finalize().as_slice().ct_eq(&expected)) {
                return Err(S3Error::new(
                    S3ErrorCode::XAmzContentSHA256Mismatch,
                    "the provided x-amz-content-sha256 header does not match what was computed",
                ));
            }
        }
        if let Some((alg, h, expected)) = self.flexible {
            let Some(expected) = expected else {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    format!("the announced trailer {} never arrived", alg.header()),
                ));
            };
            if !bool::from(h.finish().as_slice().ct_eq(&expected)) {
                return Err(S3Error::new(
                    S3ErrorCode::BadDigest,
                    format!(
                        "the {} you specified did not match the calculated checksum",
                        alg.header()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// Known values of "hello world" (from the S3 docs' algorithms).
    #[test]
    fn known_digests_pass_and_wrong_ones_fail() {
        let cases = [
            ("x-amz-checksum-crc32", "DUoRhQ=="),
            ("x-amz-checksum-crc32c", "yZRlqg=="),
            ("x-amz-checksum-sha1", "Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
            (
                "x-amz-checksum-sha256",
                "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=",
            ),
            ("content-md5", "XrY7u+Ae7tCTyyK7j1rNww=="),
        ];
        for (name, value) in cases {
            let mut c = BodyChecks::from_request(&headers(&[(name, value)]), None, None).unwrap();
            c.update(b"hello ");
            c.update(b"world");
            assert!(c.finish().is_ok(), "{name}");
            let mut c = BodyChecks::from_request(&headers(&[(name, value)]), None, None).unwrap();
            c.update(b"hello World");
            let e = c.finish().unwrap_err();
            assert_eq!(e.code, S3ErrorCode::BadDigest, "{name}");
        }
    }

    #[test]
    fn crc64nvme_round_trip() {
        let mut h = ChecksumAlgorithm::Crc64Nvme.hasher();
        h.update(b"hello world");
        let v = B64.encode(h.finish());
        let mut c =
            BodyChecks::from_request(&headers(&[("x-amz-checksum-crc64nvme", &v)]), None, None)
                .unwrap();
        c.update(b"hello world");
        assert!(c.finish().is_ok());
        assert_eq!(B64.decode(&v).unwrap().len(), 8);
    }

    #[test]
    fn trailers_supply_the_expected_value() {
        let mut c =
            BodyChecks::from_request(&HeaderMap::new(), Some(ChecksumAlgorithm::Crc32), None)
                .unwrap();
        c.update(b"hello world");
        c.set_trailer("x-amz-checksum-crc32", "DUoRhQ==").unwrap();
        assert!(c.finish().is_ok());
        let mut c =
            BodyChecks::from_request(&HeaderMap::new(), Some(ChecksumAlgorithm::Crc32), None)
                .unwrap();
        c.update(b"hello world");
        assert_eq!(
            c.finish().unwrap_err().code,
            S3ErrorCode::InvalidRequest,
            "missing trailer"
        );
        let mut c =
            BodyChecks::from_request(&HeaderMap::new(), Some(ChecksumAlgorithm::Crc32), None)
                .unwrap();
        assert!(
            c.set_trailer("x-amz-checksum-sha1", "AAAA").is_err(),
            "unannounced trailer"
        );
    }

    #[test]
    fn payload_sha256_mismatch_has_its_own_code() {
        let good: [u8; 32] = Sha256::digest(b"abc").into();
        let mut c = BodyChecks::from_request(&HeaderMap::new(), None, Some(good)).unwrap();
        c.update(b"abd");
        assert_eq!(
            c.finish().unwrap_err().code,
            S3ErrorCode::XAmzContentSHA256Mismatch
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert_eq!(
            BodyChecks::from_request(&headers(&[("content-md5", "nope")]), None, None)
                .err()
                .unwrap()
                .code,
            S3ErrorCode::InvalidDigest
        );
        let two = headers(&[
            ("x-amz-checksum-crc32", "DUoRhQ=="),
            ("x-amz-checksum-sha1", "AAAA"),
        ]);
        assert!(BodyChecks::from_request(&two, None, None).is_err());
    }
}
