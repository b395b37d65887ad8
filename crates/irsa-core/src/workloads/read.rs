//! Reading pods and pod templates in their JSON form into [`PodFacts`]: live pods as the API
//! server returns them, and templates of the manifests `lint --workload` reads (already checked
//! for shape by the caller). Only the fields the audit reads are kept, and of the environment only
//! the values it reads, so a literal key in a pod spec never enters memory beyond the parse.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{
    ContainerFacts, EnvFromSource, LabelSelector, PodFacts, TokenVolume, WebhookRegistration,
    Workload, ROLE_ENV, TOKEN_ENV,
};
use crate::annotations::SKIP_CONTAINERS;
use crate::pod_identity::{FULL_URI_ENV, TOKEN_FILE_ENV};
use crate::time::parse_timestamp;

/// The variables whose values the audit reads; of every other variable only the name is kept.
const VALUES_READ: &[&str] = &[ROLE_ENV, TOKEN_ENV, FULL_URI_ENV, TOKEN_FILE_ENV, "HOME"];

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

fn list<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// The container names in `eks.amazonaws.com/skip-containers`, read as the webhook reads them:
/// the first record of Go's `encoding/csv` (quotes allowed, spaces kept, so `"a, b"` names `a`
/// and ` b`); a value it cannot read skips nothing.
pub fn skip_container_names(value: &str) -> Vec<String> {
    let record = value.split(['\n']).next().unwrap_or_default();
    let record = record.strip_suffix('\r').unwrap_or(record);
    if value.is_empty() {
        return Vec::new();
    }
    let mut fields = Vec::new();
    let mut rest = record;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut chars = quoted.char_indices();
            let after = loop {
                match chars.next() {
                    Some((i, '"')) if quoted[i + 1..].starts_with('"') => {
                        field.push('"');
                        chars.next();
                    }
                    Some((i, '"')) => break &quoted[i + 1..],
                    Some((_, c)) => field.push(c),
                    // An unterminated quote: the reader fails, nothing is skipped.
                    None => return Vec::new(),
                }
            };
            fields.push(field);
            match after.strip_prefix(',') {
                Some(next) => rest = next,
                None if after.is_empty() => return fields,
                None => return Vec::new(),
            }
        } else {
            let (field, next) = match rest.split_once(',') {
                Some((f, n)) => (f, Some(n)),
                None => (rest, None),
            };
            if field.contains('"') {
                return Vec::new();
            }
            fields.push(field.to_string());
            match next {
                Some(n) => rest = n,
                None => return fields,
            }
        }
    }
}

fn container_facts(c: &Value, init: bool) -> ContainerFacts {
    let mut facts = ContainerFacts {
        name: str_of(c, "name"),
        init,
        run_as_user: c
            .pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64),
        ..ContainerFacts::default()
    };
    for e in list(c, "env") {
        let name = str_of(e, "name");
        let value = e
            .get("value")
            .and_then(Value::as_str)
            .filter(|_| VALUES_READ.contains(&name.as_str()));
        facts.env.insert(name.clone(), value.map(str::to_string));
        if let Some(from) = e.get("valueFrom") {
            let what = if let Some(r) = from.get("secretKeyRef") {
                format!("Secret {} key {}", str_of(r, "name"), str_of(r, "key"))
            } else if let Some(r) = from.get("configMapKeyRef") {
                format!("ConfigMap {} key {}", str_of(r, "name"), str_of(r, "key"))
            } else {
                "a field reference".to_string()
            };
            facts.env_refs.insert(name, what);
        }
    }
    for e in list(c, "envFrom") {
        for (kind, key) in [("Secret", "secretRef"), ("ConfigMap", "configMapRef")] {
            if let Some(r) = e.get(key) {
                facts.env_from.push(EnvFromSource {
                    kind: kind.to_string(),
                    name: str_of(r, "name"),
                    prefix: str_of(e, "prefix"),
                    keys: None,
                });
            }
        }
    }
    for m in list(c, "volumeMounts") {
        facts
            .mounts
            .push((str_of(m, "name"), str_of(m, "mountPath")));
    }
    facts
}

