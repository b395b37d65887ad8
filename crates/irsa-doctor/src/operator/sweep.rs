//! The sweep: every ServiceAccount that asks for IRSA and that no IrsaCheck names gets the
//! diagnosis once the caches have listed, then every interval, with Events on its verdict's
//! transitions. It runs beside the ServiceAccount watch, so changes are handled while it runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use irsa_core::mechanism::in_force;
use irsa_core::pods::PodAudit;
use irsa_core::{Fact, Facts, ServiceAccount};

use super::context::Context;
use super::diagnosis::{conclude, diagnose_missing, gather};
use super::stopwatch::Stopwatch;
use super::sync::Synced;
use super::watch_namespace::WatchNamespace;
use crate::gather::workloads;

/// ServiceAccounts of one namespace swept together: one pod list serves them all, and their AWS
/// facts are held until it has been read. A namespace with more gets one pod list per batch.
const BATCH: usize = 500;

/// Diagnoses every swept ServiceAccount and publishes the verdict counts.
pub async fn full_sweep(ctx: &Arc<Context>, namespaces: &[WatchNamespace], concurrency: usize) {
    let timer = Stopwatch::start();
    let orphans = ctx.prober().sweep_orphans(namespaces).await;
    if orphans > 0 {
        tracing::info!(orphans, "removed orphaned probe pods");
    }
    let mut wanting = ctx.service_accounts().wanting_irsa();
    // ServiceAccounts with an EKS Pod Identity association ask for a role too, annotated or not:
    // one paginated list of the cluster's associations per sweep (cached). An association whose
    // ServiceAccount does not exist is diagnosed too: its pods run as the node's role.
    let mut missing = Vec::new();
    if let Some(cluster) = ctx.cluster_name() {
        match ctx
            .aws()
            .pod_identity_association_list(&irsa_aws::Lane::Operator, cluster, None)
            .await
        {
            Ok(associations) => {
                ctx.set_associated(
                    associations
                        .iter()
                        .map(|a| (a.namespace.clone(), a.service_account.clone()))
                        .collect(),
                );
                let known: HashSet<(String, String)> = wanting.iter().cloned().collect();
                let pairs: std::collections::BTreeSet<(String, String)> = associations
                    .into_iter()
                    .map(|a| (a.namespace, a.service_account))
                    .filter(|pair| !known.contains(pair))
                    .filter(|(namespace, _)| ctx.service_accounts().watches(namespace))
                    .collect();
                for (namespace, name) in pairs {
                    if ctx.service_accounts().cached(&namespace, &name).is_some() {
                        wanting.push((namespace, name));
                    } else {
                        missing.push((namespace, name));
                    }
                }
            }
            Err(u) => {
                tracing::warn!(detail = %u.detail, "listing EKS Pod Identity associations failed")
            }
        }
    }
    for (namespace, name) in &missing {
        diagnose_missing(ctx, namespace, name).await;
    }
    // Counts and Event memory cover every IRSA ServiceAccount, those an IrsaCheck diagnoses too.
    let live: HashSet<(String, String)> = wanting.iter().chain(&missing).cloned().collect();
    // Those an IrsaCheck names report through their check. Names only, by namespace: each
    // namespace's ServiceAccounts are read from the cache when it is swept.
    let mut by_namespace: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut total = 0;
    for (namespace, name) in wanting {
        if !ctx.checks().is_named(&namespace, &name) {
            total += 1;
            by_namespace.entry(namespace).or_default().push(name);
        }
    }
    // A batch at a time, of at most BATCH ServiceAccounts of one namespace: their AWS facts,
    // which say which audit each one's pods get; then one paginated pod list, keeping only the
    // pods with something to report; then the diagnoses. Memory holds one batch's facts and one
    // page of pods, however large the namespace. Namespaces take turns, a batch each, so that a
    // small namespace never waits for the whole of a large one.
    for (namespace, batch) in interleaved(&by_namespace, BATCH) {
        sweep_batch(ctx, namespace, batch, concurrency).await;
    }
    ctx.verdicts().retain(&live);
    ctx.verdicts().swept();
    ctx.metrics().set_service_accounts(&ctx.verdicts().counts());
    let checks = ctx.checks().checks();
    ctx.retain_written(&checks);
    ctx.metrics().retain_checks(&checks);
    tracing::info!(
        service_accounts = total,
        took_ms = timer.ms(),
        "sweep finished"
    );
}

