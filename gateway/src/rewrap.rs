//! `sealgate rewrap`: moves every encrypted object of a bucket (under a
//! prefix) to another key provider or key by re-wrapping its data key and
//! copying the object onto itself with the new envelope. No object data
//! passes through the gateway: single objects by one server-side copy,
//! multipart objects by part copies whose ranges are the stored parts, so
//! every stored byte and the part count (which listings need) stay as they
//! are. Objects already under the target key are skipped, so an
//! interrupted run is finished by running it again.

use std::time::Duration;

use bytes::Bytes;
use sealgate_config::Config;
use sealgate_envelope::multipart::{PartHeader, PART_HEADER_LEN};
use sealgate_envelope::{Backend, EnvelopeMeta, ObjectKey};
use sealgate_filters::keys::KeyProvider;
use sealgate_filters::policy;
use sealgate_filters::rewrap::{
    complete_body, copy_headers, element_text, is_result, parse_list_page, part_ranges, Summary,
};
use sealgate_filters::s3::uri;

use crate::keys::Providers;
use crate::upstream::{encode_key, UpstreamTarget};

/// Largest listing page or copy answer read.
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// Pause between attempts when the backend answers a copy with 503.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Attempts per request before an object counts as failed.
const ATTEMPTS: usize = 3;

/// What to move and where.
pub struct RewrapOptions {
    /// The bucket as clients name it (an alias is resolved).
    pub bucket: String,
    pub prefix: Option<String>,
    /// The provider to move to (default: the bucket's policy's).
    pub to_provider: Option<String>,
    /// The key to move to (default: the bucket's key or the provider's default).
    pub to_key: Option<String>,
    /// Report what would move, change nothing.
    pub dry_run: bool,
    /// Stop after moving this many objects.
    pub limit: Option<u64>,
}

/// Runs a rewrap to completion; progress lines go to stderr.
pub fn rewrap(config: &Config, opts: &RewrapOptions) -> Result<Summary, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run(config, opts))
}

struct Target<'a> {
    upstream: UpstreamTarget,
    providers: Providers,
    host: String,
    real: String,
    /// The bucket's path prefix upstream (`/bucket` path style, or empty).
    bucket_path: String,
    provider_name: &'a str,
    key_id: String,
    /// The target key as objects record it (KMS: its ARN).
    canonical: String,
}

/// The bucket's own key as objects record it, for the policy check.
async fn canonical_default(
    provider: &std::sync::Arc<dyn KeyProvider>,
    enc: &policy::BucketEncryption,
) -> String {
    let own = enc
        .key_id
        .clone()
        .unwrap_or_else(|| provider.default_key_id().to_string());
    let canonical = provider.canonical_key_id(&own).await.unwrap_or(own);
    provider.binding_key_id(&canonical)
}

