//! One attempt's upload body as a state machine: aws-chunked decoding,
//! the client's checks over the plaintext, then encryption (or the
//! held-back forward of a decode-only upload). Rebuilt per attempt.

use bytes::Bytes;
use sealgate_envelope::Encryptor;
use sealgate_filters::holdback::Holdback;
use sealgate_filters::s3::body::checksum::BodyChecks;
use sealgate_filters::s3::body::chunked::ChunkedDecoder;
use sealgate_filters::s3::{S3Error, S3ErrorCode};

/// Where decoded upload bytes go.
pub(in crate::proxy) enum Sink {
    Encrypt(Encryptor),
    Forward(Holdback),
}

impl Sink {
    fn feed(&mut self, input: &[u8], end: bool) -> Result<(), sealgate_envelope::StreamError> {
        match self {
            Sink::Encrypt(e) => e.feed(input, end),
            Sink::Forward(f) => f.feed(input, end),
        }
    }

    fn take_ready(&mut self) -> Bytes {
        match self {
            Sink::Encrypt(e) => e.take_ready(),
            Sink::Forward(f) => f.take_ready(),
        }
    }
}

/// One attempt's request body: decoded, checked and encrypted (or only
/// decoded and checked) as it streams.
pub struct UploadStream {
    pub(in crate::proxy) decoder: Option<ChunkedDecoder>,
    pub(in crate::proxy) checks: Option<BodyChecks>,
    pub(in crate::proxy) sink: Sink,
    /// A part header still to send ahead of the frames.
    pub(in crate::proxy) prefix: Option<Bytes>,
    /// The verified client checksum, echoed in the response.
    pub echo_checksum: Option<(&'static str, String)>,
}

impl UploadStream {
    /// Decodes, checks and encrypts one piece. At `end`, everything is
    /// verified before the final frame is released: a failed check leaves
    /// the upstream body short, so nothing is stored.
    pub fn push(&mut self, input: &[u8], end: bool) -> Result<Bytes, S3Error> {
        let stream_err = |e: sealgate_envelope::StreamError| {
            S3Error::new(S3ErrorCode::IncompleteBody, e.to_string())
        };
        let Some(checks) = self.checks.as_mut() else {
            // The body already ended: nothing more may follow it.
            return Ok(Bytes::new());
        };
        match &mut self.decoder {
            Some(d) => {
                let mut failed = None;
                let enc = &mut self.sink;
                d.push(input, |data| {
                    checks.update(data);
                    if failed.is_none() {
                        if let Err(e) = enc.feed(data, false) {
                            failed = Some(e);
                        }
                    }
                })?;
                if let Some(e) = failed {
                    return Err(stream_err(e));
                }
            }
            None => {
                checks.update(input);
                self.sink.feed(input, false).map_err(stream_err)?;
            }
        }
        if end {
            if let Some(d) = &self.decoder {
                d.finish()?;
                for (name, value) in d.trailers() {
                    checks.set_trailer(name, value)?;
                }
            }
            let checks = self.checks.take().expect("checked once");
            let alg = checks.algorithm();
            checks.finish()?;
            if let Some(alg) = alg {
                self.echo_checksum = self
                    .decoder
                    .as_ref()
                    .and_then(|d| {
                        d.trailers()
                            .iter()
                            .find(|(n, _)| n == alg.header())
                            .map(|(_, v)| v.clone())
                    })
                    .map(|v| (alg.header(), v));
            }
            self.sink.feed(&[], true).map_err(stream_err)?;
        }
        let ready = self.sink.take_ready();
        Ok(match self.prefix.take() {
            Some(p) => [p, ready].concat().into(),
            None => ready,
        })
    }
}
