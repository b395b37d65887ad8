//! The workload audit: running pods of a ServiceAccount that never got (or lost) its role, and
//! containers whose static credentials shadow IRSA.

use std::collections::BTreeMap;

use crate::reason::Reason;

/// One container's environment: variable name → value (`None` when it comes from `valueFrom`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerFacts {
    /// Container name.
    pub name: String,
    /// Its environment.
    pub env: BTreeMap<String, Option<String>>,
}

/// A running (or pending) pod of the ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodFacts {
    /// Pod name.
    pub name: String,
    /// Its controller, e.g. `Deployment/api` or `ReplicaSet/api-5d8f`, if any.
    pub owner: Option<String>,
    /// Containers and init containers.
    pub containers: Vec<ContainerFacts>,
    /// Containers the webhook was told to skip (`eks.amazonaws.com/skip-containers`).
    pub skip_containers: Vec<String>,
}

/// A finding of the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadFinding {
    /// `StalePodsFound` or `StaticCredentialsFound`.
    pub reason: Reason,
    /// Names the pods and what is wrong.
    pub message: String,
}

fn describe(pod: &PodFacts) -> String {
    match &pod.owner {
        Some(owner) => format!("{} (owned by {owner})", pod.name),
        None => pod.name.clone(),
    }
}

fn list(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

/// Audits the pods of a ServiceAccount annotated with `role_arn`.
pub fn audit(pods: &[PodFacts], role_arn: &str) -> Vec<WorkloadFinding> {
    let mut stale = Vec::new();
    let mut shadowed = Vec::new();
    for pod in pods {
        let checked = pod
            .containers
            .iter()
            .filter(|c| !pod.skip_containers.contains(&c.name));
        let mut problems = Vec::new();
        for c in checked {
            match c.env.get("AWS_ROLE_ARN") {
                None => problems.push(format!("container {} has no AWS_ROLE_ARN", c.name)),
                Some(Some(v)) if v != role_arn => {
                    problems.push(format!("container {} has AWS_ROLE_ARN {v}", c.name))
                }
                _ => {}
            }
            if !c.env.contains_key("AWS_WEB_IDENTITY_TOKEN_FILE") {
                problems.push(format!(
                    "container {} has no AWS_WEB_IDENTITY_TOKEN_FILE",
                    c.name
                ));
            }
            let statics: Vec<&str> = ["AWS_ACCESS_KEY_ID", "AWS_PROFILE"]
                .into_iter()
                .filter(|k| c.env.contains_key(*k))
                .collect();
            if !statics.is_empty() {
                shadowed.push(format!(
                    "{} container {} sets {}",
                    describe(pod),
                    c.name,
                    statics.join(" and ")
                ));
            }
        }
        if !problems.is_empty() {
            stale.push(format!("{}: {}", describe(pod), problems.join(", ")));
        }
    }
    let mut findings = Vec::new();
    if !stale.is_empty() {
        findings.push(WorkloadFinding {
            reason: Reason::StalePodsFound,
            message: format!(
                "{} running pod(s) lack the current role (created before the annotation, or with an old role ARN): {}; restart them",
                stale.len(),
                list(&stale)
            ),
        });
    }
    if !shadowed.is_empty() {
        findings.push(WorkloadFinding {
            reason: Reason::StaticCredentialsFound,
            message: format!(
                "static credentials take precedence over IRSA: {}",
                list(&shadowed)
            ),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/app";

    fn container(name: &str, env: &[(&str, &str)]) -> ContainerFacts {
        ContainerFacts {
            name: name.into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
        }
    }

    fn injected(name: &str) -> ContainerFacts {
        container(
            name,
            &[
                ("AWS_ROLE_ARN", ROLE),
                (
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
                ),
            ],
        )
    }

    #[test]
    fn finds_stale_and_shadowed_pods_and_respects_skip_containers() {
        let good = PodFacts {
            name: "good".into(),
            containers: vec![injected("app")],
            ..Default::default()
        };
        assert!(audit(std::slice::from_ref(&good), ROLE).is_empty());
        let old = PodFacts {
            name: "old".into(),
            owner: Some("ReplicaSet/api-5d8f".into()),
            containers: vec![container("app", &[])],
            ..Default::default()
        };
        let moved = PodFacts {
            name: "moved".into(),
            containers: vec![container(
                "app",
                &[
                    ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/old"),
                    ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
                ],
            )],
            ..Default::default()
        };
        let findings = audit(&[good.clone(), old, moved], ROLE);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].reason, Reason::StalePodsFound);
        assert!(
            findings[0]
                .message
                .contains("old (owned by ReplicaSet/api-5d8f)"),
            "{}",
            findings[0].message
        );
        assert!(
            findings[0].message.contains("role/old")
                && findings[0].message.contains("restart them")
        );
        let skipped = PodFacts {
            name: "sidecar".into(),
            containers: vec![injected("app"), container("proxy", &[])],
            skip_containers: vec!["proxy".into()],
            ..Default::default()
        };
        assert!(audit(&[skipped], ROLE).is_empty());
        let keys = PodFacts {
            name: "keys".into(),
            containers: vec![{
                let mut c = injected("app");
                c.env.insert("AWS_ACCESS_KEY_ID".into(), None);
                c
            }],
            ..Default::default()
        };
        let f = audit(&[keys], ROLE);
        assert_eq!(f[0].reason, Reason::StaticCredentialsFound);
    }
}
