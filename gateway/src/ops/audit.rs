//! `sealgate audit`: the encryption state of every object of a bucket
//! (under a prefix), read from the backend directly: encrypted (provider,
//! key id, format, the bucket it is bound to), plaintext, an envelope no
//! GET could read, or one the bucket's policy refuses; a summary per key.
//!
//! The listing streams page by page (constant memory for any number of
//! objects) and each object costs one HEAD: no object data is read, and no
//! key provider is asked anything unless `--verify`, which unwraps each
//! distinct wrapped data key once and checks it against each object's
//! commitment (the run then keeps each distinct data key, about a hundred
//! bytes each, until it ends; they are zeroized then). Current versions
//! only: a noncurrent version is not looked at. The body is not read: a
//! single-part object's length must be one a frame stream can have, but an
//! envelope copied onto other bytes of such a length is found only by a GET.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use indicatif::ProgressBar;
use sealgate_config::Config;
use sealgate_envelope::{plaintext_len, Backend, EnvelopeMeta, ObjectKey, DEK_LEN};
use sealgate_filters::keys::{KeyError, KeyProvider};
use sealgate_filters::ops::audit::{json_line, state_of, PolicyCheck, State, Summary};
use sealgate_filters::ops::rewrap::{parse_list_page, Binding};
use sealgate_filters::policy::{self, Unbound};
use sealgate_filters::s3::uri;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::keys::Providers;
use crate::upstream::{encode_key, UpstreamTarget};

/// Largest listing page read.
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// Attempts per request before an object counts as not looked at.
const ATTEMPTS: usize = 3;
/// Pause between attempts when the backend fails.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What to audit.
pub struct AuditOptions {
    /// The bucket as clients name it (an alias is resolved).
    pub bucket: String,
    pub prefix: Option<String>,
    /// One JSON line per object and a summary line, instead of text.
    pub json: bool,
    /// Unwrap each distinct data key once (asks the key providers).
    pub verify: bool,
}

/// The outcome: the summary (of what was looked at), whether the bucket's
/// policy is mandatory, and why the run stopped early, if it did (its
/// findings still count).
pub struct Audited {
    pub summary: Summary,
    pub mandatory: bool,
    pub stopped: Option<String>,
}

/// Runs an audit to its end, objects written to `out` as they are seen.
pub fn audit(config: &Config, opts: &AuditOptions, out: &mut dyn Write) -> Result<Audited, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run(config, opts, out))
}

/// The bucket's policy as its GETs apply it, from the configuration alone
/// (key ids as configured: a KMS alias is not resolved, so an object's key
/// is checked against the policy only with `--verify`).
fn configured_binding(provider: &Arc<dyn KeyProvider>, enc: &policy::BucketEncryption) -> Binding {
    let default_key_id = provider.default_key_id().to_string();
    let mut recorded = enc.clone();
    recorded.key_id = Some(enc.key_id.clone().unwrap_or_else(|| default_key_id.clone()));
    Binding {
        enc: enc.clone(),
        recorded,
        default_key_id,
    }
}

struct Run<'a> {
    upstream: UpstreamTarget,
    host: String,
    bucket_path: String,
    opts: &'a AuditOptions,
    providers: Providers,
    /// The bucket's policy, its provider and binding.
    policy: Option<(policy::BucketEncryption, Arc<dyn KeyProvider>, Binding)>,
    /// `--verify`: each wrapped data key, unwrapped once, by its SHA-256
    /// (zeroized when the run ends).
    verified: HashMap<[u8; 32], Result<Zeroizing<[u8; DEK_LEN]>, String>>,
}

