//! `sealgate rewrap`: moving objects to another key without touching their
//! data. The object's data key is unwrapped with the key it was written
//! under and wrapped anew; a server-side copy onto itself replaces the
//! envelope's provider, key id and wrapped key and keeps every stored byte,
//! the salt and the commitment. Here: the pure parts (listing pages, which
//! objects move, the copy's headers and part ranges); the gateway crate
//! drives the requests.

use sealgate_envelope::multipart::{stored_part_len, Layout};

use crate::s3::xml::{walk, Node};
use crate::s3::S3Error;

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

/// One ListObjectsV2 page.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<Listed>,
    /// The continuation token of the next page, if there is one.
    pub next: Option<String>,
}

/// Decodes a key S3 listed with `encoding-type=url` (`+` is a space).
fn form_decode(text: &str) -> Result<String, S3Error> {
    crate::s3::uri::decode(&text.replace('+', " "))
        .ok_or_else(|| crate::s3::xml::malformed("a listed key is not valid URL encoding"))
}

/// Parses a ListObjectsV2 page from the backend (requested with
/// `encoding-type=url`).
pub fn parse_list_page(xml: &[u8]) -> Result<ListPage, S3Error> {
    let mut page = ListPage::default();
    let mut truncated = false;
    walk(xml, |node| {
        match node {
            Node::Open([_, c]) if c == "Contents" => page.objects.push(Listed {
                key: String::new(),
                size: 0,
            }),
            Node::Close([_, c, f], text) if c == "Contents" => {
                let o = page.objects.last_mut().expect("opened above");
                if f == "Key" {
                    // Listed with `encoding-type=url`: a key's spaces and
                    // control characters arrive encoded (no trimming loses them).
                    o.key = form_decode(text)?;
                } else if f == "Size" {
                    o.size = text.parse().unwrap_or(0);
                }
            }
            Node::Close([_, f], text) if f == "IsTruncated" => truncated = text == "true",
            Node::Close([_, f], text) if f == "NextContinuationToken" => {
                page.next = Some(text.to_string())
            }
            _ => {}
        }
        Ok(())
    })?;
    if !truncated {
        page.next = None;
    }
    Ok(page)
}

/// The text of the first `element` anywhere in a (strictly parsed) document:
/// an upload id, a part's ETag.
pub fn element_text(xml: &[u8], element: &str) -> Option<String> {
    let mut found = None;
    walk(xml, |node| {
        if let Node::Close(path, text) = node {
            if found.is_none() && path.last().is_some_and(|n| n == element) {
                found = Some(text.to_string());
            }
        }
        Ok(())
    })
    .ok()?;
    found
}

/// True when a 200 answer is the document `root` (S3 may report a failed
/// copy in the body of a 200; anything else is not a success either).
pub fn is_result(xml: &[u8], root: &str) -> bool {
    let mut found = None;
    let parsed = walk(xml, |node| {
        if let Node::Open([r]) = node {
            found = Some(r.clone());
        }
        Ok(())
    });
    parsed.is_ok() && found.as_deref() == Some(root)
}

