//! What makes a pod an IrsaCheck's probe pod: its name, its labels and its controller. The
//! operator deletes, and the workload audit leaves out, only pods that carry every mark.
//!
//! A label alone proves nothing: anyone who may create pods can copy it, to have a pod with
//! static keys skipped by the audit, or to have irsa-doctor delete a pod it did not create.
//! Labels cannot select by owner, so the marks are checked in code, after listing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use thiserror::Error;

use super::{IrsaCheck, CHECK_LABEL, PROBE_LABEL};

/// The probe pod's name for the IrsaCheck named `check`: one probe pod at a time per check.
pub fn probe_pod_name(check: &str) -> String {
    let suffix = "-irsa-probe";
    let mut name: String = check.chars().take(253 - suffix.len()).collect();
    name = name.trim_end_matches(['-', '.']).to_string();
    name.push_str(suffix);
    name
}

/// Why a pod is not a probe pod irsa-doctor created. Each reads as the end of "it is not a probe
/// pod: …".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NotAProbePod {
    /// The probe label is absent or not `true`.
    #[error("it does not carry the label {PROBE_LABEL}=true")]
    NotLabelled,
    /// No ownerReference with `controller: true` names an IrsaCheck.
    #[error("its controller (ownerReferences) is not an IrsaCheck")]
    NotControlledByACheck,
    /// The check-uid label disagrees with the controlling IrsaCheck's uid.
    #[error("its label {CHECK_LABEL} is not the uid of its IrsaCheck {owner}")]
    CheckLabelMismatch {
        /// The controlling IrsaCheck's name.
        owner: String,
    },
    /// The pod is not named after its IrsaCheck.
    #[error("its name is not {expected}, the probe pod name of its IrsaCheck {owner}")]
    Misnamed {
        /// The controlling IrsaCheck's name.
        owner: String,
        /// The name its probe pod has.
        expected: String,
    },
}

/// The controlling IrsaCheck of a probe pod, when the pod carries every mark the operator puts on
/// its probe pods: the label `irsa-doctor.io/probe=true`, a controller ownerReference to an
/// IrsaCheck of this API group, the label `irsa-doctor.io/check-uid` equal to that IrsaCheck's
/// uid, and the probe pod name of that IrsaCheck.
pub fn probe_pod_owner(pod: &ObjectMeta) -> Result<&OwnerReference, NotAProbePod> {
    let label = |key: &str| pod.labels.as_ref().and_then(|l| l.get(key));
    if label(PROBE_LABEL).map(String::as_str) != Some("true") {
        return Err(NotAProbePod::NotLabelled);
    }
    let group = IrsaCheck::group(&());
    let owner = pod
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .filter(|o| {
            o.kind == IrsaCheck::kind(&())
                && o.api_version.split_once('/').map(|(g, _)| g) == Some(group.as_ref())
        })
        .ok_or(NotAProbePod::NotControlledByACheck)?;
    if label(CHECK_LABEL) != Some(&owner.uid) {
        return Err(NotAProbePod::CheckLabelMismatch {
            owner: owner.name.clone(),
        });
    }
    let expected = probe_pod_name(&owner.name);
    if pod.name.as_deref() != Some(expected.as_str()) {
        return Err(NotAProbePod::Misnamed {
            owner: owner.name.clone(),
            expected,
        });
    }
    Ok(owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const UID: &str = "0b3f5c1e-0000-4000-8000-000000000000";

    fn meta(value: serde_json::Value) -> ObjectMeta {
        serde_json::from_value(value).unwrap()
    }

    /// What the operator creates for IrsaCheck `s3-reader`.
    fn probe() -> serde_json::Value {
        json!({
            "name": "s3-reader-irsa-probe",
            "labels": {PROBE_LABEL: "true", CHECK_LABEL: UID},
            "ownerReferences": [{"apiVersion": "irsa-doctor.io/v1alpha1", "kind": "IrsaCheck",
                "name": "s3-reader", "uid": UID, "controller": true}],
        })
    }

    #[test]
    fn a_probe_pod_carries_every_mark() {
        let pod = meta(probe());
        let owner = probe_pod_owner(&pod).unwrap();
        assert_eq!(
            (owner.name.as_str(), owner.uid.as_str()),
            ("s3-reader", UID)
        );
    }

    #[test]
    fn a_copied_label_is_not_enough() {
        let cases = [
            (
                "/labels/irsa-doctor.io~1probe",
                json!("false"),
                NotAProbePod::NotLabelled,
            ),
            (
                "/ownerReferences",
                json!([]),
                NotAProbePod::NotControlledByACheck,
            ),
            (
                "/ownerReferences/0/controller",
                json!(false),
                NotAProbePod::NotControlledByACheck,
            ),
            (
                "/ownerReferences/0/kind",
                json!("ReplicaSet"),
                NotAProbePod::NotControlledByACheck,
            ),
            (
                "/ownerReferences/0/apiVersion",
                json!("irsa-doctor.example.com/v1alpha1"),
                NotAProbePod::NotControlledByACheck,
            ),
            (
                "/labels/irsa-doctor.io~1check-uid",
                json!("another"),
                NotAProbePod::CheckLabelMismatch {
                    owner: "s3-reader".into(),
                },
            ),
            (
                "/name",
                json!("api-0"),
                NotAProbePod::Misnamed {
                    owner: "s3-reader".into(),
                    expected: "s3-reader-irsa-probe".into(),
                },
            ),
        ];
        for (pointer, value, expected) in cases {
            let mut pod = probe();
            *pod.pointer_mut(pointer).unwrap() = value;
            assert_eq!(probe_pod_owner(&meta(pod)), Err(expected), "{pointer}");
        }
        let mut unlabelled = probe();
        unlabelled["labels"] = json!({});
        assert_eq!(
            probe_pod_owner(&meta(unlabelled)),
            Err(NotAProbePod::NotLabelled)
        );
        assert_eq!(
            NotAProbePod::NotControlledByACheck.to_string(),
            "its controller (ownerReferences) is not an IrsaCheck"
        );
    }

    #[test]
    fn pod_names_stay_valid() {
        assert_eq!(probe_pod_name("x"), "x-irsa-probe");
        let long = "a".repeat(300);
        assert!(probe_pod_name(&long).len() <= 253);
    }
}