async fn run(config: &Config, opts: &RewrapOptions) -> Result<Summary, String> {
    let resolved = config
        .resolve_bucket(&opts.bucket)
        .ok_or_else(|| format!("{} is an alias's real name: name the alias", opts.bucket))?;
    let enc = policy::for_bucket(config, &resolved.name);
    let provider_name = opts
        .to_provider
        .as_deref()
        .or(enc.as_ref().map(|e| e.provider.as_str()))
        .ok_or_else(|| {
            format!(
                "bucket {} has no key provider: give --to-provider",
                opts.bucket
            )
        })?;
    let providers = Providers::from_config(config, None).await?;
    let provider = providers
        .get(provider_name)
        .ok_or_else(|| format!("no key provider named {provider_name}"))?
        .clone();
    let key_id = match (&opts.to_key, &enc) {
        (Some(k), _) => k.clone(),
        (None, Some(e)) if e.provider == provider_name => e
            .key_id
            .clone()
            .unwrap_or_else(|| provider.default_key_id().to_string()),
        _ => provider.default_key_id().to_string(),
    };
    let canonical = provider
        .canonical_key_id(&key_id)
        .await
        .map_err(|e| format!("the target key {key_id}: {e}"))?;
    let upstream = UpstreamTarget::new(&config.upstream)
        .await
        .map_err(|e| e.to_string())?;
    let (host, root) = upstream.address(Some(&resolved.real), None);
    let bucket_path = root.trim_end_matches('/').to_string();
    // Moving objects the bucket's policy would then refuse to read makes
    // them unreadable: the policy must accept the target first.
    if let Some(e) = &enc {
        let probe_ctx = e.context.clone();
        if e.check_stored(
            &canonical_default(&provider, e).await,
            provider_name,
            &provider.binding_key_id(&canonical),
            &probe_ctx,
        )
        .is_err()
        {
            return Err(format!(
                "bucket {}'s policy does not read objects under {provider_name} key {key_id}: point its policy at that provider and key first (listing the current one under readable_providers or readable_key_ids while the move runs)",
                opts.bucket
            ));
        }
    }
    let target = Target {
        upstream,
        providers,
        host,
        bucket_path,
        real: resolved.real.clone(),
        provider_name,
        key_id,
        canonical,
    };
    eprintln!(
        "rewrap {} ({}){}: to {} key {}{}",
        opts.bucket,
        resolved.real,
        opts.prefix
            .as_deref()
            .map(|p| format!(" prefix {p}"))
            .unwrap_or_default(),
        provider_name,
        target.canonical,
        if opts.dry_run { " (dry run)" } else { "" }
    );
    let mut summary = Summary::default();
    let mut token: Option<String> = None;
    let mut seen = 0u64;
    loop {
        let mut query = vec!["list-type=2".to_string(), "encoding-type=url".to_string()];
        if let Some(p) = &opts.prefix {
            query.push(format!("prefix={}", uri::encode(p)));
        }
        if let Some(t) = &token {
            query.push(format!("continuation-token={}", uri::encode(t)));
        }
        let (resp, body) = target
            .request(
                "GET",
                &format!("{}/?{}", target.bucket_path, query.join("&")),
                &[],
                Bytes::new(),
            )
            .await?;
        if resp.status.as_u16() != 200 {
            return Err(format!("listing {} failed: {}", target.real, resp.status));
        }
        let page = parse_list_page(&body).map_err(|e| format!("listing: {e}"))?;
        for object in page.objects {
            seen += 1;
            match target.one(&object.key, opts.dry_run).await {
                Ok(Outcome::Moved) => {
                    summary.moved += 1;
                    eprintln!("[{seen}] {} moved", object.key);
                }
                Ok(Outcome::Already) => summary.already += 1,
                Ok(Outcome::Plaintext) => summary.plaintext += 1,
                Err(e) => {
                    summary.failed += 1;
                    eprintln!("[{seen}] {} FAILED: {e}", object.key);
                }
            }
            if opts.limit.is_some_and(|l| summary.moved >= l) {
                return Ok(summary);
            }
        }
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(summary),
        }
    }
}

enum Outcome {
    Moved,
    Already,
    Plaintext,
}

