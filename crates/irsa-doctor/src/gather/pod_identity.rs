//! EKS Pod Identity facts of one ServiceAccount: its association (found in the cluster's list, or
//! asked for alone), the association's role and target role, whether the association role may
//! assume the target, whether the agent add-on is installed, and where the agent's pods run.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use irsa_aws::{AwsFacts, Lane};
use irsa_core::facts::{AllowedRoles, PermissionRequest};
use irsa_core::pod_identity::{AgentPods, PodIdentity, AGENT_ADDON, AGENT_POD_LABEL};
use irsa_core::{Fact, Facts, Reason, RoleArn, Unavailable};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use moka::future::Cache;

use super::MAX_PERMISSIONS_PER_CHECK;

/// The namespace the `eks-pod-identity-agent` add-on runs in.
pub const AGENT_NAMESPACE: &str = "kube-system";
/// The node label whose value `auto` marks an EKS Auto Mode node, which has the agent built in.
const COMPUTE_TYPE: &str = "eks.amazonaws.com/compute-type";
/// How long a list of the agent's pods is reused.
const AGENT_TTL: Duration = Duration::from_secs(30);

/// How a ServiceAccount's association is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// In the list of every association of the cluster (one list per cluster, cached): what
    /// whole-cluster callers use.
    Cluster,
    /// A list filtered by the ServiceAccount: one ServiceAccount's `check`.
    ServiceAccount,
}

/// Adds the ServiceAccount's EKS Pod Identity association, its role (and target role), whether
/// the agent add-on is installed, and where the agent's pods run (when `agents` is given)
/// (`cluster`: `--cluster-name`; without it Pod Identity stays Skipped, saying so). When an association exists it is the one in force, so
/// `spec.permissions` are simulated for the role pods get (when its trust admits them) instead of
/// the annotated one's.
pub async fn with_pod_identity(
    aws: &AwsFacts,
    cluster: Option<&str>,
    allowed: Option<&AllowedRoles>,
    lookup: Lookup,
    agents: Option<&Agents>,
    facts: &mut Facts,
) {
    let Some(cluster) = cluster else {
        facts.pod_identity = Fact::Skipped(
            "EKS Pod Identity associations were not looked up: no --cluster-name is configured"
                .into(),
        );
        return;
    };
    let lane = Lane::namespace(&facts.namespace);
    let (namespace, name) = (facts.namespace.clone(), facts.name.clone());
    let association = match lookup {
        Lookup::Cluster => {
            Box::pin(aws.association_in_cluster(&lane, cluster, &namespace, &name)).await
        }
        Lookup::ServiceAccount => {
            Box::pin(aws.service_account_association(&lane, cluster, &namespace, &name)).await
        }
    };
    let association = match association {
        Fact::Known(Some(a)) => a,
        Fact::Known(None) => {
            facts.pod_identity = Fact::Known(None);
            return;
        }
        Fact::Unavailable(u) => {
            facts.pod_identity = Fact::Unavailable(u);
            return;
        }
        Fact::Skipped(why) => {
            facts.pod_identity = Fact::Skipped(why);
            return;
        }
    };
    let mut pi = PodIdentity::new(association);
    pi.agent = Box::pin(aws.addon_installed(cluster, AGENT_ADDON)).await;
    if let Some(agents) = agents {
        pi.agents = agents.pods().await;
    }
    let looked_up = |arn: &RoleArn| allowed.is_none_or(|a| a.admits(arn));
    let role = match RoleArn::parse(&pi.association.role_arn) {
        Ok(arn) if !looked_up(&arn) => {
            pi.role = Fact::Skipped(format!(
                "{arn} is outside --allowed-role-arns, so it was not looked up"
            ));
            None
        }
        Ok(arn) => {
            pi.role = Box::pin(aws.role(&lane, &arn)).await;
            Some(arn)
        }
        Err(e) => {
            pi.role = Fact::Skipped(format!("the association names no valid role: {e}"));
            None
        }
    };
    let admits = irsa_core::diagnose::pod_identity_trust_admits(&pi) == Some(true);
    let target = pi
        .association
        .target_role_arn
        .as_deref()
        .map(RoleArn::parse);
    let pods_role = match (target, pi.target.as_mut(), &role) {
        (Some(Ok(target_arn)), Some(t), Some(role)) if looked_up(&target_arn) => {
            t.role = Box::pin(aws.role(&lane, &target_arn)).await;
            // Simulated only for a role whose trust admits the agent: what a role may do is not
            // told to whom it does not trust.
            t.chain_permitted = if admits {
                let chain: Vec<PermissionRequest> = pi
                    .association
                    .actions()
                    .into_iter()
                    .map(|action| PermissionRequest {
                        action,
                        resource: target_arn.to_string(),
                    })
                    .collect();
                Box::pin(aws.permissions(&lane, role, &chain)).await
            } else {
                Fact::Skipped(
                    "the association role's trust does not admit the agent, so whether it may assume \
                     the target role was not simulated"
                        .into(),
                )
            };
            Some(target_arn)
        }
        (Some(Ok(target_arn)), Some(t), _) => {
            t.role = Fact::Skipped(format!(
                "{target_arn} is not looked up (outside --allowed-role-arns, or the association role is not)"
            ));
            None
        }
        (Some(Err(e)), Some(t), _) => {
            t.role = Fact::Skipped(format!("the association names no valid target role: {e}"));
            None
        }
        _ => role.clone(),
    };
    if let Some(pods_role) = pods_role.filter(|_| !facts.permission_requests.is_empty()) {
        facts.permissions = if admits {
            let mut distinct = facts.permission_requests.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() > MAX_PERMISSIONS_PER_CHECK {
                Fact::Skipped(format!(
                    "spec.permissions lists {} distinct permissions, more than the \
                     {MAX_PERMISSIONS_PER_CHECK} one check may have simulated per run",
                    distinct.len()
                ))
            } else {
                Box::pin(aws.permissions(&lane, &pods_role, &distinct)).await
            }
        } else {
            Fact::Skipped(
                "the association role's trust policy is not known to admit the EKS Pod Identity \
                 Agent, so the permissions of the role pods get were not simulated"
                    .into(),
            )
        };
    }
    facts.pod_identity = Fact::Known(Some(pi));
}

