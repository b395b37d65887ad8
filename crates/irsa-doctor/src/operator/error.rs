//! Why the operator stopped.

use std::net::SocketAddr;

/// A reason the operator could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Kubernetes client.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// The IrsaCheck CRD is missing.
    #[error("the IrsaCheck CustomResourceDefinition (irsachecks.irsa-doctor.io, version v1alpha1) is not installed ({detail}); install it with `kubectl apply -f crds/` (or `irsa-doctor crd | kubectl apply -f -`), or install the Helm chart, which carries it")]
    CrdMissing {
        /// What discovery answered.
        detail: String,
    },
    /// Discovery failed for another reason.
    #[error("checking that the IrsaCheck CustomResourceDefinition is installed: {0}")]
    Preflight(kube::Error),
    /// The Lease could not be set up.
    #[error("setting up leader election (Lease irsa-doctor in namespace {namespace}): {source}")]
    LeaderElection {
        /// The Lease's namespace.
        namespace: String,
        /// What failed.
        source: kube_lease_manager::LeaseManagerError,
    },
    /// The Lease task stopped.
    #[error("leader election stopped: {0}")]
    LeaseTask(String),
    /// Another replica took the Lease.
    #[error("lost the leader Lease; exiting so that this replica restarts as a follower")]
    LostLeadership,
    /// The HTTP endpoints could not be served.
    #[error("serving /metrics, /healthz and /readyz on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// A task that must run for as long as the operator ended.
    #[error("the {task} task ended unexpectedly{detail}")]
    TaskEnded {
        /// Which task.
        task: &'static str,
        /// Why, when known (with a leading ": ").
        detail: String,
    },
}
