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
            S3ErrorCode::RequestIsNotMultiPartContent,
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

/// Parses a whole `prefix` at once: `Ok(None)` when the file field has
/// not started in it yet.
pub fn parse_start(prefix: &[u8], boundary: &str) -> Result<Option<FormStart>, S3Error> {
    FormReader::new(boundary).push(prefix)
}

/// Where the reader is in the form.
#[derive(Debug)]
enum State {
    /// Before the first delimiter line.
    Preamble,
    /// In a part's headers, which began at `at`.
    Headers { at: usize },
    /// In the value of field `name`, which began at `at`.
    Value { name: String, at: usize },
    /// Just past a delimiter: `CRLF` (another part) or `--` (the end).
    Delimited { at: usize },
    /// The file field started (or the form was refused): nothing more.
    Done,
}

/// Reads the form's start as its pieces arrive. Each byte is searched a
/// bounded number of times however the body is cut (a search resumes
/// where the last one stopped, less the needle's length), so the work is
/// linear in the prefix: a client sending one byte at a time costs no
/// more than one sending it whole.
#[derive(Debug)]
pub struct FormReader {
    delimiter: Vec<u8>,
    next_delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: State,
    /// Where the pending search resumes.
    searched: usize,
    fields: Vec<(String, String)>,
    /// Bytes compared by searches so far (the work the form cost).
    scanned: usize,
}

impl FormReader {
    pub fn new(boundary: &str) -> Self {
        Self {
            delimiter: format!("--{boundary}").into_bytes(),
            next_delimiter: format!("\r\n--{boundary}").into_bytes(),
            buf: Vec::new(),
            state: State::Preamble,
            searched: 0,
            fields: Vec::new(),
            scanned: 0,
        }
    }

    /// The body held so far (the file's first bytes follow the offset
    /// [`FormStart`] names).
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes the searches have looked at, for tests of the parser's work.
    pub fn scanned(&self) -> usize {
        self.scanned
    }

    /// Takes the next piece of the body: `Ok(Some)` once the file field's
    /// headers are read, `Ok(None)` to read more. The caller bounds the
    /// prefix ([`MAX_FORM_PREFIX`]).
    pub fn push(&mut self, piece: &[u8]) -> Result<Option<FormStart>, S3Error> {
        self.buf.extend_from_slice(piece);
        let malformed = |why: &str| {
            S3Error::new(
                S3ErrorCode::MalformedPOSTRequest,
                format!("the POST body is not a valid form: {why}"),
            )
        };
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return Err(malformed("the form was already read")),
                State::Preamble => {
                    let d = self.delimiter.len();
                    if self.buf.len() < d + 2 {
                        self.state = State::Preamble;
                        return Ok(None);
                    }
                    if !self.buf.starts_with(&self.delimiter) || &self.buf[d..d + 2] != b"\r\n" {
                        return Err(malformed("it does not start with the boundary"));
                    }
                    self.searched = d + 2;
                    self.state = State::Headers { at: d + 2 };
                }
                State::Headers { at } => {
                    let Some(end) = self.search(b"\r\n\r\n", at) else {
                        self.state = State::Headers { at };
                        return Ok(None);
                    };
                    let head = std::str::from_utf8(&self.buf[at..end])
                        .map_err(|_| malformed("a part's headers are not UTF-8"))?;
                    let (name, filename) = disposition(head)
                        .ok_or_else(|| malformed("a part has no form-data name"))?;
                    let value_at = end + 4;
                    if name == "file" {
                        return Ok(Some(FormStart {
                            fields: std::mem::take(&mut self.fields),
                            filename,
                            offset: value_at,
                        }));
                    }
                    if self.fields.iter().any(|(n, _)| *n == name) {
                        return Err(malformed("a field appears twice"));
                    }
                    self.searched = value_at;
                    self.state = State::Value { name, at: value_at };
                }
                State::Value { name, at } => {
                    let next = std::mem::take(&mut self.next_delimiter);
                    let found = self.search(&next, at);
                    self.next_delimiter = next;
                    let Some(end) = found else {
                        self.state = State::Value { name, at };
                        return Ok(None);
                    };
                    let value = std::str::from_utf8(&self.buf[at..end])
                        .map_err(|_| malformed("a field is not UTF-8"))?;
                    self.fields.push((name, value.to_string()));
                    self.state = State::Delimited {
                        at: end + self.next_delimiter.len(),
                    };
                }
                State::Delimited { at } => match self.buf.get(at..at + 2) {
                    None => {
                        self.state = State::Delimited { at };
                        return Ok(None);
                    }
                    Some(b"\r\n") => {
                        self.searched = at + 2;
                        self.state = State::Headers { at: at + 2 };
                    }
                    Some(b"--") => {
                        return Err(S3Error::new(
                            S3ErrorCode::IncorrectNumberOfFilesInPostRequest,
                            "POST requires exactly one file upload per request",
                        ))
                    }
                    Some(_) => return Err(malformed("a boundary is followed by junk")),
                },
            }
        }
    }

    /// Finds `needle` at or after `from`, resuming where the last search
    /// of the same kind stopped: the absolute position of its first byte.
    fn search(&mut self, needle: &[u8], from: usize) -> Option<usize> {
        let start = self.searched.max(from);
        let hay = &self.buf[start..];
        self.scanned += hay.len();
        match find(hay, needle) {
            Some(i) => Some(start + i),
            None => {
                // The needle may straddle the next piece: keep its length
                // less one byte to look at again.
                self.searched = self.buf.len().saturating_sub(needle.len() - 1).max(from);
                None
            }
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

    /// The finding: every body piece re-parsed the whole prefix, so a
    /// form sent a byte at a time cost quadratic work before any check.
    #[test]
    fn a_form_read_a_byte_at_a_time_costs_linear_work() {
        let value = "v".repeat(MAX_FORM_PREFIX / 2);
        let body = form(
            &[("key", "k"), ("policy", &value), ("x-amz-meta-a", "b")],
            b"f",
        );
        let mut reader = FormReader::new(B);
        let mut start = None;
        for (i, byte) in body.iter().enumerate() {
            if let Some(s) = reader.push(std::slice::from_ref(byte)).unwrap() {
                start = Some((i, s));
                break;
            }
        }
        let (i, start) = start.expect("the file starts");
        assert_eq!(start, parse_start(&body, B).unwrap().unwrap());
        assert_eq!(i + 1, start.offset, "found as soon as its headers end");
        // Each byte is looked at again at most the longest needle's length.
        let bound = (i + 1) * (B.len() + 4);
        assert!(reader.scanned() <= bound, "{} > {bound}", reader.scanned());
    }

    #[test]
    fn malformed_forms_are_refused() {
        let no_file = format!(
            "--{B}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--{B}--\r\n"
        );
        let twice = form(&[("key", "a"), ("KEY", "b")], b"x");
        let junk = b"garbage before the boundary".to_vec();
        let unnamed = format!("--{B}\r\nContent-Type: text/plain\r\n\r\nk\r\n--{B}\r\n");
        assert_eq!(
            parse_start(no_file.as_bytes(), B).unwrap_err().code,
            S3ErrorCode::IncorrectNumberOfFilesInPostRequest
        );
        for body in [twice, junk, unnamed.into_bytes()] {
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
