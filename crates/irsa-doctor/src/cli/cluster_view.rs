//! `irsa-doctor audit cluster`: one screen that answers "is this cluster set up for IRSA and
//! EKS Pod Identity at all" — the issuer and where it came from, the account's IAM OIDC provider
//! for it (client IDs, thumbprints), the pod identity webhook's registrations, the Pod Identity
//! Agent (add-on, pods by node) and how many associations the cluster has. Each part is a fact:
//! what could not be read is Unknown and said so, never taken for missing.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use irsa_aws::AwsFacts;
use irsa_core::annotations::DEFAULT_AUDIENCE;
use irsa_core::fact::OidcProvider;
use irsa_core::pod_identity::{AgentPods, AGENT_ADDON};
use irsa_core::workloads::WebhookRegistration;
use irsa_core::{Fact, Issuer};
use serde_json::{json, Value};
use tabwriter::TabWriter;

use super::args::{AwsArgs, IssuerArgs};
use super::audit::{list_associations, parse_account, AssociationListing};
use super::output;
use crate::client::KubeconfigSelection;
use crate::gather::admission::Admission;
use crate::gather::issuer;
use crate::gather::pod_identity::{Agents, AGENT_NAMESPACE};

/// How `audit cluster` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterFormat {
    /// One line per part, then the verdicts.
    Table,
    /// The same, as one JSON object.
    Json,
}

/// Arguments of `irsa-doctor audit cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The account whose IAM OIDC providers are read; default: the caller's own
    /// (sts:GetCallerIdentity).
    #[arg(long, value_name = "ID", value_parser = parse_account)]
    account: Option<String>,
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
    /// Output format: table or json.
    #[arg(short = 'o', long, value_enum, default_value_t = ClusterFormat::Table)]
    output: ClusterFormat,
}

/// Whether a mechanism is set up, from the parts read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Everything it needs is there.
    Ready,
    /// Not used by this cluster (Pod Identity without associations or agent).
    NotInUse,
    /// These parts are missing.
    Missing(Vec<String>),
    /// These parts could not be read.
    Unknown(Vec<String>),
}

impl Verdict {
    fn text(&self) -> String {
        match self {
            Verdict::Ready => "ready".to_string(),
            Verdict::NotInUse => "not in use".to_string(),
            Verdict::Missing(parts) => format!("missing: {}", parts.join("; ")),
            Verdict::Unknown(parts) => format!("unknown: {}", parts.join("; ")),
        }
    }

    fn json(&self) -> Value {
        match self {
            Verdict::Ready => json!({"status": "Ready"}),
            Verdict::NotInUse => json!({"status": "NotInUse"}),
            Verdict::Missing(parts) => json!({"status": "Missing", "missing": parts}),
            Verdict::Unknown(parts) => json!({"status": "Unknown", "unknown": parts}),
        }
    }
}

/// What was read of the cluster and its account.
struct Parts {
    issuer: Result<(Issuer, String), String>,
    account: Result<String, String>,
    providers: Fact<Vec<OidcProvider>>,
    webhooks: Option<Vec<WebhookRegistration>>,
    addon: Fact<bool>,
    agents: Fact<AgentPods>,
    associations: AssociationListing,
}

impl Parts {
    /// The IAM OIDC provider of this cluster's issuer, when the providers are known.
    fn provider(&self) -> Fact<Option<&OidcProvider>> {
        let Ok((issuer, _)) = &self.issuer else {
            return Fact::Skipped("the issuer is unknown".into());
        };
        match &self.providers {
            Fact::Known(list) => Fact::Known(
                list.iter()
                    .find(|p| p.arn.host_path.eq_ignore_ascii_case(issuer.host_path())),
            ),
            Fact::Unavailable(u) => Fact::Unavailable(u.clone()),
            Fact::Skipped(why) => Fact::Skipped(why.clone()),
        }
    }

