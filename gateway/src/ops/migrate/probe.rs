//! Whether the backend makes writes conditional on `If-Match`, found out
//! once per run under the reserved `.sealgate/probe/` prefix (no client
//! can reach it; everything stored there is deleted again): a PutObject
//! and a CompleteMultipartUpload naming an ETag the object does not have
//! must be refused with 412 and change nothing, and a PutObject naming the
//! one it has must succeed.

use bytes::Bytes;
use sealgate_filters::ops::migrate::{enforces_if_match, NO_SUCH_ETAG};
use sealgate_filters::ops::rewrap::{complete_body, element_text};
use sealgate_filters::s3::body::chunked::probe::PROBE_PREFIX;
use sealgate_filters::s3::uri;

use super::Run;

/// What the backend enforces.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Conditional {
    pub put: bool,
    pub complete: bool,
}

impl Conditional {
    pub fn describe(&self) -> &'static str {
        match (self.put, self.complete) {
            (true, true) => "conditional on each object's ETag (the backend enforces If-Match)",
            (true, false) => "conditional on each object's ETag (PutObject); a multipart object's completion follows a fresh check of its ETag (the backend ignores If-Match there)",
            _ => "staged, checked, then put in place right after a fresh check of each object's ETag (the backend ignores If-Match on writes)",
        }
    }
}

impl Run {
    pub(super) async fn probe_conditional(&self) -> Result<Conditional, String> {
        let key = format!(
            "{PROBE_PREFIX}migrate-{}",
            hex::encode(sealgate_filters::keys::random_bytes::<16>())
        );
        let path = self.path_of(&key);
        let found = self.probe_steps(&path).await;
        // Whatever the steps stored (a versioned bucket keeps the
        // versions; the probe's versions are few and tiny).
        if let Err(e) = self.request("DELETE", &path, &[], Bytes::new()).await {
            eprintln!("deleting the conditional-write probe {key} failed: {e}");
        }
        found
    }

    async fn probe_steps(&self, path: &str) -> Result<Conditional, String> {
        let put = |body: &'static [u8], if_match: Option<String>| async move {
            let headers: Vec<(&str, &str)> = if_match
                .as_deref()
                .map(|e| vec![("if-match", e)])
                .unwrap_or_default();
            self.request("PUT", path, &headers, Bytes::from_static(body))
                .await
        };
        let stored = || async {
            let (resp, body) = self.request("GET", path, &[], Bytes::new()).await?;
            Ok::<_, String>((resp.status.as_u16() == 200).then_some(body))
        };
        let (first, _) = put(b"a", None).await?;
        if !first.status.is_success() {
            return Err(format!(
                "the conditional-write probe could not store under {PROBE_PREFIX}: {}",
                first.status
            ));
        }
        let etag = first
            .headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .ok_or("the backend answered a PUT without an ETag")?
            .to_string();
        let (wrong, _) = put(b"b", Some(NO_SUCH_ETAG.to_string())).await?;
        let kept = stored().await?.is_some_and(|b| b.as_ref() == b"a");
        let current = if kept {
            etag
        } else {
            let (head, _) = self.request("HEAD", path, &[], Bytes::new()).await?;
            head.headers
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (right, _) = put(b"c", Some(current)).await?;
        let put_enforced = enforces_if_match(wrong.status.as_u16(), kept, right.status.as_u16());
        Ok(Conditional {
            put: put_enforced,
            complete: put_enforced && self.probe_complete(path).await?,
        })
    }

    /// A CompleteMultipartUpload naming the wrong ETag: refused with 412,
    /// the object unchanged (the upload is aborted in every case).
    async fn probe_complete(&self, path: &str) -> Result<bool, String> {
        let (resp, body) = self
            .request("POST", &format!("{path}?uploads"), &[], Bytes::new())
            .await?;
        let Some(upload_id) =
            element_text(&body, "UploadId").filter(|_| resp.status.as_u16() == 200)
        else {
            return Ok(false);
        };
        let id = uri::encode(&upload_id);
        let outcome = async {
            let (part, _) = self
                .request(
                    "PUT",
                    &format!("{path}?partNumber=1&uploadId={id}"),
                    &[],
                    Bytes::from_static(b"d"),
                )
                .await?;
            let Some(etag) = part
                .headers
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .filter(|_| part.status.is_success())
            else {
                return Ok(false);
            };
            let (done, _) = self
                .request(
                    "POST",
                    &format!("{path}?uploadId={id}"),
                    &[("if-match", NO_SUCH_ETAG)],
                    Bytes::from(complete_body(&[etag.to_string()])),
                )
                .await?;
            let (resp, body) = self.request("GET", path, &[], Bytes::new()).await?;
            let kept = resp.status.as_u16() == 200 && body.as_ref() == b"c";
            Ok::<_, String>(done.status.as_u16() == 412 && kept)
        }
        .await;
        let _ = self
            .request(
                "DELETE",
                &format!("{path}?uploadId={id}"),
                &[],
                Bytes::new(),
            )
            .await;
        outcome
    }
}
