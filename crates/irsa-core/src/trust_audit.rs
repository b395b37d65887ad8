//! Who can assume what: every role of an account, its trust policy evaluated by the trust engine
//! ([`crate::trust`]) against this cluster's OIDC provider, for each existing ServiceAccount and
//! for the patterns a policy may admit (any ServiceAccount, whole namespaces, any audience, the
//! provider of another cluster); and against the cluster's EKS Pod Identity associations, for
//! each association that uses the role. Pure: the roles, ServiceAccounts and associations are
//! read elsewhere.
//!
//! Patterns are found by asking the engine about probe subjects no real policy names. Two probes
//! with disjoint characters (letters and digits) are both admitted only by a policy whose
//! `:sub` condition is absent, negated, or all wildcards in that part: a literal character cannot
//! match both. So Deny statements, audience conditions and every operator count exactly as STS
//! counts them.

mod pod_identity;
mod subjects;

use std::collections::BTreeSet;

use serde::Serialize;

pub use self::pod_identity::{AssociationUsage, AssociationUse};
use self::subjects::{
    named, near_miss_of, parse_subject, sub_values, subject_of, Named, SubValues,
};
use crate::annotations::DEFAULT_AUDIENCE;
use crate::arn::{OidcProviderArn, RoleArn};
use crate::condition::{like, Condition, KeyValue, Tri};
use crate::issuer::Issuer;
use crate::pod_identity::Association;
use crate::policy::{Effect, PolicyDocument, Principals, Statement};
use crate::reason::{ConditionType, Reason};
use crate::report::Finding;
use crate::trust::WEB_IDENTITY_ACTION;
use crate::trust::{action_admits, classify_key, evaluate, subject, KeyKind, WebIdentityRequest};
use crate::ServiceAccount;

/// Probe (namespace, name) pairs whose characters share nothing, so that only wildcards (or no
/// condition) admit both.
const PROBES: [(&str, &str); 2] = [("qzxqzx", "xzqxzq"), ("0-9-8", "7-6-5")];

/// An audience no ServiceAccount token carries: a policy admitting it checks no audience.
const PROBE_AUDIENCE: &str = "0-irsa-doctor-audit-probe";

/// At most this many admitted ServiceAccounts are listed per role; the count is always exact.
pub const MAX_LISTED_SERVICE_ACCOUNTS: usize = 1_000;

/// At most this many exceptions are listed per pattern.
pub const MAX_LISTED_EXCEPTIONS: usize = 100;

/// At most this many names are quoted in one finding's message.
const MAX_QUOTED: usize = 20;

/// The `system:serviceaccount:` prefix of a ServiceAccount token's subject.
const SUBJECT_PREFIX: &str = "system:serviceaccount:";

/// One role as `iam:ListRoles` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRole {
    /// The role's ARN.
    pub arn: String,
    /// Its trust policy, raw or URL-encoded.
    pub trust_policy: String,
}

/// An existing ServiceAccount a role admits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmittedServiceAccount {
    /// `namespace/name`.
    pub service_account: String,
    /// True when the verdict depends on request context irsa-doctor cannot see (e.g.
    /// `aws:SourceIp`): STS may still refuse.
    pub conditional: bool,
    /// Whether its `eks.amazonaws.com/role-arn` annotation names this role.
    pub annotated: bool,
}

/// A set of ServiceAccounts or tokens a role admits beyond the existing ServiceAccounts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum AdmittedPattern {
    /// Every ServiceAccount of the cluster, in any namespace, existing or future, but `except`.
    AnyServiceAccount {
        /// Subjects the policy refuses all the same (a Deny, say), as written or existing.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        except: Vec<String>,
    },
    /// Every ServiceAccount of the namespaces this name (or `:sub` pattern) denotes, but
    /// `except`.
    Namespace {
        /// A namespace, or a namespace pattern with `*` and `?` as the policy writes it.
        namespace: String,
        /// Subjects there the policy refuses all the same (a Deny, say), as written or existing.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        except: Vec<String>,
    },
    /// A narrower `:sub` pattern with wildcards, as the policy writes it.
    SubjectPattern {
        /// The pattern, e.g. `system:serviceaccount:ml:batch-*`.
        pattern: String,
    },
    /// Tokens of any audience: the policy has no (effective) `:aud` condition.
    AnyAudience,
    /// Another IAM OIDC provider (another cluster's issuer) the role trusts for web identity.
    OtherProvider {
        /// Its ARN.
        provider: String,
    },
    /// Pod Identity associations of any cluster of the role's account: nothing in the trust
    /// policy (`aws:SourceArn`) ties the role to this cluster.
    PodIdentityAnyCluster,
}

/// What one role admits of this cluster, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAudit {
    /// The role's ARN.
    pub role_arn: String,
    /// Whether an Allow statement grants `sts:AssumeRoleWithWebIdentity` to this cluster's
    /// provider (in the role's account).
    pub trusts_cluster: bool,
    /// Whether an Allow statement grants `sts:AssumeRole` to the EKS Pod Identity Agent
    /// (`pods.eks.amazonaws.com`).
    pub trusts_pod_identity: bool,
    /// Existing ServiceAccounts the policy admits, by namespace and name (at most
    /// [`MAX_LISTED_SERVICE_ACCOUNTS`]).
    pub service_accounts: Vec<AdmittedServiceAccount>,
    /// How many existing ServiceAccounts it admits.
    pub admitted_count: usize,
    /// ServiceAccounts whose role-arn annotation names this role, `namespace/name`.
    pub annotated_by: Vec<String>,
    /// Those of them the trust policy refuses: their pods cannot assume it.
    pub annotated_refused: Vec<String>,
    /// The cluster's Pod Identity associations that use the role, and whether it admits them.
    pub associations: Vec<AssociationUse>,
    /// What else it admits.
    pub patterns: Vec<AdmittedPattern>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
}

/// A role's ARN and its parsed trust policy.
struct Role<'a> {
    arn: &'a RoleArn,
    policy: &'a PolicyDocument,
}

