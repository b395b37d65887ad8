//! Can a pod fall back to its node's role? When a pod's web identity credentials fail (or were
//! never injected), the AWS SDK's default chain goes on to the instance metadata service and
//! silently uses the node's instance role. Whether a pod can reach it depends on the instance's
//! metadata options: IMDSv1 (`HttpTokens` optional) answers any pod; IMDSv2 answers pods on the
//! container network only when the PUT response hop limit is 2 or more; `hostNetwork` pods reach
//! it whatever the hop limit ([`Reason::NodeRoleFallbackPossible`]).

use std::collections::BTreeMap;

use crate::assume_history::named;
use crate::reason::Reason;
use crate::workloads::WorkloadFinding;

/// A running pod of the ServiceAccount and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningPod {
    /// Its name.
    pub name: String,
    /// `spec.nodeName`.
    pub node: String,
    /// `spec.hostNetwork`.
    pub host_network: bool,
}

/// `MetadataOptions.HttpTokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpTokens {
    /// IMDSv2 only.
    Required,
    /// IMDSv1 allowed.
    Optional,
}

/// The metadata options of one EC2 instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceMetadata {
    /// `i-…`.
    pub instance_id: String,
    /// `HttpEndpoint` is enabled (the default).
    pub endpoint_enabled: bool,
    /// `HttpTokens`.
    pub http_tokens: HttpTokens,
    /// `HttpPutResponseHopLimit`, when reported.
    pub hop_limit: Option<i32>,
}

/// What stands behind a node, as far as its instance role goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeInstance {
    /// An EC2 instance and its metadata options.
    Ec2(InstanceMetadata),
    /// The node names an EC2 instance that EC2 does not list (another account or region, or
    /// terminated).
    InstanceNotFound(String),
    /// Not an EC2 instance (Fargate, another provider, or no provider ID): no instance role.
    NotEc2(Option<String>),
    /// The Node object does not exist (any more).
    NodeNotFound,
}

/// The pods of a ServiceAccount and the instances behind their nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeFallback {
    /// Running pods with a node.
    pub pods: Vec<RunningPod>,
    /// Their nodes by name.
    pub nodes: BTreeMap<String, NodeInstance>,
}

/// The instance ID of an AWS provider ID, `aws:///us-east-1a/i-0abc…` (or `aws:///i-0abc…`);
/// `None` for anything else (Fargate's IDs name no instance).
pub fn instance_id(provider_id: &str) -> Option<&str> {
    let rest = provider_id.strip_prefix("aws://")?;
    let id = rest.rsplit('/').next()?;
    let hex = id.strip_prefix("i-")?;
    let valid = matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some(id)
}

impl InstanceMetadata {
    /// Why a pod on this instance reaches the instance role, if it does.
    fn exposure(&self, host_network: bool) -> Option<String> {
        if !self.endpoint_enabled {
            return None;
        }
        if self.http_tokens == HttpTokens::Optional {
            return Some("IMDSv1 allowed (HttpTokens optional)".into());
        }
        match self.hop_limit {
            Some(hops) if hops >= 2 => Some(format!(
                "IMDSv2 with hop limit {hops}, which containers reach"
            )),
            _ if host_network => Some("hostNetwork pods reach IMDS whatever the hop limit".into()),
            _ => None,
        }
    }
}

impl NodeFallback {
    /// One finding naming every node whose role a pod of the ServiceAccount can silently fall
    /// back to, why, and which pods run there.
    pub fn findings(&self) -> Vec<WorkloadFinding> {
        // (node, instance, why) → pods
        let mut exposed: BTreeMap<(&str, &str, String), Vec<&str>> = BTreeMap::new();
        for pod in &self.pods {
            let Some(NodeInstance::Ec2(instance)) = self.nodes.get(&pod.node) else {
                continue;
            };
            if let Some(why) = instance.exposure(pod.host_network) {
                let pods = exposed
                    .entry((&pod.node, &instance.instance_id, why))
                    .or_default();
                pods.push(&pod.name);
            }
        }
        if exposed.is_empty() {
            return Vec::new();
        }
        let pods: usize = exposed.values().map(Vec::len).sum();
        let nodes: Vec<String> = exposed
            .iter()
            .map(|((node, id, why), pods)| {
                format!(
                    "node {node} ({id}): {why}, pod(s) {}",
                    named(pods.iter().copied())
                )
            })
            .collect();
        vec![WorkloadFinding {
            reason: Reason::NodeRoleFallbackPossible,
            message: format!(
                "{pods} pod(s) of the ServiceAccount can reach their node's instance role: if their web \
                 identity credentials fail, the AWS SDK falls back to it without an error; {}",
                named(nodes.iter().map(String::as_str))
            ),
        }]
    }

