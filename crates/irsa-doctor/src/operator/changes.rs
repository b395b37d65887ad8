//! ServiceAccount changes, as the metadata watch reports them: a change to the annotations the
//! diagnosis reads (as the cache tells, [`super::service_accounts::Cache::apply`]) re-runs
//! the IrsaChecks that name the ServiceAccount, or its own diagnosis when none does; a
//! deletion forgets its verdict. Runs beside the sweep, with its own concurrency bound.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::core::DynamicObject;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::context::Context;
use super::diagnosis::diagnose_service_account;
use super::recovery::Subject;
use super::service_accounts::SaEvent;
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
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let ar = resource();
    // Diagnoses in flight; dropped (and so aborted) with this task.
    let mut diagnoses = JoinSet::new();
    while let Some(event) = events.next().await {
        while diagnoses.try_join_next().is_some() {}
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "ServiceAccount watch failed; retrying with backoff");
                continue;
            }
        };
        let SaEvent { event, changed } = event;
        match event {
            // The initial list is diagnosed by the sweep.
            watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::InitDone => {}
            watcher::Event::Delete(sa) => {
                let key = (
                    sa.metadata.namespace.clone().unwrap_or_default(),
                    sa.metadata.name.clone().unwrap_or_default(),
                );
                ctx.verdicts().forget(&key.0, &key.1);
                ctx.recovery()
                    .forget(&Subject::ServiceAccount(key.0.clone(), key.1.clone()));
            }
            // Only a new ServiceAccount or an annotation change asks for a new verdict.
            watcher::Event::Apply(_) if !changed => {}
            watcher::Event::Apply(meta) => {
                let sa = gather::service_account(&meta.metadata);
                let checks = ctx.checks().naming(&sa.namespace, &sa.name);
                for check in &checks {
                    let _ =
                        trigger.send(ObjectRef::new_with(check, ar.clone()).within(&sa.namespace));
                }
                if checks.is_empty()
                    && (sa.wants_irsa() || ctx.is_associated(&sa.namespace, &sa.name))
                    && meta.metadata.deletion_timestamp.is_none()
                {
                    // Bounded parallelism; waiting for a permit holds the watch back, not the sweep.
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    let ctx = ctx.clone();
                    diagnoses.spawn(async move {
                        diagnose_service_account(&ctx, sa).await;
                        drop(permit);
                    });
                }
            }
        }
    }
}
