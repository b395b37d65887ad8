//! ServiceAccounts, watched metadata-only: every annotated (or nearly annotated) one gets the
//! static diagnosis on change and on a cluster-wide interval, with Events on its verdict's
//! transitions; changes also trigger the IrsaChecks that name it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use irsa_core::workloads::PodFacts;
use irsa_core::{diagnose, Fact, ServiceAccount};
use k8s_openapi::api::core::v1::ServiceAccount as KubeServiceAccount;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tokio::sync::mpsc;

use crate::context::Context;
use crate::controller::checks_naming;
use crate::crd::IrsaCheck;
use crate::gather::{self, gather};
use crate::workloads;

/// One watched scope: a namespace (or all), its IrsaCheck cache and the trigger of its controller.
pub struct Scope {
    /// `None` for all namespaces.
    pub namespace: Option<String>,
    /// IrsaChecks of the scope.
    pub checks: Store<IrsaCheck>,
    /// Re-runs an IrsaCheck.
    pub trigger: mpsc::UnboundedSender<ObjectRef<IrsaCheck>>,
}

fn in_scope(scope: &Scope, namespace: &str) -> bool {
    scope.namespace.as_deref().is_none_or(|n| n == namespace)
}

/// Diagnoses one ServiceAccount without an IrsaCheck and publishes an Event if its verdict flipped.
async fn diagnose_one(ctx: &Context, sa: ServiceAccount, pods: Option<Fact<Vec<PodFacts>>>) {
    let started = Instant::now();
    let (namespace, name) = (sa.namespace.clone(), sa.name.clone());
    let mut facts = gather(
        &ctx.aws,
        &ctx.issuer(),
        &namespace,
        &name,
        Fact::Known(Some(sa)),
        None,
    )
    .await;
    facts.workloads = Some(match pods {
        Some(p) => p,
        None => workloads::pods_of(&ctx.client, &namespace, &name).await,
    });
    let report = diagnose(&facts);
    if let Some(event) = ctx.service_account_transition(&namespace, &name, report.ready()) {
        if let Some(reference) = ctx.service_account_reference(&namespace, &name) {
            ctx.publish(&event, &reference).await;
        }
    }
    ctx.metrics.reconciled("serviceaccount", started.elapsed());
}

/// The ServiceAccounts the sweep owns: wanting IRSA and named by no IrsaCheck (those report
/// through their check).
fn swept(ctx: &Context, scopes: &[Scope]) -> Vec<ServiceAccount> {
    ctx.service_accounts
        .iter()
        .flat_map(|(_, store)| store.state())
        .map(|sa| gather::service_account(&sa.metadata))
        .filter(|sa| sa.wants_irsa())
        .filter(|sa| {
            !scopes
                .iter()
                .filter(|s| in_scope(s, &sa.namespace))
                .any(|s| !checks_naming(&s.checks, &sa.namespace, &sa.name).is_empty())
        })
        .collect()
}

fn verdict(status: &str) -> &'static str {
    match status {
        "True" => "ok",
        "False" => "error",
        _ => "unknown",
    }
}

