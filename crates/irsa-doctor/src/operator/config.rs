//! What `irsa-doctor run` runs with: the operator's own configuration, which the command line
//! (`cli/args.rs`) builds from its flags. The operator never reads flags itself.

use std::net::SocketAddr;
use std::time::Duration;

use irsa_aws::AwsFactsConfig;

use super::context::Tenancy;
use super::policy_report::PolicyReportsMode;
use super::probe::ProbeConfig;
use super::watch_namespace::WatchNamespace;
use crate::gather::observed::Observations;
use crate::telemetry::LogFormat;

/// The operator's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The namespaces watched.
    pub namespaces: Vec<WatchNamespace>,
    /// `--issuer`, when given.
    pub issuer: Option<String>,
    /// `--cluster-name`, when given: the issuer from EKS, and EKS Pod Identity.
    pub cluster_name: Option<String>,
    /// How AWS is asked.
    pub aws: AwsFactsConfig,
    /// How often every swept ServiceAccount is diagnosed again.
    pub sweep_interval: Duration,
    /// How often the EKS Pod Identity associations are listed.
    pub association_poll_interval: Duration,
    /// Diagnoses at once.
    pub concurrency: usize,
    /// Where /metrics, /healthz and /readyz are served.
    pub metrics_addr: SocketAddr,
    /// Whether replicas elect a leader through a Lease.
    pub leader_election: bool,
    /// The Lease's namespace.
    pub lease_namespace: String,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// This replica's pod uid: while it leads, the Lease is owned by its pod, so that the Lease
    /// goes when the last replica does (`helm uninstall`).
    pub pod_uid: Option<String>,
    /// How logs are written.
    pub log_format: LogFormat,
    /// The probe pod.
    pub probe: ProbeConfig,
    /// What keeps tenants apart.
    pub tenancy: Tenancy,
    /// PolicyReports: auto, on or off.
    pub policy_reports: PolicyReportsMode,
    /// What is observed of running pods.
    pub observations: Observations,
}