/// The facts of a pod from its `metadata` and `spec` in JSON form; `name` names it in findings.
pub fn pod_facts_from(
    meta: Option<&Value>,
    spec: Option<&Value>,
    name: String,
    admitted: bool,
) -> PodFacts {
    let null = Value::Null;
    let meta = meta.unwrap_or(&null);
    let spec = spec.unwrap_or(&null);
    let annotations = string_map(meta.get("annotations"));
    let containers = list(spec, "containers")
        .map(|c| container_facts(c, false))
        .chain(list(spec, "initContainers").map(|c| container_facts(c, true)))
        .collect();
    let token_volumes = list(spec, "volumes")
        .filter(|v| {
            v.pointer("/projected/sources")
                .and_then(Value::as_array)
                .is_some_and(|s| s.iter().any(|s| s.get("serviceAccountToken").is_some()))
        })
        .map(|v| TokenVolume {
            name: str_of(v, "name"),
            default_mode: v.pointer("/projected/defaultMode").and_then(Value::as_i64),
        })
        .collect();
    let owner = list(meta, "ownerReferences")
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| format!("{}/{}", str_of(o, "kind"), str_of(o, "name")));
    let text = |key: &str| spec.get(key).and_then(Value::as_str).map(str::to_string);
    PodFacts {
        name,
        owner,
        containers,
        skip_containers: annotations
            .get(SKIP_CONTAINERS)
            .map(|s| skip_container_names(s))
            .unwrap_or_default(),
        admitted,
        labels: string_map(meta.get("labels")),
        created: meta
            .get("creationTimestamp")
            .and_then(Value::as_str)
            .and_then(parse_timestamp),
        run_as_user: spec
            .pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64),
        fs_group: spec
            .pointer("/securityContext/fsGroup")
            .and_then(Value::as_i64),
        token_volumes,
        node_name: text("nodeName"),
        scheduler_name: text("schedulerName"),
        annotations,
        ..PodFacts::default()
    }
}

/// The pod template of a manifest of `kind`, when it is a Pod or a workload that has one.
pub fn pod_template<'a>(kind: &str, doc: &'a Value) -> Option<&'a Value> {
    match kind {
        "Pod" => Some(doc),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            doc.pointer("/spec/template")
        }
        "CronJob" => doc.pointer("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Every Pod and pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) in
/// a manifest, flattening `kind: List`. Templates are not admitted: injection is not expected.
pub fn workloads_in(doc: &Value, default_namespace: &str) -> Vec<Workload> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind == "List" || kind.ends_with("List") {
        return list(doc, "items")
            .flat_map(|i| workloads_in(i, default_namespace))
            .collect();
    }
    let Some(template) = pod_template(kind, doc) else {
        return Vec::new();
    };
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(default_namespace)
        .to_string();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let spec = template.get("spec");
    let service_account = spec
        .and_then(|s| s.get("serviceAccountName"))
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    // A Pod read back from a cluster (`kubectl get pod -o yaml`) has a uid: it was admitted, and
    // is audited as a live pod; a manifest to be applied has none.
    let admitted = kind == "Pod" && doc.pointer("/metadata/uid").is_some();
    let mut pod = pod_facts_from(
        template.get("metadata"),
        spec,
        format!("{kind} {namespace}/{name}"),
        admitted,
    );
    if !admitted {
        pod.owner = None;
    }
    vec![Workload {
        namespace,
        service_account,
        pod,
    }]
}

/// The key names of a ConfigMap or Secret, by (namespace, kind, name): what `envFrom` takes from
/// it. Only names are read; a Secret's values never leave the parse.
pub type EnvSources = BTreeMap<(String, String, String), BTreeSet<String>>;

