//! A workload manifest checked for shape as the API server checks it, before the audit reads it:
//! `metadata` as an ObjectMeta and `spec` as the kind's spec (the Kubernetes API types), so a
//! field of the wrong type (`env` written as a map, a number where a string goes) is an error
//! naming the field and what was expected, never a silently skipped field. A field the API types
//! do not know is an error when it looks like a misspelling of one the audit reads (`evn`,
//! `envfrom`), since kubectl refuses it and the audit would miss what it meant; other unknown
//! fields (newer Kubernetes versions add some) are warnings.

use k8s_openapi::api::apps::v1::{DaemonSetSpec, DeploymentSpec, ReplicaSetSpec, StatefulSetSpec};
use k8s_openapi::api::batch::v1::{CronJobSpec, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A field of the wrong shape, or an unknown one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeProblem {
    /// Its path in the document, e.g. `spec.template.spec.containers[0].env`.
    pub field: String,
    /// What is wrong and what was expected.
    pub problem: String,
}

/// What the check found: at most one error (the first), and the warnings.
#[derive(Debug, Default)]
pub struct Checked {
    /// A field of the wrong shape, or a misspelled one.
    pub error: Option<ShapeProblem>,
    /// Fields the API types do not know, ignored.
    pub unknown: Vec<ShapeProblem>,
}

/// Field names the audit reads, and those around them: an unknown key this close to one of them
/// is a misspelling, not a newer field.
const READ_FIELDS: &[&str] = &[
    "metadata",
    "spec",
    "template",
    "jobTemplate",
    "labels",
    "annotations",
    "containers",
    "initContainers",
    "serviceAccountName",
    "automountServiceAccountToken",
    "securityContext",
    "runAsUser",
    "fsGroup",
    "volumes",
    "projected",
    "sources",
    "serviceAccountToken",
    "defaultMode",
    "nodeName",
    "schedulerName",
    "name",
    "image",
    "env",
    "envFrom",
    "value",
    "valueFrom",
    "secretKeyRef",
    "configMapKeyRef",
    "secretRef",
    "configMapRef",
    "prefix",
    "volumeMounts",
    "mountPath",
    "data",
    "stringData",
    "binaryData",
];

/// Checks `doc` (a manifest of `kind`) for shape; `at` prefixes paths (`items[2].` in a List).
/// Kinds the audit does not read are not checked.
pub fn check(kind: &str, doc: &Value, at: &str) -> Checked {
    let mut checked = Checked::default();
    let spec = |checked: &mut Checked, f: fn(&Value, &str, &mut Checked)| {
        if let Some(spec) = doc.get("spec") {
            f(spec, &format!("{at}spec"), checked);
        }
    };
    match kind {
        "Pod" => spec(&mut checked, typed::<PodSpec>),
        "Deployment" => spec(&mut checked, typed::<DeploymentSpec>),
        "StatefulSet" => spec(&mut checked, typed::<StatefulSetSpec>),
        "DaemonSet" => spec(&mut checked, typed::<DaemonSetSpec>),
        "ReplicaSet" => spec(&mut checked, typed::<ReplicaSetSpec>),
        "Job" => spec(&mut checked, typed::<JobSpec>),
        "CronJob" => spec(&mut checked, typed::<CronJobSpec>),
        "ConfigMap" => typed::<ConfigMap>(
            &without_type_meta(doc),
            at.trim_end_matches('.'),
            &mut checked,
        ),
        // A Secret's values are never parsed (their errors could quote them): its key maps only.
        "Secret" => {
            for field in ["data", "stringData"] {
                match doc.get(field) {
                    None | Some(Value::Null | Value::Object(_)) => {}
                    Some(_) => {
                        checked.error = Some(ShapeProblem {
                            field: join(at.trim_end_matches('.'), field),
                            problem: "expected a map of keys to values".to_string(),
                        })
                    }
                }
            }
            return checked;
        }
        _ => return checked,
    }
    if checked.error.is_none() && !matches!(kind, "ConfigMap" | "Secret") {
        if let Some(meta) = doc.get("metadata") {
            typed::<ObjectMeta>(meta, &format!("{at}metadata"), &mut checked);
        }
    }
    checked
}

/// A ConfigMap or Secret without `apiVersion` and `kind`, whose values the API types check
/// against one version only.
fn without_type_meta(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(map) = doc.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    doc
}

fn join(at: &str, path: &str) -> String {
    match (at.is_empty(), path) {
        (true, p) => p.to_string(),
        (false, ".") => at.to_string(),
        (false, p) if p.starts_with('[') => format!("{at}{p}"),
        (false, p) => format!("{at}.{p}"),
    }
}

/// Deserialises `value` as `T`, naming the field that does not fit; then finds the fields `T`
/// does not have, by what does not survive a round trip through it.
fn typed<T: DeserializeOwned + Serialize>(value: &Value, at: &str, checked: &mut Checked) {
    let parsed: T = match serde_path_to_error::deserialize(value) {
        Ok(t) => t,
        Err(e) => {
            let field = join(at, &e.path().to_string());
            checked.error = Some(ShapeProblem {
                problem: explain(&field, &e.into_inner().to_string()),
                field,
            });
            return;
        }
    };
    let Ok(round_trip) = serde_json::to_value(&parsed) else {
        return;
    };
    unknown_fields(value, &round_trip, at, checked);
}

/// serde's message without the value it quotes (`invalid type: string "…", expected …` becomes
/// `invalid type: string, expected …`): a manifest's values may be credentials.
fn redact(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (found, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
            let what = found.split([' ', '`', '"']).next().unwrap_or_default();
            let expected = if expected.is_empty() {
                String::new()
            } else {
                format!(", expected{expected}")
            };
            return format!("{prefix}{what}{expected}");
        }
    }
    message.to_string()
}

