//! ServiceAccount changes, as the metadata watch reports them: a change to the annotations the
//! diagnosis reads (as the cache tells, [`super::service_accounts::Cache::apply`]) re-runs
//! the IrsaChecks that name the ServiceAccount, or its own diagnosis when none does, and so do
//! the changes a re-list finds after the watch was down; a deletion forgets its verdict. Runs
//! beside the sweep, with its own concurrency bound.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use irsa_core::ServiceAccount;
use kube::core::DynamicObject;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::context::Context;
use super::diagnosis::diagnose_service_account;
use super::recovery::Subject;
use super::service_accounts::{Changed, SaEvent};
use crate::api::dynamic_resource as resource;
use crate::gather;

/// Handles the watch's events until the stream ends.
pub async fn run(
    ctx: Arc<Context>,
    events: impl Stream<Item = Result<SaEvent, watcher::Error>>,
    trigger: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    concurrency: usize,
) {
    let mut events = std::pin::pin!(events);
    let mut handler = Handler {
        ctx,
        trigger,
        permits: Arc::new(Semaphore::new(concurrency.max(1))),
        diagnoses: JoinSet::new(),
    };
    while let Some(event) = events.next().await {
        while handler.diagnoses.try_join_next().is_some() {}
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "ServiceAccount watch failed; retrying with backoff");
                continue;
            }
        };
        let SaEvent { event, changed } = event;
        match (event, changed) {
            (watcher::Event::Delete(sa), _) => {
                let key = (
                    sa.metadata.namespace.clone().unwrap_or_default(),
                    sa.metadata.name.clone().unwrap_or_default(),
                );
                handler.ctx.verdicts().forget(&key.0, &key.1);
                handler
                    .ctx
                    .recovery()
                    .forget(&Subject::ServiceAccount(key.0.clone(), key.1.clone()));
            }
            // Only a new ServiceAccount or an annotation change asks for a new verdict.
            (watcher::Event::Apply(meta), Changed::This) => {
                let sa = gather::service_account(&meta.metadata);
                let deleting = meta.metadata.deletion_timestamp.is_some();
                let (namespace, name) = (sa.namespace.clone(), sa.name.clone());
                if !handler
                    .changed(&namespace, &name, (!deleting).then_some(sa))
                    .await
                {
                    return;
                }
            }
            // A re-list completed: what changed while the watch was down, read from the cache
            // that now holds the list (a ServiceAccount being deleted is not there).
            (_, Changed::WhileAway(names)) => {
                tracing::info!(
                    service_accounts = names.len(),
                    "ServiceAccounts changed while the watch was down"
                );
                for (namespace, name) in names {
                    let sa = handler.ctx.service_accounts().cached(&namespace, &name);
                    if !handler.changed(&namespace, &name, sa).await {
                        return;
                    }
                }
            }
            // The first list is diagnosed by the sweep; unchanged objects need nothing.
            _ => {}
        }
    }
}

/// What a change starts: the IrsaChecks naming the ServiceAccount, or its own diagnosis.
struct Handler {
    ctx: Arc<Context>,
    trigger: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    permits: Arc<Semaphore>,
    /// Diagnoses in flight; dropped (and so aborted) with the handler.
    diagnoses: JoinSet<()>,
}

impl Handler {
    /// Re-runs the IrsaChecks that name ServiceAccount `namespace`/`name`, or, when none does,
    /// diagnoses `sa` (`None` while it is being deleted) if it asks for a role. `false` once
    /// the handler is shutting down.
    async fn changed(&mut self, namespace: &str, name: &str, sa: Option<ServiceAccount>) -> bool {
        let ar = resource();
        let checks = self.ctx.checks().naming(namespace, name);
        for check in &checks {
            let _ = self
                .trigger
                .send(ObjectRef::new_with(check, ar.clone()).within(namespace));
        }
        let Some(sa) = sa else {
            return true;
        };
        if checks.is_empty() && (sa.wants_irsa() || self.ctx.is_associated(namespace, name)) {
            // Bounded parallelism; waiting for a permit holds the watch back, not the sweep.
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                return false;
            };
            let ctx = self.ctx.clone();
            self.diagnoses.spawn(async move {
                diagnose_service_account(&ctx, sa).await;
                drop(permit);
            });
        }
        true
    }
}
