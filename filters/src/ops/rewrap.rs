//! `sealgate rewrap`: moving objects to another key without touching their
//! data. The object's data key is unwrapped with the key it was written
//! under and wrapped anew; a server-side copy onto itself replaces the
//! envelope's provider, key id and wrapped key and keeps every stored byte,
//! the salt and the commitment. Here: the pure parts (listing pages, which
//! objects move, the copy's headers and part ranges, which objects the
//! bucket's policy lets it touch, how the backend answered a pinned
//! write); the gateway crate drives the requests.
//!
//! Rewrap changes nothing it may not read: an object the bucket's policy
//! would refuse to a GET is never unwrapped nor written, and every write is
//! pinned to the ETag it read, so a client's write during a run wins.

use std::collections::BTreeMap;

use sealgate_envelope::multipart::{stored_part_len, Layout};

use crate::policy::{BucketEncryption, Unbound};
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
    } else if page.next.as_deref().is_none_or(str::is_empty) {
        // Stopping here would pass off part of the bucket as all of it.
        return Err(crate::s3::xml::malformed(
            "the listing is truncated but names no continuation token",
        ));
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

/// The bucket's policy as the gateway's reads apply it to a stored object
/// (`gateway/src/proxy/read/target.rs`, `check_bound`): key ids compare as
/// written first; for the bucket's own provider, then in the form objects
/// record them (a KMS alias as its key's ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub enc: BucketEncryption,
    /// `enc` with its own key (set: configured or the provider's default),
    /// its allowed and its readable key ids as objects record them.
    pub recorded: BucketEncryption,
    /// The default key id of the bucket's provider.
    pub default_key_id: String,
}

impl Binding {
    /// Would a GET in this bucket decrypt an object stored under
    /// `provider`/`key_id` with `context`? `recorded_key_id` is `key_id` as
    /// the bucket's provider binds it (`KeyProvider::binding_key_id`).
    pub fn check(
        &self,
        provider: &str,
        key_id: &str,
        recorded_key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<(), Unbound> {
        let first = self
            .enc
            .check_stored(&self.default_key_id, provider, key_id, context);
        if first != Err(Unbound::Key) || provider != self.enc.provider {
            return first;
        }
        self.recorded
            .check_stored(&self.default_key_id, provider, recorded_key_id, context)
    }
}

/// Why rewrap leaves an object the bucket's policy refuses, for its
/// progress line.
pub fn refusal(reason: Unbound) -> &'static str {
    match reason {
        Unbound::Key => {
            "refused by the bucket's policy: its provider and key are not ones the policy reads (moved here from another bucket?); not re-wrapped"
        }
        Unbound::Context => {
            "refused by the bucket's policy: its encryption context names another bucket or lacks this bucket's; not re-wrapped"
        }
    }
}

/// How the backend answered one of rewrap's writes, each pinned to the
/// ETag the run read (`x-amz-copy-source-if-match` on copies and part
/// copies, `If-Match` on CompleteMultipartUpload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAnswer {
    /// The expected answer document.
    Done,
    /// The object was written or deleted since the run read it: the other
    /// write wins and the object is skipped (412; 409
    /// ConditionalRequestConflict, a conditional write racing another;
    /// 404 NoSuchKey, deleted; 404 NoSuchUpload, the run's own upload
    /// dropped by a backend that ends a key's open uploads when the key is
    /// written, as Garage does). Either way the run exits non-zero and a
    /// second run takes the object up again.
    Changed,
    Failed,
}

impl WriteAnswer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Changed => "changed",
            Self::Failed => "failed",
        }
    }
}

/// Classifies a write's answer; `root` is the document a success carries
/// (S3 may report a failed copy in the body of a 200).
pub fn write_answer(status: u16, body: &[u8], root: &str) -> WriteAnswer {
    let code = || element_text(body, "Code");
    match status {
        200 if is_result(body, root) => WriteAnswer::Done,
        412 => WriteAnswer::Changed,
        409 if code().as_deref() == Some("ConditionalRequestConflict") => WriteAnswer::Changed,
        404 if matches!(code().as_deref(), Some("NoSuchKey" | "NoSuchUpload")) => {
            WriteAnswer::Changed
        }
        _ => WriteAnswer::Failed,
    }
}

/// One ListObjectVersions page (requested with `encoding-type=url`):
/// rewrap rewrites current versions only and counts the others.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VersionsPage {
    /// Versions that are not the current one (delete markers not counted).
    pub noncurrent: u64,
    /// The key and version-id markers of the next page, if there is one.
    pub next: Option<(String, String)>,
}