    /// One sentence for the condition when no pod can fall back.
    pub fn summary(&self) -> String {
        let count = |f: fn(&NodeInstance) -> bool| self.nodes.values().filter(|n| f(n)).count();
        let mut text = format!(
            "no pod can fall back to a node's instance role: the {} EC2 node(s) running its pods \
             require IMDSv2 with hop limit 1 (or disable IMDS)",
            count(|n| matches!(n, NodeInstance::Ec2(_)))
        );
        let other = count(|n| matches!(n, NodeInstance::NotEc2(_)));
        if other > 0 {
            text.push_str(&format!(", {other} node(s) are not EC2 instances"));
        }
        let missing: Vec<&str> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                matches!(
                    n,
                    NodeInstance::InstanceNotFound(_) | NodeInstance::NodeNotFound
                )
            })
            .map(|(name, _)| name.as_str())
            .collect();
        if !missing.is_empty() {
            text.push_str(&format!(
                ", and the instances of node(s) {} were not found",
                named(missing.into_iter())
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec2(id: &str, tokens: HttpTokens, hops: i32) -> NodeInstance {
        NodeInstance::Ec2(InstanceMetadata {
            instance_id: id.into(),
            endpoint_enabled: true,
            http_tokens: tokens,
            hop_limit: Some(hops),
        })
    }

    fn pod(name: &str, node: &str, host_network: bool) -> RunningPod {
        RunningPod {
            name: name.into(),
            node: node.into(),
            host_network,
        }
    }

    #[test]
    fn provider_ids_name_instances() {
        assert_eq!(
            instance_id("aws:///us-east-1a/i-0123456789abcdef0"),
            Some("i-0123456789abcdef0")
        );
        assert_eq!(instance_id("aws:///i-0123abcd"), Some("i-0123abcd"));
        for other in [
            "aws:///us-east-1b/fargate-ip-10-0-1-2",
            "kind://docker/kind/kind-control-plane",
            "gce://project/zone/i-0123456789abcdef0",
            "aws:///us-east-1a/i-0123456789abcdefX",
            "aws:///us-east-1a/i-",
            "",
        ] {
            assert_eq!(instance_id(other), None, "{other}");
        }
    }

    #[test]
    fn imdsv1_and_hop_limit_two_expose_pods_hop_limit_one_only_host_network_ones() {
        let f = NodeFallback {
            pods: vec![
                pod("v1", "a", false),
                pod("hops", "b", false),
                pod("safe", "c", false),
                pod("host", "c", true),
                pod("fargate", "d", false),
            ],
            nodes: BTreeMap::from([
                ("a".into(), ec2("i-0000000a", HttpTokens::Optional, 1)),
                ("b".into(), ec2("i-0000000b", HttpTokens::Required, 2)),
                ("c".into(), ec2("i-0000000c", HttpTokens::Required, 1)),
                ("d".into(), NodeInstance::NotEc2(None)),
            ]),
        };
        let found = f.findings();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].reason, Reason::NodeRoleFallbackPossible);
        let m = &found[0].message;
        assert!(m.starts_with("3 pod(s)"), "{m}");
        assert!(
            m.contains("node a (i-0000000a): IMDSv1 allowed (HttpTokens optional), pod(s) v1"),
            "{m}"
        );
        assert!(
            m.contains("node b (i-0000000b): IMDSv2 with hop limit 2"),
            "{m}"
        );
        assert!(m.contains("node c (i-0000000c): hostNetwork pods reach IMDS whatever the hop limit, pod(s) host"), "{m}");
        assert!(!m.contains("safe") && !m.contains("fargate"), "{m}");
    }

    #[test]
    fn hardened_nodes_and_disabled_endpoints_expose_nothing() {
        let mut disabled = InstanceMetadata {
            instance_id: "i-0000000e".into(),
            endpoint_enabled: false,
            http_tokens: HttpTokens::Optional,
            hop_limit: Some(3),
        };
        let f = NodeFallback {
            pods: vec![
                pod("p", "c", false),
                pod("q", "e", true),
                pod("r", "gone", false),
            ],
            nodes: BTreeMap::from([
                ("c".into(), ec2("i-0000000c", HttpTokens::Required, 1)),
                ("e".into(), NodeInstance::Ec2(disabled.clone())),
                (
                    "gone".into(),
                    NodeInstance::InstanceNotFound("i-0000000f".into()),
                ),
            ]),
        };
        assert!(f.findings().is_empty());
        let s = f.summary();
        assert!(s.contains("the 2 EC2 node(s)"), "{s}");
        assert!(s.contains("node(s) gone were not found"), "{s}");
        disabled.endpoint_enabled = true;
        assert!(disabled.exposure(false).is_some());
    }
}
