//! `irsa-doctor check`: the same diagnosis, one-shot, from a laptop — current kube context and
//! AWS credentials, no operator installed. Also `kubectl irsa-doctor check`, with kubectl's
//! `--kubeconfig`, `--context`, `-n` and `-A`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use irsa_aws::AwsFacts;
use irsa_core::{diagnose, Fact, Report};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};

use super::args::{AwsArgs, CloudTrailArgs, IssuerArgs, SelectorArgs};
use super::output;
use super::table::{self, Columns};
use crate::client::KubeconfigSelection;
use crate::gather::admission::Admission;
use crate::gather::issuer_keys::{self, IssuerTrust};
use crate::gather::observed::{observe, Observations};
use crate::gather::pod_identity::{with_pod_identity, Agents, Lookup, AGENT_NAMESPACE};
use crate::gather::{self, gather, issuer, node_fallback, workloads};

/// How `check` prints, as kubectl's `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// NAMESPACE, SERVICEACCOUNT, ROLE, READY, REASON: one row per ServiceAccount.
    Table,
    /// The table with the Ready message and the fix.
    Wide,
    /// Every finding and condition, as one JSON object.
    Json,
    /// The same data as `json`, as YAML.
    Yaml,
}

/// `--format`, the flag before `-o` existed; kept so scripts keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LegacyFormat {
    /// The table (`text` was the default).
    Text,
    /// `-o json`.
    Json,
}

/// Arguments of `irsa-doctor check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The ServiceAccount to check; every IRSA ServiceAccount of the namespace when omitted.
    #[arg(conflicts_with_all = ["selector", "field_selector"])]
    service_account: Option<String>,
    /// Namespace (default: the kube context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with_all = ["namespace", "service_account"])]
    all_namespaces: bool,
    /// The kubeconfig file, as kubectl's --kubeconfig (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context, as kubectl's --context (default: the current context).
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    #[command(flatten)]
    issuer: IssuerArgs,
    /// PEM CA certificates trusted, besides the system's, for the issuer's discovery document
    /// and JWKS (a private CA).
    #[arg(long, value_name = "FILE", env = "IRSA_DOCTOR_ISSUER_CA_FILE")]
    issuer_ca_file: Option<PathBuf>,
    /// Do not fetch the issuer's discovery document and JWKS (no key or thumbprint checks).
    #[arg(long)]
    skip_issuer_keys: bool,
    /// Do not read the nodes of the ServiceAccounts' pods and their EC2 metadata options
    /// (ec2:DescribeInstances): no node-role fallback check, for callers without either.
    #[arg(long)]
    skip_node_check: bool,
    #[command(flatten)]
    cloudtrail: CloudTrailArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    select: SelectorArgs,
    /// Output format: table, wide (adds PODS, WORKLOADS, MESSAGE and FIX), json or yaml.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    /// Same as -o: `--format json` is `-o json`, `--format text` the table.
    #[arg(long, value_enum, hide = true, conflicts_with = "output")]
    format: Option<LegacyFormat>,
}

impl CheckArgs {
    /// The node check unless `--skip-node-check`; CloudTrail with `--cloudtrail`.
    fn observations(&self) -> Observations {
        Observations {
            node_check: !self.skip_node_check,
            cloudtrail_window: self.cloudtrail.window(),
        }
    }

    /// The output format, `--format` mapped onto `-o`.
    pub fn output(&self) -> OutputFormat {
        match self.format {
            Some(LegacyFormat::Json) => OutputFormat::Json,
            Some(LegacyFormat::Text) => OutputFormat::Table,
            None => self.output,
        }
    }
}

