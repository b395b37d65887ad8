//! Configuration by flags and environment, shared by `run` and `check`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use irsa_aws::{AwsFactsConfig, Ttls};

/// How to find the cluster's issuer.
#[derive(Debug, Clone, Args)]
pub struct IssuerArgs {
    /// The cluster's OIDC issuer URL; otherwise discovered.
    #[arg(long, env = "IRSA_DOCTOR_ISSUER")]
    pub issuer: Option<String>,
    /// EKS cluster name: the issuer comes from eks:DescribeCluster.
    #[arg(long, env = "IRSA_DOCTOR_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
}

/// The longest selector accepted, in bytes: a label selector of a few dozen requirements.
pub const MAX_SELECTOR_LENGTH: usize = 1_024;

/// kubectl's selectors, on ServiceAccounts; the API server parses and applies them.
#[derive(Debug, Clone, Default, Args)]
pub struct SelectorArgs {
    /// Only ServiceAccounts with these labels, as kubectl's -l (e.g. -l team=ml,tier!=dev).
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR", value_parser = bounded_selector)]
    pub selector: Option<String>,
    /// Only ServiceAccounts with these fields, as kubectl's --field-selector (e.g.
    /// metadata.name=app or metadata.namespace!=kube-system).
    #[arg(long, value_name = "SELECTOR", value_parser = bounded_selector)]
    pub field_selector: Option<String>,
}

impl SelectorArgs {
    /// Whether a selector is given.
    pub fn any(&self) -> bool {
        self.selector.is_some() || self.field_selector.is_some()
    }

    /// The selectors as list parameters.
    pub fn list_params(&self) -> kube::api::ListParams {
        let mut params = kube::api::ListParams::default();
        if let Some(labels) = &self.selector {
            params = params.labels(labels);
        }
        if let Some(fields) = &self.field_selector {
            params = params.fields(fields);
        }
        params
    }

    /// `-l …` and `--field-selector …` as given, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.selector {
            parts.push(format!("-l {l:?}"));
        }
        if let Some(f) = &self.field_selector {
            parts.push(format!("--field-selector {f:?}"));
        }
        parts.join(" ")
    }
}

fn bounded_selector(s: &str) -> Result<String, String> {
    if s.len() > MAX_SELECTOR_LENGTH {
        return Err(format!(
            "the selector is {} bytes long; give at most {MAX_SELECTOR_LENGTH}",
            s.len()
        ));
    }
    if s.trim().is_empty() {
        return Err("the selector is empty; give e.g. team=ml".to_string());
    }
    Ok(s.to_string())
}

/// Limits on AWS calls.
#[derive(Debug, Clone, Args)]
pub struct AwsArgs {
    /// At most this many AWS calls in flight.
    #[arg(long, env = "IRSA_DOCTOR_AWS_MAX_CONCURRENCY", default_value_t = 8)]
    pub aws_max_concurrency: usize,
    /// Client-side rate limit on AWS calls per second (IAM's own limits are low).
    #[arg(long, env = "IRSA_DOCTOR_AWS_RATE", default_value_t = 10)]
    pub aws_rate: u32,
    /// Attempts per AWS call, with the SDK's standard backoff.
    #[arg(long, env = "IRSA_DOCTOR_AWS_MAX_ATTEMPTS", default_value_t = 4)]
    pub aws_max_attempts: u32,
    /// How long roles, providers and permission simulations are cached.
    #[arg(long, env = "IRSA_DOCTOR_AWS_CACHE_TTL", default_value = "5m", value_parser = positive_duration)]
    pub aws_cache_ttl: Duration,
    /// A role to assume for IAM facts of another account: ACCOUNT=ROLE_ARN (repeatable).
    #[arg(long = "assume-role", value_name = "ACCOUNT=ROLE_ARN", value_parser = parse_assume_role)]
    pub assume_role: Vec<(String, String)>,
}

/// CloudTrail's record of the ServiceAccounts' `AssumeRoleWithWebIdentity` calls.
#[derive(Debug, Clone, Args)]
pub struct CloudTrailArgs {
    /// Also search CloudTrail (cloudtrail:LookupEvents) for the ServiceAccounts'
    /// AssumeRoleWithWebIdentity calls: real pods failing, and pods that never use their role.
    #[arg(long, env = "IRSA_DOCTOR_CLOUDTRAIL")]
    pub cloudtrail: bool,
    /// How far back --cloudtrail looks, e.g. 12h or 3d (at most 90d, CloudTrail's history).
    #[arg(long, env = "IRSA_DOCTOR_CLOUDTRAIL_WINDOW", value_name = "DURATION", default_value = "12h", value_parser = cloudtrail_window)]
    pub cloudtrail_window: Duration,
}

