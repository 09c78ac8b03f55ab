//! The checksums a multipart upload answers its client: what it asked for
//! at Create, the composite or full-object value at Complete (computed from
//! the part checksums of its plaintext), and the backend's own checksums of
//! stored bytes taken out of the answers.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sealgate_envelope::multipart::part_plaintext_len;

use crate::s3::body::checksum::{Checksum, ChecksumAlgorithm};
use crate::s3::multipart::{ClientPart, StoredPart};
use crate::s3::responses::error::{S3Error, S3ErrorCode};

/// Elements S3 uses for checksums in part lists and Complete responses.
const CHECKSUM_TYPE: &str = "ChecksumType";

/// How the client asked S3 to checksum its upload (at Create).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumRequest {
    pub algorithm: ChecksumAlgorithm,
    /// `FULL_OBJECT` (a CRC of the whole object) rather than `COMPOSITE`
    /// (a checksum of the part checksums, `…-N`).
    pub full_object: bool,
}

impl ChecksumRequest {
    /// From CreateMultipartUpload's `x-amz-checksum-algorithm` and
    /// `x-amz-checksum-type` (CRC64NVME is always full-object, as in S3).
    pub fn from_headers(
        algorithm: Option<&str>,
        kind: Option<&str>,
    ) -> Result<Option<Self>, S3Error> {
        let Some(name) = algorithm else {
            if kind.is_some() {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    "x-amz-checksum-type needs x-amz-checksum-algorithm",
                ));
            }
            return Ok(None);
        };
        let algorithm = ChecksumAlgorithm::from_name(name).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidRequest,
                "x-amz-checksum-algorithm names no known checksum",
            )
        })?;
        let full_object = match kind.map(str::trim) {
            None => algorithm == ChecksumAlgorithm::Crc64Nvme,
            Some(k) if k.eq_ignore_ascii_case("FULL_OBJECT") => true,
            Some(k) if k.eq_ignore_ascii_case("COMPOSITE") => false,
            Some(_) => {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    "x-amz-checksum-type must be COMPOSITE or FULL_OBJECT",
                ))
            }
        };
        let valid = if full_object {
            algorithm.crc().is_some()
        } else {
            algorithm != ChecksumAlgorithm::Crc64Nvme
        };
        if !valid {
            return Err(S3Error::new(
                S3ErrorCode::InvalidRequest,
                format!(
                    "the {} checksum type is not supported for {}",
                    if full_object {
                        "FULL_OBJECT"
                    } else {
                        "COMPOSITE"
                    },
                    algorithm.name()
                ),
            ));
        }
        Ok(Some(Self {
            algorithm,
            full_object,
        }))
    }

    pub fn type_name(self) -> &'static str {
        if self.full_object {
            "FULL_OBJECT"
        } else {
            "COMPOSITE"
        }
    }
}

/// The checksum S3 reports at Complete for the client's plaintext, from
/// the part checksums it listed (each was verified over the plaintext when
/// its part was uploaded). A full-object checksum the client sent with the
/// Complete (`given`) must match.
pub fn client_checksum(
    request: ChecksumRequest,
    client: &[ClientPart],
    stored: &[StoredPart],
    given: Option<&str>,
) -> Result<String, S3Error> {
    let alg = request.algorithm;
    let mut raw = Vec::with_capacity(client.len());
    for part in client {
        let value = match &part.checksum {
            Some((a, v)) if *a == alg => v,
            _ => {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    format!(
                        "the upload was created using a {} checksum; the complete request must include it for each part; it was missing for part {}",
                        alg.name(),
                        part.number
                    ),
                ))
            }
        };
        let bytes = B64
            .decode(value.trim())
            .ok()
            .filter(|b| b.len() == alg.width())
            .ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    format!("the {} of part {} is not valid", alg.element(), part.number),
                )
            })?;
        raw.push(bytes);
    }
    let value = if request.full_object {
        let crc = alg.crc().expect("full-object checksums are CRCs");
        let mut combined: Option<u64> = None;
        for (part, bytes) in client.iter().zip(&raw) {
            let mut be = [0u8; 8];
            be[8 - bytes.len()..].copy_from_slice(bytes);
            let value = u64::from_be_bytes(be);
            let len = stored
                .binary_search_by_key(&part.number, |s| s.number)
                .ok()
                .and_then(|i| part_plaintext_len(stored[i].size))
                .ok_or_else(|| {
                    S3Error::new(
                        S3ErrorCode::InvalidPart,
                        format!("part {} has no valid stored size", part.number),
                    )
                })?;
            combined = Some(match combined {
                None => value,
                Some(c) => crc_fast::checksum_combine(crc, c, value, len),
            });
        }
        let be = combined.unwrap_or(0).to_be_bytes();
        let text = B64.encode(&be[8 - alg.width()..]);
        if let Some(given) = given {
            if given.trim() != text {
                return Err(S3Error::new(
                    S3ErrorCode::BadDigest,
                    format!(
                        "the {} you specified did not match the calculated checksum",
                        alg.header()
                    ),
                ));
            }
        }
        text
    } else {
        let mut c = Checksum::new(alg);
        for bytes in &raw {
            c.update(bytes);
        }
        format!("{}-{}", c.finish_base64(), raw.len())
    };
    Ok(value)
}

/// Removes every checksum element (`ChecksumCRC32`, ..., `ChecksumType`,
/// and `ChecksumAlgorithm` if asked) from a response the backend made
/// about stored bytes; the elements are S3's, unnested and unattributed.
pub fn strip_checksums(xml: &str, algorithm_too: bool) -> String {
    let mut names: Vec<&str> = ChecksumAlgorithm::ALL.iter().map(|a| a.element()).collect();
    names.push(CHECKSUM_TYPE);
    if algorithm_too {
        names.push("ChecksumAlgorithm");
    }
    let mut out = xml.to_string();
    for name in names {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        while let Some(a) = out.find(&open) {
            let Some(b) = out[a..].find(&close) else {
                break;
            };
            out.replace_range(a..a + b + close.len(), "");
        }
    }
    out
}

/// The backend's CompleteMultipartUpload result with its checksums of
/// stored bytes replaced by the client's (if it asked for one).
pub fn complete_result(xml: &str, answer: Option<(ChecksumRequest, &str)>) -> String {
    let mut out = strip_checksums(xml, false);
    if let Some((req, value)) = answer {
        if let Some(at) = out.find("</ETag>") {
            let e = req.algorithm.element();
            let insert = format!(
                "<{e}>{}</{e}><{CHECKSUM_TYPE}>{}</{CHECKSUM_TYPE}>",
                quick_xml::escape::partial_escape(value),
                req.type_name()
            );
            out.insert_str(at + "</ETag>".len(), &insert);
        }
    }
    out
}
