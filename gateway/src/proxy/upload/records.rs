//! ListMultipartUploads on encrypting buckets, and the upload records that
//! make it answer the gateway's tokens (`filters::s3::multipart::upload_records`):
//! written once a Create was answered, removed once the upload completed
//! or was aborted, read for every listing. Recording and removing run
//! after the response is written and before the connection serves its
//! next request; a failure is logged and leaves that upload listed with
//! the backend's id (which Abort accepts), never a wrong token.

use std::collections::HashMap;

use pingora::proxy::Session;
use sealgate_filters::s3::body::chunked::probe::PROBE_PREFIX;
use sealgate_filters::s3::multipart::upload_records::{
    cap_max_uploads, is_record_key, parse_upload_page, record_keys, record_prefix, recorded_tokens,
    rewrite_upload_list, RECORD_PREFIX,
};
use sealgate_filters::s3::{uri, Operation, S3Error, S3ErrorCode};

use crate::proxy::response::{ResponseBody, WholeRewrite};
use crate::proxy::{Create, Ctx, Gateway, Op};
use crate::upstream::encode_key;

/// Most pages of records read in bulk for one listing (1,000 uploads a
/// page).
const MAX_RECORD_PAGES: usize = 10;

/// Uploads a listing page answers when the bulk read did not hold every
/// record (a bucket with more unfinished uploads than that): each one
/// without a record among those read is looked up by itself, so a client
/// that opens many uploads cannot push another's out of a listing.
const LOOKUP_PAGE: usize = 100;

/// Largest ListMultipartUploads page read from the backend.
const MAX_UPLOAD_PAGE: usize = 4 * 1024 * 1024;

/// Largest answer read to a record's Create or Abort.
const MAX_RECORD_ANSWER: usize = 64 * 1024;