/// Audits `roles` against the provider of `issuer`, the cluster's `service_accounts` and its
/// Pod Identity `associations`. Only roles that trust an IAM OIDC provider for web identity
/// (this cluster's or another's) or the Pod Identity Agent, that a ServiceAccount or an
/// association names, or whose trust policy cannot be read, are returned, ordered by ARN.
pub fn audit_trust(
    issuer: &Issuer,
    roles: &[ListedRole],
    service_accounts: &[ServiceAccount],
    associations: &[Association],
) -> Vec<RoleAudit> {
    let existing: BTreeSet<(&str, &str)> = service_accounts
        .iter()
        .map(|sa| (sa.namespace.as_str(), sa.name.as_str()))
        .collect();
    let namespaces: BTreeSet<&str> = existing.iter().map(|(ns, _)| *ns).collect();
    // Each ServiceAccount's `:sub` as the engine's conditions read it, built once for all roles.
    let subjects: Vec<KeyValue> = service_accounts
        .iter()
        .map(|sa| KeyValue::Present(vec![subject(&sa.namespace, &sa.name)]))
        .collect();
    let cluster = Cluster {
        service_accounts,
        subjects: &subjects,
        existing: &existing,
        namespaces: &namespaces,
        associations,
    };
    let mut audits: Vec<RoleAudit> = roles
        .iter()
        .filter_map(|role| audit_role(issuer, role, &cluster))
        .collect();
    audits.sort_by(|a, b| a.role_arn.cmp(&b.role_arn));
    audits
}

/// The cluster's ServiceAccounts and associations, in the forms the audit of each role reads.
struct Cluster<'a> {
    service_accounts: &'a [ServiceAccount],
    /// `subjects[i]`: the `:sub` of `service_accounts[i]`.
    subjects: &'a [KeyValue],
    existing: &'a BTreeSet<(&'a str, &'a str)>,
    namespaces: &'a BTreeSet<&'a str>,
    associations: &'a [Association],
}

fn audit_role(issuer: &Issuer, role: &ListedRole, cluster: &Cluster<'_>) -> Option<RoleAudit> {
    let service_accounts = cluster.service_accounts;
    let annotated: Vec<&ServiceAccount> = service_accounts
        .iter()
        .filter(|sa| sa.role_arn_annotation().map(str::trim) == Some(role.arn.as_str()))
        .collect();
    let mut audit = RoleAudit {
        role_arn: role.arn.clone(),
        trusts_cluster: false,
        trusts_pod_identity: false,
        service_accounts: Vec::new(),
        admitted_count: 0,
        annotated_by: annotated
            .iter()
            .map(|sa| format!("{}/{}", sa.namespace, sa.name))
            .collect(),
        annotated_refused: Vec::new(),
        associations: Vec::new(),
        patterns: Vec::new(),
        findings: Vec::new(),
    };
    let arn = match RoleArn::parse(&role.arn) {
        Ok(arn) => arn,
        Err(e) => {
            audit.findings.push(finding(
                Reason::RoleArnMalformed,
                format!(
                    "IAM listed the role ARN {:?}, which irsa-doctor cannot read: {e}",
                    role.arn
                ),
            ));
            return Some(audit);
        }
    };
    let policy = match PolicyDocument::parse(&role.trust_policy) {
        Ok(p) => p,
        Err(e) => {
            audit.findings.push(finding(
                Reason::TrustPolicyInvalid,
                format!("the trust policy of {arn} cannot be read: {e}"),
            ));
            return Some(audit);
        }
    };
    let provider = issuer.provider_arn(arn.partition(), arn.account());
    let provider_text = provider.to_string();
    let web_identity: Vec<&Statement> = policy
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow && action_admits(&s.action))
        .collect();
    let trusting: Vec<&Statement> = web_identity
        .iter()
        .copied()
        .filter(|s| principal_admits(&s.principal, &provider_text))
        .collect();
    let others: BTreeSet<String> = web_identity
        .iter()
        .flat_map(|s| s.principal.of_type("Federated"))
        .filter(|f| *f != provider_text && OidcProviderArn::parse(f).is_ok())
        .map(str::to_string)
        .collect();
    audit.trusts_cluster = !trusting.is_empty();
    let existing = |ns: &str, name: &str| cluster.existing.contains(&(ns, name));
    let pods = pod_identity::audit(
        issuer,
        &Role {
            arn: &arn,
            policy: &policy,
        },
        cluster.associations,
        &existing,
    );
    audit.trusts_pod_identity = pods.trusted;
    audit.associations = pods.uses;
    // This cluster's provider named with actions a web identity token cannot use (sts:AssumeRole,
    // say): meant for the cluster's ServiceAccounts, usable by none of them.
    let wrong_action = !audit.trusts_cluster
        && policy.statements.iter().any(|s| {
            s.effect == Effect::Allow
                && !action_admits(&s.action)
                && s.principal.of_type("Federated").any(|f| f == provider_text)
        });
    if wrong_action {
        audit.findings.push(finding(
            Reason::TrustPolicyNoWebIdentityStatement,
            format!(
                "the trust policy of {arn} names this cluster's OIDC provider {provider_text}, but in a \
                 statement whose Action is not {WEB_IDENTITY_ACTION}: STS lets a web identity token use \
                 only that action, so no ServiceAccount of this cluster can assume the role"
            ),
        ));
    }
    if !audit.trusts_cluster
        && others.is_empty()
        && !wrong_action
        && audit.annotated_by.is_empty()
        && !audit.trusts_pod_identity
        && audit.associations.is_empty()
    {
        return None;
    }
    let subjects = sub_values(issuer, &trusting);
    // Annotated with this role, and refused by it: their pods cannot assume it.
    let mut refused: Vec<&ServiceAccount> = if audit.trusts_cluster {
        Vec::new()
    } else {
        annotated.clone()
    };
    if audit.trusts_cluster {
        let probe = Probe {
            issuer,
            arn: &arn,
            policy: &policy,
            audiences: audiences(issuer, &trusting, service_accounts),
            subject_gates: trusting
                .iter()
                .map(|st| {
                    st.conditions
                        .iter()
                        .filter(|c| classify_key(&c.key, issuer) == KeyKind::Subject)
                        .collect()
                })
                .collect(),
        };
        let turned_away = admit_existing(&probe, cluster, &mut audit);
        refused = annotated
            .iter()
            .copied()
            .filter(|sa| probe.verdict(&sa.namespace, &sa.name, sa.audience()) == Tri::False)
            .collect();
        let denied = denied_subjects(issuer, &policy);
        admit_patterns(
            &probe,
            &subjects,
            cluster,
            &turned_away,
            &denied,
            &mut audit,
        );
        let mut missing = Vec::new();
        let mut impossible = Vec::new();
        for ((ns, name), ignore_case) in &subjects.exact {
            if !probe.admits(ns, name) {
                continue;
            }
            match named(ns, name, *ignore_case, service_accounts) {
                Named::Existing => {}
                Named::Missing => missing.push(subject(ns, name)),
                Named::Impossible(near) => impossible.push((subject(ns, name), near)),
            }
        }
        findings(&arn, &provider_text, &missing, &mut audit);
        impossible_findings(&arn, &impossible, &mut audit);
        let usable = audit.admitted_count > 0
            || !missing.is_empty()
            || audit.patterns.iter().any(|p| {
                matches!(
                    p,
                    AdmittedPattern::AnyServiceAccount { .. }
                        | AdmittedPattern::Namespace { .. }
                        | AdmittedPattern::SubjectPattern { .. }
                )
            });
        if !usable {
            let near = impossible
                .iter()
                .find_map(|(_, near)| *near)
                .or_else(|| annotated.first().copied());
            let near = near.or_else(|| written_anywhere(&trusting, service_accounts));
            audit
                .findings
                .push(admits_none(&probe, &arn, &provider_text, &subjects, near));
        }
    }
    audit.patterns.extend(
        others
            .into_iter()
            .map(|provider| AdmittedPattern::OtherProvider { provider }),
    );
    if pods.any_cluster {
        audit.patterns.push(AdmittedPattern::PodIdentityAnyCluster);
    }
    audit.annotated_refused = refused
        .iter()
        .map(|sa| format!("{}/{}", sa.namespace, sa.name))
        .collect();
    if !refused.is_empty() {
        audit.findings.push(refused_finding(
            &arn,
            &refused,
            &subjects,
            audit.trusts_pod_identity,
        ));
    }
    audit.findings.extend(pods.findings);
    audit
        .findings
        .sort_by_key(|f| std::cmp::Reverse(f.severity));
    Some(audit)
}

