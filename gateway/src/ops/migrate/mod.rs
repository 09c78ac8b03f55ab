//! `sealgate migrate`: encrypts the plaintext objects of a bucket (under a
//! prefix) in place, talking to the backend directly with the gateway's
//! configuration and envelope code, so it works while the fleet is down.
//!
//! Each object streams from the backend through the bucket's encryption
//! and back (memory stays flat for any size), keeping its user metadata,
//! content type and cache headers, its tags, and for a multipart object
//! its part count and part sizes (each part encrypted as the gateway
//! encrypts an UploadPart). Nothing counts as done before the object was
//! read back through the envelope code (its data key unwrapped by the key
//! provider, every frame opened) and its plaintext hashed equal to what
//! was read.
//!
//! A client's write during the run wins. Every read of the source is
//! pinned to the ETag its HEAD gave (`If-Match`, and the answer's ETag
//! compared); the write that replaces it is conditional on that ETag where
//! the backend enforces `If-Match` on writes (probed once per run under
//! the reserved `.sealgate/probe/` prefix: AWS S3 does, Garage 2 and
//! RGW 16 do not). Where it does not, the ciphertext is written first
//! where no client sees it (a staged object, or the parts of an upload not
//! yet completed), checked, and only then put in place by one short
//! request right after the object's ETag was checked again: a client
//! write can then be lost only if it lands within that one round trip
//! (docs/OPERATIONS.md). Objects already encrypted are skipped, so an
//! interrupted run is finished by running it again.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sealgate_config::Config;
use sealgate_filters::keys::KeyProvider;
use sealgate_filters::ops::migrate::{Outcome, Summary};
use sealgate_filters::ops::rewrap::parse_list_page;
use sealgate_filters::policy::{self, BucketEncryption};
use sealgate_filters::s3::body::checksum::ChecksumAlgorithm;
use sealgate_filters::s3::uri;
use tokio::task::JoinSet;

use crate::keys::Providers;
use crate::upstream::UpstreamTarget;

mod io;
mod object;
mod parts;
mod probe;

/// Largest listing page or answer read whole.
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// Attempts per request before an object counts as failed.
const ATTEMPTS: usize = 3;
/// Pause between attempts when the backend fails.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Objects migrated at once unless `--concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Most objects migrated at once (each holds two backend connections).
pub const MAX_CONCURRENCY: usize = 64;

/// What to migrate.
pub struct MigrateOptions {
    /// The bucket as clients name it (an alias is resolved).
    pub bucket: String,
    pub prefix: Option<String>,
    /// Report what would be encrypted, change nothing.
    pub dry_run: bool,
    /// Objects migrated at once.
    pub concurrency: usize,
    /// One JSON line per object acted on, then a summary line.
    pub json: bool,
}

/// The outcome: the tally, and why the run stopped early, if it did.
pub struct Migrated {
    pub summary: Summary,
    pub stopped: Option<String>,
}