async fn run(config: &Config, opts: &AuditOptions, out: &mut dyn Write) -> Result<Audited, String> {
    let resolved = config
        .resolve_bucket(&opts.bucket)
        .ok_or_else(|| format!("{} is an alias's real name: name the alias", opts.bucket))?;
    let enc = policy::for_bucket(config, &resolved.name);
    let providers = Providers::from_config(config, None).await?;
    let policy = match enc {
        None => None,
        Some(enc) => {
            let provider = providers
                .get(&enc.provider)
                .ok_or_else(|| {
                    format!(
                        "the bucket's key provider {} is not configured",
                        enc.provider
                    )
                })?
                .clone();
            let binding = if opts.verify {
                // Key ids resolved as the gateway resolves them (asks the provider).
                crate::ops::rewrap::binding_of(&provider, &enc).await?
            } else {
                configured_binding(&provider, &enc)
            };
            Some((enc, provider, binding))
        }
    };
    let mandatory = policy.as_ref().is_some_and(|(e, _, _)| e.mandatory);
    let (backend, setting) = config.upstream_for(&resolved.name);
    let upstream = UpstreamTarget::named(backend, &setting)
        .await
        .map_err(|e| e.to_string())?;
    let (host, root) = upstream.address(Some(&resolved.real), None);
    let mut run = Run {
        upstream,
        host,
        bucket_path: root.trim_end_matches('/').to_string(),
        opts,
        providers,
        policy,
        verified: HashMap::new(),
    };
    let bar = super::spinner()?;
    let mut summary = Summary::default();
    let stopped = run.objects(out, &bar, &mut summary).await.err();
    bar.finish_and_clear();
    summary.keys_verified = run.verified.values().filter(|r| r.is_ok()).count() as u64;
    if opts.json {
        writeln!(out, "{}", summary.json(mandatory)).map_err(|e| e.to_string())?;
    }
    Ok(Audited {
        summary,
        mandatory,
        stopped,
    })
}

