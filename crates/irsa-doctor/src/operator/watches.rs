//! The watches, one set per watched namespace: ServiceAccounts (metadata only, stripped, kept
//! compactly) and IrsaChecks (as dynamic objects), plus one of the mutating webhook
//! configurations; the caches and indexes they feed, and the tasks that consume them — the
//! controller, the change handler, the sweep and the PolicyReport writer.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{future, StreamExt};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::backoff::relisting;
use super::config::Config;
use super::context::Context;
use super::error::Error;
use super::index::CheckIndex;
use super::policy_report::{self, PolicyReportsMode};
use super::reconcile::{error_policy, reconcile};
use super::service_accounts::{strip, Cache, SaEvent, ServiceAccounts};
use super::sync::Synced;
use super::watch_namespace::WatchNamespace;
use super::{associations, changes, recovery, status, sweep};
use crate::api::dynamic_resource as resource;
use crate::gather::admission;

type SaEvents = BoxStream<'static, Result<SaEvent, watcher::Error>>;
type CheckObjects = BoxStream<'static, Result<DynamicObject, watcher::Error>>;
type Drained = futures::future::BoxFuture<'static, ()>;

/// One namespace's watches, started but not yet consumed.
struct Scope {
    service_accounts: SaEvents,
    checks: CheckObjects,
    check_store: reflector::Store<DynamicObject>,
}

/// Every watch of the operator, with the caches and indexes they feed.
pub struct Watches {
    scopes: Vec<Scope>,
    /// IrsaChecks by the ServiceAccount they name.
    pub checks: Arc<CheckIndex>,
    /// Turns once every watch, IrsaChecks included, has listed.
    pub all_synced: Synced,
    /// The mutating webhook configurations, kept current by their own watch.
    pub webhooks: reflector::Store<MutatingWebhookConfiguration>,
    webhook_watch: Drained,
}

/// A watch error is logged (the stream relists or backs off and retries by itself).
fn log_error<K>(what: &'static str) -> impl FnMut(&Result<K, watcher::Error>) {
    move |r| {
        if let Err(e) = r {
            tracing::warn!(error = %e, "{what} watch failed; retrying with backoff");
        }
    }
}

/// Starts the watches of `namespaces` (they run as they are polled), with the ServiceAccount
/// caches they fill.
pub fn start(client: &kube::Client, namespaces: &[WatchNamespace]) -> (Watches, ServiceAccounts) {
    let sa_synced = Synced::new(namespaces.len());
    let all_synced = Synced::new(2 * namespaces.len());
    let checks = Arc::new(CheckIndex::default());
    let ar = resource();
    let mut scopes = Vec::new();
    let mut sa_stores = Vec::new();
    for ns in namespaces {
        let cache = Arc::new(Cache::default());
        let (mut sa_listed, mut all_listed) = (sa_synced.tracker(), all_synced.tracker());
        // Metadata only: annotations are all the diagnosis reads of a ServiceAccount.
        let service_accounts = relisting(watcher(
            ns.api::<PartialObjectMeta<ServiceAccount>>(client),
            watcher::Config::default(),
        ))
        .modify(strip)
        .inspect(log_error("ServiceAccount"))
        .map({
            let cache = cache.clone();
            move |e| {
                e.map(|event| {
                    let changed = cache.apply(&event);
                    sa_listed(&event);
                    all_listed(&event);
                    SaEvent { event, changed }
                })
            }
        })
        .boxed();
        sa_stores.push((ns.clone(), cache));

        let writer = reflector::store::Writer::new(ar.clone());
        let check_store = writer.as_reader();
        let (index, mut listed) = (checks.clone(), all_synced.tracker());
        // Status writes do not change the generation, so they do not re-trigger the check.
        let check_objects = relisting(watcher(
            ns.api_with(client, &ar),
            watcher::Config::default(),
        ))
        .modify(status::keep_what_reconcile_reads)
        .reflect(writer)
        .inspect(log_error("IrsaCheck"))
        .inspect(move |e| {
            if let Ok(e) = e {
                index.observe(e);
                listed(e);
            }
        })
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default())
        // Errors were logged above and the watch relists or backs off by itself: the
        // controller would back off again (up to 30 s) before reading on.
        .filter(|r| future::ready(r.is_ok()))
        .boxed();
        scopes.push(Scope {
            service_accounts,
            checks: check_objects,
            check_store,
        });
    }
    let (webhooks, webhook_watch) = watch_webhooks(client);
    let watches = Watches {
        scopes,
        checks,
        all_synced,
        webhooks,
        webhook_watch,
    };
    (watches, ServiceAccounts::new(sa_stores, sa_synced))
}

/// The mutating webhook configurations' store and the watch that fills it (to be polled).
/// Cluster-scoped and few: watched whatever the namespaces, so that reading them costs no
/// request per sweep and a fixed registration is seen at once.
fn watch_webhooks(
    client: &kube::Client,
) -> (reflector::Store<MutatingWebhookConfiguration>, Drained) {
    let writer = reflector::store::Writer::default();
    let store = writer.as_reader();
    let watch = relisting(watcher(
        Api::<MutatingWebhookConfiguration>::all(client.clone()),
        watcher::Config::default(),
    ))
    .modify(admission::strip_configuration)
    .reflect(writer)
    .inspect(log_error("MutatingWebhookConfiguration"))
    .for_each(|_| future::ready(()));
    (store, Box::pin(watch))
}

