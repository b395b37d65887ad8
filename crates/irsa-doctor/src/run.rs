//! `irsa-doctor run`: the operator. Elects a leader, discovers the issuer, watches IrsaChecks
//! and ServiceAccounts (metadata only) in the watched namespaces, and shuts down gracefully.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use futures::{future, StreamExt};
use irsa_aws::AwsFacts;
use irsa_core::Fact;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::{mpsc, watch};

use crate::config::RunArgs;
use crate::context::{Context, SaStore};
use crate::controller::{error_policy, reconcile, FIELD_MANAGER};
use crate::crd::IrsaCheck;
use crate::http::{self, Health};
use crate::issuer;
use crate::metrics::Metrics;
use crate::probe::Prober;
use crate::sweep::{self, Scope};
use crate::telemetry;

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// SIGTERM or SIGINT → stop.
fn on_signals(stop: watch::Sender<bool>) {
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
}

/// Waits to hold the Lease; losing it later stops this replica (it restarts as a follower).
async fn lead(
    client: &kube::Client,
    args: &RunArgs,
    health: &Health,
    stop: watch::Sender<bool>,
) -> anyhow::Result<watch::Receiver<bool>> {
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("irsa-doctor-{}", std::process::id()));
    let manager = LeaseManagerBuilder::new(client.clone(), "irsa-doctor")
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_duration(15)
        .with_grace(5)
        .with_field_manager(FIELD_MANAGER)
        .build()
        .await
        .with_context(|| {
            format!(
                "setting up leader election (Lease irsa-doctor in {})",
                args.lease_namespace
            )
        })?;
    let (mut leader, _task) = manager.watch().await;
    tracing::info!(%identity, "waiting for leadership");
    // A standby is healthy: readiness must not wait for the Lease, or rolling updates and
    // node drains would block on the replica that can never lead while the old one does.
    health.set_ready(true);
    let mut stop_rx = stop.subscribe();
    tokio::select! {
        r = leader.wait_for(|l| *l) => { r.context("leader election stopped")?; }
        _ = stop_rx.wait_for(|s| *s) => anyhow::bail!("stopped before becoming leader"),
    }
    tracing::info!(%identity, "became leader");
    health.set_ready(false);
    let mut lost = leader.clone();
    tokio::spawn(async move {
        if lost.wait_for(|l| !*l).await.is_ok() {
            tracing::warn!("lost leadership; stopping");
            let _ = stop.send(true);
        }
    });
    Ok(leader)
}

