//! `sealgate rewrap`: moves every encrypted object of a bucket (under a
//! prefix) to another key provider or key by re-wrapping its data key and
//! copying the object onto itself with the new envelope. No object data
//! passes through the gateway: single objects by one server-side copy,
//! multipart objects by part copies whose ranges are the stored parts, so
//! every stored byte and the part count (which listings need) stay as they
//! are. Objects already under the target key are skipped, so an
//! interrupted run is finished by running it again.
//!
//! It changes nothing it may not read: each object is checked against the
//! bucket's policy as a GET would check it before its data key is touched
//! (a refused object fails and stays as it is), and every write is pinned
//! to the ETag the run read, so a client's write during the run wins and
//! the object is reported as changed. Current versions only: noncurrent
//! versions are counted where the backend lists them, never rewritten.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use indicatif::ProgressBar;
use sealgate_config::Config;
use sealgate_envelope::multipart::{PartHeader, PART_HEADER_LEN};
use sealgate_envelope::EnvelopeMeta;
use sealgate_filters::keys::{KeyError, KeyProvider};
use sealgate_filters::ops::rewrap::{
    complete_body, copy_headers, element_text, parse_list_page, parse_versions_page, part_ranges,
    refusal, write_answer, Binding, Summary, WriteAnswer,
};
use sealgate_filters::policy;
use sealgate_filters::s3::uri;

use crate::keys::Providers;
use crate::part_layout::LayoutError;
use crate::upstream::{encode_key, UpstreamTarget};

mod object;
mod parts;

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
    /// The provider of the bucket's policy, which binds stored key ids.
    bucket_provider: Arc<dyn KeyProvider>,
    /// The bucket's policy as its GETs apply it.
    binding: Binding,
}

/// The bucket's policy `enc` as its GETs apply it, with its configured key
/// ids (its own, the allowed and the readable ones) resolved once for the
/// run to the form objects record. An id that cannot be resolved (a deleted
/// alias, no right to describe it) matches nothing and is kept as it is; a
/// provider that could not be asked stops the run before anything moves.
pub(crate) async fn binding_of(
    provider: &Arc<dyn KeyProvider>,
    enc: &policy::BucketEncryption,
) -> Result<Binding, String> {
    let default_key_id = provider.default_key_id().to_string();
    let mut recorded = enc.clone();
    let own = recorded
        .key_id
        .take()
        .unwrap_or_else(|| default_key_id.clone());
    recorded.key_id = Some(recorded_id(provider, own).await?);
    for list in [
        &mut recorded.allowed_key_ids,
        &mut recorded.readable_key_ids,
    ] {
        for id in list.iter_mut() {
            *id = recorded_id(provider, std::mem::take(id)).await?;
        }
    }
    Ok(Binding {
        enc: enc.clone(),
        recorded,
        default_key_id,
    })
}

/// A configured key id in the form objects record it (see [`binding_of`]).
async fn recorded_id(provider: &Arc<dyn KeyProvider>, id: String) -> Result<String, String> {
    match provider.canonical_key_id(&id).await {
        Ok(canonical) => Ok(provider.binding_key_id(&canonical)),
        Err(e @ (KeyError::Unavailable(_) | KeyError::Throttled(_))) => Err(format!(
            "resolving the bucket's key id {id}: {e}; nothing was changed, run again"
        )),
        Err(_) => Ok(id),
    }
}