/// Diagnoses every swept ServiceAccount and publishes the verdict counts.
async fn full_sweep(
    ctx: &Arc<Context>,
    scopes: &[Scope],
    namespaces: &[Option<String>],
    concurrency: usize,
) {
    let started = Instant::now();
    let orphans = ctx.prober.sweep_orphans(namespaces).await;
    if orphans > 0 {
        tracing::info!(orphans, "removed orphaned probe pods");
    }
    let accounts = swept(ctx, scopes);
    let total = accounts.len();
    let mut by_namespace: BTreeMap<String, Vec<ServiceAccount>> = BTreeMap::new();
    for sa in accounts {
        by_namespace
            .entry(sa.namespace.clone())
            .or_default()
            .push(sa);
    }
    // One namespace at a time: one paginated pod list for its ServiceAccounts, then their
    // diagnoses; memory holds one namespace's pods, never the cluster's.
    for (namespace, accounts) in by_namespace {
        let names: std::collections::HashSet<String> =
            accounts.iter().map(|sa| sa.name.clone()).collect();
        let listed = workloads::pods_by_service_account(&ctx.client, Some(&namespace), |_, s| {
            names.contains(s)
        })
        .await;
        let (mut pods, failed) = match listed {
            Ok(pods) => (pods, None),
            Err(u) => (HashMap::new(), Some(u)),
        };
        futures::stream::iter(accounts)
            .map(|sa| {
                let facts = match &failed {
                    Some(u) => Fact::Unavailable(u.clone()),
                    None => Fact::Known(
                        pods.remove(&(sa.namespace.clone(), sa.name.clone()))
                            .unwrap_or_default(),
                    ),
                };
                diagnose_one(ctx, sa, Some(facts))
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<()>>()
            .await;
    }
    // Forget ServiceAccounts that went away or stopped asking for IRSA (those with an IrsaCheck included).
    let live: std::collections::HashSet<(String, String)> = ctx
        .service_accounts
        .iter()
        .flat_map(|(_, store)| store.state())
        .map(|sa| gather::service_account(&sa.metadata))
        .filter(ServiceAccount::wants_irsa)
        .map(|sa| (sa.namespace, sa.name))
        .collect();
    ctx.verdicts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|k, _| live.contains(k));
    // Counts cover every IRSA ServiceAccount: the swept ones and those an IrsaCheck diagnoses.
    let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (status, reason) in ctx
        .verdicts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
    {
        *counts
            .entry((verdict(status).to_string(), reason.clone()))
            .or_default() += 1;
    }
    ctx.metrics.set_service_accounts(&counts);
    let checks: std::collections::HashSet<(String, String)> = scopes
        .iter()
        .flat_map(|s| s.checks.state())
        .map(|c| {
            (
                c.metadata.namespace.clone().unwrap_or_default(),
                c.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    ctx.metrics.retain_checks(&checks);
    tracing::info!(
        service_accounts = total,
        took_ms = started.elapsed().as_millis() as u64,
        "sweep finished"
    );
}

/// Drives the ServiceAccount watch until `shutdown`: sweeps once the initial list is in and
/// every `interval` after, and reacts to each change in between.
pub async fn run(
    ctx: Arc<Context>,
    scopes: Vec<Scope>,
    namespaces: Vec<Option<String>>,
    changes: impl Stream<Item = Result<watcher::Event<PartialObjectMeta<KubeServiceAccount>>, watcher::Error>>
        + Send,
    interval: Duration,
    concurrency: usize,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut changes = std::pin::pin!(changes);
    let mut shutdown = std::pin::pin!(shutdown);
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    // The first full sweep runs when the initial list is complete (InitDone), then every interval.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => full_sweep(&ctx, &scopes, &namespaces, concurrency).await,
            change = changes.next() => match change {
                None => return,
                Some(Err(e)) => tracing::warn!(error = %e, "ServiceAccount watch error; retrying with backoff"),
                // The initial list is diagnosed by one full sweep when it is complete, with one
                // pod list per namespace, instead of one diagnosis and pod list per object.
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => {}
                Some(Ok(watcher::Event::InitDone)) => full_sweep(&ctx, &scopes, &namespaces, concurrency).await,
                Some(Ok(watcher::Event::Delete(meta))) => {
                    let key = (meta.metadata.namespace.clone().unwrap_or_default(), meta.metadata.name.clone().unwrap_or_default());
                    ctx.verdicts.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                }
                Some(Ok(watcher::Event::Apply(meta))) => {
                    let sa = gather::service_account(&meta.metadata);
                    let mut named = false;
                    for scope in scopes.iter().filter(|s| in_scope(s, &sa.namespace)) {
                        for check in checks_naming(&scope.checks, &sa.namespace, &sa.name) {
                            named = true;
                            let _ = scope.trigger.send(check);
                        }
                    }
                    if !named && sa.wants_irsa() && meta.metadata.deletion_timestamp.is_none() {
                        // Bounded parallelism; waiting for a permit holds the watch back.
                        let Ok(permit) = permits.clone().acquire_owned().await else { return };
                        let ctx = ctx.clone();
                        tokio::spawn(async move {
                            diagnose_one(&ctx, sa, None).await;
                            drop(permit);
                        });
                    }
                }
            },
        }
    }
}
