//! One object of a migration: a plaintext object encrypted in place as
//! one object (a multipart one in `parts.rs`), or why not.

use bytes::Bytes;
use sealgate_envelope::{ciphertext_len, EnvelopeMeta};
use sealgate_filters::ops::migrate::{part_count, same_etag, write_headers, Outcome};
use sealgate_filters::ops::rewrap::{element_text, tagging_header, KEPT_HEADERS};
use sealgate_filters::plan::UploadBody;
use sealgate_filters::s3::body::chunked::probe::PROBE_PREFIX;
use sha2::{Digest, Sha256};

use super::io::Answer;

/// The envelope's salt as object metadata carries it.
const SALT_HEADER: &str = "x-amz-meta-sealgate-salt";

/// The salt header's value among envelope headers.
pub(super) fn salt_of<N: AsRef<str>, V: AsRef<str>>(envelope: &[(N, V)]) -> Result<String, String> {
    envelope
        .iter()
        .find(|(n, _)| n.as_ref() == SALT_HEADER)
        .map(|(_, v)| v.as_ref().to_string())
        .ok_or_else(|| "an envelope without a salt".to_string())
}
use super::Run;
use crate::proxy::{looks_reserved, UploadPlan};

/// What a write's answer means for the run: `Ok(None)` stored, `Ok(Some)`
/// refused because the object changed, `Err` failed.
pub(super) fn written(what: &str, a: &Answer) -> Result<Option<String>, String> {
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
            UploadBody::plain(seen.len),
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
    pub(super) async fn changed_since(&self, seen: &Seen<'_>) -> Result<Option<String>, String> {
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
    pub(super) async fn ours(&self, path: &str, salt: &str) -> Result<Option<String>, String> {
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
}
