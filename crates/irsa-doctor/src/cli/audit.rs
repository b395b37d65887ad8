//! `irsa-doctor audit trust`: who can assume what. Every role of the given accounts
//! (`iam:ListRoles`, one call per 100 roles, through the same rate limit as every AWS call),
//! each trust policy evaluated by the trust engine against this cluster's provider, for every
//! ServiceAccount of the cluster and for the patterns it admits. Run with the caller's own kube
//! context and AWS credentials, which may read every role anyway: nothing is withheld.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use irsa_aws::{AwsFacts, Lane};
use irsa_core::pod_identity::Association;
use irsa_core::trust_audit::{audit_trust, AdmittedPattern, AssociationUsage, RoleAudit};
use irsa_core::{Finding, Reason, Severity, Unavailable};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use tabwriter::TabWriter;

use super::args::{AwsArgs, IssuerArgs, SelectorArgs};
use super::trust_map::TrustMap;
use super::{cluster_view, output, sarif};
use crate::client::KubeconfigSelection;
use crate::gather::workloads::{self, PodPlacement};
use crate::gather::{self, issuer};

/// At most this many `--account` values.
pub const MAX_ACCOUNTS: usize = 100;

/// ServiceAccounts asked for per list page.
const SERVICE_ACCOUNT_PAGE_SIZE: u32 = 500;

/// The longest cell of the table, in characters; `-o json` has everything.
const CELL_WIDTH: usize = 80;

/// Arguments of `irsa-doctor audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// What to audit.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// The audits.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Every role of the accounts against this cluster's OIDC provider: which ServiceAccounts
    /// each admits, which patterns (any ServiceAccount, whole namespaces, any audience, another
    /// cluster's provider), stale roles and trusted ServiceAccounts that no longer exist.
    ///
    /// Exit status: 0 no error findings, 1 error findings, 2 could not run.
    Trust(TrustArgs),
    /// Is this cluster set up for IRSA and EKS Pod Identity at all: its issuer, the account's
    /// IAM OIDC providers (client IDs, thumbprints), the pod identity webhook's registration, the
    /// Pod Identity Agent (add-on and pods) and the associations, on one screen.
    ///
    /// Exit status: 0 set up (or only Unknown parts), 1 something missing, 2 could not run.
    Cluster(cluster_view::ClusterArgs),
}

/// How `audit trust` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    /// ROLE, SERVICEACCOUNTS, ASSOCIATIONS, PATTERNS, FINDINGS: one row per role.
    Table,
    /// The table, then PODS and WORKLOADS: how many pods (and workloads) run as the
    /// ServiceAccounts that declare the role and are admitted.
    Wide,
    /// Every role, admitted ServiceAccount, association, pattern and finding, and the AWS calls
    /// made.
    Json,
    /// SARIF 2.1.0 for code scanning: one result per finding, located at the role's ARN.
    Sarif,
    /// A Graphviz graph: roles, ServiceAccounts, workloads and their links (`| dot -Tsvg`).
    Dot,
    /// One CSV record per role, ServiceAccount and pod.
    Csv,
    /// One row per pod: what it may assume, how, and whether the trust admits it.
    Pods,
}

impl AuditFormat {
    /// Whether the format shows pods, which are then listed.
    fn shows_pods(self) -> bool {
        matches!(
            self,
            AuditFormat::Wide | AuditFormat::Dot | AuditFormat::Csv | AuditFormat::Pods
        )
    }
}

/// Arguments of `irsa-doctor audit trust`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// An account whose roles are listed (repeatable); default: the caller's own account
    /// (sts:GetCallerIdentity). Other accounts need --assume-role ACCOUNT=ROLE_ARN.
    #[arg(long = "account", value_name = "ID", value_parser = parse_account)]
    accounts: Vec<String>,
    /// The kubeconfig file, as kubectl's --kubeconfig (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context, as kubectl's --context (default: the current context).
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    #[command(flatten)]
    issuer: IssuerArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    select: SelectorArgs,
    /// Output format: table, wide, json, sarif, dot, csv or pods.
    #[arg(short = 'o', long, value_enum, default_value_t = AuditFormat::Table)]
    output: AuditFormat,
}

/// A 12-digit account id, as `--account` takes it.
pub(crate) fn parse_account(s: &str) -> Result<String, String> {
    if irsa_core::arn::is_account_id(s) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a 12-digit AWS account id"))
    }
}

/// Runs an audit.
pub async fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        AuditCommand::Trust(trust) => run_trust(trust).await,
        AuditCommand::Cluster(cluster) => cluster_view::run(cluster).await,
    }
}