/// ServiceAccounts annotated with a role that refuses them, each with the value that nearly
/// names it.
fn refused_finding(
    arn: &RoleArn,
    refused: &[&ServiceAccount],
    subjects: &SubValues,
    pod_identity: bool,
) -> Finding {
    let names: Vec<String> = refused
        .iter()
        .map(|sa| format!("{}/{}", sa.namespace, sa.name))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let near: Vec<String> = refused
        .iter()
        .take(MAX_QUOTED)
        .filter_map(|sa| {
            near_miss_of(sa, &subjects.written)
                .map(|why| format!("for {}/{}, {why}", sa.namespace, sa.name))
        })
        .collect();
    let near = if near.is_empty() {
        String::new()
    } else {
        format!(" ({})", near.join("; "))
    };
    let hint = if pod_identity {
        "; the role trusts pods.eks.amazonaws.com: give it to them with an EKS Pod Identity \
         association instead"
    } else {
        ""
    };
    finding(
        Reason::TrustPolicySubjectMismatch,
        format!(
            "{arn} is the eks.amazonaws.com/role-arn of {}, but its trust policy does not admit {}{near}: \
             their pods cannot assume it{hint}",
            quoted(&names),
            if names.len() == 1 { "it" } else { "them" }
        ),
    )
}

/// Why a role trusting this cluster admits no ServiceAccount, existing or future: the trust
/// engine's own findings for the ServiceAccount nearest to what the policy names (or the
/// subject it names, or a made-up one).
fn admits_none(
    probe: &Probe<'_>,
    arn: &RoleArn,
    provider: &str,
    subjects: &SubValues,
    near: Option<&ServiceAccount>,
) -> Finding {
    let (ns, name, audience, who) = match near {
        Some(sa) => (
            sa.namespace.clone(),
            sa.name.clone(),
            sa.audience().to_string(),
            format!(
                "for ServiceAccount {}/{}, the nearest",
                sa.namespace, sa.name
            ),
        ),
        None => {
            let (ns, name) = subjects
                .exact
                .keys()
                .next()
                .cloned()
                .or_else(|| subjects.written.iter().find_map(|v| parse_subject(v)))
                .unwrap_or_else(|| (PROBES[0].0.to_string(), PROBES[0].1.to_string()));
            let who = format!("for {}, the subject it names", subject_of(&ns, &name));
            (ns, name, DEFAULT_AUDIENCE.to_string(), who)
        }
    };
    let request = WebIdentityRequest::new(probe.issuer, probe.arn, &ns, &name, &audience);
    let verdict = evaluate(probe.policy, &request);
    let why: Vec<String> = verdict
        .findings
        .iter()
        .map(|f| format!("{} ({})", f.message, f.reason.as_str()))
        .collect();
    let why = if why.is_empty() {
        "no statement's conditions can all hold".to_string()
    } else {
        why.join("; ")
    };
    finding(
        Reason::TrustPolicyAdmitsNoServiceAccount,
        format!(
            "{arn} trusts this cluster's provider {provider:?} but admits no ServiceAccount, existing or \
             future: {who}, {why}"
        ),
    )
}

/// An existing ServiceAccount whose subject a condition of `statements` names under any key (a
/// malformed one included): whom a policy that admits nobody was meant for.
fn written_anywhere<'a>(
    statements: &[&Statement],
    service_accounts: &'a [ServiceAccount],
) -> Option<&'a ServiceAccount> {
    statements
        .iter()
        .flat_map(|st| &st.conditions)
        .flat_map(|c| &c.values)
        .filter_map(|v| parse_subject(v))
        .find_map(|(ns, name)| {
            service_accounts
                .iter()
                .find(|sa| sa.namespace == ns && sa.name == name)
        })
}

/// Asks the trust engine about one role for made-up and real subjects.
struct Probe<'a> {
    issuer: &'a Issuer,
    arn: &'a RoleArn,
    policy: &'a PolicyDocument,
    /// Every audience a token for this role might carry.
    audiences: BTreeSet<String>,
    /// The `:sub` conditions of each Allow statement trusting this cluster.
    subject_gates: Vec<Vec<&'a Condition>>,
}

impl Probe<'_> {
    fn verdict(&self, namespace: &str, name: &str, audience: &str) -> Tri {
        let request = WebIdentityRequest::new(self.issuer, self.arn, namespace, name, audience);
        evaluate(self.policy, &request).allowed
    }

    /// Whether some audience's token of `namespace/name` is admitted (or only context decides).
    fn admits(&self, namespace: &str, name: &str) -> bool {
        self.audiences
            .iter()
            .any(|aud| self.verdict(namespace, name, aud) != Tri::False)
    }

    /// False when no Allow statement trusting this cluster can match `sub` whatever the rest
    /// of the request: one of its `:sub` conditions refuses it. A cheap, exact pre-check with the
    /// engine's own condition evaluation, so that the full evaluation (and its explanations) runs
    /// only for subjects a statement may admit.
    fn may_admit(&self, sub: &KeyValue) -> bool {
        self.subject_gates
            .iter()
            .any(|gate| gate.iter().all(|c| c.evaluate(sub) != Tri::False))
    }

    /// Whether every ServiceAccount of `namespace` is admitted: both probe names are.
    fn admits_namespace(&self, namespace: &str) -> bool {
        PROBES.iter().all(|(_, name)| self.admits(namespace, name))
    }
}