/// Logs what the controller could not do (reconcile failures are logged by the error policy).
fn log_controller_error<E: std::error::Error>(
    result: Result<
        (ObjectRef<DynamicObject>, controller::Action),
        controller::Error<E, watcher::Error>,
    >,
) -> future::Ready<()> {
    match result {
        Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(e) => tracing::warn!(error = %e, "IrsaCheck controller error"),
    }
    future::ready(())
}

impl Watches {
    /// Spawns, into `tasks`, each namespace's controller and change handler, the sweep and,
    /// unless `--policy-reports=off`, the PolicyReport writer.
    pub fn spawn(
        self,
        tasks: &mut JoinSet<(&'static str, Result<(), Error>)>,
        ctx: &Arc<Context>,
        args: &Config,
        namespaces: &[WatchNamespace],
    ) {
        let concurrency = args.concurrency;
        for (scope, namespace) in self.scopes.into_iter().zip(namespaces) {
            let (trigger, triggers) = mpsc::unbounded_channel::<ObjectRef<DynamicObject>>();
            ctx.register_trigger(namespace.clone(), trigger.clone());
            let triggers = futures::stream::unfold(triggers, |mut rx| async move {
                rx.recv().await.map(|r| (r, rx))
            });
            let controller =
                Controller::for_stream_with(scope.checks, scope.check_store, resource())
                    .reconcile_on(triggers)
                    .with_config(
                        ControllerConfig::default()
                            .concurrency(u16::try_from(concurrency).unwrap_or(u16::MAX)),
                    )
                    .run(reconcile, error_policy, ctx.clone())
                    .for_each(log_controller_error);
            tasks.spawn(async move {
                controller.await;
                ("IrsaCheck controller", Ok(()))
            });
            let ctx = ctx.clone();
            tasks.spawn(async move {
                changes::run(ctx, scope.service_accounts, trigger, concurrency).await;
                ("ServiceAccount watch", Ok(()))
            });
        }
        if args.policy_reports != PolicyReportsMode::Off {
            let (ctx, namespaces, mode) = (ctx.clone(), namespaces.to_vec(), args.policy_reports);
            tasks.spawn(async move {
                policy_report::run(ctx, namespaces, mode).await;
                ("PolicyReport writer", Ok(()))
            });
        }
        if let Some(cluster) = ctx.cluster_name().map(str::to_string) {
            let (ctx, synced) = (ctx.clone(), self.all_synced.clone());
            let poll = args.association_poll_interval;
            tasks.spawn(async move {
                synced.done().await;
                associations::run(ctx, cluster, poll).await;
                ("EKS Pod Identity association poller", Ok(()))
            });
        }
        let webhook_watch = self.webhook_watch;
        tasks.spawn(async move {
            webhook_watch.await;
            ("MutatingWebhookConfiguration watch", Ok(()))
        });
        let recovering = ctx.clone();
        tasks.spawn(async move {
            recovery::run(recovering, concurrency).await;
            ("recovery", Ok(()))
        });
        let (ctx, synced) = (ctx.clone(), self.all_synced.clone());
        let (namespaces, interval) = (namespaces.to_vec(), args.sweep_interval);
        tasks.spawn(async move {
            sweep::run(ctx, synced, namespaces, interval, concurrency).await;
            ("sweep", Ok(()))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gather::admission::Admission;
    use control_plane::ControlPlane;
    use kube::api::PostParams;
    use std::time::{Duration, Instant};

    /// A registration created after the first read is seen within moments (a listed answer
    /// would be reused for its minute), kept without its CA bundle.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webhook_registrations_are_watched() {
        let plane = ControlPlane::start().await.unwrap();
        let client = plane.client().unwrap();
        let (store, watch) = watch_webhooks(&client);
        let watching = tokio::spawn(watch);
        let admission = Admission::watched(client.clone(), store.clone(), Duration::from_secs(60));
        assert_eq!(admission.webhooks().await.map(|w| w.len()), Some(0));

        let configuration: MutatingWebhookConfiguration =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "pod-identity-webhook"},
                "webhooks": [{
                    "name": "iam-for-pods.amazonaws.com",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Ignore",
                    "clientConfig": {"url": "https://127.0.0.1:1/mutate", "caBundle": "Y2E="},
                    "namespaceSelector": {"matchLabels": {"irsa": "on"}},
                }],
            }))
            .unwrap();
        Api::<MutatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &configuration)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let seen = loop {
            let seen = admission.webhooks().await.unwrap_or_default();
            if !seen.is_empty() || Instant::now() > deadline {
                break seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(seen.len(), 1, "the new registration, from the watch");
        assert!(seen[0].ignore_failures);
        assert_eq!(
            seen[0].name,
            "pod-identity-webhook/iam-for-pods.amazonaws.com"
        );
        let kept = store.state();
        assert_eq!(
            kept[0].webhooks.as_ref().unwrap()[0]
                .client_config
                .ca_bundle,
            None
        );
        watching.abort();
    }
}
