//! Records of the gateway's multipart uploads, kept at the backend so that
//! ListMultipartUploads can answer the gateway's upload-id tokens (which
//! any instance can resume) instead of the backend's ids (which it refuses).
//!
//! A token cannot be made again from what the backend lists (it carries the
//! upload's wrapped data key), and the backend keeps nothing readable about
//! an unfinished upload. So each gateway upload gets companion uploads that
//! are never completed, whose keys hold the token:
//! `.sealgate/uploads/<group>/<i>-<n>/<piece>`, `group` naming the backend
//! upload id, pieces short enough for S3's 1,024-byte keys. An unfinished
//! upload with no parts holds no data and never appears among objects; the
//! gateway hides the companions from upload listings and aborts them when
//! their upload completes or is aborted (a lifecycle rule that aborts
//! incomplete uploads removes any left over).
//!
//! Companion keys are backend input: a token is used only if it decodes and
//! names the very upload it is filed under (a token for another upload
//! cannot be made without that upload's data key), and it is checked in
//! full when a client uses it.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use crate::s3::multipart::upload_id::UploadToken;
use crate::s3::xml::{walk, Node};
use crate::s3::S3Error;

/// Where the companion uploads live in each bucket.
pub const RECORD_PREFIX: &str = ".sealgate/uploads/";

/// Longest piece of a token in one companion key (with the prefix, group
/// and index the key stays well under S3's 1,024 bytes).
const RECORD_PIECE: usize = 800;

/// Most pieces one token is split into (tokens are at most 4,096 bytes).
const MAX_RECORD_PIECES: usize = 8;

/// The group of a backend upload id: 16 hex digits of its SHA-256.
fn group(upload_id: &str) -> String {
    hex::encode(&Sha256::digest(upload_id.as_bytes())[..8])
}

/// The prefix of the companions of backend upload `upload_id`.
pub fn record_prefix(upload_id: &str) -> String {
    format!("{RECORD_PREFIX}{}/", group(upload_id))
}

/// True for keys of companion uploads (never a client's upload).
pub fn is_record_key(key: &str) -> bool {
    key.starts_with(RECORD_PREFIX)
}

/// The companion keys that record `token` (the text handed to the client)
/// for backend upload `upload_id`.
pub fn record_keys(upload_id: &str, token: &str) -> Vec<String> {
    let prefix = record_prefix(upload_id);
    // Tokens are ASCII (a prefix and base64url): byte chunks are chars.
    let pieces: Vec<&str> = token
        .as_bytes()
        .chunks(RECORD_PIECE)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let n = pieces.len();
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| format!("{prefix}{i}-{n}/{piece}"))
        .collect()
}

/// A token's piece count and the pieces found, by index.
type Pieces<'a> = (usize, BTreeMap<usize, &'a str>);

/// The tokens companion `keys` record, by the backend upload id each names;
/// pieces that do not add up, and tokens filed under another upload's
/// group, are left out.
pub fn recorded_tokens<'a>(keys: impl IntoIterator<Item = &'a str>) -> HashMap<String, String> {
    // A group with conflicting pieces is dropped (`None`).
    let mut groups: BTreeMap<&str, Option<Pieces<'_>>> = BTreeMap::new();
    for key in keys {
        let Some(rest) = key.strip_prefix(RECORD_PREFIX) else {
            continue;
        };
        let mut fields = rest.splitn(3, '/');
        let (Some(g), Some(place), Some(piece)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Some((i, n)) = place
            .split_once('-')
            .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)))
            .filter(|&(i, n)| i < n && n <= MAX_RECORD_PIECES)
        else {
            continue;
        };
        let entry = groups
            .entry(g)
            .or_insert_with(|| Some((n, BTreeMap::new())));
        let consistent = match entry {
            Some((count, pieces)) if *count == n => *pieces.entry(i).or_insert(piece) == piece,
            _ => false,
        };
        if !consistent {
            *entry = None;
        }
    }
    let mut tokens = HashMap::new();
    for (g, entry) in groups {
        let Some((n, pieces)) = entry else { continue };
        if pieces.len() != n {
            continue;
        }
        let text: String = pieces.into_values().collect();
        if let Some(token) = UploadToken::decode(&text).filter(|t| group(&t.upload_id) == g) {
            tokens.insert(token.upload_id, text);
        }
    }
    tokens
}

/// One page of a backend's ListMultipartUploads: each upload's key and id,
/// and where the next page starts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UploadPage {
    pub uploads: Vec<(String, String)>,
    /// `(key-marker, upload-id-marker)` of the next page, if truncated.
    pub next: Option<(String, String)>,
}

