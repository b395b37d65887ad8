//! The IrsaCheck custom resource: which ServiceAccount to diagnose and how often (spec), and the verdict (status).

use std::time::Duration;

use irsa_core::{RoleArn, RoleArnError};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A Go-style duration restricted to whole hours, minutes and seconds in that order. Every value it
/// admits is also a valid Go `time.ParseDuration` input, so the CEL `duration()` rules below can rely on it.
const DURATION_PATTERN: &str = r"^([0-9]+h([0-9]+m)?([0-9]+s)?|[0-9]+m([0-9]+s)?|[0-9]+s)$";

/// Long enough for any sensible duration; bounds the cost the API server estimates for the CEL rules.
const DURATION_MAX_LENGTH: usize = 32;

/// Go's `time.ParseDuration` refuses more than `i64::MAX` nanoseconds; so does [`parse_duration`],
/// so that every value it takes also passes the CEL `duration()` rules.
const GO_MAX_SECONDS: u64 = 9_223_372_036;

/// RFC 1123 subdomain, the rule Kubernetes applies to ServiceAccount names.
const DNS1123_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// `<service>:<action>`, wildcards allowed in the action part, as IAM writes actions.
const IAM_ACTION_PATTERN: &str = r"^[a-zA-Z0-9-]+:[a-zA-Z0-9*?]+$";

/// A duration bound, kept with its spelling so schema rules and error messages show it as users write it.
struct Limit {
    value: Duration,
    text: &'static str,
}

/// Each run calls IAM and STS and may start a probe pod: more often than this only burns AWS quota.
const MIN_INTERVAL: Limit = Limit {
    value: Duration::from_secs(60),
    text: "1m",
};

/// Scheduling the probe pod and pulling the aws-cli image rarely fits in less.
const MIN_PROBE_TIMEOUT: Limit = Limit {
    value: Duration::from_secs(10),
    text: "10s",
};

/// A probe that has not finished by then is stuck; its pod must not linger.
const MAX_PROBE_TIMEOUT: Limit = Limit {
    value: Duration::from_secs(15 * 60),
    text: "15m",
};

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

/// Why an IrsaCheck's spec cannot be acted on. Each message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("spec.serviceAccountName {value:?} is not a valid ServiceAccount name; use at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit")]
    ServiceAccountName { value: String },
    #[error("{field} {value:?} is not a duration; write whole hours, minutes and seconds in that order, e.g. 90s, 30m, 1h or 1h30m")]
    DurationSyntax { field: &'static str, value: String },
    #[error("{field} is {value}, below the minimum of {min}; set it to {min} or more")]
    DurationTooShort {
        field: &'static str,
        value: String,
        min: &'static str,
    },
    #[error("{field} is {value}, above the maximum of {max}; set it to {max} or less")]
    DurationTooLong {
        field: &'static str,
        value: String,
        max: &'static str,
    },
    #[error("spec.expectedRoleArn is not a role ARN: {0}")]
    ExpectedRoleArn(RoleArnError),
    #[error("spec.permissions[{index}].action {value:?} is not an IAM action; write <service>:<action>, e.g. s3:GetObject (* and ? are allowed in the action part)")]
    PermissionAction { index: usize, value: String },
    #[error("spec.permissions[{index}].resource is empty; set a resource ARN such as arn:aws:s3:::reports/*, or omit it to mean \"*\"")]
    PermissionResourceEmpty { index: usize },
}

impl IrsaCheckSpec {
    /// Checks the spec as the API server would, plus what its schema cannot express (a parseable
    /// `expectedRoleArn`), so objects read from files get the same verdict as applied ones.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !is_dns1123_subdomain(&self.service_account_name) {
            return Err(SpecError::ServiceAccountName {
                value: self.service_account_name.clone(),
            });
        }
        self.interval()?;
        self.probe.timeout()?;
        if let Some(arn) = &self.expected_role_arn {
            RoleArn::parse(arn).map_err(SpecError::ExpectedRoleArn)?;
        }
        for (index, permission) in self.permissions.iter().enumerate() {
            if !is_iam_action(&permission.action) {
                return Err(SpecError::PermissionAction {
                    index,
                    value: permission.action.clone(),
                });
            }
            if permission.resource.as_deref() == Some("") {
                return Err(SpecError::PermissionResourceEmpty { index });
            }
        }
        Ok(())
    }

    /// How often the diagnosis re-runs; at least one minute.
    pub fn interval(&self) -> Result<Duration, SpecError> {
        bounded("spec.interval", &self.interval, &MIN_INTERVAL, None)
    }
}

