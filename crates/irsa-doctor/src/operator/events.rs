//! Which Events a verdict deserves and what they are named (pure), and publishing them (I/O,
//! never fatal).
//!
//! Events are for transitions only: a Warning when Ready turns False (or fails for a new
//! reason), a Normal when it turns True again after having been something else. Unknown never
//! raises an Event: it says nothing about the setup.

use irsa_core::{ConditionVerdict, Reason, Status};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use super::text::truncate;
use super::FIELD_MANAGER;

/// The API server refuses Event notes longer than this (events.k8s.io/v1).
pub const NOTE_MAX_BYTES: usize = 1024;
/// The longest object name (a DNS subdomain).
const NAME_MAX_BYTES: usize = 253;
/// The API server refuses a `reportingInstance` longer than this.
const INSTANCE_MAX_BYTES: usize = 128;

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

/// An Event's name: the object's name, a dot and the time in hexadecimal nanoseconds, as
/// client-go names Events. When that would pass the 253 characters of any object name, the
/// object's name is cut and an FNV-1a hash of the whole name added (`<head>-<8 hex>`), so a
/// valid object name always gets a valid, still recognisable Event name.
pub fn event_name(object: &str, nanos: i128) -> String {
    let suffix = format!(".{nanos:x}");
    if object.len() + suffix.len() <= NAME_MAX_BYTES {
        return format!("{object}{suffix}");
    }
    let hash = object.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let keep = NAME_MAX_BYTES - suffix.len() - 9;
    // Names are ASCII; a label may not end in '-' or '.'.
    let head = object[..keep.min(object.len())].trim_end_matches(['-', '.']);
    format!("{head}-{hash:08x}{suffix}")
}

/// Publishes Events (`events.k8s.io/v1`) as irsa-doctor; one create per transition.
#[derive(Clone)]
pub struct Publisher {
    client: kube::Client,
    /// `reportingInstance`: this replica.
    instance: String,
}

impl Publisher {
    /// A publisher for the replica `identity`.
    pub fn new(client: kube::Client, identity: &str) -> Publisher {
        Publisher {
            client,
            instance: truncate(identity, INSTANCE_MAX_BYTES),
        }
    }

    /// Creates the Event `event` about `reference`, at `now`.
    pub async fn publish(
        &self,
        event: &EventSpec,
        reference: &ObjectReference,
        now: k8s_openapi::jiff::Timestamp,
    ) -> Result<(), kube::Error> {
        let namespace = reference
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let object = reference.name.as_deref().unwrap_or(FIELD_MANAGER);
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(event_name(object, now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some("Diagnose".into()),
            reason: Some(event.reason.as_str().to_string()),
            note: Some(event.note.clone()),
            regarding: Some(reference.clone()),
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(FIELD_MANAGER.into()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if event.warning { "Warning" } else { "Normal" }.into()),
            ..Event::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &ev)
            .await
            .map(drop)
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
    fn event_names_fit_for_any_object_name() {
        let nanos = 1_764_968_000_123_456_789_i128;
        assert_eq!(
            event_name("s3-reader", nanos),
            format!("s3-reader.{nanos:x}")
        );
        let dns_label = |s: &str| {
            s.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
        };
        // The longest names, and cuts that would end in '-' or '.'.
        for object in [
            "a".repeat(253),
            format!("{}-{}", "b".repeat(226), "c".repeat(26)),
            format!("{}.{}", "d".repeat(226), "e".repeat(26)),
            format!("{}-{}", "f".repeat(220), "g".repeat(10)),
        ] {
            let name = event_name(&object, nanos);
            assert!(name.len() <= 253, "{} bytes: {name}", name.len());
            assert!(dns_label(&name), "{name}");
            assert!(name.starts_with(&object[..200]), "{name}");
        }
        // Two long names that differ only at the end get different Event names.
        let (x, y) = ("h".repeat(250) + "xyz", "h".repeat(250) + "xyw");
        assert_ne!(event_name(&x, nanos), event_name(&y, nanos));
    }

    #[test]
    fn long_messages_fit_an_event_note() {
        let mut bad = ready(Status::False, Reason::TrustPolicySubjectMismatch);
        bad.message = "x".repeat(5000);
        let note = transition(None, &bad).unwrap().note;
        assert!(note.len() <= NOTE_MAX_BYTES, "{}", note.len());
    }
}