    fn irsa(&self) -> Verdict {
        let mut missing = Vec::new();
        let mut unknown = Vec::new();
        if let Err(e) = &self.issuer {
            unknown.push(format!("the issuer ({e})"));
        }
        match self.provider() {
            Fact::Known(None) => missing.push(
                "an IAM OIDC provider for the issuer (eksctl utils associate-iam-oidc-provider)"
                    .into(),
            ),
            Fact::Known(Some(p)) => {
                let ids = p.client_ids.clone().unwrap_or_default();
                if !ids.iter().any(|id| id == DEFAULT_AUDIENCE) {
                    missing.push(format!(
                        "{DEFAULT_AUDIENCE} among the provider's client IDs"
                    ));
                }
            }
            Fact::Unavailable(u) => unknown.push(format!("the OIDC providers ({})", u.detail)),
            Fact::Skipped(_) => {}
        }
        match &self.webhooks {
            Some(list) if list.is_empty() => {
                missing.push("the pod identity webhook's MutatingWebhookConfiguration".into())
            }
            Some(_) => {}
            None => unknown.push(
                "the webhook registrations (mutatingwebhookconfigurations not readable)".into(),
            ),
        }
        verdict(missing, unknown, false)
    }

    fn pod_identity(&self) -> Verdict {
        let mut missing = Vec::new();
        let mut unknown = Vec::new();
        let associations = match &self.associations {
            AssociationListing::Listed(list) => list.len(),
            AssociationListing::Skipped => {
                unknown.push("the associations (give --cluster-name)".to_string());
                0
            }
            AssociationListing::Failed(u) => {
                unknown.push(format!("the associations ({})", u.detail));
                0
            }
        };
        let agent_ready = match &self.agents {
            Fact::Known(pods) => !pods.ready.is_empty() || !pods.built_in.is_empty(),
            Fact::Unavailable(u) => {
                unknown.push(format!("the agent's pods ({})", u.detail));
                false
            }
            Fact::Skipped(_) => false,
        };
        let addon = match &self.addon {
            Fact::Known(installed) => *installed,
            Fact::Unavailable(u) => {
                unknown.push(format!("the {AGENT_ADDON} add-on ({})", u.detail));
                false
            }
            Fact::Skipped(_) => false,
        };
        if associations == 0 && !agent_ready && !addon && unknown.is_empty() {
            return Verdict::NotInUse;
        }
        if !agent_ready {
            missing.push(format!(
                "a Ready EKS Pod Identity Agent pod (aws eks create-addon --addon-name {AGENT_ADDON})"
            ));
        }
        if matches!(&self.webhooks, Some(list) if list.is_empty()) {
            missing.push("the pod identity webhook's MutatingWebhookConfiguration".into());
        }
        verdict(missing, unknown, associations == 0)
    }
}

fn verdict(missing: Vec<String>, unknown: Vec<String>, unused: bool) -> Verdict {
    if !missing.is_empty() {
        Verdict::Missing(missing)
    } else if !unknown.is_empty() {
        Verdict::Unknown(unknown)
    } else if unused {
        Verdict::NotInUse
    } else {
        Verdict::Ready
    }
}

/// Reads every part and prints them; exit 1 when a part is missing.
pub async fn run(args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let client = crate::client::client_for(&KubeconfigSelection {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    })
    .await?;
    let aws = AwsFacts::from_env(&args.aws.config()).await;
    let cluster = args.issuer.cluster_name.as_deref();
    let issuer = issuer::discover(args.issuer.issuer.as_deref(), cluster, &aws, &client)
        .await
        .map(|(i, source)| (i, source.to_string()))
        .map_err(|u| u.detail);
    let account = match &args.account {
        Some(a) => Ok(a.clone()),
        None => aws
            .caller_identity()
            .await
            .map(|me| me.account)
            .map_err(|u| u.detail),
    };
    let providers = match (&issuer, &account) {
        (Ok((issuer, _)), Ok(account)) => aws.oidc_providers(account, issuer).await,
        _ => Fact::Skipped("the issuer or the account is unknown".into()),
    };
    let webhooks = Admission::new(client.clone(), Duration::from_secs(60))
        .webhooks()
        .await
        .map(|w| w.as_ref().clone());
    let addon = match cluster {
        Some(c) => aws.addon_installed(c, AGENT_ADDON).await,
        None => Fact::Skipped("no --cluster-name".into()),
    };
    let agents = Agents::new(client.clone(), AGENT_NAMESPACE).pods().await;
    let associations = list_associations(&aws, cluster).await;
    let parts = Parts {
        issuer,
        account,
        providers,
        webhooks,
        addon,
        agents,
        associations,
    };
    let text = match args.output {
        ClusterFormat::Table => table(&parts),
        ClusterFormat::Json => {
            let mut v = json_value(&parts);
            v["awsCalls"] = json!(output::aws_calls(&aws));
            serde_json::to_string_pretty(&v).context("writing JSON")? + "\n"
        }
    };
    output::emit(&text).context("writing to standard output")?;
    let missing = matches!(parts.irsa(), Verdict::Missing(_))
        || matches!(parts.pod_identity(), Verdict::Missing(_));
    Ok(ExitCode::from(u8::from(missing)))
}

