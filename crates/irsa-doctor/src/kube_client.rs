//! The Kubernetes client: in-cluster config or KUBECONFIG, identifying itself as irsa-doctor.

use anyhow::Context;
use http::{header, HeaderValue};

/// A client for the current context, with `User-Agent: irsa-doctor/<version>` so audit logs
/// (and the tests' RBAC check) can tell its requests apart.
pub async fn client() -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::infer()
        .await
        .context("loading the Kubernetes configuration (in-cluster, or KUBECONFIG)")?;
    config.headers.push((
        header::USER_AGENT,
        HeaderValue::from_static(concat!("irsa-doctor/", env!("CARGO_PKG_VERSION"))),
    ));
    kube::Client::try_from(config).context("building the Kubernetes client")
}
