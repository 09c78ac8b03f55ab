//! The data-key cache against a provider that counts its calls.

use super::*;
use std::sync::atomic::AtomicUsize;

/// A provider that counts its calls and can be switched off.
struct Counting {
    /// GenerateDataKey calls, answered or not.
    tried: AtomicUsize,
    generated: AtomicUsize,
    unwrapped: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
    /// The GenerateDataKey call (counted from 0) that waits for `release`.
    hold: AtomicUsize,
    release: tokio::sync::Notify,
}

#[async_trait]
impl KeyProvider for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn default_key_id(&self) -> &str {
        "k"
    }
    fn type_name(&self) -> &'static str {
        "test"
    }
    async fn generate_data_key(
        &self,
        key_id: &str,
        _: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError> {
        self.tried.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(KeyError::Unavailable("down".into()));
        }
        let call = self.generated.fetch_add(1, Ordering::SeqCst);
        if call == self.hold.load(Ordering::SeqCst) {
            tokio::time::timeout(Duration::from_secs(10), self.release.notified())
                .await
                .expect("a held call was never released");
        }
        let n = call as u8;
        // Let concurrent callers pile up behind the first.
        tokio::task::yield_now().await;
        Ok(DataKey {
            plaintext: Zeroizing::new([n; DEK_LEN]),
            wrapped: vec![n; 8],
            key_id: format!("{key_id}-arn"),
        })
    }
    async fn wrap_data_key(
        &self,
        key_id: &str,
        dek: &Zeroizing<[u8; DEK_LEN]>,
        _: &BTreeMap<String, String>,
    ) -> Result<DataKey, KeyError> {
        Ok(DataKey {
            plaintext: dek.clone(),
            wrapped: vec![dek[0]; 8],
            key_id: key_id.to_string(),
        })
    }
    async fn decrypt_data_key(
        &self,
        _: &str,
        wrapped: &[u8],
        _: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<[u8; DEK_LEN]>, KeyError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(KeyError::Unavailable("down".into()));
        }
        self.unwrapped.fetch_add(1, Ordering::SeqCst);
        Ok(Zeroizing::new([wrapped[0]; DEK_LEN]))
    }
}

fn counting() -> Arc<Counting> {
    Arc::new(Counting {
        tried: AtomicUsize::new(0),
        generated: AtomicUsize::new(0),
        unwrapped: AtomicUsize::new(0),
        down: std::sync::atomic::AtomicBool::new(false),
        hold: AtomicUsize::new(usize::MAX),
        release: tokio::sync::Notify::new(),
    })
}

fn ctx(v: &str) -> BTreeMap<String, String> {
    [("bucket".to_string(), v.to_string())].into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_per_key_and_context_until_it_expires() {
    let inner = counting();
    let cache = Arc::new(CachingProvider::new(
        inner.clone(),
        Duration::from_secs(300),
        true,
    ));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.generate_data_key("k", &ctx("a")).await.unwrap() })
        })
        .collect();
    let mut wrapped = Vec::new();
    for t in tasks {
        wrapped.push(t.await.unwrap().wrapped);
    }
    assert_eq!(inner.generated.load(Ordering::SeqCst), 1, "single flight");
    assert!(wrapped.iter().all(|w| w == &wrapped[0]));
    // Another context is another key.
    cache.generate_data_key("k", &ctx("b")).await.unwrap();
    assert_eq!(inner.generated.load(Ordering::SeqCst), 2);
    // A key just issued unwraps without a call, under its context only.
    let k = cache.generate_data_key("k", &ctx("a")).await.unwrap();
    let back = cache
        .decrypt_data_key(&k.key_id, &k.wrapped, &ctx("a"))
        .await
        .unwrap();
    assert_eq!(*back, *k.plaintext);
    assert_eq!(inner.unwrapped.load(Ordering::SeqCst), 0);
    cache
        .decrypt_data_key(&k.key_id, &k.wrapped, &ctx("z"))
        .await
        .unwrap();
    assert_eq!(
        inner.unwrapped.load(Ordering::SeqCst),
        1,
        "other context: a call"
    );
    // While the provider is down, cached keys serve; misses fail.
    inner.down.store(true, Ordering::SeqCst);
    assert!(cache.generate_data_key("k", &ctx("a")).await.is_ok());
    assert!(cache
        .decrypt_data_key(&k.key_id, &k.wrapped, &ctx("a"))
        .await
        .is_ok());
    assert!(matches!(
        cache.generate_data_key("k", &ctx("new")).await,
        Err(KeyError::Unavailable(_))
    ));
    assert!(cache
        .decrypt_data_key("k", &[9; 8], &ctx("a"))
        .await
        .is_err());
}

