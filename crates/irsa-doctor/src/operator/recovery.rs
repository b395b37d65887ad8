//! Verdicts that are Unknown because a service failed (AWS, the Kubernetes API) are diagnosed
//! again soon, not at the next interval. While they wait, one of them at a time is diagnosed
//! on a backoff (5 s growing to 2 minutes, jittered): an outage costs one diagnosis per step,
//! however many verdicts wait. As soon as any of them is known again — that retry, a scheduled
//! run or a change — the fault is over, and every other waiting one is diagnosed at once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use irsa_core::Fact;
use tokio::sync::Notify;

use super::backoff::Backoff;
use super::context::Context;
use super::diagnosis::diagnose_again;

/// What a verdict is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// An IrsaCheck, by namespace and name.
    Check(String, String),
    /// A ServiceAccount no IrsaCheck names, by namespace and name.
    ServiceAccount(String, String),
}

/// The verdicts waiting for a fault to end.
#[derive(Debug, Default)]
pub struct Recovery {
    waiting: Mutex<BTreeSet<Subject>>,
    /// Something started waiting.
    added: Notify,
    /// A waiting verdict came back known.
    recovered: Notify,
}

impl Recovery {
    /// Records a new verdict of `subject`: whether it is Unknown because of a fault.
    pub fn record(&self, subject: Subject, awaits_recovery: bool) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if awaits_recovery {
            if waiting.insert(subject) {
                self.added.notify_one();
            }
        } else if waiting.remove(&subject) {
            self.recovered.notify_one();
        }
    }

    /// Forgets a subject that no longer exists.
    pub fn forget(&self, subject: &Subject) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(subject);
    }

    /// How many verdicts wait.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn first(&self) -> Option<Subject> {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.first().cloned()
    }

    fn all(&self) -> Vec<Subject> {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.iter().cloned().collect()
    }
}

/// Diagnoses waiting verdicts again, as the module says, until dropped.
pub async fn run(ctx: Arc<Context>, concurrency: usize) {
    let mut backoff = Backoff::recovery();
    loop {
        while ctx.recovery().waiting() == 0 {
            backoff.reset();
            ctx.recovery().added.notified().await;
        }
        let recovered = tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => false,
            () = ctx.recovery().recovered.notified() => true,
        };
        let subjects = match recovered {
            true => {
                backoff.reset();
                ctx.recovery().all()
            }
            false => ctx.recovery().first().into_iter().collect(),
        };
        tracing::info!(
            subjects = subjects.len(),
            waiting = ctx.recovery().waiting(),
            recovered,
            "diagnosing verdicts that were Unknown because of a fault again"
        );
        futures::stream::iter(subjects)
            .for_each_concurrent(concurrency.max(1), |subject| {
                let ctx = ctx.clone();
                async move { retry(&ctx, subject).await }
            })
            .await;
    }
}

/// Diagnoses one subject again.
async fn retry(ctx: &Context, subject: Subject) {
    match subject {
        Subject::Check(namespace, name) => {
            if !ctx.trigger_check(&namespace, &name) {
                ctx.recovery().forget(&Subject::Check(namespace, name));
            }
        }
        Subject::ServiceAccount(namespace, name) => {
            if let Fact::Known(None) = ctx.service_accounts().get(&namespace, &name).await {
                if !ctx.is_associated(&namespace, &name) {
                    ctx.recovery()
                        .forget(&Subject::ServiceAccount(namespace, name));
                    return;
                }
            }
            diagnose_again(ctx, &namespace, &name).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(name: &str) -> Subject {
        Subject::ServiceAccount("ns".into(), name.into())
    }

    #[tokio::test]
    async fn a_verdict_known_again_signals_the_end_of_the_fault() {
        let r = Recovery::default();
        r.record(sa("a"), true);
        r.record(sa("b"), true);
        r.record(sa("a"), true);
        assert_eq!(r.waiting(), 2);
        // Known, and never waiting: nothing recovered.
        r.record(sa("c"), false);
        assert_eq!(r.waiting(), 2);
        r.record(sa("a"), false);
        assert_eq!(r.all(), vec![sa("b")]);
        tokio::time::timeout(std::time::Duration::from_secs(1), r.recovered.notified())
            .await
            .expect("a waiting verdict known again wakes the recovery");
        r.forget(&sa("b"));
        assert_eq!(r.waiting(), 0);
    }
}
