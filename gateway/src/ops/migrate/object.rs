//! One object of a migration: a plaintext object encrypted in place (as
//! one object, or part by part as it was uploaded), or why not.

use bytes::Bytes;
use sealgate_envelope::{ciphertext_len, EnvelopeMeta};
use sealgate_filters::migrate::{
    choose_sizes, part_count, quoted_etag, same_etag, write_headers, Outcome,
};
use sealgate_filters::plan::{BodyEncoding, UploadBody};
use sealgate_filters::rewrap::{complete_body, element_text, tagging_header, KEPT_HEADERS};
use sealgate_filters::s3::chunked::probe::PROBE_PREFIX;
use sealgate_filters::s3::uri;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::io::Answer;

/// The envelope's salt as object metadata carries it.
const SALT_HEADER: &str = "x-amz-meta-sealgate-salt";

/// The salt header's value among envelope headers.
fn salt_of(envelope: &[(String, String)]) -> Result<String, String> {
    envelope
        .iter()
        .find(|(n, _)| n == SALT_HEADER)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| "an envelope without a salt".to_string())
}
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

/// The object as the run's HEAD saw it: every later read and the write
/// that replaces it are pinned to this version.
pub(super) struct Seen<'a> {
    pub path: &'a str,
    pub etag: &'a str,
    /// Changes with a metadata-only copy or a tag change, which keep the ETag.
    pub last_modified: Option<&'a str>,
    pub len: u64,
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
                Err(_)
                    if n.as_str().starts_with("x-amz-meta-")
                        || KEPT_HEADERS.contains(&n.as_str()) =>
                {
                    return Err(format!("its header {n} is not ASCII; move it by hand"))
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
        let seen = Seen {
            path: &path,
            etag: get("etag").ok_or("the object has no ETag")?,
            last_modified: get("last-modified"),
            len: get("content-length")
                .and_then(|v| v.parse().ok())
                .ok_or("the object has no length")?,
        };
        let parts = part_count(seen.etag);
        // Larger than one PUT takes: refused before any data moves.
        if parts.is_none() && ciphertext_len(seen.len) > self.upstream.config().max_put_size {
            return Err("its ciphertext would exceed one PUT (max_put_size); copy it through the gateway as a multipart upload".into());
        }
        if self.dry_run {
            return Ok(Outcome::WouldMigrate { bytes: seen.len });
        }
        let (tag_resp, tag_body) = self
            .request("GET", &format!("{path}?tagging"), &[], Bytes::new())
            .await?;
        let tagging = match tag_resp.status.as_u16() {
            200 => {
                let tags = tagging_header(&tag_body);
                if tags.is_none() && String::from_utf8_lossy(&tag_body).contains("<Tag>") {
                    return Err("its tags could not be read; move it by hand".into());
                }
                tags
            }
            // Tags are not kept by this backend.
            501 => None,
            404 | 412 => return Ok(Outcome::Changed("deleted since its HEAD".into())),
            s => return Err(format!("reading its tags answered {s}")),
        };
        let mut headers = write_headers(stored.iter().copied(), &[]);
        if let Some(t) = tagging {
            headers.push(("x-amz-tagging".into(), t));
        }
        match parts {
            None => self.single(&seen, headers).await,
            Some(parts) => self.parts(&seen, parts, headers).await,
        }
    }

    /// An object written by one PUT: encrypted by one PUT.
    async fn single(
        &self,
        seen: &Seen<'_>,
        mut headers: Vec<(String, String)>,
    ) -> Result<Outcome, String> {
        let staged = (!self.conditional.put).then(|| {
            format!(
                "{PROBE_PREFIX}migrate-{}",
                hex::encode(sealgate_filters::keys::random_bytes::<16>())
            )
        });
        let target = match &staged {
            Some(k) => self.path_of(k),
            None => {
                headers.push(("if-match".into(), seen.etag.to_string()));
                seen.path.to_string()
            }
        };
        let source = match seen.len {
            0 => None,
            _ => match self.open_source(seen.path, seen.etag, None).await? {
                Ok(s) => Some(s),
                Err(why) => return Ok(Outcome::Changed(why)),
            },
        };
        // Only once the source is there (a data key can be a KMS call).
        let data_key = self
            .provider
            .generate_data_key(&self.key_id, &self.enc.write_context)
            .await
            .map_err(|e| format!("a data key: {e}"))?;
        let plan = UploadPlan::new(
            plain(seen.len),
            &self.enc.provider,
            data_key,
            self.enc.write_context.clone(),
        )
        .map_err(|e| e.to_string())?
        .with_stored_checksum(self.stored_checksum);
        let mut hash = Sha256::new();
        let answer = self
            .put_encrypted(&target, &headers, &plan, source, &mut hash)
            .await;
        let digest = hash.finalize();
        let salt = salt_of(&plan.meta_headers)?;
        let outcome = async {
            let answer = match answer {
                Ok(a) if a.status < 500 => a,
                // The answer was lost (or a 5xx): written or not, the
                // object's own envelope tells.
                failed if staged.is_none() => match self.ours(seen.path, &salt).await? {
                    Some(etag) => Answer {
                        status: 200,
                        etag: Some(etag),
                        body: Bytes::new(),
                    },
                    None => failed?,
                },
                failed => failed?,
            };
            if let Some(why) = written("the encrypted write", &answer)? {
                return Ok(Outcome::Changed(why));
            }
            let new_etag = answer
                .etag
                .ok_or("the write was answered without an ETag")?;
            let Some(staged) = &staged else {
                return match self.read_back(seen.path, &new_etag, &digest, None).await? {
                    true => Ok(Outcome::Migrated { bytes: seen.len }),
                    false => Ok(Outcome::Changed(
                        "written again by a client right after it was encrypted".into(),
                    )),
                };
            };
            // Staged: checked before it replaces anything.
            if !self.read_back(&target, &new_etag, &digest, None).await? {
                return Err("the staged copy changed under the run".into());
            }
            self.put_in_place(seen, &headers, staged, &target, &new_etag)
                .await
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
    /// after a check that the object is still the one read (one attempt:
    /// a retry would widen the window a client's write can fall into).
    async fn put_in_place(
        &self,
        seen: &Seen<'_>,
        headers: &[(String, String)],
        staged: &str,
        staged_path: &str,
        staged_etag: &str,
    ) -> Result<Outcome, String> {
        // Every envelope field and the length, as the copy must keep them.
        let envelope_of = |h: &pingora::http::ResponseHeader| {
            let mut fields: Vec<(String, String)> = h
                .headers
                .iter()
                .filter(|(n, _)| {
                    n.as_str().starts_with("x-amz-meta-sealgate-") || n.as_str() == "content-length"
                })
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            fields.sort();
            fields
        };
        let (staged_head, _) = self.request("HEAD", staged_path, &[], Bytes::new()).await?;
        let expected = envelope_of(&staged_head);
        if staged_head.status.as_u16() != 200 || !expected.iter().any(|(n, _)| n == SALT_HEADER) {
            return Err(format!(
                "the staged copy reads back without its envelope ({})",
                staged_head.status
            ));
        }
        if let Some(why) = self.changed_since(seen).await? {
            return Ok(Outcome::Changed(why));
        }
        let source = format!("/{}/{}", self.real, crate::upstream::encode_key(staged));
        // A copy keeps the metadata but not these two (S3 sets them anew).
        let mut copy = vec![
            ("x-amz-copy-source", source.as_str()),
            ("x-amz-copy-source-if-match", staged_etag),
        ];
        for (n, v) in headers {
            if n == "x-amz-storage-class" || n == "x-amz-website-redirect-location" {
                copy.push((n.as_str(), v.as_str()));
            }
        }
        let (resp, body) = self
            .request_once("PUT", seen.path, &copy, Bytes::new())
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
        // The copy kept the checked bytes (same ETag); its envelope too?
        let (head, _) = self.request("HEAD", seen.path, &[], Bytes::new()).await?;
        let now = head.headers.get("etag").and_then(|v| v.to_str().ok());
        if !now.is_some_and(|e| same_etag(e, staged_etag)) {
            return Ok(Outcome::Changed(
                "written again by a client right after it was encrypted".into(),
            ));
        }
        if envelope_of(&head) != expected {
            return Err(
                "put in place without the envelope it was checked with: read it with `sealgate decrypt` from the staged copy's data"
                    .into(),
            );
        }
        Ok(Outcome::Migrated { bytes: seen.len })
    }

    /// `Some(why)` when the object is no longer the version the run read
    /// (another ETag, or the same ETag modified since: new metadata or tags).
    async fn changed_since(&self, seen: &Seen<'_>) -> Result<Option<String>, String> {
        let (head, _) = self
            .request("HEAD", seen.path, &[("if-match", seen.etag)], Bytes::new())
            .await?;
        let get = |n: &str| head.headers.get(n).and_then(|v| v.to_str().ok());
        Ok(match head.status.as_u16() {
            200 if get("etag").is_some_and(|e| same_etag(e, seen.etag))
                && get("last-modified") == seen.last_modified =>
            {
                None
            }
            200 | 404 | 412 => Some("written by a client during the run".into()),
            s => return Err(format!("checking it again answered {s}")),
        })
    }

    /// The ETag of the object at `path` if it carries the envelope with
    /// `salt` (as its metadata header writes it): one this run wrote, whose
    /// answer was lost. A random 32-byte salt names one write.
    async fn ours(&self, path: &str, salt: &str) -> Result<Option<String>, String> {
        let unknown = |e: String| {
            format!("{e}; it may have been written: check it with `sealgate audit --verify`")
        };
        let (head, _) = self
            .request("HEAD", path, &[], Bytes::new())
            .await
            .map_err(unknown)?;
        let get = |n: &str| head.headers.get(n).and_then(|v| v.to_str().ok());
        Ok(
            (head.status.as_u16() == 200 && get(SALT_HEADER) == Some(salt))
                .then(|| get("etag").map(str::to_string))
                .flatten(),
        )
    }

    /// A multipart object: encrypted part by part, with its own part sizes
    /// where the backend tells them and the gateway's reads would find
    /// them again, else regular ones; the part count is kept.
    async fn parts(
        &self,
        seen: &Seen<'_>,
        parts: u32,
        headers: Vec<(String, String)>,
    ) -> Result<Outcome, String> {
        let path = seen.path;
        let mut told = Some(Vec::with_capacity(parts as usize));
        for number in 1..=parts {
            let (head, _) = self
                .request(
                    "HEAD",
                    &format!("{path}?partNumber={number}"),
                    &[("if-match", seen.etag)],
                    Bytes::new(),
                )
                .await?;
            match head.status.as_u16() {
                206 => {}
                // Answered with the whole object: the sizes are not told.
                200 => {
                    told = None;
                    break;
                }
                404 | 412 => {
                    return Ok(Outcome::Changed("its parts changed since its HEAD".into()))
                }
                s => {
                    return Err(format!(
                        "the backend does not tell its part sizes (HEAD ?partNumber answered {s})"
                    ))
                }
            }
            if !head
                .headers
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|e| same_etag(e, seen.etag))
            {
                return Ok(Outcome::Changed("its ETag changed since its HEAD".into()));
            }
            let size: u64 = head
                .headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or("a part without a length")?;
            if let Some(t) = told.as_mut() {
                t.push(size);
            }
        }
        let sizes = choose_sizes(told, seen.len, parts)?;
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
        let salt = salt_of(&envelope)?;
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
                // Parts go up with plain lengths: the backend's checksum of
                // a part would have to be declared at the Create and listed
                // again at the Complete.
                let plan = UploadPlan::for_part(
                    plain(size),
                    meta.key_id.clone(),
                    Zeroizing::new(*data_key.plaintext),
                    meta.context_hash(),
                    number,
                );
                let source = match size {
                    0 => None,
                    _ => match self
                        .open_source(path, seen.etag, Some((start, start + size - 1)))
                        .await?
                    {
                        Ok(s) => Some(s),
                        Err(why) => return Ok(Err(why)),
                    },
                };
                start += size;
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
            if let Some(why) = self.changed_since(seen).await? {
                return Ok(Err(why));
            }
            let conditional = [("if-match", seen.etag)];
            // One attempt: a retry would widen the window a client's write
            // can fall into (and a lost answer is found out below).
            let (resp, body) = match self
                .request_once(
                    "POST",
                    &format!("{path}?uploadId={id}"),
                    if self.conditional.complete {
                        &conditional
                    } else {
                        &[]
                    },
                    Bytes::from(complete_body(&etags)),
                )
                .await
            {
                Ok(answer) if answer.0.status.as_u16() < 500 => answer,
                // The answer was lost (or a 5xx): completed or not, the
                // object's own envelope tells.
                other => {
                    let why = match other {
                        Ok((resp, _)) => format!("completing it answered {}", resp.status),
                        Err(e) => format!("completing it: {e}"),
                    };
                    return match self.ours(path, &salt).await? {
                        Some(etag) => Ok(Ok(etag)),
                        None => Err(why),
                    };
                }
            };
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
            self.ours(path, &salt)
                .await?
                .filter(|e| part_count(e) == Some(parts))
                .map(Ok)
                .ok_or_else(|| "completed, but it is not the object written".to_string())
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
            true => Ok(Outcome::Migrated { bytes: seen.len }),
            false => Ok(Outcome::Changed(
                "written again by a client right after it was encrypted".into(),
            )),
        }
    }
}