impl Gateway {
    /// Keys under the records' prefix are the gateway's in encrypting
    /// buckets; a ListMultipartUploads there reads the bucket's records
    /// before the real listing goes upstream.
    pub(in crate::proxy) async fn prepare_uploads(&self, ctx: &mut Ctx) -> Result<(), S3Error> {
        if let Some(key) = &ctx.audit.key {
            self.refuse_reserved(ctx.audit.policy.is_some(), key)?;
        }
        if !matches!(ctx.op, Op::ListUploads(_)) {
            return Ok(());
        }
        let Some(bucket) = ctx.route.bucket.clone() else {
            return Ok(());
        };
        let unreachable = |e: String| {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "reading upload records failed");
            S3Error::new(
                S3ErrorCode::ServiceUnavailable,
                "the storage backend could not be reached; retry",
            )
        };
        let (keys, all) = self
            .list_upload_keys(&bucket, RECORD_PREFIX, MAX_RECORD_PAGES)
            .await
            .map_err(unreachable)?;
        let mut found = recorded_tokens(keys.iter().map(|(k, _)| k.as_str()));
        if !all {
            let route = &mut ctx.route;
            route.upstream_path_and_query =
                cap_max_uploads(&route.upstream_path_and_query, LOOKUP_PAGE);
            self.look_up_records(
                &bucket,
                &route.upstream_host,
                &route.upstream_path_and_query,
                &mut found,
            )
            .await
            .map_err(unreachable)?;
        }
        ctx.op = Op::ListUploads(found);
        Ok(())
    }

    /// Reads the page the client's listing will answer and adds the records
    /// of its uploads that `found` lacks, one upload at a time. (An upload
    /// begun between this read and the listing is answered with the
    /// backend's id, as when its record could not be written.)
    async fn look_up_records(
        &self,
        bucket: &str,
        host: &str,
        path_and_query: &str,
        found: &mut HashMap<String, String>,
    ) -> Result<(), String> {
        let (resp, body) = self
            .backend(Some(bucket))
            .get(host, path_and_query, None, MAX_UPLOAD_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        if resp.status.as_u16() != 200 {
            return Err(format!(
                "reading the listing's page answered {}",
                resp.status
            ));
        }
        let page = parse_upload_page(&body).map_err(|e| e.message)?;
        if page.uploads.len() > LOOKUP_PAGE {
            return Err(format!(
                "the backend answered {} uploads where {LOOKUP_PAGE} were asked",
                page.uploads.len()
            ));
        }
        for (key, id) in &page.uploads {
            if is_record_key(key) || found.contains_key(id) {
                continue;
            }
            let (records, _) = self.list_upload_keys(bucket, &record_prefix(id), 1).await?;
            found.extend(recorded_tokens(records.iter().map(|(k, _)| k.as_str())));
        }
        Ok(())
    }

    /// Keys under the records' prefix are the gateway's in encrypting
    /// buckets: no client request names one (path, copy source, form
    /// field or DeleteObjects list).
    pub(in crate::proxy) fn refuse_reserved(
        &self,
        encrypting: bool,
        key: &str,
    ) -> Result<(), S3Error> {
        if encrypting && looks_reserved(key) {
            return Err(self.refused(
                "reserved",
                S3Error::new(
                    S3ErrorCode::AccessDenied,
                    format!(
                        "keys under {RECORD_PREFIX} and {PROBE_PREFIX} are reserved for the gateway"
                    ),
                ),
            ));
        }
        Ok(())
    }

    /// The listing's body rewrite: tokens for ids, records hidden (the
    /// length changes: streamed chunked).
    pub(in crate::proxy) fn list_uploads_body(
        resp: &mut pingora::http::ResponseHeader,
        tokens: &HashMap<String, String>,
    ) -> ResponseBody {
        resp.remove_header(http::header::CONTENT_LENGTH.as_str());
        let tokens = tokens.clone();
        ResponseBody::Whole(WholeRewrite::new(move |xml: &str| {
            rewrite_upload_list(xml, &tokens).unwrap_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InternalError,
                    "the backend's upload list could not be read",
                )
                .to_xml("", "")
            })
        }))
    }

    /// After the response: records a new upload's token, or removes the
    /// records of an upload that completed or was aborted.
    pub(in crate::proxy) async fn keep_upload_records(&self, session: &Session, ctx: &Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let Some(bucket) = ctx.route.bucket.as_deref() else {
            return;
        };
        let result = match (&ctx.op, &ctx.response_body) {
            (Op::Create(Create::Ready(_)), Some(ResponseBody::UploadId(rewrite)))
                if status == 200 =>
            {
                let Some((upload_id, token)) = rewrite.issued() else {
                    return;
                };
                self.record_upload(bucket, upload_id, token).await
            }
            // A retry answered by the gateway: its records went with the
            // first Complete.
            (Op::Complete(plan), _) if status == 200 && plan.completed.is_none() => {
                self.forget_if_gone(bucket, ctx, &plan.token.upload_id)
                    .await
            }
            (Op::PassThrough, _)
                if status == 204 && ctx.audit.operation == Operation::AbortMultipartUpload =>
            {
                match &ctx.route.upload_token {
                    Some(t) => self.forget_upload(bucket, &t.upload_id).await,
                    None => return,
                }
            }
            _ => return,
        };
        if let Err(e) = result {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "keeping the upload record failed");
        }
    }

    async fn record_upload(
        &self,
        bucket: &str,
        upload_id: &str,
        token: &str,
    ) -> Result<(), String> {
        for key in record_keys(upload_id, token) {
            let path = self.object_path(bucket, &key);
            let (resp, _) = self
                .backend(Some(bucket))
                .request(
                    "POST",
                    &path.0,
                    &format!("{}?uploads", path.1),
                    &[],
                    Default::default(),
                    MAX_RECORD_ANSWER,
                )
                .await
                .map_err(|e| e.to_string())?;
            if !resp.status.is_success() {
                return Err(format!("recording the upload answered {}", resp.status));
            }
        }
        Ok(())
    }

    /// Removes the records once the backend no longer has the upload (a
    /// Complete may answer 200 with an error document).
    async fn forget_if_gone(&self, bucket: &str, ctx: &Ctx, upload_id: &str) -> Result<(), String> {
        let Some(key) = ctx.audit.key.as_deref() else {
            return Ok(());
        };
        let (host, path) = self.object_path(bucket, key);
        let (resp, _) = self
            .backend(Some(bucket))
            .get(
                &host,
                &format!("{path}?max-parts=1&uploadId={}", uri::encode(upload_id)),
                None,
                MAX_UPLOAD_PAGE,
            )
            .await
            .map_err(|e| e.to_string())?;
        if resp.status.as_u16() != 404 {
            return Ok(());
        }
        self.forget_upload(bucket, upload_id).await
    }

    async fn forget_upload(&self, bucket: &str, upload_id: &str) -> Result<(), String> {
        for (key, id) in self
            .list_upload_keys(bucket, &record_prefix(upload_id), 1)
            .await?
            .0
        {
            if !is_record_key(&key) {
                continue;
            }
            let (host, path) = self.object_path(bucket, &key);
            self.backend(Some(bucket))
                .request(
                    "DELETE",
                    &host,
                    &format!("{path}?uploadId={}", uri::encode(&id)),
                    &[],
                    Default::default(),
                    MAX_RECORD_ANSWER,
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Keys and ids of the bucket's unfinished uploads under `prefix`, at
    /// most `max_pages` pages, and whether that was all of them.
    async fn list_upload_keys(
        &self,
        bucket: &str,
        prefix: &str,
        max_pages: usize,
    ) -> Result<(Vec<(String, String)>, bool), String> {
        let (host, path) = self.backend(Some(bucket)).address(Some(bucket), None);
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        for _ in 0..max_pages {
            let mut query = format!("{path}?uploads&prefix={}", uri::encode(prefix));
            if let Some((key, id)) = &marker {
                query.push_str(&format!(
                    "&key-marker={}&upload-id-marker={}",
                    uri::encode(key),
                    uri::encode(id)
                ));
            }
            let (resp, body) = self
                .backend(Some(bucket))
                .get(&host, &query, None, MAX_UPLOAD_PAGE)
                .await
                .map_err(|e| e.to_string())?;
            if resp.status.as_u16() != 200 {
                return Err(format!("listing upload records answered {}", resp.status));
            }
            let page = parse_upload_page(&body).map_err(|e| e.message)?;
            out.extend(page.uploads);
            match page.next {
                Some(next) => marker = Some(next),
                None => return Ok((out, true)),
            }
        }
        Ok((out, false))
    }

    /// Host and path of `key` in `bucket` at the backend.
    fn object_path(&self, bucket: &str, key: &str) -> (String, String) {
        self.backend(Some(bucket))
            .address(Some(bucket), Some(&encode_key(key)))
    }
}

/// Does `key` name the records' prefix or the stored-checksum probe's, as
/// written or as a backend mapping keys to file paths reads it?
pub(crate) fn looks_reserved(key: &str) -> bool {
    let reserved = |k: &str| is_record_key(k) || k.starts_with(PROBE_PREFIX);
    reserved(key) || reserved(&as_a_path(key))
}

/// A key as a backend mapping keys to file paths reads it: `\` as `/`,
/// empty segments dropped (`.sealgate//uploads/x` is `.sealgate/uploads/x`
/// there; `.` and `..` segments are refused before this is asked).
fn as_a_path(key: &str) -> String {
    key.split(['/', '\\'])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
        + if key.ends_with(['/', '\\']) { "/" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The finding: with empty segments allowed in keys, `.sealgate//uploads/x`
    /// passed the prefix check and is `.sealgate/uploads/x` on a path backend.
    #[test]
    fn record_keys_are_found_however_spelled() {
        for key in [
            ".sealgate/uploads/x",
            ".sealgate/probe/x",
            ".sealgate//probe/x",
            ".sealgate//uploads/x",
            ".sealgate\\uploads\\x",
            ".sealgate/uploads//",
        ] {
            assert!(looks_reserved(key), "{key}");
        }
        for key in [
            "sealgate/uploads/x",
            ".sealgate/upload/x",
            "a/.sealgate/uploads/x",
        ] {
            assert!(!looks_reserved(key), "{key}");
        }
    }
}
