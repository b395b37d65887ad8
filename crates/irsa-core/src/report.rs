//! What a diagnosis produces: findings and one verdict per condition.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::reason::{ConditionType, Reason, Severity};
use crate::text::escape_untrusted_owned;

/// A condition's status, as Kubernetes writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The check passed.
    True,
    /// The check failed: IRSA does not work.
    False,
    /// Could not tell.
    Unknown,
}

impl Status {
    /// `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One thing found wrong (or worth knowing) about a setup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The catalogue reason.
    pub reason: Reason,
    /// Its severity (the reason's, except that a reason of any condition keeps its own).
    pub severity: Severity,
    /// The condition it affects.
    pub condition: ConditionType,
    /// What was expected, what was found; control and format characters escaped.
    pub message: String,
    /// How to fix it.
    pub fix: &'static str,
}

impl Finding {
    /// A finding of `reason` on `condition` with a message.
    ///
    /// Messages quote what users wrote (annotation values, names, trust-policy values, probe
    /// output) and end up in terminals, logs, status and Events, so every one is escaped here
    /// ([`crate::text::escape_untrusted`]), whoever built it.
    pub fn new(reason: Reason, condition: ConditionType, message: impl Into<String>) -> Finding {
        Finding {
            reason,
            severity: reason.severity(),
            condition,
            message: escape_untrusted_owned(message.into()),
            fix: reason.remediation(),
        }
    }
}

/// The verdict on one condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConditionVerdict {
    /// The condition.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// True, False or Unknown.
    pub status: Status,
    /// CamelCase reason from the catalogue.
    pub reason: Reason,
    /// A human sentence: what was checked, what was found, the fix. [`crate::diagnose()`] escapes
    /// control and format characters in it.
    pub message: String,
}

/// The full diagnosis of one ServiceAccount. [`crate::diagnose()`] escapes control and format
/// characters ([`crate::text::escape_untrusted`]) in every text field: they quote what users wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `namespace/name`.
    pub service_account: String,
    /// The annotated role ARN as written, if any.
    pub role_arn: Option<String>,
    /// The ARN the probe pod ran as, when it assumed the role.
    pub assumed_arn: Option<String>,
    /// Findings in condition order.
    pub findings: Vec<Finding>,
    /// One verdict per evaluated condition, then Ready.
    pub conditions: Vec<ConditionVerdict>,
}

impl Report {
    /// The verdict of one condition.
    pub fn condition(&self, type_: ConditionType) -> Option<&ConditionVerdict> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The Ready verdict.
    pub fn ready(&self) -> &ConditionVerdict {
        self.condition(ConditionType::Ready)
            .expect("diagnose always writes Ready")
    }

    /// Whether the verdict is Unknown because a service failed ([`Reason::is_fault`]): what the
    /// operator diagnoses again soon rather than at the next interval.
    pub fn awaits_recovery(&self) -> bool {
        self.ready().status == Status::Unknown
            && (self.conditions.iter().any(|c| c.reason.is_fault())
                || self.findings.iter().any(|f| f.reason.is_fault()))
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The reasons of findings at or above `min` severity.
    pub fn reasons_at_least(&self, min: Severity) -> Vec<Reason> {
        self.findings
            .iter()
            .filter(|f| f.severity >= min)
            .map(|f| f.reason)
            .collect()
    }
}
