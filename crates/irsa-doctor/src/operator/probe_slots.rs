//! Probe slots, shared fairly among namespaces. A namespace holds at most its share of the slots
//! (`--max-probes-per-namespace`, half of them by default), so probes that hang in one namespace
//! leave slots to the others; and a slot that frees up goes to the namespace that has waited
//! longest, so a namespace with many checks polling for slots cannot overtake one with a single
//! check. Nobody waits on a slot: a check that gets none is looked at again a few seconds later
//! (see `reconcile`), and its namespace keeps its place in line while it keeps asking.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A namespace that stopped asking this long ago (its checks were deleted, or got their slots
/// elsewhere) loses its place in line; checks waiting for a slot ask every 5–15 s.
const PLACE_KEPT: Duration = Duration::from_secs(30);

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The namespace already runs its share of probes.
    NamespaceShare {
        /// Slots one namespace may hold.
        share: usize,
    },
    /// Every slot is taken, or the free ones are kept for namespaces that have waited longer.
    AllTaken {
        /// Slots in all.
        total: usize,
    },
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::NamespaceShare { share } => write!(
                f,
                "this namespace already runs its share of {share} probe slots (--max-probes-per-namespace); the probe runs when one of them frees up"
            ),
            Busy::AllTaken { total } => write!(
                f,
                "all {total} probe slots (--max-concurrent-probes) are busy or kept for namespaces that have waited longer; the probe runs when one frees up"
            ),
        }
    }
}

#[derive(Default)]
struct State {
    /// Slots held, by namespace; a namespace holding none is absent.
    held: HashMap<String, usize>,
    /// Namespaces refused a slot, in the order they first asked, with when they last asked.
    line: Vec<(String, Instant)>,
}

impl State {
    fn held_by(&self, namespace: &str) -> usize {
        self.held.get(namespace).copied().unwrap_or(0)
    }

    fn keep_place(&mut self, namespace: &str, now: Instant) {
        match self.line.iter_mut().find(|(ns, _)| ns == namespace) {
            Some((_, asked)) => *asked = now,
            None => self.line.push((namespace.to_string(), now)),
        }
    }
}

/// The probe slots of one operator.
pub struct ProbeSlots {
    state: Arc<Mutex<State>>,
    total: usize,
    share: usize,
}

/// A slot, given back when dropped.
pub struct ProbeSlot {
    state: Arc<Mutex<State>>,
    namespace: String,
}

impl Drop for ProbeSlot {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if let Some(n) = state.held.get_mut(&self.namespace) {
            *n -= 1;
            if *n == 0 {
                state.held.remove(&self.namespace);
            }
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProbeSlots {
    /// `total` slots (at least 1), at most `share` of them (at least 1) to one namespace.
    pub fn new(total: usize, share: usize) -> ProbeSlots {
        let total = total.max(1);
        ProbeSlots {
            state: Arc::default(),
            total,
            share: share.clamp(1, total),
        }
    }

    /// Half the slots, rounded up: the default share of one namespace.
    pub fn half(total: usize) -> usize {
        total.max(1).div_ceil(2)
    }

    /// Slots in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// A slot for a probe of `namespace` if it may have one now.
    pub fn try_acquire(&self, namespace: &str, now: Instant) -> Result<ProbeSlot, Busy> {
        let mut state = lock(&self.state);
        state
            .line
            .retain(|(_, asked)| now.saturating_duration_since(*asked) < PLACE_KEPT);
        if state.held_by(namespace) >= self.share {
            state.keep_place(namespace, now);
            return Err(Busy::NamespaceShare { share: self.share });
        }
        let free = self.total - state.held.values().sum::<usize>().min(self.total);
        // Free slots are kept for the namespaces ahead in line that may still take one.
        let ahead = state
            .line
            .iter()
            .take_while(|(ns, _)| ns != namespace)
            .filter(|(ns, _)| state.held_by(ns) < self.share)
            .count();
        if free <= ahead {
            state.keep_place(namespace, now);
            return Err(Busy::AllTaken { total: self.total });
        }
        *state.held.entry(namespace.to_string()).or_default() += 1;
        state.line.retain(|(ns, _)| ns != namespace);
        Ok(ProbeSlot {
            state: self.state.clone(),
            namespace: namespace.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_namespace_holds_at_most_its_share() {
        let slots = ProbeSlots::new(4, ProbeSlots::half(4));
        let now = Instant::now();
        let held: Vec<_> = (0..2)
            .map(|_| slots.try_acquire("hog", now).unwrap())
            .collect();
        assert_eq!(
            slots.try_acquire("hog", now).err(),
            Some(Busy::NamespaceShare { share: 2 })
        );
        // Ten more checks of the same namespace change nothing; another gets a slot at once.
        for _ in 0..10 {
            assert!(slots.try_acquire("hog", now).is_err());
        }
        let other = slots.try_acquire("calm", now).unwrap();
        drop(held);
        drop(other);
        assert!(lock(&slots.state).held.is_empty());
    }

    #[test]
    fn a_freed_slot_goes_to_the_namespace_that_waited_longest() {
        // One slot: the hog holds it, the calm namespace asks, then the hog's other checks poll.
        let slots = ProbeSlots::new(1, 1);
        let t0 = Instant::now();
        let first = slots.try_acquire("hog", t0).unwrap();
        assert!(slots.try_acquire("calm", t0).is_err());
        assert!(slots.try_acquire("hog", t0).is_err());
        drop(first);
        // The hog asks first after the slot frees up, and is refused: calm waited longer.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            slots.try_acquire("hog", later).err(),
            Some(Busy::AllTaken { total: 1 })
        );
        let calm = slots.try_acquire("calm", later).unwrap();
        drop(calm);
        // Then it is the hog's turn again: line order, not polling speed, decides.
        assert!(slots.try_acquire("hog", later).is_ok());
    }

    #[test]
    fn a_namespace_that_stopped_asking_loses_its_place() {
        let slots = ProbeSlots::new(1, 1);
        let t0 = Instant::now();
        let held = slots.try_acquire("a", t0).unwrap();
        assert!(slots.try_acquire("gone", t0).is_err());
        drop(held);
        assert!(slots.try_acquire("a", t0 + Duration::from_secs(1)).is_err());
        // "gone" never asked again: after PLACE_KEPT its reserved slot is free to others.
        assert!(slots.try_acquire("a", t0 + PLACE_KEPT).is_ok());
    }

    #[test]
    fn shares_are_clamped_to_the_slots() {
        let slots = ProbeSlots::new(0, 9);
        assert_eq!((slots.total(), slots.share), (1, 1));
        assert_eq!(ProbeSlots::half(1), 1);
        assert_eq!(ProbeSlots::half(5), 3);
    }
}
