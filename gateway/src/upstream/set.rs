//! Every backend the gateway talks to: `storage.s3`'s, and the backends of
//! buckets that have their own (`bucket_configs.<b>.endpoint`, `.region`,
//! ...). A request goes to its bucket's; buckets whose settings are the
//! same share one target (one pool, one probe finding), so "same target"
//! is "the backend can copy between them".

use std::collections::HashMap;
use std::sync::Arc;

use sealgate_config::{Config, Upstream};

use super::{UpstreamError, UpstreamTarget};

/// The targets, fixed for the process (they change only on restart).
pub struct Upstreams {
    default: Arc<UpstreamTarget>,
    /// Real bucket name -> its own backend.
    by_bucket: HashMap<String, Arc<UpstreamTarget>>,
}

impl Upstreams {
    /// Resolves every configured endpoint now (a name that does not
    /// resolve refuses the start, naming its setting).
    pub async fn new(config: &Config) -> Result<Self, UpstreamError> {
        let elsewhere = config
            .bucket_backends()
            .into_iter()
            .filter(|(_, u)| !u.same_backend(&config.upstream))
            .map(|(real, _)| real.to_string())
            .collect();
        let default = Arc::new(
            UpstreamTarget::new(&config.upstream)
                .await?
                .with_elsewhere(elsewhere),
        );
        let mut made: Vec<(&Upstream, Arc<UpstreamTarget>)> =
            vec![(&config.upstream, default.clone())];
        let mut by_bucket = HashMap::new();
        for (alias, bucket) in &config.buckets {
            let Some(cfg) = &bucket.backend else {
                continue;
            };
            let real = bucket.real_name.as_deref().unwrap_or(alias);
            let target = match made.iter().find(|(u, _)| u.same_backend(cfg)) {
                Some((_, t)) => t.clone(),
                None => {
                    let setting = format!("storage.s3.bucket_configs.{alias}");
                    let t = Arc::new(UpstreamTarget::named(cfg, &setting).await?);
                    made.push((cfg, t.clone()));
                    t
                }
            };
            by_bucket.insert(real.to_string(), target);
        }
        Ok(Self { default, by_bucket })
    }

    /// Only `storage.s3`'s backend.
    #[cfg(test)]
    pub fn single(target: Arc<UpstreamTarget>) -> Self {
        Self {
            default: target,
            by_bucket: HashMap::new(),
        }
    }

    /// The backend of an upstream (real) bucket; `storage.s3`'s for
    /// requests that name none (ListBuckets).
    pub fn of(&self, real_bucket: Option<&str>) -> &Arc<UpstreamTarget> {
        real_bucket
            .and_then(|b| self.by_bucket.get(b))
            .unwrap_or(&self.default)
    }

    /// `storage.s3`'s backend.
    pub fn default_target(&self) -> &Arc<UpstreamTarget> {
        &self.default
    }

    /// Each distinct target once, `storage.s3`'s first, with a bucket it
    /// serves (`None` for `storage.s3`'s).
    pub fn distinct(&self) -> Vec<(Option<&str>, &Arc<UpstreamTarget>)> {
        let mut out: Vec<(Option<&str>, &Arc<UpstreamTarget>)> = vec![(None, &self.default)];
        let mut names: Vec<&String> = self.by_bucket.keys().collect();
        names.sort();
        for name in names {
            let t = &self.by_bucket[name];
            if !out.iter().any(|(_, seen)| Arc::ptr_eq(seen, t)) {
                out.push((Some(name.as_str()), t));
            }
        }
        out
    }
}
