//! "Has every watch listed once?": readiness and cache reads wait on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::watcher;
use tokio::sync::watch;

/// Counts the watches that have delivered their first complete list. (kube's own
/// `Store::wait_until_ready` wakes only one of several concurrent waiters.)
#[derive(Debug, Clone)]
pub struct Synced {
    listed: Arc<watch::Sender<usize>>,
    watches: usize,
}

impl Synced {
    /// A gate for `watches` watches.
    pub fn new(watches: usize) -> Synced {
        Synced {
            listed: Arc::new(watch::channel(0).0),
            watches,
        }
    }

    /// A callback for one watch's events: the first `InitDone` counts it as listed.
    pub fn tracker<K>(&self) -> impl FnMut(&watcher::Event<K>) + Send + 'static {
        let listed = self.listed.clone();
        let done = AtomicBool::new(false);
        move |event| {
            if matches!(event, watcher::Event::InitDone) && !done.swap(true, Ordering::SeqCst) {
                listed.send_modify(|n| *n += 1);
            }
        }
    }

    /// Waits until every watch has listed; `false` if that takes longer than `timeout`.
    pub async fn wait(&self, timeout: Duration) -> bool {
        let mut rx = self.listed.subscribe();
        let watches = self.watches;
        let waited = tokio::time::timeout(timeout, rx.wait_for(|n| *n >= watches)).await;
        matches!(waited, Ok(Ok(_)))
    }

    /// Waits until every watch has listed, however long that takes.
    pub async fn done(&self) {
        let mut rx = self.listed.subscribe();
        let watches = self.watches;
        let _ = rx.wait_for(|n| *n >= watches).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn done_only_when_every_watch_listed_once() {
        let synced = Synced::new(2);
        let mut a = synced.tracker::<()>();
        let mut b = synced.tracker::<()>();
        a(&watcher::Event::Init);
        a(&watcher::Event::InitDone);
        a(&watcher::Event::InitDone);
        assert!(
            !synced.wait(Duration::from_millis(10)).await,
            "one watch listing twice is not two watches"
        );
        b(&watcher::Event::InitDone);
        assert!(synced.wait(Duration::from_millis(10)).await);
        synced.done().await;
    }
}
