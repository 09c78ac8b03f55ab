//! A multipart object of a migration: encrypted part by part with its own
//! part sizes where the backend tells them and the gateway's reads would
//! find them again, else regular ones; the part count is kept.

use bytes::Bytes;
use sealgate_filters::ops::migrate::{choose_sizes, part_count, quoted_etag, same_etag, Outcome};
use sealgate_filters::ops::rewrap::{complete_body, element_text};
use sealgate_filters::plan::UploadBody;
use sealgate_filters::s3::uri;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::io::Answer;
use super::object::{salt_of, written, Seen};
use super::Run;
use crate::proxy::{new_envelope, UploadPlan};

impl Run {
    /// A multipart object: encrypted part by part, with its own part sizes
    /// where the backend tells them and the gateway's reads would find
    /// them again, else regular ones; the part count is kept.
    pub(super) async fn parts(
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
                    UploadBody::plain(size),
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
