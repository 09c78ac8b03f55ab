//! CompleteMultipartUpload on encrypted uploads, as pure logic.
//!
//! The backend's upload holds ciphertext parts, each stored with the
//! gateway's own checksum (CRC32C of the stored bytes, see
//! [`crate::s3::body::chunked::encode`]); the client's part list names its ETags and
//! the checksums of its plaintext. So at Complete the gateway
//! - reads the backend's parts (ListParts, every page: no shared state, any
//!   instance completes any upload),
//! - checks the client's list against them (numbers 1..n in order, each
//!   part uploaded with that ETag, equal part sizes but for the last),
//! - sends the backend a list with the backend's own part checksums, padded
//!   to a length fixed before the client's body arrives (the upstream
//!   header, with its `Content-Length`, goes out first),
//! - answers the client with the checksum S3 would report for its
//!   plaintext: composite (`…-N`) or full-object, computed from the part
//!   checksums it listed.
//!
//! Beside it: the upload-id tokens any instance can resume (`upload_id`),
//! the records ListMultipartUploads answers from (`upload_records`), and the
//! checksums answered at Create and Complete (`checksum`).

pub mod checksum;
pub mod upload_id;
pub mod upload_records;

use sealgate_envelope::multipart::{mistakable_for_regular, part_plaintext_len};

use crate::s3::body::checksum::ChecksumAlgorithm;
use crate::s3::responses::error::{S3Error, S3ErrorCode};
use crate::s3::xml::{malformed, walk, Node};

pub use crate::s3::multipart::checksum::{
    client_checksum, complete_result, strip_checksums, ChecksumRequest,
};

/// S3's largest part number and part count.
pub const MAX_PARTS: u32 = 10_000;
/// Longest ETag taken from a client for a part whose ETag the backend does
/// not list (s3s-fs lists none); S3's are 34 characters.
const MAX_UNLISTED_ETAG: usize = 128;

/// A part as the client lists it in CompleteMultipartUpload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPart {
    pub number: u32,
    pub etag: String,
    /// The checksum of the part's plaintext the client names, if any.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

/// A part as the backend lists it (ListParts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    pub number: u32,
    pub etag: String,
    /// Stored (ciphertext) size.
    pub size: u64,
    /// The backend's checksum of the stored bytes.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

/// One page of a ListParts response.
#[derive(Debug, Default)]
pub struct PartsPage {
    pub parts: Vec<StoredPart>,
    /// Set when more parts follow: the marker for the next page.
    pub next_marker: Option<u32>,
}

fn part_number(text: &str) -> Result<u32, S3Error> {
    text.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PARTS).contains(n))
        .ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidArgument,
                "part numbers must be 1 to 10000",
            )
        })
}