fn principal_admits(principals: &Principals, provider: &str) -> bool {
    match principals {
        Principals::Any => true,
        Principals::Typed(_) => principals.of_type("Federated").any(|f| f == provider),
    }
}

/// The default audience, those ServiceAccounts set, and the literal `:aud` values of the
/// statements trusting this cluster: the audiences a token presented for the role may carry.
fn audiences(
    issuer: &Issuer,
    trusting: &[&Statement],
    service_accounts: &[ServiceAccount],
) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = service_accounts
        .iter()
        .map(|sa| sa.audience().to_string())
        .collect();
    set.insert(DEFAULT_AUDIENCE.to_string());
    for st in trusting {
        for c in &st.conditions {
            if classify_key(&c.key, issuer) == KeyKind::Audience && !c.operator.base.is_negated() {
                set.extend(c.values.iter().filter(|v| !v.contains(['*', '?'])).cloned());
            }
        }
    }
    set
}

/// The `:sub` values Deny statements name: subjects a broad Allow may still refuse.
fn denied_subjects(issuer: &Issuer, policy: &PolicyDocument) -> Vec<String> {
    let deny: Vec<&Statement> = policy
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Deny)
        .collect();
    sub_values(issuer, &deny).written
}

/// Adds the existing ServiceAccounts the role admits; returns those it refuses.
fn admit_existing<'a>(
    probe: &Probe<'_>,
    cluster: &Cluster<'a>,
    audit: &mut RoleAudit,
) -> Vec<&'a ServiceAccount> {
    let mut refused = Vec::new();
    for (sa, sub) in cluster.service_accounts.iter().zip(cluster.subjects) {
        if !probe.may_admit(sub) {
            refused.push(sa);
            continue;
        }
        let verdict = probe.verdict(&sa.namespace, &sa.name, sa.audience());
        if verdict == Tri::False {
            refused.push(sa);
            continue;
        }
        audit.admitted_count += 1;
        if audit.service_accounts.len() < MAX_LISTED_SERVICE_ACCOUNTS {
            audit.service_accounts.push(AdmittedServiceAccount {
                service_account: format!("{}/{}", sa.namespace, sa.name),
                conditional: verdict == Tri::Unknown,
                annotated: sa.role_arn_annotation().map(str::trim) == Some(audit.role_arn.as_str()),
            });
        }
    }
    refused
}

fn admit_patterns(
    probe: &Probe<'_>,
    subjects: &SubValues,
    cluster: &Cluster<'_>,
    turned_away: &[&ServiceAccount],
    denied: &[String],
    audit: &mut RoleAudit,
) {
    let any = PROBES.iter().all(|(ns, name)| probe.admits(ns, name));
    let mut patterns = BTreeSet::new();
    if any {
        patterns.insert(AdmittedPattern::AnyServiceAccount {
            except: exceptions(probe, turned_away, denied, |_| true),
        });
    } else {
        // Namespaces the policy's patterns denote (`team-*` of `system:serviceaccount:team-*:*`),
        // probed with their wildcards filled in; then existing namespaces they do not cover.
        let mut covered: Vec<String> = Vec::new();
        for pattern in &subjects.patterns {
            // `system:serviceaccount:team-*` (no second colon) denotes whole namespaces too: `*`
            // spans colons.
            let ns = pattern
                .strip_prefix(SUBJECT_PREFIX)
                .map(|rest| rest.split_once(':').map_or(rest, |(ns, _)| ns));
            let whole = ns.filter(|ns| probe.admits_namespace(&filled(ns)));
            if let Some(ns) = whole {
                covered.push(ns.to_string());
            } else {
                patterns.insert(AdmittedPattern::SubjectPattern {
                    pattern: pattern.clone(),
                });
            }
        }
        for ns in cluster.namespaces {
            if !covered.iter().any(|p| like(p, ns)) && probe.admits_namespace(ns) {
                covered.push(ns.to_string());
            }
        }
        patterns.extend(covered.into_iter().map(|namespace| {
            let except = exceptions(probe, turned_away, denied, |ns| like(&namespace, ns));
            AdmittedPattern::Namespace { namespace, except }
        }));
    }
    // Any subject admitted at all tells whether the audience is checked.
    let admitted = audit
        .service_accounts
        .iter()
        .filter_map(|sa| sa.service_account.split_once('/'))
        .map(|(ns, name)| (ns.to_string(), name.to_string()))
        .chain(subjects.exact.keys().cloned())
        .chain(
            PROBES
                .iter()
                .map(|(ns, name)| (ns.to_string(), name.to_string())),
        )
        .find(|(ns, name)| probe.admits(ns, name));
    if let Some((ns, name)) = admitted {
        if probe.verdict(&ns, &name, PROBE_AUDIENCE) != Tri::False {
            patterns.insert(AdmittedPattern::AnyAudience);
        }
    }
    audit.patterns.extend(patterns);
}

/// A pattern's wildcards filled with a letter: one subject it denotes.
fn filled(pattern: &str) -> String {
    pattern.replace(['*', '?'], "x")
}

/// What a broad pattern does not admit after all, evaluated: the Deny statements' `:sub` values
/// (as written) whose subjects the role refuses, and the existing ServiceAccounts it refuses, of
/// the namespaces `within` selects. At most [`MAX_LISTED_EXCEPTIONS`].
fn exceptions(
    probe: &Probe<'_>,
    turned_away: &[&ServiceAccount],
    denied: &[String],
    within: impl Fn(&str) -> bool,
) -> Vec<String> {
    let written = denied.iter().filter(|value| {
        parse_subject(&filled(value))
            .is_some_and(|(ns, name)| within(&ns) && !probe.admits(&ns, &name))
    });
    let existing = turned_away
        .iter()
        .filter(|sa| within(&sa.namespace))
        .map(|sa| subject_of(&sa.namespace, &sa.name));
    let mut out: Vec<String> = written.cloned().chain(existing).collect();
    out.sort();
    out.dedup();
    out.truncate(MAX_LISTED_EXCEPTIONS);
    out
}

