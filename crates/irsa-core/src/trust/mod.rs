//! Trust evaluation: would STS let a pod of this ServiceAccount call `AssumeRoleWithWebIdentity`
//! on this role, and if not, why. IAM's rules: explicit Deny wins, every condition of a statement
//! must hold, any value of a key may match.
//!
//! How much of the policy a finding may quote is decided here too ([`Disclosure`]): whoever reads
//! the operator's findings on a ServiceAccount may only be able to edit its annotation, so a role
//! that does not trust that ServiceAccount is not described to them.

use wildmatch::WildMatch;

use crate::arn::{OidcProviderArn, RoleArn};
use crate::condition::{like, Condition, KeyValue, Tri};
use crate::issuer::{eks_parts, Issuer};
use crate::policy::{ActionSpec, Effect, PolicyDocument, Principals, Statement};
use crate::reason::Reason;

mod assume_role;

pub use assume_role::{
    action_covers, evaluate_assume_role, tag_conditions, AssumeRoleRequest, Caller, SessionTags,
};

/// The action a pod's SDK calls.
pub const WEB_IDENTITY_ACTION: &str = "sts:AssumeRoleWithWebIdentity";

/// Claims IAM exposes for OIDC providers that EKS tokens do not carry.
const OTHER_CLAIMS: [&str; 3] = ["amr", "azp", "oaud"];

/// What a pod of one ServiceAccount presents to STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebIdentityRequest {
    /// The cluster's issuer.
    pub issuer: Issuer,
    /// The provider STS matches the token's issuer with, in the role's account.
    pub provider: OidcProviderArn,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub subject: String,
    /// The token's audience.
    pub audience: String,
}

impl WebIdentityRequest {
    /// The request a pod of `namespace/name` makes for `role`.
    pub fn new(
        issuer: &Issuer,
        role: &RoleArn,
        namespace: &str,
        name: &str,
        audience: &str,
    ) -> WebIdentityRequest {
        WebIdentityRequest {
            issuer: issuer.clone(),
            provider: issuer.provider_arn(role.partition(), role.account()),
            subject: subject(namespace, name),
            audience: audience.to_string(),
        }
    }

    /// What the request context holds for a condition key.
    pub fn key_value(&self, key: &str) -> KeyValue {
        match classify_key(key, &self.issuer) {
            KeyKind::Subject => KeyValue::Present(vec![self.subject.clone()]),
            KeyKind::Audience => KeyValue::Present(vec![self.audience.clone()]),
            KeyKind::Global if key.eq_ignore_ascii_case("aws:FederatedProvider") => {
                KeyValue::Present(vec![self.provider.to_string()])
            }
            KeyKind::Global => KeyValue::Unknowable,
            KeyKind::OtherClaim(_) | KeyKind::Malformed { .. } => KeyValue::Absent,
        }
    }
}

/// The `sub` claim of a ServiceAccount token.
pub fn subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// What a condition key refers to, relative to the cluster's issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// `<issuer>:sub`.
    Subject,
    /// `<issuer>:aud`.
    Audience,
    /// A claim IAM knows but EKS tokens lack.
    OtherClaim(String),
    /// `aws:*` or `sts:*`: request context irsa-doctor cannot see offline.
    Global,
    /// Not a key this request can carry: what is wrong with it.
    Malformed {
        /// Says what is wrong.
        problem: String,
    },
}

/// Classifies a condition key; key names are case-insensitive in IAM.
pub fn classify_key(key: &str, issuer: &Issuer) -> KeyKind {
    let lower = key.to_ascii_lowercase();
    let expected = issuer.host_path().to_ascii_lowercase();
    let Some((prefix, claim)) = lower.rsplit_once(':') else {
        return KeyKind::Malformed {
            problem: "has no issuer prefix".to_string(),
        };
    };
    if prefix == expected {
        return match claim {
            "sub" => KeyKind::Subject,
            "aud" => KeyKind::Audience,
            c if OTHER_CLAIMS.contains(&c) => KeyKind::OtherClaim(c.to_string()),
            c => KeyKind::Malformed {
                problem: format!(
                    "names claim {c:?}, which IAM does not know{}",
                    claim_hint(c)
                ),
            },
        };
    }
    if prefix == "aws" || prefix == "sts" {
        return KeyKind::Global;
    }
    let without_scheme = prefix
        .strip_prefix("https://")
        .or_else(|| prefix.strip_prefix("http://"));
    if without_scheme == Some(expected.as_str()) {
        return KeyKind::Malformed {
            problem: "starts with the URL scheme; IAM keys use the issuer without https://"
                .to_string(),
        };
    }
    let found = without_scheme.unwrap_or(prefix);
    KeyKind::Malformed {
        problem: format!(
            "names issuer {found:?}, not this cluster's {expected:?}{}",
            issuer_difference(found, &expected)
        ),
    }
}

fn claim_hint(claim: &str) -> String {
    ["sub", "aud"]
        .into_iter()
        .find(|c| strsim::damerau_levenshtein(claim, c) <= 2)
        .map(|c| format!("; did you mean \":{c}\"?"))
        .unwrap_or_default()
}

