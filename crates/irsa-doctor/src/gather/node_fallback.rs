//! The running pods of a ServiceAccount, the nodes they are on, and the EC2 instances behind
//! those nodes (`spec.providerID` → `ec2:DescribeInstances`), for
//! [`irsa_core::node_fallback::NodeFallback`]. Also the pods' start times, for
//! [`super::assume_history`].

use std::collections::{BTreeMap, BTreeSet};

use irsa_aws::{AwsFacts, Lane};
use irsa_core::node_fallback::{instance_id, NodeFallback, NodeInstance, RunningPod};
use irsa_core::workloads::parse_timestamp;
use irsa_core::{Fact, Reason, Unavailable};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use moka::future::Cache;

use super::workloads::LIVE;
use crate::api::probe_pod_owner;

/// At most this many pods of one ServiceAccount are read (one page).
pub const MAX_PODS: u32 = 500;
/// At most this many distinct nodes are looked up for one ServiceAccount; pods on others are
/// left out.
pub const MAX_NODES: usize = 200;

/// A live pod of a ServiceAccount as the runtime checks read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePod {
    /// Its name.
    pub name: String,
    /// `spec.nodeName`, once scheduled.
    pub node: Option<String>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `status.startTime`, else its creation (Unix seconds).
    pub started: Option<i64>,
}

fn kube_unavailable(what: String, e: impl std::fmt::Display) -> Unavailable {
    Unavailable {
        reason: Reason::KubernetesApiUnavailable,
        detail: format!("{what}: {e}"),
    }
}

fn seconds(time: &impl serde::Serialize) -> Option<i64> {
    parse_timestamp(serde_json::to_value(time).ok()?.as_str()?)
}

/// The live pods of `namespace/service_account` (at most [`MAX_PODS`]), irsa-doctor's own probe
/// pods left out.
pub async fn live_pods(
    client: &kube::Client,
    namespace: &str,
    service_account: &str,
) -> Result<Vec<LivePod>, Unavailable> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default()
        .fields(&format!("spec.serviceAccountName={service_account},{LIVE}"))
        .limit(MAX_PODS);
    let list = api.list(&params).await.map_err(|e| {
        kube_unavailable(format!("listing pods of {namespace}/{service_account}"), e)
    })?;
    Ok(list
        .items
        .iter()
        .filter(|p| probe_pod_owner(&p.metadata).is_err())
        .map(|p| {
            let spec = p.spec.as_ref();
            LivePod {
                name: p.name_any(),
                node: spec.and_then(|s| s.node_name.clone()),
                host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
                started: p
                    .status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .and_then(seconds)
                    .or_else(|| p.metadata.creation_timestamp.as_ref().and_then(seconds)),
            }
        })
        .collect())
}

/// At most this many nodes' provider IDs are kept.
const MAX_CACHED_NODES: u64 = 10_000;
/// A node's provider ID never changes; a node name may be reused by a new instance, so it is
/// read again after this long.
const NODE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// The provider IDs of nodes, each read once per [`NODE_TTL`] (`get nodes/NAME`), concurrent
/// reads of one node collapsed into one; `None`: no such node.
pub struct Nodes {
    client: kube::Client,
    provider_ids: Cache<String, Option<Option<String>>>,
}

impl Nodes {
    /// Nodes read with `client`.
    pub fn new(client: kube::Client) -> Nodes {
        Nodes {
            client,
            provider_ids: Cache::builder()
                .max_capacity(MAX_CACHED_NODES)
                .time_to_live(NODE_TTL)
                .build(),
        }
    }

    /// `spec.providerID` of node `name`: `None` when the node does not exist, `Some(None)` when
    /// it has none.
    async fn provider_id(&self, name: &str) -> Result<Option<Option<String>>, Unavailable> {
        let client = self.client.clone();
        let node = name.to_string();
        self.provider_ids
            .try_get_with(node.clone(), async move {
                let api: Api<Node> = Api::all(client);
                let found = api.get_opt(&node).await?;
                Ok::<_, kube::Error>(found.map(|n| n.spec.and_then(|s| s.provider_id)))
            })
            .await
            .map_err(|e| kube_unavailable(format!("reading node {name}"), e.as_ref()))
    }
}

/// The nodes of `pods` and the instances behind them; `Skipped` when no pod is on a node yet.
/// EC2 is asked in `namespace`'s lane, with the caller's own credentials and region.
pub async fn node_fallback(
    aws: &AwsFacts,
    nodes: &Nodes,
    namespace: &str,
    pods: &[LivePod],
) -> Fact<NodeFallback> {
    let names: BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p.node.as_deref())
        .take(MAX_NODES)
        .collect();
    let placed: Vec<RunningPod> = pods
        .iter()
        .filter_map(|p| {
            let node = p.node.as_deref().filter(|n| names.contains(n))?;
            Some(RunningPod {
                name: p.name.clone(),
                node: node.to_string(),
                host_network: p.host_network,
            })
        })
        .collect();
    if placed.is_empty() {
        return Fact::Skipped("no running pod of the ServiceAccount is on a node".into());
    }
    let mut provider_ids = BTreeMap::new();
    for name in &names {
        match nodes.provider_id(name).await {
            Ok(id) => {
                provider_ids.insert(name.to_string(), id);
            }
            Err(u) => return Fact::Unavailable(u),
        }
    }
    let instance_of = |id: &Option<Option<String>>| -> Option<String> {
        Some(instance_id(id.as_ref()?.as_deref()?)?.to_string())
    };
    let ids: Vec<String> = provider_ids.values().filter_map(instance_of).collect();
    let found = if ids.is_empty() {
        BTreeMap::new()
    } else {
        match Box::pin(aws.instance_metadata(&Lane::namespace(namespace), &ids)).await {
            Fact::Known(found) => found,
            Fact::Unavailable(u) => return Fact::Unavailable(u),
            Fact::Skipped(why) => return Fact::Skipped(why),
        }
    };
    let nodes = provider_ids
        .into_iter()
        .map(|(name, provider_id)| {
            let node = match (instance_of(&provider_id), provider_id) {
                (_, None) => NodeInstance::NodeNotFound,
                (Some(id), Some(_)) => match found.get(&id) {
                    Some(m) => NodeInstance::Ec2(m.clone()),
                    None => NodeInstance::InstanceNotFound(id),
                },
                (None, Some(provider_id)) => NodeInstance::NotEc2(provider_id),
            };
            (name, node)
        })
        .collect();
    Fact::Known(NodeFallback {
        pods: placed,
        nodes,
    })
}