impl Permission {
    /// The resource the action must be allowed on; `*` when none is given.
    pub fn resource(&self) -> &str {
        self.resource.as_deref().unwrap_or("*")
    }
}

impl ProbeSpec {
    /// How long the probe may take; from 10 seconds to 15 minutes.
    pub fn timeout(&self) -> Result<Duration, SpecError> {
        bounded(
            "spec.probe.timeout",
            &self.timeout,
            &MIN_PROBE_TIMEOUT,
            Some(&MAX_PROBE_TIMEOUT),
        )
    }
}

/// The CustomResourceDefinition as YAML, as `irsa-doctor crd` prints it and `crds/irsacheck.yaml` holds it.
pub fn crd_yaml() -> String {
    serde_yaml_ng::to_string(&IrsaCheck::crd())
        .expect("a CustomResourceDefinition has only string keys and always serializes")
}

fn bounded(
    field: &'static str,
    value: &str,
    min: &Limit,
    max: Option<&Limit>,
) -> Result<Duration, SpecError> {
    let duration = parse_duration(value).ok_or_else(|| SpecError::DurationSyntax {
        field,
        value: value.to_string(),
    })?;
    if duration < min.value {
        return Err(SpecError::DurationTooShort {
            field,
            value: value.to_string(),
            min: min.text,
        });
    }
    if let Some(max) = max.filter(|max| duration > max.value) {
        return Err(SpecError::DurationTooLong {
            field,
            value: value.to_string(),
            max: max.text,
        });
    }
    Ok(duration)
}

/// Parses exactly what the schema admits: [`DURATION_PATTERN`] (`[<n>h][<n>m][<n>s]`, at least one
/// part), at most [`DURATION_MAX_LENGTH`] characters, and no more than Go can represent.
///
/// Hand-written rather than `humantime` (which also takes "1 hour", "2days") or
/// `kube::core::Duration` (fractions, ns/µs/ms, negatives, and a panic on overflow), so that the
/// CLI accepts the same spellings as the API server and huge numbers are an error, not a panic.
fn parse_duration(value: &str) -> Option<Duration> {
    if value.is_empty() || value.len() > DURATION_MAX_LENGTH {
        return None;
    }
    // Consumed as units are seen, which enforces their order and at most one of each.
    let mut units = [('h', 3600u64), ('m', 60), ('s', 1)].into_iter();
    let mut rest = value;
    let mut seconds = 0u64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let count: u64 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        let (_, scale) = units.find(|(u, _)| *u == unit)?;
        seconds = seconds.checked_add(count.checked_mul(scale)?)?;
        // Units are single ASCII bytes.
        rest = &rest[digits + 1..];
    }
    (seconds <= GO_MAX_SECONDS).then(|| Duration::from_secs(seconds))
}

