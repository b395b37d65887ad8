//! Gathering the facts of one ServiceAccount: its annotations (from wherever the caller got
//! them), the issuer, and the AWS facts of the role it names. The diagnosis itself is pure.
//!
//! What is asked of AWS is bounded by who asks: the ServiceAccount's namespace is the [`Lane`]
//! its calls queue in, a role outside the operator's `--allowed-role-arns` is never looked up,
//! and a role's permissions are simulated only when its trust policy admits the ServiceAccount
//! ([`irsa_core::diagnose::trust_admits`]) and for at most [`MAX_PERMISSIONS_PER_CHECK`] of them.

use irsa_aws::{AwsFacts, Lane};
use irsa_core::diagnose::trust_admits;
use irsa_core::facts::{AllowedRoles, PermissionRequest};
use irsa_core::{Fact, Facts, Issuer, RoleArn, ServiceAccount};
use kube::core::ObjectMeta;

use crate::api::IrsaCheckSpec;

pub mod admission;
pub mod assume_history;
pub mod issuer;
pub mod issuer_keys;
mod listed_pod;
pub mod node_fallback;
pub mod observed;
pub mod pod_identity;
pub mod workloads;

/// At most this many distinct permissions are simulated for one check run. More are not
/// simulated at all (PermissionsValid is then Unknown, saying so), so that one IrsaCheck cannot
/// spend the operator's IAM budget.
pub const MAX_PERMISSIONS_PER_CHECK: usize = 50;

/// The parts of a ServiceAccount's metadata the diagnosis reads.
pub fn service_account(meta: &ObjectMeta) -> ServiceAccount {
    // The same reader as `lint`'s manifests, so both tell the annotation's age alike.
    let (created, role_arn_set) = serde_json::to_value(meta)
        .map(|v| irsa_core::workloads::service_account_times(&v))
        .unwrap_or_default();
    ServiceAccount {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        annotations: meta
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        created,
        role_arn_set,
    }
}

/// Every fact about `namespace/name`; `spec` adds an IrsaCheck's expectations. Any role may be
/// looked up (`check`, with the caller's own credentials).
pub async fn gather(
    aws: &AwsFacts,
    issuer: &Fact<Issuer>,
    namespace: &str,
    name: &str,
    sa: Fact<Option<ServiceAccount>>,
    spec: Option<&IrsaCheckSpec>,
) -> Facts {
    gather_within(aws, issuer, namespace, name, sa, spec, None).await
}

/// [`gather`], looking up only the roles `allowed` admits (`None`: any role), as the operator does.
pub async fn gather_within(
    aws: &AwsFacts,
    issuer: &Fact<Issuer>,
    namespace: &str,
    name: &str,
    sa: Fact<Option<ServiceAccount>>,
    spec: Option<&IrsaCheckSpec>,
    allowed: Option<&AllowedRoles>,
) -> Facts {
    let lane = Lane::namespace(namespace);
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
        allowed_roles: allowed.cloned(),
        issuer: issuer.clone(),
        oidc_providers: Fact::Skipped("the ServiceAccount names no valid role".into()),
        role: Fact::Skipped("the ServiceAccount names no valid role".into()),
        permission_requests,
        permissions: Fact::Skipped("no permissions were requested".into()),
        probe: None,
        workloads: None,
        pod_identity: Fact::Skipped(
            "EKS Pod Identity associations were not looked up (no --cluster-name)".into(),
        ),
        assume_history: Fact::Skipped(irsa_core::facts::NO_ASSUME_HISTORY.into()),
        node_fallback: Fact::Skipped(irsa_core::facts::NO_NODE_FALLBACK.into()),
        issuer_keys: Fact::Skipped(irsa_core::facts::NO_ISSUER_KEYS.into()),
        namespace_service_accounts: Vec::new(),
    };
    let Some(role_arn) = role_arn else {
        return facts;
    };
    if allowed.is_some_and(|a| !a.admits(&role_arn)) {
        let why = format!("{role_arn} is outside --allowed-role-arns, so it was not looked up");
        facts.oidc_providers = Fact::Skipped(why.clone());
        facts.role = Fact::Skipped(why);
        return facts;
    }
    // Both look-ups are cached and de-duplicated across every reconcile. Boxed: AWS SDK futures
    // are large, and debug builds hold each inline in every frame that awaits it.
    let role = Box::pin(aws.role(&lane, &role_arn));
    let (providers, role) = match &facts.issuer {
        Fact::Known(issuer) => {
            futures::join!(
                Box::pin(aws.oidc_providers(role_arn.account(), issuer)),
                role
            )
        }
        _ => (
            Fact::Skipped("the cluster's issuer is unknown".into()),
            role.await,
        ),
    };
    facts.oidc_providers = providers;
    facts.role = role;
    if !facts.permission_requests.is_empty() {
        facts.permissions = Box::pin(permissions(aws, &lane, &role_arn, &facts)).await;
    }
    facts
}

/// The simulator's verdicts, asked only for a role whose trust policy admits the ServiceAccount.
async fn permissions(
    aws: &AwsFacts,
    lane: &Lane,
    role_arn: &RoleArn,
    facts: &Facts,
) -> Fact<Vec<irsa_core::facts::PermissionVerdict>> {
    match trust_admits(facts) {
        Some(true) => {}
        Some(false) => {
            return Fact::Skipped(
                "the role's trust policy does not admit this ServiceAccount, so its permissions were not \
                 simulated"
                    .into(),
            )
        }
        None => {
            return Fact::Skipped(
                "whether the role's trust policy admits this ServiceAccount is not known, so its \
                 permissions were not simulated"
                    .into(),
            )
        }
    }
    let mut distinct = facts.permission_requests.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() > MAX_PERMISSIONS_PER_CHECK {
        return Fact::Skipped(format!(
            "spec.permissions lists {} distinct permissions, more than the {MAX_PERMISSIONS_PER_CHECK} one \
             check may have simulated per run; split them across IrsaChecks",
            distinct.len()
        ));
    }
    aws.permissions(lane, role_arn, &distinct).await
}
