//! The IrsaCheck custom resource: which ServiceAccount to diagnose and how often (spec), and the verdict (status).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::{
    DURATION_MAX_LENGTH, DURATION_PATTERN, MAX_PROBE_TIMEOUT, MIN_INTERVAL, MIN_PROBE_TIMEOUT,
};
use super::validation::{
    ACTION_MAX_LENGTH, ARN_MAX_LENGTH, DNS1123_SUBDOMAIN_PATTERN, IAM_ACTION_PATTERN,
    MAX_PERMISSIONS, SERVICE_ACCOUNT_NAME_MAX_LENGTH,
};

/// At most this many findings are listed in the status (the conditions summarise them); the
/// operator keeps the worst.
pub const MAX_STATUS_FINDINGS: usize = 32;
/// A listed finding's message is at most this long (the operator truncates it, in bytes, which
/// also bounds it in characters, what the API server counts).
const STATUS_FINDING_MESSAGE_MAX_LENGTH: usize = 1024;
/// The operator writes seven condition types; room for a few more without a schema change.
const MAX_STATUS_CONDITIONS: usize = 16;
/// Reasons are catalogue identifiers, the longest under 40 characters.
const REASON_MAX_LENGTH: usize = 64;
/// `error`, `warning` or `unknown`.
const SEVERITY_MAX_LENGTH: usize = 16;

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
    #[schemars(
        regex(pattern = DNS1123_SUBDOMAIN_PATTERN),
        length(min = 1, max = SERVICE_ACCOUNT_NAME_MAX_LENGTH)
    )]
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
    #[schemars(length(max = ARN_MAX_LENGTH))]
    pub expected_role_arn: Option<String>,

    /// What the role must be allowed to do, checked by IAM policy simulation; at most 50 entries.
    // Each entry is one simulated action and possibly one finding: the bound keeps a run's IAM
    // calls, the object and its status small.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_PERMISSIONS))]
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
    #[schemars(regex(pattern = IAM_ACTION_PATTERN), length(max = ACTION_MAX_LENGTH))]
    pub action: String,

    /// The resource ARN the action must be allowed on, e.g. arn:aws:s3:::reports/*. Defaults to "*".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ARN_MAX_LENGTH))]
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
    #[schemars(length(max = 2048))]
    pub role_arn: Option<String>,

    /// The identity the probe pod obtained from STS, e.g. arn:aws:sts::111122223333:assumed-role/s3-reader/botocore-session-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub assumed_arn: Option<String>,

    /// When the last diagnosis finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_run_time: Option<String>,

    /// ServiceAccountValid, OIDCProviderValid, TrustPolicyValid, PermissionsValid, ProbeSucceeded, WorkloadsValid and Ready, their summary.
    // Keyed by type so server-side apply merges conditions one by one instead of replacing the list.
    #[serde(default)]
    #[schemars(
        length(max = MAX_STATUS_CONDITIONS),
        extend(
            "x-kubernetes-list-type" = "map",
            "x-kubernetes-list-map-keys" = ["type"]
        )
    )]
    pub conditions: Vec<Condition>,

    /// Everything wrong or worth attention, one entry per finding; at most 32, errors first when there are more (the conditions summarise them all).
    // Always serialized, even empty, so that a merge patch clears findings that went away.
    #[serde(default)]
    #[schemars(length(max = MAX_STATUS_FINDINGS))]
    pub findings: Vec<StatusFinding>,
}

/// One finding of the diagnosis, as listed in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusFinding {
    /// A reason from the catalogue, e.g. TrustPolicySubjectMismatch.
    #[schemars(length(max = REASON_MAX_LENGTH))]
    pub reason: String,
    /// error, warning or unknown.
    #[schemars(length(max = SEVERITY_MAX_LENGTH))]
    pub severity: String,
    /// What was expected, what was found, and the fix.
    #[schemars(length(max = STATUS_FINDING_MESSAGE_MAX_LENGTH))]
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

/// The API resource the operator watches: IrsaChecks as dynamic objects, so that one object that
/// does not deserialize cannot fail the list it comes in.
pub fn dynamic_resource() -> kube::core::ApiResource {
    kube::core::ApiResource::erase::<IrsaCheck>(&())
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

    /// Every string and list of the spec, and every list of the status, has a bound: what the
    /// API server stores, and the operator reads or writes, cannot grow without limit.
    #[test]
    fn every_spec_string_and_list_is_bounded() {
        fn unbounded(schema: &serde_json::Value, at: &str, out: &mut Vec<String>, strings: bool) {
            match schema["type"].as_str() {
                Some("string") if strings && schema["maxLength"].is_null() => out.push(at.into()),
                Some("array") if schema["maxItems"].is_null() => out.push(at.into()),
                _ => {}
            }
            if let Some(props) = schema["properties"].as_object() {
                for (name, s) in props {
                    unbounded(s, &format!("{at}.{name}"), out, strings);
                }
            }
            if schema["items"].is_object() {
                unbounded(&schema["items"], &format!("{at}[]"), out, strings);
            }
        }
        let crd = crd_json();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        let mut found = Vec::new();
        unbounded(&schema["spec"], "spec", &mut found, true);
        unbounded(&schema["status"], "status", &mut found, false);
        assert!(found.is_empty(), "unbounded: {found:?}");

        let props = &schema["spec"]["properties"];
        let permissions = &props["permissions"];
        assert_eq!(permissions["maxItems"], 50);
        assert_eq!(
            permissions["items"]["properties"]["action"]["maxLength"],
            128
        );
        assert_eq!(
            permissions["items"]["properties"]["resource"]["maxLength"],
            2048
        );
        assert_eq!(props["expectedRoleArn"]["maxLength"], 2048);
        let findings = &schema["status"]["properties"]["findings"];
        assert_eq!(findings["maxItems"], MAX_STATUS_FINDINGS);
        assert_eq!(
            findings["items"]["properties"]["message"]["maxLength"],
            1024
        );
        // Reasons written to the status fit its bound.
        let longest = irsa_core::Reason::ALL
            .iter()
            .map(|r| r.as_str().len())
            .max()
            .unwrap();
        assert!(longest <= REASON_MAX_LENGTH, "{longest}");
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
