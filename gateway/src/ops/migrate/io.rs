//! The streams of a migration: the plaintext read pinned to the ETag the
//! run saw, its encryption into an upstream write, and the read-back of
//! what was written through the envelope code.

use bytes::Bytes;
use http::HeaderMap;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use sealgate_envelope::multipart::{PartHeader, PartsDecryptor, PART_HEADER_LEN};
use sealgate_envelope::{plaintext_len, Decryptor, EnvelopeMeta};
use sealgate_filters::ops::migrate::same_etag;
use sealgate_filters::s3::auth::sigv4::{EMPTY_SHA256, UNSIGNED_PAYLOAD};
use sealgate_filters::s3::body::chunked::encode::UNSIGNED_TRAILER;
use sha2::{Digest, Sha256};

use super::{Run, MAX_ANSWER};
use crate::proxy::UploadPlan;

/// An upstream write's answer.
pub(super) struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Bytes,
}

/// Opens what was written, frame by frame.
enum Opener {
    Whole(Decryptor),
    Parts(Box<PartsDecryptor>),
}

impl Opener {
    fn push(&mut self, input: &[u8], end: bool) -> Result<Bytes, String> {
        match self {
            Self::Whole(d) => d.push(input, end),
            Self::Parts(d) => d.push(input, end),
        }
        .map_err(|e| format!("reading it back: {e}"))
    }
}

fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn header(resp: &pingora::http::ResponseHeader, name: &str) -> Option<String> {
    resp.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl Run {
    /// A GET of `path` pinned to `etag` (`range`: inclusive plaintext
    /// bytes), its body left to read: `Ok(Err(why))` when the object
    /// changed or went since the run read it.
    pub(super) async fn open_source(
        &self,
        path: &str,
        etag: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Result<HttpSession, String>, String> {
        let mut req = RequestHeader::build("GET", path.as_bytes(), None).map_err(io)?;
        req.insert_header(http::header::HOST, self.host.as_str())
            .map_err(io)?;
        req.insert_header(http::header::IF_MATCH, etag)
            .map_err(io)?;
        if let Some((a, b)) = range {
            req.insert_header(http::header::RANGE, format!("bytes={a}-{b}"))
                .map_err(io)?;
        }
        self.upstream
            .sign(&mut req, EMPTY_SHA256)
            .await
            .map_err(io)?;
        let mut s = self.upstream.session().await.map_err(io)?;
        s.write_request_header(Box::new(req)).await.map_err(io)?;
        s.finish_request_body().await.map_err(io)?;
        s.read_response_header().await.map_err(io)?;
        let resp = s.response_header().ok_or("no response header")?;
        let status = resp.status.as_u16();
        match status {
            200 | 206 => {}
            404 | 412 => return Ok(Err(format!("its read answered {status}"))),
            _ => return Err(format!("reading it answered {status}")),
        }
        // Some backends ignore If-Match on GET: the ETag is compared too.
        if !header(resp, "etag").is_some_and(|e| same_etag(&e, etag)) {
            return Ok(Err("its ETag changed since its HEAD".into()));
        }
        Ok(Ok(s))
    }

    /// Streams `source` (exactly `plan.plaintext_len` bytes, hashed into
    /// `hash`; `None` for an empty body) through `plan`'s encryption into a
    /// PUT of `path` with `headers`. A source that fails or ends early
    /// leaves the PUT's body short, so the backend stores nothing.
    pub(super) async fn put_encrypted(
        &self,
        path: &str,
        headers: &[(String, String)],
        plan: &UploadPlan,
        mut source: Option<HttpSession>,
        hash: &mut Sha256,
    ) -> Result<Answer, String> {
        let mut req = RequestHeader::build("PUT", path.as_bytes(), None).map_err(io)?;
        req.insert_header(http::header::HOST, self.host.as_str())
            .map_err(io)?;
        for (n, v) in headers {
            req.append_header(n.clone(), v.as_str()).map_err(io)?;
        }
        plan.apply(&mut req).map_err(io)?;
        let payload = if plan.sends_trailer() {
            UNSIGNED_TRAILER
        } else {
            UNSIGNED_PAYLOAD
        };
        self.upstream.sign(&mut req, payload).await.map_err(io)?;
        let mut cipher = plan.body(&HeaderMap::new()).map_err(io)?;
        let mut dst = self.upstream.session().await.map_err(io)?;
        dst.write_request_header(Box::new(req)).await.map_err(io)?;
        let mut read = 0u64;
        while let Some(chunk) = match source.as_mut() {
            Some(s) => s
                .read_response_body()
                .await
                .map_err(|e| format!("reading it: {e}"))?,
            None => None,
        } {
            read += chunk.len() as u64;
            if read > plan.plaintext_len {
                return Err("it is longer than its HEAD said".into());
            }
            hash.update(&chunk);
            let out = cipher.push(&chunk, false).map_err(io)?;
            if !out.is_empty() {
                dst.write_request_body(out, false).await.map_err(io)?;
            }
        }
        if read != plan.plaintext_len {
            return Err("it is shorter than its HEAD said".into());
        }
        if let Some(s) = source {
            self.upstream.release(s).await;
        }
        let last = cipher.push(&[], true).map_err(io)?;
        dst.write_request_body(last, true).await.map_err(io)?;
        dst.finish_request_body().await.map_err(io)?;
        dst.read_response_header().await.map_err(io)?;
        let resp = dst.response_header().ok_or("no response header")?.clone();
        let mut body = Vec::new();
        while let Some(chunk) = dst.read_response_body().await.map_err(io)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER {
                return Err("the write's answer is too long".into());
            }
        }
        self.upstream.release(dst).await;
        Ok(Answer {
            status: resp.status.as_u16(),
            etag: header(&resp, "etag"),
            body: body.into(),
        })
    }

    /// Reads `path` back as a GET through the gateway would: pinned to
    /// `etag`, its data key unwrapped by its provider and checked against
    /// its commitment, every frame opened; `Ok(true)` when its plaintext
    /// hashes to `digest`, `Ok(false)` when the object is no longer the
    /// one written (a client wrote it since).
    pub(super) async fn read_back(
        &self,
        path: &str,
        etag: &str,
        digest: &[u8],
        part_sizes: Option<&[u64]>,
    ) -> Result<bool, String> {
        let (head, _) = self.request("HEAD", path, &[], Bytes::new()).await?;
        match head.status.as_u16() {
            // Gone since: a client deleted it.
            404 => return Ok(false),
            200 => {}
            // Anything else is no answer: the object is not counted.
            s => return Err(format!("reading it back answered {s}")),
        }
        if !header(&head, "etag").is_some_and(|e| same_etag(&e, etag)) {
            return Ok(false);
        }
        let get = |n: &str| head.headers.get(n).and_then(|v| v.to_str().ok());
        let meta = EnvelopeMeta::from_headers(get)
            .map_err(|e| format!("its envelope: {e}"))?
            .ok_or("it was written without its envelope")?;
        let stored: u64 = get("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or("it has no length")?;
        let (dek, key) = crate::ops::unwrap_checked(&*self.provider, &meta).await?;
        let mut opener = match (meta.multipart, part_sizes) {
            (false, None) => {
                let total = plaintext_len(stored).ok_or("its length is no encrypted body's")?;
                Opener::Whole(Decryptor::new(key.cipher, 0, total))
            }
            (true, Some(sizes)) => {
                // The layout as the gateway's reads find it (from the first
                // part's header and the stored size), which must be the one
                // written.
                let (resp, first) = self
                    .request(
                        "GET",
                        path,
                        &[
                            ("range", &format!("bytes=0-{}", PART_HEADER_LEN - 1)),
                            ("if-match", etag),
                        ],
                        Bytes::new(),
                    )
                    .await?;
                match resp.status.as_u16() {
                    206 => {}
                    404 | 412 => return Ok(false),
                    s => return Err(format!("reading its first part header answered {s}")),
                }
                let first = PartHeader::decode(&first)
                    .filter(|h| h.number == 1)
                    .ok_or("its first part header is unreadable")?;
                let layout = self
                    .upstream
                    .part_layout(&self.host, path, &first, stored, Some(etag))
                    .await
                    .map_err(|e| format!("its parts as a read finds them: {e:?}"))?;
                let found: Vec<u64> = (0..layout.parts()).map(|i| layout.part_len(i)).collect();
                if found != sizes {
                    return Err(format!(
                        "a read finds its parts as {found:?}, not as written ({sizes:?})"
                    ));
                }
                let last = layout.plaintext_total().saturating_sub(1);
                Opener::Parts(Box::new(PartsDecryptor::from_part_start(
                    &dek,
                    meta.context_hash(),
                    layout,
                    0,
                    last,
                )))
            }
            _ => return Err("it was written with another layout".into()),
        };
        let Ok(mut s) = self.open_source(path, etag, None).await? else {
            return Ok(false);
        };
        let mut h = Sha256::new();
        while let Some(chunk) = s.read_response_body().await.map_err(io)? {
            h.update(opener.push(&chunk, false)?);
        }
        h.update(opener.push(&[], true)?);
        self.upstream.release(s).await;
        if h.finalize().as_slice() != digest {
            return Err("it reads back other than its plaintext".into());
        }
        Ok(true)
    }
}