/// Which parts of two issuers differ, when both are EKS-shaped.
fn issuer_difference(found: &str, expected: &str) -> String {
    match (eks_parts(found), eks_parts(expected)) {
        (Some(f), Some(e)) => {
            let mut parts = Vec::new();
            if !f.region.eq_ignore_ascii_case(e.region) {
                parts.push(format!("region {} instead of {}", f.region, e.region));
            }
            if !f.id.eq_ignore_ascii_case(e.id) {
                parts.push(format!("issuer id {} instead of {}", f.id, e.id));
            }
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        }
        _ => String::new(),
    }
}

/// A reason with the message that explains it in this case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustFinding {
    /// A TrustPolicy* reason.
    pub reason: Reason,
    /// Expected versus found, in words.
    pub message: String,
}

/// The outcome of evaluating a trust policy for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustVerdict {
    /// True: STS would allow; False: it would refuse; Unknown: depends on context not visible offline.
    pub allowed: Tri,
    /// Why it refuses, or what to watch even though it allows.
    pub findings: Vec<TrustFinding>,
}

impl TrustVerdict {
    /// Whether the policy admits the ServiceAccount: STS would allow it (True). Only then may
    /// the role be described to whoever controls the ServiceAccount (see [`Disclosure`]), and its
    /// permissions simulated for them. Unknown (request context decides) does not admit: a
    /// policy that trusts every principal under a condition irsa-doctor cannot evaluate (e.g.
    /// `Principal: "*"` with `aws:PrincipalOrgID`) would otherwise be described to anyone.
    pub fn admits(&self) -> bool {
        self.allowed == Tri::True
    }
}

/// How much of a trust policy findings may quote.
///
/// A ServiceAccount's role ARN is an annotation anyone who may edit the namespace can set, to
/// any role. Quoting that role's trust policy (the subjects of other namespaces, the providers
/// of other clusters, its condition values, its statements) would make irsa-doctor an oracle for
/// roles the ServiceAccount cannot use. So the operator, which serves every namespace with its
/// own credentials, uses [`Disclosure::AdmittedOnly`]; `lint` (the user's own files) and
/// `check` (the caller's own AWS credentials, which could read the policy anyway) use
/// [`Disclosure::Full`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Disclosure {
    /// Quote whatever explains the verdict.
    #[default]
    Full,
    /// Quote the policy only when it admits the ServiceAccount ([`TrustVerdict::admits`]);
    /// otherwise say which of this ServiceAccount's own values it refuses, and nothing else of it.
    AdmittedOnly,
}

/// Evaluates `policy` for `request` and words the findings as `disclosure` allows.
pub fn evaluate_for(
    policy: &PolicyDocument,
    request: &WebIdentityRequest,
    disclosure: Disclosure,
) -> TrustVerdict {
    let verdict = evaluate(policy, request);
    if disclosure == Disclosure::Full || verdict.admits() {
        return verdict;
    }
    let mut findings: Vec<TrustFinding> = verdict
        .findings
        .iter()
        .map(|f| TrustFinding {
            reason: f.reason,
            message: withheld(f.reason, request),
        })
        .collect();
    dedup(&mut findings);
    TrustVerdict {
        allowed: verdict.allowed,
        findings,
    }
}

/// Appended to every message about a policy that does not admit the ServiceAccount.
pub const WITHHELD: &str =
    "the rest of the trust policy is not shown, since the role does not trust this \
     ServiceAccount (irsa-doctor check, with AWS credentials that may read the role, shows it)";

/// What a finding on a policy that does not admit the ServiceAccount says: only what this
/// ServiceAccount's own token presents (its subject, audience, this cluster's provider) and which
/// of these the policy refuses, by reason. Built from the request alone, so nothing of the policy
/// can slip in.
pub fn withheld(reason: Reason, request: &WebIdentityRequest) -> String {
    let subject = &request.subject;
    let provider = request.provider.to_string();
    let refusal = match reason {
        Reason::TrustPolicyNoWebIdentityStatement => format!(
            "no Allow statement grants {WEB_IDENTITY_ACTION} to a Federated principal; expected one with \
             Principal.Federated {provider:?}"
        ),
        Reason::TrustPolicyProviderMismatch => format!(
            "the role does not trust this cluster's OIDC provider; expected Principal.Federated {provider:?} \
             (issuer {})",
            request.issuer.url()
        ),
        Reason::TrustPolicyConditionKeyMalformed => format!(
            "the role's statement for this cluster's provider conditions on a key this cluster's tokens do \
             not carry, so it never admits {subject:?}; expected {:?} and {:?}",
            request.issuer.condition_key("sub"),
            request.issuer.condition_key("aud")
        ),
        Reason::TrustPolicySubjectMismatch => {
            format!("the role does not trust this ServiceAccount: its :sub condition does not admit {subject:?}")
        }
        Reason::TrustPolicyAudienceMismatch => format!(
            "the role does not admit this ServiceAccount's token audience {:?}",
            request.audience
        ),
        Reason::TrustPolicyWildcardWithoutLike => format!(
            "a condition compares a value with * or ? literally (not with StringLike), so it never matches \
             {subject:?}"
        ),
        Reason::TrustPolicyExplicitDeny => format!(
            "a Deny statement matches {subject:?}; an explicit Deny overrides every Allow"
        ),
        _ => format!("the role does not trust {subject:?}"),
    };
    format!("{refusal}; {WITHHELD}")
}

