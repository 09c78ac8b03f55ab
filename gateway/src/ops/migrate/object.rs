//! One object of a migration: a plaintext object encrypted in place (as
//! one object, or part by part as it was uploaded), or why not.

use bytes::Bytes;
use sealgate_envelope::EnvelopeMeta;
use sealgate_filters::migrate::{
    part_count, quoted_etag, regular_sizes, same_etag, write_headers, Outcome,
};
use sealgate_filters::plan::{BodyEncoding, UploadBody};
use sealgate_filters::rewrap::{complete_body, element_text, tagging_header};
use sealgate_filters::s3::chunked::probe::PROBE_PREFIX;
use sealgate_filters::s3::uri;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::io::Answer;
use super::Run;
use crate::proxy::{looks_reserved, new_envelope, UploadPlan};

/// A plaintext body of `len` bytes, as the encryption takes it.
fn plain(len: u64) -> UploadBody {
    UploadBody {
        plaintext_len: len,
        encoding: BodyEncoding::Plain,
        trailer_algorithm: None,
        payload_sha256: None,
    }
}

/// What a write's answer means for the run: `Ok(None)` stored, `Ok(Some)`
/// refused because the object changed, `Err` failed.
fn written(what: &str, a: &Answer) -> Result<Option<String>, String> {
    match a.status {
        200 => Ok(None),
        404 | 412 => Ok(Some(format!("{what} answered {}", a.status))),
        s => Err(format!(
            "{what} answered {s} {}",
            element_text(&a.body, "Code").unwrap_or_default()
        )),
    }
}