#[test]
fn a_borrowed_lookup_finds_the_owned_entry() {
    let cache: Cache<EncryptKey, u8> = Cache::new(4);
    cache.insert(("k".to_string(), ctx("a")), 1);
    assert_eq!(cache.get(&EncryptLookup("k", &ctx("a"))), Some(1));
    assert_eq!(cache.get(&EncryptLookup("k", &ctx("b"))), None);
    assert_eq!(cache.get(&EncryptLookup("j", &ctx("a"))), None);
}

/// Polls (bounded) until the provider has been asked `n` times.
async fn asked(inner: &Counting, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while inner.tried.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "no refresh within 5 s");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_use_is_refreshed_before_it_expires_and_no_put_waits() {
    let inner = counting();
    // Long enough that the test's own steps after the refresh point
    // (microseconds) fit in the last fifth even on a loaded machine.
    let ttl = Duration::from_secs(3);
    let cache = CachingProvider::new(inner.clone(), ttl, false);
    let started = Instant::now();
    let first = cache.generate_data_key("k", &ctx("a")).await.unwrap();
    let same = cache.generate_data_key("k", &ctx("a")).await.unwrap();
    assert_eq!(same.wrapped, first.wrapped);
    assert_eq!(
        inner.generated.load(Ordering::SeqCst),
        1,
        "before the refresh point"
    );
    // Only the clock can take the entry past its refresh point.
    tokio::time::sleep(ttl * REFRESH_AFTER_PERCENT / 100 + Duration::from_millis(20)).await;
    for _ in 0..16 {
        let k = cache.generate_data_key("k", &ctx("a")).await.unwrap();
        assert!(k.wrapped == first.wrapped || k.wrapped == vec![1u8; 8]);
    }
    asked(&inner, 2).await;
    // Answered, then put in place (the same task, right after).
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache
        .generate_data_key("k", &ctx("a"))
        .await
        .unwrap()
        .wrapped
        == first.wrapped
    {
        assert!(Instant::now() < deadline, "the refreshed key never served");
        tokio::task::yield_now().await;
    }
    let next = cache.generate_data_key("k", &ctx("a")).await.unwrap();
    assert!(
        started.elapsed() < ttl,
        "the test ran past the TTL: it shows nothing"
    );
    assert_eq!(next.wrapped, vec![1u8; 8], "the refreshed key serves");
    assert_eq!(inner.generated.load(Ordering::SeqCst), 2, "one refresh");
    // The refreshed key unwraps from the cache, as a just-issued one does.
    cache
        .decrypt_data_key(&next.key_id, &next.wrapped, &ctx("a"))
        .await
        .unwrap();
    assert_eq!(inner.unwrapped.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_keeps_the_current_key_until_it_expires() {
    let inner = counting();
    let ttl = Duration::from_secs(3);
    let cache = CachingProvider::new(inner.clone(), ttl, false);
    let first = cache.generate_data_key("k", &ctx("a")).await.unwrap();
    inner.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(ttl * REFRESH_AFTER_PERCENT / 100 + Duration::from_millis(20)).await;
    for _ in 0..16 {
        let k = cache.generate_data_key("k", &ctx("a")).await.unwrap();
        assert_eq!(k.wrapped, first.wrapped);
    }
    // The one refresh was tried (and failed), and not again.
    asked(&inner, 2).await;
    for _ in 0..16 {
        let k = cache.generate_data_key("k", &ctx("a")).await.unwrap();
        assert_eq!(k.wrapped, first.wrapped);
    }
    assert_eq!(inner.tried.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn expired_keys_are_replaced_and_zero_ttl_caches_nothing() {
    let inner = counting();
    let cache = CachingProvider::new(inner.clone(), Duration::from_nanos(1), false);
    let a = cache.generate_data_key("k", &ctx("a")).await.unwrap();
    let b = cache.generate_data_key("k", &ctx("a")).await.unwrap();
    assert_ne!(a.wrapped, b.wrapped, "an expired key is not reused");
    // A TTL no Instant can be offset by is held to the longest kept.
    let forever = CachingProvider::new(inner.clone(), Duration::MAX, false);
    forever.generate_data_key("k", &ctx("z")).await.unwrap();
    let off = CachingProvider::new(inner.clone(), Duration::ZERO, false);
    let before = inner.generated.load(Ordering::SeqCst);
    off.generate_data_key("k", &ctx("a")).await.unwrap();
    off.generate_data_key("k", &ctx("a")).await.unwrap();
    assert_eq!(inner.generated.load(Ordering::SeqCst), before + 2);
}

/// Sleeps until `at`: only the clock takes an entry past its refresh point
/// or its expiry (the cache reads `Instant::now()`).
async fn until(at: Instant) {
    tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
}

/// A refresh that answers after its entry expired and was loaded anew must
/// not replace the newer key. Current-thread runtime: the refresh task runs
/// only when the test yields, so each step is ordered.
#[tokio::test]
async fn a_late_refresh_never_replaces_a_newer_key() {
    let inner = counting();
    let ttl = Duration::from_secs(3);
    let cache = CachingProvider::new(inner.clone(), ttl, false);
    let id: EncryptKey = ("k".to_string(), ctx("a"));
    let first = cache.generate_data_key("k", &ctx("a")).await.unwrap();
    let entry = cache.encrypt.get(&id).unwrap();
    until(entry.refresh_at + Duration::from_millis(20)).await;
    assert!(
        Instant::now() < entry.expires,
        "the test ran past the TTL: it shows nothing"
    );
    // The refresh is the next call; it waits for `release`. Armed only now:
    // this use takes the warm path (no await), so the refresh it spawns has
    // not run yet.
    inner.hold.store(1, Ordering::SeqCst);
    let still = cache.generate_data_key("k", &ctx("a")).await.unwrap();
    assert!(
        Instant::now() < entry.expires && still.wrapped == first.wrapped,
        "the test ran past the TTL: it shows nothing"
    );
    asked(&inner, 2).await; // the refresh is waiting for its answer
    until(entry.expires + Duration::from_millis(20)).await;
    // Expired: this PUT drops the entry and loads the third key.
    let newer = cache.generate_data_key("k", &ctx("a")).await.unwrap();
    assert_eq!(newer.wrapped, vec![2u8; 8]);
    // The refresh's answer comes now; its task holds a clone of the
    // provider until it has ended.
    let users = Arc::strong_count(&inner);
    inner.release.notify_one();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&inner) == users {
        assert!(Instant::now() < deadline, "the refresh never ended");
        tokio::task::yield_now().await;
    }
    // It ended past its answer (kept for reads), at its insert decision.
    let late = unwrap_id("k-arn", &[1u8; 8], &ctx("a"));
    assert!(
        cache.decrypt.get(&late).is_some(),
        "the late answer never arrived"
    );
    let after = cache.generate_data_key("k", &ctx("a")).await.unwrap();
    assert_eq!(
        after.wrapped, newer.wrapped,
        "the late refresh replaced a newer key"
    );
    assert_eq!(inner.generated.load(Ordering::SeqCst), 3);
}

/// A request that read an entry which can issue no more keys removes that
/// entry only: a refresh may have put a fresh key in its place meanwhile.
#[test]
fn a_stale_entry_is_dropped_only_while_it_is_the_cached_one() {
    let cache = CachingProvider::new(counting(), Duration::from_secs(60), false);
    let id: EncryptKey = ("k".to_string(), ctx("a"));
    let key = |n: u8| DataKey {
        plaintext: Zeroizing::new([n; DEK_LEN]),
        wrapped: vec![n; 8],
        key_id: "k".to_string(),
    };
    let stale = Arc::new(Issued::new(&key(1), Duration::ZERO));
    let fresh = Arc::new(Issued::new(&key(2), Duration::from_secs(60)));
    cache.encrypt.insert(id.clone(), fresh.clone());
    cache.drop_stale(&id, &stale);
    let kept = cache.encrypt.get(&id).expect("the fresh entry was removed");
    assert!(Arc::ptr_eq(&kept, &fresh));
    cache.drop_stale(&id, &fresh);
    assert!(
        cache.encrypt.get(&id).is_none(),
        "the cached entry, once stale itself, goes"
    );
}
