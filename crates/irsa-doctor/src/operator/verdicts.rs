//! The last Ready verdict of each IRSA ServiceAccount: one memory shared by the sweep and every
//! IrsaCheck naming it, so a verdict reaches `kubectl describe serviceaccount` once. It also
//! keeps what the namespace's PolicyReport needs (bounded), and tells the PolicyReport writer
//! which namespaces changed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use irsa_core::{ConditionVerdict, Reason, Report, Status};
use tokio::sync::Notify;

use super::events::{transition, EventSpec, Verdict};
use super::policy_report::Observation;

/// (namespace, name) of a ServiceAccount.
pub type Key = (String, String);

/// A diagnosis as recorded: the whole report, or only its Ready verdict.
#[derive(Debug, Clone, Copy)]
pub enum Diagnosed<'a> {
    /// The whole report: warnings, fix and role ARN are known.
    Report(&'a Report),
    /// Only the Ready verdict.
    Ready(&'a ConditionVerdict),
}

impl<'a> From<&'a Report> for Diagnosed<'a> {
    fn from(r: &'a Report) -> Diagnosed<'a> {
        Diagnosed::Report(r)
    }
}

impl<'a> From<&'a ConditionVerdict> for Diagnosed<'a> {
    fn from(r: &'a ConditionVerdict) -> Diagnosed<'a> {
        Diagnosed::Ready(r)
    }
}

impl Diagnosed<'_> {
    /// The Ready verdict.
    pub fn ready(&self) -> &ConditionVerdict {
        match self {
            Diagnosed::Report(r) => r.ready(),
            Diagnosed::Ready(v) => v,
        }
    }

    /// What a PolicyReport says of it.
    pub fn observation(&self) -> Observation {
        match self {
            Diagnosed::Report(r) => Observation::of_report(r),
            Diagnosed::Ready(v) => Observation::of_ready(v),
        }
    }
}

/// What is remembered of one ServiceAccount.
#[derive(Debug, Clone)]
pub struct Remembered {
    /// The Ready verdict (Events, metrics).
    pub verdict: Verdict,
    /// What its PolicyReport result says.
    pub observation: Observation,
    /// Since when the observation has been what it is.
    pub since: jiff::Timestamp,
}

/// Namespaces whose remembered verdicts changed, for the PolicyReport writer; inert until it
/// enables them.
#[derive(Debug, Default)]
pub struct Changes {
    enabled: AtomicBool,
    dirty: Mutex<BTreeSet<String>>,
    swept: AtomicBool,
    notify: Notify,
}

