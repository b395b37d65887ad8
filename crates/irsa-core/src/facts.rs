//! The facts a diagnosis is made from. Gathering them is the shells' job (kube, AWS, files);
//! each fact is either known, could not be learned (and why), or was not looked for.

use std::fmt;

use wildmatch::WildMatch;

use crate::annotations::ServiceAccount;
use crate::arn::{OidcProviderArn, RoleArn};
use crate::issuer::Issuer;
use crate::pod_identity::PodIdentity;
use crate::pods::Pods;
use crate::probe::ProbeObservation;
use crate::reason::Reason;

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

/// One `--allowed-role-arns` pattern: a role ARN in which `*` stands for any run of characters
/// (`/` included) and `?` for one, e.g. `arn:aws:iam::*:role/irsa/*`. Case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArnPattern(String);

/// Why a text is not a role ARN pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pattern:?} is not a role ARN pattern: {problem}; expected arn:<partition>:iam::<account>:role/<path/><name>, with * and ? as wildcards, e.g. arn:aws:iam::*:role/irsa/*")]
pub struct RoleArnPatternError {
    /// The text given.
    pub pattern: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl RoleArnPattern {
    /// Parses a pattern; it must have the six fields of a role ARN, each of which may use wildcards.
    pub fn parse(text: &str) -> Result<RoleArnPattern, RoleArnPatternError> {
        let pattern = text.trim();
        let error = |problem| RoleArnPatternError {
            pattern: pattern.to_string(),
            problem,
        };
        let wild = |field: &str| field.contains(['*', '?']);
        let fields: Vec<&str> = pattern.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = fields[..] else {
            return Err(error("it has fewer than six colon-separated fields"));
        };
        if arn != "arn" {
            return Err(error("it does not start with arn:"));
        }
        if partition.is_empty() {
            return Err(error("the partition is empty"));
        }
        if service != "iam" && !wild(service) {
            return Err(error("the service is not iam"));
        }
        if !region.is_empty() && !wild(region) {
            return Err(error("IAM ARNs have no region"));
        }
        if account.is_empty() {
            return Err(error("the account is empty"));
        }
        if !resource.starts_with("role/") && !resource.starts_with('*') {
            return Err(error("the resource does not start with role/"));
        }
        Ok(RoleArnPattern(pattern.to_string()))
    }

    /// Whether `arn` matches.
    pub fn matches(&self, arn: &RoleArn) -> bool {
        WildMatch::new(&self.0).matches(&arn.to_string())
    }
}

impl fmt::Display for RoleArnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The roles the operator may look up in AWS (`--allowed-role-arns`): a role that matches none
/// of the patterns is never asked about, and its ServiceAccount gets `RoleNotAllowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRoles(Vec<RoleArnPattern>);

impl AllowedRoles {
    /// The allow-list of `patterns`; `None` when there are none (every role is allowed).
    pub fn new(patterns: Vec<RoleArnPattern>) -> Option<AllowedRoles> {
        (!patterns.is_empty()).then_some(AllowedRoles(patterns))
    }

    /// Whether `arn` matches one of the patterns.
    pub fn admits(&self, arn: &RoleArn) -> bool {
        self.0.iter().any(|p| p.matches(arn))
    }
}

impl fmt::Display for AllowedRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&patterns.join(","))
    }
}

/// An IAM OIDC identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    /// Its ARN.
    pub arn: OidcProviderArn,
    /// Its client ID list (the audiences it accepts), when known.
    pub client_ids: Option<Vec<String>>,
    /// Its `ThumbprintList` (hex SHA-1 of the issuer's top certificate), when known.
    pub thumbprints: Option<Vec<String>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn arn(s: &str) -> RoleArn {
        RoleArn::parse(s).unwrap()
    }

    #[test]
    fn role_arn_patterns_match_with_wildcards_and_reject_what_is_not_a_role_arn() {
        let allowed = AllowedRoles::new(vec![
            RoleArnPattern::parse("arn:aws:iam::*:role/irsa/*").unwrap(),
            RoleArnPattern::parse(" arn:aws:iam::111122223333:role/app-? ").unwrap(),
        ])
        .unwrap();
        assert!(allowed.admits(&arn("arn:aws:iam::222233334444:role/irsa/s3-reader")));
        assert!(allowed.admits(&arn("arn:aws:iam::111122223333:role/irsa/team/a")));
        assert!(allowed.admits(&arn("arn:aws:iam::111122223333:role/app-1")));
        assert!(!allowed.admits(&arn("arn:aws:iam::111122223333:role/app-10")));
        assert!(!allowed.admits(&arn("arn:aws:iam::111122223333:role/admin")));
        assert!(!allowed.admits(&arn("arn:aws:iam::111122223333:role/IRSA/x")));
        assert!(!allowed.admits(&arn("arn:aws-cn:iam::111122223333:role/irsa/x")));
        assert_eq!(
            allowed.to_string(),
            "arn:aws:iam::*:role/irsa/*,arn:aws:iam::111122223333:role/app-?"
        );
        assert_eq!(AllowedRoles::new(Vec::new()), None);
        for bad in [
            "irsa/*",
            "arn:aws:s3:::bucket/*",
            "arn:aws:iam:us-east-1:1:role/x",
            "arn:aws:iam::*:user/x",
            "arn::iam::*:role/x",
        ] {
            let e = RoleArnPattern::parse(bad).unwrap_err().to_string();
            assert!(e.contains("arn:aws:iam::*:role/irsa/*"), "{bad}: {e}");
        }
    }
}
