//! A pod as a list page is read: only the fields the audit and the probe-pod test read. Serde
//! skips the rest while parsing (managedFields, status, the admission defaults of the spec), so a
//! page of 500 live pods costs a fraction of what `Pod` or a JSON value would. The audit's reader
//! (`irsa_core::workloads::pod_facts_from`) reads the same JSON form; the test below keeps the
//! two in step.

use std::collections::BTreeMap;

use irsa_core::workloads::PodFacts;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, OwnerReference};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One page of a pod list.
#[derive(Deserialize)]
pub(super) struct PodPage {
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default)]
    pub items: Vec<ListedPod>,
}

/// A live pod, where it belongs: what views mapping pods to ServiceAccounts and roles read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlacement {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The ServiceAccount it runs as.
    pub service_account: String,
    /// Its workload, e.g. `Deployment/web` ([`irsa_core::workloads::workload_of`]).
    pub workload: String,
}

/// A listed pod: the metadata and spec fields the audit reads.
#[derive(Deserialize, Serialize)]
pub(super) struct ListedPod {
    metadata: Meta,
    #[serde(default)]
    spec: Spec,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    owner_references: Vec<OwnerReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creation_timestamp: Option<String>,
}

#[derive(Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheduler_name: Option<String>,
    #[serde(default)]
    containers: Vec<Container>,
    #[serde(default)]
    init_containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    security_context: Option<SecurityContext>,
    #[serde(default)]
    volumes: Vec<Volume>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_as_user: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fs_group: Option<i64>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    #[serde(default)]
    name: String,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    env_from: Vec<EnvFrom>,
    #[serde(default)]
    volume_mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    security_context: Option<SecurityContext>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// Present whatever its source; only Secret and ConfigMap keys are named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_from: Option<EnvSource>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_key_ref: Option<KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config_map_key_ref: Option<KeyRef>,
}

#[derive(Deserialize, Serialize)]
struct KeyRef {
    #[serde(default)]
    name: String,
    #[serde(default)]
    key: String,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_ref: Option<NameRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config_map_ref: Option<NameRef>,
}

#[derive(Deserialize, Serialize)]
struct NameRef {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Mount {
    #[serde(default)]
    name: String,
    #[serde(default)]
    mount_path: String,
}

#[derive(Deserialize, Serialize)]
struct Volume {
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    projected: Option<Projected>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Projected {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_mode: Option<i64>,
    #[serde(default)]
    sources: Vec<ProjectedSource>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProjectedSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_account_token: Option<Value>,
}

impl ListedPod {
    /// The pod's uid.
    pub fn uid(&self) -> &str {
        &self.metadata.uid
    }

    /// The ServiceAccount the pod runs as.
    pub fn service_account(&self) -> &str {
        self.spec
            .service_account_name
            .as_deref()
            .unwrap_or("default")
    }

    /// Where the pod belongs: its namespace, name, ServiceAccount and workload.
    pub fn placement(&self) -> PodPlacement {
        let owner = self
            .metadata
            .owner_references
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| format!("{}/{}", o.kind, o.name));
        PodPlacement {
            namespace: self.metadata.namespace.clone(),
            name: self.metadata.name.clone(),
            service_account: self.service_account().to_string(),
            workload: irsa_core::workloads::workload_of(
                owner.as_deref(),
                &self.metadata.labels,
                &self.metadata.name,
            ),
        }
    }

    /// The parts of the pod the audit reads, as admitted, through the reader `lint --workload`
    /// uses for manifests.
    pub fn facts(self) -> PodFacts {
        let value = serde_json::to_value(&self).unwrap_or_default();
        irsa_core::workloads::pod_facts_from(
            value.get("metadata"),
            value.get("spec"),
            self.metadata.name,
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A live pod with every field the audit reads, and more it does not.
    fn live_pod() -> Value {
        let container = |name: &str| {
            json!({
                "name": name, "image": "app:1", "imagePullPolicy": "IfNotPresent",
                "env": [
                    {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/app"},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
                    {"name": "HOME", "value": "/home/app"},
                    {"name": "AWS_SECRET_ACCESS_KEY", "value": "not-read"},
                    {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "id"}}},
                    {"name": "AWS_PROFILE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "profile"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                ],
                "envFrom": [
                    {"prefix": "AWS_", "secretRef": {"name": "aws"}},
                    {"configMapRef": {"name": "settings"}},
                ],
                "volumeMounts": [
                    {"name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "readOnly": true},
                    {"name": "creds", "mountPath": "/home/app/.aws"},
                ],
                "securityContext": {"runAsUser": 1000, "allowPrivilegeEscalation": false},
                "resources": {"limits": {"cpu": "1"}},
            })
        };
        json!({
            "metadata": {
                "name": "api-5d8f-x2x", "namespace": "shop", "uid": "u-1",
                "creationTimestamp": "2026-11-01T10:00:00Z",
                "labels": {"app": "api", "eks.amazonaws.com/skip-pod-identity-webhook": "true"},
                "annotations": {
                    "eks.amazonaws.com/skip-containers": "sidecar",
                    "eks.amazonaws.com/token-expiration": "600",
                    "iam.amazonaws.com/role": "old",
                },
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-5d8f", "uid": "r-1", "controller": true}],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {
                "serviceAccountName": "api",
                "nodeName": "ip-10-0-1-12.ec2.internal",
                "schedulerName": "default-scheduler",
                "containers": [container("app"), container("sidecar")],
                "initContainers": [container("init")],
                "securityContext": {"runAsUser": 2000, "fsGroup": 3000, "runAsNonRoot": true},
                "volumes": [
                    {"name": "aws-iam-token", "projected": {"defaultMode": 288, "sources": [
                        {"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}},
                    {"name": "kube-api-access-abcde", "projected": {"sources": [
                        {"configMap": {"name": "kube-root-ca.crt"}}, {"downwardAPI": {"items": []}}]}},
                    {"name": "creds", "secret": {"secretName": "aws"}},
                ],
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}],
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1"},
        })
    }

    #[test]
    fn a_listed_pod_gives_the_audit_what_the_whole_pod_does() {
        let whole = live_pod();
        let listed: ListedPod = serde_json::from_value(whole.clone()).unwrap();
        assert_eq!(listed.service_account(), "api");
        assert_eq!(listed.uid(), "u-1");
        let expected = irsa_core::workloads::pod_facts_from(
            whole.get("metadata"),
            whole.get("spec"),
            "api-5d8f-x2x".into(),
            true,
        );
        assert_eq!(listed.facts(), expected);
        assert_eq!(expected.containers.len(), 3, "{expected:?}");
        assert!(!expected.token_volumes.is_empty() && !expected.annotations.is_empty());
        assert!(expected.containers[0].env_refs.len() == 3 && expected.owner.is_some());
        assert!(expected.node_name.is_some() && expected.scheduler_name.is_some());
    }

    #[test]
    fn a_pod_without_a_spec_runs_as_the_default_service_account() {
        let listed: ListedPod = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        assert_eq!(listed.service_account(), "default");
        assert!(listed.facts().containers.is_empty());
    }
}
