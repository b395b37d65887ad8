//! The facts a diagnosis is made from. Gathering them is the shells' job (kube, AWS, files);
//! each fact is either known, could not be learned (and why), or was not looked for.

use crate::annotations::ServiceAccount;
use crate::arn::{OidcProviderArn, RoleArn};
use crate::issuer::Issuer;
use crate::probe::ProbeObservation;
use crate::reason::Reason;
use crate::workloads::PodFacts;

/// One fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact<T> {
    /// Learned.
    Known(T),
    /// Looked for but could not be learned: the condition it feeds becomes Unknown.
    Unavailable(Unavailable),
    /// Not looked for (no input given): the check is skipped and said so.
    Skipped(String),
}

impl<T> Fact<T> {
    /// The value when known.
    pub fn known(&self) -> Option<&T> {
        match self {
            Fact::Known(t) => Some(t),
            _ => None,
        }
    }
}

/// Why a fact could not be learned. Never a verdict on the user's setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// A reason of severity Unknown, e.g. `AwsApiUnavailable`, `AwsAccessDenied`, `ClusterIssuerUnknown`.
    pub reason: Reason,
    /// What failed, with which input.
    pub detail: String,
}

/// An IAM OIDC identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    /// Its ARN.
    pub arn: OidcProviderArn,
    /// Its client ID list (the audiences it accepts), when known.
    pub client_ids: Option<Vec<String>>,
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The trust policy as IAM returns it (raw or URL-encoded JSON).
    pub trust_policy: String,
}

/// An action the role must be allowed, from `spec.permissions`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PermissionRequest {
    /// e.g. `s3:GetObject`.
    pub action: String,
    /// e.g. `arn:aws:s3:::reports/*`; `*` when not given.
    pub resource: String,
}

/// What IAM's policy simulator decided for one requested permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionDecision {
    /// Allowed.
    Allowed,
    /// No statement allows it.
    ImplicitDeny,
    /// A statement denies it.
    ExplicitDeny,
}

/// The simulator's verdict for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionVerdict {
    /// What was asked.
    pub request: PermissionRequest,
    /// What IAM decided.
    pub decision: PermissionDecision,
    /// The policies or statements IAM says matched, when it says.
    pub matched_statements: Vec<String>,
}

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
    pub workloads: Option<Fact<Vec<PodFacts>>>,
}

impl Facts {
    /// Facts about an existing ServiceAccount with nothing else known yet.
    pub fn for_service_account(sa: ServiceAccount) -> Facts {
        Facts {
            namespace: sa.namespace.clone(),
            name: sa.name.clone(),
            service_account: Fact::Known(Some(sa)),
            expected_role_arn: None,
            issuer: Fact::Skipped("the cluster's issuer was not given".into()),
            oidc_providers: Fact::Skipped("the list of IAM OIDC providers was not given".into()),
            role: Fact::Skipped("the role's trust policy was not given".into()),
            permission_requests: Vec::new(),
            permissions: Fact::Skipped("no permissions were requested".into()),
            probe: None,
            workloads: None,
        }
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
