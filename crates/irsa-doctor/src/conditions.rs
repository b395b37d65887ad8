//! Turning a report into Kubernetes conditions and deciding which Events a change deserves.
//! Pure: the writers in `controller` and `sweep` do the I/O.

use irsa_core::{ConditionVerdict, Report, Severity, Status};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::StatusFinding;

/// Conditions for `report`; `lastTransitionTime` is kept from `previous` unless the status flipped.
pub fn conditions(
    report: &Report,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    report
        .conditions
        .iter()
        .map(|v| {
            let status = v.status.as_str().to_string();
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == v.type_.as_str() && p.status == status)
                .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
            Condition {
                type_: v.type_.as_str().to_string(),
                status,
                reason: v.reason.as_str().to_string(),
                message: truncate(&v.message, 4096),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The findings worth listing on the object (warnings and worse).
pub fn findings(report: &Report) -> Vec<StatusFinding> {
    report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| StatusFinding {
            reason: f.reason.as_str().to_string(),
            severity: f.severity.as_str().to_string(),
            message: truncate(&f.message, 1024),
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    /// Warning when IRSA broke, Normal when it recovered.
    pub warning: bool,
    /// The catalogue reason.
    pub reason: String,
    /// What happened.
    pub note: String,
}

/// The Ready verdict as remembered between runs: status and reason.
pub type Remembered = (String, String);

/// Events are for transitions only: a Warning when Ready turns False (or fails for a new
/// reason), a Normal when it turns True again after having been something else. Unknown
/// never raises an Event: it says nothing about the setup.
pub fn transition(previous: Option<&Remembered>, ready: &ConditionVerdict) -> Option<EventSpec> {
    let status = ready.status.as_str();
    let reason = ready.reason.as_str();
    match ready.status {
        Status::False => {
            let same = previous.is_some_and(|(s, r)| s == status && r == reason);
            (!same).then(|| EventSpec {
                warning: true,
                reason: reason.to_string(),
                note: truncate(&ready.message, 1024),
            })
        }
        Status::True => previous.filter(|(s, _)| s != status).map(|_| EventSpec {
            warning: false,
            reason: reason.to_string(),
            note: "IRSA works again: every check passed".to_string(),
        }),
        Status::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use irsa_core::{ConditionType, Reason};

    fn ready(status: Status, reason: Reason) -> ConditionVerdict {
        ConditionVerdict {
            type_: ConditionType::Ready,
            status,
            reason,
            message: "m".into(),
        }
    }

    fn remembered(s: &str, r: &str) -> Remembered {
        (s.to_string(), r.to_string())
    }

    #[test]
    fn events_on_transitions_only() {
        let bad = ready(Status::False, Reason::TrustPolicySubjectMismatch);
        let good = ready(Status::True, Reason::AllChecksPassed);
        let unknown = ready(Status::Unknown, Reason::AwsApiUnavailable);
        assert!(
            transition(None, &bad).unwrap().warning,
            "first sight of a failure warns"
        );
        assert_eq!(
            transition(
                Some(&remembered("False", "TrustPolicySubjectMismatch")),
                &bad
            ),
            None
        );
        assert_eq!(
            transition(Some(&remembered("False", "RoleNotFound")), &bad).map(|e| e.reason),
            Some("TrustPolicySubjectMismatch".into())
        );
        assert_eq!(transition(None, &good), None, "nothing recovered");
        let recovered = transition(Some(&remembered("False", "RoleNotFound")), &good).unwrap();
        assert!(!recovered.warning);
        assert_eq!(
            transition(Some(&remembered("True", "AllChecksPassed")), &good),
            None
        );
        assert_eq!(
            transition(Some(&remembered("False", "RoleNotFound")), &unknown),
            None,
            "Unknown never pages"
        );
        assert!(transition(Some(&remembered("Unknown", "AwsApiUnavailable")), &good).is_some());
    }

    #[test]
    fn last_transition_time_changes_only_on_a_flip() {
        let t0 = Time(jiff::Timestamp::from_second(1_000).unwrap());
        let t1 = Time(jiff::Timestamp::from_second(2_000).unwrap());
        let report = |status| Report {
            service_account: "a/b".into(),
            role_arn: None,
            assumed_arn: None,
            findings: Vec::new(),
            conditions: vec![ready(status, Reason::AllChecksPassed)],
        };
        let first = conditions(&report(Status::True), &[], Some(1), &t0);
        let same = conditions(&report(Status::True), &first, Some(2), &t1);
        assert_eq!(same[0].last_transition_time, t0);
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = conditions(&report(Status::False), &same, Some(2), &t1);
        assert_eq!(flipped[0].last_transition_time, t1);
    }
}