/// An object's tags (a GetObjectTagging answer) as an `x-amz-tagging`
/// header value; `None` when it has none.
pub fn tagging_header(xml: &[u8]) -> Option<String> {
    let mut tags: Vec<(String, String)> = Vec::new();
    walk(xml, |node| {
        match node {
            Node::Open([_, _, t]) if t == "Tag" => tags.push((String::new(), String::new())),
            Node::Close([_, _, t, f], text) if t == "Tag" => {
                if let Some(tag) = tags.last_mut() {
                    match f.as_str() {
                        "Key" => tag.0 = text.to_string(),
                        "Value" => tag.1 = text.to_string(),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    })
    .ok()?;
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    crate::s3::uri::encode(k),
                    crate::s3::uri::encode(v)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// The CompleteMultipartUpload body for the copied parts' ETags.
pub fn complete_body(etags: &[String]) -> String {
    let mut out = String::from("<CompleteMultipartUpload>");
    for (i, etag) in etags.iter().enumerate() {
        out.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            i + 1,
            quick_xml::escape::partial_escape(etag)
        ));
    }
    out.push_str("</CompleteMultipartUpload>");
    out
}

/// Headers that describe an object and must survive a copy that replaces
/// its metadata (S3 drops them otherwise).
pub const KEPT_HEADERS: &[&str] = &[
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
    "expires",
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
];

/// The request headers of the copy: the object's own descriptive headers
/// and user metadata, with the envelope's fields from `envelope` (already
/// `x-amz-meta-sealgate-*` headers) in place of the stored ones.
pub fn copy_headers<'a>(
    stored: impl Iterator<Item = (&'a str, &'a str)>,
    envelope: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = stored
        .filter(|(n, _)| {
            KEPT_HEADERS.contains(n)
                || (n.starts_with("x-amz-meta-") && !n.starts_with("x-amz-meta-sealgate-"))
        })
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    out.extend(envelope.iter().cloned());
    out.push(("x-amz-metadata-directive".into(), "REPLACE".into()));
    out
}

/// The stored byte ranges (inclusive) of each part of a multipart object:
/// copying part by part with these ranges keeps every byte and the part
/// count.
pub fn part_ranges(layout: &Layout) -> Vec<(u64, u64)> {
    (0..layout.parts())
        .map(|i| {
            let start = layout.part_start(i);
            (start, start + stored_part_len(layout.part_len(i)) - 1)
        })
        .collect()
}

/// What happened to the objects of one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Moved to the target key (or, in a dry run, to be moved).
    pub moved: u64,
    /// Already under the target key (done by an earlier run).
    pub already: u64,
    /// Not written through the gateway: nothing to re-wrap.
    pub plaintext: u64,
    pub failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealgate_envelope::ciphertext_len;

    #[test]
    fn list_pages_and_their_continuation() {
        let xml = b"<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a&amp;b</Key><Size>12</Size></Contents><Contents><Key>c</Key><Size>7</Size></Contents><NextContinuationToken>tok</NextContinuationToken></ListBucketResult>";
        let page = parse_list_page(xml).unwrap();
        assert_eq!(
            page.objects,
            [
                Listed {
                    key: "a&b".into(),
                    size: 12
                },
                Listed {
                    key: "c".into(),
                    size: 7
                }
            ]
        );
        assert_eq!(page.next.as_deref(), Some("tok"));
        let last = b"<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken>x</NextContinuationToken></ListBucketResult>";
        assert_eq!(parse_list_page(last).unwrap().next, None);
        assert!(parse_list_page(b"<!DOCTYPE x><a/>").is_err());
    }

    #[test]
    fn copies_keep_descriptive_headers_and_user_metadata() {
        let stored = [
            ("content-type", "text/plain"),
            ("x-amz-meta-owner", "ops"),
            ("x-amz-meta-sealgate-dek", "old"),
            ("x-amz-meta-sealgate-key-id", "old-key"),
            ("etag", "\"x\""),
            ("content-length", "5"),
        ];
        let envelope = vec![
            ("x-amz-meta-sealgate-dek".to_string(), "new".to_string()),
            (
                "x-amz-meta-sealgate-key-id".to_string(),
                "new-key".to_string(),
            ),
        ];
        let out = copy_headers(stored.iter().copied(), &envelope);
        let get = |n: &str| -> Vec<&str> {
            out.iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("content-type"), ["text/plain"]);
        assert_eq!(get("x-amz-meta-owner"), ["ops"]);
        assert_eq!(
            get("x-amz-meta-sealgate-dek"),
            ["new"],
            "the old wrap is gone"
        );
        assert_eq!(get("x-amz-meta-sealgate-key-id"), ["new-key"]);
        assert!(get("etag").is_empty() && get("content-length").is_empty());
        assert_eq!(get("x-amz-metadata-directive"), ["REPLACE"]);
    }

    #[test]
    fn answers_of_the_backend() {
        let created = b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u&amp;1</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(element_text(created, "UploadId").as_deref(), Some("u&1"));
        let part = b"<CopyPartResult><ETag>\"abc\"</ETag></CopyPartResult>";
        assert_eq!(element_text(part, "ETag").as_deref(), Some("\"abc\""));
        assert!(!is_result(
            b"<Error><Code>InternalError</Code></Error>",
            "CopyObjectResult"
        ));
        assert!(!is_result(b"", "CopyObjectResult"));
        assert!(is_result(
            b"<CopyObjectResult><ETag>x</ETag></CopyObjectResult>",
            "CopyObjectResult"
        ));
        assert_eq!(
            complete_body(&["\"a\"".into(), "b<".into()]),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>b&lt;</ETag></Part></CompleteMultipartUpload>"
        );
    }

    #[test]
    fn tags_become_a_tagging_header() {
        let xml = b"<Tagging><TagSet><Tag><Key>team</Key><Value>a b</Value></Tag><Tag><Key>x&amp;y</Key><Value></Value></Tag></TagSet></Tagging>";
        assert_eq!(tagging_header(xml).as_deref(), Some("team=a%20b&x%26y="));
        assert_eq!(tagging_header(b"<Tagging><TagSet/></Tagging>"), None);
    }

    #[test]
    fn part_ranges_cover_the_object_part_by_part() {
        let part = 5 * 1024 * 1024;
        let stored_part = 48 + ciphertext_len(part);
        let last = 48 + ciphertext_len(1000);
        let total = 2 * stored_part + last;
        let layout = Layout::new(part, total).unwrap();
        let ranges = part_ranges(&layout);
        assert_eq!(
            ranges,
            [
                (0, stored_part - 1),
                (stored_part, 2 * stored_part - 1),
                (2 * stored_part, total - 1)
            ]
        );
        let layout = Layout::new(part, 3 * stored_part).unwrap();
        assert_eq!(part_ranges(&layout).len(), 3);
        // Unequal parts, as their headers say.
        let layout = Layout::from_sizes(vec![1000, part, 7]).unwrap();
        let first = 48 + ciphertext_len(1000);
        assert_eq!(
            part_ranges(&layout),
            [
                (0, first - 1),
                (first, first + stored_part - 1),
                (
                    first + stored_part,
                    first + stored_part + 48 + ciphertext_len(7) - 1
                )
            ]
        );
    }
}
