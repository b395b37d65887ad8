//! How irsa-aws talks to AWS: cache lifetimes, limits, retries and cross-account roles.

use std::collections::BTreeMap;
use std::time::Duration;

/// How long each kind of fact is trusted before it is fetched again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ttls {
    /// The operator's own identity.
    pub identity: Duration,
    /// The cluster's issuer from EKS.
    pub issuer: Duration,
    /// OIDC providers of an account.
    pub providers: Duration,
    /// A role and its trust policy.
    pub role: Duration,
    /// Permission simulations.
    pub permissions: Duration,
}

impl Default for Ttls {
    fn default() -> Ttls {
        Ttls {
            identity: Duration::from_secs(3600),
            issuer: Duration::from_secs(3600),
            providers: Duration::from_secs(300),
            role: Duration::from_secs(300),
            permissions: Duration::from_secs(600),
        }
    }
}

/// Configuration of [`crate::AwsFacts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsFactsConfig {
    /// Cache lifetimes per fact kind.
    pub ttl: Ttls,
    /// At most this many facts of each kind are cached; the least likely to be asked again are
    /// evicted first.
    pub max_cached_per_kind: u64,
    /// At most this many AWS calls in flight at once, whoever they are for; waiting calls are
    /// served round-robin across [`crate::Lane`]s.
    pub max_concurrent_calls: usize,
    /// Client-side rate limit, calls per second (IAM's own limits are low).
    pub calls_per_second: u32,
    /// Calls allowed in a burst above the rate.
    pub burst: u32,
    /// Attempts per call, including the first, with the SDK's standard backoff.
    pub max_attempts: u32,
    /// Deadline for one call including its retries.
    pub operation_timeout: Duration,
    /// Role to assume to read facts of another account, by account id.
    pub assume_role_per_account: BTreeMap<String, String>,
}

impl Default for AwsFactsConfig {
    fn default() -> AwsFactsConfig {
        AwsFactsConfig {
            ttl: Ttls::default(),
            max_cached_per_kind: 10_000,
            max_concurrent_calls: 8,
            calls_per_second: 10,
            burst: 10,
            max_attempts: 4,
            operation_timeout: Duration::from_secs(30),
            assume_role_per_account: BTreeMap::new(),
        }
    }
}