/// Runs the diagnosis and prints it; exit 1 with error findings.
pub async fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let client = crate::client::client_for(&KubeconfigSelection {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    })
    .await?;
    let trust = IssuerTrust::new(args.issuer_ca_file.as_deref())?;
    let aws = AwsFacts::from_env(&args.aws.config()).await;
    let issuer = issuer::discover_fact(
        args.issuer.issuer.as_deref(),
        args.issuer.cluster_name.as_deref(),
        &aws,
        &client,
    )
    .await;
    let issuer_keys = fetch_issuer_keys(args, &issuer, &trust, &client).await;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    // Across a whole cluster this takes a while: show it, on a terminal only.
    let progress = if args.all_namespaces && std::io::stderr().is_terminal() {
        spinner("listing ServiceAccounts in every namespace")
    } else {
        ProgressBar::hidden()
    };
    // The names of every ServiceAccount in scope, by namespace: what a missing one is near.
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Why the cluster's Pod Identity associations are unknown, when their list failed.
    let mut listing_failed: Option<irsa_core::Unavailable> = None;
    let accounts: Vec<(String, String, Fact<Option<irsa_core::ServiceAccount>>)> =
        match &args.service_account {
            Some(name) => {
                let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
                let sa = api
                    .get_opt(name)
                    .await
                    .with_context(|| format!("reading ServiceAccount {namespace}/{name}"))?;
                if sa.is_none() {
                    let listed = api
                        .list_metadata(&ListParams::default())
                        .await
                        .context("listing ServiceAccounts")?;
                    names.insert(
                        namespace.clone(),
                        listed
                            .items
                            .into_iter()
                            .filter_map(|m| m.metadata.name)
                            .collect(),
                    );
                }
                vec![(
                    namespace.clone(),
                    name.clone(),
                    Fact::Known(sa.map(|s| gather::service_account(&s.metadata))),
                )]
            }
            None => {
                let api: Api<ServiceAccount> = if args.all_namespaces {
                    Api::all(client.clone())
                } else {
                    Api::namespaced(client.clone(), &namespace)
                };
                let associated = associated_service_accounts(args, &aws, &namespace).await;
                listing_failed = associated.as_ref().err().cloned();
                let associated = associated.unwrap_or_default();
                let listed: Vec<irsa_core::ServiceAccount> = api
                    .list_metadata(&args.select.list_params())
                    .await
                    .with_context(|| format!("listing ServiceAccounts {}", args.select.describe()))?
                    .items
                    .iter()
                    .map(|m| gather::service_account(&m.metadata))
                    .collect();
                for sa in &listed {
                    names
                        .entry(sa.namespace.clone())
                        .or_default()
                        .push(sa.name.clone());
                }
                let mut accounts: Vec<_> = listed
                    .into_iter()
                    // Not knowing which have an association, every ServiceAccount is reported, the
                    // unannotated ones Unknown: none is dropped silently.
                    .filter(|sa| {
                        sa.wants_irsa()
                            || listing_failed.is_some()
                            || associated.contains(&(sa.namespace.clone(), sa.name.clone()))
                    })
                    .map(|sa| (sa.namespace.clone(), sa.name.clone(), Fact::Known(Some(sa))))
                    .collect();
                // Associations whose ServiceAccount does not exist: their pods run as the node.
                // A selector selects existing ServiceAccounts only.
                accounts.extend(
                    associated
                        .into_iter()
                        .filter(|_| !args.select.any())
                        .filter(|(ns, name)| !names.get(ns).is_some_and(|n| n.contains(name)))
                        .map(|(ns, name)| (ns, name, Fact::Known(None))),
                );
                accounts
            }
        };
    counting(&progress, accounts.len());
    let nodes = node_fallback::Nodes::new(client.clone());
    let agents = Agents::new(client.clone(), AGENT_NAMESPACE);
    let admission = Admission::new(client.clone(), Duration::from_secs(60));
    let lookup = match args.service_account {
        Some(_) => Lookup::ServiceAccount,
        None => Lookup::Cluster,
    };
    let mut reports: Vec<Report> = Vec::with_capacity(accounts.len());
    let mut usage: Vec<table::Usage> = Vec::with_capacity(accounts.len());
    for (ns, name, sa) in accounts {
        progress.set_message(format!("{ns}/{name}"));
        let mut facts = gather(&aws, &issuer, &ns, &name, sa, None).await;
        match &listing_failed {
            // Asked once for the whole run: not again for each ServiceAccount.
            Some(u) => facts.pod_identity = Fact::Unavailable(u.clone()),
            None => {
                with_pod_identity(
                    &aws,
                    args.issuer.cluster_name.as_deref(),
                    None,
                    lookup,
                    Some(&agents),
                    &mut facts,
                )
                .await
            }
        }
        facts.issuer_keys = issuer_keys.clone();
        if matches!(facts.service_account, Fact::Known(None)) {
            facts.namespace_service_accounts = names.get(&ns).cloned().unwrap_or_default();
        }
        // `check` runs no probe: every pod of the ServiceAccount is audited.
        facts.workloads = Some(
            workloads::pods_of(&client, &admission, &ns, &name, &workloads::Skip::new()).await,
        );
        observe(args.observations(), &aws, &client, &nodes, &mut facts).await;
        usage.push(match &facts.workloads {
            Some(Fact::Known(pods)) => Some(table::usage(pods)),
            _ => None,
        });
        reports.push(diagnose(&facts));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let text = match args.output() {
        OutputFormat::Table | OutputFormat::Wide if reports.is_empty() => {
            // As kubectl: nothing on standard output, a note on standard error.
            if args.all_namespaces {
                eprintln!("No IRSA ServiceAccounts found in any namespace.");
            } else {
                eprintln!("No IRSA ServiceAccounts found in {namespace} namespace.");
            }
            String::new()
        }
        OutputFormat::Table => table::table(&reports, &usage, Columns::Default),
        OutputFormat::Wide => table::table(&reports, &usage, Columns::Wide),
        OutputFormat::Json => {
            let v = output::value_with_calls(&reports, &output::aws_calls(&aws));
            serde_json::to_string_pretty(&v).expect("JSON values always serialise") + "\n"
        }
        OutputFormat::Yaml => {
            let v = output::value_with_calls(&reports, &output::aws_calls(&aws));
            serde_yaml_ng::to_string(&v).expect("JSON values always serialise as YAML")
        }
    };
    output::emit(&text).context("writing to standard output")?;
    Ok(output::exit_code(&reports))
}

