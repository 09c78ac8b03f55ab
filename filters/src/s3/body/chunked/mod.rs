//! The aws-chunked body decoder: every variant S3 accepts.
//!
//! ```text
//! STREAMING-AWS4-HMAC-SHA256-PAYLOAD          hex-size;chunk-signature=SIG CRLF data CRLF ... 0;chunk-signature=SIG CRLF CRLF
//! STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER  as above, then trailer lines and x-amz-trailer-signature:SIG
//! STREAMING-UNSIGNED-PAYLOAD-TRAILER          hex-size CRLF data CRLF ... 0 CRLF trailer lines CRLF
//! ```
//! A pure state machine: `push` hands decoded data to a callback as it
//! arrives (no buffering beyond one header or trailer line), verifies each
//! chunk signature when its chunk ends, and `finish` checks that the body
//! ended where the encoding says it does. Trailers are collected for the
//! caller to check.

pub mod encode;
pub mod probe;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::s3::auth::sigv4::{hmac, EMPTY_SHA256};
use crate::s3::responses::error::{S3Error, S3ErrorCode};

/// `Content-Encoding` without the `aws-chunked` transfer coding: the rest
/// exactly as the client wrote it (`None` when nothing is left). A value
/// without `aws-chunked` comes back untouched.
pub fn without_aws_chunked(value: &str) -> Option<std::borrow::Cow<'_, str>> {
    let is_chunked = |t: &str| t.trim().eq_ignore_ascii_case("aws-chunked");
    if !value.split(',').any(is_chunked) {
        return Some(std::borrow::Cow::Borrowed(value));
    }
    let rest: Vec<&str> = value.split(',').filter(|t| !is_chunked(t)).collect();
    let joined = rest.join(",");
    let joined = joined.trim_start();
    (!joined.trim().is_empty()).then(|| std::borrow::Cow::Owned(joined.to_string()))
}

/// Longest chunk header line (`hex-size;chunk-signature=<64 hex>`) accepted.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest single chunk accepted (SDKs send 8 KiB to 1 MiB chunks).
pub const MAX_CHUNK_SIZE: u64 = 64 * 1024 * 1024;
/// Largest trailer section accepted, all lines together.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// What signs the chunks of a signed stream.
pub struct ChunkSigner {
    pub signing_key: Zeroizing<[u8; 32]>,
    pub amz_date: String,
    pub scope: String,
    /// The request's seed signature, then each chunk's.
    pub previous: String,
}

