//! A TTL cache in which concurrent requests for the same key collapse into one fetch.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Stored<V> {
    value: V,
    at: Instant,
    reusable: bool,
}

type Slot<V> = Arc<tokio::sync::Mutex<Option<Stored<V>>>>;

/// Values by key, fetched at most once per TTL, and at most once at a time.
pub struct FactCache<K, V> {
    ttl: Duration,
    slots: Mutex<HashMap<K, Slot<V>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<K: Eq + Hash + Clone, V: Clone> FactCache<K, V> {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> FactCache<K, V> {
        FactCache {
            ttl,
            slots: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached value, or the result of `fetch`. Callers that wait while another fetches get
    /// that result, even a failure; a failure (`reusable` false) is not served to later callers.
    pub async fn get_or_fetch<F, Fut>(&self, key: K, reusable: impl Fn(&V) -> bool, fetch: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let asked = Instant::now();
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key).or_default().clone()
        };
        let mut stored = slot.lock().await;
        if let Some(s) = stored.as_ref() {
            let fresh = s.reusable && s.at.elapsed() < self.ttl;
            if fresh || s.at >= asked {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return s.value.clone();
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let value = fetch().await;
        *stored = Some(Stored {
            reusable: reusable(&value),
            value: value.clone(),
            at: Instant::now(),
        });
        value
    }

    /// The stored value for `key` if it is fresh and not being fetched right now; never fetches.
    pub fn peek(&self, key: &K) -> Option<V> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)?
            .clone();
        let stored = slot.try_lock().ok()?;
        let s = stored.as_ref()?;
        (s.reusable && s.at.elapsed() < self.ttl).then(|| s.value.clone())
    }

    /// Answers served from the cache (including shared in-flight results).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Answers that needed a fetch.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn concurrent_requests_share_one_fetch_and_failures_are_not_kept() {
        let cache: Arc<FactCache<&str, Result<u32, String>>> =
            Arc::new(FactCache::new(Duration::from_secs(60)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, fetches) = (cache.clone(), fetches.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_fetch("k", Result::is_ok, || async move {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Err::<u32, _>("throttled".to_string())
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Err("throttled".to_string()));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // The failure is not served to a later caller: it fetches again, and success is kept.
        let ok = cache
            .get_or_fetch("k", Result::is_ok, || async { Ok(7) })
            .await;
        assert_eq!(ok, Ok(7));
        let again = cache
            .get_or_fetch("k", Result::is_ok, || async { Ok(8) })
            .await;
        assert_eq!(again, Ok(7));
        assert_eq!((cache.hits(), cache.misses()), (50, 2));
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let cache: FactCache<u8, u8> = FactCache::new(Duration::from_millis(30));
        assert_eq!(cache.get_or_fetch(1, |_| true, || async { 1 }).await, 1);
        assert_eq!(cache.get_or_fetch(1, |_| true, || async { 2 }).await, 1);
        assert_eq!(cache.peek(&1), Some(1));
        assert_eq!(cache.peek(&2), None);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(cache.peek(&1), None);
        assert_eq!(cache.get_or_fetch(1, |_| true, || async { 3 }).await, 3);
    }
}
