//! irsa-aws: the AWS facts irsa-doctor's diagnosis needs — the cluster's issuer (EKS), IAM OIDC
//! providers, roles and trust policies, permission simulations, the operator's own identity —
//! through the official SDK, cached per fact kind, with concurrent look-ups collapsed into one
//! call, bounded in concurrency and rate, and classified so that AWS failures become `Unknown`,
//! never a false alarm.

mod cache;
mod classify;
mod config;
mod facts;
mod limiter;
mod stats;

pub use cache::FactCache;
pub use classify::{Failure, Outcome};
pub use config::{AwsFactsConfig, Ttls};
pub use facts::{AwsFacts, CacheStats, CallerIdentity, Clients};
pub use stats::{CallCount, CallStats};
