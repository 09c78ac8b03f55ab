//! Data-key caching in front of any key provider (DESIGN §5).
//!
//! - Encrypt cache: (key id, context) -> a data key reused for new objects
//!   for `data_key_cache_ttl` and at most [`MAX_OBJECTS_PER_DATA_KEY`]
//!   objects. Reuse is safe because no object is encrypted under the data
//!   key itself: each derives its own key from it with a fresh 256-bit salt.
//! - Decrypt cache: (key id, wrapped key, context) -> the unwrapped key,
//!   for the same time, seeded by the encrypt side (a read after a write
//!   needs no provider call).
//! - Concurrent misses for one entry make one provider call (single
//!   flight); a cached key keeps serving while the provider is down, until
//!   it expires.
//! - Refresh ahead: the first use of an encrypt entry past
//!   [`REFRESH_AFTER_PERCENT`] of its TTL asks for the next data key in the
//!   background while the current one keeps serving, so a steady stream of
//!   PUTs does not wait on a healthy provider at each expiry (a failed
//!   refresh, or a provider slower than the rest of the TTL, falls back to
//!   a miss at expiry).
//! - Entries hold keys in zeroizing buffers: an evicted or expired key is
//!   wiped once its last user drops it.
//!
//! The metrics and the logging of provider calls are in `metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use sealgate_filters::keys::{DataKey, KeyError, KeyProvider, DEK_LEN};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

mod metrics;
pub use metrics::KeyMetrics;

/// Objects encrypted under one cached data key before a fresh one is asked
/// for (the AWS Encryption SDK's default message limit per data key).
pub const MAX_OBJECTS_PER_DATA_KEY: u64 = 1 << 32;
/// Entries per cache (each holds one 32-byte key and its wrapped form).
const MAX_ENTRIES: usize = 10_000;
/// Longest TTL kept: a configured value beyond it (which the duration
/// parser accepts up to `u64::MAX` seconds) is a year.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Share of an encrypt entry's TTL after which its next use starts one
/// background refresh (one more provider call per TTL for a key in use,
/// none for an idle one).
pub const REFRESH_AFTER_PERCENT: u32 = 80;

type EncryptKey = (String, BTreeMap<String, String>);

/// An [`EncryptKey`] by reference: a warm PUT finds its data key without
/// copying the key id and context into a new key first. Hashes exactly as
/// the owned tuple does (`String` as `str`, then the map).
#[derive(Hash)]
struct EncryptLookup<'a>(&'a str, &'a BTreeMap<String, String>);

impl quick_cache::Equivalent<EncryptKey> for EncryptLookup<'_> {
    fn equivalent(&self, key: &EncryptKey) -> bool {
        self.0 == key.0 && *self.1 == key.1
    }
}

/// A data key kept for new objects.
struct Issued {
    plaintext: Zeroizing<[u8; DEK_LEN]>,
    wrapped: Vec<u8>,
    key_id: String,
    expires: Instant,
    uses: AtomicU64,
    /// From here on, a use starts the refresh (once: `refreshing`).
    refresh_at: Instant,
    refreshing: AtomicBool,
}

impl Issued {
    fn new(key: &DataKey, ttl: Duration) -> Self {
        let now = Instant::now();
        // The last fifth of the TTL, in a form that cannot overflow.
        let ahead = ttl / 100 * (100 - REFRESH_AFTER_PERCENT);
        Self {
            plaintext: key.plaintext.clone(),
            wrapped: key.wrapped.clone(),
            key_id: key.key_id.clone(),
            expires: now + ttl,
            uses: AtomicU64::new(1),
            refresh_at: now + ttl.saturating_sub(ahead),
            refreshing: AtomicBool::new(false),
        }
    }
}

/// An unwrapped data key kept for reads.
struct Unwrapped {
    plaintext: Zeroizing<[u8; DEK_LEN]>,
    expires: Instant,
}

