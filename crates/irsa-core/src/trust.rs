//! Trust evaluation: would STS let a pod of this ServiceAccount call `AssumeRoleWithWebIdentity`
//! on this role, and if not, why. IAM's rules: explicit Deny wins, every condition of a statement
//! must hold, any value of a key may match.

use wildmatch::WildMatch;

use crate::arn::{OidcProviderArn, RoleArn};
use crate::condition::{like, Condition, KeyValue, Tri};
use crate::issuer::{eks_parts, Issuer};
use crate::policy::{ActionSpec, Effect, PolicyDocument, Principals, Statement};
use crate::reason::Reason;

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
}
