//! What the backend answers: error documents, GetObjectAttributes and
//! ListMultipartUploads answers, ListBuckets and upload listings the
//! client must not see whole, CreateMultipartUpload answers, stored part
//! headers, checksums of stored bytes.

use proptest::prelude::*;

use super::{changed, cut};
use crate::s3::multipart::checksum::strip_checksums;
use crate::s3::multipart::upload_id::{TokenKey, UploadIdRewrite, UploadToken};
use crate::s3::multipart::upload_records::{parse_upload_page, rewrite_upload_list};
use crate::s3::responses::listing::filter_buckets;
use crate::s3::responses::{attributes, backend_error};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Any error document, attributes answer or upload listing from the
    /// backend, built in the answer's own shape (elements repeated or left
    /// out, sizes with leading zeros, one byte changed half the time):
    /// answered or refused, and a rewritten size is the one asked for.
    #[test]
    fn any_backend_document_is_read_or_refused(
        code in "[A-Za-z&;<>]{0,20}",
        message in prop_oneof![Just(String::new()), "[ -~]{0,40}"],
        attributes in prop::collection::vec(
            (
                prop::sample::select(&["ETag", "Checksum", "ChecksumCRC32C", "ChecksumType", "ObjectParts", "StorageClass", "ObjectSize", "Other"][..]),
                prop_oneof!["0{0,40}[0-9]{1,20}", "[ -~]{0,12}", Just("<a></a>".to_string())],
            ),
            0..6,
        ),
        uploads in prop::collection::vec(("[ -~]{0,12}", "[ -~]{0,12}"), 0..4),
        truncated in prop::sample::select(&["true", "false", "", "TRUE"][..]),
        markers in prop::option::of(("[ -~]{0,12}", "[ -~]{0,12}")),
        size in prop_oneof![0u64..1_000_000, any::<u64>()],
        flip in prop::option::weighted(0.5, (any::<usize>(), any::<u8>())),
        encoded in any::<bool>(),
    ) {
        let error = format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>r</RequestId></Error>");
        let mut attrs = String::from("<GetObjectAttributesOutput>");
        for (name, value) in &attributes {
            attrs.push_str(&format!("<{name}>{value}</{name}>"));
        }
        attrs.push_str("</GetObjectAttributesOutput>");
        let mut page = format!("<ListMultipartUploadsResult><IsTruncated>{truncated}</IsTruncated>");
        if let Some((key, id)) = &markers {
            page.push_str(&format!("<NextKeyMarker>{key}</NextKeyMarker><NextUploadIdMarker>{id}</NextUploadIdMarker>"));
        }
        for (key, id) in &uploads {
            page.push_str(&format!("<Upload><Key>{key}</Key><UploadId>{id}</UploadId></Upload>"));
        }
        page.push_str("</ListMultipartUploadsResult>");
        for doc in [error, attrs.clone(), page] {
            let mut doc = doc.into_bytes();
            changed(&mut doc, flip);
            let _ = backend_error::code_and_message(&doc);
            let _ = backend_error::for_client(&doc, encoded);
            let _ = parse_upload_page(&doc);
            let text = String::from_utf8_lossy(&doc);
            let _ = attributes::rewrite(&text, size);
            let stripped = strip_checksums(&text, encoded);
            // No whole checksum element of stored bytes is left.
            if let Some(a) = stripped.find("<ChecksumCRC32C>") {
                prop_assert!(!stripped[a..].contains("</ChecksumCRC32C>"), "{}", stripped);
            }
        }
        if let Some(out) = attributes::rewrite(&attrs, size) {
            if attrs.contains("<ObjectSize>") {
                let shown = format!("<ObjectSize>{size}</ObjectSize>");
                prop_assert!(out.contains(&shown), "{}", out);
            }
        }
    }

    /// Any bytes where a stored part header should be: decoded or refused,
    /// and what decodes encodes back to the same bytes.
    #[test]
    fn any_part_header_is_decoded_or_refused(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        zeros in any::<bool>(),
    ) {
        use sealgate_envelope::multipart::{PartHeader, PART_HEADER_LEN};
        let mut bytes = bytes;
        if zeros && bytes.len() >= PART_HEADER_LEN as usize {
            bytes[44..48].fill(0);
        }
        if let Some(h) = PartHeader::decode(&bytes) {
            prop_assert_eq!(&h.encode()[..], &bytes[..PART_HEADER_LEN as usize]);
        }
    }

    /// Any ListMultipartUploads and ListBuckets answer: rewritten or
    /// refused; in S3's own shape, no recorded backend id and no bucket
    /// the client may not see is left in it.
    #[test]
    fn any_upload_and_bucket_listing_is_rewritten_or_refused(
        uploads in prop::collection::vec(
            (prop_oneof!["[a-z/]{0,10}", Just(".sealgate/uploads/x".to_string())], "[a-z0-9]{1,8}"),
            0..5,
        ),
        recorded in prop::collection::vec(any::<bool>(), 5),
        buckets in prop::collection::vec(("[a-z]{1,6}", any::<bool>()), 0..5),
        flip in prop::option::weighted(0.5, (any::<usize>(), any::<u8>())),
    ) {
        let tokens: std::collections::HashMap<String, String> = uploads
            .iter()
            .zip(&recorded)
            .filter(|(_, r)| **r)
            .map(|((_, id), _)| (id.clone(), format!("sgmp3.{id}")))
            .collect();
        let mut page = String::from("<ListMultipartUploadsResult><NextUploadIdMarker>");
        page.push_str(uploads.first().map_or("", |u| u.1.as_str()));
        page.push_str("</NextUploadIdMarker>");
        for (key, id) in &uploads {
            page.push_str(&format!("<Upload><Key>{key}</Key><UploadId>{id}</UploadId></Upload>"));
        }
        page.push_str("</ListMultipartUploadsResult>");
        let allowed: std::collections::HashSet<String> =
            buckets.iter().filter(|b| b.1).map(|b| b.0.clone()).collect();
        let mut list = String::from("<ListAllMyBucketsResult><Buckets>");
        for (name, _) in &buckets {
            list.push_str(&format!("<Bucket><Name>{name}</Name><CreationDate>d</CreationDate></Bucket>"));
        }
        list.push_str("</Buckets></ListAllMyBucketsResult>");
        let shown = |n: &str| allowed.contains(n).then(|| n.to_string());
        if let Some(out) = rewrite_upload_list(&page, &tokens) {
            for id in tokens.keys() {
                for element in ["UploadId", "NextUploadIdMarker"] {
                    let kept = format!("<{element}>{id}</{element}>");
                    prop_assert!(!out.contains(&kept), "{} kept in {}", id, out);
                }
            }
        }
        let out = filter_buckets(&list, shown);
        for (name, _) in buckets.iter().filter(|b| !allowed.contains(&b.0)) {
            prop_assert!(!out.contains(&format!("<Name>{name}</Name>")), "{} shown: {}", name, out);
        }
        if flip.is_some() {
            let (mut page, mut list) = (page.into_bytes(), list.into_bytes());
            changed(&mut page, flip);
            changed(&mut list, flip);
            let _ = rewrite_upload_list(&String::from_utf8_lossy(&page), &tokens);
            let _ = filter_buckets(&String::from_utf8_lossy(&list), shown);
        }
    }

    /// Any CreateMultipartUpload answer, in any pieces: the backend's id is
    /// replaced by a token for it, or the answer is left or refused whole.
    #[test]
    fn any_create_answer_in_any_pieces_gets_a_token(
        before in "[ -~]{0,20}",
        id in prop_oneof!["[A-Za-z0-9._-]{1,40}", Just("a&amp;b".to_string()), Just("&bad;".to_string()), Just(String::new())],
        after in "[ -~]{0,20}",
        swap in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let (open, close) = if swap { ("</UploadId>", "<UploadId>") } else { ("<UploadId>", "</UploadId>") };
        let doc = format!("<InitiateMultipartUploadResult>{before}{open}{id}{close}{after}</InitiateMultipartUploadResult>");
        let token = UploadToken {
            upload_id: String::new(),
            provider: "local".into(),
            key_id: "k".into(),
            wrapped_dek: vec![1; 8],
            salt: [2; 32],
            commitment: [3; 32],
            checksum: None,
            stored: Default::default(),
            mac: [0; 32],
        };
        let mut rewrite = UploadIdRewrite::new(token, TokenKey::derive(&[9; 32], &[8; 32]), "b".into(), "o".into());
        let pieces = cut(doc.as_bytes(), &cuts);
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            match rewrite.push(piece, i + 1 == pieces.len()) {
                Some(b) => out.extend_from_slice(&b),
                None => return Ok(()),
            }
        }
        let out = String::from_utf8(out).unwrap();
        if let Some((backend, token)) = rewrite.issued() {
            // The id as XML text means it (one escape in the inputs).
            prop_assert_eq!(backend, id.replace("&amp;", "&"));
            prop_assert!(out.contains(&format!("<UploadId>{token}</UploadId>")), "{}", out);
            prop_assert!(UploadToken::decode(token).is_some_and(|t| t.upload_id == backend));
        }
    }
}