/// A key provider with data-key caches in front. Clones share the caches
/// (a background refresh holds one).
#[derive(Clone)]
pub struct CachingProvider {
    inner: Arc<dyn KeyProvider>,
    ttl: Duration,
    /// `logging.kms_operations`: every call and cache answer at debug.
    log_calls: bool,
    /// Calls, latency and cache metrics, where there is a registry.
    metrics: Option<KeyMetrics>,
    /// The cache-hit counters of GenerateDataKey and Decrypt, resolved once:
    /// every encrypted PUT and GET counts one.
    hits: Option<[prometheus::IntCounter; 2]>,
    encrypt: Arc<Cache<EncryptKey, Arc<Issued>>>,
    decrypt: Arc<Cache<[u8; 32], Arc<Unwrapped>>>,
}

/// The decrypt cache's key: a hash of everything the unwrap depends on.
fn unwrap_id(key_id: &str, wrapped: &[u8], context: &BTreeMap<String, String>) -> [u8; 32] {
    let mut h = Sha256::new();
    for field in [key_id.as_bytes(), wrapped] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    for (k, v) in context {
        for field in [k.as_bytes(), v.as_bytes()] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field);
        }
    }
    h.finalize().into()
}

impl CachingProvider {
    /// Wraps `inner`; a zero `ttl` turns caching off.
    pub fn new(inner: Arc<dyn KeyProvider>, ttl: Duration, log_calls: bool) -> Self {
        Self {
            inner,
            // A TTL past any clock's reach would overflow `Instant` arithmetic.
            ttl: ttl.min(MAX_TTL),
            log_calls,
            metrics: None,
            hits: None,
            encrypt: Arc::new(Cache::new(MAX_ENTRIES)),
            decrypt: Arc::new(Cache::new(MAX_ENTRIES)),
        }
    }

    /// The cached data key for one more object, unless it expired or was
    /// used up; past its refresh point, the first use starts the refresh.
    fn issue(
        &self,
        entry: &Arc<Issued>,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Option<DataKey> {
        let now = Instant::now();
        let fresh = now < entry.expires
            && entry.uses.fetch_add(1, Ordering::Relaxed) < MAX_OBJECTS_PER_DATA_KEY;
        if fresh && now >= entry.refresh_at && !entry.refreshing.swap(true, Ordering::Relaxed) {
            self.refresh_ahead(entry, key_id, context);
        }
        fresh.then(|| {
            self.hit("GenerateDataKey", key_id);
            DataKey {
                plaintext: entry.plaintext.clone(),
                wrapped: entry.wrapped.clone(),
                key_id: entry.key_id.clone(),
            }
        })
    }

    /// Asks for the entry's next data key in the background and puts it in
    /// place when it comes. A failure is logged and counted (`call`) and
    /// not retried: the current key serves until it expires, and then the
    /// next PUT asks as on a miss (single flight).
    fn refresh_ahead(&self, old: &Arc<Issued>, key_id: &str, context: &BTreeMap<String, String>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        let old = Arc::downgrade(old);
        let id: EncryptKey = (key_id.to_string(), context.clone());
        runtime.spawn(async move {
            let (key_id, context) = (&id.0, &id.1);
            let generated = this
                .call(
                    "GenerateDataKey",
                    key_id,
                    this.inner.generate_data_key(key_id, context),
                )
                .await;
            let Ok(key) = generated else { return };
            let issued = Issued::new(&key, this.ttl);
            this.remember_unwrapped(
                unwrap_id(&key.key_id, &key.wrapped, context),
                &key.plaintext,
                issued.expires,
            );
            // In place of the entry it refreshes, never of a newer one
            // (loaded after the old one expired): a stale answer is dropped.
            // Compared and replaced under the shard's lock, in one step; a
            // key being loaded meanwhile (zero wait) is left to its loader.
            let replaced = this.encrypt.entry(&id, Some(Duration::ZERO), |_, current| {
                let same = std::ptr::eq(Arc::as_ptr(current), old.as_ptr());
                if same {
                    *current = Arc::new(issued);
                }
                EntryAction::Retain(same)
            });
            if matches!(replaced, EntryResult::Retained(true)) {
                this.count_entries();
            }
        });
    }

    /// Removes `entry`, which can issue no more keys, but only if it is
    /// still the cached one: a refresh may have put a fresh key in its place
    /// since this request read it.
    fn drop_stale(&self, id: &EncryptKey, entry: &Arc<Issued>) {
        if self
            .encrypt
            .remove_if(id, |v| Arc::ptr_eq(v, entry))
            .is_some()
        {
            let reason = if Instant::now() < entry.expires {
                "used"
            } else {
                "expired"
            };
            self.evicted("encrypt", reason);
        }
    }

    fn remember_unwrapped(
        &self,
        id: [u8; 32],
        plaintext: &Zeroizing<[u8; DEK_LEN]>,
        expires: Instant,
    ) {
        self.decrypt.insert(
            id,
            Arc::new(Unwrapped {
                plaintext: plaintext.clone(),
                expires,
            }),
        );
    }
}

#[async_trait]
impl KeyProvider for CachingProvider {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn default_key_id(&self) -> &str {
        self.inner.default_key_id()
    }

    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError> {
        let generate = || {
            self.call(
                "GenerateDataKey",
                key_id,
                self.inner.generate_data_key(key_id, context),
            )
        };
        if self.ttl.is_zero() {
            return generate().await;
        }
        // The warm path: a fresh entry found by reference.
        if let Some(entry) = self.encrypt.get(&EncryptLookup(key_id, context)) {
            if let Some(key) = self.issue(&entry, key_id, context) {
                return Ok(key);
            }
        }
        let id: EncryptKey = (key_id.to_string(), context.clone());
        // Twice at most: a stale or used-up entry is dropped and loaded anew.
        for _ in 0..2 {
            match self.encrypt.get_value_or_guard_async(&id).await {
                Ok(entry) => {
                    if let Some(key) = self.issue(&entry, key_id, context) {
                        return Ok(key);
                    }
                    self.drop_stale(&id, &entry);
                }
                Err(guard) => {
                    let key = generate().await?;
                    let issued = Issued::new(&key, self.ttl);
                    self.remember_unwrapped(
                        unwrap_id(&key.key_id, &key.wrapped, context),
                        &key.plaintext,
                        issued.expires,
                    );
                    let _ = guard.insert(Arc::new(issued));
                    self.count_entries();
                    return Ok(key);
                }
            }
        }
        generate().await
    }

