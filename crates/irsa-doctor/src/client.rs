//! The Kubernetes client: in-cluster config or KUBECONFIG, identifying itself as irsa-doctor.

use http::{header, HeaderValue};

/// The User-Agent of every request, so audit logs (and the tests' RBAC check) can tell
/// irsa-doctor's requests apart.
pub const USER_AGENT: &str = concat!("irsa-doctor/", env!("CARGO_PKG_VERSION"));

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Neither in-cluster configuration nor a kubeconfig was usable.
    #[error("loading the Kubernetes configuration (in-cluster, or KUBECONFIG): {0}")]
    Config(#[from] kube::config::InferConfigError),
    /// The configuration did not make a client.
    #[error("building the Kubernetes client: {0}")]
    Build(#[from] kube::Error),
}

/// A client for the current context.
pub async fn client() -> Result<kube::Client, ClientError> {
    let mut config = kube::Config::infer().await?;
    config
        .headers
        .push((header::USER_AGENT, HeaderValue::from_static(USER_AGENT)));
    Ok(kube::Client::try_from(config)?)
}
