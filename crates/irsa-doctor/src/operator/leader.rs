//! Leader election through a Lease: one replica writes, the others stand by. The Lease task is
//! owned: its death ends the operator, and dropping leadership releases the Lease. While a
//! replica leads, its pod owns the Lease (an ownerReference), so that the garbage collector
//! removes the Lease once the last leader's pod is gone (`helm uninstall`), whatever RBAC is
//! left to the operator by then; a replica taking over makes its own pod the owner.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::Error;
use super::FIELD_MANAGER;

/// The Lease's name.
pub const LEASE_NAME: &str = "irsa-doctor";
/// Lease duration, seconds.
const DURATION_SECONDS: u64 = 15;
/// Renewal margin before expiry, seconds.
const GRACE_SECONDS: u64 = 5;

/// This replica's part in the election.
pub struct Leadership {
    leader: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
    /// The Lease, and the pod (name, uid) that owns it while this replica leads.
    lease: Api<Lease>,
    owner: Option<(String, String)>,
}

impl Leadership {
    /// Starts competing for the Lease in `namespace` as `identity`.
    pub async fn start(
        client: &kube::Client,
        namespace: &str,
        identity: &str,
        owner: Option<(String, String)>,
    ) -> Result<Leadership, Error> {
        let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(DURATION_SECONDS)
            .with_grace(GRACE_SECONDS)
            .with_field_manager(FIELD_MANAGER)
            .build()
            .await
            .map_err(|source| Error::LeaderElection {
                namespace: namespace.into(),
                source,
            })?;
        let (leader, task) = manager.watch().await;
        Ok(Leadership {
            leader,
            task,
            lease: Api::namespaced(client.clone(), namespace),
            owner,
        })
    }

    /// Resolves once this replica holds the Lease; an error if the Lease task stopped.
    pub async fn acquired(&mut self) -> Result<(), Error> {
        self.leader.wait_for(|l| *l).await.map(drop).map_err(|_| {
            Error::LeaseTask("the Lease task stopped before this replica led".into())
        })?;
        self.own().await;
        Ok(())
    }

    /// Makes this replica's pod the Lease's owner. A failure only means the Lease may outlive
    /// the installation; leadership does not depend on it.
    async fn own(&self) {
        let Some((name, uid)) = &self.owner else {
            return;
        };
        let owner = json!({"metadata": {"ownerReferences": [{
            "apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid,
        }]}});
        if let Err(e) = self
            .lease
            .patch(LEASE_NAME, &PatchParams::default(), &Patch::Merge(&owner))
            .await
        {
            tracing::warn!(error = %e, "making this replica's pod the owner of the Lease");
        }
    }

    /// Resolves when this replica no longer leads: the Lease went to another, or its task died.
    pub async fn lost(&mut self) -> Error {
        match self.leader.wait_for(|l| !*l).await {
            Ok(_) => Error::LostLeadership,
            Err(_) => Error::LeaseTask("the Lease task stopped".into()),
        }
    }

    /// Gives the Lease up: closing the channel makes the task clear `holderIdentity` and return.
    pub async fn release(self, within: Duration) {
        let Leadership { leader, task, .. } = self;
        drop(leader);
        match tokio::time::timeout(within, task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the Lease"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "releasing the Lease failed; it expires by itself")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the Lease task failed; the Lease expires by itself")
            }
            Err(_) => tracing::warn!("releasing the Lease took too long; it expires by itself"),
        }
    }
}
