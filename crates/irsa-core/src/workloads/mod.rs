//! The workload audit: does what a ServiceAccount declares (a role-arn annotation, or an EKS Pod
//! Identity association) reach every container that needs it? One audit for both mechanisms
//! ([`Expected`]): the mechanism in force decides what injection looks like, and every rule —
//! the skip label, `skip-containers`, preset variables, token readability, credentials the SDKs
//! read first — is written once. Pods as admitted are audited for injection; pod templates
//! (`lint --workload`) only for what the webhook will do with them.

use std::collections::{BTreeMap, BTreeSet};

use crate::pod_identity::{self, AgentPods, Association};
use crate::reason::Reason;

mod audit;
mod read;
mod token;
mod why;

pub use crate::time::parse_timestamp;
pub use audit::audit;
pub use read::{
    env_sources_in, pod_facts_from, pod_template, service_account_times, skip_container_names,
    webhook_registrations, workloads_in, EnvSources,
};

/// The pod label that opts a pod out of the pod identity webhook, whatever its value.
pub const SKIP_LABEL: &str = "eks.amazonaws.com/skip-pod-identity-webhook";
/// The pod annotation naming the container `kubectl exec` and `logs` pick by default.
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// kube2iam's and kiam's pod annotation.
pub const KUBE2IAM_ROLE: &str = "iam.amazonaws.com/role";
/// The projected token volume the webhook adds for IRSA.
pub const TOKEN_VOLUME: &str = "aws-iam-token";
/// Where the webhook mounts it.
pub const TOKEN_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
/// The IRSA role variable the webhook injects.
pub const ROLE_ENV: &str = "AWS_ROLE_ARN";
/// The IRSA token file variable the webhook injects.
pub const TOKEN_ENV: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
/// The scheduler of pods that run on AWS Fargate.
pub const FARGATE_SCHEDULER: &str = "fargate-scheduler";
/// Seconds within which a pod created with its ServiceAccount may have met the webhook's cache
/// before the ServiceAccount did.
pub const CACHE_RACE_SECONDS: i64 = 1;

/// Which mechanism a container's credentials come from, and what the webhook injects for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// IAM roles for service accounts: web identity.
    Irsa,
    /// EKS Pod Identity: container credentials from the agent.
    PodIdentity,
}

impl Mechanism {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Irsa => "IRSA",
            Mechanism::PodIdentity => "EKS Pod Identity",
        }
    }

    /// The two variables the webhook injects: the role (or endpoint), then the token file.
    pub fn variables(self) -> [&'static str; 2] {
        match self {
            Mechanism::Irsa => [ROLE_ENV, TOKEN_ENV],
            Mechanism::PodIdentity => [pod_identity::FULL_URI_ENV, pod_identity::TOKEN_FILE_ENV],
        }
    }

    /// The projected token volume the webhook adds.
    pub fn volume(self) -> &'static str {
        match self {
            Mechanism::Irsa => TOKEN_VOLUME,
            Mechanism::PodIdentity => pod_identity::TOKEN_VOLUME,
        }
    }

    /// Where the webhook mounts it.
    pub fn mount_dir(self) -> &'static str {
        match self {
            Mechanism::Irsa => TOKEN_DIR,
            Mechanism::PodIdentity => pod_identity::TOKEN_DIR,
        }
    }

    /// Whether a container has both of the variables the webhook injects for this mechanism.
    pub fn injected(self, c: &ContainerFacts) -> bool {
        self.variables().iter().all(|v| c.env.contains_key(*v))
    }

    /// The other mechanism.
    pub fn other(self) -> Mechanism {
        match self {
            Mechanism::Irsa => Mechanism::PodIdentity,
            Mechanism::PodIdentity => Mechanism::Irsa,
        }
    }
}

/// What the ServiceAccount declares, as the mechanism in force delivers it: what every
/// container that needs AWS credentials must end up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected<'a> {
    /// IRSA with the annotated role.
    Irsa {
        /// The `eks.amazonaws.com/role-arn` annotation.
        role_arn: &'a str,
    },
    /// EKS Pod Identity with this association.
    PodIdentity {
        /// The association in force.
        association: &'a Association,
        /// Where the agent runs, when known (live clusters).
        agents: Option<&'a AgentPods>,
    },
}

