//! `irsa-doctor lint`: the diagnosis over files, before anything is applied.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use irsa_core::pod_identity::{
    parse_associations, without_service_account, Association, PodIdentity,
};
use irsa_core::pods::Pods;
use irsa_core::workloads::EnvSources;
use irsa_core::{diagnose, Fact, Facts, Issuer, OidcProvider, OidcProviderArn, Report, RoleArn};

use super::inputs::yaml::MAX_INPUT_BYTES;
use super::inputs::{
    read_env_sources, read_service_accounts, read_workloads, Roles, SourceLocation,
};
use super::output::{self, Format};
use super::sarif;

/// Arguments of `irsa-doctor lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// The cluster's OIDC issuer URL (`aws eks describe-cluster --query cluster.identity.oidc.issuer`).
    #[arg(long, value_name = "URL")]
    issuer: String,
    /// A YAML or JSON file of ServiceAccounts (several documents and `kind: List` allowed).
    #[arg(long = "service-account", value_name = "FILE", required = true)]
    service_accounts: Vec<PathBuf>,
    /// The namespace of ServiceAccounts whose manifest sets none, as with `kubectl apply -n`.
    #[arg(long, short = 'n', value_name = "NAMESPACE", default_value = irsa_core::manifest::DEFAULT_NAMESPACE)]
    namespace: String,
    /// A role's trust policy: ROLE_ARN=FILE, or FILE holding `aws iam get-role` output.
    #[arg(long = "role", value_name = "[ROLE_ARN=]FILE")]
    roles: Vec<String>,
    /// The trust policy of the one role the manifests reference.
    #[arg(long, value_name = "FILE")]
    trust_policy: Option<PathBuf>,
    /// An IAM OIDC provider known to exist, optionally with its client IDs (audiences).
    #[arg(long = "oidc-provider", value_name = "ARN[=AUDIENCE,...]")]
    oidc_providers: Vec<String>,
    /// A YAML or JSON file of Pods or workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet,
    /// Job, CronJob; several documents and `kind: List` allowed): their pod templates are checked
    /// against the ServiceAccounts they run as, without a cluster.
    #[arg(long = "workload", value_name = "FILE")]
    workloads: Vec<PathBuf>,
    /// EKS Pod Identity associations, as `aws eks describe-pod-identity-association` prints them
    /// (one or several): the association is the one in force for its ServiceAccount, and its
    /// role's trust policy (from --role) must allow pods.eks.amazonaws.com.
    #[arg(long = "pod-identity-association", value_name = "FILE")]
    pod_identity_associations: Vec<PathBuf>,
    /// The role every ServiceAccount must name (a drift guard, like an IrsaCheck's spec.expectedRoleArn).
    #[arg(long, value_name = "ROLE_ARN")]
    expected_role_arn: Option<String>,
    /// Output format: `sarif` for code scanning, `github` for GitHub Actions annotations; both
    /// point at the manifest line of each ServiceAccount.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs lint and prints its findings; an `Err` is unusable input (exit 2).