/// Parses a ListObjectVersions page.
pub fn parse_versions_page(xml: &[u8]) -> Result<VersionsPage, S3Error> {
    let mut page = VersionsPage::default();
    let mut truncated = false;
    let (mut key, mut version) = (None, None);
    walk(xml, |node| {
        match node {
            Node::Close([_, v, f], "false") if v == "Version" && f == "IsLatest" => {
                page.noncurrent += 1;
            }
            Node::Close([_, f], text) if f == "IsTruncated" => truncated = text == "true",
            // Encoded as the keys are (`encoding-type=url`).
            Node::Close([_, f], text) if f == "NextKeyMarker" => key = Some(form_decode(text)?),
            Node::Close([_, f], text) if f == "NextVersionIdMarker" => {
                version = Some(text.to_string())
            }
            _ => {}
        }
        Ok(())
    })?;
    if truncated {
        page.next = Some((
            key.ok_or_else(|| {
                crate::s3::xml::malformed("a truncated version listing names no next key")
            })?,
            version.unwrap_or_default(),
        ));
    }
    Ok(page)
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
    /// Not moved: refused by the bucket's policy, unreadable, or an error.
    pub failed: u64,
    /// Written or deleted by someone else during the run: that write won,
    /// the object was skipped (a run again moves what is left).
    pub changed: u64,
    /// Noncurrent versions under the prefix, which rewrap does not rewrite
    /// (`None`: the backend does not list versions).
    pub noncurrent: Option<u64>,
}

impl Summary {
    /// The lines `sealgate rewrap` ends with: the counts, then what was
    /// left to older versions.
    pub fn report(&self, dry_run: bool) -> String {
        let versions = match self.noncurrent {
            None => "current versions only: the backend lists no versions (any noncurrent versions keep their old wrap)".to_string(),
            Some(0) => "current versions only: no noncurrent versions".to_string(),
            Some(n) => format!(
                "current versions only: {n} noncurrent versions keep their old wrap (expire or delete them before retiring the old key)"
            ),
        };
        format!(
            "{} {}, {} already under the target key, {} plaintext, {} failed, {} changed during the run (skipped)\n{versions}",
            self.moved,
            if dry_run { "to move" } else { "moved" },
            self.already,
            self.plaintext,
            self.failed,
            self.changed,
        )
    }

