//! The global bound on AWS calls: at most N in flight, and a client-side rate limit.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

/// Bounds concurrency and rate of the calls it runs.
pub struct Limiter {
    permits: Semaphore,
    rate: DefaultDirectRateLimiter,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl Limiter {
    /// At most `max_concurrent` at once, `per_second` on average with bursts of `burst`.
    pub fn new(max_concurrent: usize, per_second: u32, burst: u32) -> Limiter {
        let per_second = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        Limiter {
            permits: Semaphore::new(max_concurrent.max(1)),
            rate: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Runs `call` once a permit and a rate token are available.
    pub async fn run<T>(&self, call: impl Future<Output = T>) -> T {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        self.rate.until_ready().await;
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        // Decrements even when the caller drops the call half-way.
        let _in_flight = InFlight(&self.in_flight);
        call.await
    }

    /// The most calls that were ever in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