/// Adds the ConfigMaps and Secrets of a manifest (`kind: List` flattened) to `sources`.
pub fn env_sources_in(doc: &Value, default_namespace: &str, sources: &mut EnvSources) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind == "List" || kind.ends_with("List") {
        for item in list(doc, "items") {
            env_sources_in(item, default_namespace, sources);
        }
        return;
    }
    let fields: &[&str] = match kind {
        "ConfigMap" => &["data", "binaryData"],
        "Secret" => &["data", "stringData"],
        _ => return,
    };
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(default_namespace);
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let keys = fields
        .iter()
        .filter_map(|f| doc.get(*f).and_then(Value::as_object))
        .flat_map(|m| m.keys().cloned())
        .collect();
    sources.insert(
        (namespace.to_string(), kind.to_string(), name.to_string()),
        keys,
    );
}

impl Workload {
    /// Tells each `envFrom` source found in `sources` which keys it holds.
    pub fn resolve_env_from(&mut self, sources: &EnvSources) {
        for c in &mut self.pod.containers {
            for source in &mut c.env_from {
                let key = (
                    self.namespace.clone(),
                    source.kind.clone(),
                    source.name.clone(),
                );
                if let Some(keys) = sources.get(&key) {
                    source.keys = Some(keys.clone());
                }
            }
        }
    }
}

