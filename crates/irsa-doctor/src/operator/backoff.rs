//! How long to wait before trying again: after a failed watch, and between re-diagnoses of
//! verdicts that are Unknown because a service failed. Exponential, capped, with ±20 % jitter
//! so that replicas and watches do not retry in step.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::watcher;

/// An exponential backoff: `first`, then × `factor` up to `cap`, each with ±20 % jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    factor: f64,
    next: Duration,
}

impl Backoff {
    /// A backoff from `first` to `cap`, growing by `factor`.
    pub fn new(first: Duration, cap: Duration, factor: f64) -> Backoff {
        Backoff {
            first,
            cap,
            factor,
            next: first,
        }
    }

    /// After a failed watch: 0.25 s up to 1 s, so a watch is back within about a second of the
    /// API server (client-go waits up to 30 s); a refused connection costs next to nothing.
    pub fn watch() -> Backoff {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(1), 2.0)
    }

    /// Between re-diagnoses of a verdict Unknown because of a fault: 5 s up to 20 s, so a
    /// verdict is known again within about 25 s of the fault's end however long it lasted, at
    /// the cost of one diagnosis every 20 s or so while it lasts.
    pub fn recovery() -> Backoff {
        Backoff::new(Duration::from_secs(5), Duration::from_secs(20), 1.5)
    }

    /// The next delay, with jitter.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.mul_f64(self.factor).min(self.cap);
        delay.mul_f64(0.8 + 0.4 * fastrand::f64())
    }

    /// Starts over from the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Whether a watch failed because its resource version is gone (HTTP 410, "too old resource
/// version", after etcd compacted it or the API server restarted): the watcher then relists.
fn is_gone(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// Backs a watch off after its errors, as client-go's reflector does, except that a 410 costs
/// no wait: the API server answered, and the watcher relists at once. A 410 right after
/// another 410 (the relist failed the same way) and every other error wait
/// [`Backoff::watch`]; an event resets it.
pub fn relisting<S, K>(stream: S) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    S: Stream<Item = Result<K, watcher::Error>> + Send,
    K: Send,
{
    let mut backoff = Backoff::watch();
    let mut gone = false;
    stream.then(move |item| {
        let delay = match &item {
            Ok(_) => {
                backoff.reset();
                gone = false;
                None
            }
            Err(e) if is_gone(e) && !gone => {
                gone = true;
                None
            }
            Err(e) => {
                gone = is_gone(e);
                Some(backoff.next_delay())
            }
        };
        async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            item
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_its_cap_with_bounded_jitter_and_resets() {
        let mut b = Backoff::recovery();
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        let nominal = [5.0, 7.5, 11.25, 16.875];
        for (d, n) in delays.iter().zip(nominal) {
            let s = d.as_secs_f64();
            assert!(s >= n * 0.8 - 1e-9 && s <= n * 1.2 + 1e-9, "{s} vs {n}");
        }
        assert!(delays.iter().all(|d| d.as_secs_f64() <= 24.0 + 1e-9));
        assert!(delays[11].as_secs_f64() >= 16.0, "capped at 20 s ±20 %");
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(6));
    }

    fn gone() -> watcher::Error {
        let mut status = kube::core::Status::failure("too old resource version", "Expired");
        status.code = 410;
        watcher::Error::WatchError(Box::new(status))
    }

    fn refused() -> watcher::Error {
        watcher::Error::NoResourceVersion
    }

    /// How long the stream takes to yield `items`, with time paused.
    async fn elapsed(items: Vec<Result<u32, watcher::Error>>) -> Duration {
        let start = tokio::time::Instant::now();
        let n = items.len();
        let out: Vec<_> = relisting(futures::stream::iter(items)).collect().await;
        assert_eq!(out.len(), n);
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_410_after_a_working_watch_relists_at_once_and_other_errors_back_off() {
        assert_eq!(
            elapsed(vec![Ok(1), Err(gone()), Ok(2)]).await,
            Duration::ZERO
        );
        let backed_off = elapsed(vec![Ok(1), Err(refused()), Ok(2)]).await;
        assert!(backed_off >= Duration::from_millis(200), "{backed_off:?}");
        // The API server back after an outage answers 410: the relist starts at once.
        let after_outage = elapsed(vec![Err(refused()), Err(gone())]).await;
        assert!(
            after_outage <= Duration::from_millis(300),
            "{after_outage:?}"
        );
        // A relist that fails with 410 again is a repeated failure: it waits.
        let repeated = elapsed(vec![Err(gone()), Err(gone())]).await;
        assert!(repeated >= Duration::from_millis(200), "{repeated:?}");
        // Many failures in a row never wait more than the cap (+20 %) each.
        let outage = elapsed((0..10).map(|_| Err(refused())).collect()).await;
        assert!(outage <= Duration::from_secs(12), "{outage:?}");
    }
}
