//! What a client may name as an object key, and the request bodies that
//! name keys or further orders (DeleteObjects lists, RestoreObject
//! requests): checked before anything uses them, so no key leaves its
//! bucket on a backend that maps keys to file paths.

use super::responses::error::{S3Error, S3ErrorCode};

/// Longest object key S3 takes (bytes).
pub const MAX_KEY_LEN: usize = 1024;

/// Checks an object key from a request (path, copy source, form field,
/// DeleteObjects list) before anything uses it. Unless the backend is
/// known to read keys literally (`literal`), a key that a backend mapping
/// keys to file paths would resolve elsewhere is refused: `.` or `..`
/// segments (split at `/` and at `\`, which some file systems also
/// separate at) and a leading `/` (an absolute path). Empty segments
/// inside (`logs//2024`, URLs as keys) stay allowed: such a backend reads
/// `a//b` as `a/b`, another key of the same bucket, never another bucket.
/// The key is the decoded one, so percent-encoded spellings are caught
/// too. Length is checked either way.
pub fn check_key(key: &str, literal: bool) -> Result<(), S3Error> {
    if key.len() > MAX_KEY_LEN {
        return Err(S3Error::new(
            S3ErrorCode::KeyTooLongError,
            "your key is too long",
        ));
    }
    if literal {
        return Ok(());
    }
    let crosses = key.starts_with(['/', '\\'])
        || key
            .split(['/', '\\'])
            .any(|segment| matches!(segment, "." | ".."));
    if crosses {
        return Err(S3Error::new(
            S3ErrorCode::InvalidArgument,
            "object keys with `.` or `..` path segments or a leading `/` are refused \
             (the backend may resolve them as file paths; storage.s3.literal_keys \
             allows them for backends that read keys literally)",
        ));
    }
    Ok(())
}

/// Listing parameters that name keys: a backend mapping keys to file
/// paths may open a prefix as a directory.
const KEY_NAMING_PARAMS: &[&str] = &["prefix", "marker", "start-after", "key-marker"];

/// Checks the listing parameters that name keys: unless keys are read
/// literally, none climbs out of the bucket (a `..` segment) or starts at
/// the root (a leading `/`). A `.` segment stays allowed (`prefix=.` lists
/// the keys that start with a dot; as a directory it is the bucket's own).
pub fn check_key_params(query: &[(String, String)], literal: bool) -> Result<(), S3Error> {
    if literal {
        return Ok(());
    }
    for (name, value) in query {
        if !KEY_NAMING_PARAMS.contains(&name.as_str()) {
            continue;
        }
        let climbs = value.starts_with(['/', '\\'])
            || value.split(['/', '\\']).any(|segment| segment == "..");
        if climbs {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                format!(
                    "{name} with a `..` path segment or a leading `/` is refused \
                     (storage.s3.literal_keys allows it)"
                ),
            ));
        }
    }
    Ok(())
}

/// Most objects one DeleteObjects request may name (S3's limit).
pub const MAX_DELETE_KEYS: usize = 1000;

/// The keys a DeleteObjects body names, parsed strictly (the gateway's
/// XML reader: no DOCTYPE, no unknown entities, bounded depth), so each
/// is checked like a key in a path before the body goes on.
pub fn delete_keys(xml: &[u8]) -> Result<Vec<String>, S3Error> {
    use super::xml::{malformed, walk, Node};
    let mut keys = Vec::new();
    let mut root_ok = false;
    walk(xml, |node| {
        match node {
            Node::Open([root]) => root_ok = root == "Delete",
            Node::Close([_, o, k], text) if o == "Object" && k == "Key" => {
                if keys.len() >= MAX_DELETE_KEYS {
                    return Err(malformed("a DeleteObjects request names at most 1000 keys"));
                }
                keys.push(text.to_string());
            }
            _ => {}
        }
        Ok(())
    })?;
    if !root_ok {
        return Err(malformed("the body is not a DeleteObjects list"));
    }
    Ok(keys)
}