/// Reads a ListMultipartUploads page (strictly; backend input).
pub fn parse_upload_page(xml: &[u8]) -> Result<UploadPage, S3Error> {
    let mut page = UploadPage::default();
    let (mut key, mut id) = (None, None);
    let (mut truncated, mut next_key, mut next_id) = (false, None, None);
    walk(xml, |node| {
        match node {
            Node::Open(path) if path.len() == 2 && path[1] == "Upload" => {
                key = None;
                id = None;
            }
            Node::Close(path, text) => match (path.len(), path[path.len() - 1].as_str()) {
                (3, "Key") if path[1] == "Upload" => key = Some(text.to_string()),
                (3, "UploadId") if path[1] == "Upload" => id = Some(text.to_string()),
                (2, "Upload") => {
                    if let (Some(k), Some(i)) = (key.take(), id.take()) {
                        page.uploads.push((k, i));
                    }
                }
                (2, "IsTruncated") => truncated = text == "true",
                (2, "NextKeyMarker") => next_key = Some(text.to_string()),
                (2, "NextUploadIdMarker") => next_id = Some(text.to_string()),
                _ => {}
            },
            Node::Open(_) => {}
        }
        Ok(())
    })?;
    if truncated {
        page.next = Some((next_key.unwrap_or_default(), next_id.unwrap_or_default()));
    }
    Ok(page)
}

/// `path_and_query` of a ListMultipartUploads with its `max-uploads` at
/// most `cap` (S3 may always answer fewer uploads a page; clients follow
/// `NextKeyMarker`). A value that is not a number becomes `cap` too (a
/// lenient backend would read it as its default, 1,000).
pub fn cap_max_uploads(path_and_query: &str, cap: usize) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut found = false;
    let pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=').unwrap_or((pair, "")) {
            // A bare `max-uploads` too: kept beside the cap, a backend
            // could read either.
            ("max-uploads", v) => {
                found = true;
                let n = v.parse::<usize>().map_or(cap, |n| n.min(cap));
                format!("max-uploads={n}")
            }
            _ => pair.to_string(),
        })
        .collect();
    let mut out = format!("{path}?{}", pairs.join("&"));
    if !found {
        if !pairs.is_empty() {
            out.push('&');
        }
        out.push_str(&format!("max-uploads={cap}"));
    }
    out
}

/// The client's ListMultipartUploads answer: companion uploads (and a
/// common prefix that only gathers them) left out, and the backend id of
/// every recorded upload, also in the markers, replaced by its token.
/// `None` when the document is not one this rewrite understands.
pub fn rewrite_upload_list(xml: &str, tokens: &HashMap<String, String>) -> Option<String> {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    loop {
        let next = ["<Upload>", "<CommonPrefixes>"]
            .iter()
            .filter_map(|open| rest.find(open).map(|at| (at, *open)))
            .min();
        let Some((at, open)) = next else {
            out.push_str(&rewrite_markers(rest, tokens)?);
            return Some(out);
        };
        out.push_str(&rewrite_markers(&rest[..at], tokens)?);
        let close = if open == "<Upload>" {
            "</Upload>"
        } else {
            "</CommonPrefixes>"
        };
        let end = rest[at..].find(close)? + at + close.len();
        let block = &rest[at..end];
        rest = &rest[end..];
        if open == "<CommonPrefixes>" {
            let prefix = unescape(element(block, "Prefix")?)?;
            if !(RECORD_PREFIX.starts_with(prefix.as_str()) && prefix.starts_with(".sealgate/")
                || is_record_key(&prefix))
            {
                out.push_str(block);
            }
            continue;
        }
        if is_record_key(&unescape(element(block, "Key")?)?) {
            continue;
        }
        out.push_str(&replace_id(block, "UploadId", tokens)?);
    }
}

/// The markers of the listing (outside its entries) with tokens for ids.
fn rewrite_markers(text: &str, tokens: &HashMap<String, String>) -> Option<String> {
    let text = replace_id(text, "UploadIdMarker", tokens)?;
    replace_id(&text, "NextUploadIdMarker", tokens)
}

/// `<name>id</name>` in `text` with the id's token, if it has one.
fn replace_id(text: &str, name: &str, tokens: &HashMap<String, String>) -> Option<String> {
    let open = format!("<{name}>");
    let Some(start) = text.find(&open).map(|a| a + open.len()) else {
        return Some(text.to_string());
    };
    let end = text[start..].find('<')? + start;
    let id = unescape(&text[start..end])?;
    Some(match tokens.get(&id) {
        Some(token) => format!("{}{}{}", &text[..start], token, &text[end..]),
        None => text.to_string(),
    })
}

/// The text of the first `<name>` element in `block`.
fn element<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = block.find(&open)? + open.len();
    let end = block[start..].find('<')? + start;
    Some(&block[start..end])
}