/// ` except ["…"]`, or nothing.
fn except_text(except: &[String]) -> String {
    if except.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = except.iter().map(String::as_str).collect();
        format!(" except {}", quoted(&names))
    }
}

fn findings(arn: &RoleArn, provider: &str, missing: &[String], audit: &mut RoleAudit) {
    let namespaces: Vec<(&str, &[String])> = audit
        .patterns
        .iter()
        .filter_map(|p| match p {
            AdmittedPattern::Namespace { namespace, except } => {
                Some((namespace.as_str(), except.as_slice()))
            }
            _ => None,
        })
        .collect();
    let any = audit.patterns.iter().find_map(|p| match p {
        AdmittedPattern::AnyServiceAccount { except } => Some(except),
        _ => None,
    });
    if let Some(except) = any {
        audit.findings.push(finding(
            Reason::TrustPolicyAdmitsAnyServiceAccount,
            format!(
                "{arn} admits every ServiceAccount of the cluster{} through its provider {provider:?}: the :sub \
                 condition is missing, negated or all wildcards, so whoever may create a ServiceAccount and a \
                 pod in any namespace gets the role ({} existing ServiceAccount(s) admitted)",
                except_text(except),
                audit.admitted_count
            ),
        ));
    } else if !namespaces.is_empty() {
        let names: Vec<String> = namespaces
            .iter()
            .map(|(ns, except)| format!("{ns:?}{}", except_text(except)))
            .collect();
        audit.findings.push(finding(
            Reason::TrustPolicyAdmitsWholeNamespace,
            format!(
                "{arn} admits every ServiceAccount of namespace(s) {}: whoever may create a ServiceAccount \
                 there gets the role",
                names.join(", ")
            ),
        ));
    }
    if audit.trusts_cluster && audit.annotated_by.is_empty() && audit.associations.is_empty() {
        audit.findings.push(finding(
            Reason::TrustedRoleUnused,
            format!(
                "{arn} trusts this cluster's provider {provider:?}, but no ServiceAccount of the cluster is \
                 annotated with it ({} admitted, none uses it)",
                audit.admitted_count
            ),
        ));
    }
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(String::as_str).collect();
        audit.findings.push(finding(
            Reason::TrustedServiceAccountMissing,
            format!(
                "{arn} trusts {}, which no longer exist(s) in the cluster: whoever creates a ServiceAccount of \
                 that name gets the role",
                quoted(&names)
            ),
        ));
    }
}

/// Trusted subjects no ServiceAccount can have, each with the existing one it nearly names.
fn impossible_findings(
    arn: &RoleArn,
    impossible: &[(String, Option<&ServiceAccount>)],
    audit: &mut RoleAudit,
) {
    let items: Vec<String> = impossible
        .iter()
        .take(MAX_QUOTED)
        .map(|(value, near)| match near {
            Some(sa) => format!(
                "{value:?} (nearest: ServiceAccount {}/{})",
                sa.namespace, sa.name
            ),
            None => format!("{value:?}"),
        })
        .collect();
    if items.is_empty() {
        return;
    }
    let more = impossible.len().saturating_sub(MAX_QUOTED);
    let more = if more == 0 {
        String::new()
    } else {
        format!(" and {more} more")
    };
    audit.findings.push(finding(
        Reason::TrustedSubjectInvalid,
        format!(
            "{arn} trusts {}{more}, which no ServiceAccount can be called: namespaces and names are lower-case \
             RFC 1123 names, and StringEquals compares * and ? literally; nothing matches it",
            items.join(", ")
        ),
    ));
}

/// `["a", "b"]`, at most [`MAX_QUOTED`] of them, then how many more.
fn quoted(items: &[&str]) -> String {
    let shown: Vec<&str> = items.iter().copied().take(MAX_QUOTED).collect();
    let more = items.len().saturating_sub(MAX_QUOTED);
    if more == 0 {
        format!("{shown:?}")
    } else {
        format!("{shown:?} and {more} more")
    }
}

