//! The corpus case format (`tests/corpus/*.yaml`), shared by the library's and the binary's corpus tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// One case: a ServiceAccount, trust policies, the issuer, and the reasons it must yield.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    /// What the case is about.
    pub description: String,
    /// The cluster's issuer URL.
    pub issuer: String,
    /// The providers that exist; `None` when the case does not say (the check is skipped).
    pub oidc_providers: Option<Vec<ProviderEntry>>,
    /// A ServiceAccount manifest.
    pub service_account: Value,
    /// Trust policies by role ARN: an object, or a string of raw or URL-encoded JSON.
    #[serde(default)]
    pub roles: BTreeMap<String, Value>,
    /// `spec.expectedRoleArn`.
    pub expected_role_arn: Option<String>,
    /// Pods and workloads (Deployment, CronJob, …) run against the ServiceAccount offline.
    #[serde(default)]
    pub workloads: Option<Vec<Value>>,
    /// EKS Pod Identity associations, as `aws eks describe-pod-identity-association` prints them.
    #[serde(default)]
    pub pod_identity_associations: Option<Vec<Value>>,
    /// Reasons of severity error, warning or unknown, exactly.
    pub expect: Vec<String>,
}

/// A provider ARN, optionally with its client IDs.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ProviderEntry {
    /// Client IDs unknown.
    Arn(String),
    /// Client IDs known.
    #[serde(rename_all = "camelCase")]
    WithClientIds {
        /// The provider's ARN.
        arn: String,
        /// Its client IDs.
        client_ids: Vec<String>,
    },
}

impl ProviderEntry {
    /// The provider's ARN.
    pub fn arn(&self) -> &str {
        match self {
            ProviderEntry::Arn(arn) | ProviderEntry::WithClientIds { arn, .. } => arn,
        }
    }

    /// Its client IDs, when the case gives them.
    pub fn client_ids(&self) -> Option<&[String]> {
        match self {
            ProviderEntry::Arn(_) => None,
            ProviderEntry::WithClientIds { client_ids, .. } => Some(client_ids),
        }
    }
}

/// The text of a role's trust policy as a case gives it.
pub fn policy_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every case, sorted by file name.
pub fn load_all() -> Vec<(PathBuf, Case)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let case: Case = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                !case.description.is_empty(),
                "{}: no description",
                path.display()
            );
            (path, case)
        })
        .collect()
}