fn unescape(text: &str) -> Option<String> {
    quick_xml::escape::unescape(text)
        .ok()
        .map(|t| t.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::multipart::upload_id::UploadToken;

    #[test]
    fn a_listing_page_is_capped_however_it_asks() {
        let cases = [
            ("/b?uploads", "/b?uploads&max-uploads=100"),
            ("/b?uploads&max-uploads=1000", "/b?uploads&max-uploads=100"),
            ("/b?max-uploads=7&uploads", "/b?max-uploads=7&uploads"),
            ("/b?uploads&max-uploads=x", "/b?uploads&max-uploads=100"),
            (
                "/b?uploads&max-uploads=%201000",
                "/b?uploads&max-uploads=100",
            ),
            ("/b?uploads&max-uploads=-1", "/b?uploads&max-uploads=100"),
            ("/b?uploads&max-uploads=", "/b?uploads&max-uploads=100"),
            ("/b?uploads&max-uploads", "/b?uploads&max-uploads=100"),
            ("/b", "/b?max-uploads=100"),
            (
                "/b?uploads&prefix=a%26max-uploads%3D9",
                "/b?uploads&prefix=a%26max-uploads%3D9&max-uploads=100",
            ),
        ];
        for (asked, sent) in cases {
            assert_eq!(cap_max_uploads(asked, 100), sent, "{asked}");
        }
    }

    fn token(upload_id: &str, wrapped: usize) -> String {
        UploadToken {
            upload_id: upload_id.into(),
            provider: "kms".into(),
            key_id: "arn:aws:kms:eu-west-1:111122223333:key/k".into(),
            wrapped_dek: vec![7; wrapped],
            salt: [1; 32],
            commitment: [2; 32],
            checksum: None,
            stored: Default::default(),
            mac: [3; 32],
        }
        .encode()
    }

    #[test]
    fn tokens_round_trip_through_companion_keys() {
        for wrapped in [60, 184, 512] {
            let t = token("backend-id.1", wrapped);
            let keys = record_keys("backend-id.1", &t);
            assert!(keys.iter().all(|k| k.len() < 1024 && is_record_key(k)));
            assert!(keys
                .iter()
                .all(|k| k.starts_with(&record_prefix("backend-id.1"))));
            // Listed in any order, among others' keys.
            let mut listed: Vec<&str> = keys.iter().rev().map(String::as_str).collect();
            listed.push("photos/cat.jpg");
            let found = recorded_tokens(listed);
            assert_eq!(found.get("backend-id.1"), Some(&t), "wrapped {wrapped}");
            assert_eq!(found.len(), 1);
        }
    }

    #[test]
    fn companions_that_do_not_add_up_are_ignored() {
        let t = token("u1", 600);
        let keys = record_keys("u1", &t);
        assert!(keys.len() > 1);
        // A piece missing.
        assert!(recorded_tokens(keys[1..].iter().map(String::as_str)).is_empty());
        // A token filed under another upload's group.
        let other = token("u2", 60);
        let misfiled = format!("{}0-1/{other}", record_prefix("u1"));
        assert!(recorded_tokens([misfiled.as_str()]).is_empty());
        // Two different pieces in one place: the group is dropped.
        let mut doubled: Vec<String> = keys.clone();
        doubled.push(keys[0].replace("sgmp3.", "sgmp3.x"));
        assert!(recorded_tokens(doubled.iter().map(String::as_str)).is_empty());
        // Not a token at all, or out-of-range places.
        let junk = format!("{}0-1/hello", record_prefix("u3"));
        let far = format!("{}9-99/x", record_prefix("u3"));
        assert!(recorded_tokens([junk.as_str(), far.as_str()]).is_empty());
    }

    #[test]
    fn upload_lists_show_tokens_and_hide_companions() {
        let t = token("id&1", 60);
        let tokens = HashMap::from([("id&1".to_string(), t.clone())]);
        let companion = &record_keys("id&1", &t)[0];
        let xml = format!(
            "<ListMultipartUploadsResult><Bucket>b</Bucket><UploadIdMarker></UploadIdMarker><NextKeyMarker>k</NextKeyMarker><NextUploadIdMarker>id&amp;1</NextUploadIdMarker><IsTruncated>true</IsTruncated>\
<Upload><Key>k</Key><UploadId>id&amp;1</UploadId><Initiated>2026-01-01T00:00:00.000Z</Initiated></Upload>\
<Upload><Key>{companion}</Key><UploadId>c1</UploadId></Upload>\
<Upload><Key>raw</Key><UploadId>other</UploadId></Upload>\
<CommonPrefixes><Prefix>.sealgate/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>photos/</Prefix></CommonPrefixes></ListMultipartUploadsResult>"
        );
        let out = rewrite_upload_list(&xml, &tokens).unwrap();
        assert!(
            out.contains(&format!("<Upload><Key>k</Key><UploadId>{t}</UploadId>")),
            "{out}"
        );
        assert!(out.contains(&format!("<NextUploadIdMarker>{t}</NextUploadIdMarker>")));
        assert!(
            out.contains("<UploadId>other</UploadId>"),
            "unrecorded ids stay"
        );
        assert!(!out.contains(".sealgate"), "{out}");
        assert!(out.contains("<Prefix>photos/</Prefix>"));
        assert!(out.ends_with("</ListMultipartUploadsResult>"));
        // The same page, parsed as the gateway reads the companions.
        let page = parse_upload_page(xml.as_bytes()).unwrap();
        assert_eq!(page.uploads.len(), 3);
        assert_eq!(page.uploads[0], ("k".to_string(), "id&1".to_string()));
        assert_eq!(page.next, Some(("k".to_string(), "id&1".to_string())));
        assert!(rewrite_upload_list("<L><Upload><Key>k</Key>", &tokens).is_none());
    }
}