/// When a ServiceAccount was created and when its role-arn annotation was last set, from its
/// `metadata` in JSON form: the time of the `managedFields` entry that owns
/// `f:metadata.f:annotations.f:eks.amazonaws.com/role-arn` (the latest, if several do), or `None`.
pub fn service_account_times(meta: &Value) -> (Option<i64>, Option<i64>) {
    let created = meta
        .get("creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_timestamp);
    let annotated = list(meta, "managedFields")
        .filter(|m| {
            m.pointer("/fieldsV1/f:metadata/f:annotations")
                .and_then(|a| a.get(format!("f:{}", crate::annotations::ROLE_ARN)))
                .is_some()
        })
        .filter_map(|m| {
            m.get("time")
                .and_then(Value::as_str)
                .and_then(parse_timestamp)
        })
        .max();
    (created, annotated)
}

impl LabelSelector {
    /// Reads a selector from its JSON form.
    pub fn from_value(v: Option<&Value>) -> LabelSelector {
        let Some(v) = v else {
            return LabelSelector::default();
        };
        LabelSelector {
            match_labels: string_map(v.get("matchLabels")),
            match_expressions: list(v, "matchExpressions")
                .map(|e| {
                    (
                        str_of(e, "key"),
                        str_of(e, "operator"),
                        list(e, "values")
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                    )
                })
                .collect(),
        }
    }
}

/// The webhooks of a MutatingWebhookConfiguration (JSON form) that serve the pod identity
/// webhook (`iam-for-pods` or `pod-identity-webhook` in the configuration's or webhook's name).
pub fn webhook_registrations(config: &Value) -> Vec<WebhookRegistration> {
    let config_name = config
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ours = |n: &str| n.contains("iam-for-pods") || n.contains("pod-identity-webhook");
    list(config, "webhooks")
        .filter(|w| ours(config_name) || ours(&str_of(w, "name")))
        .map(|w| WebhookRegistration {
            name: format!("{config_name}/{}", str_of(w, "name")),
            ignore_failures: w.get("failurePolicy").and_then(Value::as_str) == Some("Ignore"),
            namespace_selector: LabelSelector::from_value(w.get("namespaceSelector")),
            object_selector: LabelSelector::from_value(w.get("objectSelector")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::SKIP_LABEL;
    use std::collections::BTreeMap;

    const ROLE: &str = "arn:aws:iam::111122223333:role/app";

    #[test]
    fn skip_containers_are_read_as_the_webhooks_csv_reader_reads_them() {
        assert_eq!(skip_container_names("proxy"), ["proxy"]);
        assert_eq!(skip_container_names("a,b"), ["a", "b"]);
        // Spaces are part of the name: " b" names no container called b.
        assert_eq!(skip_container_names("a, b"), ["a", " b"]);
        assert_eq!(skip_container_names(r#""a,b",c"#), ["a,b", "c"]);
        assert_eq!(skip_container_names(r#""x""y""#), [r#"x"y"#]);
        assert_eq!(skip_container_names("a,b\nc"), ["a", "b"]);
        // What Go's reader refuses skips nothing.
        assert!(skip_container_names(r#"a"b"#).is_empty());
        assert!(skip_container_names(r#""open"#).is_empty());
        assert!(skip_container_names(r#""a"x"#).is_empty());
        assert!(skip_container_names("").is_empty());
    }

    #[test]
    fn keeps_no_value_it_does_not_read() {
        let spec = serde_json::json!({"containers": [{"name": "app", "env": [
            {"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI/K7MDENG"},
            {"name": "AWS_ROLE_ARN", "value": ROLE}
        ]}]});
        let pod = pod_facts_from(None, Some(&spec), "p".into(), true);
        let env = &pod.containers[0].env;
        assert_eq!(env.get("AWS_SECRET_ACCESS_KEY"), Some(&None));
        assert_eq!(env.get("AWS_ROLE_ARN"), Some(&Some(ROLE.to_string())));
        assert!(!format!("{pod:?}").contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn reads_service_account_times_and_webhook_registrations() {
        let meta = serde_json::json!({
            "creationTimestamp": "2024-05-01T12:00:00Z",
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "time": "2024-05-01T12:00:00Z",
                 "fieldsV1": {"f:metadata": {"f:labels": {}}}},
                {"manager": "kubectl-annotate", "time": "2024-05-02T08:30:00Z",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:eks.amazonaws.com/role-arn": {}}}}}
            ]
        });
        let (created, annotated) = service_account_times(&meta);
        assert_eq!(created, parse_timestamp("2024-05-01T12:00:00Z"));
        assert_eq!(annotated, parse_timestamp("2024-05-02T08:30:00Z"));
        let config = serde_json::json!({
            "metadata": {"name": "pod-identity-webhook"},
            "webhooks": [{
                "name": "iam-for-pods.amazonaws.com",
                "failurePolicy": "Ignore",
                "objectSelector": {"matchExpressions": [
                    {"key": SKIP_LABEL, "operator": "DoesNotExist"}
                ]}
            }]
        });
        let w = webhook_registrations(&config);
        assert_eq!(w.len(), 1);
        assert!(w[0].ignore_failures);
        assert!(w[0].object_selector.matches(&BTreeMap::new()));
        let labels = BTreeMap::from([(SKIP_LABEL.to_string(), "false".to_string())]);
        assert!(!w[0].object_selector.matches(&labels));
        let other = serde_json::json!({"metadata": {"name": "istio-sidecar-injector"}, "webhooks": [{"name": "sidecar-injector.istio.io"}]});
        assert!(webhook_registrations(&other).is_empty());
    }

    #[test]
    fn reads_templates() {
        let doc: Value = serde_json::json!({
            "kind": "List",
            "items": [{
                "kind": "CronJob",
                "metadata": {"name": "nightly", "namespace": "reports"},
                "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                    "serviceAccountName": "s3-reader",
                    "schedulerName": "fargate-scheduler",
                    "containers": [{"name": "job", "envFrom": [{"secretRef": {"name": "aws"}}]}],
                    "initContainers": [{"name": "init"}]
                }}}}}
            }]
        });
        let w = workloads_in(&doc, "default");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].pod.name, "CronJob reports/nightly");
        assert_eq!(w[0].service_account, "s3-reader");
        assert!(w[0].pod.on_fargate());
        let c = &w[0].pod.containers;
        assert_eq!((c[0].init, c[1].init), (false, true));
        assert_eq!(c[0].env_from[0].describe(), "Secret aws (envFrom)");
        assert_eq!(w[0].pod.main_container().unwrap().name, "job");
    }
}