/// The batches of at most `size` names of each namespace, the namespaces taking turns: every
/// namespace's first batch, then every second batch, and so on.
fn interleaved(
    by_namespace: &BTreeMap<String, Vec<String>>,
    size: usize,
) -> Vec<(&str, &[String])> {
    let mut turns: Vec<_> = by_namespace
        .iter()
        .map(|(namespace, names)| (namespace.as_str(), names.chunks(size.max(1))))
        .collect();
    let mut order = Vec::new();
    loop {
        let before = order.len();
        for (namespace, batches) in &mut turns {
            if let Some(batch) = batches.next() {
                order.push((*namespace, batch));
            }
        }
        if order.len() == before {
            return order;
        }
    }
}

/// Diagnoses `names` of `namespace`: their AWS facts, one pod list for them all, then the
/// diagnoses.
async fn sweep_batch(ctx: &Context, namespace: &str, names: &[String], concurrency: usize) {
    // Changed or deleted since the names were taken: the watch has dealt with it.
    let accounts: Vec<ServiceAccount> = names
        .iter()
        .filter_map(|name| ctx.service_accounts().cached(namespace, name))
        .collect();
    let gathered: Vec<(Facts, Duration)> = futures::stream::iter(accounts)
        .map(|sa| gather(ctx, sa))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let audits: HashMap<&str, PodAudit<'_>> = gathered
        .iter()
        .map(|(facts, _)| (facts.name.as_str(), in_force(facts).pod_audit()))
        .collect();
    let listed = workloads::pods_by_service_account(
        ctx.client(),
        ctx.prober().admission(),
        namespace,
        &ctx.prober().live_probe_pods(),
        |name| audits.get(name).copied(),
    )
    .await;
    drop(audits);
    let (mut pods, failed) = match listed {
        Ok(pods) => (pods, None),
        Err(u) => (HashMap::new(), Some(u)),
    };
    futures::stream::iter(gathered)
        .map(|(facts, spent)| {
            let pods_of_sa = match &failed {
                Some(u) => Fact::Unavailable(u.clone()),
                None => Fact::Known(pods.remove(&facts.name).unwrap_or_default()),
            };
            conclude(ctx, facts, pods_of_sa, spent)
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<()>>()
        .await;
}

/// Sweeps once every ServiceAccount cache has listed, then every `interval`, until dropped.
pub async fn run(
    ctx: Arc<Context>,
    synced: Synced,
    namespaces: Vec<WatchNamespace>,
    interval: Duration,
    concurrency: usize,
) {
    // IrsaChecks too: those they name are not swept.
    synced.done().await;
    loop {
        full_sweep(&ctx, &namespaces, concurrency).await;
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_take_turns_a_batch_each() {
        let names = |n: usize| (0..n).map(|i| format!("sa-{i}")).collect::<Vec<_>>();
        // "a-large" sorts first and holds ten batches; "b-small" one ServiceAccount.
        let by_namespace = BTreeMap::from([
            ("a-large".to_string(), names(5_000)),
            ("b-small".to_string(), names(1)),
            ("c-mid".to_string(), names(700)),
        ]);
        let order: Vec<(&str, usize)> = interleaved(&by_namespace, 500)
            .into_iter()
            .map(|(ns, batch)| (ns, batch.len()))
            .collect();
        assert_eq!(
            order[..4],
            [
                ("a-large", 500),
                ("b-small", 1),
                ("c-mid", 500),
                ("a-large", 500)
            ]
        );
        assert_eq!(order[4], ("c-mid", 200));
        assert_eq!(order.len(), 10 + 1 + 2);
        assert_eq!(order.iter().map(|(_, n)| n).sum::<usize>(), 5_701);
    }
}
