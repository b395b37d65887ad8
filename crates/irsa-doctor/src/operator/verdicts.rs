//! The last Ready verdict of each IRSA ServiceAccount: one memory shared by the sweep and every
//! IrsaCheck naming it, so a verdict reaches `kubectl describe serviceaccount` once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use irsa_core::{ConditionVerdict, Reason, Status};

use super::events::{transition, EventSpec, Verdict};

/// (namespace, name) of a ServiceAccount.
pub type Key = (String, String);

/// Last verdicts by ServiceAccount.
#[derive(Debug, Default)]
pub struct Verdicts {
    last: Mutex<HashMap<Key, Verdict>>,
}

impl Verdicts {
    fn last(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Verdict>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a ServiceAccount's new Ready verdict and returns the Event its transition deserves.
    pub fn record(
        &self,
        namespace: &str,
        name: &str,
        ready: &ConditionVerdict,
    ) -> Option<EventSpec> {
        let key = (namespace.to_string(), name.to_string());
        let previous = self.last().insert(key, Verdict::from(ready));
        transition(previous, ready)
    }

    /// Forgets a ServiceAccount (deleted, or no longer asking for IRSA).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.last()
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// Keeps only the ServiceAccounts in `live`.
    pub fn retain(&self, live: &HashSet<Key>) {
        self.last().retain(|k, _| live.contains(k));
    }

    /// How many ServiceAccounts have each (status, reason).
    pub fn counts(&self) -> BTreeMap<(VerdictClass, Reason), i64> {
        let mut counts = BTreeMap::new();
        for v in self.last().values() {
            *counts
                .entry((VerdictClass::from(v.status), v.reason))
                .or_default() += 1;
        }
        counts
    }
}

/// A verdict as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VerdictClass {
    /// Ready True.
    Ok,
    /// Ready False.
    Error,
    /// Ready Unknown.
    Unknown,
}

impl From<Status> for VerdictClass {
    fn from(s: Status) -> VerdictClass {
        match s {
            Status::True => VerdictClass::Ok,
            Status::False => VerdictClass::Error,
            Status::Unknown => VerdictClass::Unknown,
        }
    }
}

impl VerdictClass {
    /// `ok`, `error`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictClass::Ok => "ok",
            VerdictClass::Error => "error",
            VerdictClass::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use irsa_core::ConditionType;

    fn ready(status: Status, reason: Reason) -> ConditionVerdict {
        ConditionVerdict {
            type_: ConditionType::Ready,
            status,
            reason,
            message: "m".into(),
        }
    }

    #[test]
    fn one_event_per_transition_and_counts_by_verdict() {
        let v = Verdicts::default();
        let bad = ready(Status::False, Reason::RoleNotFound);
        assert!(v.record("a", "x", &bad).is_some());
        assert!(v.record("a", "x", &bad).is_none(), "same verdict: no Event");
        assert!(v
            .record("a", "y", &ready(Status::True, Reason::AllChecksPassed))
            .is_none());
        let counts = v.counts();
        assert_eq!(counts[&(VerdictClass::Error, Reason::RoleNotFound)], 1);
        assert_eq!(counts[&(VerdictClass::Ok, Reason::AllChecksPassed)], 1);
        v.retain(&HashSet::from([("a".to_string(), "y".to_string())]));
        assert_eq!(v.counts().len(), 1);
        v.forget("a", "y");
        assert!(v.counts().is_empty());
        assert!(v.record("a", "x", &bad).is_some(), "forgotten: warns again");
    }
}
