//! The project's Kubernetes API: the IrsaCheck custom resource, its validation, and the labels
//! irsa-doctor puts on the objects it creates.

mod duration;
mod irsacheck;
mod validation;

pub use irsacheck::{
    crd_yaml, IrsaCheck, IrsaCheckSpec, IrsaCheckStatus, Permission, ProbeSpec, StatusFinding,
};
pub use validation::{from_dynamic, SpecError};

/// Label on every probe pod (value `true`).
pub const PROBE_LABEL: &str = "irsa-doctor.io/probe";
/// Label naming a probe pod's IrsaCheck, by uid (names can exceed label limits).
pub const CHECK_LABEL: &str = "irsa-doctor.io/check-uid";
