//! `irsa-doctor check`: the same diagnosis, one-shot, from a laptop — current kube context and
//! AWS credentials, no operator installed.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use irsa_aws::AwsFacts;
use irsa_core::{diagnose, Fact, Report};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};

use super::args::{AwsArgs, IssuerArgs};
use super::output::{self, Format};
use crate::gather::{self, gather, issuer};

/// Arguments of `irsa-doctor check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The ServiceAccount to check; every IRSA ServiceAccount of the namespace when omitted.
    service_account: Option<String>,
    /// Namespace (default: the kube context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with_all = ["namespace", "service_account"])]
    all_namespaces: bool,
    #[command(flatten)]
    issuer: IssuerArgs,
    #[command(flatten)]
    aws: AwsArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs the diagnosis and prints it; exit 1 with error findings.
pub async fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let client = crate::client::client().await?;
    let aws = AwsFacts::from_env(&args.aws.config()).await;
    let issuer = issuer::discover_fact(
        args.issuer.issuer.as_deref(),
        args.issuer.cluster_name.as_deref(),
        &aws,
        &client,
    )
    .await;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let accounts: Vec<(String, String, Fact<Option<irsa_core::ServiceAccount>>)> =
        match &args.service_account {
            Some(name) => {
                let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
                let sa = api
                    .get_opt(name)
                    .await
                    .with_context(|| format!("reading ServiceAccount {namespace}/{name}"))?;
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
                api.list_metadata(&ListParams::default())
                    .await
                    .context("listing ServiceAccounts")?
                    .items
                    .iter()
                    .map(|m| gather::service_account(&m.metadata))
                    .filter(|sa| sa.wants_irsa())
                    .map(|sa| (sa.namespace.clone(), sa.name.clone(), Fact::Known(Some(sa))))
                    .collect()
            }
        };
    let mut reports: Vec<Report> = Vec::with_capacity(accounts.len());
    for (ns, name, sa) in accounts {
        reports.push(diagnose(&gather(&aws, &issuer, &ns, &name, sa, None).await));
    }
    Ok(output::print(&reports, args.format))
}