    /// True when nothing failed and nothing was skipped: every current
    /// version is under the target key or plaintext (the exit status).
    pub fn complete(&self) -> bool {
        self.failed == 0 && self.changed == 0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_truncated_listing_without_a_token_is_refused() {
        let page = |rest: &str| {
            format!("<ListBucketResult><Contents><Key>a</Key><Size>1</Size></Contents>{rest}</ListBucketResult>")
        };
        assert!(parse_list_page(page("<IsTruncated>true</IsTruncated>").as_bytes()).is_err());
        assert!(parse_list_page(
            page("<IsTruncated>true</IsTruncated><NextContinuationToken></NextContinuationToken>")
                .as_bytes()
        )
        .is_err());
        let last = parse_list_page(page("<IsTruncated>false</IsTruncated>").as_bytes()).unwrap();
        assert_eq!((last.objects.len(), last.next), (1, None));
    }

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

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A bucket `vault` on provider `kms` under `alias/vault` (recorded as
    /// `arn:vault`), keeping provider `old` readable during a move.
    fn vault() -> Binding {
        let enc = BucketEncryption {
            provider: "kms".into(),
            mandatory: true,
            key_id: Some("alias/vault".into()),
            allowed_key_ids: vec![],
            readable_key_ids: vec!["alias/retired".into()],
            readable_providers: vec!["old".into()],
            readable_buckets: vec!["replica-source".into()],
            context: BTreeMap::new(),
            write_context: ctx(&[(crate::policy::BUCKET_CONTEXT_KEY, "vault")]),
        };
        let recorded = BucketEncryption {
            key_id: Some("arn:vault".into()),
            readable_key_ids: vec!["arn:retired".into()],
            ..enc.clone()
        };
        Binding {
            enc,
            recorded,
            default_key_id: "alias/default".into(),
        }
    }

    #[test]
    fn only_objects_a_get_would_decrypt_are_rewrapped() {
        let b = vault();
        let own = ctx(&[(crate::policy::BUCKET_CONTEXT_KEY, "vault")]);
        // The bucket's key as written or as recorded; a retired key; the
        // provider kept readable during a move.
        assert_eq!(b.check("kms", "alias/vault", "alias/vault", &own), Ok(()));
        assert_eq!(b.check("kms", "arn:vault/v2", "arn:vault", &own), Ok(()));
        assert_eq!(b.check("kms", "arn:retired", "arn:retired", &own), Ok(()));
        assert_eq!(b.check("old", "local:old", "local:old", &own), Ok(()));
        // Moved here at the storage level: another provider, another key
        // of this provider (its recorded form is not the bucket's either),
        // another bucket's context.
        assert_eq!(
            b.check("third", "local:third", "local:third", &own),
            Err(Unbound::Key)
        );
        assert_eq!(
            b.check("kms", "arn:other", "arn:other", &own),
            Err(Unbound::Key)
        );
        let other = ctx(&[(crate::policy::BUCKET_CONTEXT_KEY, "other")]);
        assert_eq!(
            b.check("kms", "arn:vault", "arn:vault", &other),
            Err(Unbound::Context)
        );
        assert_eq!(
            b.check("old", "local:old", "local:old", &other),
            Err(Unbound::Context)
        );
        // A bucket the policy lists as readable.
        let replica = ctx(&[(crate::policy::BUCKET_CONTEXT_KEY, "replica-source")]);
        assert_eq!(b.check("kms", "arn:vault", "arn:vault", &replica), Ok(()));
        // The recorded form is compared for the bucket's own provider only.
        assert_eq!(
            b.check("other-kms", "arn:other", "arn:vault", &own),
            Err(Unbound::Key)
        );
        assert!(refusal(Unbound::Key).contains("not re-wrapped"));
        assert!(refusal(Unbound::Context).contains("another bucket"));
    }

    #[test]
    fn pinned_writes_that_lose_to_another_write_are_changed() {
        let copied = b"<CopyObjectResult><ETag>x</ETag></CopyObjectResult>";
        assert_eq!(
            write_answer(200, copied, "CopyObjectResult"),
            WriteAnswer::Done
        );
        // A 200 carrying an error, or another document: not a success.
        let error = b"<Error><Code>InternalError</Code></Error>";
        assert_eq!(
            write_answer(200, error, "CopyObjectResult"),
            WriteAnswer::Failed
        );
        assert_eq!(
            write_answer(200, copied, "CompleteMultipartUploadResult"),
            WriteAnswer::Failed
        );
        let precondition = b"<Error><Code>PreconditionFailed</Code></Error>";
        assert_eq!(
            write_answer(412, precondition, "CopyPartResult"),
            WriteAnswer::Changed
        );
        assert_eq!(
            write_answer(412, b"", "CopyPartResult"),
            WriteAnswer::Changed
        );
        let racing = b"<Error><Code>ConditionalRequestConflict</Code></Error>";
        assert_eq!(
            write_answer(409, racing, "CompleteMultipartUploadResult"),
            WriteAnswer::Changed
        );
        let gone = b"<Error><Code>NoSuchKey</Code></Error>";
        assert_eq!(
            write_answer(404, gone, "CopyObjectResult"),
            WriteAnswer::Changed
        );
        // Garage drops a key's open uploads when the key is written.
        let no_upload = b"<Error><Code>NoSuchUpload</Code></Error>";
        assert_eq!(
            write_answer(404, no_upload, "CopyPartResult"),
            WriteAnswer::Changed
        );
        // Anything else: a failure, not a lost race.
        assert_eq!(
            write_answer(409, b"<Error><Code>OperationAborted</Code></Error>", "x"),
            WriteAnswer::Failed
        );
        assert_eq!(write_answer(503, b"", "x"), WriteAnswer::Failed);
        assert_eq!(WriteAnswer::Changed.as_str(), "changed");
    }

    #[test]
    fn version_pages_count_noncurrent_versions() {
        let xml = b"<ListVersionsResult><IsTruncated>true</IsTruncated>\
<NextKeyMarker>a%20b</NextKeyMarker><NextVersionIdMarker>v2</NextVersionIdMarker>\
<Version><Key>a</Key><VersionId>v1</VersionId><IsLatest>true</IsLatest></Version>\
<Version><Key>a</Key><VersionId>v0</VersionId><IsLatest>false</IsLatest></Version>\
<DeleteMarker><Key>b</Key><VersionId>d</VersionId><IsLatest>true</IsLatest></DeleteMarker>\
<Version><Key>b</Key><VersionId>v3</VersionId><IsLatest>false</IsLatest></Version>\
</ListVersionsResult>";
        assert_eq!(
            parse_versions_page(xml).unwrap(),
            VersionsPage {
                noncurrent: 2,
                next: Some(("a b".into(), "v2".into()))
            }
        );
        let last = b"<ListVersionsResult><IsTruncated>false</IsTruncated><NextKeyMarker>x</NextKeyMarker></ListVersionsResult>";
        assert_eq!(parse_versions_page(last).unwrap(), VersionsPage::default());
        // Truncated without a marker would list the first page forever.
        let endless = b"<ListVersionsResult><IsTruncated>true</IsTruncated></ListVersionsResult>";
        assert!(parse_versions_page(endless).is_err());
        assert!(parse_versions_page(b"<!DOCTYPE x><a/>").is_err());
    }

    #[test]
    fn the_report_names_skipped_objects_and_older_versions() {
        let mut s = Summary {
            moved: 3,
            already: 1,
            plaintext: 2,
            failed: 0,
            changed: 0,
            noncurrent: None,
        };
        assert!(s.complete());
        assert_eq!(
            s.report(false),
            "3 moved, 1 already under the target key, 2 plaintext, 0 failed, 0 changed during the run (skipped)\n\
current versions only: the backend lists no versions (any noncurrent versions keep their old wrap)"
        );
        s.changed = 1;
        s.noncurrent = Some(4);
        assert!(!s.complete());
        assert_eq!(
            s.report(true),
            "3 to move, 1 already under the target key, 2 plaintext, 0 failed, 1 changed during the run (skipped)\n\
current versions only: 4 noncurrent versions keep their old wrap (expire or delete them before retiring the old key)"
        );
        s.changed = 0;
        s.failed = 1;
        s.noncurrent = Some(0);
        assert!(!s.complete());
        assert!(s
            .report(false)
            .ends_with("\ncurrent versions only: no noncurrent versions"));
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
