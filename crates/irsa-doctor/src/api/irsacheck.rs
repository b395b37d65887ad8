//! The IrsaCheck custom resource: which ServiceAccount to diagnose and how often (spec), and the verdict (status).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::{
    DURATION_MAX_LENGTH, DURATION_PATTERN, MAX_PROBE_TIMEOUT, MIN_INTERVAL, MIN_PROBE_TIMEOUT,
};
use super::validation::{DNS1123_SUBDOMAIN_PATTERN, IAM_ACTION_PATTERN};

/// Asks irsa-doctor to diagnose IAM Roles for Service Accounts (IRSA) for one ServiceAccount of this namespace.
///
/// Only a name, never a namespace: the probe pod runs as that ServiceAccount, so creating an
/// IrsaCheck must grant no more than creating a pod in its own namespace.
// Clippy reads the repeated `type_ = ...` of distinct printcolumns as one attribute set twice.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "irsa-doctor.io",
    version = "v1alpha1",
    kind = "IrsaCheck",
    namespaced,
    shortname = "irsacheck",
    category = "irsa",
    status = "IrsaCheckStatus",
    doc = "IrsaCheck continuously diagnoses IAM Roles for Service Accounts (IRSA) for one ServiceAccount of its namespace and reports what is wrong and how to fix it.",
    printcolumn(
        name = "ServiceAccount",
        type_ = "string",
        json_path = ".spec.serviceAccountName"
    ),
    printcolumn(name = "Role", type_ = "string", json_path = ".status.roleArn"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(name = "Last Run", type_ = "date", json_path = ".status.lastRunTime"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#,
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IrsaCheckSpec {
    /// The ServiceAccount to diagnose, in the IrsaCheck's own namespace.
    #[schemars(regex(pattern = DNS1123_SUBDOMAIN_PATTERN), length(min = 1, max = 253))]
    pub service_account_name: String,

    /// How often the full diagnosis re-runs: whole hours, minutes and seconds, e.g. 30m, 1h, 1h30m; at least 1m.
    #[serde(default = "default_interval")]
    #[schemars(
        regex(pattern = DURATION_PATTERN),
        length(max = DURATION_MAX_LENGTH),
        extend("x-kubernetes-validations" = [{
            "rule": format!("duration(self) >= duration('{}')", MIN_INTERVAL.text),
            "message": format!("must be at least {}", MIN_INTERVAL.text),
        }])
    )]
    pub interval: String,

    /// The role ARN the ServiceAccount's eks.amazonaws.com/role-arn annotation must carry: a guard against drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_role_arn: Option<String>,

    /// What the role must be allowed to do, checked by IAM policy simulation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,

    /// The test pod that assumes the role for real, as the ServiceAccount.
    #[serde(default)]
    pub probe: ProbeSpec,
}

/// One IAM action the role must be allowed, optionally on one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// An IAM action, <service>:<action>, e.g. s3:GetObject; * and ? are allowed in the action part.
    #[schemars(regex(pattern = IAM_ACTION_PATTERN))]
    pub action: String,

    /// The resource ARN the action must be allowed on, e.g. arn:aws:s3:::reports/*. Defaults to "*".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub resource: Option<String>,
}

/// The probe: a pod running as the ServiceAccount that calls `aws sts get-caller-identity`.
///
/// Its image and command come from the operator's configuration, never from here, so an IrsaCheck
/// cannot run arbitrary code as the ServiceAccount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ProbeSpec {
    /// Whether to run the probe pod at all.
    pub enabled: bool,

    /// How long the probe may take, pod start included: whole minutes and seconds, e.g. 90s or 2m; from 10s to 15m.
    #[schemars(
        regex(pattern = DURATION_PATTERN),
        length(max = DURATION_MAX_LENGTH),
        extend("x-kubernetes-validations" = [{
            "rule": format!(
                "duration(self) >= duration('{}') && duration(self) <= duration('{}')",
                MIN_PROBE_TIMEOUT.text, MAX_PROBE_TIMEOUT.text
            ),
            "message": format!("must be from {} to {}", MIN_PROBE_TIMEOUT.text, MAX_PROBE_TIMEOUT.text),
        }])
    )]
    pub timeout: String,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            enabled: true,
            timeout: "2m".to_string(),
        }
    }
}

fn default_interval() -> String {
    "1h".to_string()
}

/// What the last diagnosis found. Written only by the operator, through the status subresource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IrsaCheckStatus {
    /// The metadata.generation of the spec the last diagnosis ran against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The role ARN the ServiceAccount is annotated with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,

    /// The identity the probe pod obtained from STS, e.g. arn:aws:sts::111122223333:assumed-role/s3-reader/botocore-session-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_arn: Option<String>,

    /// When the last diagnosis finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_run_time: Option<String>,

    /// ServiceAccountValid, OIDCProviderValid, TrustPolicyValid, PermissionsValid, ProbeSucceeded, WorkloadsValid and Ready, their summary.
    // Keyed by type so server-side apply merges conditions one by one instead of replacing the list.
    #[serde(default)]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["type"]
    ))]
    pub conditions: Vec<Condition>,

    /// Everything wrong or worth attention, one entry per finding.
    // Always serialized, even empty, so that a merge patch clears findings that went away.
    #[serde(default)]
    pub findings: Vec<StatusFinding>,
}