fn finding(reason: Reason, message: String) -> Finding {
    Finding::new(reason, ConditionType::TrustPolicyValid, message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const HP: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    const OTHER: &str = "oidc.eks.eu-west-1.amazonaws.com/id/OTHERCLUSTER0000000000000000000";

    fn provider(host_path: &str) -> String {
        format!("arn:aws:iam::111122223333:oidc-provider/{host_path}")
    }

    fn role_arn(name: &str) -> String {
        format!("arn:aws:iam::111122223333:role/{name}")
    }

    fn sa(namespace: &str, name: &str, role: Option<&str>) -> ServiceAccount {
        ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
            annotations: role
                .map(|r| ("eks.amazonaws.com/role-arn".to_string(), role_arn(r)))
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    /// A statement allowing web identity to `host_path`'s provider under `condition`.
    fn allow(host_path: &str, condition: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"Effect": "Allow", "Principal": {"Federated": provider(host_path)},
            "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition})
    }

    fn sub(op: &str, value: &str) -> serde_json::Value {
        serde_json::json!({op: {format!("{HP}:sub"): value, format!("{HP}:aud"): "sts.amazonaws.com"}})
    }

    fn role(name: &str, statements: &[serde_json::Value]) -> ListedRole {
        ListedRole {
            arn: role_arn(name),
            trust_policy: serde_json::json!({"Version": "2012-10-17", "Statement": statements})
                .to_string(),
        }
    }

    fn cluster() -> Vec<ServiceAccount> {
        vec![
            sa("a", "b", Some("exact")),
            sa("a", "c", Some("namespace")),
            sa("team-x", "app", Some("teams")),
            sa("team-y", "worker", None),
            sa("kube-system", "aws-node", Some("no-sub")),
        ]
    }

    fn audit(roles: &[ListedRole]) -> BTreeMap<String, RoleAudit> {
        let issuer = Issuer::parse(HP).unwrap();
        audit_trust(&issuer, roles, &cluster(), &[])
            .into_iter()
            .map(|a| (a.role_arn.rsplit('/').next().unwrap().to_string(), a))
            .collect()
    }

    fn admitted(a: &RoleAudit) -> Vec<&str> {
        a.service_accounts
            .iter()
            .map(|s| s.service_account.as_str())
            .collect()
    }

    fn reasons(a: &RoleAudit) -> Vec<Reason> {
        a.findings.iter().map(|f| f.reason).collect()
    }

    fn namespace(ns: &str) -> AdmittedPattern {
        AdmittedPattern::Namespace {
            namespace: ns.into(),
            except: vec![],
        }
    }

    #[test]
    fn each_role_lists_the_service_accounts_and_patterns_it_admits() {
        let audits = audit(&[
            role(
                "exact",
                &[allow(HP, sub("StringEquals", "system:serviceaccount:a:b"))],
            ),
            role(
                "namespace",
                &[allow(HP, sub("StringLike", "system:serviceaccount:a:*"))],
            ),
            role(
                "teams",
                &[allow(
                    HP,
                    sub("StringLike", "system:serviceaccount:team-*:*"),
                )],
            ),
            role(
                "narrow",
                &[allow(HP, sub("StringLike", "system:serviceaccount:a:b*"))],
            ),
            role(
                "no-sub",
                &[allow(
                    HP,
                    serde_json::json!({"StringEquals": {format!("{HP}:aud"): "sts.amazonaws.com"}}),
                )],
            ),
        ]);
        let exact = &audits["exact"];
        assert!(exact.trusts_cluster);
        assert_eq!(admitted(exact), ["a/b"]);
        assert!(exact.service_accounts[0].annotated && !exact.service_accounts[0].conditional);
        assert_eq!(exact.patterns, []);
        assert_eq!(reasons(exact), []);

        let ns = &audits["namespace"];
        assert_eq!(admitted(ns), ["a/b", "a/c"]);
        assert_eq!(ns.patterns, [namespace("a")]);
        assert_eq!(reasons(ns), [Reason::TrustPolicyAdmitsWholeNamespace]);
        assert!(
            ns.findings[0].message.contains(r#"namespace(s) "a""#),
            "{}",
            ns.findings[0].message
        );

        // The pattern is reported as written, and covers its existing namespaces.
        let teams = &audits["teams"];
        assert_eq!(admitted(teams), ["team-x/app", "team-y/worker"]);
        assert_eq!(teams.patterns, [namespace("team-*")]);
        assert_eq!(reasons(teams), [Reason::TrustPolicyAdmitsWholeNamespace]);

        let narrow = &audits["narrow"];
        assert_eq!(admitted(narrow), ["a/b"]);
        assert_eq!(
            narrow.patterns,
            [AdmittedPattern::SubjectPattern {
                pattern: "system:serviceaccount:a:b*".into()
            }]
        );
        // Nobody is annotated with it: unused, but no broad-trust finding.
        assert_eq!(reasons(narrow), [Reason::TrustedRoleUnused]);

        let any = &audits["no-sub"];
        assert_eq!(any.admitted_count, 5);
        assert_eq!(
            any.patterns,
            [AdmittedPattern::AnyServiceAccount { except: vec![] }]
        );
        assert_eq!(reasons(any), [Reason::TrustPolicyAdmitsAnyServiceAccount]);
        assert_eq!(any.findings[0].severity, crate::Severity::Error);
    }

    #[test]
    fn stale_roles_and_missing_service_accounts_are_found() {
        let audits = audit(&[
            role(
                "stale",
                &[allow(
                    HP,
                    sub("StringEquals", "system:serviceaccount:gone:svc"),
                )],
            ),
            role(
                "half",
                &[allow(
                    HP,
                    serde_json::json!({"StringEquals": {format!("{HP}:sub"):
                        ["system:serviceaccount:a:b", "system:serviceaccount:a:old"]}}),
                )],
            ),
            // The missing subject is denied anyway: nobody could use it.
            role(
                "denied",
                &[
                    allow(HP, sub("StringEquals", "system:serviceaccount:gone:svc")),
                    serde_json::json!({"Effect": "Deny", "Principal": "*", "Action": "sts:*",
                        "Condition": {"StringLike": {format!("{HP}:sub"): "system:serviceaccount:gone:*"}}}),
                ],
            ),
        ]);
        let stale = &audits["stale"];
        assert_eq!(admitted(stale), Vec::<&str>::new());
        assert_eq!(
            reasons(stale),
            [
                Reason::TrustedRoleUnused,
                Reason::TrustedServiceAccountMissing
            ]
        );
        assert!(stale.findings[1]
            .message
            .contains("system:serviceaccount:gone:svc"));
        // No :aud condition there, so any audience is admitted; the probe finds it through the
        // missing subject.
        let half = &audits["half"];
        assert_eq!(admitted(half), ["a/b"]);
        assert_eq!(half.patterns, [AdmittedPattern::AnyAudience]);
        assert_eq!(
            reasons(half),
            [
                Reason::TrustedRoleUnused,
                Reason::TrustedServiceAccountMissing
            ]
        );
        let missing = &half.findings[1].message;
        assert!(missing.contains("system:serviceaccount:a:old"), "{missing}");
        assert!(
            !missing.contains("system:serviceaccount:a:b\""),
            "{missing}"
        );
        // Everything it allows it denies: no ServiceAccount can use it, and it says so.
        assert_eq!(
            reasons(&audits["denied"]),
            [
                Reason::TrustedRoleUnused,
                Reason::TrustPolicyAdmitsNoServiceAccount
            ]
        );
    }

    #[test]
    fn other_clusters_unrelated_roles_and_unreadable_policies() {
        let mut encoded = role(
            "encoded",
            &[allow(HP, sub("StringEquals", "system:serviceaccount:a:b"))],
        );
        encoded.trust_policy = percent_encoding::utf8_percent_encode(
            &encoded.trust_policy,
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        let audits = audit(&[
            role(
                "other",
                &[allow(
                    OTHER,
                    serde_json::json!({"StringEquals": {format!("{OTHER}:sub"): "system:serviceaccount:a:b"}}),
                )],
            ),
            role(
                "ec2",
                &[
                    serde_json::json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                    "Action": "sts:AssumeRole"}),
                ],
            ),
            ListedRole {
                arn: role_arn("broken"),
                trust_policy: "{not json".into(),
            },
            encoded,
            role(
                "wrong-action",
                &[
                    serde_json::json!({"Effect": "Allow", "Principal": {"Federated": provider(HP)},
                    "Action": "sts:AssumeRole"}),
                ],
            ),
        ]);
        assert!(!audits.contains_key("ec2"), "{audits:?}");
        // This cluster's provider with an action web identity cannot use: told, not left out.
        let wrong = &audits["wrong-action"];
        assert!(!wrong.trusts_cluster);
        assert_eq!(reasons(wrong), [Reason::TrustPolicyNoWebIdentityStatement]);
        assert!(
            wrong.findings[0]
                .message
                .contains("sts:AssumeRoleWithWebIdentity"),
            "{:?}",
            wrong.findings
        );
        let other = &audits["other"];
        assert!(!other.trusts_cluster);
        assert_eq!(admitted(other), Vec::<&str>::new());
        assert_eq!(
            other.patterns,
            [AdmittedPattern::OtherProvider {
                provider: provider(OTHER)
            }]
        );
        assert_eq!(reasons(other), []);
        assert_eq!(reasons(&audits["broken"]), [Reason::TrustPolicyInvalid]);
        assert_eq!(admitted(&audits["encoded"]), ["a/b"]);
        let keys: Vec<&String> = audits.keys().collect();
        assert_eq!(keys, ["broken", "encoded", "other", "wrong-action"]);
    }

    #[test]
    fn service_accounts_annotated_with_a_role_that_refuses_them_are_reported() {
        let audits = audit(&[
            // a/b is annotated with "exact", which trusts a/c only.
            role(
                "exact",
                &[allow(HP, sub("StringEquals", "system:serviceaccount:a:c"))],
            ),
            // kube-system/aws-node is annotated with "no-sub", a role for EC2 only: it used to be
            // left out of the map altogether.
            role(
                "no-sub",
                &[
                    serde_json::json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                    "Action": "sts:AssumeRole"}),
                ],
            ),
        ]);
        let exact = &audits["exact"];
        assert!(
            reasons(exact).contains(&Reason::TrustPolicySubjectMismatch),
            "{exact:?}"
        );
        let message = &exact
            .findings
            .iter()
            .find(|f| f.reason == Reason::TrustPolicySubjectMismatch)
            .unwrap()
            .message;
        assert!(
            message.contains("\"a/b\"") && !message.contains("a/c"),
            "{message}"
        );
        let ec2 = &audits["no-sub"];
        assert!(!ec2.trusts_cluster);
        assert_eq!(reasons(ec2), [Reason::TrustPolicySubjectMismatch]);
        assert!(ec2.findings[0].message.contains("kube-system/aws-node"));
    }

    #[test]
    fn a_deny_narrows_what_a_namespace_pattern_admits() {
        let audits = audit(&[role(
            "namespace",
            &[
                allow(HP, sub("StringLike", "system:serviceaccount:a:*")),
                serde_json::json!({"Effect": "Deny", "Principal": {"Federated": provider(HP)},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {format!("{HP}:sub"): "system:serviceaccount:a:b"}}}),
            ],
        )]);
        let ns = &audits["namespace"];
        assert_eq!(admitted(ns), ["a/c"]);
        // Evaluated, not described: the whole namespace but the denied subject.
        assert_eq!(
            ns.patterns,
            [AdmittedPattern::Namespace {
                namespace: "a".into(),
                except: vec!["system:serviceaccount:a:b".into()],
            }]
        );
    }

    #[test]
    fn context_dependent_verdicts_are_admitted_conditionally() {
        let audits = audit(&[role(
            "exact",
            &[allow(
                HP,
                serde_json::json!({"StringEquals": {format!("{HP}:sub"): "system:serviceaccount:a:b",
                    format!("{HP}:aud"): "sts.amazonaws.com"}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
            )],
        )]);
        let exact = &audits["exact"];
        assert_eq!(admitted(exact), ["a/b"]);
        assert!(exact.service_accounts[0].conditional);
    }

    #[test]
    fn many_missing_subjects_are_quoted_up_to_the_bound() {
        let names: Vec<String> = (0..30)
            .map(|i| format!("system:serviceaccount:gone:svc-{i}"))
            .collect();
        let audits = audit(&[role(
            "many",
            &[allow(
                HP,
                serde_json::json!({"StringEquals": {format!("{HP}:sub"): names}}),
            )],
        )]);
        let message = &audits["many"].findings[1].message;
        assert!(message.contains("and 10 more"), "{message}");
    }

    fn message(a: &RoleAudit, reason: Reason) -> &str {
        &a.findings
            .iter()
            .find(|f| f.reason == reason)
            .unwrap_or_else(|| panic!("no {reason:?} in {:?}", a.findings))
            .message
    }

    #[test]
    fn a_case_insensitive_operator_admits_without_a_missing_warning() {
        let audits = audit(&[role(
            "exact",
            &[allow(
                HP,
                sub("StringEqualsIgnoreCase", "system:serviceaccount:A:B"),
            )],
        )]);
        let exact = &audits["exact"];
        assert_eq!(admitted(exact), ["a/b"]);
        assert_eq!(reasons(exact), [], "{:?}", exact.findings);
    }

    #[test]
    fn subjects_no_service_account_can_have_are_explained_with_the_near_miss() {
        let audits = audit(&[
            // `*` compared literally: nothing can be called that.
            role(
                "star",
                &[allow(
                    HP,
                    sub("StringEquals", "system:serviceaccount:team-x:*"),
                )],
            ),
            // A namespace differing only in case.
            role(
                "case",
                &[allow(
                    HP,
                    sub("StringEquals", "system:serviceaccount:Team-X:app"),
                )],
            ),
        ]);
        for name in ["star", "case"] {
            let a = &audits[name];
            let found = reasons(a);
            assert!(
                found.contains(&Reason::TrustedSubjectInvalid)
                    && found.contains(&Reason::TrustPolicyAdmitsNoServiceAccount)
                    && !found.contains(&Reason::TrustedServiceAccountMissing),
                "{name}: {:?}",
                a.findings
            );
            let invalid = message(a, Reason::TrustedSubjectInvalid);
            assert!(invalid.contains("team-x/app"), "{invalid}");
            assert!(!invalid.contains("whoever creates"), "{invalid}");
            let none = message(a, Reason::TrustPolicyAdmitsNoServiceAccount);
            assert!(none.contains("team-x/app"), "{none}");
        }
        assert!(
            message(&audits["star"], Reason::TrustPolicyAdmitsNoServiceAccount)
                .contains("TrustPolicyWildcardWithoutLike"),
            "{:?}",
            audits["star"].findings
        );
    }

    #[test]
    fn a_role_admitting_no_service_account_says_why() {
        let audits = audit(&[
            role(
                "scheme",
                &[allow(
                    HP,
                    serde_json::json!({"StringEquals": {format!("https://{HP}:sub"): "system:serviceaccount:a:b"}}),
                )],
            ),
            role(
                "audience",
                &[allow(
                    HP,
                    serde_json::json!({"StringEquals": {format!("{HP}:sub"): "system:serviceaccount:a:b",
                        format!("{HP}:aud"): "sts.amazonaws.con"}}),
                )],
            ),
        ]);
        let scheme = message(&audits["scheme"], Reason::TrustPolicyAdmitsNoServiceAccount);
        assert!(
            scheme.contains("a/b") && scheme.contains("https://"),
            "{scheme}"
        );
        let aud = message(
            &audits["audience"],
            Reason::TrustPolicyAdmitsNoServiceAccount,
        );
        assert!(
            aud.contains("sts.amazonaws.com") && aud.contains("TrustPolicyAudienceMismatch"),
            "{aud}"
        );
        // The exact subject exists but is refused: not also reported missing.
        assert!(!reasons(&audits["audience"]).contains(&Reason::TrustedServiceAccountMissing));
    }

    #[test]
    fn a_refused_service_account_is_told_the_value_that_nearly_names_it() {
        let audits = audit(&[role(
            "exact",
            &[allow(HP, sub("StringEquals", "system:serviceaccount:A:b"))],
        )]);
        let m = message(&audits["exact"], Reason::TrustPolicySubjectMismatch);
        assert!(m.contains("a/b") && m.contains("only in case"), "{m}");
        assert_eq!(audits["exact"].annotated_refused, ["a/b"]);
    }

    #[test]
    fn namespace_patterns_name_what_a_deny_takes_out() {
        let audits = audit(&[role(
            "namespace",
            &[
                allow(HP, sub("StringLike", "system:serviceaccount:team-*:*")),
                serde_json::json!({"Effect": "Deny", "Principal": {"Federated": provider(HP)},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringLike": {format!("{HP}:sub"): "system:serviceaccount:team-y:*"}}}),
            ],
        )]);
        let ns = &audits["namespace"];
        assert_eq!(admitted(ns), ["team-x/app"]);
        assert_eq!(
            ns.patterns,
            [AdmittedPattern::Namespace {
                namespace: "team-*".into(),
                except: vec![
                    "system:serviceaccount:team-y:*".into(),
                    "system:serviceaccount:team-y:worker".into()
                ],
            }]
        );
        let m = message(ns, Reason::TrustPolicyAdmitsWholeNamespace);
        assert!(m.contains("except"), "{m}");
    }

    fn pods_statement(actions: &[&str], condition: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": actions, "Condition": condition})
    }

    fn association(id: &str, ns: &str, sa: &str, role: &str, target: Option<&str>) -> Association {
        Association {
            id: id.into(),
            arn: Some(format!(
                "arn:aws:eks:us-east-1:111122223333:podidentityassociation/prod/{id}"
            )),
            cluster: "prod".into(),
            namespace: ns.into(),
            service_account: sa.into(),
            role_arn: role_arn(role),
            target_role_arn: target.map(role_arn),
            ..Default::default()
        }
    }

    #[test]
    fn pod_identity_roles_and_the_associations_using_them_are_audited() {
        let issuer = Issuer::parse(HP).unwrap();
        let this_cluster = serde_json::json!({"ArnEquals": {"aws:SourceArn":
            "arn:aws:eks:us-east-1:111122223333:cluster/prod"}});
        let roles = [
            role(
                "pi",
                &[pods_statement(
                    &["sts:AssumeRole", "sts:TagSession"],
                    serde_json::json!({}),
                )],
            ),
            role(
                "pinned",
                &[pods_statement(
                    &["sts:AssumeRole", "sts:TagSession"],
                    this_cluster,
                )],
            ),
            role(
                "no-tags",
                &[pods_statement(&["sts:AssumeRole"], serde_json::json!({}))],
            ),
            role(
                "target",
                &[serde_json::json!({"Effect": "Allow",
                    "Principal": {"AWS": role_arn("pi")},
                    "Action": ["sts:AssumeRole", "sts:TagSession"]})],
            ),
            role(
                "unused",
                &[pods_statement(
                    &["sts:AssumeRole", "sts:TagSession"],
                    serde_json::json!({}),
                )],
            ),
        ];
        let associations = [
            association("a-1", "a", "b", "pi", Some("target")),
            association("a-2", "a", "c", "pinned", None),
            association("a-3", "team-x", "app", "no-tags", None),
            association("a-4", "gone", "svc", "pinned", None),
        ];
        let audits: BTreeMap<String, RoleAudit> =
            audit_trust(&issuer, &roles, &cluster(), &associations)
                .into_iter()
                .map(|a| (a.role_arn.rsplit('/').next().unwrap().to_string(), a))
                .collect();
        let pi = &audits["pi"];
        assert!(pi.trusts_pod_identity && !pi.trusts_cluster);
        assert_eq!(pi.associations.len(), 1);
        assert!(pi.associations[0].admitted);
        assert_eq!(pi.associations[0].usage, AssociationUsage::Role);
        assert_eq!(pi.patterns, [AdmittedPattern::PodIdentityAnyCluster]);
        assert_eq!(reasons(pi), []);
        // aws:SourceArn ties it to this cluster: no other cluster's association is admitted.
        let pinned = &audits["pinned"];
        assert_eq!(pinned.patterns, []);
        assert!(pinned.associations.iter().all(|u| u.admitted));
        assert_eq!(reasons(pinned), [Reason::PodIdentityServiceAccountMissing]);
        assert!(message(pinned, Reason::PodIdentityServiceAccountMissing).contains("gone/svc"));
        // MKAT counts it; STS refuses the agent's tagged session.
        let no_tags = &audits["no-tags"];
        assert!(!no_tags.associations[0].admitted);
        assert_eq!(
            reasons(no_tags),
            [Reason::PodIdentityTrustMissingTagSession]
        );
        assert!(message(no_tags, Reason::PodIdentityTrustMissingTagSession).contains("a-3"));
        // The target role trusts the association's role.
        let target = &audits["target"];
        assert!(!target.trusts_pod_identity);
        assert_eq!(target.associations[0].usage, AssociationUsage::TargetRole);
        assert!(target.associations[0].admitted, "{target:?}");
        // Trusted by the agent, used by no association here: listed, no finding.
        assert_eq!(audits["unused"].associations, []);
        assert_eq!(reasons(&audits["unused"]), []);
    }

    #[test]
    fn a_role_for_pod_identity_annotated_for_irsa_says_to_associate_it() {
        let issuer = Issuer::parse(HP).unwrap();
        let roles = [role(
            "exact",
            &[pods_statement(
                &["sts:AssumeRole", "sts:TagSession"],
                serde_json::json!({}),
            )],
        )];
        let audits = audit_trust(&issuer, &roles, &cluster(), &[]);
        let m = message(&audits[0], Reason::TrustPolicySubjectMismatch);
        assert!(
            m.contains("a/b") && m.contains("Pod Identity association"),
            "{m}"
        );
    }
}