impl Run {
    /// Encrypts one object, or says why not.
    pub(super) async fn one(&self, key: &str) -> Result<Outcome, String> {
        if looks_reserved(key) {
            return Ok(Outcome::Reserved);
        }
        let path = self.path_of(key);
        let (head, _) = self.request("HEAD", &path, &[], Bytes::new()).await?;
        match head.status.as_u16() {
            200 => {}
            404 => return Ok(Outcome::Changed("deleted since it was listed".into())),
            s => return Err(format!("HEAD answered {s}")),
        }
        let mut stored: Vec<(&str, &str)> = Vec::with_capacity(head.headers.len());
        for (n, v) in head.headers.iter() {
            match v.to_str() {
                Ok(v) => stored.push((n.as_str(), v)),
                // Rewriting the object would drop it silently.
                Err(_) if n.as_str().starts_with("x-amz-meta-") => {
                    return Err(format!("its metadata {n} is not ASCII; move it by hand"))
                }
                Err(_) => {}
            }
        }
        if stored.iter().any(|(n, _)| *n == "x-amz-missing-meta") {
            return Err("the backend reports metadata it could not return".into());
        }
        let get = |name: &str| stored.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        match EnvelopeMeta::from_headers(get) {
            Ok(Some(_)) => return Ok(Outcome::Already),
            Ok(None) => {}
            // Neither plaintext nor readable: `sealgate audit` tells more.
            Err(e) => return Err(format!("its envelope is unreadable ({e}); left as it is")),
        }
        let etag = get("etag").ok_or("the object has no ETag")?.to_string();
        let len: u64 = get("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or("the object has no length")?;
        if self.dry_run {
            return Ok(Outcome::WouldMigrate { bytes: len });
        }
        let (tag_resp, tag_body) = self
            .request("GET", &format!("{path}?tagging"), &[], Bytes::new())
            .await?;
        let tagging = match tag_resp.status.as_u16() {
            200 => tagging_header(&tag_body),
            // Tags are not kept by this backend.
            501 => None,
            404 | 412 => return Ok(Outcome::Changed("deleted since its HEAD".into())),
            s => return Err(format!("reading its tags answered {s}")),
        };
        let mut headers = write_headers(stored.iter().copied(), &[]);
        if let Some(t) = tagging {
            headers.push(("x-amz-tagging".into(), t));
        }
        match part_count(&etag) {
            None => self.single(&path, &etag, len, headers).await,
            Some(parts) => self.parts(&path, &etag, len, parts, headers).await,
        }
    }

    /// An object written by one PUT: encrypted by one PUT.
    async fn single(
        &self,
        path: &str,
        etag: &str,
        len: u64,
        mut headers: Vec<(String, String)>,
    ) -> Result<Outcome, String> {
        let data_key = self
            .provider
            .generate_data_key(&self.key_id, &self.enc.write_context)
            .await
            .map_err(|e| format!("a data key: {e}"))?;
        let plan = UploadPlan::new(
            plain(len),
            &self.enc.provider,
            data_key,
            self.enc.write_context.clone(),
        )
        .map_err(|e| e.to_string())?
        .with_stored_checksum(self.stored_checksum);
        let staged = (!self.conditional.put).then(|| {
            format!(
                "{PROBE_PREFIX}migrate-{}",
                hex::encode(sealgate_filters::keys::random_bytes::<16>())
            )
        });
        let target = match &staged {
            Some(k) => self.path_of(k),
            None => {
                headers.push(("if-match".into(), etag.to_string()));
                path.to_string()
            }
        };
        let source = match self.open_source(path, etag, None).await? {
            Ok(s) => s,
            Err(why) => return Ok(Outcome::Changed(why)),
        };
        let mut hash = Sha256::new();
        let answer = self
            .put_encrypted(&target, &headers, &plan, source, &mut hash)
            .await;
        let digest = hash.finalize();
        let outcome = async {
            let answer = answer?;
            if let Some(why) = written("the encrypted write", &answer)? {
                return Ok(Outcome::Changed(why));
            }
            let new_etag = answer
                .etag
                .ok_or("the write was answered without an ETag")?;
            let Some(staged) = &staged else {
                return match self.read_back(path, &new_etag, &digest, None).await? {
                    true => Ok(Outcome::Migrated { bytes: len }),
                    false => Ok(Outcome::Changed(
                        "written again by a client right after it was encrypted".into(),
                    )),
                };
            };
            // Staged: checked before it replaces anything.
            if !self.read_back(&target, &new_etag, &digest, None).await? {
                return Err("the staged copy changed under the run".into());
            }
            self.put_in_place(path, etag, staged, &new_etag, len).await
        }
        .await;
        if let Some(k) = &staged {
            if let Err(e) = self
                .request("DELETE", &self.path_of(k), &[], Bytes::new())
                .await
            {
                eprintln!("deleting the staged copy {k} failed: {e}");
            }
        }
        outcome
    }

    /// A staged encrypted copy put in place by a server-side copy, right
    /// after a check that the object is still the one read.
    async fn put_in_place(
        &self,
        path: &str,
        etag: &str,
        staged: &str,
        staged_etag: &str,
        len: u64,
    ) -> Result<Outcome, String> {
        if let Some(why) = self.changed_since(path, etag).await? {
            return Ok(Outcome::Changed(why));
        }
        let source = format!("/{}/{}", self.real, crate::upstream::encode_key(staged));
        let (resp, body) = self
            .request(
                "PUT",
                path,
                &[
                    ("x-amz-copy-source", &source),
                    ("x-amz-copy-source-if-match", staged_etag),
                ],
                Bytes::new(),
            )
            .await?;
        let answer = Answer {
            status: resp.status.as_u16(),
            etag: None,
            body: body.clone(),
        };
        if let Some(why) = written("putting it in place", &answer)? {
            return Err(format!("{why}: the staged copy was lost"));
        }
        // S3 may answer a failed copy with 200 and an error document.
        let copied = element_text(&body, "ETag").ok_or_else(|| {
            format!(
                "putting it in place failed: {}",
                element_text(&body, "Code").unwrap_or_default()
            )
        })?;
        if !same_etag(&copied, staged_etag) {
            return Err("its copy put in place is not the checked one".into());
        }
        Ok(Outcome::Migrated { bytes: len })
    }

    /// `Some(why)` when the object at `path` is no longer the one with `etag`.
    async fn changed_since(&self, path: &str, etag: &str) -> Result<Option<String>, String> {
        let (head, _) = self
            .request("HEAD", path, &[("if-match", etag)], Bytes::new())
            .await?;
        let now = head.headers.get("etag").and_then(|v| v.to_str().ok());
        Ok(match head.status.as_u16() {
            200 if now == Some(etag) => None,
            200 | 404 | 412 => Some("written by a client during the run".into()),
            s => return Err(format!("checking it again answered {s}")),
        })
    }

    /// A multipart object: encrypted part by part with its own part sizes.
    async fn parts(
        &self,
        path: &str,
        etag: &str,
        len: u64,
        parts: u32,
        headers: Vec<(String, String)>,
    ) -> Result<Outcome, String> {
        let mut sizes = Vec::with_capacity(parts as usize);
        // Whether every answer was one part's (some backends answer
        // `?partNumber=` with the whole object).
        let mut told = true;
        for number in 1..=parts {
            let (head, _) = self
                .request(
                    "HEAD",
                    &format!("{path}?partNumber={number}"),
                    &[("if-match", etag)],
                    Bytes::new(),
                )
                .await?;
            match head.status.as_u16() {
                206 => {}
                200 => told = false,
                404 | 412 => {
                    return Ok(Outcome::Changed("its parts changed since its HEAD".into()))
                }
                s => {
                    return Err(format!(
                        "the backend does not tell its part sizes (HEAD ?partNumber answered {s})"
                    ))
                }
            }
            if head.headers.get("etag").and_then(|v| v.to_str().ok()) != Some(etag) {
                return Ok(Outcome::Changed("its ETag changed since its HEAD".into()));
            }
            let size: u64 = head
                .headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or("a part without a length")?;
            sizes.push(size);
        }
        if !told || sizes.iter().sum::<u64>() != len {
            // The part count is kept; the sizes are the backend's secret.
            sizes = regular_sizes(len, parts);
        }
        let data_key = self
            .provider
            .generate_data_key(&self.key_id, &self.enc.write_context)
            .await
            .map_err(|e| format!("a data key: {e}"))?;
        let meta = new_envelope(
            &self.enc.provider,
            &data_key,
            self.enc.write_context.clone(),
            true,
        );
        let envelope = meta.to_headers().map_err(|e| e.to_string())?;
        let mut create: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        create.extend(envelope.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let (resp, body) = self
            .request("POST", &format!("{path}?uploads"), &create, Bytes::new())
            .await?;
        let upload_id = element_text(&body, "UploadId")
            .filter(|_| resp.status.as_u16() == 200)
            .ok_or_else(|| format!("starting the upload answered {}", resp.status))?;
        let id = uri::encode(&upload_id);
        let mut hash = Sha256::new();
        let result = async {
            let mut etags = Vec::with_capacity(sizes.len());
            let mut start = 0u64;
            for (i, &size) in sizes.iter().enumerate() {
                let number = i as u32 + 1;
                let plan = UploadPlan::for_part(
                    plain(size),
                    meta.key_id.clone(),
                    Zeroizing::new(*data_key.plaintext),
                    meta.context_hash(),
                    number,
                );
                let range = (size > 0).then(|| (start, start + size - 1));
                start += size;
                let source = match self.open_source(path, etag, range).await? {
                    Ok(s) => s,
                    Err(why) => return Ok(Err(why)),
                };
                let answer = self
                    .put_encrypted(
                        &format!("{path}?partNumber={number}&uploadId={id}"),
                        &[],
                        &plan,
                        source,
                        &mut hash,
                    )
                    .await?;
                if let Some(why) = written("a part's upload", &answer)? {
                    return Err(why);
                }
                etags.push(answer.etag.ok_or("a part was answered without an ETag")?);
            }
            if let Some(why) = self.changed_since(path, etag).await? {
                return Ok(Err(why));
            }
            let conditional = [("if-match", etag)];
            let (resp, body) = self
                .request(
                    "POST",
                    &format!("{path}?uploadId={id}"),
                    if self.conditional.complete {
                        &conditional
                    } else {
                        &[]
                    },
                    Bytes::from(complete_body(&etags)),
                )
                .await?;
            let answer = Answer {
                status: resp.status.as_u16(),
                etag: None,
                body: body.clone(),
            };
            if let Some(why) = written("completing it", &answer)? {
                return Ok(Err(why));
            }
            // S3 may answer a failed Complete with 200 and an error document.
            let done = element_text(&body, "ETag").ok_or_else(|| {
                format!(
                    "completing it failed: {}",
                    element_text(&body, "Code").unwrap_or_default()
                )
            })?;
            if !done.trim_matches('"').is_empty() {
                return Ok(Ok(quoted_etag(&done)));
            }
            // RGW 16 answers an empty ETag: the object's own is asked for
            // (the read back then checks that it is the one written).
            let (head, _) = self.request("HEAD", path, &[], Bytes::new()).await?;
            head.headers
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .filter(|e| part_count(e) == Some(parts))
                .map(|e| Ok(e.to_string()))
                .ok_or_else(|| "completed, but its ETag is not a multipart one".to_string())
        }
        .await;
        let new_etag = match result {
            Ok(Ok(e)) => e,
            other => {
                let _ = self
                    .request(
                        "DELETE",
                        &format!("{path}?uploadId={id}"),
                        &[],
                        Bytes::new(),
                    )
                    .await;
                return match other {
                    Ok(Err(why)) => Ok(Outcome::Changed(why)),
                    Err(why) => Err(why),
                    Ok(Ok(_)) => unreachable!("matched above"),
                };
            }
        };
        let digest = hash.finalize();
        match self
            .read_back(path, &new_etag, &digest, Some(&sizes))
            .await?
        {
            true => Ok(Outcome::Migrated { bytes: len }),
            false => Ok(Outcome::Changed(
                "written again by a client right after it was encrypted".into(),
            )),
        }
    }
}
