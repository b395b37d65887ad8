//! Where the cluster's OIDC issuer comes from: configuration, else EKS `DescribeCluster`, else
//! the API server's own `/.well-known/openid-configuration`.

use std::fmt;

use irsa_aws::AwsFacts;
use irsa_core::{Issuer, Reason, Unavailable};
use serde_json::Value;

/// Which source gave the issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--issuer`.
    Configured,
    /// `eks:DescribeCluster` for `--cluster-name`.
    Eks,
    /// The API server's OIDC discovery document.
    ApiServer,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Configured => "configuration",
            Source::Eks => "eks:DescribeCluster",
            Source::ApiServer => "the API server's /.well-known/openid-configuration",
        })
    }
}

/// Finds the issuer; an `Err` is `ClusterIssuerUnknown` (or an AWS reason) with what was tried.
pub async fn discover(
    configured: Option<&str>,
    cluster_name: Option<&str>,
    aws: &AwsFacts,
    client: &kube::Client,
) -> Result<(Issuer, Source), Unavailable> {
    if let Some(url) = configured {
        return Issuer::parse(url)
            .map(|i| (i, Source::Configured))
            .map_err(|e| Unavailable {
                reason: Reason::ClusterIssuerUnknown,
                detail: format!("--issuer {url:?}: {e}"),
            });
    }
    if let Some(cluster) = cluster_name {
        return aws.cluster_issuer(cluster).await.map(|i| (i, Source::Eks));
    }
    let request = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .expect("a static request is valid");
    let document: Value = client.request(request).await.map_err(|e| Unavailable {
        reason: Reason::ClusterIssuerUnknown,
        detail: format!(
            "GET /.well-known/openid-configuration on the API server failed ({e}); set --issuer or --cluster-name"
        ),
    })?;
    let url = document["issuer"].as_str().unwrap_or_default();
    Issuer::parse(url)
        .map(|i| (i, Source::ApiServer))
        .map_err(|e| Unavailable {
            reason: Reason::ClusterIssuerUnknown,
            detail: format!(
                "the API server advertises issuer {url:?}: {e}; set --issuer or --cluster-name"
            ),
        })
}

/// [`discover`] as a fact for the diagnosis, with the source logged when found.
pub async fn discover_fact(
    configured: Option<&str>,
    cluster_name: Option<&str>,
    aws: &AwsFacts,
    client: &kube::Client,
) -> irsa_core::Fact<Issuer> {
    match discover(configured, cluster_name, aws, client).await {
        Ok((issuer, source)) => {
            tracing::info!(issuer = %issuer, %source, "cluster issuer");
            irsa_core::Fact::Known(issuer)
        }
        Err(u) => {
            tracing::warn!(reason = %u.reason, detail = %u.detail, "cluster issuer unknown");
            irsa_core::Fact::Unavailable(u)
        }
    }
}
