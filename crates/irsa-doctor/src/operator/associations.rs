//! EKS Pod Identity associations seen as they change, not only at the next sweep: the cluster's
//! associations are listed every `--association-poll-interval` (1 minute by default), and each
//! ServiceAccount whose association appeared or went away is diagnosed at once (or the IrsaChecks
//! naming it re-run). An association created or deleted is so seen within one poll; one whose
//! role changed keeps its id, so that is seen when its description expires from the cache (the
//! role TTL, 5 minutes by default) at the next diagnosis of the ServiceAccount.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::context::Context;
use super::diagnosis::diagnose_again;

/// (namespace, ServiceAccount, association id) of every association.
type Listed = BTreeSet<(String, String, String)>;

/// Lists `cluster`'s associations every `poll` and diagnoses what changed, until dropped.
pub async fn run(ctx: Arc<Context>, cluster: String, poll: Duration) {
    let mut previous: Option<Listed> = None;
    loop {
        tokio::time::sleep(poll).await;
        let listed: Listed = match ctx.aws().refresh_association_list(&cluster).await {
            Ok(list) => list
                .into_iter()
                .map(|a| (a.namespace, a.service_account, a.association_id))
                .collect(),
            Err(u) => {
                tracing::warn!(detail = %u.detail, "listing EKS Pod Identity associations failed");
                continue;
            }
        };
        ctx.set_associated(
            listed
                .iter()
                .map(|(ns, name, _)| (ns.clone(), name.clone()))
                .collect(),
        );
        if let Some(previous) = previous.replace(listed.clone()) {
            let changed: BTreeSet<(&str, &str)> = previous
                .symmetric_difference(&listed)
                .map(|(ns, name, _)| (ns.as_str(), name.as_str()))
                .collect();
            for (namespace, name) in changed {
                tracing::info!(namespace, name, "EKS Pod Identity association changed");
                diagnose_again(&ctx, namespace, name).await;
            }
        }
    }
}