pub fn run(args: &LintArgs) -> Result<ExitCode> {
    let issuer = Issuer::parse(&args.issuer).context("--issuer")?;
    let providers = parse_providers(&args.oidc_providers)?;
    let mut service_accounts = Vec::new();
    let mut env_sources = EnvSources::new();
    for path in &args.service_accounts {
        service_accounts.extend(read_service_accounts(path, &args.namespace)?);
        env_sources.extend(read_env_sources(path, &args.namespace)?);
    }
    let associations = read_associations(&args.pod_identity_associations)?;
    let association_of = |sa: &irsa_core::ServiceAccount| {
        associations
            .iter()
            .find(|a| a.namespace == sa.namespace && a.service_account == sa.name)
    };
    let mut workloads = Vec::new();
    for path in &args.workloads {
        let file = read_workloads(path, &args.namespace)?;
        for warning in &file.warnings {
            eprintln!("warning: {warning}");
        }
        workloads.extend(file.workloads);
        env_sources.extend(file.env_sources);
    }
    for w in &mut workloads {
        w.resolve_env_from(&env_sources);
    }
    let mut roles = Roles::default();
    for spec in &args.roles {
        roles.add_spec(spec)?;
    }
    if let Some(path) = &args.trust_policy {
        let referenced: BTreeSet<RoleArn> = service_accounts
            .iter()
            .filter_map(|sa| RoleArn::parse(sa.account.role_arn_annotation()?).ok())
            .collect();
        match referenced.len() {
            0 => {}
            1 => roles.add_file_for(referenced.into_iter().next().expect("one element"), path)?,
            n => bail!(
                "--trust-policy {}: the manifests reference {n} roles ({}); give each with --role ROLE_ARN=FILE",
                path.display(),
                referenced.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    let trust_policy_of = |arn: &str| {
        RoleArn::parse(arn)
            .ok()
            .and_then(|arn| roles.get(&arn))
            .map(|r| {
                Fact::Known(Some(irsa_core::Role {
                    trust_policy: r.trust_policy.clone(),
                }))
            })
    };
    let pod_identity = |a: &Association| {
        let mut pi = PodIdentity::new(a.clone());
        if let Some(known) = trust_policy_of(&a.role_arn) {
            pi.role = known;
        }
        if let (Some(t), Some(known)) = (
            pi.target.as_mut(),
            a.target_role_arn.as_deref().and_then(trust_policy_of),
        ) {
            t.role = known;
        }
        pi
    };
    // The ServiceAccounts each namespace of the input has or its workloads run as: a namespace
    // the input says nothing of is not judged for associations without their ServiceAccount.
    let mut named: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for sa in &service_accounts {
        named
            .entry(sa.account.namespace.as_str())
            .or_default()
            .insert(sa.account.name.as_str());
    }
    for w in &workloads {
        named
            .entry(w.namespace.as_str())
            .or_default()
            .insert(w.service_account.as_str());
    }
    let exists = |ns: &str, name: &str| {
        service_accounts
            .iter()
            .any(|sa| sa.account.namespace == ns && sa.account.name == name)
    };
    let orphans: Vec<Facts> =
        without_service_account(&associations, exists, |ns| named.contains_key(ns))
            .into_iter()
            .map(|a| {
                let mut facts =
                    Facts::for_missing_service_account(&a.namespace, &a.service_account);
                facts.pod_identity = Fact::Known(Some(pod_identity(a)));
                facts.namespace_service_accounts = named
                    .get(a.namespace.as_str())
                    .into_iter()
                    .flatten()
                    .map(|s| s.to_string())
                    .collect();
                facts
            })
            .collect();
    service_accounts.retain(|sa| sa.account.wants_irsa() || association_of(&sa.account).is_some());
    let workloads_of = |namespace: &str, name: &str| {
        workloads
            .iter()
            .filter(|w| w.namespace == namespace && w.service_account == name)
            .map(|w| w.pod.clone())
            .collect::<Vec<_>>()
    };
    let (mut reports, mut locations): (Vec<Report>, Vec<SourceLocation>) = service_accounts
        .into_iter()
        .map(|sa| {
            let mut facts = Facts::offline(sa.account, issuer.clone(), providers.clone(), |arn| {
                roles.get(arn).map(|r| r.trust_policy.clone())
            });
            facts.expected_role_arn = args.expected_role_arn.clone();
            if !args.pod_identity_associations.is_empty() {
                let sa = facts.service_account.known().and_then(Option::as_ref);
                facts.pod_identity = Fact::Known(sa.and_then(association_of).map(pod_identity));
            }
            if !args.workloads.is_empty() {
                facts.workloads = Some(Fact::Known(Pods::all(workloads_of(
                    &facts.namespace,
                    &facts.name,
                ))));
            }
            (diagnose(&facts), sa.location)
        })
        .unzip();
    for mut facts in orphans {
        if !args.workloads.is_empty() {
            facts.workloads = Some(Fact::Known(Pods::all(workloads_of(
                &facts.namespace,
                &facts.name,
            ))));
        }
        reports.push(diagnose(&facts));
        // Findings point at the association's file: the ServiceAccount is in none.
        locations.push(SourceLocation {
            path: args.pod_identity_associations[0].clone(),
            line: None,
        });
    }
    let text = match args.format {
        Format::Text => output::text(&reports),
        Format::Json => output::json(&reports) + "\n",
        Format::Sarif => serde_json::to_string_pretty(&sarif::log(&reports, &locations))? + "\n",
        Format::Github => sarif::github(&reports, &locations),
    };
    output::emit(&text).context("writing to standard output")?;
    Ok(output::exit_code(&reports))
}

/// Every association of the `--pod-identity-association` files.
fn read_associations(paths: &[PathBuf]) -> Result<Vec<Association>> {
    let mut associations = Vec::new();
    for path in paths {
        let bytes = std::fs::metadata(path)
            .with_context(|| format!("--pod-identity-association {}", path.display()))?
            .len();
        if bytes > MAX_INPUT_BYTES as u64 {
            bail!(
                "--pod-identity-association {}: {bytes} bytes, more than the {MAX_INPUT_BYTES} one input may have",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--pod-identity-association {}", path.display()))?;
        associations.extend(
            parse_associations(&text).map_err(|e| {
                anyhow::anyhow!("--pod-identity-association {}: {e}", path.display())
            })?,
        );
    }
    Ok(associations)
}

/// `ARN` or `ARN=aud1,aud2`; `None` when no provider was given (the check is skipped).
fn parse_providers(specs: &[String]) -> Result<Option<Vec<OidcProvider>>> {
    if specs.is_empty() {
        return Ok(None);
    }
    specs
        .iter()
        .map(|spec| {
            let (arn, audiences) = match spec.split_once('=') {
                Some((arn, auds)) => (
                    arn,
                    Some(auds.split(',').map(|a| a.trim().to_string()).collect()),
                ),
                None => (spec.as_str(), None),
            };
            Ok(OidcProvider {
                arn: OidcProviderArn::parse(arn)
                    .with_context(|| format!("--oidc-provider {spec}"))?,
                client_ids: audiences,
                // lint fetches nothing, so there is no served chain to compare thumbprints with.
                thumbprints: None,
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
