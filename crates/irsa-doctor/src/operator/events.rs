//! Which Events a verdict deserves (pure), and publishing them (I/O, never fatal).
//!
//! Events are for transitions only: a Warning when Ready turns False (or fails for a new
//! reason), a Normal when it turns True again after having been something else. Unknown never
//! raises an Event: it says nothing about the setup.

use irsa_core::{ConditionVerdict, Reason, Status};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

use super::text::truncate;

/// The API server refuses Event notes longer than this (events.k8s.io/v1).
pub const NOTE_MAX_BYTES: usize = 1024;

/// A Ready verdict as remembered between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// True, False or Unknown.
    pub status: Status,
    /// The catalogue reason.
    pub reason: Reason,
}

impl From<&ConditionVerdict> for Verdict {
    fn from(v: &ConditionVerdict) -> Verdict {
        Verdict {
            status: v.status,
            reason: v.reason,
        }
    }
}

/// An Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    /// Warning when IRSA broke, Normal when it recovered.
    pub warning: bool,
    /// The catalogue reason.
    pub reason: Reason,
    /// What happened, at most [`NOTE_MAX_BYTES`].
    pub note: String,
}

/// The Event that going from `previous` to `ready` deserves, if any.
pub fn transition(previous: Option<Verdict>, ready: &ConditionVerdict) -> Option<EventSpec> {
    match ready.status {
        Status::False => (previous != Some(Verdict::from(ready))).then(|| EventSpec {
            warning: true,
            reason: ready.reason,
            note: truncate(&ready.message, NOTE_MAX_BYTES),
        }),
        Status::True => previous
            .filter(|p| p.status != Status::True)
            .map(|_| EventSpec {
                warning: false,
                reason: ready.reason,
                note: "IRSA works again: every check passed".to_string(),
            }),
        Status::Unknown => None,
    }
}

/// Publishes an Event; a failure to publish is logged, never fatal.
pub async fn publish(recorder: &Recorder, event: &EventSpec, reference: &ObjectReference) {
    let ev = Event {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.as_str().to_string(),
        note: Some(event.note.clone()),
        action: "Diagnose".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, reference).await {
        tracing::warn!(error = %e, reason = %event.reason, object = ?reference.name, "could not publish an Event");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use irsa_core::ConditionType;

    /// A Ready verdict with a one-letter message.
    pub(crate) fn ready(status: Status, reason: Reason) -> ConditionVerdict {
        ConditionVerdict {
            type_: ConditionType::Ready,
            status,
            reason,
            message: "m".into(),
        }
    }

    fn seen(status: Status, reason: Reason) -> Option<Verdict> {
        Some(Verdict { status, reason })
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
                seen(Status::False, Reason::TrustPolicySubjectMismatch),
                &bad
            ),
            None
        );
        assert_eq!(
            transition(seen(Status::False, Reason::RoleNotFound), &bad).map(|e| e.reason),
            Some(Reason::TrustPolicySubjectMismatch)
        );
        assert_eq!(transition(None, &good), None, "nothing recovered");
        let recovered = transition(seen(Status::False, Reason::RoleNotFound), &good).unwrap();
        assert!(!recovered.warning);
        assert_eq!(
            transition(seen(Status::True, Reason::AllChecksPassed), &good),
            None
        );
        assert_eq!(
            transition(seen(Status::False, Reason::RoleNotFound), &unknown),
            None,
            "Unknown never pages"
        );
        assert!(transition(seen(Status::Unknown, Reason::AwsApiUnavailable), &good).is_some());
    }

    #[test]
    fn long_messages_fit_an_event_note() {
        let mut bad = ready(Status::False, Reason::TrustPolicySubjectMismatch);
        bad.message = "x".repeat(5000);
        let note = transition(None, &bad).unwrap().note;
        assert!(note.len() <= NOTE_MAX_BYTES, "{}", note.len());
    }
}