/// Evaluates `policy` for `request` as STS would, and explains the outcome.
pub fn evaluate(policy: &PolicyDocument, request: &WebIdentityRequest) -> TrustVerdict {
    let provider = request.provider.to_string();
    let matches = |st: &Statement| statement_matches(st, request, &provider);
    let deny = any_of(policy, Effect::Deny, matches);
    let allow = any_of(policy, Effect::Allow, matches);
    let allowed = !deny & allow;
    let mut findings = Vec::new();
    if deny == Tri::True {
        findings.extend(explain_denies(policy, request, &provider));
    }
    match allowed {
        Tri::True => findings.extend(warnings(policy, request, &provider)),
        Tri::False if allow == Tri::False => {
            findings.extend(explain_no_allow(policy, request, &provider))
        }
        Tri::False => {}
        Tri::Unknown => findings.push(unverifiable(policy, request, &provider)),
    }
    dedup(&mut findings);
    TrustVerdict { allowed, findings }
}

fn any_of(policy: &PolicyDocument, effect: Effect, matches: impl Fn(&Statement) -> Tri) -> Tri {
    policy
        .statements
        .iter()
        .filter(|s| s.effect == effect)
        .fold(Tri::False, |acc, s| acc | matches(s))
}

fn statement_matches(st: &Statement, request: &WebIdentityRequest, provider: &str) -> Tri {
    if !action_admits(&st.action) || !principal_admits(&st.principal, provider) {
        return Tri::False;
    }
    conditions_hold(st, request)
}

fn conditions_hold(st: &Statement, request: &WebIdentityRequest) -> Tri {
    st.conditions.iter().fold(Tri::True, |acc, c| {
        acc & c.evaluate(&request.key_value(&c.key))
    })
}

/// Whether `Action`/`NotAction` covers `sts:AssumeRoleWithWebIdentity` (case-insensitive, wildcards).
pub fn action_admits(spec: &ActionSpec) -> bool {
    let covers = |patterns: &[String]| {
        patterns
            .iter()
            .any(|p| WildMatch::new_case_insensitive(p).matches(WEB_IDENTITY_ACTION))
    };
    match spec {
        ActionSpec::Action(p) => covers(p),
        ActionSpec::NotAction(p) => !covers(p),
    }
}

fn principal_admits(principals: &Principals, provider: &str) -> bool {
    match principals {
        Principals::Any => true,
        Principals::Typed(_) => principals.of_type("Federated").any(|f| f == provider),
    }
}

/// A statement that is meant for web identity: it allows the action to a federated principal.
fn is_web_identity_candidate(st: &Statement) -> bool {
    let federated = match &st.principal {
        Principals::Any => true,
        p => p.of_type("Federated").next().is_some(),
    };
    st.effect == Effect::Allow && action_admits(&st.action) && federated
}

fn explain_no_allow(
    policy: &PolicyDocument,
    request: &WebIdentityRequest,
    provider: &str,
) -> Vec<TrustFinding> {
    let candidates: Vec<&Statement> = policy
        .statements
        .iter()
        .filter(|s| is_web_identity_candidate(s))
        .collect();
    if candidates.is_empty() {
        let found: Vec<String> = policy
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .map(describe_allow)
            .collect();
        let found = if found.is_empty() {
            "it has no Allow statement".to_string()
        } else {
            found.join("; ")
        };
        return vec![TrustFinding {
            reason: Reason::TrustPolicyNoWebIdentityStatement,
            message: format!(
                "no Allow statement grants {WEB_IDENTITY_ACTION} to a Federated principal ({found}); expected one with \
                 Principal.Federated {provider:?}"
            ),
        }];
    }
    let (principal_ok, others): (Vec<&Statement>, Vec<&Statement>) = candidates
        .into_iter()
        .partition(|s| principal_admits(&s.principal, provider));
    if principal_ok.is_empty() {
        return others
            .iter()
            .map(|s| provider_mismatch(s, &request.provider))
            .collect();
    }
    principal_ok
        .iter()
        .flat_map(|s| explain_conditions(s, request))
        .collect()
}

/// `statement 1 allows ["sts:AssumeRole"] to Service`: what an Allow statement grants, for messages.
fn describe_allow(st: &Statement) -> String {
    let actions = match &st.action {
        ActionSpec::Action(a) => format!("{a:?}"),
        ActionSpec::NotAction(a) => format!("everything but {a:?}"),
    };
    let principals = match &st.principal {
        Principals::Any => "anyone".to_string(),
        Principals::Typed(t) => t
            .iter()
            .map(|(kind, _)| kind.as_str())
            .collect::<Vec<_>>()
            .join(" and "),
    };
    format!("{} allows {actions} to {principals}", st.label())
}