/// What one account's listing gave.
struct AccountAudit {
    account: String,
    listed: Result<usize, Unavailable>,
}

/// The cluster's Pod Identity associations, as far as they could be read.
pub(crate) enum AssociationListing {
    /// No `--cluster-name`: not looked up.
    Skipped,
    /// Listed and described.
    Listed(Vec<Association>),
    /// The list or a description failed.
    Failed(Unavailable),
}

impl AssociationListing {
    fn associations(&self) -> &[Association] {
        match self {
            AssociationListing::Listed(list) => list,
            _ => &[],
        }
    }
}

/// Every association of `cluster` (`eks:ListPodIdentityAssociations`, every page), each
/// described (`eks:DescribePodIdentityAssociation`) for its roles and settings.
pub(crate) async fn list_associations(aws: &AwsFacts, cluster: Option<&str>) -> AssociationListing {
    let Some(cluster) = cluster else {
        return AssociationListing::Skipped;
    };
    let summaries = match aws
        .pod_identity_association_list(&Lane::Operator, cluster, None)
        .await
    {
        Ok(list) => list,
        Err(u) => return AssociationListing::Failed(u),
    };
    let mut found = Vec::with_capacity(summaries.len());
    for summary in summaries {
        match aws
            .pod_identity_association(&Lane::Operator, cluster, &summary.association_id)
            .await
        {
            irsa_core::Fact::Known(Some(a)) => found.push(a),
            // Deleted between the list and the description: nothing uses it any more.
            irsa_core::Fact::Known(None) => {}
            irsa_core::Fact::Unavailable(u) => return AssociationListing::Failed(u),
            irsa_core::Fact::Skipped(why) => {
                return AssociationListing::Failed(Unavailable {
                    reason: Reason::AwsApiUnavailable,
                    detail: why,
                })
            }
        }
    }
    AssociationListing::Listed(found)
}

async fn run_trust(args: &TrustArgs) -> anyhow::Result<ExitCode> {
    if args.accounts.len() > MAX_ACCOUNTS {
        bail!(
            "--account given {} times; audit at most {MAX_ACCOUNTS} accounts per run",
            args.accounts.len()
        );
    }
    let client = crate::client::client_for(&KubeconfigSelection {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    })
    .await?;
    let aws = AwsFacts::from_env(&args.aws.config()).await;
    let (issuer, _) = issuer::discover(
        args.issuer.issuer.as_deref(),
        args.issuer.cluster_name.as_deref(),
        &aws,
        &client,
    )
    .await
    .map_err(|u| {
        anyhow::anyhow!(
            "the cluster's issuer is unknown ({}): {}",
            u.reason,
            u.detail
        )
    })?;
    let accounts = if args.accounts.is_empty() {
        let me = aws.caller_identity().await.map_err(|u| {
            anyhow::anyhow!(
                "{} (give the accounts to audit with --account ID)",
                u.detail
            )
        })?;
        vec![me.account]
    } else {
        let mut accounts = args.accounts.clone();
        accounts.sort();
        accounts.dedup();
        accounts
    };
    // Every ServiceAccount is evaluated (a trusted one missing is a finding); the selectors
    // choose which are shown.
    let service_accounts = list_service_accounts(&client, &ListParams::default())
        .await
        .context("listing the ServiceAccounts of every namespace")?;
    let selected: Option<BTreeSet<String>> = if args.select.any() {
        let chosen = list_service_accounts(&client, &args.select.list_params())
            .await
            .with_context(|| format!("listing the ServiceAccounts {}", args.select.describe()))?;
        Some(
            chosen
                .iter()
                .map(|sa| format!("{}/{}", sa.namespace, sa.name))
                .collect(),
        )
    } else {
        None
    };
    let pod_identity = list_associations(&aws, args.issuer.cluster_name.as_deref()).await;
    let mut roles = Vec::new();
    let mut listings = Vec::with_capacity(accounts.len());
    for account in accounts {
        let listed = aws.list_roles(&account).await.map(|list| {
            let n = list.len();
            roles.extend(list);
            n
        });
        listings.push(AccountAudit { account, listed });
    }
    let mut audits = audit_trust(
        &issuer,
        &roles,
        &service_accounts,
        pod_identity.associations(),
    );
    if let Some(selected) = &selected {
        audits = select(audits, |sa| selected.contains(sa));
    }
    let placements: Vec<PodPlacement> = if args.output.shows_pods() {
        workloads::placements(&client)
            .await
            .map_err(|u| anyhow::anyhow!("{}", u.detail))?
    } else {
        Vec::new()
    };
    let unknown = unknown_findings(&listings, &pod_identity);
    let text = match args.output {
        AuditFormat::Table
        | AuditFormat::Wide
        | AuditFormat::Pods
        | AuditFormat::Dot
        | AuditFormat::Csv => {
            for (_, account, f) in &unknown {
                eprintln!(
                    "{}: {}: {}",
                    account.unwrap_or("Pod Identity"),
                    f.reason,
                    f.message
                );
            }
            let mut map = TrustMap::new(&audits, &placements);
            if let Some(selected) = &selected {
                map.retain(|sa| selected.contains(sa));
            }
            match args.output {
                AuditFormat::Table => table(&audits, None),
                AuditFormat::Wide => table(&audits, Some(&map)),
                AuditFormat::Pods => pods_table(&map),
                AuditFormat::Dot => map.dot(),
                _ => map.csv().context("writing CSV")?,
            }
        }
        AuditFormat::Json => {
            let calls = super::output::aws_calls(&aws);
            let value = json_value(
                issuer.url(),
                &listings,
                &pod_identity,
                service_accounts.len(),
                &audits,
                &unknown,
                calls,
            );
            serde_json::to_string_pretty(&value)? + "\n"
        }
        AuditFormat::Sarif => serde_json::to_string_pretty(&sarif_log(&unknown, &audits))? + "\n",
    };
    output::emit(&text).context("writing to standard output")?;
    let errors = audits
        .iter()
        .flat_map(|a| &a.findings)
        .any(|f| f.severity == Severity::Error);
    Ok(ExitCode::from(u8::from(errors)))
}