async fn run(config: &Config, opts: &RewrapOptions) -> Result<Summary, String> {
    let resolved = config
        .resolve_bucket(&opts.bucket)
        .ok_or_else(|| format!("{} is an alias's real name: name the alias", opts.bucket))?;
    let enc = policy::for_bucket(config, &resolved.name).ok_or_else(|| {
        format!(
            "bucket {} has no key provider: the gateway decrypts nothing there, so there is nothing to re-wrap",
            opts.bucket
        )
    })?;
    let provider_name = opts.to_provider.as_deref().unwrap_or(&enc.provider);
    let providers = Providers::from_config(config, None).await?;
    let provider = providers
        .get(provider_name)
        .ok_or_else(|| format!("no key provider named {provider_name}"))?
        .clone();
    let bucket_provider = providers
        .get(&enc.provider)
        .ok_or_else(|| {
            format!(
                "bucket {}'s key provider {} is not configured",
                opts.bucket, enc.provider
            )
        })?
        .clone();
    let key_id = match &opts.to_key {
        Some(k) => k.clone(),
        None if enc.provider == provider_name => enc
            .key_id
            .clone()
            .unwrap_or_else(|| provider.default_key_id().to_string()),
        None => provider.default_key_id().to_string(),
    };
    let canonical = provider
        .canonical_key_id(&key_id)
        .await
        .map_err(|e| format!("the target key {key_id}: {e}"))?;
    let binding = binding_of(&bucket_provider, &enc).await?;
    // Moving objects the bucket's policy would then refuse to read makes
    // them unreadable: the policy must accept the target first.
    if binding
        .check(
            provider_name,
            &canonical,
            &bucket_provider.binding_key_id(&canonical),
            &enc.context,
        )
        .is_err()
    {
        return Err(format!(
            "bucket {}'s policy does not read objects under {provider_name} key {key_id}: point its policy at that provider and key first (listing the current one under readable_providers or readable_key_ids while the move runs)",
            opts.bucket
        ));
    }
    let (backend, setting) = config.upstream_for(&resolved.name);
    let upstream = UpstreamTarget::named(backend, &setting)
        .await
        .map_err(|e| e.to_string())?;
    let (host, root) = upstream.address(Some(&resolved.real), None);
    let bucket_path = root.trim_end_matches('/').to_string();
    let target = Target {
        upstream,
        providers,
        host,
        bucket_path,
        real: resolved.real.clone(),
        provider_name,
        key_id,
        canonical,
        bucket_provider,
        binding,
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
    let mut summary = target.current_versions(opts).await?;
    summary.noncurrent = target.noncurrent(opts.prefix.as_deref()).await;
    Ok(summary)
}

enum Outcome {
    Moved,
    Already,
    Plaintext,
    /// Written or deleted by someone else since the run read it: that
    /// write wins (why, for the progress line).
    Changed(String),
}

/// How a pinned write was answered: `Ok(None)` done, `Ok(Some(why))` lost
/// to another write (the object changed since the run read it), `Err` failed.
fn pinned_answer(
    what: &str,
    resp: &pingora::http::ResponseHeader,
    body: &[u8],
    root: &str,
) -> Result<Option<String>, String> {
    let status = resp.status.as_u16();
    match write_answer(status, body, root) {
        WriteAnswer::Done => Ok(None),
        WriteAnswer::Changed => Ok(Some(format!("{what} answered {}", resp.status))),
        WriteAnswer::Failed => Err(format!(
            "{what} answered {}: {}",
            resp.status,
            String::from_utf8_lossy(body)
        )),
    }
}

/// The value of header `name` of an answer, if it is text.
fn header_value<'h>(resp: &'h pingora::http::ResponseHeader, name: &str) -> Option<&'h str> {
    resp.headers.get(name).and_then(|v| v.to_str().ok())
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

    /// Every current version under the prefix, page by page, until the
    /// listing ends or `--limit` objects moved.
    async fn current_versions(&self, opts: &RewrapOptions) -> Result<Summary, String> {
        let bar = super::spinner()?;
        let summary = self.current_versions_shown(opts, &bar).await;
        bar.finish_and_clear();
        summary
    }

    async fn current_versions_shown(
        &self,
        opts: &RewrapOptions,
        bar: &ProgressBar,
    ) -> Result<Summary, String> {
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
            let (resp, body) = self
                .request(
                    "GET",
                    &format!("{}/?{}", self.bucket_path, query.join("&")),
                    &[],
                    Bytes::new(),
                )
                .await?;
            if resp.status.as_u16() != 200 {
                return Err(format!("listing {} failed: {}", self.real, resp.status));
            }
            let page = parse_list_page(&body).map_err(|e| format!("listing: {e}"))?;
            for object in page.objects {
                seen += 1;
                match self.one(&object.key, opts.dry_run).await {
                    Ok(Outcome::Moved) => {
                        summary.moved += 1;
                        bar.suspend(|| eprintln!("[{seen}] {} moved", object.key));
                    }
                    Ok(Outcome::Already) => summary.already += 1,
                    Ok(Outcome::Plaintext) => summary.plaintext += 1,
                    Ok(Outcome::Changed(why)) => {
                        summary.changed += 1;
                        bar.suspend(|| {
                            eprintln!(
                                "[{seen}] {} changed during the run, skipped: {why}",
                                object.key
                            )
                        });
                    }
                    Err(e) => {
                        summary.failed += 1;
                        bar.suspend(|| eprintln!("[{seen}] {} FAILED: {e}", object.key));
                    }
                }
                bar.inc(1);
                bar.set_message(format!(
                    "{} moved, {} failed",
                    summary.moved, summary.failed
                ));
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

    /// Noncurrent versions under the prefix (ListObjectVersions), which the
    /// run leaves as they are; `None` when the backend does not list them.
    async fn noncurrent(&self, prefix: Option<&str>) -> Option<u64> {
        let mut count = 0;
        let mut next: Option<(String, String)> = None;
        loop {
            let mut query = vec!["versions".to_string(), "encoding-type=url".to_string()];
            if let Some(p) = prefix {
                query.push(format!("prefix={}", uri::encode(p)));
            }
            if let Some((key, version)) = &next {
                query.push(format!("key-marker={}", uri::encode(key)));
                query.push(format!("version-id-marker={}", uri::encode(version)));
            }
            let answer = self
                .request(
                    "GET",
                    &format!("{}/?{}", self.bucket_path, query.join("&")),
                    &[],
                    Bytes::new(),
                )
                .await;
            let (resp, body) = match answer {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("counting noncurrent versions: {e}");
                    return None;
                }
            };
            // Not implemented (501, or 400/404 on some backends).
            if resp.status.as_u16() != 200 {
                return None;
            }
            let page = match parse_versions_page(&body) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("counting noncurrent versions: {e}");
                    return None;
                }
            };
            count += page.noncurrent;
            match page.next {
                Some(n) => next = Some(n),
                None => return Some(count),
            }
        }
    }
}