/// Says what a serde message means for a manifest, with the fix for common mistakes.
fn explain(field: &str, message: &str) -> String {
    let message = redact(message);
    let hint = if message.contains("invalid type: map, expected a sequence") {
        if field.ends_with(".env") {
            "; write env as a list of {name, value} entries (- name: KEY / value: \"...\")"
        } else {
            "; write it as a list (items start with -)"
        }
    } else if message.contains("expected a string") {
        "; quote the value"
    } else {
        ""
    };
    format!("{message}{hint}")
}

fn unknown_fields(input: &Value, known: &Value, path: &str, checked: &mut Checked) {
    match (input, known) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                let field = join(path, key);
                match kept.get(key) {
                    Some(k) => unknown_fields(value, k, &field, checked),
                    None if value.is_null() => {}
                    None => {
                        if let Some(meant) = misspelling_of(key) {
                            if checked.error.is_none() {
                                checked.error = Some(ShapeProblem {
                                    problem: format!(
                                        "unknown field {key:?}; did you mean {meant:?}? (kubectl refuses unknown fields, and the \
                                         audit would not see what it holds)"
                                    ),
                                    field,
                                });
                            }
                        } else {
                            checked.unknown.push(ShapeProblem {
                                problem: format!(
                                    "unknown field {key:?}, not in the Kubernetes API types irsa-doctor knows; ignored"
                                ),
                                field,
                            });
                        }
                    }
                }
            }
        }
        (Value::Array(given), Value::Array(kept)) => {
            for (i, (g, k)) in given.iter().zip(kept).enumerate() {
                unknown_fields(g, k, &format!("{path}[{i}]"), checked);
            }
        }
        _ => {}
    }
}

