//! What the running pods of a ServiceAccount really do, beyond what their specs say: whether
//! their nodes let them fall back to the instance role, and the calls CloudTrail recorded.
//! Shared by `check` (node check on unless skipped) and the operator (both off unless enabled).

use std::time::Duration;

use irsa_aws::AwsFacts;
use irsa_core::{Fact, Facts};

use super::assume_history::assume_history;
use super::node_fallback::{self, Nodes};

/// Which observations to make.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observations {
    /// Read the pods' nodes and their EC2 metadata options (`ec2:DescribeInstances`).
    pub node_check: bool,
    /// Search CloudTrail over this window (`cloudtrail:LookupEvents`).
    pub cloudtrail_window: Option<Duration>,
}

impl Observations {
    /// Whether anything is to be observed.
    pub fn any(&self) -> bool {
        self.node_check || self.cloudtrail_window.is_some()
    }
}

/// Fills `facts.node_fallback` and `facts.assume_history` as `what` asks, for a ServiceAccount
/// that names a valid role; one list of its live pods serves both.
pub async fn observe(
    what: Observations,
    aws: &AwsFacts,
    client: &kube::Client,
    nodes: &Nodes,
    facts: &mut Facts,
) {
    let names_role = facts
        .service_account
        .known()
        .and_then(Option::as_ref)
        .and_then(irsa_core::ServiceAccount::role_arn_annotation)
        .is_some_and(|arn| irsa_core::RoleArn::parse(arn).is_ok());
    if !names_role || !what.any() {
        return;
    }
    let pods = match node_fallback::live_pods(client, &facts.namespace, &facts.name).await {
        Ok(pods) => pods,
        Err(u) => {
            if what.cloudtrail_window.is_some() {
                facts.assume_history = Fact::Unavailable(u.clone());
            }
            if what.node_check {
                facts.node_fallback = Fact::Unavailable(u);
            }
            return;
        }
    };
    if what.node_check {
        facts.node_fallback = Box::pin(node_fallback::node_fallback(
            aws,
            nodes,
            &facts.namespace,
            &pods,
        ))
        .await;
    }
    if let Some(window) = what.cloudtrail_window {
        facts.assume_history = Box::pin(assume_history(aws, facts, window, &pods)).await;
    }
}