/// The rule of [`DNS1123_SUBDOMAIN_PATTERN`] plus its 253-character limit.
fn is_dns1123_subdomain(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

/// The rule of [`IAM_ACTION_PATTERN`].
fn is_iam_action(action: &str) -> bool {
    let Some((service, name)) = action.split_once(':') else {
        return false;
    };
    !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> IrsaCheckSpec {
        serde_json::from_value(serde_json::json!({ "serviceAccountName": "s3-reader" })).unwrap()
    }

    #[test]
    fn defaults_fill_a_minimal_spec() {
        let spec = spec();
        assert_eq!(spec.interval, "1h");
        assert_eq!(spec.interval(), Ok(Duration::from_secs(3600)));
        assert!(spec.probe.enabled);
        assert_eq!(spec.probe.timeout(), Ok(Duration::from_secs(120)));
        assert!(spec.permissions.is_empty());
        assert_eq!(spec.expected_role_arn, None);
        assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn a_partial_probe_keeps_the_other_default() {
        let spec: IrsaCheckSpec = serde_json::from_value(serde_json::json!({
            "serviceAccountName": "s3-reader",
            "probe": { "enabled": false },
        }))
        .unwrap();
        assert!(!spec.probe.enabled);
        assert_eq!(spec.probe.timeout, "2m");
    }

    #[test]
    fn go_style_durations_parse() {
        for (text, seconds) in [
            ("90s", 90),
            ("30m", 1800),
            ("1h", 3600),
            ("1h30m", 5400),
            ("1h30s", 3630),
            ("2m5s", 125),
            ("1h2m3s", 3723),
            ("0s", 0),
            ("010m", 600),
            ("2562047h47m16s", GO_MAX_SECONDS),
        ] {
            assert_eq!(
                parse_duration(text),
                Some(Duration::from_secs(seconds)),
                "{text}"
            );
        }
    }

    #[test]
    fn other_spellings_are_refused() {
        for text in [
            "",
            "1",
            "h",
            "1d",
            "1 h",
            " 1h",
            "1h ",
            "1.5h",
            "-1h",
            "+1h",
            "1H",
            "300ms",
            "30m1h",
            "1h1h",
            "1h 30m",
            "1hour",
            "PT1H",
            "99999999999999999999s",
            "9999999999999999999h",
            "2562047h47m17s",
            "00000000000000000000000000000001h",
        ] {
            assert_eq!(parse_duration(text), None, "{text:?}");
        }
    }

    #[test]
    fn interval_below_a_minute_names_the_field_and_the_fix() {
        let mut spec = spec();
        spec.interval = "30s".into();
        let err = spec.interval().unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.interval is 30s, below the minimum of 1m; set it to 1m or more"
        );
        assert_eq!(spec.validate(), Err(err));
        spec.interval = "1m".into();
        assert_eq!(spec.interval(), Ok(Duration::from_secs(60)));
        spec.interval = "60s".into();
        assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn malformed_interval_shows_the_accepted_spellings() {
        let mut spec = spec();
        spec.interval = "1 hour".into();
        let message = spec.validate().unwrap_err().to_string();
        assert!(message.starts_with(r#"spec.interval "1 hour" is not a duration"#));
        assert!(message.contains("1h30m"), "{message}");
    }

    #[test]
    fn probe_timeout_is_bounded_on_both_sides() {
        let mut spec = spec();
        for (timeout, ok) in [
            ("9s", false),
            ("10s", true),
            ("15m", true),
            ("15m1s", false),
            ("1h", false),
        ] {
            spec.probe.timeout = timeout.into();
            assert_eq!(spec.validate().is_ok(), ok, "{timeout}");
        }
        spec.probe.timeout = "20m".into();
        assert_eq!(
            spec.validate().unwrap_err().to_string(),
            "spec.probe.timeout is 20m, above the maximum of 15m; set it to 15m or less"
        );
        spec.probe.timeout = "5s".into();
        assert!(matches!(
            spec.validate(),
            Err(SpecError::DurationTooShort {
                field: "spec.probe.timeout",
                ..
            })
        ));
    }

    #[test]
    fn expected_role_arn_must_parse() {
        let mut spec = spec();
        spec.expected_role_arn = Some("arn:aws:iam::111122223333:role/s3-reader".into());
        assert_eq!(spec.validate(), Ok(()));
        spec.expected_role_arn = Some("arn:aws:iam::111122223333:user/s3-reader".into());
        let err = spec.validate().unwrap_err();
        assert!(matches!(err, SpecError::ExpectedRoleArn(_)));
        assert!(err
            .to_string()
            .starts_with("spec.expectedRoleArn is not a role ARN: "));
    }

    #[test]
    fn permissions_need_iam_actions_and_non_empty_resources() {
        let mut spec = spec();
        spec.permissions = vec![
            Permission {
                action: "s3:GetObject".into(),
                resource: Some("arn:aws:s3:::reports/*".into()),
            },
            Permission {
                action: "dynamodb:Get*".into(),
                resource: None,
            },
            Permission {
                action: "execute-api:Invoke?".into(),
                resource: None,
            },
        ];
        assert_eq!(spec.validate(), Ok(()));
        assert_eq!(spec.permissions[1].resource(), "*");

        for action in [
            "s3",
            "s3:",
            ":GetObject",
            "s3:Get:Object",
            "s3 :GetObject",
            "s3:*/x",
        ] {
            spec.permissions[2].action = action.into();
            assert_eq!(
                spec.validate(),
                Err(SpecError::PermissionAction {
                    index: 2,
                    value: action.into()
                }),
                "{action}"
            );
        }
        spec.permissions[2].action = "sts:GetCallerIdentity".into();
        spec.permissions[1].resource = Some(String::new());
        let err = spec.validate().unwrap_err();
        assert_eq!(err, SpecError::PermissionResourceEmpty { index: 1 });
        assert!(err.to_string().starts_with("spec.permissions[1].resource"));
    }

    #[test]
    fn service_account_names_follow_dns1123_subdomains() {
        for name in ["a", "s3-reader", "team.s3-reader", "0a", &"a".repeat(253)] {
            assert!(is_dns1123_subdomain(name), "{name}");
        }
        for name in [
            "",
            "S3-reader",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a_b",
            "a b",
            &"a".repeat(254),
        ] {
            assert!(!is_dns1123_subdomain(name), "{name}");
        }
        let mut spec = spec();
        spec.service_account_name = "S3Reader".into();
        assert!(spec
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with(r#"spec.serviceAccountName "S3Reader""#));
    }

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