/// The audits of roles linked to a ServiceAccount `keep` admits (admitted by the role,
/// annotated with it, or associated to it), their lists cut to those ServiceAccounts; the
/// counts and findings stay those of the whole cluster.
fn select(audits: Vec<RoleAudit>, keep: impl Fn(&str) -> bool) -> Vec<RoleAudit> {
    audits
        .into_iter()
        .filter_map(|mut a| {
            a.service_accounts.retain(|sa| keep(&sa.service_account));
            a.annotated_by.retain(|sa| keep(sa));
            a.annotated_refused.retain(|sa| keep(sa));
            a.associations.retain(|u| keep(&u.service_account));
            let linked = !a.service_accounts.is_empty()
                || !a.annotated_by.is_empty()
                || !a.associations.is_empty();
            linked.then_some(a)
        })
        .collect()
}

/// ServiceAccounts of the cluster selected by `params`, metadata only, a page at a time.
async fn list_service_accounts(
    client: &kube::Client,
    params: &ListParams,
) -> Result<Vec<irsa_core::ServiceAccount>, kube::Error> {
    let api: Api<ServiceAccount> = Api::all(client.clone());
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut page_params = params.clone().limit(SERVICE_ACCOUNT_PAGE_SIZE);
        if let Some(t) = token.take() {
            page_params = page_params.continue_token(&t);
        }
        let page = api.list_metadata(&page_params).await?;
        found.extend(
            page.items
                .iter()
                .map(|m| gather::service_account(&m.metadata)),
        );
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(found),
        }
    }
}

/// A pattern in a few words, for the table.
fn pattern_text(pattern: &AdmittedPattern) -> String {
    let except = |e: &[String]| {
        if e.is_empty() {
            String::new()
        } else {
            format!("(except:{})", e.len())
        }
    };
    match pattern {
        AdmittedPattern::AnyServiceAccount { except: e } => {
            format!("any-serviceaccount{}", except(e))
        }
        AdmittedPattern::Namespace {
            namespace,
            except: e,
        } => format!("namespace:{namespace}{}", except(e)),
        AdmittedPattern::SubjectPattern { pattern } => format!("sub:{pattern}"),
        AdmittedPattern::AnyAudience => "any-audience".to_string(),
        AdmittedPattern::OtherProvider { provider } => format!("other-provider:{provider}"),
        AdmittedPattern::PodIdentityAnyCluster => "pod-identity-any-cluster".to_string(),
    }
}