impl Expected<'_> {
    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        match self {
            Expected::Irsa { .. } => Mechanism::Irsa,
            Expected::PodIdentity { .. } => Mechanism::PodIdentity,
        }
    }

    /// The role pods should get, in messages.
    pub fn role(&self) -> &str {
        match self {
            Expected::Irsa { role_arn } => role_arn,
            Expected::PodIdentity { association, .. } => association.pods_role_arn(),
        }
    }

    /// `IRSA role arn:…` or `EKS Pod Identity association a-… (role arn:…)`, in messages.
    pub fn describe(&self) -> String {
        match self {
            Expected::Irsa { role_arn } => format!("IRSA role {role_arn}"),
            Expected::PodIdentity { association, .. } => format!(
                "EKS Pod Identity association {} (role {})",
                association.id,
                association.pods_role_arn()
            ),
        }
    }
}

/// Where a container's `envFrom` takes variables from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvFromSource {
    /// `Secret` or `ConfigMap`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The prefix added to each key (empty when none).
    pub prefix: String,
    /// The key names it holds, when known (`lint` with the object among its inputs); the
    /// values are never read.
    pub keys: Option<BTreeSet<String>>,
}

impl EnvFromSource {
    /// `Secret aws (envFrom)`, in messages.
    pub fn describe(&self) -> String {
        format!("{} {} (envFrom)", self.kind, self.name)
    }
}

/// One container's environment: variable name → value (`None` when it comes from `valueFrom`,
/// or when the audit does not read its value).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerFacts {
    /// Container name.
    pub name: String,
    /// Whether it is an init container.
    pub init: bool,
    /// Its environment.
    pub env: BTreeMap<String, Option<String>>,
    /// Variables set from `valueFrom`: name → where from, e.g. `Secret aws-keys key id`.
    pub env_refs: BTreeMap<String, String>,
    /// `envFrom` sources.
    pub env_from: Vec<EnvFromSource>,
    /// Volume mounts: (volume name, mount path).
    pub mounts: Vec<(String, String)>,
    /// `securityContext.runAsUser` of the container.
    pub run_as_user: Option<i64>,
}

/// A projected volume with a `serviceAccountToken` source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenVolume {
    /// The volume's name.
    pub name: String,
    /// Its `defaultMode`, when set.
    pub default_mode: Option<i64>,
}

