//! The `AssumeRoleWithWebIdentity` calls CloudTrail recorded for a ServiceAccount, summarised
//! ([`irsa_core::assume_history::AssumeHistory`]). The account's events are read once per
//! window and shared by every ServiceAccount whose role lives there.

use std::time::Duration;

use irsa_aws::AwsFacts;
use irsa_core::assume_history::{subject, AssumeHistory};
use irsa_core::{Fact, Facts, RoleArn};

use super::node_fallback::LivePod;

/// The calls of the ServiceAccount of `facts` over the last `window`, read in the account of
/// the role it names; `Skipped` when it names no valid role, or one it may not look up.
pub async fn assume_history(
    aws: &AwsFacts,
    facts: &Facts,
    window: Duration,
    pods: &[LivePod],
) -> Fact<AssumeHistory> {
    let Some(sa) = facts.service_account.known().and_then(Option::as_ref) else {
        return Fact::Skipped("the ServiceAccount does not exist".into());
    };
    let Some(role) = sa
        .role_arn_annotation()
        .and_then(|a| RoleArn::parse(a).ok())
    else {
        return Fact::Skipped("the ServiceAccount names no valid role".into());
    };
    if facts
        .allowed_roles
        .as_ref()
        .is_some_and(|a| !a.admits(&role))
    {
        return Fact::Skipped(format!(
            "{role} is outside --allowed-role-arns, so CloudTrail was not searched for it"
        ));
    }
    match Box::pin(aws.assume_role_events(role.account(), window)).await {
        Ok(log) => {
            let starts: Vec<Option<i64>> = pods.iter().map(|p| p.started).collect();
            Fact::Known(AssumeHistory::summarise(
                &log,
                &subject(&sa.namespace, &sa.name),
                facts.issuer.known(),
                &role.to_string(),
                &starts,
            ))
        }
        Err(u) => Fact::Unavailable(u),
    }
}
