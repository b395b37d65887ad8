//! irsa-core: the pure diagnosis engine of irsa-doctor.
//!
//! Facts in, findings out: parse role ARNs, issuers and IAM trust policies, evaluate a trust policy
//! as STS would for a ServiceAccount's token, and turn what is known into a [`Report`] of findings
//! and condition verdicts. No I/O, no async, no Kubernetes or AWS SDK types.

pub mod annotations;
pub mod arn;
pub mod assume_history;
pub mod condition;
pub mod diagnose;
pub mod fact;
pub mod facts;
pub mod issuer;
pub mod issuer_keys;
pub mod kube_names;
pub mod manifest;
pub mod mechanism;
pub mod node_fallback;
pub mod pod_identity;
pub mod pods;
pub mod policy;
pub mod probe;
pub mod reason;
pub mod report;
pub mod text;
pub mod time;
pub mod trust;
pub mod trust_audit;
pub mod workloads;

pub use annotations::ServiceAccount;
pub use arn::{OidcProviderArn, Partition, RoleArn, RoleArnError};
pub use diagnose::diagnose;
pub use fact::{Fact, OidcProvider, Role, Unavailable};
pub use facts::Facts;
pub use issuer::{Issuer, IssuerError};
pub use policy::{PolicyDocument, PolicyError};
pub use reason::{ConditionType, Reason, Severity};
pub use report::{ConditionVerdict, Finding, Report, Status};