impl Run<'_> {
    async fn request(
        &self,
        method: &str,
        path: &str,
    ) -> Result<(pingora::http::ResponseHeader, Bytes), String> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match self
                .upstream
                .request(method, &self.host, path, &[], Bytes::new(), MAX_ANSWER)
                .await
            {
                Ok((resp, body)) if resp.status.as_u16() < 500 => return Ok((resp, body)),
                Ok((resp, _)) => last = format!("{method} answered {}", resp.status),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Err(last)
    }

    /// Every current object under the prefix, page by page.
    async fn objects(
        &mut self,
        out: &mut dyn Write,
        bar: &ProgressBar,
        summary: &mut Summary,
    ) -> Result<(), String> {
        let mut token: Option<String> = None;
        loop {
            let mut query = vec!["list-type=2".to_string(), "encoding-type=url".to_string()];
            if let Some(p) = &self.opts.prefix {
                query.push(format!("prefix={}", uri::encode(p)));
            }
            if let Some(t) = &token {
                query.push(format!("continuation-token={}", uri::encode(t)));
            }
            let (resp, body) = self
                .request("GET", &format!("{}/?{}", self.bucket_path, query.join("&")))
                .await?;
            if resp.status.as_u16() != 200 {
                return Err(format!("listing answered {}", resp.status));
            }
            let page = parse_list_page(&body).map_err(|e| format!("listing: {e}"))?;
            for object in page.objects {
                match self.one(&object.key).await {
                    // Deleted since it was listed.
                    Ok(None) => {}
                    Ok(Some(state)) => {
                        summary.add(object.size, &state);
                        let line = if self.opts.json {
                            Some(json_line(&object.key, object.size, &state))
                        } else if !matches!(state, State::Encrypted { .. }) {
                            // Escaped: a key's control characters cannot
                            // forge lines or reach the terminal.
                            Some(format!("{} {}", state.name(), object.key.escape_debug()))
                        } else {
                            None
                        };
                        if let Some(line) = line {
                            bar.suspend(|| writeln!(out, "{line}"))
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    Err(e) => {
                        summary.failed += 1;
                        bar.suspend(|| {
                            eprintln!("{}: not looked at: {e}", object.key.escape_debug())
                        });
                    }
                }
                bar.inc(1);
                bar.set_message(format!(
                    "{} plaintext, {} unreadable or refused",
                    summary.plaintext,
                    summary.unreadable + summary.refused + summary.key_failed
                ));
            }
            match page.next {
                Some(next) if token.as_ref() == Some(&next) => {
                    return Err("the listing named the same continuation token twice".into())
                }
                Some(next) => token = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// One object's state from its HEAD (`None`: deleted since listed).
    async fn one(&mut self, key: &str) -> Result<Option<State>, String> {
        let path = format!("{}/{}", self.bucket_path, encode_key(key));
        let (head, _) = self.request("HEAD", &path).await?;
        match head.status.as_u16() {
            200 => {}
            404 => return Ok(None),
            status => return Err(format!("HEAD answered {status}")),
        }
        let get = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
        let check = self.policy.as_ref().map(|(enc, provider, binding)| {
            let verify = self.opts.verify;
            move |meta: &EnvelopeMeta| {
                let bound = binding.check(
                    &meta.provider,
                    &meta.key_id,
                    &provider.binding_key_id(&meta.key_id),
                    &meta.context,
                );
                match bound {
                    // Configured ids unresolved: only another provider the
                    // policy does not read is known to be refused; the
                    // bucket the object is bound to is checked still (as
                    // if under the bucket's own key).
                    Err(Unbound::Key)
                        if !verify
                            && (meta.provider == enc.provider
                                || enc.readable_providers.contains(&meta.provider)) =>
                    {
                        let own = binding.recorded.key_id.as_deref().unwrap_or_default();
                        binding.check(
                            &enc.provider,
                            own,
                            &provider.binding_key_id(own),
                            &meta.context,
                        )
                    }
                    other => other,
                }
            }
        });
        let (state, meta) = state_of(get, check.as_ref().map(|c| c as PolicyCheck));
        let stored_len: Option<u64> = get("content-length").and_then(|v| v.parse().ok());
        Ok(Some(match (state, meta) {
            // A single-part body's length is one a frame stream can have, or
            // no GET decrypts it (an envelope copied onto other bytes).
            (State::Encrypted { .. }, Some(meta))
                if !meta.multipart && stored_len.is_some_and(|n| plaintext_len(n).is_none()) =>
            {
                State::Unreadable("its length is no encrypted body's".into())
            }
            (state @ State::Encrypted { .. }, Some(meta)) if self.opts.verify => {
                match self.verify(&meta).await? {
                    Ok(()) => state,
                    Err(reason) => State::KeyFailed {
                        provider: meta.provider,
                        key_id: meta.key_id,
                        reason,
                    },
                }
            }
            (state, _) => state,
        }))
    }

    /// Unwraps the object's data key (once per distinct wrapped key under
    /// its provider, key id and context) and checks it against the
    /// object's own commitment. `Err`: the provider could not answer (the
    /// object is not looked at, and the next one asks again).
    async fn verify(&mut self, meta: &EnvelopeMeta) -> Result<Result<(), String>, String> {
        let mut h = Sha256::new();
        for part in [meta.provider.as_bytes(), meta.key_id.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update(meta.context_hash());
        h.update(&meta.wrapped_dek);
        let id: [u8; 32] = h.finalize().into();
        if !self.verified.contains_key(&id) {
            let dek = match self.providers.get(&meta.provider) {
                None => Err(format!("its provider {} is not configured", meta.provider)),
                Some(p) => match p
                    .decrypt_data_key(&meta.key_id, &meta.wrapped_dek, &meta.context)
                    .await
                {
                    Ok(dek) => Ok(dek),
                    Err(e @ (KeyError::Unavailable(_) | KeyError::Throttled(_))) => {
                        return Err(format!("unwrapping its data key: {e}"))
                    }
                    Err(e) => Err(format!("unwrapping its data key: {e}")),
                },
            };
            self.verified.insert(id, dek);
        }
        let dek = match &self.verified[&id] {
            Ok(dek) => dek,
            Err(e) => return Ok(Err(e.clone())),
        };
        Ok(ObjectKey::derive_checked(
            dek,
            &meta.salt,
            &meta.context_hash(),
            &meta.commitment,
            Backend::default_backend(),
        )
        .map(|_| ())
        .map_err(|_| "its data key does not match its commitment".to_string()))
    }
}
