//! `irsa-doctor run`: the operator. Checks that its CRD is installed, elects a leader, discovers
//! the issuer, watches IrsaChecks and ServiceAccounts (metadata only) in the watched
//! namespaces, and owns every task it starts: when one dies the operator exits with its error;
//! on SIGTERM it stops its controllers, deletes in-flight probe pods and releases the Lease.

mod associations;
mod backoff;
mod changes;
mod config;
mod context;
mod diagnosis;
mod error;
mod events;
mod http;
mod index;
mod leader;
mod metrics;
mod policy_report;
pub mod probe;
mod probe_slots;
mod reconcile;
mod recovery;
mod service_accounts;
mod signals;
mod status;
mod stopwatch;
mod sweep;
mod sync;
mod text;
mod verdicts;
mod watch_namespace;
mod watches;

use std::sync::Arc;
use std::time::Duration;

use irsa_aws::AwsFacts;
use irsa_core::Fact;
use tokio::task::JoinSet;

pub use config::Config;
pub use context::Tenancy;
pub use error::Error;
pub use events::NOTE_MAX_BYTES;
pub use leader::LEASE_NAME;
pub use policy_report::PolicyReportsMode;
pub use probe_slots::ProbeSlots;
pub use watch_namespace::WatchNamespace;

use crate::gather::admission::Admission;
use crate::gather::issuer;
use context::Context;
use events::Publisher;
use leader::Leadership;
use metrics::Metrics;
use probe::Prober;
use signals::{Signals, ABORTED};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "irsa-doctor";

/// Everything left after SIGTERM (probe pods deleted, Lease released) must fit in this.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(4);
/// How often an unknown issuer is looked for again.
const ISSUER_RETRY: Duration = Duration::from_secs(15);
/// How long a namespace's labels (what a webhook's namespaceSelector matches) are reused.
const NAMESPACE_LABELS_TTL: Duration = Duration::from_secs(60);

/// How the operator ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A signal asked it to stop, and it did, cleanly.
    Gracefully,
    /// A second signal cut the shutdown short.
    Aborted,
}

impl Stopped {
    /// The process exit status.
    pub fn exit_code(self) -> u8 {
        match self {
            Stopped::Gracefully => 0,
            Stopped::Aborted => ABORTED,
        }
    }
}

/// Checks that the IrsaCheck CRD is served, through discovery (which every identity may read).
async fn preflight(client: &kube::Client) -> Result<(), Error> {
    let group = format!(
        "{}/{}",
        crate::api::dynamic_resource().group,
        crate::api::dynamic_resource().version
    );
    match client.list_api_group_resources(&group).await {
        Ok(list) if list.resources.iter().any(|r| r.name == "irsachecks") => Ok(()),
        Ok(_) => Err(Error::CrdMissing {
            detail: format!("{group} does not serve irsachecks"),
        }),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::CrdMissing {
            detail: format!("the API server does not serve {group}"),
        }),
        Err(e) => Err(Error::Preflight(e)),
    }
}