/// Runs the operator until stopped.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let client = crate::kube_client::client().await?;
    let aws = Arc::new(AwsFacts::from_env(&args.aws.config()).await);
    let metrics = Arc::new(Metrics::new(aws.clone()));
    let health = Arc::new(Health::default());
    let (stop, stop_rx) = watch::channel(false);
    on_signals(stop.clone());
    let server = tokio::spawn(http::serve(
        args.metrics_addr,
        metrics.clone(),
        health.clone(),
        stopped(stop_rx.clone()),
    ));

    // Kept alive for as long as we lead: dropping it releases the Lease.
    let _leadership = if args.leader_election {
        Some(lead(&client, &args, &health, stop.clone()).await?)
    } else {
        None
    };

    let issuer = issuer::discover_fact(
        args.issuer.issuer.as_deref(),
        args.issuer.cluster_name.as_deref(),
        &aws,
        &client,
    )
    .await;

    let namespaces: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let mut sa_stores: Vec<(Option<String>, SaStore)> = Vec::new();
    let mut sa_streams = Vec::new();
    let mut check_parts = Vec::new();
    for ns in &namespaces {
        // Metadata only: annotations are all the diagnosis reads of a ServiceAccount.
        let sa_api: Api<PartialObjectMeta<ServiceAccount>> = match ns {
            Some(n) => Api::namespaced(client.clone(), n),
            None => Api::all(client.clone()),
        };
        let (sa_reader, sa_writer) = reflector::store();
        sa_streams.push(
            watcher(sa_api, watcher::Config::default())
                .default_backoff()
                .reflect(sa_writer)
                .boxed(),
        );
        sa_stores.push((ns.clone(), sa_reader));
        let check_api: Api<IrsaCheck> = match ns {
            Some(n) => Api::namespaced(client.clone(), n),
            None => Api::all(client.clone()),
        };
        let (check_reader, check_writer) = reflector::store();
        // Status writes do not change the generation, so they do not re-trigger the check.
        let checks = watcher(check_api, watcher::Config::default())
            .default_backoff()
            .reflect(check_writer)
            .applied_objects()
            .predicate_filter(predicates::generation, Default::default());
        let (trigger, triggers) = mpsc::unbounded_channel::<ObjectRef<IrsaCheck>>();
        check_parts.push((ns.clone(), checks, check_reader, trigger, triggers));
    }

    // One task waits for the caches' initial lists and tells everyone else through a watch channel.
    let (synced_tx, synced_rx) = watch::channel(false);
    {
        let stores: Vec<SaStore> = sa_stores.iter().map(|(_, s)| s.clone()).collect();
        tokio::spawn(async move {
            for store in &stores {
                let _ = store.wait_until_ready().await;
            }
            let _ = synced_tx.send(true);
        });
    }
    let ctx = Arc::new(Context {
        client: client.clone(),
        aws,
        issuer: RwLock::new(issuer),
        recorder: Recorder::new(client.clone(), Reporter::from(FIELD_MANAGER)),
        metrics,
        service_accounts: sa_stores.clone(),
        service_accounts_synced: synced_rx.clone(),
        prober: Prober::new(client.clone(), args.probe()),
        verdicts: Mutex::new(Default::default()),
    });
    let orphans = ctx.prober.sweep_orphans(&namespaces).await;
    if orphans > 0 {
        tracing::info!(orphans, "removed probe pods left by an earlier run");
    }

    // Keep looking for the issuer until it is known; ready once it is and the caches synced.
    {
        let (ctx, health, args) = (ctx.clone(), health.clone(), args.clone());
        let mut synced = synced_rx.clone();
        tokio::spawn(async move {
            // The IrsaCheck caches are awaited by their controllers; waiting here too would
            // compete for kube's single-waiter readiness signal.
            let _ = synced.wait_for(|s| *s).await;
            while !matches!(ctx.issuer(), Fact::Known(_)) {
                tokio::time::sleep(Duration::from_secs(15)).await;
                let found = issuer::discover_fact(
                    args.issuer.issuer.as_deref(),
                    args.issuer.cluster_name.as_deref(),
                    &ctx.aws,
                    &ctx.client,
                )
                .await;
                *ctx.issuer.write().unwrap_or_else(|p| p.into_inner()) = found;
            }
            health.set_ready(true);
        });
    }

    let mut scopes = Vec::new();
    let mut controllers = Vec::new();
    for (ns, checks, reader, trigger, triggers) in check_parts {
        scopes.push(Scope {
            namespace: ns,
            checks: reader.clone(),
            trigger,
        });
        let triggers = futures::stream::unfold(triggers, |mut rx| async move {
            rx.recv().await.map(|r| (r, rx))
        });
        controllers.push(
            Controller::for_stream(checks, reader)
                .reconcile_on(triggers)
                .with_config(ControllerConfig::default().concurrency(args.concurrency))
                .graceful_shutdown_on(stopped(stop_rx.clone()))
                .run(reconcile, error_policy, ctx.clone())
                .for_each(|_| future::ready(())),
        );
    }
    let sweeper = sweep::run(
        ctx.clone(),
        scopes,
        namespaces.clone(),
        futures::stream::select_all(sa_streams),
        args.sweep_interval,
        usize::from(args.concurrency),
        stopped(stop_rx.clone()),
    );
    tokio::join!(future::join_all(controllers), sweeper);
    let _ = stop.send(true);
    server.await.context("the metrics server task failed")??;
    tracing::info!("stopped");
    Ok(())
}
