//! The project's Kubernetes API: the IrsaCheck custom resource, its validation, and the labels
//! and owner that mark the probe pods irsa-doctor creates.

mod duration;
mod irsacheck;
mod probe_pod;
mod validation;

pub use irsacheck::{
    crd_yaml, dynamic_resource, IrsaCheck, IrsaCheckSpec, IrsaCheckStatus, Permission, ProbeSpec,
    StatusFinding, MAX_STATUS_FINDINGS,
};
pub use probe_pod::{probe_pod_name, probe_pod_owner, NotAProbePod};
pub use validation::{from_dynamic, SpecError};

/// Label on every probe pod (value `true`).
pub const PROBE_LABEL: &str = "irsa-doctor.io/probe";
/// Label naming a probe pod's IrsaCheck, by uid (names can exceed label limits).
pub const CHECK_LABEL: &str = "irsa-doctor.io/check-uid";