/// kubectl-style: one row per role, lists comma-separated and cut to [`CELL_WIDTH`]; with a
/// map (`-o wide`), the pods and workloads that use each role.
fn table(audits: &[RoleAudit], usage: Option<&TrustMap<'_>>) -> String {
    let mut tw = TabWriter::new(Vec::new()).padding(3);
    let mut header = "ROLE\tSERVICEACCOUNTS\tASSOCIATIONS\tPATTERNS\tFINDINGS".to_string();
    if usage.is_some() {
        header.push_str("\tPODS\tWORKLOADS");
    }
    let _ = writeln!(tw, "{header}");
    for a in audits {
        let accounts: Vec<&str> = a
            .service_accounts
            .iter()
            .map(|s| s.service_account.as_str())
            .collect();
        let associations: Vec<String> = a
            .associations
            .iter()
            .map(|u| {
                let target = match u.usage {
                    AssociationUsage::Role => "",
                    AssociationUsage::TargetRole => "[target]",
                };
                let refused = if u.admitted || u.conditional {
                    ""
                } else {
                    "[refused]"
                };
                format!("{}{target}{refused}", u.service_account)
            })
            .collect();
        let patterns: Vec<String> = a.patterns.iter().map(pattern_text).collect();
        let findings: Vec<&str> = a.findings.iter().map(|f| f.reason.as_str()).collect();
        let mut row = format!(
            "{}\t{}\t{}\t{}\t{}",
            cell(&a.role_arn),
            cell(&accounts.join(",")),
            cell(&associations.join(",")),
            cell(&patterns.join(",")),
            cell(&findings.join(","))
        );
        if let Some(map) = usage {
            let (pods, workloads) = map.usage(&a.role_arn);
            row.push_str(&format!("\t{pods}\t{workloads}"));
        }
        let _ = writeln!(tw, "{row}");
    }
    let _ = tw.flush();
    String::from_utf8_lossy(&tw.into_inner().unwrap_or_default()).into_owned()
}

/// `-o pods`: one row per pod and role it may assume.
fn pods_table(map: &TrustMap<'_>) -> String {
    let mut tw = TabWriter::new(Vec::new()).padding(3);
    let _ = writeln!(
        tw,
        "NAMESPACE\tPOD\tWORKLOAD\tSERVICEACCOUNT\tMECHANISM\tROLE\tTRUST"
    );
    for row in map.pod_rows() {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(tw, "{}", cells.join("\t"));
    }
    let _ = tw.flush();
    String::from_utf8_lossy(&tw.into_inner().unwrap_or_default()).into_owned()
}

/// A cell: `<none>` when empty, no spaces, every control, separator or format character escaped
/// as in every other output (trust-policy values are the role writer's text), at most
/// [`CELL_WIDTH`] characters.
fn cell(text: &str) -> String {
    if text.is_empty() {
        return "<none>".to_string();
    }
    let flat = irsa_core::text::escape_untrusted(text).replace(' ', "_");
    super::table::first_line(&flat, CELL_WIDTH)
}

fn finding_json(f: &Finding, role_arn: Option<&str>, account: Option<&str>) -> Value {
    json!({
        "roleArn": role_arn,
        "account": account,
        "reason": f.reason,
        "severity": f.severity,
        "message": f.message,
        "fix": f.fix,
    })
}

/// An account that could not be listed, as an Unknown finding.
fn account_finding(account: &str, u: &Unavailable) -> Finding {
    let mut f = Finding::new(
        u.reason,
        irsa_core::ConditionType::TrustPolicyValid,
        format!(
            "the roles of account {account} could not be listed: {}",
            u.detail
        ),
    );
    // An AWS failure is never a false error: whatever the reason, the account is unknown.
    f.severity = Severity::Unknown;
    f
}

/// A finding with where it is located: a role, or an account (or neither: Pod Identity).
type Located<'a> = (Option<&'a str>, Option<&'a str>, Finding);

/// The accounts whose roles, and the Pod Identity associations, that could not be listed, as
/// Unknown findings.
fn unknown_findings<'a>(
    listings: &'a [AccountAudit],
    pod_identity: &AssociationListing,
) -> Vec<Located<'a>> {
    let accounts = listings.iter().filter_map(|l| {
        let u = l.listed.as_ref().err()?;
        Some((
            None,
            Some(l.account.as_str()),
            account_finding(&l.account, u),
        ))
    });
    let associations = match pod_identity {
        AssociationListing::Failed(u) => {
            let mut f = Finding::new(
                u.reason,
                irsa_core::ConditionType::TrustPolicyValid,
                format!(
                    "the cluster's EKS Pod Identity associations could not be listed, so no role's use by \
                     them is known: {}",
                    u.detail
                ),
            );
            f.severity = Severity::Unknown;
            Some((None, None, f))
        }
        _ => None,
    };
    accounts.chain(associations).collect()
}

/// Every finding: what could not be listed, then each role's.
fn all_findings<'a>(unknown: &[Located<'a>], audits: &'a [RoleAudit]) -> Vec<Located<'a>> {
    let roles = audits.iter().flat_map(|a| {
        a.findings
            .iter()
            .map(|f| (Some(a.role_arn.as_str()), None, f.clone()))
    });
    unknown.iter().cloned().chain(roles).collect()
}