impl Changes {
    /// Starts tracking (the writer runs).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    fn namespace(&self, namespace: &str) {
        if self.enabled.load(Ordering::SeqCst) {
            self.dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(namespace.to_string());
            self.notify.notify_one();
        }
    }

    /// A full sweep finished.
    pub fn swept(&self) {
        if self.enabled.load(Ordering::SeqCst) {
            self.swept.store(true, Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    /// Waits until something changed (at once if something did since the last wait).
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// The namespaces that changed, and whether a sweep finished, since the last call.
    pub fn take(&self) -> (BTreeSet<String>, bool) {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        (dirty, self.swept.swap(false, Ordering::SeqCst))
    }
}

/// What is remembered, by namespace and ServiceAccount, and the strings observations share:
/// most ServiceAccounts pass with the same message, and ServiceAccounts share roles, so one
/// copy of each string serves them all.
#[derive(Debug, Default)]
struct Memory {
    by_namespace: BTreeMap<String, HashMap<String, Remembered>>,
    strings: HashSet<Arc<str>>,
}

impl Memory {
    /// The shared copy of `s`.
    fn share(&mut self, s: &mut Arc<str>) {
        match self.strings.get(s) {
            Some(shared) => *s = shared.clone(),
            None => {
                self.strings.insert(s.clone());
            }
        }
    }

    /// Drops the shared strings no observation uses any more.
    fn prune(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
    }
}

/// Last verdicts by namespace and ServiceAccount.
#[derive(Debug, Default)]
pub struct Verdicts {
    last: Mutex<Memory>,
    changes: Changes,
}

impl Verdicts {
    fn last(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a ServiceAccount's new diagnosis and returns the Event its transition deserves.
    pub fn record<'a>(
        &self,
        namespace: &str,
        name: &str,
        diagnosed: impl Into<Diagnosed<'a>>,
    ) -> Option<EventSpec> {
        let diagnosed = diagnosed.into();
        let ready = diagnosed.ready();
        let mut observation = diagnosed.observation();
        let mut last = self.last();
        last.share(&mut observation.message);
        if let Some(arn) = observation.role_arn.as_mut() {
            last.share(arn);
        }
        let accounts = last.by_namespace.entry(namespace.to_string()).or_default();
        let previous = accounts.get(name);
        let changed = previous.is_none_or(|p| p.observation != observation);
        let since = match previous {
            Some(p) if !changed => p.since,
            _ => jiff::Timestamp::now(),
        };
        let previous = accounts
            .insert(
                name.to_string(),
                Remembered {
                    verdict: Verdict::from(ready),
                    observation,
                    since,
                },
            )
            .map(|p| p.verdict);
        drop(last);
        if changed {
            self.changes.namespace(namespace);
        }
        transition(previous, ready)
    }

    /// Forgets a ServiceAccount (deleted, or no longer asking for IRSA).
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut last = self.last();
        let Some(accounts) = last.by_namespace.get_mut(namespace) else {
            return;
        };
        let removed = accounts.remove(name).is_some();
        if accounts.is_empty() {
            last.by_namespace.remove(namespace);
        }
        drop(last);
        if removed {
            self.changes.namespace(namespace);
        }
    }

    /// Keeps only the ServiceAccounts in `live`.
    pub fn retain(&self, live: &HashSet<Key>) {
        let mut changed = Vec::new();
        let mut last = self.last();
        last.by_namespace.retain(|namespace, accounts| {
            let before = accounts.len();
            accounts.retain(|name, _| live.contains(&(namespace.clone(), name.clone())));
            if accounts.len() != before {
                changed.push(namespace.clone());
            }
            !accounts.is_empty()
        });
        last.prune();
        drop(last);
        for namespace in changed {
            self.changes.namespace(&namespace);
        }
    }

    /// How many ServiceAccounts have each (status, reason).
    pub fn counts(&self) -> BTreeMap<(VerdictClass, Reason), i64> {
        let mut counts = BTreeMap::new();
        for v in self.last().by_namespace.values().flat_map(HashMap::values) {
            *counts
                .entry((VerdictClass::from(v.verdict.status), v.verdict.reason))
                .or_default() += 1;
        }
        counts
    }

    /// What is remembered of the ServiceAccounts of `namespace`, by name.
    pub fn of_namespace(&self, namespace: &str) -> Vec<(String, Remembered)> {
        self.last()
            .by_namespace
            .get(namespace)
            .map(|accounts| {
                accounts
                    .iter()
                    .map(|(name, r)| (name.clone(), r.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The namespaces with a remembered ServiceAccount.
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.last().by_namespace.keys().cloned().collect()
    }

    /// Which namespaces changed, for the PolicyReport writer.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// A full sweep finished: the PolicyReport writer catches up.
    pub fn swept(&self) {
        self.changes.swept();
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
    use crate::operator::events::tests::ready;

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

    #[test]
    fn the_writer_hears_of_changed_namespaces_only() {
        let v = Verdicts::default();
        let bad = ready(Status::False, Reason::RoleNotFound);
        v.record("quiet", "x", &bad);
        assert_eq!(
            v.changes().take(),
            (BTreeSet::new(), false),
            "inert until enabled"
        );
        v.changes().enable();
        v.record("a", "x", &bad);
        let since = v.of_namespace("a")[0].1.since;
        v.record("b", "y", &ready(Status::True, Reason::AllChecksPassed));
        assert_eq!(
            v.changes().take().0,
            BTreeSet::from(["a".into(), "b".into()])
        );
        v.record("a", "x", &bad);
        assert!(
            v.changes().take().0.is_empty(),
            "same result: nothing to write"
        );
        assert_eq!(v.of_namespace("a")[0].1.since, since, "its time is kept");
        v.record("a", "x", &ready(Status::Unknown, Reason::AwsApiUnavailable));
        let (dirty, swept) = v.changes().take();
        assert_eq!((dirty, swept), (BTreeSet::from(["a".into()]), false));
        assert_eq!(
            v.of_namespace("a")[0].1.observation.outcome,
            super::super::policy_report::Outcome::Error
        );
        v.forget("b", "y");
        v.forget("b", "y");
        v.retain(&HashSet::from([("a".to_string(), "x".to_string())]));
        v.swept();
        assert_eq!(
            v.changes().take(),
            (BTreeSet::from(["b".into(), "quiet".into()]), true)
        );
        assert_eq!(v.namespaces(), BTreeSet::from(["a".into()]));
    }
}