impl CloudTrailArgs {
    /// The window to search, when CloudTrail is to be searched.
    pub fn window(&self) -> Option<Duration> {
        self.cloudtrail.then_some(self.cloudtrail_window)
    }
}

fn cloudtrail_window(text: &str) -> Result<Duration, String> {
    let window = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. 12h or 3d"))?;
    if window.is_zero() || window > irsa_core::assume_history::MAX_WINDOW {
        return Err(format!(
            "{text:?} is outside CloudTrail's event history; give more than 0 and at most 90d"
        ));
    }
    Ok(window)
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err(format!(
            "{s:?} is zero; give a positive duration such as 10m"
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

fn parse_assume_role(s: &str) -> Result<(String, String), String> {
    let (account, role) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ACCOUNT=ROLE_ARN"))?;
    if !irsa_core::arn::is_account_id(account) {
        return Err(format!("{account:?} is not a 12-digit account id"));
    }
    irsa_core::RoleArn::parse(role).map_err(|e| format!("{role:?}: {e}"))?;
    Ok((account.to_string(), role.to_string()))
}

fn parse_role_arn_pattern(s: &str) -> Result<irsa_core::facts::RoleArnPattern, String> {
    irsa_core::facts::RoleArnPattern::parse(s).map_err(|e| e.to_string())
}

impl AwsArgs {
    /// The irsa-aws configuration.
    pub fn config(&self) -> AwsFactsConfig {
        let ttl = self.aws_cache_ttl;
        AwsFactsConfig {
            ttl: Ttls {
                providers: ttl,
                role: ttl,
                permissions: ttl,
                ..Ttls::default()
            },
            max_concurrent_calls: self.aws_max_concurrency,
            calls_per_second: self.aws_rate,
            burst: self.aws_rate,
            max_attempts: self.aws_max_attempts,
            assume_role_per_account: self.assume_role.iter().cloned().collect::<BTreeMap<_, _>>(),
            ..AwsFactsConfig::default()
        }
    }
}

pub use crate::telemetry::LogFormat;

/// Arguments of `irsa-doctor run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Namespaces to watch (comma-separated); all when empty.
    #[arg(long, env = "IRSA_DOCTOR_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// How to find the cluster's issuer.
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Limits on AWS calls.
    #[command(flatten)]
    pub aws: AwsArgs,
    /// How often every annotated ServiceAccount is diagnosed again.
    #[arg(long, env = "IRSA_DOCTOR_SWEEP_INTERVAL", default_value = "10m", value_parser = positive_duration)]
    pub sweep_interval: Duration,
    /// How often the EKS Pod Identity associations are listed (with --cluster-name): a
    /// ServiceAccount whose association appeared or went away is diagnosed at once.
    #[arg(long, env = "IRSA_DOCTOR_ASSOCIATION_POLL_INTERVAL", default_value = "1m", value_parser = positive_duration)]
    pub association_poll_interval: Duration,
    /// Diagnoses run at once.
    #[arg(long, env = "IRSA_DOCTOR_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "IRSA_DOCTOR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so that only one replica writes.
    #[arg(long, env = "IRSA_DOCTOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "irsa-doctor")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// This replica's pod uid (the downward API's metadata.uid): while it leads, the Lease is
    /// owned by its pod, so that the Lease goes with the last replica.
    #[arg(long, env = "POD_UID")]
    pub pod_uid: Option<String>,
    /// Log format.
    #[arg(long, env = "IRSA_DOCTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Image of the probe pod (an aws-cli that supports web identity, >= 2.15), pinned.
    #[arg(
        long,
        env = "IRSA_DOCTOR_PROBE_IMAGE",
        default_value = "amazon/aws-cli:2.22.35"
    )]
    pub probe_image: String,
    /// Command of the probe pod, space-separated.
    #[arg(
        long,
        env = "IRSA_DOCTOR_PROBE_COMMAND",
        default_value = "aws sts get-caller-identity --output json"
    )]
    pub probe_command: String,
    /// At most this many probe pods at once, cluster-wide.
    #[arg(long, env = "IRSA_DOCTOR_MAX_CONCURRENT_PROBES", default_value_t = 4)]
    pub max_concurrent_probes: usize,
    /// At most this many probe pods at once of one namespace; half of --max-concurrent-probes
    /// (rounded up) when not given. Probes that hang in one namespace leave the rest to others.
    #[arg(long, env = "IRSA_DOCTOR_MAX_PROBES_PER_NAMESPACE")]
    pub max_probes_per_namespace: Option<usize>,
    /// A check's probe pod runs at most this often, however short its spec.interval; diagnoses in
    /// between reuse its last outcome.
    #[arg(long, env = "IRSA_DOCTOR_MIN_PROBE_INTERVAL", default_value = "10m", value_parser = positive_duration)]
    pub min_probe_interval: Duration,
    /// The only roles the operator looks up in AWS, as role ARN patterns with * and ?
    /// (comma-separated), e.g. arn:aws:iam::*:role/irsa/*; every role when empty.
    #[arg(
        long,
        env = "IRSA_DOCTOR_ALLOWED_ROLE_ARNS",
        value_name = "PATTERN",
        value_delimiter = ',',
        value_parser = parse_role_arn_pattern
    )]
    pub allowed_role_arns: Vec<irsa_core::facts::RoleArnPattern>,
    /// PolicyReports (wgpolicyk8s.io/v1alpha2), one per namespace: auto (when the CRD is
    /// installed), on or off.
    #[arg(long, env = "IRSA_DOCTOR_POLICY_REPORTS", value_enum, default_value_t = crate::operator::PolicyReportsMode::Auto)]
    pub policy_reports: crate::operator::PolicyReportsMode,
    /// Read the nodes of annotated ServiceAccounts' pods and their EC2 metadata options
    /// (ec2:DescribeInstances, `get nodes`): report nodes where a pod whose credentials fail
    /// silently gets the node's role.
    #[arg(long, env = "IRSA_DOCTOR_NODE_CHECK", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub node_check: bool,
    /// CloudTrail, as for `check`.
    #[command(flatten)]
    pub cloudtrail: CloudTrailArgs,
}