impl Target<'_> {
    async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(pingora::http::ResponseHeader, Bytes), String> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match self
                .upstream
                .request(
                    method,
                    &self.host,
                    path_and_query,
                    headers,
                    body.clone(),
                    MAX_ANSWER,
                )
                .await
            {
                Ok((resp, body)) if resp.status.as_u16() != 503 => return Ok((resp, body)),
                Ok((resp, _)) => last = format!("{method} answered {}", resp.status),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Err(last)
    }

    /// Moves one object, or says why not.
    async fn one(&self, key: &str, dry_run: bool) -> Result<Outcome, String> {
        let path = format!("{}/{}", self.bucket_path, encode_key(key));
        let (head, _) = self.request("HEAD", &path, &[], Bytes::new()).await?;
        if head.status.as_u16() != 200 {
            return Err(format!("HEAD answered {}", head.status));
        }
        let mut stored: Vec<(&str, &str)> = Vec::with_capacity(head.headers.len());
        for (n, v) in head.headers.iter() {
            match v.to_str() {
                Ok(v) => stored.push((n.as_str(), v)),
                // A copy that replaces metadata would drop it silently.
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
        let Some(meta) = EnvelopeMeta::from_headers(get).map_err(|e| e.to_string())? else {
            return Ok(Outcome::Plaintext);
        };
        let target = self
            .providers
            .get(self.provider_name)
            .ok_or("the target provider is not configured")?;
        // Under the target key: the very id, or (a target that names no
        // version of a versioned key) any version of it.
        let under_target = meta.key_id == self.canonical
            || (target.binding_key_id(&self.canonical) == self.canonical
                && target.binding_key_id(&meta.key_id) == self.canonical);
        if meta.provider == self.provider_name
            && under_target
            && target.is_current_wrap(&meta.wrapped_dek)
        {
            return Ok(Outcome::Already);
        }
        if dry_run {
            return Ok(Outcome::Moved);
        }
        let etag = get("etag").ok_or("the object has no ETag")?.to_string();
        let stored_len: u64 = get("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or("the object has no length")?;
        let new_meta = self.rewrapped(&meta).await?;
        let envelope = new_meta.to_headers().map_err(|e| e.to_string())?;
        let headers = copy_headers(stored.iter().copied(), &envelope);
        let source = format!("/{}/{}", self.real, encode_key(key));
        if meta.multipart {
            self.copy_parts(&path, &source, &etag, stored_len, &headers)
                .await?;
        } else {
            let mut h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            h.push(("x-amz-copy-source", &source));
            h.push(("x-amz-copy-source-if-match", &etag));
            let (resp, body) = self.request("PUT", &path, &h, Bytes::new()).await?;
            if resp.status.as_u16() != 200 || !is_result(&body, "CopyObjectResult") {
                return Err(format!(
                    "the copy answered {}: {}",
                    resp.status,
                    String::from_utf8_lossy(&body)
                ));
            }
        }
        Ok(Outcome::Moved)
    }

    /// The envelope with the data key wrapped under the target key; the
    /// data key is checked against the commitment first.
    async fn rewrapped(&self, meta: &EnvelopeMeta) -> Result<EnvelopeMeta, String> {
        let from = self
            .providers
            .get(&meta.provider)
            .ok_or_else(|| format!("the object's provider {} is not configured", meta.provider))?;
        let dek = from
            .decrypt_data_key(&meta.key_id, &meta.wrapped_dek, &meta.context)
            .await
            .map_err(|e| format!("unwrapping its data key: {e}"))?;
        ObjectKey::derive_checked(
            &dek,
            &meta.salt,
            &meta.context_hash(),
            &meta.commitment,
            Backend::default_backend(),
        )
        .map_err(|_| "its data key does not match its commitment".to_string())?;
        let to: &std::sync::Arc<dyn KeyProvider> = self
            .providers
            .get(self.provider_name)
            .ok_or("the target provider is not configured")?;
        let wrapped = to
            .wrap_data_key(&self.key_id, &dek, &meta.context)
            .await
            .map_err(|e| format!("wrapping under {}: {e}", self.key_id))?;
        Ok(EnvelopeMeta {
            provider: self.provider_name.to_string(),
            key_id: wrapped.key_id,
            wrapped_dek: wrapped.wrapped,
            ..meta.clone()
        })
    }

    /// A multipart object, part by part with its stored part ranges.
    async fn copy_parts(
        &self,
        path: &str,
        source: &str,
        etag: &str,
        stored_len: u64,
        headers: &[(String, String)],
    ) -> Result<(), String> {
        let (probe, first) = self
            .upstream
            .probe(&self.host, path, 0, PART_HEADER_LEN - 1)
            .await
            .map_err(|e| e.to_string())?;
        let header = PartHeader::decode(&first)
            .filter(|h| probe.status.as_u16() == 206 && h.number == 1)
            .ok_or("its first part header is unreadable")?;
        // CreateMultipartUpload does not copy the source's tags: carry them.
        let (tag_resp, tag_body) = self
            .request("GET", &format!("{path}?tagging"), &[], Bytes::new())
            .await?;
        let tagging = (tag_resp.status.as_u16() == 200)
            .then(|| sealgate_filters::rewrap::tagging_header(&tag_body))
            .flatten();
        let up = &self.upstream;
        let layout = up.part_layout(&self.host, path, &header, stored_len, Some(etag));
        let layout = layout
            .await
            .map_err(|e| format!("unreadable parts: {e:?}"))?;
        let ranges = part_ranges(&layout);
        let mut create: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(n, _)| n != "x-amz-metadata-directive")
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if let Some(t) = &tagging {
            create.push(("x-amz-tagging", t));
        }
        let (resp, body) = self
            .request("POST", &format!("{path}?uploads"), &create, Bytes::new())
            .await?;
        let upload_id = element_text(&body, "UploadId")
            .filter(|_| resp.status.as_u16() == 200)
            .ok_or_else(|| format!("starting the part copy answered {}", resp.status))?;
        let id = uri::encode(&upload_id);
        let result = async {
            let mut etags = Vec::with_capacity(ranges.len());
            for (i, (start, end)) in ranges.iter().enumerate() {
                let range = format!("bytes={start}-{end}");
                let h = [
                    ("x-amz-copy-source", source),
                    ("x-amz-copy-source-range", range.as_str()),
                    ("x-amz-copy-source-if-match", etag),
                ];
                let (resp, body) = self
                    .request(
                        "PUT",
                        &format!("{path}?partNumber={}&uploadId={id}", i + 1),
                        &h,
                        Bytes::new(),
                    )
                    .await?;
                let part_etag = element_text(&body, "ETag")
                    .filter(|_| resp.status.as_u16() == 200)
                    .ok_or_else(|| format!("copying part {} answered {}", i + 1, resp.status))?;
                etags.push(part_etag);
            }
            let (resp, body) = self
                .request(
                    "POST",
                    &format!("{path}?uploadId={id}"),
                    &[],
                    Bytes::from(complete_body(&etags)),
                )
                .await?;
            if resp.status.as_u16() != 200 || !is_result(&body, "CompleteMultipartUploadResult") {
                return Err(format!(
                    "completing the part copy answered {}: {}",
                    resp.status,
                    String::from_utf8_lossy(&body)
                ));
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self
                .request(
                    "DELETE",
                    &format!("{path}?uploadId={id}"),
                    &[],
                    Bytes::new(),
                )
                .await;
        }
        result
    }
}