fn json_value(
    issuer: String,
    listings: &[AccountAudit],
    pod_identity: &AssociationListing,
    service_accounts: usize,
    audits: &[RoleAudit],
    unknown: &[Located<'_>],
    calls: BTreeMap<String, u64>,
) -> Value {
    let accounts: Vec<Value> = listings
        .iter()
        .map(|l| match &l.listed {
            Ok(n) => json!({"account": l.account, "rolesListed": n}),
            Err(u) => json!({"account": l.account, "rolesListed": null,
                "error": {"reason": u.reason, "message": u.detail}}),
        })
        .collect();
    let associations = match pod_identity {
        AssociationListing::Skipped => {
            json!({"associations": null, "skipped": "no --cluster-name: EKS Pod Identity associations were not listed"})
        }
        AssociationListing::Listed(list) => json!({"associations": list.len()}),
        AssociationListing::Failed(u) => json!({"associations": null,
            "error": {"reason": u.reason, "message": u.detail}}),
    };
    let findings: Vec<Value> = all_findings(unknown, audits)
        .iter()
        .map(|(role, account, f)| finding_json(f, *role, *account))
        .collect();
    json!({
        "issuer": issuer,
        "serviceAccounts": service_accounts,
        "accounts": accounts,
        "podIdentity": associations,
        "roles": audits,
        "findings": findings,
        "awsCalls": calls,
    })
}

/// SARIF 2.1.0, as `lint --format sarif` writes it, each result at the role (or account) as a
/// logical location: there is no file to point at.
fn sarif_log(unknown: &[Located<'_>], audits: &[RoleAudit]) -> Value {
    let findings: Vec<Located<'_>> = all_findings(unknown, audits)
        .into_iter()
        .filter(|(_, _, f)| f.severity >= Severity::Warning)
        .collect();
    let mut reasons: Vec<Reason> = findings.iter().map(|(_, _, f)| f.reason).collect();
    reasons.sort();
    reasons.dedup();
    let index: BTreeMap<Reason, usize> = reasons.iter().enumerate().map(|(i, r)| (*r, i)).collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|(role, account, f)| {
            let (name, kind) = match (role, account) {
                (Some(role), _) => (*role, "resource"),
                (None, Some(account)) => (*account, "namespace"),
                (None, None) => ("eks:PodIdentityAssociations", "resource"),
            };
            json!({
                "ruleId": f.reason,
                "ruleIndex": index[&f.reason],
                "level": sarif::level(f.severity),
                "message": {"text": format!("{name}: {}", f.message)},
                "locations": [{"logicalLocations": [{"fullyQualifiedName": name, "kind": kind}]}],
                "properties": {"roleArn": role, "account": account, "severity": f.severity},
            })
        })
        .collect();
    json!({
        "$schema": sarif::SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "irsa-doctor",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": env!("CARGO_PKG_REPOSITORY"),
                "rules": reasons.iter().map(|r| sarif::rule(*r)).collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_flat_bounded_and_never_empty() {
        assert_eq!(cell(""), "<none>");
        assert_eq!(cell("a b\tc"), "a_b\\tc");
        // A pattern from a trust policy that would recolour the terminal or reorder the line.
        let hostile = cell("sub:system:serviceaccount:\u{1b}[31mweb\u{202e}txt\n");
        assert_eq!(
            hostile,
            "sub:system:serviceaccount:\\u{1b}[31mweb\\u{202e}txt\\n"
        );
        assert!(!hostile.chars().any(|c| c.is_control() || c == '\u{202e}'));
        assert!(cell(&"x,".repeat(100)).chars().count() <= CELL_WIDTH);
    }

    #[test]
    fn account_ids_are_checked_on_the_command_line() {
        assert_eq!(parse_account("123456789012").unwrap(), "123456789012");
        let err = parse_account("12345").unwrap_err();
        assert!(err.contains("12-digit"), "{err}");
    }

    #[test]
    fn an_account_that_could_not_be_listed_is_unknown_never_an_error() {
        let u = Unavailable {
            reason: Reason::AwsAccessDenied,
            detail: "iam:ListRoles denied".into(),
        };
        let f = account_finding("123456789012", &u);
        assert_eq!(
            (f.reason, f.severity),
            (Reason::AwsAccessDenied, Severity::Unknown)
        );
        assert!(f.message.contains("123456789012") && f.message.contains("denied"));
    }
}