impl RunArgs {
    /// The operator's configuration these flags give.
    pub fn config(&self) -> crate::operator::Config {
        crate::operator::Config {
            namespaces: crate::operator::WatchNamespace::from_list(&self.namespaces),
            issuer: self.issuer.issuer.clone(),
            cluster_name: self.issuer.cluster_name.clone(),
            aws: self.aws.config(),
            sweep_interval: self.sweep_interval,
            association_poll_interval: self.association_poll_interval,
            concurrency: usize::from(self.concurrency).max(1),
            metrics_addr: self.metrics_addr,
            leader_election: self.leader_election,
            lease_namespace: self.lease_namespace.clone(),
            identity: self
                .identity
                .clone()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| format!("irsa-doctor-{}", std::process::id())),
            pod_uid: self.pod_uid.clone().filter(|u| !u.is_empty()),
            log_format: self.log_format,
            probe: self.probe(),
            tenancy: crate::operator::Tenancy {
                allowed_roles: irsa_core::facts::AllowedRoles::new(self.allowed_role_arns.clone()),
                max_concurrent_probes: self.max_concurrent_probes,
                max_probes_per_namespace: self.max_probes_per_namespace.unwrap_or_else(|| {
                    crate::operator::ProbeSlots::half(self.max_concurrent_probes)
                }),
                min_probe_interval: self.min_probe_interval,
            },
            policy_reports: self.policy_reports,
            observations: self.observations(),
        }
    }

    /// The runtime observations `--node-check` and `--cloudtrail` ask for.
    pub fn observations(&self) -> crate::gather::observed::Observations {
        crate::gather::observed::Observations {
            node_check: self.node_check,
            cloudtrail_window: self.cloudtrail.window(),
        }
    }

    /// The probe configuration.
    pub fn probe(&self) -> crate::operator::probe::ProbeConfig {
        crate::operator::probe::ProbeConfig {
            image: self.probe_image.clone(),
            command: self
                .probe_command
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            max_concurrent: self.max_concurrent_probes,
        }
    }
}