/// The field the audit reads that `key` misspells, if any.
fn misspelling_of(key: &str) -> Option<&'static str> {
    READ_FIELDS.iter().copied().find(|f| {
        f.eq_ignore_ascii_case(key)
            || (f.len() > 3 && strsim::damerau_levenshtein(f, key) <= 2)
            || (f.len() <= 3 && strsim::damerau_levenshtein(f, key) <= 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(container: Value) -> Value {
        json!({"kind": "Deployment", "metadata": {"name": "api"}, "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [container]}}}})
    }

    #[test]
    fn a_field_of_the_wrong_shape_is_named_with_what_was_expected() {
        let env_map = deployment(json!({"name": "app", "env": {"AWS_REGION": "us-east-1"}}));
        let e = check("Deployment", &env_map, "").error.unwrap();
        assert_eq!(e.field, "spec.template.spec.containers[0].env");
        assert!(
            e.problem.contains("expected a sequence") && e.problem.contains("- name: KEY"),
            "{}",
            e.problem
        );
        let number = deployment(json!({"name": "app", "env": [{"name": "N", "value": 3}]}));
        let e = check("Deployment", &number, "items[1].").error.unwrap();
        assert_eq!(
            e.field,
            "items[1].spec.template.spec.containers[0].env[0].value"
        );
        assert!(e.problem.contains("quote the value"), "{}", e.problem);
        let labels = json!({"kind": "Pod", "metadata": {"name": "p", "labels": {"tier": ["a"]}}, "spec": {"containers": []}});
        assert_eq!(
            check("Pod", &labels, "").error.unwrap().field,
            "metadata.labels.tier"
        );
    }

    #[test]
    fn a_misspelled_field_the_audit_reads_is_an_error_other_unknown_ones_warnings() {
        let typo =
            deployment(json!({"name": "app", "evn": [{"name": "AWS_PROFILE", "value": "x"}]}));
        let e = check("Deployment", &typo, "").error.unwrap();
        assert_eq!(e.field, "spec.template.spec.containers[0].evn");
        assert!(e.problem.contains("did you mean \"env\""), "{}", e.problem);
        let case = deployment(json!({"name": "app", "envfrom": [{"secretRef": {"name": "s"}}]}));
        assert!(check("Deployment", &case, "").error.is_some());
        let newer = deployment(json!({"name": "app", "someFutureField": {"x": 1}}));
        let c = check("Deployment", &newer, "");
        assert!(c.error.is_none());
        assert_eq!(
            c.unknown[0].field,
            "spec.template.spec.containers[0].someFutureField"
        );
        // Known fields, nulls and other kinds pass.
        let fine = deployment(
            json!({"name": "app", "image": "x", "resources": {"limits": {"cpu": "1"}}, "ports": null}),
        );
        let c = check("Deployment", &fine, "");
        assert!(c.error.is_none() && c.unknown.is_empty(), "{c:?}");
        assert!(check("Service", &json!({"spec": {"ports": "x"}}), "")
            .error
            .is_none());
    }

    #[test]
    fn config_maps_and_secrets_are_checked_too_and_no_value_is_quoted() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"A": 1}});
        assert_eq!(check("ConfigMap", &cm, "").error.unwrap().field, "data.A");
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"A": "b"}, "type": "Opaque"});
        let c = check("Secret", &secret, "");
        assert!(c.error.is_none() && c.unknown.is_empty(), "{c:?}");
        let list = json!({"kind": "Secret", "stringData": ["wJalrXUtnFEMI"]});
        let e = check("Secret", &list, "").error.unwrap();
        assert_eq!(e.field, "stringData");
        assert!(!format!("{e:?}").contains("wJalrXUtnFEMI"));
        let literal = deployment(
            json!({"name": "app", "env": [{"name": "K", "value": {"s": "wJalrXUtnFEMI"}}]}),
        );
        let e = check("Deployment", &literal, "").error.unwrap();
        assert!(!e.problem.contains("wJalrXUtnFEMI"), "{}", e.problem);
        assert_eq!(
            redact("invalid type: string \"wJalr\", expected i32"),
            "invalid type: string, expected i32"
        );
    }
}
