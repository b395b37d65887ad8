//! The facts a diagnosis is made from. Gathering them is the shells' job (kube, AWS, files);
//! each fact is either known, could not be learned (and why), or was not looked for.

use crate::annotations::ServiceAccount;
use crate::arn::RoleArn;
use crate::issuer::Issuer;
use crate::pod_identity::PodIdentity;
use crate::pods::Pods;
use crate::probe::ProbeObservation;

pub use crate::fact::{
    AllowedRoles, Fact, OidcProvider, PermissionDecision, PermissionRequest, PermissionVerdict,
    Role, RoleArnPattern, RoleArnPatternError, Unavailable,
};

/// Why [`Facts::issuer_keys`] was not looked for, by default.
pub const NO_ISSUER_KEYS: &str =
    "the issuer's discovery document and keys were not fetched (check fetches them for --issuer or --cluster-name)";

/// Why [`Facts::assume_history`] was not looked for, by default.
pub const NO_ASSUME_HISTORY: &str = "CloudTrail was not searched (check --cloudtrail)";
/// Why [`Facts::node_fallback`] was not looked for, by default.
pub const NO_NODE_FALLBACK: &str = "the nodes of the ServiceAccount's pods were not looked up";

/// Everything known about one ServiceAccount's IRSA setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Namespace of the ServiceAccount (known even when it does not exist).
    pub namespace: String,
    /// Name of the ServiceAccount.
    pub name: String,
    /// The ServiceAccount; `Known(None)` when it does not exist.
    pub service_account: Fact<Option<ServiceAccount>>,
    /// `spec.expectedRoleArn`, when an IrsaCheck sets it.
    pub expected_role_arn: Option<String>,
    /// The roles that may be looked up (the operator's `--allowed-role-arns`); `None`: any.
    pub allowed_roles: Option<AllowedRoles>,
    /// The cluster's OIDC issuer.
    pub issuer: Fact<Issuer>,
    /// The IAM OIDC providers of the role's account.
    pub oidc_providers: Fact<Vec<OidcProvider>>,
    /// The annotated role; `Known(None)` when IAM says it does not exist.
    pub role: Fact<Option<Role>>,
    /// The permissions `spec.permissions` asks for; empty when none.
    pub permission_requests: Vec<PermissionRequest>,
    /// The simulator's verdicts for them.
    pub permissions: Fact<Vec<PermissionVerdict>>,
    /// The probe pod's run; `None` when no probe applies (ProbeSucceeded is then not reported),
    /// `Skipped` when the probe is disabled.
    pub probe: Option<Fact<ProbeObservation>>,
    /// Running pods of the ServiceAccount; `None` when the audit does not apply.
    pub workloads: Option<Fact<Pods>>,
    /// The ServiceAccount's EKS Pod Identity association; `Known(None)` when it has none,
    /// `Skipped` when not looked for (no cluster name). When known, it is the one in force.
    pub pod_identity: Fact<Option<PodIdentity>>,
    /// The `AssumeRoleWithWebIdentity` calls CloudTrail recorded for the ServiceAccount;
    /// `Skipped` unless asked for (`check --cloudtrail`).
    pub assume_history: Fact<crate::assume_history::AssumeHistory>,
    /// The nodes its running pods are on and whether they can reach the node's instance role.
    pub node_fallback: Fact<crate::node_fallback::NodeFallback>,
    /// The issuer's discovery document, JWKS and TLS chain against the API server's keys;
    /// fetched once per run and shared by every ServiceAccount.
    pub issuer_keys: Fact<crate::issuer_keys::IssuerKeys>,
    /// Names of the namespace's ServiceAccounts (those that exist, and those its workloads run
    /// as), for pointing at a near miss when the one diagnosed does not exist; empty when not
    /// looked up.
    pub namespace_service_accounts: Vec<String>,
}

impl Facts {
    /// Facts about an existing ServiceAccount with nothing else known yet.
    pub fn for_service_account(sa: ServiceAccount) -> Facts {
        Facts {
            namespace: sa.namespace.clone(),
            name: sa.name.clone(),
            service_account: Fact::Known(Some(sa)),
            expected_role_arn: None,
            allowed_roles: None,
            issuer: Fact::Skipped("the cluster's issuer was not given".into()),
            oidc_providers: Fact::Skipped("the list of IAM OIDC providers was not given".into()),
            role: Fact::Skipped("the role's trust policy was not given".into()),
            permission_requests: Vec::new(),
            permissions: Fact::Skipped("no permissions were requested".into()),
            probe: None,
            workloads: None,
            pod_identity: Fact::Skipped(
                "EKS Pod Identity associations were not looked up (no --cluster-name)".into(),
            ),
            assume_history: Fact::Skipped(NO_ASSUME_HISTORY.into()),
            node_fallback: Fact::Skipped(NO_NODE_FALLBACK.into()),
            issuer_keys: Fact::Skipped(NO_ISSUER_KEYS.into()),
            namespace_service_accounts: Vec::new(),
        }
    }

    /// Facts about a ServiceAccount that does not exist, with nothing else known yet.
    pub fn for_missing_service_account(namespace: &str, name: &str) -> Facts {
        let mut facts = Facts::for_service_account(ServiceAccount {
            namespace: namespace.to_string(),
            name: name.to_string(),
            ..ServiceAccount::default()
        });
        facts.service_account = Fact::Known(None);
        facts
    }

    /// Facts for an offline diagnosis (`lint`): the issuer, the providers known to exist (`None`: not
    /// given, so the provider check is skipped) and the trust policies at hand, looked up by role.
    pub fn offline(
        sa: ServiceAccount,
        issuer: Issuer,
        providers: Option<Vec<OidcProvider>>,
        trust_policy_of: impl Fn(&RoleArn) -> Option<String>,
    ) -> Facts {
        let role = match sa.role_arn_annotation().map(RoleArn::parse) {
            Some(Ok(arn)) => match trust_policy_of(&arn) {
                Some(trust_policy) => Fact::Known(Some(Role { trust_policy })),
                None => Fact::Skipped(format!(
                    "no trust policy was given for {arn}, so it was not checked (lint: --role {arn}=FILE)"
                )),
            },
            _ => Fact::Skipped("the ServiceAccount names no valid role".to_string()),
        };
        let oidc_providers = match providers {
            Some(p) => Fact::Known(p),
            None => Fact::Skipped(
                "no OIDC providers were given, so whether the provider exists was not checked \
                 (lint: --oidc-provider ARN)"
                    .to_string(),
            ),
        };
        Facts {
            issuer: Fact::Known(issuer),
            oidc_providers,
            role,
            ..Facts::for_service_account(sa)
        }
    }
}
