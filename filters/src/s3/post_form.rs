//! The `multipart/form-data` body of a browser POST upload, read as it
//! arrives: the form fields before the `file` field are held (bounded),
//! the file's bytes are not. S3 takes the file as the last field; the
//! gateway relies on that: the file's length is the body's length minus
//! what came before it and the closing delimiter after it, so it can be
//! encrypted as it streams (the envelope needs the length up front).

use crate::s3::{S3Error, S3ErrorCode};

/// Largest form held before the file starts (fields, their headers, the
/// policy): S3 allows 20 KB of fields; room for part headers on top.
pub const MAX_FORM_PREFIX: usize = 64 * 1024;
/// Longest boundary (RFC 2046 allows 70 characters).
const MAX_BOUNDARY_LEN: usize = 70;

/// The form up to the file's first byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormStart {
    /// Fields before the file, names lower-cased as S3 matches them.
    pub fields: Vec<(String, String)>,
    pub filename: Option<String>,
    /// Bytes of the body before the file's first byte.
    pub offset: usize,
}

/// The closing delimiter after the file, as browsers and HTTP libraries
/// send it: `CRLF--boundary--CRLF`.
pub fn closing_delimiter(boundary: &str) -> Vec<u8> {
    format!("\r\n--{boundary}--\r\n").into_bytes()
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Result<String, S3Error> {
    let bad = || {
        S3Error::new(
            S3ErrorCode::InvalidRequest,
            "a POST upload is multipart/form-data with a boundary",
        )
    };
    let mut parts = content_type.split(';');
    if !parts
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
    {
        return Err(bad());
    }
    let b = parts
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .ok_or_else(bad)?;
    let ok = !b.is_empty()
        && b.len() <= MAX_BOUNDARY_LEN
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c));
    ok.then_some(b).ok_or_else(bad)
}

/// Parses `prefix` (the body so far): `Ok(None)` when the file field has
/// not started yet (read more, up to [`MAX_FORM_PREFIX`]).
pub fn parse_start(prefix: &[u8], boundary: &str) -> Result<Option<FormStart>, S3Error> {
    let malformed = |why: &str| {
        S3Error::new(
            S3ErrorCode::MalformedPOSTRequest,
            format!("the POST body is not a valid form: {why}"),
        )
    };
    let delimiter = format!("--{boundary}").into_bytes();
    let next_delimiter = format!("\r\n--{boundary}").into_bytes();
    if prefix.len() < delimiter.len() + 2 {
        return Ok(None);
    }
    if !prefix.starts_with(&delimiter) || &prefix[delimiter.len()..delimiter.len() + 2] != b"\r\n" {
        return Err(malformed("it does not start with the boundary"));
    }
    let mut at = delimiter.len() + 2;
    let mut fields = Vec::new();
    loop {
        let Some(end) = find(&prefix[at..], b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&prefix[at..at + end])
            .map_err(|_| malformed("a part's headers are not UTF-8"))?;
        let (name, filename) =
            disposition(head).ok_or_else(|| malformed("a part has no form-data name"))?;
        let value_at = at + end + 4;
        if name == "file" {
            return Ok(Some(FormStart {
                fields,
                filename,
                offset: value_at,
            }));
        }
        let Some(len) = find(&prefix[value_at..], &next_delimiter) else {
            return Ok(None);
        };
        let value = std::str::from_utf8(&prefix[value_at..value_at + len])
            .map_err(|_| malformed("a field is not UTF-8"))?;
        if fields.iter().any(|(n, _)| *n == name) {
            return Err(malformed("a field appears twice"));
        }
        fields.push((name, value.to_string()));
        at = value_at + len + next_delimiter.len();
        match prefix.get(at..at + 2) {
            None => return Ok(None),
            Some(b"\r\n") => at += 2,
            Some(b"--") => return Err(malformed("the form has no file field")),
            Some(_) => return Err(malformed("a boundary is followed by junk")),
        }
    }
}

/// `form-data; name="x"; filename="y"` from a part's headers: the name
/// (lower-cased) and the file name.
fn disposition(head: &str) -> Option<(String, Option<String>)> {
    let line = head.split("\r\n").find(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    let (_, value) = line.split_once(':')?;
    let mut params = value.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    let mut name = None;
    let mut filename = None;
    for p in params {
        let (k, v) = p.trim().split_once('=')?;
        let v = v.trim().trim_matches('"').to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(v.to_ascii_lowercase()),
            "filename" => filename = Some(v),
            _ => {}
        }
    }
    Some((name?, filename))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "----sealgate7e1a";

    fn form(fields: &[(&str, &str)], file: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in fields {
            out.extend_from_slice(
                format!("--{B}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                    .as_bytes(),
            );
        }
        out.extend_from_slice(
            format!("--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(file);
        out.extend_from_slice(&closing_delimiter(B));
        out
    }

    #[test]
    fn fields_then_the_file_in_any_pieces() {
        let body = form(
            &[("Key", "up/${filename}"), ("policy", "e30=")],
            b"file bytes",
        );
        let whole = parse_start(&body, B).unwrap().unwrap();
        assert_eq!(
            whole.fields,
            vec![
                ("key".to_string(), "up/${filename}".to_string()),
                ("policy".into(), "e30=".into())
            ]
        );
        assert_eq!(whole.filename.as_deref(), Some("a.txt"));
        assert_eq!(&body[whole.offset..whole.offset + 10], b"file bytes");
        let file_len = body.len() - whole.offset - closing_delimiter(B).len();
        assert_eq!(file_len, 10);
        for cut in 0..whole.offset {
            assert_eq!(parse_start(&body[..cut], B).unwrap(), None, "{cut}");
        }
    }

    #[test]
    fn malformed_forms_are_refused() {
        let no_file = format!(
            "--{B}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--{B}--\r\n"
        );
        let twice = form(&[("key", "a"), ("KEY", "b")], b"x");
        let junk = b"garbage before the boundary".to_vec();
        let unnamed = format!("--{B}\r\nContent-Type: text/plain\r\n\r\nk\r\n--{B}\r\n");
        for body in [no_file.into_bytes(), twice, junk, unnamed.into_bytes()] {
            assert_eq!(
                parse_start(&body, B).unwrap_err().code,
                S3ErrorCode::MalformedPOSTRequest
            );
        }
    }

    #[test]
    fn boundaries() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").unwrap(),
            "abc"
        );
        assert_eq!(
            boundary("Multipart/Form-Data;boundary=\"a b\"").unwrap(),
            "a b"
        );
        for bad in [
            "text/plain; boundary=abc",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=a\r\nb",
            &format!("multipart/form-data; boundary={}", "x".repeat(71)),
        ] {
            assert!(boundary(bad).is_err(), "{bad:?}");
        }
    }
}
