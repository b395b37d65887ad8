//! ServiceAccounts out of Kubernetes manifests already parsed into JSON values (`kind: List` included).

use serde_json::Value;
use thiserror::Error;

use crate::annotations::ServiceAccount;

/// Why a manifest that claims to be a ServiceAccount cannot be read as one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    /// The ServiceAccount has no name, or an empty one.
    #[error("{at}: a ServiceAccount needs metadata.name")]
    MissingName {
        /// Which document, e.g. `sa.yaml, document 2`.
        at: String,
    },
    /// `metadata.name` or `metadata.namespace` is not a string.
    #[error("{at}: metadata.{field} must be a string, found {found}")]
    NotAString {
        /// Which document, e.g. `sa.yaml, document 2`.
        at: String,
        /// The field under `metadata`, e.g. `name`.
        field: String,
        /// The value found, as JSON.
        found: String,
    },
    /// `metadata.annotations` is not a map.
    #[error("{at}: metadata.annotations must be a map of strings to strings, found {found}; write `key: value` lines, not a list")]
    AnnotationsNotAMap {
        /// Which document and ServiceAccount, e.g. `sa.yaml, document 2 (ns/name)`.
        at: String,
        /// The value found, as JSON.
        found: String,
    },
    /// An annotation's value is not a string.
    #[error("{at}: metadata.annotations must be a map of strings to strings; annotation {key:?} has {found} (quote it)")]
    AnnotationNotAString {
        /// Which document and ServiceAccount, e.g. `sa.yaml, document 2 (ns/name)`.
        at: String,
        /// The annotation's key.
        key: String,
        /// The value found, as JSON.
        found: String,
    },
}

/// The namespace of manifests that set none, as `kubectl apply` without `-n` would use.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Every ServiceAccount in `doc`, flattening `kind: List`; other kinds are skipped.
/// `at` names the document in errors (e.g. `sa.yaml, document 2`).
pub fn service_accounts(doc: &Value, at: &str) -> Result<Vec<ServiceAccount>, ManifestError> {
    service_accounts_in(doc, at, DEFAULT_NAMESPACE)
}

/// Like [`service_accounts`], with the namespace for manifests that set none (`kubectl -n`).
pub fn service_accounts_in(
    doc: &Value,
    at: &str,
    namespace: &str,
) -> Result<Vec<ServiceAccount>, ManifestError> {
    let kind = doc.get("kind").and_then(Value::as_str);
    match kind {
        Some("ServiceAccount") => Ok(vec![service_account(doc, at, namespace)?]),
        Some(k) if k == "List" || k.ends_with("List") => {
            let items = doc.get("items").and_then(Value::as_array);
            let mut out = Vec::new();
            for (i, item) in items.into_iter().flatten().enumerate() {
                out.extend(service_accounts_in(
                    item,
                    &format!("{at}, items[{i}]"),
                    namespace,
                )?);
            }
            Ok(out)
        }
        _ => Ok(Vec::new()),
    }
}

fn service_account(
    doc: &Value,
    at: &str,
    default_namespace: &str,
) -> Result<ServiceAccount, ManifestError> {
    let meta = doc.get("metadata");
    let text = |field: &str| -> Result<Option<String>, ManifestError> {
        match meta.and_then(|m| m.get(field)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ManifestError::NotAString {
                at: at.to_string(),
                field: field.to_string(),
                found: other.to_string(),
            }),
        }
    };
    let name = text("name")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ManifestError::MissingName { at: at.to_string() })?;
    let namespace = text("namespace")?.unwrap_or_else(|| default_namespace.to_string());
    let mut annotations = std::collections::BTreeMap::new();
    let map = match meta.and_then(|m| m.get("annotations")) {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        // kubectl refuses these; ignoring them would hide the role annotation.
        Some(other) => {
            return Err(ManifestError::AnnotationsNotAMap {
                at: format!("{at} ({namespace}/{name})"),
                found: other.to_string(),
            })
        }
    };
    if let Some(map) = map {
        for (key, value) in map {
            let Value::String(v) = value else {
                return Err(ManifestError::AnnotationNotAString {
                    at: format!("{at} ({namespace}/{name})"),
                    key: key.clone(),
                    found: value.to_string(),
                });
            };
            annotations.insert(key.clone(), v.clone());
        }
    }
    let (created, role_arn_set) = meta
        .map(crate::workloads::service_account_times)
        .unwrap_or_default();
    Ok(ServiceAccount {
        namespace,
        name,
        annotations,
        created,
        role_arn_set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_service_accounts_and_lists_and_skips_the_rest() {
        let doc = json!({"kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a", "annotations": {"k": "v"}}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "b", "namespace": "ns"}},
        ]});
        let sas = service_accounts(&doc, "f").unwrap();
        assert_eq!(sas.len(), 2);
        assert_eq!(
            (sas[0].namespace.as_str(), sas[0].name.as_str()),
            ("default", "a")
        );
        assert_eq!(sas[0].annotations["k"], "v");
        assert_eq!(
            (sas[1].namespace.as_str(), sas[1].name.as_str()),
            ("ns", "b")
        );
        assert!(service_accounts(&json!(null), "f").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_document_and_field() {
        let no_name = json!({"kind": "ServiceAccount", "metadata": {}});
        assert_eq!(
            service_accounts(&no_name, "sa.yaml, document 2")
                .unwrap_err()
                .to_string(),
            "sa.yaml, document 2: a ServiceAccount needs metadata.name"
        );
        let number = json!({"kind": "ServiceAccount", "metadata": {"name": "a",
            "annotations": {"eks.amazonaws.com/token-expiration": 86400}}});
        let list = json!({"kind": "ServiceAccount", "metadata": {"name": "a",
            "annotations": [{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/x"}]}});
        let err = service_accounts(&list, "f").unwrap_err().to_string();
        assert!(
            err.contains("must be a map") && err.contains("not a list"),
            "{err}"
        );
        let err = service_accounts(&number, "f").unwrap_err().to_string();
        assert!(
            err.contains("eks.amazonaws.com/token-expiration") && err.contains("quote it"),
            "{err}"
        );
    }
}