/// The ServiceAccounts in scope that have an EKS Pod Identity association (with
/// `--cluster-name`), so that those without an IRSA annotation are diagnosed too; empty
/// without a cluster name. `Err` when the associations could not be listed: then no
/// ServiceAccount can be told to have none.
async fn associated_service_accounts(
    args: &CheckArgs,
    aws: &AwsFacts,
    namespace: &str,
) -> Result<std::collections::HashSet<(String, String)>, irsa_core::Unavailable> {
    let Some(cluster) = args.issuer.cluster_name.as_deref() else {
        return Ok(Default::default());
    };
    let lane = irsa_aws::Lane::namespace(namespace);
    let list = aws
        .pod_identity_association_list(&lane, cluster, None)
        .await
        .inspect_err(|u| {
            eprintln!(
                "warning: EKS Pod Identity associations of {cluster} could not be listed ({}); ServiceAccounts without the IRSA annotation are reported Unknown",
                u.detail
            );
        })?;
    Ok(list
        .into_iter()
        .filter(|a| args.all_namespaces || a.namespace == namespace)
        .map(|a| (a.namespace, a.service_account))
        .collect())
}

/// The issuer's discovery document, JWKS and chain, once for every ServiceAccount; only for an
/// issuer from `--issuer` or `eks:DescribeCluster` (`--cluster-name`), the sources an operator
/// configures, not for one the API server advertises.
async fn fetch_issuer_keys(
    args: &CheckArgs,
    issuer: &Fact<irsa_core::Issuer>,
    trust: &IssuerTrust,
    client: &kube::Client,
) -> Fact<irsa_core::issuer_keys::IssuerKeys> {
    if args.skip_issuer_keys {
        return Fact::Skipped("--skip-issuer-keys".into());
    }
    if args.issuer.issuer.is_none() && args.issuer.cluster_name.is_none() {
        return Fact::Skipped(
            "the issuer's keys are fetched only for an issuer from --issuer or --cluster-name"
                .into(),
        );
    }
    let Fact::Known(issuer) = issuer else {
        return Fact::Skipped("the cluster's issuer is unknown".into());
    };
    let cluster_keys = issuer_keys::cluster_keys(client).await;
    Fact::Known(issuer_keys::fetch(issuer, trust, cluster_keys).await)
}

/// A spinner on standard error while the ServiceAccounts are listed.
fn spinner(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Turns the spinner into a bar counting `total` diagnoses.
fn counting(bar: &ProgressBar, total: usize) {
    if bar.is_hidden() {
        return;
    }
    bar.disable_steady_tick();
    bar.set_length(u64::try_from(total).unwrap_or(u64::MAX));
    bar.set_position(0);
    // The template is a constant; should indicatif ever refuse it, its default bar will do.
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} ServiceAccounts  {msg}") {
        bar.set_style(style);
    }
}