    async fn decrypt_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<[u8; DEK_LEN]>, KeyError> {
        let unwrap = || {
            self.call(
                "Decrypt",
                key_id,
                self.inner.decrypt_data_key(key_id, wrapped, context),
            )
        };
        if self.ttl.is_zero() {
            return unwrap().await;
        }
        let id = unwrap_id(key_id, wrapped, context);
        for _ in 0..2 {
            match self.decrypt.get_value_or_guard_async(&id).await {
                Ok(entry) if Instant::now() < entry.expires => {
                    self.hit("Decrypt", key_id);
                    return Ok(entry.plaintext.clone());
                }
                Ok(_) => {
                    self.decrypt.remove(&id);
                    self.evicted("decrypt", "expired");
                }
                Err(guard) => {
                    let plaintext = unwrap().await?;
                    let _ = guard.insert(Arc::new(Unwrapped {
                        plaintext: plaintext.clone(),
                        expires: Instant::now() + self.ttl,
                    }));
                    self.count_entries();
                    return Ok(plaintext);
                }
            }
        }
        unwrap().await
    }

    async fn wrap_data_key(
        &self,
        key_id: &str,
        dek: &Zeroizing<[u8; DEK_LEN]>,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError> {
        self.call(
            "Encrypt",
            key_id,
            self.inner.wrap_data_key(key_id, dek, context),
        )
        .await
    }

    fn is_current_wrap(&self, wrapped: &[u8]) -> bool {
        self.inner.is_current_wrap(wrapped)
    }

    async fn canonical_key_id(&self, key_id: &str) -> Result<String, KeyError> {
        let out = self.inner.canonical_key_id(key_id).await;
        if let (Err(e), Some(m)) = (&out, &self.metrics) {
            m.errors
                .with_label_values(&[self.inner.name(), "DescribeKey", e.code()])
                .inc();
        }
        out
    }

    fn binding_key_id(&self, stored_key_id: &str) -> String {
        self.inner.binding_key_id(stored_key_id)
    }
}

#[cfg(test)]
mod tests;