fn fact_text<T>(fact: &Fact<T>, known: impl Fn(&T) -> String) -> String {
    match fact {
        Fact::Known(v) => known(v),
        Fact::Unavailable(u) => format!("unknown ({})", u.detail),
        Fact::Skipped(why) => format!("not read ({why})"),
    }
}

fn table(parts: &Parts) -> String {
    let mut tw = TabWriter::new(Vec::new()).padding(3);
    let mut line = |key: &str, value: String| {
        let value = irsa_core::text::escape_untrusted(&value);
        let _ = writeln!(tw, "{key}\t{value}");
    };
    line(
        "ISSUER",
        match &parts.issuer {
            Ok((i, source)) => format!("{} (from {source})", i.url()),
            Err(e) => format!("unknown ({e})"),
        },
    );
    line(
        "ACCOUNT",
        match &parts.account {
            Ok(a) => a.clone(),
            Err(e) => format!("unknown ({e})"),
        },
    );
    line(
        "OIDC PROVIDER",
        fact_text(&parts.provider(), |p| match p {
            None => "none for this issuer".to_string(),
            Some(p) => format!(
                "{}  client IDs: {}  thumbprints: {}",
                p.arn,
                list(p.client_ids.as_deref()),
                list(p.thumbprints.as_deref())
            ),
        }),
    );
    line(
        "WEBHOOK",
        match &parts.webhooks {
            None => "unknown (mutatingwebhookconfigurations not readable)".to_string(),
            Some(list) if list.is_empty() => "none registered".to_string(),
            Some(list) => list
                .iter()
                .map(|w| {
                    let policy = if w.ignore_failures { "Ignore" } else { "Fail" };
                    format!("{} (failurePolicy {policy})", w.name)
                })
                .collect::<Vec<_>>()
                .join(", "),
        },
    );
    line(
        "AGENT ADD-ON",
        fact_text(&parts.addon, |installed| {
            if *installed {
                format!("{AGENT_ADDON} installed")
            } else {
                format!("{AGENT_ADDON} not installed")
            }
        }),
    );
    line(
        "AGENT PODS",
        fact_text(&parts.agents, |a| {
            format!(
                "Ready on {} node(s), not Ready on {}, built in on {}",
                a.ready.len(),
                a.unready.len(),
                a.built_in.len()
            )
        }),
    );
    line(
        "ASSOCIATIONS",
        match &parts.associations {
            AssociationListing::Listed(list) => list.len().to_string(),
            AssociationListing::Skipped => "not listed (no --cluster-name)".to_string(),
            AssociationListing::Failed(u) => format!("unknown ({})", u.detail),
        },
    );
    line("IRSA", parts.irsa().text());
    line("POD IDENTITY", parts.pod_identity().text());
    let _ = tw.flush();
    String::from_utf8_lossy(&tw.into_inner().unwrap_or_default()).into_owned()
}

fn list(items: Option<&[String]>) -> String {
    match items {
        Some(items) if !items.is_empty() => items.join(","),
        _ => "<none>".to_string(),
    }
}

fn fact_json<T>(fact: &Fact<T>, known: impl Fn(&T) -> Value) -> Value {
    match fact {
        Fact::Known(v) => known(v),
        Fact::Unavailable(u) => json!({"unknown": {"reason": u.reason, "message": u.detail}}),
        Fact::Skipped(why) => json!({"skipped": why}),
    }
}

