//! What an IrsaCheck spec must satisfy: the CRD's rules, repeated for objects read from files or
//! stored under an older schema, and what the schema cannot express. Every error names the field and the fix.

use std::time::Duration;

use irsa_core::kube_names::is_dns1123_subdomain;
use irsa_core::{RoleArn, RoleArnError};
use thiserror::Error;

use super::duration::{
    bounded, DURATION_MAX_LENGTH, MAX_PROBE_TIMEOUT, MIN_INTERVAL, MIN_PROBE_TIMEOUT,
};
use irsa_core::text::escape_untrusted_owned;
use kube::core::DynamicObject;

use super::irsacheck::{IrsaCheck, IrsaCheckSpec, ProbeSpec};

/// RFC 1123 subdomain, the rule Kubernetes applies to ServiceAccount names.
pub(crate) const DNS1123_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// `<service>:<action>`, wildcards allowed in the action part, as IAM writes actions.
pub(crate) const IAM_ACTION_PATTERN: &str = r"^[a-zA-Z0-9-]+:[a-zA-Z0-9*?]+$";

// Every string and list of the spec is bounded, in the CRD schema and here alike, so that an
// IrsaCheck cannot make the operator (or the API server evaluating the schema) do unbounded work.
// Lengths count characters, as the API server's maxLength does.

/// Kubernetes' limit on object names (RFC 1123 subdomains).
pub(crate) const SERVICE_ACCOUNT_NAME_MAX_LENGTH: usize =
    irsa_core::kube_names::SUBDOMAIN_MAX_LENGTH;
/// At most this many permissions per IrsaCheck: each is one simulated action per run.
pub(crate) const MAX_PERMISSIONS: usize = 50;
/// Far above the longest IAM action name (service prefixes and actions are short identifiers).
pub(crate) const ACTION_MAX_LENGTH: usize = 128;
/// IAM's limit on ARNs.
pub(crate) const ARN_MAX_LENGTH: usize = 2048;

/// Why an IrsaCheck's spec cannot be acted on. Each message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// The object does not have the IrsaCheck shape (stored under an older schema, or a CRD
    /// installed without its schema).
    #[error("{path}: {detail}; correct the object to the IrsaCheck schema (`kubectl explain irsacheck.spec`)")]
    Malformed {
        /// Where, e.g. `spec.probe.timeout`, or `the object`.
        path: String,
        /// What deserialisation reported.
        detail: String,
    },
    /// `spec.serviceAccountName` is not an RFC 1123 subdomain.
    #[error("spec.serviceAccountName {value:?} is not a valid ServiceAccount name; use at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit")]
    ServiceAccountName {
        /// The name as given.
        value: String,
    },
    /// A duration field does not parse.
    #[error("{field} {value:?} is not a duration; write whole hours, minutes and seconds in that order, e.g. 90s, 30m, 1h or 1h30m")]
    DurationSyntax {
        /// The field, e.g. `spec.interval`.
        field: &'static str,
        /// The value as given.
        value: String,
    },
    /// A duration is below its minimum.
    #[error("{field} is {value}, below the minimum of {min}; set it to {min} or more")]
    DurationTooShort {
        /// The field, e.g. `spec.interval`.
        field: &'static str,
        /// The value as given.
        value: String,
        /// The minimum, as written in messages.
        min: &'static str,
    },
    /// A duration is above its maximum.
    #[error("{field} is {value}, above the maximum of {max}; set it to {max} or less")]
    DurationTooLong {
        /// The field, e.g. `spec.probe.timeout`.
        field: &'static str,
        /// The value as given.
        value: String,
        /// The maximum, as written in messages.
        max: &'static str,
    },
    /// `spec.expectedRoleArn` is not a valid role ARN.
    #[error("spec.expectedRoleArn is not a role ARN: {0}")]
    ExpectedRoleArn(RoleArnError),
    /// A permission's action is not `<service>:<action>`.
    #[error("spec.permissions[{index}].action {value:?} is not an IAM action; write <service>:<action>, e.g. s3:GetObject (* and ? are allowed in the action part)")]
    PermissionAction {
        /// The permission's position in `spec.permissions`, from 0.
        index: usize,
        /// The action as given.
        value: String,
    },
    /// A string field is longer than its schema allows.
    #[error("{field} is {length} characters long, above the maximum of {max}; shorten it to at most {max} characters")]
    TooLong {
        /// The field, e.g. `spec.permissions[3].resource`.
        field: String,
        /// Its length in characters.
        length: usize,
        /// The most the schema allows.
        max: usize,
    },
    /// `spec.permissions` has more entries than the schema allows.
    #[error("spec.permissions has {count} entries, above the maximum of {max}; list at most {max} (a wildcard action such as s3:Get* covers several), or split them across several IrsaChecks")]
    TooManyPermissions {
        /// How many were given.
        count: usize,
        /// The most the schema allows.
        max: usize,
    },
    /// A permission's resource is the empty string.
    #[error("spec.permissions[{index}].resource is empty; set a resource ARN such as arn:aws:s3:::reports/*, or omit it to mean \"*\"")]
    PermissionResourceEmpty {
        /// The permission's position in `spec.permissions`, from 0.
        index: usize,
    },
}