/// A label selector as Kubernetes evaluates it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// `matchLabels`.
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`: (key, operator `In`/`NotIn`/`Exists`/`DoesNotExist`, values).
    pub match_expressions: Vec<(String, String, Vec<String>)>,
}

impl LabelSelector {
    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether it selects an object with these labels.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|(k, op, values)| {
                let v = labels.get(k);
                match op.as_str() {
                    "In" => v.is_some_and(|v| values.contains(v)),
                    "NotIn" => !v.is_some_and(|v| values.contains(v)),
                    "Exists" => v.is_some(),
                    "DoesNotExist" => v.is_none(),
                    _ => false,
                }
            })
    }
}

/// One webhook of a MutatingWebhookConfiguration that serves the pod identity webhook.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookRegistration {
    /// `<configuration>/<webhook>`.
    pub name: String,
    /// `failurePolicy: Ignore`: pods are admitted unmutated while the webhook is down.
    pub ignore_failures: bool,
    /// `namespaceSelector`.
    pub namespace_selector: LabelSelector,
    /// `objectSelector`.
    pub object_selector: LabelSelector,
}

/// A running (or pending) pod of the ServiceAccount, or a pod template (`lint --workload`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodFacts {
    /// Pod name; for a template, the workload, e.g. `Deployment reports/api`.
    pub name: String,
    /// Its controller, e.g. `Deployment/api` or `ReplicaSet/api-5d8f`, if any.
    pub owner: Option<String>,
    /// Containers, then init containers.
    pub containers: Vec<ContainerFacts>,
    /// Containers the webhook was told to skip (`eks.amazonaws.com/skip-containers`, read as the
    /// webhook reads it: one CSV record, names not trimmed).
    pub skip_containers: Vec<String>,
    /// Whether this is a pod as admitted (live), not a template the webhook has not seen yet.
    pub admitted: bool,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// `metadata.creationTimestamp`, in seconds since the epoch.
    pub created: Option<i64>,
    /// Pod-level `securityContext.runAsUser`.
    pub run_as_user: Option<i64>,
    /// Pod-level `securityContext.fsGroup`.
    pub fs_group: Option<i64>,
    /// Projected volumes with a `serviceAccountToken` source.
    pub token_volumes: Vec<TokenVolume>,
    /// `spec.nodeName`: where it runs, once scheduled.
    pub node_name: Option<String>,
    /// `spec.schedulerName`: `fargate-scheduler` on AWS Fargate.
    pub scheduler_name: Option<String>,
    /// When the ServiceAccount was created (seconds since the epoch), when the gatherer knows.
    pub service_account_created: Option<i64>,
    /// When the role-arn annotation was last set (its managedFields entry), when known.
    pub role_arn_annotated: Option<i64>,
    /// The labels of the pod's namespace; `None` when unknown.
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// The pod identity webhook's registrations; `None` when unknown, empty when there is none.
    pub webhooks: Option<Vec<WebhookRegistration>>,
}

/// The label the Deployment controller puts on its ReplicaSets' pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The workload a pod belongs to, as a person names it: `Deployment/web` for a pod of
/// ReplicaSet `web-5d8f9c` that carries that hash as its `pod-template-hash`, otherwise its
/// controller (`StatefulSet/db`, `Job/backup-29`), or `Pod/<name>` for a bare pod.
pub fn workload_of(owner: Option<&str>, labels: &BTreeMap<String, String>, pod: &str) -> String {
    let Some(owner) = owner else {
        return format!("Pod/{pod}");
    };
    let deployment = owner
        .strip_prefix("ReplicaSet/")
        .zip(labels.get(POD_TEMPLATE_HASH))
        .and_then(|(rs, hash)| rs.strip_suffix(hash.as_str())?.strip_suffix('-'));
    match deployment {
        Some(name) if !name.is_empty() => format!("Deployment/{name}"),
        _ => owner.to_string(),
    }
}

impl PodFacts {
    /// The container that needs the role: the one `kubectl.kubernetes.io/default-container`
    /// names, else the first container (never an init container).
    pub fn main_container(&self) -> Option<&ContainerFacts> {
        let apps = || self.containers.iter().filter(|c| !c.init);
        self.annotations
            .get(DEFAULT_CONTAINER)
            .and_then(|name| apps().find(|c| &c.name == name))
            .or_else(|| apps().next())
    }

    /// Whether the webhook is told to skip `container`.
    pub fn skips(&self, container: &ContainerFacts) -> bool {
        self.skip_containers.contains(&container.name)
    }

    /// Whether this admitted pod has a container the webhook may have had to mutate and did not:
    /// one it does not skip, with none of either mechanism's variables.
    pub fn lacks_injection(&self) -> bool {
        let variables = [Mechanism::Irsa, Mechanism::PodIdentity].map(Mechanism::variables);
        self.admitted
            && !self.labels.contains_key(SKIP_LABEL)
            && self.containers.iter().any(|c| {
                !self.skips(c) && variables.iter().flatten().all(|v| !c.env.contains_key(*v))
            })
    }

    /// Whether it runs on AWS Fargate (its scheduler, or a Fargate node's name).
    pub fn on_fargate(&self) -> bool {
        self.scheduler_name.as_deref() == Some(FARGATE_SCHEDULER)
            || self
                .node_name
                .as_deref()
                .is_some_and(|n| n.starts_with("fargate-"))
    }

    /// The pod in messages, with its controller.
    pub fn describe(&self) -> String {
        match &self.owner {
            Some(owner) => format!("{} (owned by {owner})", self.name),
            None => self.name.clone(),
        }
    }
}

/// A finding of the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadFinding {
    /// A reason of WorkloadsValid (or `TokenExpirationInvalid` for a pod's annotation).
    pub reason: Reason,
    /// Names the pods and what is wrong.
    pub message: String,
}

/// A pod or pod template read from a manifest, with the ServiceAccount it runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The namespace.
    pub namespace: String,
    /// `spec.serviceAccountName` (`default` when unset).
    pub service_account: String,
    /// The template's facts, named e.g. `Deployment reports/api`.
    pub pod: PodFacts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_named_by_the_workload_a_person_knows() {
        let hash: BTreeMap<String, String> =
            [("pod-template-hash".to_string(), "5d8f9c".to_string())].into();
        assert_eq!(
            workload_of(Some("ReplicaSet/web-5d8f9c"), &hash, "web-5d8f9c-x"),
            "Deployment/web"
        );
        // A ReplicaSet of its own (no matching hash) stays one.
        assert_eq!(
            workload_of(Some("ReplicaSet/web-5d8f9c"), &BTreeMap::new(), "p"),
            "ReplicaSet/web-5d8f9c"
        );
        assert_eq!(
            workload_of(Some("StatefulSet/db"), &hash, "db-0"),
            "StatefulSet/db"
        );
        assert_eq!(workload_of(None, &hash, "debug"), "Pod/debug");
    }
}
