//! The global bound on AWS calls: at most N in flight and a client-side rate limit, shared
//! fairly. Calls wait in one queue per [`Lane`] (a namespace, or the operator itself) and free
//! slots go to the lanes in turn, so a namespace with a thousand calls queued delays another's
//! next call by at most one call of its own, not by its thousand.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::oneshot;

/// On whose behalf an AWS call is made. Free call slots go to the lanes with waiting calls in
/// turn (round-robin); within a lane, calls keep their order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// The operator's own questions, and facts shared by every namespace: its identity, the
    /// cluster's issuer, the OIDC providers of an account.
    Operator,
    /// What the diagnosis of a ServiceAccount or IrsaCheck of this namespace asks.
    Namespace(Arc<str>),
}

impl Lane {
    /// The lane of a namespace's diagnoses.
    pub fn namespace(namespace: &str) -> Lane {
        Lane::Namespace(Arc::from(namespace))
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lane::Operator => f.write_str("the operator"),
            Lane::Namespace(ns) => write!(f, "namespace {ns}"),
        }
    }
}

/// Who waits for a slot, and whose turn is next.
struct Queue {
    /// Slots nobody holds. Never positive while a live call waits.
    free: usize,
    /// Waiting calls by lane, oldest first; a lane is removed when its queue empties.
    waiting: HashMap<Lane, VecDeque<oneshot::Sender<()>>>,
    /// Lanes with waiting calls, in the order they are served.
    turns: VecDeque<Lane>,
}

/// Bounds concurrency and rate of the calls it runs, serving lanes round-robin.
pub struct Limiter {
    queue: Mutex<Queue>,
    rate: DefaultDirectRateLimiter,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    /// Microseconds callers spent waiting for a turn, a slot and a rate token, all calls summed.
    waited_micros: AtomicU64,
}

impl Limiter {
    /// At most `max_concurrent` at once, `per_second` on average with bursts of `burst`.
    pub fn new(max_concurrent: usize, per_second: u32, burst: u32) -> Limiter {
        let per_second = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        Limiter {
            queue: Mutex::new(Queue {
                free: max_concurrent.max(1),
                waiting: HashMap::new(),
                turns: VecDeque::new(),
            }),
            rate: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            waited_micros: AtomicU64::new(0),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `call` for `lane` once its turn has come, a slot is free and a rate token is there.
    pub async fn run<T>(&self, lane: &Lane, call: impl Future<Output = T>) -> T {
        let asked = std::time::Instant::now();
        let _slot = self.slot(lane).await;
        // Only slot holders wait for rate tokens, so the slot order is the call order.
        self.rate.until_ready().await;
        let waited = u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.waited_micros.fetch_add(waited, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        // Decrements even when the caller drops the call half-way.
        let _in_flight = InFlight(&self.in_flight);
        call.await
    }

    /// A slot: at once when one is free (nobody waits then), else when the lanes' turns give it.
    async fn slot(&self, lane: &Lane) -> Slot<'_> {
        let granted = {
            let mut queue = self.queue();
            if queue.free > 0 {
                queue.free -= 1;
                return Slot(self);
            }
            let (grant, granted) = oneshot::channel();
            let calls = queue.waiting.entry(lane.clone()).or_default();
            calls.push_back(grant);
            if calls.len() == 1 {
                queue.turns.push_back(lane.clone());
            }
            granted
        };
        let mut waiting = Waiting {
            limiter: self,
            granted: Some(granted),
        };
        let granted = waiting.granted.as_mut().expect("set above");
        // The sender lives in the queue, which only drops it after sending.
        let _ = granted.await;
        waiting.granted = None;
        Slot(self)
    }

    /// Gives a released slot to the next lane's oldest live call, or frees it.
    fn release(&self) {
        let mut queue = self.queue();
        while let Some(lane) = queue.turns.pop_front() {
            let Some(calls) = queue.waiting.get_mut(&lane) else {
                continue;
            };
            let mut handed = false;
            // Calls whose caller gave up are skipped without costing their lane its turn.
            while let Some(grant) = calls.pop_front() {
                if grant.send(()).is_ok() {
                    handed = true;
                    break;
                }
            }
            if calls.is_empty() {
                queue.waiting.remove(&lane);
            } else {
                queue.turns.push_back(lane);
            }
            if handed {
                return;
            }
        }
        queue.free += 1;
    }

    /// Calls waiting for a slot, whatever their lane.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.queue()
            .waiting
            .values()
            .flatten()
            .filter(|grant| !grant.is_closed())
            .count()
    }

    /// Calls running now.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The most calls that were ever in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Seconds all calls so far spent waiting for their turn, a slot and a rate token.
    pub fn waited_seconds(&self) -> f64 {
        self.waited_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// A held slot; released (to the next lane's turn) on drop.
struct Slot<'a>(&'a Limiter);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A call waiting for its slot. Dropped before the slot arrived (the caller gave up), it makes
/// sure a slot handed to it in the meantime is passed on rather than lost.
struct Waiting<'a> {
    limiter: &'a Limiter,
    granted: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut granted) = self.granted.take() {
            // No slot can be handed to it any more; one handed before is passed on.
            granted.close();
            if granted.try_recv().is_ok() {
                self.limiter.release();
            }
        }
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// No rate limit to speak of: these tests are about slots and turns.
    fn limiter(slots: usize) -> Arc<Limiter> {
        Arc::new(Limiter::new(slots, 1_000_000, 1_000_000))
    }

    /// Lets the spawned tasks run until `done` holds (a current-thread runtime: deterministic).
    async fn settle(done: impl Fn() -> bool) {
        for _ in 0..100_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the tasks never settled");
    }

