//! The diagnosis of one ServiceAccount that no IrsaCheck names: gather its facts (AWS, EKS Pod
//! Identity), list its pods, observe what runs, diagnose, and record the verdict (an Event on a
//! flip, the PolicyReport, the counts). What a change runs for one ServiceAccount, and what the
//! sweep runs for each of a namespace's, a batch at a time (it lists pods once per batch); and
//! what an association change or the end of a fault runs for one ServiceAccount.

use std::time::Duration;

use irsa_core::diagnose::diagnose_with;
use irsa_core::pods::Pods;
use irsa_core::trust::Disclosure;
use irsa_core::{Fact, Facts, ServiceAccount};

use super::context::Context;
use super::metrics::Kind;
use super::stopwatch::Stopwatch;
use crate::gather::workloads;

/// Diagnoses one ServiceAccount without an IrsaCheck and publishes an Event if its verdict
/// flipped; its pods are listed here.
pub async fn diagnose_service_account(ctx: &Context, sa: ServiceAccount) {
    let (facts, spent) = gather(ctx, sa).await;
    let pods = workloads::pods_of(
        ctx.client(),
        ctx.prober().admission(),
        &facts.namespace,
        &facts.name,
        &ctx.prober().live_probe_pods(),
    )
    .await;
    conclude(ctx, facts, pods, spent).await;
}

/// The AWS facts of a ServiceAccount without an IrsaCheck, and how long they took; AWS calls
/// queue in the namespace's lane, and only allowed roles are looked up.
pub async fn gather(ctx: &Context, sa: ServiceAccount) -> (Facts, Duration) {
    let timer = Stopwatch::start();
    let (namespace, name) = (sa.namespace.clone(), sa.name.clone());
    let facts = ctx
        .gather(&namespace, &name, Fact::Known(Some(sa)), None)
        .await;
    (facts, timer.elapsed())
}

/// Completes `facts` with the ServiceAccount's `pods` and what is observed, diagnoses them and
/// publishes an Event if the verdict flipped; `spent` is the time the facts took.
pub async fn conclude(ctx: &Context, mut facts: Facts, pods: Fact<Pods>, spent: Duration) {
    let timer = Stopwatch::start();
    facts.workloads = Some(pods);
    ctx.observe(&mut facts).await;
    // Events on the ServiceAccount are read by the namespace's users: quote a role's trust
    // policy only when it admits the ServiceAccount.
    let report = diagnose_with(&facts, Disclosure::AdmittedOnly);
    ctx.record_service_account(&facts.namespace, &facts.name, &report)
        .await;
    ctx.metrics()
        .reconciled(Kind::ServiceAccount, spent + timer.elapsed());
}

/// Diagnoses an association whose ServiceAccount does not exist, naming the namespace's
/// ServiceAccounts for the near miss; its verdict counts and goes to the PolicyReport (there is
/// no ServiceAccount to carry an Event).
pub async fn diagnose_missing(ctx: &Context, namespace: &str, name: &str) {
    let timer = Stopwatch::start();
    let mut facts = ctx.gather(namespace, name, Fact::Known(None), None).await;
    facts.namespace_service_accounts = ctx.service_accounts().names_in(namespace);
    let report = diagnose_with(&facts, Disclosure::AdmittedOnly);
    ctx.record_service_account(namespace, name, &report).await;
    ctx.metrics()
        .reconciled(Kind::ServiceAccount, timer.elapsed());
}

/// Diagnoses `namespace/name` again, now: the IrsaChecks naming it re-run, or else the
/// ServiceAccount is diagnosed (or, when only an association names it, the missing one); a
/// ServiceAccount that neither exists nor is associated is forgotten.
pub async fn diagnose_again(ctx: &Context, namespace: &str, name: &str) {
    if !ctx.service_accounts().watches(namespace) {
        return;
    }
    if ctx.trigger_checks_naming(namespace, name) {
        return;
    }
    match ctx.service_accounts().get(namespace, name).await {
        Fact::Known(Some(sa)) => diagnose_service_account(ctx, sa).await,
        Fact::Known(None) if ctx.is_associated(namespace, name) => {
            diagnose_missing(ctx, namespace, name).await
        }
        Fact::Known(None) => ctx.verdicts().forget(namespace, name),
        Fact::Unavailable(_) | Fact::Skipped(_) => {}
    }
}