impl ChunkSigner {
    fn chunk_signature(&self, data_hash: &[u8]) -> String {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            EMPTY_SHA256,
            hex::encode(data_hash)
        );
        hex::encode(hmac(&self.signing_key[..], sts.as_bytes()))
    }

    fn trailer_signature(&self, trailer_hash: &[u8]) -> String {
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            hex::encode(trailer_hash)
        );
        hex::encode(hmac(&self.signing_key[..], sts.as_bytes()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

fn incomplete(msg: impl Into<String>) -> S3Error {
    S3Error::new(S3ErrorCode::IncompleteBody, msg)
}

fn bad_signature() -> S3Error {
    S3Error::new(
        S3ErrorCode::SignatureDoesNotMatch,
        "a chunk signature does not match; check your key and signing method",
    )
}

/// Decodes one aws-chunked body.
pub struct ChunkedDecoder {
    state: State,
    line: Vec<u8>,
    signer: Option<ChunkSigner>,
    chunk_signature: Option<String>,
    chunk_hash: Option<Sha256>,
    trailers: Vec<(String, String)>,
    trailer_bytes: usize,
    decoded: u64,
}

impl ChunkedDecoder {
    /// `signer` is set for the signed variants.
    pub fn new(signer: Option<ChunkSigner>) -> Self {
        Self {
            state: State::Size,
            line: Vec::new(),
            signer,
            chunk_signature: None,
            chunk_hash: None,
            trailers: Vec::new(),
            trailer_bytes: 0,
            decoded: 0,
        }
    }

    /// Decoded bytes so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// Trailers received (name lowercase), excluding the trailer signature.
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    /// Collects one CRLF-terminated line of at most `limit` bytes before
    /// the CRLF; returns it once complete.
    fn take_line(&mut self, input: &mut &[u8], limit: usize) -> Result<Option<Vec<u8>>, S3Error> {
        while let Some((&b, rest)) = input.split_first() {
            *input = rest;
            self.line.push(b);
            if self.line.ends_with(b"\r\n") {
                let mut line = std::mem::take(&mut self.line);
                line.truncate(line.len() - 2);
                return Ok(Some(line));
            }
            // A trailing `\r` may be the start of the CRLF: not counted yet.
            let content = self.line.len() - usize::from(self.line.ends_with(b"\r"));
            if content > limit {
                return Err(S3Error::new(
                    S3ErrorCode::InvalidRequest,
                    format!("aws-chunked line exceeds the limit of {limit} bytes"),
                ));
            }
        }
        Ok(None)
    }

    /// Decodes `input`, passing data to `emit`.
    pub fn push(&mut self, mut input: &[u8], mut emit: impl FnMut(&[u8])) -> Result<(), S3Error> {
        while !input.is_empty() {
            match self.state {
                State::Size => {
                    let Some(line) = self.take_line(&mut input, MAX_CHUNK_LINE)? else {
                        break;
                    };
                    self.start_chunk(&line)?;
                }
                State::Data(remaining) => {
                    let n = (remaining as usize).min(input.len());
                    let (data, rest) = input.split_at(n);
                    if let Some(h) = &mut self.chunk_hash {
                        h.update(data);
                    }
                    emit(data);
                    self.decoded += n as u64;
                    input = rest;
                    self.state = if remaining == n as u64 {
                        State::DataEnd
                    } else {
                        State::Data(remaining - n as u64)
                    };
                }
                State::DataEnd => {
                    let Some(line) = self.take_line(&mut input, 0)? else {
                        break;
                    };
                    if !line.is_empty() {
                        return Err(incomplete("aws-chunked data is longer than its chunk size"));
                    }
                    self.end_chunk()?;
                    self.state = State::Size;
                }
                State::Trailer => {
                    let Some(line) = self.take_line(&mut input, MAX_TRAILER_BYTES)? else {
                        break;
                    };
                    self.trailer_bytes += line.len() + 2;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(S3Error::new(
                            S3ErrorCode::InvalidRequest,
                            format!("aws-chunked trailers exceed the limit of {MAX_TRAILER_BYTES} bytes"),
                        ));
                    }
                    if line.is_empty() {
                        self.end_trailers()?;
                        self.state = State::Done;
                    } else {
                        self.trailer_line(&line)?;
                    }
                }
                State::Done => {
                    return Err(S3Error::new(
                        S3ErrorCode::InvalidRequest,
                        "bytes follow the end of the aws-chunked body",
                    ))
                }
            }
        }
        Ok(())
    }

    fn start_chunk(&mut self, line: &[u8]) -> Result<(), S3Error> {
        let line = std::str::from_utf8(line)
            .map_err(|_| incomplete("aws-chunked size line is not ASCII"))?;
        let (size, ext) = match line.split_once(';') {
            Some((s, e)) => (s, Some(e)),
            None => (line, None),
        };
        let size = u64::from_str_radix(size.trim(), 16).map_err(|_| {
            incomplete(format!(
                "`{}` is not an aws-chunked size",
                size.chars().take(32).collect::<String>()
            ))
        })?;
        if size > MAX_CHUNK_SIZE {
            return Err(S3Error::new(
                S3ErrorCode::InvalidRequest,
                format!("chunk size {size} exceeds the limit of {MAX_CHUNK_SIZE}"),
            ));
        }
        let signature = ext
            .and_then(|e| e.trim().strip_prefix("chunk-signature="))
            .map(str::to_string);
        if self.signer.is_some() {
            if signature.as_ref().is_none_or(|s| s.len() != 64) {
                return Err(S3Error::new(
                    S3ErrorCode::IncompleteBody,
                    "a signed chunk has no chunk-signature",
                ));
            }
            self.chunk_hash = Some(Sha256::new());
        }
        self.chunk_signature = signature;
        if size == 0 {
            self.end_chunk()?;
            self.state = State::Trailer;
        } else {
            self.state = State::Data(size);
        }
        Ok(())
    }

    fn end_chunk(&mut self) -> Result<(), S3Error> {
        let Some(signer) = &mut self.signer else {
            return Ok(());
        };
        let hash = self.chunk_hash.take().unwrap_or_default().finalize();
        let expected = signer.chunk_signature(&hash);
        let given = self.chunk_signature.take().unwrap_or_default();
        if !bool::from(
            expected
                .as_bytes()
                .ct_eq(given.to_ascii_lowercase().as_bytes()),
        ) {
            return Err(bad_signature());
        }
        signer.previous = expected;
        Ok(())
    }

    fn trailer_line(&mut self, line: &[u8]) -> Result<(), S3Error> {
        let line = std::str::from_utf8(line)
            .map_err(|_| incomplete("aws-chunked trailer is not UTF-8"))?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| incomplete("an aws-chunked trailer line has no `:`"))?;
        self.trailers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        Ok(())
    }

    fn end_trailers(&mut self) -> Result<(), S3Error> {
        let Some(signer) = &self.signer else {
            self.trailers
                .retain(|(n, _)| n != "x-amz-trailer-signature");
            return Ok(());
        };
        let signature = self
            .trailers
            .iter()
            .position(|(n, _)| n == "x-amz-trailer-signature")
            .map(|i| self.trailers.remove(i).1);
        match signature {
            None if self.trailers.is_empty() => Ok(()),
            None => Err(S3Error::new(
                S3ErrorCode::IncompleteBody,
                "signed trailers need x-amz-trailer-signature",
            )),
            Some(given) => {
                let mut h = Sha256::new();
                for (n, v) in &self.trailers {
                    h.update(format!("{n}:{v}\n").as_bytes());
                }
                let expected = signer.trailer_signature(&h.finalize());
                if bool::from(
                    expected
                        .as_bytes()
                        .ct_eq(given.to_ascii_lowercase().as_bytes()),
                ) {
                    Ok(())
                } else {
                    Err(bad_signature())
                }
            }
        }
    }

    /// The body ended: it must have ended exactly after the final chunk and trailers.
    pub fn finish(&self) -> Result<(), S3Error> {
        if self.state == State::Done {
            Ok(())
        } else {
            Err(incomplete("the aws-chunked body ended early"))
        }
    }
}

#[cfg(test)]
mod tests;