fn provider_mismatch(st: &Statement, expected: &OidcProviderArn) -> TrustFinding {
    let details: Vec<String> = st
        .principal
        .of_type("Federated")
        .map(|f| format!("{f:?} ({})", provider_difference(f, expected)))
        .collect();
    let found_text = format!("trusts {}", details.join(" and "));
    TrustFinding {
        reason: Reason::TrustPolicyProviderMismatch,
        message: format!(
            "{} {found_text}; expected Principal.Federated {:?}",
            st.label(),
            expected.to_string()
        ),
    }
}

/// Says which of partition, account, region and issuer id differ between two provider ARNs.
fn provider_difference(found: &str, expected: &OidcProviderArn) -> String {
    let Ok(found) = OidcProviderArn::parse(found) else {
        return "not an IAM OIDC provider ARN".to_string();
    };
    let mut parts = Vec::new();
    if found.partition != expected.partition {
        parts.push(format!(
            "partition {} instead of {}",
            found.partition, expected.partition
        ));
    }
    if found.account != expected.account {
        parts.push(format!(
            "account {} instead of {}",
            found.account, expected.account
        ));
    }
    if !found.host_path.eq_ignore_ascii_case(&expected.host_path) {
        match (eks_parts(&found.host_path), eks_parts(&expected.host_path)) {
            (Some(f), Some(e)) => {
                if !f.region.eq_ignore_ascii_case(e.region) {
                    parts.push(format!("region {} instead of {}", f.region, e.region));
                }
                if f.id != e.id {
                    parts.push(format!("issuer id {} instead of {}", f.id, e.id));
                }
            }
            _ => parts.push(format!(
                "issuer {} instead of {}",
                found.host_path, expected.host_path
            )),
        }
    } else if found.host_path != expected.host_path {
        parts.push("the issuer differs in letter case".to_string());
    }
    if parts.is_empty() {
        "identical text; check for invisible characters".to_string()
    } else {
        parts.join(", ")
    }
}

/// Why the conditions of a statement whose principal and action match do not hold.
fn explain_conditions(st: &Statement, request: &WebIdentityRequest) -> Vec<TrustFinding> {
    st.conditions
        .iter()
        .filter(|c| c.evaluate(&request.key_value(&c.key)) == Tri::False)
        .map(|c| explain_condition(st, c, request))
        .collect()
}

fn explain_condition(st: &Statement, c: &Condition, request: &WebIdentityRequest) -> TrustFinding {
    let label = st.label();
    let op = &c.operator.name;
    let key = &c.key;
    let (reason, claim_value) = match classify_key(key, &request.issuer) {
        KeyKind::Subject => (Reason::TrustPolicySubjectMismatch, &request.subject),
        KeyKind::Audience => (Reason::TrustPolicyAudienceMismatch, &request.audience),
        KeyKind::Malformed { problem } => {
            return TrustFinding {
                reason: Reason::TrustPolicyConditionKeyMalformed,
                message: format!(
                    "{label}: condition key {key:?} {problem}, so it is never in the request and {op} fails; \
                     expected {:?} or {:?}",
                    request.issuer.condition_key("sub"),
                    request.issuer.condition_key("aud")
                ),
            }
        }
        KeyKind::OtherClaim(claim) => {
            return TrustFinding {
                reason: Reason::TrustPolicyConditionKeyMalformed,
                message: format!(
                    "{label}: {op} on {key:?} needs the {claim:?} claim, which EKS service-account tokens \
                     do not carry; condition on :sub and :aud instead"
                ),
            }
        }
        KeyKind::Global => {
            return TrustFinding {
                reason: Reason::TrustPolicyProviderMismatch,
                message: format!(
                    "{label}: {op} on {key:?} admits {:?}, but the token's provider is {:?}",
                    c.values,
                    request.provider.to_string()
                ),
            }
        }
    };
    let base = c.operator.base;
    let literal_wildcard = c
        .values
        .iter()
        .filter(|_| !base.is_like() && !base.is_negated())
        .find(|v| v.contains(['*', '?']) && like(v, claim_value));
    if let Some(value) = literal_wildcard {
        return TrustFinding {
            reason: Reason::TrustPolicyWildcardWithoutLike,
            message: format!(
                "{label}: {op} compares {value:?} literally, so the wildcard never matches {claim_value:?}; \
                 use StringLike for patterns"
            ),
        };
    }
    let verb = if base.is_negated() {
        "excludes"
    } else {
        "admits"
    };
    TrustFinding {
        reason,
        message: format!(
            "{label}: {op} on {key:?} {verb} {}; this ServiceAccount's token has {claim_value:?}",
            quote_list(&c.values)
        ),
    }
}

fn quote_list(values: &[String]) -> String {
    match values {
        [one] => format!("{one:?}"),
        many => format!("{many:?}"),
    }
}