/// Checks a RestoreObject body: a plain restore (days, tier) only. A
/// SELECT restore runs a query over the stored bytes and writes the
/// result to an `OutputLocation` the request names: a write into a
/// bucket nobody authorised, of data the gateway never sees.
pub fn check_restore(xml: &[u8]) -> Result<(), S3Error> {
    use super::xml::walk;
    use super::xml::Node;
    // An empty body is a default restore.
    if xml.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    walk(xml, |node| match node {
        Node::Open(path)
            if path
                .iter()
                .any(|e| matches!(e.as_str(), "SelectParameters" | "OutputLocation")) =>
        {
            Err(S3Error::new(
                S3ErrorCode::NotImplemented,
                "restores that run a query or write to an output location are not served here",
            ))
        }
        Node::Close([_, t], text) if t == "Type" && text.eq_ignore_ascii_case("SELECT") => {
            Err(S3Error::new(
                S3ErrorCode::NotImplemented,
                "restores that run a query or write to an output location are not served here",
            ))
        }
        _ => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::request::classify;
    use crate::s3::uri;
    use http::{HeaderMap, Method};

    /// The key the classifier reads from a path.
    fn key_of(path: &str) -> String {
        classify(
            &Method::PUT,
            Some("localhost:8080"),
            path,
            &[],
            &HeaderMap::new(),
            &[],
        )
        .unwrap()
        .key
        .unwrap()
    }

    /// The finding: on a backend that maps keys to file paths, `..` in a
    /// key reached another bucket (and `/` at the start, the file
    /// system's root).
    #[test]
    fn keys_that_a_path_mapping_backend_would_move_are_refused() {
        for key in [
            "..",
            "../team-secret/planted",
            "a/../../b",
            "a/./b",
            ".",
            "./x",
            "x/..",
            "x/../",
            "/etc/passwd",
            "\\x",
            "a\\..\\b",
            "..\\b",
            "x/../.sealgate/uploads/y",
        ] {
            let err = check_key(key, false).unwrap_err();
            assert_eq!(err.code, S3ErrorCode::InvalidArgument, "{key}");
            assert!(check_key(key, true).is_ok(), "literal: {key}");
        }
        for key in [
            "a",
            "dir/",
            "a/b/c",
            "a..b",
            "...",
            ".a/b.",
            "a/.../b",
            "x/.hidden",
            "logs//2024",
            "https://example.com/x",
            "dir\\",
            "a\\\\b",
        ] {
            assert!(check_key(key, false).is_ok(), "{key}");
        }
        let long = "k".repeat(MAX_KEY_LEN + 1);
        for literal in [false, true] {
            assert_eq!(
                check_key(&long, literal).unwrap_err().code,
                S3ErrorCode::KeyTooLongError
            );
            assert!(check_key(&long[1..], literal).is_ok());
        }
    }

    #[test]
    fn listing_parameters_stay_in_the_bucket() {
        let q = |s: &str| uri::parse_query(s).unwrap();
        for bad in [
            "prefix=../secret/",
            "prefix=a/../../x",
            "marker=..",
            "start-after=/etc",
            "key-marker=a%2F..%2Fb",
            "list-type=2&prefix=..%5Cx",
        ] {
            let err = check_key_params(&q(bad), false).unwrap_err();
            assert_eq!(err.code, S3ErrorCode::InvalidArgument, "{bad}");
            assert!(check_key_params(&q(bad), true).is_ok(), "{bad}");
        }
        for good in [
            "prefix=.",
            "prefix=./",
            "prefix=a..b/",
            "delimiter=..",
            "prefix=logs//",
        ] {
            assert!(check_key_params(&q(good), false).is_ok(), "{good}");
        }
    }

    /// Percent-encoded dots in a path are decoded before the key is checked.
    #[test]
    fn encoded_dot_segments_decode_to_refused_keys() {
        for path in ["/bkt/%2E%2E/other/k", "/bkt/a/%2e/b", "/bkt/a/.%2E/b"] {
            let key = key_of(path);
            assert!(check_key(&key, false).is_err(), "{path} -> {key}");
        }
    }

    /// The finding: a SELECT restore (its query's result written to an
    /// `OutputLocation` in another bucket) passed as a plain write.
    #[test]
    fn restores_are_plain_restores() {
        check_restore(b"").unwrap();
        check_restore(b"<RestoreRequest><Days>2</Days><GlacierJobParameters><Tier>Bulk</Tier></GlacierJobParameters></RestoreRequest>").unwrap();
        for bad in [
            &b"<RestoreRequest><Type>SELECT</Type></RestoreRequest>"[..],
            b"<RestoreRequest><SelectParameters><Expression>select * from s3object</Expression></SelectParameters></RestoreRequest>",
            b"<RestoreRequest><OutputLocation><S3><BucketName>elsewhere</BucketName></S3></OutputLocation></RestoreRequest>",
        ] {
            assert_eq!(check_restore(bad).unwrap_err().code, S3ErrorCode::NotImplemented);
        }
        assert_eq!(
            check_restore(b"<!DOCTYPE x><RestoreRequest/>")
                .unwrap_err()
                .code,
            S3ErrorCode::MalformedXML
        );
    }

    #[test]
    fn delete_lists_yield_their_keys() {
        let xml = b"<?xml version=\"1.0\"?><Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet><Object><Key>a/b</Key></Object><Object><Key>..&#x2F;x</Key><VersionId>v</VersionId></Object></Delete>";
        assert_eq!(delete_keys(xml).unwrap(), vec!["a/b", "../x"]);
        for bad in [
            &b"<Other><Object><Key>a</Key></Object></Other>"[..],
            b"<!DOCTYPE x><Delete/>",
            b"<Delete><Object><Key>a</Key></Object>",
            // Text before a child: read as `canary` here, as the whole text
            // by other readers.
            b"<Delete><Object><Key>../secret/<i></i>canary</Key></Object></Delete>",
            b"<Delete><Object><Key>..<i/>/x</Key></Object></Delete>",
            b"<Delete><Object><Key><i>../../secret/</i>canary</Key></Object></Delete>",
            b"<Delete><Object><Key>z<!---->../b</Key></Object></Delete>",
            b"<Delete><Object><Key>z<?pi x?>../b</Key></Object></Delete>",
        ] {
            assert_eq!(
                delete_keys(bad).unwrap_err().code,
                S3ErrorCode::MalformedXML
            );
        }
        let many: String = (0..=MAX_DELETE_KEYS)
            .map(|i| format!("<Object><Key>k{i}</Key></Object>"))
            .collect();
        let many = format!("<Delete>{many}</Delete>");
        assert_eq!(
            delete_keys(many.as_bytes()).unwrap_err().code,
            S3ErrorCode::MalformedXML
        );
    }
}
