//! Shared by the end-to-end tests: the fixtures of `test-support`, and the operator binary of
//! this package.
#![allow(dead_code, unused_imports)]

pub use test_support::cluster::{Cluster, ClusterOptions, TestCluster};
pub use test_support::moto;
pub use test_support::net::get;
pub use test_support::operator::*;
pub use test_support::wait::eventually;

/// `irsa-doctor run` against `cluster` (as the chart's ServiceAccount on a real one) and moto.
pub fn start_operator(cluster: &impl TestCluster, aws_url: &str, extra: &[&str]) -> Operator {
    test_support::operator::start_operator(
        std::path::Path::new(env!("CARGO_BIN_EXE_irsa-doctor")),
        cluster,
        aws_url,
        extra,
    )
}