/// An ETag without its quotes (clients send it quoted or not).
fn bare_etag(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

/// Parses a client's CompleteMultipartUpload body. Encrypted uploads need
/// parts numbered 1..=n in order: each part's number is bound into its
/// frames and the reader expects part `i` at position `i` (docs/FORMAT.md).
pub fn parse_complete(xml: &[u8]) -> Result<Vec<ClientPart>, S3Error> {
    let mut parts: Vec<ClientPart> = Vec::new();
    let mut root_ok = false;
    walk(xml, |node| {
        match node {
            Node::Open([root]) => root_ok = root == "CompleteMultipartUpload",
            Node::Open([_, p]) if p == "Part" => {
                if parts.len() >= MAX_PARTS as usize {
                    return Err(malformed("the part list names more than 10000 parts"));
                }
                parts.push(ClientPart {
                    number: 0,
                    etag: String::new(),
                    checksum: None,
                });
            }
            Node::Close([_, p, field], text) if p == "Part" => {
                let part = parts.last_mut().expect("opened above");
                if field == "PartNumber" {
                    part.number = part_number(text)?;
                } else if field == "ETag" {
                    part.etag = text.to_string();
                } else if let Some(alg) = ChecksumAlgorithm::from_element(field) {
                    part.checksum = Some((alg, text.to_string()));
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if !root_ok {
        return Err(malformed(
            "the body is not a CompleteMultipartUpload part list",
        ));
    }
    if parts.is_empty() {
        return Err(malformed("the part list names no parts"));
    }
    for (i, part) in parts.iter().enumerate() {
        if part.number == 0 {
            return Err(malformed("a part has no PartNumber"));
        }
        if part.etag.is_empty() {
            return Err(malformed("a part has no ETag"));
        }
        // A part listed twice names no part that exists twice.
        if i > 0 && part.number == parts[i - 1].number {
            return Err(S3Error::new(
                S3ErrorCode::InvalidPart,
                format!("part {} is listed twice", part.number),
            ));
        }
        // Out of ascending order: S3's InvalidPartOrder.
        if i > 0 && part.number < parts[i - 1].number {
            return Err(S3Error::new(
                S3ErrorCode::InvalidPartOrder,
                "the list of parts was not in ascending order by part number",
            ));
        }
    }
    for (i, part) in parts.iter().enumerate() {
        // Ascending with a gap: the missing part is one S3 would call
        // InvalidPart if it was never uploaded; an encrypted upload needs
        // every part from 1 on in any case.
        if part.number as usize != i + 1 {
            return Err(S3Error::new(
                S3ErrorCode::InvalidPart,
                format!("encrypted uploads need parts numbered 1, 2, 3, ... without gaps; part {} is not listed", i + 1),
            ));
        }
    }
    Ok(parts)
}

/// Parses one page of the backend's ListParts answer.
pub fn parse_list_parts(xml: &[u8]) -> Result<PartsPage, S3Error> {
    let mut page = PartsPage::default();
    let mut truncated = false;
    let mut marker = None;
    let bad = |what: &str| {
        S3Error::new(
            S3ErrorCode::InternalError,
            format!("the backend's part list has a bad {what}"),
        )
    };
    walk(xml, |node| {
        match node {
            Node::Open([_, p]) if p == "Part" => {
                if page.parts.len() >= MAX_PARTS as usize {
                    return Err(bad("page (more than 10000 parts)"));
                }
                page.parts.push(StoredPart {
                    number: 0,
                    etag: String::new(),
                    size: 0,
                    checksum: None,
                });
            }
            Node::Close([_, f], text) if f == "IsTruncated" => truncated = text == "true",
            Node::Close([_, f], text) if f == "NextPartNumberMarker" => {
                marker = Some(text.parse::<u32>().map_err(|_| bad("marker"))?);
            }
            Node::Close([_, p, field], text) if p == "Part" => {
                let part = page.parts.last_mut().expect("opened above");
                if field == "PartNumber" {
                    part.number = text.parse().map_err(|_| bad("part number"))?;
                } else if field == "ETag" {
                    part.etag = text.to_string();
                } else if field == "Size" {
                    part.size = text.parse().map_err(|_| bad("size"))?;
                } else if let Some(alg) = ChecksumAlgorithm::from_element(field) {
                    part.checksum = Some((alg, text.to_string()));
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if truncated {
        let next = marker.ok_or_else(|| bad("marker"))?;
        // A marker that does not move on would page forever.
        if page.parts.last().is_none_or(|p| next < p.number) {
            return Err(bad("marker"));
        }
        page.next_marker = Some(next);
    }
    Ok(page)
}

/// Escapes element text (quotes stay as they are: ETags keep their length).
fn xml_escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::partial_escape(text)
}

/// The part list for the backend: the client's parts, each with the
/// backend's ETag (or the client's, where the backend lists none) and its
/// checksum of the stored bytes.
fn write_parts<'a>(parts: impl Iterator<Item = (&'a StoredPart, &'a str)>) -> Vec<u8> {
    let mut out = String::from("<CompleteMultipartUpload>");
    for (p, etag) in parts {
        out.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag>",
            p.number,
            xml_escape(etag)
        ));
        if let Some((alg, value)) = &p.checksum {
            let e = alg.element();
            out.push_str(&format!("<{e}>{}</{e}>", xml_escape(value)));
        }
        out.push_str("</Part>");
    }
    out.push_str("</CompleteMultipartUpload>");
    out.into_bytes()
}

/// The longest upstream part list any client list can make of `stored`
/// (the one naming every stored part): the upstream `Content-Length`.
pub fn upstream_len(stored: &[StoredPart]) -> u64 {
    let longest = "&".repeat(MAX_UNLISTED_ETAG);
    write_parts(stored.iter().map(|p| {
        let etag = if p.etag.is_empty() { &longest } else { &p.etag };
        (p, etag.as_str())
    }))
    .len() as u64
}

/// Any part sizes read back (a reader that does not find the regular
/// layout walks the part headers), except the rare layout a reader would
/// take for a regular one: refused, so that no completed object is read
/// as another layout.
fn check_layout<'a>(parts: impl Iterator<Item = &'a StoredPart>) -> Result<(), S3Error> {
    let mut sizes = Vec::new();
    for p in parts {
        sizes.push(part_plaintext_len(p.size).ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidPart,
                format!(
                    "part {} was not stored by this gateway's encryption",
                    p.number
                ),
            )
        })?);
    }
    if mistakable_for_regular(&sizes) {
        return Err(S3Error::new(
            S3ErrorCode::InvalidPart,
            "these part sizes could be read back as another layout: upload the parts again with every part but the last the size of part 1",
        ));
    }
    Ok(())
}

/// Checks the client's parts against the stored ones and writes the
/// backend's part list, padded with whitespace to exactly `len` bytes.
pub fn upstream_body(
    client: &[ClientPart],
    stored: &[StoredPart],
    len: u64,
) -> Result<Vec<u8>, S3Error> {
    let mut chosen = Vec::with_capacity(client.len());
    for part in client {
        let found = stored
            .binary_search_by_key(&part.number, |s| s.number)
            .ok()
            .map(|i| &stored[i])
            .filter(|s| match s.etag.is_empty() {
                // The backend checks the client's ETag itself at Complete.
                true => part.etag.len() <= MAX_UNLISTED_ETAG,
                false => bare_etag(&s.etag) == bare_etag(&part.etag),
            })
            .ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidPart,
                    format!(
                        "part {} was not uploaded with the ETag given, or not at all",
                        part.number
                    ),
                )
            })?;
        let etag = if found.etag.is_empty() {
            &part.etag
        } else {
            &found.etag
        };
        chosen.push((found, etag.as_str()));
    }
    check_layout(chosen.iter().map(|(p, _)| *p))?;
    let mut body = write_parts(chosen.into_iter());
    let close = b"</CompleteMultipartUpload>".len();
    let pad = (len as usize).checked_sub(body.len()).ok_or_else(|| {
        S3Error::new(
            S3ErrorCode::InternalError,
            "the part list outgrew its announced length",
        )
    })?;
    let at = body.len() - close;
    body.splice(at..at, std::iter::repeat_n(b' ', pad));
    Ok(body)
}