fn json_value(parts: &Parts) -> Value {
    json!({
        "issuer": match &parts.issuer {
            Ok((i, source)) => json!({"url": i.url(), "source": source}),
            Err(e) => json!({"unknown": e}),
        },
        "account": match &parts.account {
            Ok(a) => json!(a),
            Err(e) => json!({"unknown": e}),
        },
        "oidcProvider": fact_json(&parts.provider(), |p| match p {
            None => Value::Null,
            Some(p) => json!({"arn": p.arn.to_string(), "clientIds": p.client_ids,
                "thumbprints": p.thumbprints}),
        }),
        "webhooks": parts.webhooks.as_ref().map(|list| list.iter().map(|w| json!({
            "name": w.name, "failurePolicy": if w.ignore_failures { "Ignore" } else { "Fail" },
        })).collect::<Vec<_>>()),
        "agentAddon": fact_json(&parts.addon, |installed| json!({"name": AGENT_ADDON, "installed": installed})),
        "agentPods": fact_json(&parts.agents, |a| json!({"readyNodes": a.ready.len(),
            "unreadyNodes": a.unready.len(), "builtInNodes": a.built_in.len()})),
        "associations": match &parts.associations {
            AssociationListing::Listed(list) => json!(list.len()),
            AssociationListing::Skipped => json!({"skipped": "no --cluster-name"}),
            AssociationListing::Failed(u) => json!({"unknown": {"reason": u.reason, "message": u.detail}}),
        },
        "irsa": parts.irsa().json(),
        "podIdentity": parts.pod_identity().json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use irsa_core::arn::OidcProviderArn;

    const HP: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

    fn parts() -> Parts {
        Parts {
            issuer: Ok((Issuer::parse(HP).unwrap(), "configuration".into())),
            account: Ok("111122223333".into()),
            providers: Fact::Known(vec![OidcProvider {
                arn: OidcProviderArn::parse(&format!(
                    "arn:aws:iam::111122223333:oidc-provider/{HP}"
                ))
                .unwrap(),
                client_ids: Some(vec![DEFAULT_AUDIENCE.into()]),
                thumbprints: Some(vec!["9e99a48a9960b14926bb7f3b02e22da2b0ab7280".into()]),
            }]),
            webhooks: Some(vec![WebhookRegistration {
                name: "pod-identity-webhook/iam-for-pods.amazonaws.com".into(),
                ..Default::default()
            }]),
            addon: Fact::Skipped("no --cluster-name".into()),
            agents: Fact::Known(AgentPods::default()),
            associations: AssociationListing::Listed(vec![]),
        }
    }

    #[test]
    fn a_cluster_with_provider_and_webhook_is_ready_for_irsa() {
        let p = parts();
        assert_eq!(p.irsa(), Verdict::Ready);
        assert_eq!(p.pod_identity(), Verdict::NotInUse);
        let text = table(&p);
        assert!(
            text.contains("9e99a48a9960b14926bb7f3b02e22da2b0ab7280"),
            "{text}"
        );
        let verdicts: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| l.starts_with("IRSA") || l.starts_with("POD IDENTITY"))
            .map(|l| {
                l.split("   ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        assert_eq!(
            verdicts,
            [vec!["IRSA", "ready"], vec!["POD IDENTITY", "not in use"]],
            "{text}"
        );
    }

    #[test]
    fn what_is_missing_is_named_and_what_is_unreadable_is_unknown() {
        let mut p = parts();
        p.providers = Fact::Known(vec![]);
        p.webhooks = None;
        match p.irsa() {
            Verdict::Missing(parts) => assert!(parts[0].contains("IAM OIDC provider"), "{parts:?}"),
            v => panic!("{v:?}"),
        }
        let mut p = parts();
        p.webhooks = None;
        assert!(matches!(p.irsa(), Verdict::Unknown(_)));
        // Associations without an agent: pods get no credentials.
        let mut p = parts();
        p.associations = AssociationListing::Listed(vec![Default::default()]);
        match p.pod_identity() {
            Verdict::Missing(parts) => assert!(parts[0].contains("Agent"), "{parts:?}"),
            v => panic!("{v:?}"),
        }
    }
}