/// One finding of the diagnosis, as listed in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusFinding {
    /// A reason from the catalogue, e.g. TrustPolicySubjectMismatch.
    pub reason: String,
    /// error, warning or unknown.
    pub severity: String,
    /// What was expected, what was found, and the fix.
    pub message: String,
}

impl Permission {
    /// The resource the action must be allowed on; `*` when none is given.
    pub fn resource(&self) -> &str {
        self.resource.as_deref().unwrap_or("*")
    }
}

/// The CustomResourceDefinition as YAML, as `irsa-doctor crd` prints it and `crds/irsacheck.yaml` holds it.
pub fn crd_yaml() -> String {
    serde_yaml_ng::to_string(&IrsaCheck::crd())
        .expect("a CustomResourceDefinition has only string keys and always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd_json() -> serde_json::Value {
        serde_json::to_value(IrsaCheck::crd()).unwrap()
    }

    #[test]
    fn crd_names_scope_and_status_subresource() {
        let crd = crd_json();
        assert_eq!(crd["metadata"]["name"], "irsachecks.irsa-doctor.io");
        let spec = &crd["spec"];
        assert_eq!(spec["group"], "irsa-doctor.io");
        assert_eq!(spec["scope"], "Namespaced");
        assert_eq!(spec["names"]["kind"], "IrsaCheck");
        assert_eq!(spec["names"]["plural"], "irsachecks");
        assert_eq!(
            spec["names"]["shortNames"],
            serde_json::json!(["irsacheck"])
        );
        assert_eq!(spec["names"]["categories"], serde_json::json!(["irsa"]));
        let version = &spec["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    }

    #[test]
    fn crd_printer_columns() {
        let crd = crd_json();
        let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["type"].as_str().unwrap().to_string(),
                    c["jsonPath"].as_str().unwrap().to_string(),
                    c["priority"].as_i64(),
                )
            })
            .collect::<Vec<_>>();
        let ready = |field: &str| format!(r#".status.conditions[?(@.type=="Ready")].{field}"#);
        let expected = [
            (
                "ServiceAccount",
                "string",
                ".spec.serviceAccountName".to_string(),
                None,
            ),
            ("Role", "string", ".status.roleArn".to_string(), None),
            ("Ready", "string", ready("status"), None),
            ("Reason", "string", ready("reason"), None),
            ("Last Run", "date", ".status.lastRunTime".to_string(), None),
            (
                "Age",
                "date",
                ".metadata.creationTimestamp".to_string(),
                None,
            ),
            ("Message", "string", ready("message"), Some(1)),
        ]
        .map(|(n, t, p, prio)| (n.to_string(), t.to_string(), p, prio));
        assert_eq!(columns, expected);
    }

    #[test]
    fn crd_schema_carries_validation_and_list_map_conditions() {
        let crd = crd_json();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        let spec = &schema["spec"];
        assert_eq!(spec["required"], serde_json::json!(["serviceAccountName"]));
        let props = &spec["properties"];
        assert_eq!(
            props["serviceAccountName"]["pattern"],
            DNS1123_SUBDOMAIN_PATTERN
        );
        assert_eq!(props["serviceAccountName"]["maxLength"], 253);
        assert_eq!(props["interval"]["pattern"], DURATION_PATTERN);
        assert_eq!(props["interval"]["maxLength"], DURATION_MAX_LENGTH);
        assert_eq!(props["interval"]["default"], "1h");
        assert_eq!(
            props["interval"]["x-kubernetes-validations"][0]["rule"],
            "duration(self) >= duration('1m')"
        );
        assert_eq!(
            props["probe"]["default"],
            serde_json::json!({ "enabled": true, "timeout": "2m" })
        );
        assert_eq!(
            props["probe"]["properties"]["timeout"]["x-kubernetes-validations"][0]["rule"],
            "duration(self) >= duration('10s') && duration(self) <= duration('15m')"
        );
        assert_eq!(
            props["permissions"]["items"]["properties"]["action"]["pattern"],
            IAM_ACTION_PATTERN
        );
        // The probe image and command are operator configuration, never part of the resource.
        let probe_fields = props["probe"]["properties"].as_object().unwrap();
        assert_eq!(
            probe_fields.keys().collect::<Vec<_>>(),
            ["enabled", "timeout"]
        );

        let conditions = &schema["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
        let required = conditions["items"]["required"].as_array().unwrap();
        assert!(required.contains(&serde_json::json!("type")));
        assert_eq!(
            schema["status"]["properties"]["lastRunTime"]["format"],
            "date-time"
        );
    }

    #[test]
    fn status_round_trips_and_always_lists_findings() {
        let status = IrsaCheckStatus {
            observed_generation: Some(4),
            role_arn: Some("arn:aws:iam::111122223333:role/s3-reader".into()),
            ..IrsaCheckStatus::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "observedGeneration": 4,
                "roleArn": "arn:aws:iam::111122223333:role/s3-reader",
                "conditions": [],
                "findings": [],
            })
        );
        assert_eq!(
            serde_json::from_value::<IrsaCheckStatus>(json).unwrap(),
            status
        );
    }
}
