//! The fact cache: [moka]'s concurrent cache, bounded in size, whose entries expire after the
//! TTL of their fact kind, and in which concurrent requests for the same key collapse into one
//! fetch. Failures are handed to whoever waited for that fetch, and never kept for later callers.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;

/// Values by key, fetched at most once per TTL, and at most once at a time; at most
/// `max_entries` are kept (the least likely to be asked again are evicted first).
pub struct FactCache<K, V> {
    entries: Cache<K, V>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<K, V> FactCache<K, V>
where
    K: Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty cache whose entries live `ttl`, holding at most `max_entries` of them.
    pub fn new(ttl: Duration, max_entries: u64) -> FactCache<K, V> {
        FactCache {
            entries: Cache::builder()
                .time_to_live(ttl)
                .max_capacity(max_entries)
                .build(),
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
        // Whether this caller's fetch ran: a miss. Waiting for someone else's is a hit.
        let fetched = AtomicBool::new(false);
        // Boxed: SDK futures are large, and in debug builds every async frame that holds one
        // inline costs that much stack again; the operator's worker threads have 2 MiB.
        let init = Box::pin(async {
            fetched.store(true, Ordering::Relaxed);
            let value = fetch().await;
            // moka keeps `Ok` and hands `Err` to the waiting callers only.
            if reusable(&value) {
                Ok(value)
            } else {
                Err(value)
            }
        });
        let answer = Box::pin(self.entries.try_get_with(key, init)).await;
        let counter = if fetched.load(Ordering::Relaxed) {
            &self.misses
        } else {
            &self.hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
        answer.unwrap_or_else(|failure| V::clone(&failure))
    }

    /// Stores a value fetched together with others (one call answering many keys).
    pub async fn insert(&self, key: K, value: V) {
        self.entries.insert(key, value).await;
    }

    /// The stored value for `key` if it is fresh; never fetches.
    pub async fn peek(&self, key: &K) -> Option<V> {
        self.entries.get(key).await
    }

    /// How many values are stored, once pending evictions and expirations have been applied.
    pub async fn len(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }

    /// Whether no value is stored.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
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
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_requests_share_one_fetch_and_failures_are_not_kept() {
        let cache: Arc<FactCache<&str, Result<u32, String>>> =
            Arc::new(FactCache::new(Duration::from_secs(60), 100));
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
        let cache: FactCache<u8, u8> = FactCache::new(Duration::from_millis(30), 100);
        assert_eq!(cache.get_or_fetch(1, |_| true, || async { 1 }).await, 1);
        assert_eq!(cache.get_or_fetch(1, |_| true, || async { 2 }).await, 1);
        assert_eq!(cache.peek(&1).await, Some(1));
        assert_eq!(cache.peek(&2).await, None);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(cache.peek(&1).await, None);
        assert_eq!(cache.get_or_fetch(1, |_| true, || async { 3 }).await, 3);
    }

    /// The old cache grew with every key ever asked for; this one stays within its bound.
    #[tokio::test]
    async fn the_size_bound_evicts() {
        let cache: FactCache<u32, u32> = FactCache::new(Duration::from_secs(3600), 100);
        for k in 0..5_000 {
            cache.get_or_fetch(k, |_| true, || async move { k }).await;
        }
        let kept = cache.len().await;
        assert!(kept <= 100, "{kept} entries kept with a bound of 100");
        assert!(kept > 0);
        assert_eq!(cache.misses(), 5_000);
    }
}