/// Runs a migration to its end; objects are reported to `out` as they finish.
pub fn migrate(
    config: &Config,
    opts: &MigrateOptions,
    out: &mut dyn Write,
) -> Result<Migrated, String> {
    if opts.concurrency == 0 || opts.concurrency > MAX_CONCURRENCY {
        return Err(format!(
            "--concurrency must be 1 to {MAX_CONCURRENCY}, not {}",
            opts.concurrency
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run(config, opts, out))
}

/// What every object's migration shares.
pub(super) struct Run {
    upstream: UpstreamTarget,
    host: String,
    /// The bucket's real name upstream.
    real: String,
    /// The bucket's path prefix upstream (`/bucket` path style, or empty).
    bucket_path: String,
    enc: BucketEncryption,
    provider: Arc<dyn KeyProvider>,
    /// The key new data keys are made under.
    key_id: String,
    /// The checksum ciphertext goes up with (as the gateway's writes).
    stored_checksum: Option<ChecksumAlgorithm>,
    /// Whether the backend enforces `If-Match` on PutObject and on
    /// CompleteMultipartUpload.
    conditional: probe::Conditional,
    dry_run: bool,
}

async fn run(
    config: &Config,
    opts: &MigrateOptions,
    out: &mut dyn Write,
) -> Result<Migrated, String> {
    let resolved = config
        .resolve_bucket(&opts.bucket)
        .ok_or_else(|| format!("{} is an alias's real name: name the alias", opts.bucket))?;
    let enc = policy::for_bucket(config, &resolved.name).ok_or_else(|| {
        format!(
            "bucket {} has no key provider: the gateway does not encrypt it, so there is nothing to migrate to",
            opts.bucket
        )
    })?;
    let providers = Providers::from_config(config, None).await?;
    let provider = providers
        .get(&enc.provider)
        .ok_or_else(|| {
            format!(
                "the bucket's key provider {} is not configured",
                enc.provider
            )
        })?
        .clone();
    let key_id = enc
        .key_id
        .clone()
        .unwrap_or_else(|| provider.default_key_id().to_string());
    let (backend, setting) = config.upstream_for(&resolved.name);
    let upstream = UpstreamTarget::named(backend, &setting)
        .await
        .map_err(|e| e.to_string())?;
    let (host, root) = upstream.address(Some(&resolved.real), None);
    let stored_checksum = if opts.dry_run {
        None
    } else {
        upstream.stored_checksum(&resolved.real).await
    };
    let mut run = Run {
        upstream,
        host,
        real: resolved.real.clone(),
        bucket_path: root.trim_end_matches('/').to_string(),
        enc,
        provider,
        key_id,
        stored_checksum,
        conditional: probe::Conditional::default(),
        dry_run: opts.dry_run,
    };
    if !opts.dry_run {
        run.conditional = run.probe_conditional().await?;
    }
    eprintln!(
        "migrate {} ({}){}: to {} key {}; writes {}{}",
        opts.bucket,
        resolved.real,
        opts.prefix
            .as_deref()
            .map(|p| format!(" prefix {p}"))
            .unwrap_or_default(),
        run.enc.provider,
        run.key_id,
        run.conditional.describe(),
        if opts.dry_run { " (dry run)" } else { "" }
    );
    let run = Arc::new(run);
    let bar = super::spinner()?;
    let mut summary = Summary::default();
    let stopped = run
        .clone()
        .objects(opts, out, &bar, &mut summary)
        .await
        .err();
    bar.finish_and_clear();
    if opts.json {
        writeln!(out, "{}", summary.json(opts.dry_run)).map_err(|e| e.to_string())?;
    }
    Ok(Migrated { summary, stopped })
}

impl Run {
    /// A request of the run's own with the gateway's credentials, retried
    /// while the backend answers 5xx or cannot be reached.
    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(pingora::http::ResponseHeader, Bytes), String> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match self
                .upstream
                .request(method, &self.host, path, headers, body.clone(), MAX_ANSWER)
                .await
            {
                // 501 (an operation the backend lacks) is an answer.
                Ok((resp, body)) if !matches!(resp.status.as_u16(), 500 | 502..=504) => {
                    return Ok((resp, body))
                }
                Ok((resp, _)) => last = format!("{method} answered {}", resp.status),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Err(last)
    }

    /// One attempt of a request that puts an object in place: retried, it
    /// would widen the window in which a client's write can be replaced.
    async fn request_once(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(pingora::http::ResponseHeader, Bytes), String> {
        self.upstream
            .request(method, &self.host, path, headers, body, MAX_ANSWER)
            .await
            .map_err(|e| e.to_string())
    }

    /// The upstream path of `key`.
    fn path_of(&self, key: &str) -> String {
        format!("{}/{}", self.bucket_path, crate::upstream::encode_key(key))
    }

    /// Every current object under the prefix, page by page, `concurrency`
    /// at a time.
    async fn objects(
        self: Arc<Self>,
        opts: &MigrateOptions,
        out: &mut dyn Write,
        bar: &indicatif::ProgressBar,
        summary: &mut Summary,
    ) -> Result<(), String> {
        let mut running: JoinSet<(String, Result<Outcome, String>)> = JoinSet::new();
        let mut token: Option<String> = None;
        let report = |done: (String, Result<Outcome, String>),
                      summary: &mut Summary,
                      out: &mut dyn Write|
         -> Result<(), String> {
            let (key, result) = done;
            let line: Option<(&str, Option<String>)> = match &result {
                Ok(outcome) => {
                    summary.add(outcome);
                    match outcome {
                        Outcome::Migrated { .. } => Some(("encrypted", None)),
                        Outcome::WouldMigrate { .. } => Some(("would-encrypt", None)),
                        Outcome::Changed(why) => Some(("changed", Some(why.clone()))),
                        Outcome::Already | Outcome::Reserved => None,
                    }
                }
                Err(e) => {
                    summary.failed += 1;
                    Some(("failed", Some(e.clone())))
                }
            };
            if let Some((what, detail)) = line {
                let text = if opts.json {
                    serde_json::json!({"key": key, "result": what, "detail": detail}).to_string()
                } else {
                    // Escaped: a key's control characters cannot forge
                    // lines or reach the terminal.
                    let detail = detail.map(|d| format!(": {d}")).unwrap_or_default();
                    format!("{what} {}{detail}", key.escape_debug())
                };
                bar.suspend(|| writeln!(out, "{text}"))
                    .map_err(|e| e.to_string())?;
            }
            bar.inc(1);
            bar.set_message(format!(
                "{} encrypted, {} changed, {} failed",
                summary.migrated + summary.would_migrate,
                summary.changed,
                summary.failed
            ));
            Ok(())
        };
        // Whatever stops the run, the objects under way are finished (a
        // dropped task could leave an object written but not read back,
        // which the next run would take for done).
        let mut failure: Option<String> = None;
        // Each task's key, for a task that ends without its result (a panic).
        let mut keys: HashMap<tokio::task::Id, String> = HashMap::new();
        type Joined =
            Result<(tokio::task::Id, (String, Result<Outcome, String>)), tokio::task::JoinError>;
        let take = |joined: Joined,
                    keys: &mut HashMap<tokio::task::Id, String>,
                    summary: &mut Summary,
                    out: &mut dyn Write,
                    failure: &mut Option<String>| {
            let done = match joined {
                Ok((id, done)) => {
                    keys.remove(&id);
                    done
                }
                Err(e) => (
                    keys.remove(&e.id()).unwrap_or_default(),
                    Err(format!("its task ended: {e}")),
                ),
            };
            if let Err(e) = report(done, summary, out) {
                failure.get_or_insert(format!("writing the report: {e}"));
            }
        };
        let listed: Result<(), String> = loop {
            let mut query = vec!["list-type=2".to_string(), "encoding-type=url".to_string()];
            if let Some(p) = &opts.prefix {
                query.push(format!("prefix={}", uri::encode(p)));
            }
            if let Some(t) = &token {
                query.push(format!("continuation-token={}", uri::encode(t)));
            }
            let (resp, body) = match self
                .request(
                    "GET",
                    &format!("{}/?{}", self.bucket_path, query.join("&")),
                    &[],
                    Bytes::new(),
                )
                .await
            {
                Ok(a) => a,
                Err(e) => break Err(e),
            };
            if resp.status.as_u16() != 200 {
                break Err(format!("listing answered {}", resp.status));
            }
            let page = match parse_list_page(&body) {
                Ok(p) => p,
                Err(e) => break Err(format!("listing: {e}")),
            };
            for object in page.objects {
                while running.len() >= opts.concurrency {
                    if let Some(joined) = running.join_next_with_id().await {
                        take(joined, &mut keys, summary, out, &mut failure);
                    }
                }
                if failure.is_some() {
                    break;
                }
                let run = self.clone();
                let key = object.key.clone();
                let task = running.spawn(async move {
                    let result = run.one(&object.key).await;
                    (object.key, result)
                });
                keys.insert(task.id(), key);
            }
            match page.next {
                _ if failure.is_some() => break Ok(()),
                Some(next) if token.as_ref() == Some(&next) => {
                    break Err("the listing named the same continuation token twice".into())
                }
                Some(next) => token = Some(next),
                None => break Ok(()),
            }
        };
        while let Some(joined) = running.join_next_with_id().await {
            take(joined, &mut keys, summary, out, &mut failure);
        }
        listed?;
        failure.map_or(Ok(()), Err)
    }
}
