//! Gathering the facts of one ServiceAccount: its annotations (from wherever the caller got
//! them), the issuer, and the AWS facts of the role it names. The diagnosis itself is pure.

use irsa_aws::AwsFacts;
use irsa_core::facts::PermissionRequest;
use irsa_core::{Fact, Facts, Issuer, RoleArn, ServiceAccount};
use kube::core::ObjectMeta;

use crate::api::IrsaCheckSpec;

pub mod issuer;
pub mod workloads;

/// The parts of a ServiceAccount's metadata the diagnosis reads.
pub fn service_account(meta: &ObjectMeta) -> ServiceAccount {
    ServiceAccount {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        annotations: meta
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

/// Every fact about `namespace/name`; `spec` adds an IrsaCheck's expectations.
pub async fn gather(
    aws: &AwsFacts,
    issuer: &Fact<Issuer>,
    namespace: &str,
    name: &str,
    sa: Fact<Option<ServiceAccount>>,
    spec: Option<&IrsaCheckSpec>,
) -> Facts {
    let role_arn = sa
        .known()
        .and_then(Option::as_ref)
        .and_then(|sa| RoleArn::parse(sa.role_arn_annotation()?).ok());
    let permission_requests: Vec<PermissionRequest> = spec
        .map(|s| {
            s.permissions
                .iter()
                .map(|p| PermissionRequest {
                    action: p.action.clone(),
                    resource: p.resource().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut facts = Facts {
        namespace: namespace.to_string(),
        name: name.to_string(),
        service_account: sa,
        expected_role_arn: spec.and_then(|s| s.expected_role_arn.clone()),
        issuer: issuer.clone(),
        oidc_providers: Fact::Skipped("the ServiceAccount names no valid role".into()),
        role: Fact::Skipped("the ServiceAccount names no valid role".into()),
        permission_requests,
        permissions: Fact::Skipped("no permissions were requested".into()),
        probe: None,
        workloads: None,
    };
    let Some(role_arn) = role_arn else {
        return facts;
    };
    // Both look-ups are cached and de-duplicated across every reconcile.
    let (providers, role) = match &facts.issuer {
        Fact::Known(issuer) => {
            let (p, r) = futures::join!(
                aws.oidc_providers(role_arn.account(), issuer),
                aws.role(&role_arn)
            );
            (p, r)
        }
        _ => (
            Fact::Skipped("the cluster's issuer is unknown".into()),
            aws.role(&role_arn).await,
        ),
    };
    facts.oidc_providers = providers;
    if !facts.permission_requests.is_empty() && matches!(role, Fact::Known(Some(_))) {
        facts.permissions = aws.permissions(&role_arn, &facts.permission_requests).await;
    }
    facts.role = role;
    facts
}