fn explain_denies(
    policy: &PolicyDocument,
    request: &WebIdentityRequest,
    provider: &str,
) -> Vec<TrustFinding> {
    policy
        .statements
        .iter()
        .filter(|s| {
            s.effect == Effect::Deny && statement_matches(s, request, provider) == Tri::True
        })
        .map(|s| TrustFinding {
            reason: Reason::TrustPolicyExplicitDeny,
            message: format!(
                "{} denies {WEB_IDENTITY_ACTION} to {:?}{}; an explicit Deny overrides every Allow",
                s.label(),
                request.subject,
                condition_summary(&s.conditions)
            ),
        })
        .collect()
}

fn condition_summary(conditions: &[Condition]) -> String {
    if conditions.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = conditions
        .iter()
        .map(|c| format!("{} {} {}", c.operator.name, c.key, quote_list(&c.values)))
        .collect();
    format!(" (matching {})", parts.join(" and "))
}

fn unverifiable(
    policy: &PolicyDocument,
    request: &WebIdentityRequest,
    provider: &str,
) -> TrustFinding {
    let undecided: Vec<String> = policy
        .statements
        .iter()
        .filter(|s| statement_matches(s, request, provider) == Tri::Unknown)
        .flat_map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.evaluate(&request.key_value(&c.key)) == Tri::Unknown)
                .map(move |c| format!("{}: {} on {:?}", s.label(), c.operator.name, c.key))
        })
        .collect();
    TrustFinding {
        reason: Reason::TrustPolicyConditionUnverifiable,
        message: format!(
            "the verdict depends on {}, which irsa-doctor cannot evaluate without the live request",
            undecided.join("; ")
        ),
    }
}

/// Warnings for a policy that admits the ServiceAccount: does it admit others too?
fn warnings(
    policy: &PolicyDocument,
    request: &WebIdentityRequest,
    provider: &str,
) -> Vec<TrustFinding> {
    let sub_key = request.issuer.condition_key("sub");
    let allowing = policy.statements.iter().filter(|s| {
        s.effect == Effect::Allow && statement_matches(s, request, provider) == Tri::True
    });
    let mut findings = Vec::new();
    for st in allowing {
        let pinning: Vec<&Condition> = st
            .conditions
            .iter()
            .filter(|c| {
                classify_key(&c.key, &request.issuer) == KeyKind::Subject
                    && !c.operator.base.is_negated()
                    && c.operator.base != crate::condition::BaseOperator::Null
            })
            .collect();
        if pinning.is_empty() {
            findings.push(TrustFinding {
                reason: Reason::TrustPolicyNoSubjectCondition,
                message: format!(
                    "{} has no condition on {sub_key:?}, so every ServiceAccount of the cluster may assume the \
                     role; add StringEquals {sub_key:?}: {:?}",
                    st.label(),
                    request.subject
                ),
            });
            continue;
        }
        // Narrow only if one pinning condition admits nothing but exact values: a pattern next
        // to an exact value in the same list still admits other ServiceAccounts.
        let exact = pinning.iter().any(|c| {
            c.values
                .iter()
                .all(|v| !(c.operator.base.is_like() && v.contains(['*', '?'])))
        });
        if !exact {
            let patterns: Vec<&String> = pinning
                .iter()
                .flat_map(|c| c.values.iter())
                .filter(|v| v.contains(['*', '?']) && like(v, &request.subject))
                .collect();
            findings.push(TrustFinding {
                reason: Reason::TrustPolicySubjectTooBroad,
                message: format!(
                    "{} admits {:?} through the pattern {patterns:?}, which matches other ServiceAccounts too; \
                     list the exact subjects instead",
                    st.label(),
                    request.subject
                ),
            });
        }
    }
    findings
}

fn dedup(findings: &mut Vec<TrustFinding>) {
    let mut seen = std::collections::HashSet::new();
    findings.retain(|f| seen.insert((f.reason, f.message.clone())));
}

#[cfg(test)]
mod tests {
    use super::*;

    const HP: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

    fn request(ns: &str, name: &str) -> WebIdentityRequest {
        let issuer = Issuer::parse(HP).unwrap();
        let role = RoleArn::parse("arn:aws:iam::111122223333:role/r").unwrap();
        WebIdentityRequest::new(&issuer, &role, ns, name, "sts.amazonaws.com")
    }

    fn policy(statements: &str) -> PolicyDocument {
        PolicyDocument::parse(&format!(
            r#"{{"Version":"2012-10-17","Statement":{statements}}}"#
        ))
        .unwrap()
    }