/// Runs the operator until a signal stops it or something it depends on fails.
pub async fn run(args: Config) -> Result<Stopped, Error> {
    crate::telemetry::init(args.log_format);
    let mut signals = Signals::listen();
    let client = crate::client::client().await?;
    preflight(&client).await?;
    let aws = Arc::new(AwsFacts::from_env(&args.aws).await);
    let metrics = Arc::new(Metrics::new(aws.clone()));
    let health = Arc::new(http::Health::default());
    let mut tasks: JoinSet<(&'static str, Result<(), Error>)> = JoinSet::new();
    let listener = http::bind(args.metrics_addr).await?;
    {
        let (metrics, health) = (metrics.clone(), health.clone());
        tasks.spawn(async move { ("http", http::serve(listener, metrics, health).await) });
    }
    {
        let (client, health) = (client.clone(), health.clone());
        tasks.spawn(async move {
            http::probe_api(client, health).await;
            ("API server probe", Ok(()))
        });
    }

    let mut leadership = None;
    if args.leader_election {
        let identity = args.identity.clone();
        let owner = args.pod_uid.clone().map(|uid| (identity.clone(), uid));
        let mut lease = Leadership::start(&client, &args.lease_namespace, &identity, owner).await?;
        tracing::info!(%identity, "waiting for leadership");
        // A standby that reaches the API server is ready: readiness must not wait for the
        // Lease, or rolling updates and node drains would block on the replica that can never
        // lead while the old one does.
        health.set_ready(true);
        tokio::select! {
            r = lease.acquired() => r?,
            _ = signals.next() => {
                lease.release(SHUTDOWN_BOUND).await;
                return Ok(Stopped::Gracefully);
            }
            Some(ended) = tasks.join_next() => return Err(task_ended(ended)),
        }
        tracing::info!(%identity, "became leader");
        health.set_ready(false);
        leadership = Some(lease);
    }

    let namespaces = args.namespaces.clone();
    let issuer = issuer::discover_fact(
        args.issuer.as_deref(),
        args.cluster_name.as_deref(),
        &aws,
        &client,
    )
    .await;
    let (watched, service_accounts) = watches::start(&client, &namespaces);
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            aws,
            issuer,
            Publisher::new(client.clone(), &args.identity),
            metrics,
            service_accounts,
            watched.checks.clone(),
            Prober::new(
                client.clone(),
                args.probe.clone(),
                Arc::new(Admission::watched(
                    client.clone(),
                    watched.webhooks.clone(),
                    NAMESPACE_LABELS_TTL,
                )),
            ),
        )
        .with_tenancy(args.tenancy.clone())
        .with_cluster_name(args.cluster_name.clone())
        .with_observations(args.observations),
    );
    let orphans = ctx.prober().sweep_orphans(&namespaces).await;
    if orphans > 0 {
        tracing::info!(orphans, "removed probe pods left by an earlier run");
    }
    let synced = watched.all_synced.clone();
    watched.spawn(&mut tasks, &ctx, &args, &namespaces);
    {
        let (ctx, health, args) = (ctx.clone(), health.clone(), args.clone());
        tasks.spawn(async move {
            become_ready(&ctx, &health, &args, &synced).await;
            ("readiness", Ok(()))
        });
    }

    let outcome = loop {
        tokio::select! {
            _ = signals.next() => break Ok(()),
            error = async { leadership.as_mut().expect("guarded").lost().await }, if leadership.is_some() => break Err(error),
            Some(ended) = tasks.join_next() => match ended {
                Ok(("readiness", Ok(()))) => {}
                other => break Err(task_ended(other)),
            },
        }
    };
    health.set_ready(false);
    match &outcome {
        Ok(()) => tracing::info!("stopping"),
        Err(e) => tracing::error!(error = %e, "stopping"),
    }
    // Stop every controller and task first, so no probe pod is created after the deletions.
    tasks.abort_all();
    let shutdown = async {
        while tasks.join_next().await.is_some() {}
        ctx.prober().delete_in_flight().await;
        if let Some(lease) = leadership {
            lease.release(SHUTDOWN_BOUND).await;
        }
    };
    let stopped = tokio::select! {
        r = tokio::time::timeout(SHUTDOWN_BOUND, shutdown) => {
            if r.is_err() {
                tracing::warn!("shutdown took longer than {SHUTDOWN_BOUND:?}; exiting anyway");
            }
            Stopped::Gracefully
        }
        _ = signals.next() => {
            tracing::warn!("second signal: aborting the shutdown");
            Stopped::Aborted
        }
    };
    tracing::info!("stopped");
    outcome.map(|()| stopped)
}

/// The error for a task that ended although it should run for as long as the operator.
fn task_ended(ended: Result<(&'static str, Result<(), Error>), tokio::task::JoinError>) -> Error {
    match ended {
        Ok((_, Err(e))) => e,
        Ok((task, Ok(()))) => Error::TaskEnded {
            task,
            detail: String::new(),
        },
        Err(e) => Error::TaskEnded {
            task: "an operator",
            detail: format!(": {e}"),
        },
    }
}

/// Ready once every watch has listed and the issuer is known; looks for the issuer until then.
async fn become_ready(ctx: &Context, health: &http::Health, args: &Config, synced: &sync::Synced) {
    synced.done().await;
    while !matches!(ctx.issuer(), Fact::Known(_)) {
        tokio::time::sleep(ISSUER_RETRY).await;
        ctx.set_issuer(
            issuer::discover_fact(
                args.issuer.as_deref(),
                args.cluster_name.as_deref(),
                ctx.aws(),
                ctx.client(),
            )
            .await,
        );
    }
    health.set_ready(true);
    tracing::info!("ready: every watch has listed and the issuer is known");
}