/// A ListParts answer with the client's upload id (the gateway's token)
/// where the backend wrote its own: S3 echoes the id it was asked for,
/// and the backend's id is not the client's to use.
pub fn with_client_upload_id(xml: &str, client_id: &str) -> String {
    let (Some(a), Some(b)) = (xml.find("<UploadId>"), xml.find("</UploadId>")) else {
        return xml.to_string();
    };
    let start = a + "<UploadId>".len();
    if b < start {
        return xml.to_string();
    }
    [
        &xml[..start],
        &crate::s3::responses::error::xml_escape(client_id),
        &xml[b..],
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    #[test]
    fn list_parts_answers_name_the_clients_upload_id() {
        let xml = "<ListPartsResult><Bucket>b</Bucket><UploadId>backend&amp;1</UploadId><Part/></ListPartsResult>";
        assert_eq!(
            super::with_client_upload_id(xml, "sgmp3.t<k>"),
            "<ListPartsResult><Bucket>b</Bucket><UploadId>sgmp3.t&lt;k&gt;</UploadId><Part/></ListPartsResult>"
        );
        for odd in ["<X/>", "</UploadId><UploadId>"] {
            assert_eq!(super::with_client_upload_id(odd, "t"), odd);
        }
    }

    use super::*;
    use crate::s3::body::checksum::Checksum;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;

    fn list(parts: &[(u32, &str, Option<&str>)]) -> String {
        let body: String = parts
            .iter()
            .map(|(n, etag, sum)| {
                let sum = sum
                    .map(|s| format!("<ChecksumCRC32>{s}</ChecksumCRC32>"))
                    .unwrap_or_default();
                format!("<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag>{sum}</Part>")
            })
            .collect();
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{body}</CompleteMultipartUpload>")
    }

    /// A stored part of `plain` plaintext bytes.
    fn stored(n: u32, plain: u64) -> StoredPart {
        StoredPart {
            number: n,
            etag: format!("\"e{n}\""),
            size: sealgate_envelope::multipart::stored_part_len(plain),
            checksum: Some((ChecksumAlgorithm::Crc32c, format!("c{n}=="))),
        }
    }

    #[test]
    fn part_lists_must_count_from_one_without_gaps() {
        let ok = parse_complete(list(&[(1, "&quot;e1&quot;", None), (2, "e2", None)]).as_bytes())
            .unwrap();
        assert_eq!(ok[0].etag, "\"e1\"", "entities are resolved");
        assert_eq!(ok.len(), 2);
        for (parts, code) in [
            (
                vec![(1, "a", None), (3, "b", None)],
                S3ErrorCode::InvalidPart,
            ),
            (vec![(2, "a", None)], S3ErrorCode::InvalidPart),
            (
                vec![(1, "a", None), (1, "a", None)],
                S3ErrorCode::InvalidPart,
            ),
            (
                vec![(1, "a", None), (2, "b", None), (2, "b", None)],
                S3ErrorCode::InvalidPart,
            ),
            (
                vec![(2, "b", None), (1, "a", None)],
                S3ErrorCode::InvalidPartOrder,
            ),
            (
                vec![(1, "a", None), (3, "c", None), (2, "b", None)],
                S3ErrorCode::InvalidPartOrder,
            ),
            (vec![], S3ErrorCode::MalformedXML),
            (vec![(0, "a", None)], S3ErrorCode::InvalidArgument),
            (vec![(10_001, "a", None)], S3ErrorCode::InvalidArgument),
        ] {
            let err = parse_complete(list(&parts).as_bytes()).unwrap_err();
            assert_eq!(err.code, code, "{parts:?}");
        }
    }

    #[test]
    fn hostile_xml_is_refused() {
        for body in [
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
            "<!DOCTYPE x [<!ENTITY a \"b\">]><CompleteMultipartUpload/>",
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&a;</ETag></Part></CompleteMultipartUpload>",
            "<Other><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Other>",
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
            "<Other><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Other><CompleteMultipartUpload/>",
            &format!("{}{}", "<a>".repeat(20), "</a>".repeat(20)),
        ] {
            assert_eq!(
                parse_complete(body.as_bytes()).unwrap_err().code,
                S3ErrorCode::MalformedXML,
                "{body}"
            );
        }
    }

    #[test]
    fn the_upstream_list_carries_stored_checksums_and_its_announced_length() {
        let parts = vec![stored(1, 100), stored(2, 100), stored(3, 40)];
        let len = upstream_len(&parts);
        let client =
            parse_complete(list(&[(1, "\"e1\"", Some("AAAAAA==")), (2, "e2", None)]).as_bytes())
                .unwrap();
        let body = upstream_body(&client, &parts, len).unwrap();
        assert_eq!(body.len() as u64, len, "padded to the announced length");
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.contains("<ChecksumCRC32C>c1==</ChecksumCRC32C>"));
        assert!(
            !text.contains("ChecksumCRC32>"),
            "no client checksum goes upstream"
        );
        assert!(!text.contains("<PartNumber>3<"), "only the listed parts");
        let again = parse_complete(&body).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again[1].etag, "\"e2\"");
    }

    /// s3s-fs lists parts without ETags: the client's go upstream (the
    /// backend checks them), within the announced length.
    #[test]
    fn unlisted_etags_are_taken_from_the_client() {
        let mut parts = vec![stored(1, 100), stored(2, 40)];
        for p in &mut parts {
            p.etag.clear();
        }
        let len = upstream_len(&parts);
        let client =
            parse_complete(list(&[(1, "\"c1\"", None), (2, "\"c2\"", None)]).as_bytes()).unwrap();
        let body = upstream_body(&client, &parts, len).unwrap();
        assert_eq!(body.len() as u64, len);
        let sent: Vec<(u32, String)> = parse_complete(&body)
            .unwrap()
            .into_iter()
            .map(|p| (p.number, p.etag))
            .collect();
        assert_eq!(
            sent,
            vec![(1, "\"c1\"".to_string()), (2, "\"c2\"".to_string())]
        );
        let long = "e".repeat(MAX_UNLISTED_ETAG + 1);
        let client = parse_complete(list(&[(1, &long, None)]).as_bytes()).unwrap();
        assert_eq!(
            upstream_body(&client, &parts, len).unwrap_err().code,
            S3ErrorCode::InvalidPart
        );
    }

    #[test]
    fn parts_must_exist_with_their_etag_in_any_readable_layout() {
        let parts = vec![stored(1, 100), stored(2, 90), stored(3, 40)];
        let len = upstream_len(&parts);
        let wrong_etag = parse_complete(list(&[(1, "e9", None)]).as_bytes()).unwrap();
        assert_eq!(
            upstream_body(&wrong_etag, &parts, len).unwrap_err().code,
            S3ErrorCode::InvalidPart
        );
        let missing = parse_complete(
            list(&[
                (1, "e1", None),
                (2, "e2", None),
                (3, "e3", None),
                (4, "e4", None),
            ])
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            upstream_body(&missing, &parts, len).unwrap_err().code,
            S3ErrorCode::InvalidPart
        );
        // Any sizes: unequal, a larger or empty last part.
        for sizes in [vec![100, 90, 40], vec![100, 101], vec![100, 0], vec![0]] {
            let parts: Vec<StoredPart> = (1..)
                .zip(&sizes)
                .map(|(n, &size)| stored(n, size))
                .collect();
            let numbers: Vec<(u32, String)> = (1..=sizes.len() as u32)
                .map(|n| (n, format!("e{n}")))
                .collect();
            let listed: Vec<(u32, &str, Option<&str>)> = numbers
                .iter()
                .map(|(n, e)| (*n, e.as_str(), None))
                .collect();
            let client = parse_complete(list(&listed).as_bytes()).unwrap();
            assert!(
                upstream_body(&client, &parts, upstream_len(&parts)).is_ok(),
                "{sizes:?}"
            );
        }
        // Except those a reader would take for a regular layout (the four
        // parts `missing` lists).
        let f = 65_536;
        let parts = vec![
            stored(1, 8 * f),
            stored(2, 4 * f),
            stored(3, 12 * f),
            stored(4, 8 * f),
        ];
        let refused = upstream_body(&missing, &parts, upstream_len(&parts)).unwrap_err();
        assert_eq!(refused.code, S3ErrorCode::InvalidPart);
        // A stored size no encrypted part can have.
        let mut odd = vec![stored(1, 100)];
        odd[0].size = 10;
        let client = parse_complete(list(&[(1, "e1", None)]).as_bytes()).unwrap();
        assert_eq!(
            upstream_body(&client, &odd, upstream_len(&odd))
                .unwrap_err()
                .code,
            S3ErrorCode::InvalidPart
        );
    }

    /// Known values: composite = CRC32 of the concatenated part CRC32s; a
    /// full-object CRC combined from parts equals the CRC of the whole.
    #[test]
    fn client_checksums_composite_and_full_object() {
        let a = vec![1u8; 1000];
        let b = vec![2u8; 300];
        let crc = |alg: ChecksumAlgorithm, data: &[u8]| {
            let mut c = Checksum::new(alg);
            c.update(data);
            c.finish_base64()
        };
        for alg in [
            ChecksumAlgorithm::Crc32,
            ChecksumAlgorithm::Crc32c,
            ChecksumAlgorithm::Crc64Nvme,
        ] {
            let client = vec![
                ClientPart {
                    number: 1,
                    etag: "e1".into(),
                    checksum: Some((alg, crc(alg, &a))),
                },
                ClientPart {
                    number: 2,
                    etag: "e2".into(),
                    checksum: Some((alg, crc(alg, &b))),
                },
            ];
            let stored = vec![stored(1, 1000), stored(2, 300)];
            let whole = crc(alg, &[a.clone(), b.clone()].concat());
            let full = ChecksumRequest {
                algorithm: alg,
                full_object: true,
            };
            assert_eq!(
                client_checksum(full, &client, &stored, None).unwrap(),
                whole,
                "{alg:?}"
            );
            assert_eq!(
                client_checksum(full, &client, &stored, Some(&whole)).unwrap(),
                whole
            );
            assert_eq!(
                client_checksum(full, &client, &stored, Some("AAAAAA=="))
                    .unwrap_err()
                    .code,
                S3ErrorCode::BadDigest
            );
            if alg != ChecksumAlgorithm::Crc64Nvme {
                let composite = ChecksumRequest {
                    algorithm: alg,
                    full_object: false,
                };
                let mut raw = B64.decode(crc(alg, &a)).unwrap();
                raw.extend(B64.decode(crc(alg, &b)).unwrap());
                assert_eq!(
                    client_checksum(composite, &client, &stored, None).unwrap(),
                    format!("{}-2", crc(alg, &raw))
                );
            }
        }
        let missing = vec![ClientPart {
            number: 1,
            etag: "e1".into(),
            checksum: None,
        }];
        let req = ChecksumRequest {
            algorithm: ChecksumAlgorithm::Sha256,
            full_object: false,
        };
        assert_eq!(
            client_checksum(req, &missing, &[], None).unwrap_err().code,
            S3ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn checksum_requests_follow_s3s_rules() {
        let r = |a, k| ChecksumRequest::from_headers(a, k);
        assert_eq!(r(None, None).unwrap(), None);
        assert!(!r(Some("CRC32"), None).unwrap().unwrap().full_object);
        assert!(r(Some("crc64nvme"), None).unwrap().unwrap().full_object);
        assert!(
            r(Some("CRC32C"), Some("FULL_OBJECT"))
                .unwrap()
                .unwrap()
                .full_object
        );
        assert!(r(Some("SHA256"), Some("FULL_OBJECT")).is_err());
        assert!(r(Some("CRC64NVME"), Some("COMPOSITE")).is_err());
        assert!(r(Some("MD5"), None).is_err());
        assert!(r(None, Some("COMPOSITE")).is_err());
    }

    #[test]
    fn list_parts_pages_and_results_are_read_and_rewritten() {
        let xml = "<ListPartsResult><Bucket>b</Bucket><IsTruncated>true</IsTruncated><NextPartNumberMarker>2</NextPartNumberMarker><ChecksumAlgorithm>CRC32C</ChecksumAlgorithm>\
            <Part><PartNumber>1</PartNumber><ETag>&quot;x&quot;</ETag><Size>10</Size><ChecksumCRC32C>q==</ChecksumCRC32C></Part>\
            <Part><PartNumber>2</PartNumber><ETag>\"y\"</ETag><Size>20</Size></Part></ListPartsResult>";
        let page = parse_list_parts(xml.as_bytes()).unwrap();
        assert_eq!(page.next_marker, Some(2));
        assert_eq!(page.parts[0].etag, "\"x\"");
        assert_eq!(
            page.parts[0].checksum,
            Some((ChecksumAlgorithm::Crc32c, "q==".into()))
        );
        assert_eq!(page.parts[1].size, 20);
        let stuck = xml.replace("<NextPartNumberMarker>2<", "<NextPartNumberMarker>1<");
        assert!(
            parse_list_parts(stuck.as_bytes()).is_err(),
            "a marker must move on"
        );
        let stripped = strip_checksums(xml, true);
        assert!(!stripped.contains("Checksum"), "{stripped}");

        let result = "<CompleteMultipartUploadResult><Bucket>b</Bucket><ETag>\"z-2\"</ETag><ChecksumCRC32C>abc=-2</ChecksumCRC32C><ChecksumType>COMPOSITE</ChecksumType></CompleteMultipartUploadResult>";
        let req = ChecksumRequest {
            algorithm: ChecksumAlgorithm::Sha256,
            full_object: false,
        };
        let out = complete_result(result, Some((req, "v=-2")));
        assert_eq!(out, "<CompleteMultipartUploadResult><Bucket>b</Bucket><ETag>\"z-2\"</ETag><ChecksumSHA256>v=-2</ChecksumSHA256><ChecksumType>COMPOSITE</ChecksumType></CompleteMultipartUploadResult>");
        assert!(!complete_result(result, None).contains("Checksum"));
    }

    mod hostile {
        use super::super::*;
        use proptest::prelude::*;

        /// Part-list-like XML: elements, entities, comments, CDATA, noise.
        fn xml_like() -> impl Strategy<Value = Vec<u8>> {
            let token = prop_oneof![
                Just("<CompleteMultipartUpload>".to_string()),
                Just("</CompleteMultipartUpload>".to_string()),
                Just("<ListPartsResult>".to_string()),
                Just("</ListPartsResult>".to_string()),
                Just("<Part>".to_string()),
                Just("</Part>".to_string()),
                Just("<PartNumber>".to_string()),
                Just("</PartNumber>".to_string()),
                Just("<ETag>".to_string()),
                Just("</ETag>".to_string()),
                Just("<Size>".to_string()),
                Just("</Size>".to_string()),
                Just("<IsTruncated>true</IsTruncated>".to_string()),
                Just("<!-- <Part> -->".to_string()),
                Just("<![CDATA[<Part>]]>".to_string()),
                Just("<!DOCTYPE x [<!ENTITY e \"e\">]>".to_string()),
                Just("&amp;&e;&#x41;".to_string()),
                "[0-9]{1,12}".prop_map(String::from),
                ".{0,16}",
            ];
            proptest::collection::vec(token, 0..80).prop_map(|t| t.concat().into_bytes())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// No panic on any part list or ListParts page; what is
            /// accepted is within S3's limits and numbered as required.
            #[test]
            fn any_part_list_is_parsed_or_refused(xml in prop_oneof![
                xml_like(),
                proptest::collection::vec(any::<u8>(), 0..512),
            ]) {
                if let Ok(parts) = parse_complete(&xml) {
                    prop_assert!(!parts.is_empty() && parts.len() <= MAX_PARTS as usize);
                    for (i, p) in parts.iter().enumerate() {
                        prop_assert_eq!(p.number as usize, i + 1);
                        prop_assert!(!p.etag.is_empty());
                    }
                }
                if let Ok(page) = parse_list_parts(&xml) {
                    prop_assert!(page.parts.len() <= MAX_PARTS as usize);
                }
            }
        }
    }
}
