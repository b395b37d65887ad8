//! EKS Pod Identity in the trust audit: whether a role trusts the Pod Identity Agent's service
//! principal, which associations of the cluster use it (as their role or as their target role),
//! whether its trust policy admits each of them as STS would (the agent's `sts:AssumeRole` and
//! `sts:TagSession`, `aws:SourceAccount`, `aws:SourceArn`, the session tags, `sts:ExternalId` for
//! a target role), and whether it admits the associations of any cluster of its account.

use serde::Serialize;

use super::{finding, Role};
use crate::arn::RoleArn;
use crate::condition::Tri;
use crate::issuer::Issuer;
use crate::pod_identity::{Association, SERVICE_PRINCIPAL};
use crate::policy::{Effect, PolicyDocument};
use crate::reason::Reason;
use crate::report::Finding;
use crate::trust::{action_covers, evaluate_assume_role, tag_conditions, SessionTags};

/// The cluster name of the made-up association that tells whether any cluster may use a role.
const PROBE_CLUSTER: &str = "0-irsa-doctor-audit-probe";

/// How an association uses a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AssociationUsage {
    /// The role the agent assumes (`roleArn`).
    Role,
    /// The role that role assumes in turn, whose credentials pods get (`targetRoleArn`).
    TargetRole,
}

/// One association of the cluster that uses a role, and whether the role's trust admits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationUse {
    /// `a-…`.
    pub association_id: String,
    /// The associated ServiceAccount, `namespace/name`.
    pub service_account: String,
    /// As which role of the association.
    pub usage: AssociationUsage,
    /// Whether the trust policy admits it as STS would (False also when only request context
    /// irsa-doctor cannot see decides: then `conditional`).
    pub admitted: bool,
    /// True when the verdict depends on request context irsa-doctor cannot see.
    pub conditional: bool,
}

/// What Pod Identity makes of one role.
#[derive(Debug, Default)]
pub(super) struct PodIdentityAudit {
    /// Some Allow statement grants `sts:AssumeRole` to `pods.eks.amazonaws.com`.
    pub trusted: bool,
    /// The associations that use the role.
    pub uses: Vec<AssociationUse>,
    /// Any cluster of the role's account may use it through an association.
    pub any_cluster: bool,
    /// Associations the trust policy refuses.
    pub findings: Vec<Finding>,
}

/// Audits one role's trust policy for EKS Pod Identity.
pub(super) fn audit(
    issuer: &Issuer,
    role: &Role<'_>,
    associations: &[Association],
    existing: &dyn Fn(&str, &str) -> bool,
) -> PodIdentityAudit {
    let mut out = PodIdentityAudit {
        trusted: trusts_agent(role.policy),
        ..Default::default()
    };
    let arn_text = role.arn.to_string();
    for association in associations {
        let usage = if association.role_arn == arn_text {
            AssociationUsage::Role
        } else if association.target_role_arn.as_deref() == Some(arn_text.as_str()) {
            AssociationUsage::TargetRole
        } else {
            continue;
        };
        let sa = format!("{}/{}", association.namespace, association.service_account);
        let request = match usage {
            AssociationUsage::Role => association.request(),
            AssociationUsage::TargetRole => match RoleArn::parse(&association.role_arn) {
                Ok(caller) => association.target_request(&caller),
                Err(e) => {
                    out.findings.push(finding(
                        Reason::RoleArnMalformed,
                        format!(
                            "association {} ({sa}) chains to {} from role {:?}, which cannot be read: {e}",
                            association.id, role.arn, association.role_arn
                        ),
                    ));
                    continue;
                }
            },
        };
        let verdict = evaluate_assume_role(role.policy, &request);
        let used_as = match usage {
            AssociationUsage::Role => "its role",
            AssociationUsage::TargetRole => "its target role",
        };
        if verdict.allowed == Tri::False {
            let tagged = if request.tags == SessionTags::Disabled {
                tag_conditions(role.policy, &request)
            } else {
                Vec::new()
            };
            if tagged.is_empty() {
                for f in &verdict.findings {
                    out.findings.push(finding(
                        f.reason,
                        format!(
                            "association {} of {sa} has {} as {used_as}, and its trust policy refuses it: {}",
                            association.id, role.arn, f.message
                        ),
                    ));
                }
            } else {
                out.findings.push(finding(
                    Reason::PodIdentitySessionTagsDisabled,
                    format!(
                        "association {} of {sa} has {} as {used_as} and disables session tags, so {} can \
                         never hold",
                        association.id,
                        role.arn,
                        tagged.join("; ")
                    ),
                ));
            }
        }
        if usage == AssociationUsage::Role
            && !existing(&association.namespace, &association.service_account)
        {
            out.findings.push(finding(
                Reason::PodIdentityServiceAccountMissing,
                format!(
                    "association {} gives {} to ServiceAccount {sa}, which does not exist: whoever creates it \
                     gets the role",
                    association.id, role.arn
                ),
            ));
        }
        out.uses.push(AssociationUse {
            association_id: association.id.clone(),
            service_account: sa,
            usage,
            admitted: verdict.allowed == Tri::True,
            conditional: verdict.allowed == Tri::Unknown,
        });
    }
    if out.trusted {
        let probe = probe_association(issuer, role.arn, associations);
        out.any_cluster = evaluate_assume_role(role.policy, &probe.request()).allowed != Tri::False;
    }
    out
}

/// Whether an Allow statement grants `sts:AssumeRole` to the agent's service principal.
fn trusts_agent(policy: &PolicyDocument) -> bool {
    policy.statements.iter().any(|s| {
        s.effect == Effect::Allow
            && s.principal
                .of_type("Service")
                .any(|p| p.eq_ignore_ascii_case(SERVICE_PRINCIPAL))
            && action_covers(&s.action, "sts:AssumeRole")
    })
}

/// An association of a cluster that does not exist, in the role's account and the region of
/// this cluster's associations (or of its issuer): admitted only when the trust policy does not
/// tie the role to particular clusters (`aws:SourceArn`).
fn probe_association(issuer: &Issuer, role: &RoleArn, associations: &[Association]) -> Association {
    let region = associations
        .iter()
        .find_map(|a| a.arn.as_deref()?.split(':').nth(3).map(str::to_string))
        .or_else(|| issuer.eks_parts().map(|p| p.region.to_string()))
        .unwrap_or_else(|| "us-east-1".to_string());
    Association {
        id: "a-0".into(),
        arn: Some(format!(
            "arn:{}:eks:{region}:{}:podidentityassociation/{PROBE_CLUSTER}/a-0",
            role.partition(),
            role.account()
        )),
        cluster: PROBE_CLUSTER.into(),
        namespace: "qzxqzx".into(),
        service_account: "xzqxzq".into(),
        role_arn: role.to_string(),
        ..Default::default()
    }
}
