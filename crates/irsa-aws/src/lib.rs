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

/// Every AWS action irsa-aws calls with the operator's credentials; the operator's IAM policy
/// (`deploy/iam-policy.json`) must grant exactly these, plus [`CROSS_ACCOUNT_ACTION`].
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

/// Called by the SDK's assume-role provider for accounts configured with `--assume-role`.
pub const CROSS_ACCOUNT_ACTION: &str = "sts:AssumeRole";