    fn web_identity(condition: &str) -> String {
        format!(
            r#"{{"Effect":"Allow","Principal":{{"Federated":"arn:aws:iam::111122223333:oidc-provider/{HP}"}},
               "Action":"sts:AssumeRoleWithWebIdentity","Condition":{condition}}}"#
        )
    }

    fn reasons(v: &TrustVerdict) -> Vec<Reason> {
        v.findings.iter().map(|f| f.reason).collect()
    }

    #[test]
    fn exact_subject_and_audience_allow_without_findings() {
        let p = policy(&web_identity(&format!(
            r#"{{"StringEquals":{{"{HP}:sub":"system:serviceaccount:a:b","{HP}:aud":"sts.amazonaws.com"}}}}"#
        )));
        let v = evaluate(&p, &request("a", "b"));
        assert_eq!(v.allowed, Tri::True);
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        let other = evaluate(&p, &request("a", "c"));
        assert_eq!(other.allowed, Tri::False);
        assert_eq!(reasons(&other), [Reason::TrustPolicySubjectMismatch]);
        assert!(other.findings[0]
            .message
            .contains("system:serviceaccount:a:c"));
    }

    #[test]
    fn no_web_identity_statement_says_what_the_policy_allows() {
        let p = policy(&format!(
            r#"[{{"Effect":"Allow","Principal":{{"Federated":"arn:aws:iam::111122223333:oidc-provider/{HP}"}},"Action":"sts:AssumeRole"}}]"#
        ));
        let v = evaluate(&p, &request("a", "b"));
        assert_eq!(reasons(&v), [Reason::TrustPolicyNoWebIdentityStatement]);
        assert!(
            v.findings[0]
                .message
                .contains(r#"statement 1 allows ["sts:AssumeRole"] to Federated"#),
            "{}",
            v.findings[0].message
        );
    }

    #[test]
    fn classifies_condition_keys() {
        let issuer = Issuer::parse(HP).unwrap();
        assert_eq!(
            classify_key(&format!("{HP}:sub"), &issuer),
            KeyKind::Subject
        );
        assert_eq!(
            classify_key(&format!("{}:SUB", HP.to_uppercase()), &issuer),
            KeyKind::Subject
        );
        assert_eq!(classify_key("aws:SourceIp", &issuer), KeyKind::Global);
        let https = classify_key(&format!("https://{HP}:sub"), &issuer);
        assert!(matches!(https, KeyKind::Malformed { problem } if problem.contains("https://")));
        let typo = classify_key(&format!("{HP}:sbu"), &issuer);
        assert!(
            matches!(typo, KeyKind::Malformed { problem } if problem.contains("did you mean \":sub\""))
        );
        let other = classify_key(
            "oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:sub",
            &issuer,
        );
        assert!(
            matches!(other, KeyKind::Malformed { problem } if problem.contains("region us-west-2 instead of us-east-1"))
        );
    }

    #[test]
    fn unknowable_context_yields_unknown_not_false() {
        let p = policy(&web_identity(&format!(
            r#"{{"StringEquals":{{"{HP}:sub":"system:serviceaccount:a:b"}},"IpAddress":{{"aws:SourceIp":"10.0.0.0/8"}}}}"#
        )));
        let v = evaluate(&p, &request("a", "b"));
        assert_eq!(v.allowed, Tri::Unknown);
        assert_eq!(reasons(&v), [Reason::TrustPolicyConditionUnverifiable]);
        // A subject mismatch is still a definite refusal whatever the unknowable key says.
        assert_eq!(evaluate(&p, &request("a", "x")).allowed, Tri::False);
    }

    /// What an operator's finding on a role that does not trust the ServiceAccount may not show.
    const SECRETS: [&str; 5] = [
        "secret-app",
        "other:",
        "OTHERCLUSTER0000000000000000000",
        "TeamSecret",
        "10.0.0.0",
    ];

    fn other_provider() -> String {
        "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/OTHERCLUSTER0000000000000000000".to_string()
    }

    fn assert_discloses_nothing(v: &TrustVerdict) {
        assert!(!v.findings.is_empty());
        for f in &v.findings {
            for secret in SECRETS {
                assert!(!f.message.contains(secret), "{secret:?} in {:?}", f.message);
            }
            // No statement is pointed at: its number or Sid is the policy's text too.
            assert!(!f.message.contains("statement 1"), "{}", f.message);
            assert!(f.message.contains(WITHHELD), "{}", f.message);
        }
    }

    #[test]
    fn a_policy_for_another_cluster_is_not_described_to_the_operator_s_readers() {
        let p = policy(&format!(
            r#"[{{"Sid":"TeamSecret","Effect":"Allow","Principal":{{"Federated":"{}"}},
                "Action":"sts:AssumeRoleWithWebIdentity",
                "Condition":{{"StringEquals":{{"oidc.eks.eu-west-1.amazonaws.com/id/OTHERCLUSTER0000000000000000000:sub":"system:serviceaccount:other:secret-app"}}}}}}]"#,
            other_provider()
        ));
        let request = request("a", "b");
        let full = evaluate_for(&p, &request, Disclosure::Full);
        assert_eq!(full, evaluate(&p, &request));
        assert_eq!(reasons(&full), [Reason::TrustPolicyProviderMismatch]);
        assert!(full.findings[0].message.contains("OTHERCLUSTER"));
        let withheld = evaluate_for(&p, &request, Disclosure::AdmittedOnly);
        assert_eq!(withheld.allowed, Tri::False);
        assert_eq!(reasons(&withheld), [Reason::TrustPolicyProviderMismatch]);
        assert_discloses_nothing(&withheld);
        // It says which provider it expected: this cluster's, the reader's own.
        assert!(
            withheld.findings[0]
                .message
                .contains(&request.provider.to_string()),
            "{}",
            withheld.findings[0].message
        );
    }

    #[test]
    fn another_subject_deny_and_key_values_are_not_quoted_when_the_policy_refuses() {
        let request = request("a", "b");
        let cases = [
            (
                web_identity(&format!(
                    r#"{{"StringEquals":{{"{HP}:sub":["system:serviceaccount:other:secret-app"]}}}}"#
                )),
                Reason::TrustPolicySubjectMismatch,
            ),
            (
                web_identity(&format!(
                    r#"{{"StringEquals":{{"{HP}:sub":"system:serviceaccount:a:b","{HP}:aud":"other:secret-app"}}}}"#
                )),
                Reason::TrustPolicyAudienceMismatch,
            ),
            (
                web_identity(
                    r#"{"StringEquals":{"oidc.eks.eu-west-1.amazonaws.com/id/OTHERCLUSTER0000000000000000000:sub":"system:serviceaccount:other:secret-app"}}"#,
                ),
                Reason::TrustPolicyConditionKeyMalformed,
            ),
            (
                web_identity(&format!(
                    r#"{{"StringEquals":{{"{HP}:sub":"system:serviceaccount:a:*"}}}}"#
                )),
                Reason::TrustPolicyWildcardWithoutLike,
            ),
        ];
        for (statement, reason) in cases {
            let p = policy(&format!("[{statement}]"));
            let v = evaluate_for(&p, &request, Disclosure::AdmittedOnly);
            assert_eq!(reasons(&v), [reason], "{statement}");
            assert_discloses_nothing(&v);
            assert!(
                v.findings[0].message.contains("system:serviceaccount:a:b")
                    || reason == Reason::TrustPolicyAudienceMismatch
            );
        }
        // An explicit Deny, with conditions, next to an Allow for this ServiceAccount.
        let p = policy(&format!(
            r#"[{},{{"Sid":"TeamSecret","Effect":"Deny","Principal":{{"Federated":"arn:aws:iam::111122223333:oidc-provider/{HP}"}},
               "Action":"sts:AssumeRoleWithWebIdentity","Condition":{{"StringNotLike":{{"{HP}:sub":"system:serviceaccount:other:secret-app"}}}}}}]"#,
            web_identity(&format!(
                r#"{{"StringEquals":{{"{HP}:sub":"system:serviceaccount:a:b"}}}}"#
            ))
        ));
        let v = evaluate_for(&p, &request, Disclosure::AdmittedOnly);
        assert_eq!(reasons(&v), [Reason::TrustPolicyExplicitDeny]);
        assert_discloses_nothing(&v);
        assert!(evaluate(&p, &request).findings[0]
            .message
            .contains("secret-app"));
    }

    #[test]
    fn a_policy_that_admits_the_service_account_is_described_in_full() {
        // Admitted with a warning: the pattern is the reader's own business.
        let p = policy(&web_identity(&format!(
            r#"{{"StringLike":{{"{HP}:sub":"system:serviceaccount:a:*"}}}}"#
        )));
        let request = request("a", "b");
        let v = evaluate_for(&p, &request, Disclosure::AdmittedOnly);
        assert!(v.admits());
        assert_eq!(v, evaluate(&p, &request));
        assert_eq!(reasons(&v), [Reason::TrustPolicySubjectTooBroad]);
        assert!(v.findings[0].message.contains("system:serviceaccount:a:*"));
        // Unknown (request context decides) does not admit: nothing of the policy is quoted.
        let p = policy(&web_identity(&format!(
            r#"{{"StringEquals":{{"{HP}:sub":"system:serviceaccount:a:b"}},"IpAddress":{{"aws:SourceIp":"10.0.0.0/8"}}}}"#
        )));
        let v = evaluate_for(&p, &request, Disclosure::AdmittedOnly);
        assert_eq!(v.allowed, Tri::Unknown);
        assert!(!v.admits());
        assert!(!evaluate(&p, &super::tests::request("a", "c")).admits());
        // Every principal, under a condition that cannot be evaluated offline: not admitted, so
        // neither the organisation id nor anything else of the policy reaches any ServiceAccount.
        let anyone = policy(
            r#"[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRoleWithWebIdentity",
               "Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-secret123"}}}]"#,
        );
        let v = evaluate_for(
            &anyone,
            &super::tests::request("x", "y"),
            Disclosure::AdmittedOnly,
        );
        assert_ne!(v.allowed, Tri::True);
        assert!(!v.admits());
        assert!(
            v.findings
                .iter()
                .all(|f| !f.message.contains("o-secret123")),
            "{v:?}"
        );
    }

    /// The whole report the operator writes (status, Events) for a ServiceAccount whose role
    /// trusts another namespace's ServiceAccount through another cluster's provider: nothing of
    /// the policy, and no permission verdicts even when some were gathered.
    #[test]
    fn the_operator_s_report_on_a_role_that_refuses_quotes_nothing_of_it() {
        use crate::diagnose::{diagnose, diagnose_with, trust_admits};
        use crate::facts::{
            Fact, Facts, PermissionDecision, PermissionRequest, PermissionVerdict, Role,
        };
        use crate::report::Status;
        use crate::{ConditionType, ServiceAccount};

        let role = "arn:aws:iam::111122223333:role/victim";
        let sa = ServiceAccount {
            namespace: "a".into(),
            name: "b".into(),
            annotations: [("eks.amazonaws.com/role-arn".to_string(), role.to_string())].into(),
            ..Default::default()
        };
        let trust = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"TeamSecret","Effect":"Allow","Principal":{{"Federated":"{}"}},
               "Action":"sts:AssumeRoleWithWebIdentity",
               "Condition":{{"StringEquals":{{"oidc.eks.eu-west-1.amazonaws.com/id/OTHERCLUSTER0000000000000000000:sub":"system:serviceaccount:other:secret-app"}}}}}}]}}"#,
            other_provider()
        );
        let request = PermissionRequest {
            action: "s3:GetObject".into(),
            resource: "*".into(),
        };
        let mut facts = Facts::offline(sa, Issuer::parse(HP).unwrap(), None, |_| {
            Some(trust.clone())
        });
        facts.permission_requests = vec![request.clone()];
        facts.permissions = Fact::Known(vec![PermissionVerdict {
            request,
            decision: PermissionDecision::ExplicitDeny,
            matched_statements: vec!["secret-app-policy".into()],
        }]);
        assert_eq!(trust_admits(&facts), Some(false));
        let report = diagnose_with(&facts, Disclosure::AdmittedOnly);
        let text = serde_json::to_string(&report).unwrap();
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret:?} in {text}");
        }
        assert_eq!(report.ready().reason, Reason::TrustPolicyProviderMismatch);
        let permissions = report.condition(ConditionType::PermissionsValid).unwrap();
        assert_eq!(
            (permissions.status, permissions.reason),
            (Status::Unknown, Reason::NotEvaluated)
        );
        // lint and check (the caller's own files and credentials) say everything.
        let full = serde_json::to_string(&diagnose(&facts)).unwrap();
        assert!(full.contains("OTHERCLUSTER0000000000000000000"), "{full}");
        // A role that admits the ServiceAccount is described, and its permissions evaluated.
        facts.role = Fact::Known(Some(Role {
            trust_policy: format!(
                r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
                web_identity(&format!(
                    r#"{{"StringEquals":{{"{HP}:sub":"system:serviceaccount:a:b"}}}}"#
                ))
            ),
        }));
        assert_eq!(trust_admits(&facts), Some(true));
        let admitted = diagnose_with(&facts, Disclosure::AdmittedOnly);
        assert_eq!(admitted.ready().reason, Reason::PermissionDenied);
        assert!(serde_json::to_string(&admitted)
            .unwrap()
            .contains("secret-app-policy"));
    }

    #[test]
    fn a_role_outside_the_allowed_patterns_is_not_allowed_and_nothing_needing_it_runs() {
        use crate::diagnose::{diagnose, trust_admits};
        use crate::facts::{AllowedRoles, Facts, RoleArnPattern};
        use crate::report::Status;
        use crate::{ConditionType, ServiceAccount};

        let sa = |role: &str| ServiceAccount {
            namespace: "a".into(),
            name: "b".into(),
            annotations: [("eks.amazonaws.com/role-arn".to_string(), role.to_string())].into(),
            ..Default::default()
        };
        let allowed = AllowedRoles::new(vec![
            RoleArnPattern::parse("arn:aws:iam::*:role/irsa/*").unwrap()
        ]);
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
            web_identity(&format!(
                r#"{{"StringEquals":{{"{HP}:sub":"system:serviceaccount:a:b"}}}}"#
            ))
        );
        let facts_for = |role: &str| {
            let mut f = Facts::offline(sa(role), Issuer::parse(HP).unwrap(), None, |_| {
                Some(policy.clone())
            });
            f.allowed_roles = allowed.clone();
            f
        };
        let outside = facts_for("arn:aws:iam::111122223333:role/victim");
        assert_eq!(trust_admits(&outside), None);
        let report = diagnose(&outside);
        let sa_valid = report
            .condition(ConditionType::ServiceAccountValid)
            .unwrap();
        assert_eq!(
            (sa_valid.status, sa_valid.reason),
            (Status::False, Reason::RoleNotAllowed)
        );
        assert!(sa_valid.message.contains("arn:aws:iam::*:role/irsa/*"));
        let trust = report.condition(ConditionType::TrustPolicyValid).unwrap();
        assert_eq!(trust.reason, Reason::NotEvaluated);
        assert!(
            trust.message.contains("--allowed-role-arns"),
            "{}",
            trust.message
        );
        assert_eq!(report.ready().reason, Reason::RoleNotAllowed);
        // A role the patterns admit is diagnosed as usual.
        let inside = diagnose(&facts_for("arn:aws:iam::111122223333:role/irsa/app"));
        assert_eq!(
            inside
                .condition(ConditionType::TrustPolicyValid)
                .unwrap()
                .reason,
            Reason::TrustPolicyAllows
        );
    }
}