fn kube_unavailable(what: String, e: impl std::fmt::Display) -> Unavailable {
    Unavailable {
        reason: Reason::KubernetesApiUnavailable,
        detail: format!("{what}: {e}"),
    }
}

/// Where the EKS Pod Identity Agent runs: its pods, and for nodes without a Ready one whether
/// the node has the agent built in. Reused for [`AGENT_TTL`].
pub struct Agents {
    client: kube::Client,
    namespace: String,
    pods: Cache<(), Arc<AgentPods>>,
}

impl Agents {
    /// The agent's pods in `namespace` (the add-on's is `kube-system`), read through `client`.
    pub fn new(client: kube::Client, namespace: &str) -> Agents {
        Agents {
            client,
            namespace: namespace.to_string(),
            pods: Cache::builder()
                .max_capacity(1)
                .time_to_live(AGENT_TTL)
                .build(),
        }
    }

    /// The agent's pods by node; `Unavailable` when they cannot be listed (a failure is not
    /// kept: the next call asks again).
    pub async fn pods(&self) -> Fact<AgentPods> {
        let (client, namespace) = (self.client.clone(), self.namespace.clone());
        let found = self
            .pods
            .try_get_with((), async move {
                Ok::<_, Unavailable>(Arc::new(agent_pods(&client, &namespace).await?))
            })
            .await;
        match found {
            Ok(pods) => Fact::Known(pods.as_ref().clone()),
            Err(u) => Fact::Unavailable(u.as_ref().clone()),
        }
    }
}

/// Lists the agent's pods of `namespace` and reads the nodes that lack a Ready one.
async fn agent_pods(client: &kube::Client, namespace: &str) -> Result<AgentPods, Unavailable> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(AGENT_POD_LABEL))
        .await
        .map_err(|e| {
            kube_unavailable(
                format!(
                    "listing the EKS Pod Identity Agent's pods ({AGENT_POD_LABEL}) in {namespace}"
                ),
                e,
            )
        })?;
    let mut agents = AgentPods::default();
    for pod in &list.items {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            agents.unready.remove(&node);
            agents.ready.insert(node);
        } else if !agents.ready.contains(&node) {
            agents.unready.insert(node);
        }
    }
    agents.built_in = built_in_nodes(client).await?;
    Ok(agents)
}

/// Nodes of EKS Auto Mode, which serve Pod Identity without an agent pod.
async fn built_in_nodes(client: &kube::Client) -> Result<BTreeSet<String>, Unavailable> {
    let api: Api<Node> = Api::all(client.clone());
    let selector = format!("{COMPUTE_TYPE}=auto");
    let list = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| kube_unavailable(format!("listing nodes ({selector})"), e))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect())
}
