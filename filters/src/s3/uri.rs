//! URI encoding exactly as SigV4 and S3 define it ("UriEncode" in the S3 docs):
//! every byte except the unreserved `A-Z a-z 0-9 - . _ ~` is `%XX` with
//! uppercase hex; `/` is kept in object key paths.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but the unreserved characters.
const ENCODE_ALL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// As above, keeping `/` (object keys in paths).
const ENCODE_PATH: &AsciiSet = &ENCODE_ALL.remove(b'/');

/// UriEncode for query names and values.
pub fn encode(s: &str) -> String {
    // Through `Cow`, not `Display`: one copy when nothing needs encoding,
    // instead of the formatter's piece-by-piece growth (runs per request).
    Cow::from(utf8_percent_encode(s, ENCODE_ALL)).into_owned()
}

/// UriEncode for paths (slashes kept).
pub fn encode_path(s: &str) -> String {
    Cow::from(utf8_percent_encode(s, ENCODE_PATH)).into_owned()
}

/// True if `s` is a path that decoding and encoding again
/// ([`decode`] then [`encode_path`]) gives back unchanged because there is
/// nothing to do: nothing UriEncode would escape (`%` included, so nothing
/// to decode either). Lets a signature check skip both steps for the
/// common path.
pub fn is_encoded_path(s: &str) -> bool {
    !s.is_empty()
        && matches!(
            Cow::from(utf8_percent_encode(s, ENCODE_PATH)),
            Cow::Borrowed(_)
        )
}

/// Percent-decodes; `None` when the result is not UTF-8 (S3 keys are UTF-8).
pub fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Decodes a query component, where `+` also means space (form encoding, as
/// some clients send).
pub fn decode_query(s: &str) -> Option<String> {
    if s.contains('+') {
        decode(&s.replace('+', "%20"))
    } else {
        decode(s)
    }
}

/// Splits a raw query string into decoded (name, value) pairs, in order.
pub fn parse_query(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode_query(k)?, decode_query(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_aws() {
        assert_eq!(encode("a b+c/d~e"), "a%20b%2Bc%2Fd~e");
        assert_eq!(
            encode_path("/photos/2024 (1)/ü.jpg"),
            "/photos/2024%20%281%29/%C3%BC.jpg"
        );
        assert_eq!(encode("*"), "%2A");
    }

    #[test]
    fn an_encoded_path_is_one_that_round_trips() {
        for path in ["/bucket/key", "/b/a-b_c.d~e/", "/"] {
            assert!(is_encoded_path(path), "{path}");
            assert_eq!(decode(path).map(|p| encode_path(&p)).as_deref(), Some(path));
        }
        // Anything with `%` takes the long way: `a%20b` would round trip,
        // `%41` would not (it decodes to `A`, which stays `A`).
        for path in ["/bucket/a%20b", "/b/%41", "/b/a b", "/b/ü", "/b/a+b", ""] {
            assert!(!is_encoded_path(path), "{path}");
        }
    }

    #[test]
    fn decodes() {
        assert_eq!(decode("%C3%BC%20x").as_deref(), Some("ü x"));
        assert_eq!(decode_query("a+b").as_deref(), Some("a b"));
        assert!(decode("%FF").is_none());
        assert_eq!(
            parse_query("list-type=2&prefix=a%2Fb&uploads").unwrap(),
            vec![
                ("list-type".into(), "2".into()),
                ("prefix".into(), "a/b".into()),
                ("uploads".into(), "".into())
            ]
        );
    }
}
