//! irsa-aws: the AWS facts irsa-doctor's diagnosis needs — the cluster's issuer (EKS), IAM OIDC
//! providers, roles and trust policies, permission simulations, the operator's own identity —
//! through the official SDK, cached per fact kind (with a TTL and a size bound), with concurrent
//! look-ups collapsed into one call, bounded in concurrency and rate and shared fairly between
//! namespaces, and classified so that AWS failures become `Unknown`, never a false alarm.

mod cache;
mod classify;
mod config;
mod facts;
mod limiter;
mod roles;
mod stats;

pub use cache::FactCache;
pub use classify::{Failure, Outcome};
pub use config::{AwsFactsConfig, Ttls};
pub use facts::{AssociationSummary, AwsFacts, CacheStats, CallerIdentity, Clients};
pub use limiter::Lane;
pub use roles::{LIST_ROLES_PAGE_SIZE, MAX_LISTED_ROLES};
pub use stats::{CallCount, CallStats};

/// Every AWS action irsa-aws calls: the union of the features' actions below.
pub const AWS_ACTIONS: &[&str] = &[
    "cloudtrail:LookupEvents",
    "ec2:DescribeInstances",
    "eks:DescribeAddon",
    "eks:DescribeCluster",
    "eks:DescribePodIdentityAssociation",
    "eks:ListPodIdentityAssociations",
    "iam:GetOpenIDConnectProvider",
    "iam:GetRole",
    "iam:ListOpenIDConnectProviders",
    "iam:ListRoles",
    "iam:SimulatePrincipalPolicy",
    "sts:GetCallerIdentity",
];

/// What the operator and `check` call with every feature off: `deploy/iam-policy.json` grants
/// exactly these, plus [`CROSS_ACCOUNT_ACTION`].
pub const CORE_ACTIONS: &[&str] = &[
    "eks:DescribeAddon",
    "eks:DescribeCluster",
    "eks:DescribePodIdentityAssociation",
    "eks:ListPodIdentityAssociations",
    "iam:GetOpenIDConnectProvider",
    "iam:GetRole",
    "iam:ListOpenIDConnectProviders",
    "iam:SimulatePrincipalPolicy",
    "sts:GetCallerIdentity",
];

/// What `--cloudtrail` adds: `deploy/iam-policy-cloudtrail.json`.
pub const CLOUDTRAIL_ACTIONS: &[&str] = &["cloudtrail:LookupEvents"];

/// What `--node-check` adds: `deploy/iam-policy-node-check.json`.
pub const NODE_CHECK_ACTIONS: &[&str] = &["ec2:DescribeInstances"];

/// What `irsa-doctor audit trust` calls (a person's or CI's credentials, not the operator's):
/// `deploy/iam-policy-audit-trust.json`.
pub const AUDIT_TRUST_ACTIONS: &[&str] = &["iam:ListRoles", "sts:GetCallerIdentity"];

/// Called by the SDK's assume-role provider for accounts configured with `--assume-role`.
pub const CROSS_ACCOUNT_ACTION: &str = "sts:AssumeRole";