    /// Namespace A queues 500 calls, then namespace B one: B's call is served in the first
    /// slots that free up, not after A's 500. (With one FIFO queue it would come 501st.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_flooding_namespace_does_not_starve_another() {
        let limiter = limiter(1);
        let (a, b) = (Lane::namespace("a"), Lane::namespace("b"));
        let order: Arc<Mutex<Vec<Lane>>> = Arc::default();
        // A call of A holds the only slot until told to finish.
        let (finish, finished) = oneshot::channel::<()>();
        let first = {
            let (limiter, a) = (limiter.clone(), a.clone());
            tokio::spawn(async move {
                limiter
                    .run(&a, async {
                        let _ = finished.await;
                    })
                    .await
            })
        };
        settle(|| limiter.in_flight() == 1).await;
        let mut calls = Vec::new();
        for lane in std::iter::repeat_n(&a, 500).chain([&b]) {
            let (mine, lane, order) = (limiter.clone(), lane.clone(), order.clone());
            calls.push(tokio::spawn(async move {
                mine.run(&lane, async {
                    order.lock().unwrap().push(lane.clone());
                })
                .await
            }));
            // A's calls are all queued before B's.
            let queued = calls.len();
            settle(|| limiter.waiting() == queued).await;
        }
        finish.send(()).unwrap();
        first.await.unwrap();
        for call in calls {
            call.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order.len(), 501);
        let b_at = order.iter().position(|l| *l == b).unwrap();
        eprintln!("B's call ran {}th of 501 queued calls", b_at + 1);
        assert!(b_at <= 1, "B's call ran {}th", b_at + 1);
        // And A's calls keep their order among themselves, all served.
        assert_eq!(order.iter().filter(|l| **l == a).count(), 500);
        assert_eq!(limiter.peak_in_flight(), 1);
    }

    /// Three lanes with queued calls are served in turn: a, b, c, a, b, c, ...
    #[tokio::test(flavor = "current_thread")]
    async fn lanes_take_turns() {
        let limiter = limiter(1);
        let order: Arc<Mutex<Vec<String>>> = Arc::default();
        let (finish, finished) = oneshot::channel::<()>();
        let first = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                limiter
                    .run(&Lane::Operator, async {
                        let _ = finished.await;
                    })
                    .await
            })
        };
        settle(|| limiter.in_flight() == 1).await;
        let mut calls = Vec::new();
        for (ns, n) in [("a", 4), ("b", 2), ("c", 3)] {
            for i in 0..n {
                let (mine, order) = (limiter.clone(), order.clone());
                calls.push(tokio::spawn(async move {
                    mine.run(&Lane::namespace(ns), async {
                        order.lock().unwrap().push(format!("{ns}{i}"));
                    })
                    .await
                }));
                let queued = calls.len();
                settle(|| limiter.waiting() == queued).await;
            }
        }
        finish.send(()).unwrap();
        first.await.unwrap();
        for call in calls {
            call.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "c2", "a3"]
        );
    }

    /// Callers that give up while queued, or right after a slot was handed to them, lose no
    /// slot: the bound stays what it was and every later call still runs.
    #[tokio::test(flavor = "current_thread")]
    async fn abandoned_calls_do_not_leak_slots() {
        let limiter = limiter(2);
        let lane = Lane::namespace("a");
        let (finish, finished) = tokio::sync::watch::channel(false);
        let holders: Vec<_> = (0..2)
            .map(|_| {
                let (limiter, lane, mut finished) =
                    (limiter.clone(), lane.clone(), finished.clone());
                tokio::spawn(async move {
                    limiter
                        .run(&lane, async {
                            let _ = finished.wait_for(|f| *f).await;
                        })
                        .await
                })
            })
            .collect();
        settle(|| limiter.in_flight() == 2).await;
        let abandoned: Vec<_> = (0..10)
            .map(|_| {
                let (limiter, lane) = (limiter.clone(), lane.clone());
                tokio::spawn(async move { limiter.run(&lane, async {}).await })
            })
            .collect();
        settle(|| limiter.waiting() == 10).await;
        for call in &abandoned {
            call.abort();
        }
        settle(|| limiter.waiting() == 0).await;
        finish.send(true).unwrap();
        for h in holders {
            h.await.unwrap();
        }
        // Both slots are free again: two calls run at once.
        let (go, gate) = tokio::sync::watch::channel(false);
        let both: Vec<_> = (0..2)
            .map(|_| {
                let (limiter, lane, mut gate) = (limiter.clone(), lane.clone(), gate.clone());
                tokio::spawn(async move {
                    limiter
                        .run(&lane, async {
                            let _ = gate.wait_for(|g| *g).await;
                        })
                        .await
                })
            })
            .collect();
        settle(|| limiter.in_flight() == 2).await;
        go.send(true).unwrap();
        for c in both {
            c.await.unwrap();
        }
        let done =
            tokio::time::timeout(Duration::from_secs(5), limiter.run(&lane, async { "ran" })).await;
        assert_eq!(done, Ok("ran"));
        assert_eq!(limiter.peak_in_flight(), 2);
    }

    /// The wait the metrics report is the time callers really spent queued: three calls at two
    /// a second with no burst wait at least a second between them, all told.
    #[tokio::test]
    async fn waiting_is_measured() {
        let limiter = Limiter::new(1, 2, 1);
        let lane = Lane::namespace("a");
        assert_eq!(limiter.waited_seconds(), 0.0);
        for _ in 0..3 {
            limiter.run(&lane, async {}).await;
        }
        let waited = limiter.waited_seconds();
        assert!((0.9..10.0).contains(&waited), "{waited}");
    }
}