/// An IrsaCheck read from the API as a dynamic object, so that one malformed object is reported
/// on itself (naming the field) instead of failing the list it came in.
pub fn from_dynamic(obj: &DynamicObject) -> Result<IrsaCheck, SpecError> {
    let value = serde_json::to_value(obj).map_err(|e| SpecError::Malformed {
        path: ".".into(),
        detail: e.to_string(),
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        SpecError::Malformed {
            path: if path == "." {
                "the object".into()
            } else {
                path
            },
            // Deserialisation errors may quote the offending value.
            detail: escape_untrusted_owned(e.into_inner().to_string()),
        }
    })
}

impl IrsaCheckSpec {
    /// Checks the spec as the API server would, plus what its schema cannot express (a parseable
    /// `expectedRoleArn`), so objects read from files get the same verdict as applied ones.
    pub fn validate(&self) -> Result<(), SpecError> {
        // Bounds first: the checks below quote values in their errors and parse them.
        self.within_bounds()?;
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

    /// The length of every string and the number of permissions, as the CRD schema bounds them.
    fn within_bounds(&self) -> Result<(), SpecError> {
        if self.permissions.len() > MAX_PERMISSIONS {
            return Err(SpecError::TooManyPermissions {
                count: self.permissions.len(),
                max: MAX_PERMISSIONS,
            });
        }
        at_most(
            || "spec.serviceAccountName".into(),
            Some(&self.service_account_name),
            SERVICE_ACCOUNT_NAME_MAX_LENGTH,
        )?;
        at_most(
            || "spec.interval".into(),
            Some(&self.interval),
            DURATION_MAX_LENGTH,
        )?;
        at_most(
            || "spec.expectedRoleArn".into(),
            self.expected_role_arn.as_deref(),
            ARN_MAX_LENGTH,
        )?;
        at_most(
            || "spec.probe.timeout".into(),
            Some(&self.probe.timeout),
            DURATION_MAX_LENGTH,
        )?;
        for (i, p) in self.permissions.iter().enumerate() {
            at_most(
                || format!("spec.permissions[{i}].action"),
                Some(&p.action),
                ACTION_MAX_LENGTH,
            )?;
            at_most(
                || format!("spec.permissions[{i}].resource"),
                p.resource.as_deref(),
                ARN_MAX_LENGTH,
            )?;
        }
        Ok(())
    }

    /// How often the diagnosis re-runs; at least one minute.
    pub fn interval(&self) -> Result<Duration, SpecError> {
        bounded("spec.interval", &self.interval, &MIN_INTERVAL, None)
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

/// `value` (when given) is at most `max` characters long, or the error naming `field`.
fn at_most(
    field: impl FnOnce() -> String,
    value: Option<&str>,
    max: usize,
) -> Result<(), SpecError> {
    let length = value.map_or(0, |v| v.chars().count());
    if length > max {
        return Err(SpecError::TooLong {
            field: field(),
            length,
            max,
        });
    }
    Ok(())
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
    use crate::api::Permission;

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

    fn permission(action: &str, resource: Option<&str>) -> Permission {
        Permission {
            action: action.into(),
            resource: resource.map(str::to_string),
        }
    }

    /// The CRD's bounds, for objects that never passed the API server (files, older schemas);
    /// the errors name the field without quoting a value of unbounded size.
    #[test]
    fn strings_and_lists_are_bounded_like_the_schema() {
        let mut spec = spec();
        spec.permissions = vec![permission("s3:GetObject", None); MAX_PERMISSIONS];
        assert_eq!(spec.validate(), Ok(()), "50 permissions are fine");
        spec.permissions = vec![permission("s3:GetObject", None); 10_000];
        let err = spec.validate().unwrap_err();
        assert_eq!(
            err,
            SpecError::TooManyPermissions {
                count: 10_000,
                max: 50
            }
        );
        assert!(
            err.to_string()
                .starts_with("spec.permissions has 10000 entries, above the maximum of 50; "),
            "{err}"
        );

        let arn = |len: usize| format!("arn:aws:iam::111122223333:role/{}", "r".repeat(len - 31));
        spec.permissions = vec![permission("s3:GetObject", Some(&"*".repeat(2048)))];
        spec.expected_role_arn = Some(arn(2048));
        assert_eq!(arn(2048).chars().count(), 2048);
        assert!(
            !matches!(spec.validate(), Err(SpecError::TooLong { .. })),
            "at the bound"
        );
        let too_long = |spec: &IrsaCheckSpec| match spec.validate() {
            Err(SpecError::TooLong { field, length, max }) => (field, length, max),
            other => panic!("{other:?}"),
        };
        spec.expected_role_arn = Some(arn(2049));
        assert_eq!(
            too_long(&spec),
            ("spec.expectedRoleArn".to_string(), 2049, 2048)
        );
        spec.expected_role_arn = None;
        spec.permissions = vec![
            permission("s3:GetObject", None),
            permission(&format!("s3:{}", "A".repeat(127)), None),
        ];
        assert_eq!(
            too_long(&spec),
            ("spec.permissions[1].action".to_string(), 130, 128)
        );
        spec.permissions[1] = permission("s3:GetObject", Some(&"é".repeat(2049)));
        let err = spec.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.permissions[1].resource is 2049 characters long, above the maximum of 2048; \
             shorten it to at most 2048 characters"
        );
        spec.permissions.clear();
        spec.interval = "1".repeat(100_000) + "s";
        assert_eq!(too_long(&spec), ("spec.interval".to_string(), 100_001, 32));
        spec.interval = "1h".into();
        spec.probe.timeout = "9".repeat(33);
        assert_eq!(too_long(&spec).0, "spec.probe.timeout");
        spec.probe.timeout = "2m".into();
        spec.service_account_name = "a".repeat(254);
        assert_eq!(
            too_long(&spec),
            ("spec.serviceAccountName".to_string(), 254, 253)
        );
    }

    #[test]
    fn malformed_objects_name_the_field() {
        let obj = |spec: serde_json::Value| -> DynamicObject {
            let mut o = serde_json::json!({
                "apiVersion": "irsa-doctor.io/v1alpha1", "kind": "IrsaCheck",
                "metadata": {"name": "x", "namespace": "a"},
            });
            if !spec.is_null() {
                o["spec"] = spec;
            }
            serde_json::from_value(o).unwrap()
        };
        let err = from_dynamic(&obj(serde_json::json!({"serviceAccountName": 123}))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.serviceAccountName: invalid type: integer `123`"),
            "{err}"
        );
        let err = from_dynamic(&obj(serde_json::Value::Null)).unwrap_err();
        assert!(err.to_string().contains("missing field `spec`"), "{err}");
        let ok = from_dynamic(&obj(serde_json::json!({"serviceAccountName": "api"}))).unwrap();
        assert_eq!(ok.spec.service_account_name, "api");
        assert_eq!(ok.spec.interval, "1h", "defaults apply");
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
}
