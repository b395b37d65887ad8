//! `sts:AssumeRole` by a principal that is not a web identity: the EKS Pod Identity Agent's
//! service principal (`pods.eks.amazonaws.com`) assuming an association's role, and that role's
//! session assuming an association's target role (role chaining). Every action the caller needs
//! must be allowed and none denied, with the request context the caller presents: the keys it
//! is known to carry, the session tags it sets (or none, when session tags are disabled).

use std::collections::BTreeMap;

use wildmatch::WildMatch;

use super::{dedup, TrustFinding, TrustVerdict};
use crate::arn::RoleArn;
use crate::condition::{KeyValue, Tri};
use crate::policy::{ActionSpec, Effect, PolicyDocument, Principals, Statement};
use crate::reason::Reason;

/// Who calls `sts:AssumeRole`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A service principal, e.g. `pods.eks.amazonaws.com`.
    Service(String),
    /// A session of this role (role chaining).
    Role(RoleArn),
}

impl Caller {
    /// Whether a statement's `Principal` names this caller: the service, or the role, its
    /// account (`arn:…:root` or the bare account id), or anyone.
    fn named_by(&self, principals: &Principals) -> bool {
        match (self, principals) {
            (_, Principals::Any) => true,
            (Caller::Service(service), p) => p
                .of_type("Service")
                .any(|s| s.eq_ignore_ascii_case(service)),
            (Caller::Role(role), p) => {
                let root = format!("arn:{}:iam::{}:root", role.partition(), role.account());
                let arn = role.to_string();
                p.of_type("AWS")
                    .any(|a| a == "*" || a == arn || a == root || a == role.account())
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Caller::Service(s) => format!("the service principal {s:?}"),
            Caller::Role(r) => format!("role {r}"),
        }
    }
}

/// The session tags a caller sets on the session it asks for, by tag key (lower case); `None`
/// as a value: the tag is set, but its value differs from call to call (a pod's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionTags {
    /// No tags: `aws:RequestTag/…`, `aws:PrincipalTag/…` and `aws:TagKeys` are absent.
    Disabled,
    /// These tags, as `aws:RequestTag/<key>` (and, for a role session's caller, as
    /// `aws:PrincipalTag/<key>`).
    Set(BTreeMap<String, Option<String>>),
}

/// What a caller presents to STS for `sts:AssumeRole` on one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleRequest {
    /// Who calls.
    pub caller: Caller,
    /// Every action the caller needs, e.g. `sts:AssumeRole` and `sts:TagSession`.
    pub actions: Vec<String>,
    /// Condition keys known to be in the request (keys in lower case); any other `aws:` or
    /// `sts:` key is unknowable offline.
    pub known: BTreeMap<String, String>,
    /// The session tags set on the request.
    pub tags: SessionTags,
}

const REQUEST_TAG: &str = "aws:requesttag/";
const PRINCIPAL_TAG: &str = "aws:principaltag/";

impl AssumeRoleRequest {
    /// What the request context holds for a condition key.
    pub fn key_value(&self, key: &str) -> KeyValue {
        let lower = key.to_ascii_lowercase();
        if let Some(value) = self.known.get(&lower) {
            return KeyValue::Present(vec![value.clone()]);
        }
        let tag = lower.strip_prefix(REQUEST_TAG).or_else(|| {
            matches!(self.caller, Caller::Role(_))
                .then(|| lower.strip_prefix(PRINCIPAL_TAG))
                .flatten()
        });
        match (&self.tags, tag) {
            (SessionTags::Disabled, Some(_)) => KeyValue::Absent,
            (SessionTags::Disabled, None) if lower == "aws:tagkeys" => KeyValue::Absent,
            (SessionTags::Set(tags), Some(tag)) => match tags.get(tag) {
                Some(Some(value)) => KeyValue::Present(vec![value.clone()]),
                Some(None) => KeyValue::Unknowable,
                None => KeyValue::Absent,
            },
            (SessionTags::Set(tags), None) if lower == "aws:tagkeys" => {
                KeyValue::Present(tags.keys().cloned().collect())
            }
            _ => KeyValue::Unknowable,
        }
    }

    /// Whether a condition key is a session tag's: what disabling session tags takes away.
    pub fn is_tag_key(&self, key: &str) -> bool {
        let lower = key.to_ascii_lowercase();
        lower.starts_with(REQUEST_TAG) || lower.starts_with(PRINCIPAL_TAG) || lower == "aws:tagkeys"
    }
}

/// Whether `Action`/`NotAction` covers `action` (case-insensitive, wildcards).
pub fn action_covers(spec: &ActionSpec, action: &str) -> bool {
    let covers = |patterns: &[String]| {
        patterns
            .iter()
            .any(|p| WildMatch::new_case_insensitive(p).matches(action))
    };
    match spec {
        ActionSpec::Action(p) => covers(p),
        ActionSpec::NotAction(p) => !covers(p),
    }
}

fn statement_matches(st: &Statement, request: &AssumeRoleRequest, action: &str) -> Tri {
    if !request.caller.named_by(&st.principal) || !action_covers(&st.action, action) {
        return Tri::False;
    }
    st.conditions.iter().fold(Tri::True, |acc, c| {
        acc & c.evaluate(&request.key_value(&c.key))
    })
}

fn any_of(policy: &PolicyDocument, effect: Effect, matches: impl Fn(&Statement) -> Tri) -> Tri {
    policy
        .statements
        .iter()
        .filter(|s| s.effect == effect)
        .fold(Tri::False, |acc, s| acc | matches(s))
}

/// The reasons a refusal is told with: a service principal's trust is the association role's
/// (`PodIdentityTrustMissing*`), a role session's is the target role's.
fn refusal_reason(caller: &Caller, tag_session_only: bool) -> Reason {
    match caller {
        Caller::Service(_) if tag_session_only => Reason::PodIdentityTrustMissingTagSession,
        Caller::Service(_) => Reason::PodIdentityTrustMissingService,
        Caller::Role(_) => Reason::PodIdentityTargetTrustDenies,
    }
}

/// Evaluates a trust policy for `request`, as STS would for each of its actions: every one must
/// be allowed and none denied. Findings quote nothing of the policy but which of the required
/// actions it grants the caller, and which conditions it sets on what the caller presents.
pub fn evaluate_assume_role(policy: &PolicyDocument, request: &AssumeRoleRequest) -> TrustVerdict {
    let caller = request.caller.describe();
    let mut allowed = Tri::True;
    let mut findings = Vec::new();
    let mut missing = Vec::new();
    for action in &request.actions {
        let matches = |st: &Statement| statement_matches(st, request, action);
        let deny = any_of(policy, Effect::Deny, matches);
        let allow = any_of(policy, Effect::Allow, matches);
        allowed = allowed & (!deny & allow);
        if deny == Tri::True {
            findings.push(TrustFinding {
                reason: Reason::TrustPolicyExplicitDeny,
                message: format!(
                    "a Deny statement denies {action} to {caller}; an explicit Deny overrides every Allow"
                ),
            });
        }
        match allow {
            Tri::False => missing.push(action.as_str()),
            Tri::Unknown if deny != Tri::True => findings.push(TrustFinding {
                reason: Reason::TrustPolicyConditionUnverifiable,
                message: format!(
                    "the statement allowing {action} to {caller} has conditions irsa-doctor cannot \
                     evaluate without the live request"
                ),
            }),
            _ => {}
        }
    }
    if !missing.is_empty() {
        let granted: Vec<&str> = request
            .actions
            .iter()
            .map(String::as_str)
            .filter(|a| !missing.contains(a))
            .collect();
        let tag_only = !granted.is_empty()
            && missing
                .iter()
                .all(|a| a.eq_ignore_ascii_case("sts:TagSession"));
        let refused_by = refused_conditions(policy, request);
        let granted = if granted.is_empty() {
            "none of them".to_string()
        } else {
            format!("only {granted:?}")
        };
        let principal = match &request.caller {
            Caller::Service(s) => format!("Principal.Service {s:?}"),
            Caller::Role(r) => format!("Principal.AWS {:?}", r.to_string()),
        };
        findings.push(TrustFinding {
            reason: refusal_reason(&request.caller, tag_only),
            message: format!(
                "no Allow statement grants {missing:?} to {caller} ({granted} is granted{refused_by}); \
                 expected {principal} with Action {:?}",
                request.actions
            ),
        });
    }
    dedup(&mut findings);
    TrustVerdict { allowed, findings }
}

/// `; statement 1 names the caller but its condition StringEquals on "sts:ExternalId" fails`:
/// the conditions that keep statements naming the caller from allowing, for messages.
fn refused_conditions(policy: &PolicyDocument, request: &AssumeRoleRequest) -> String {
    let failing: Vec<String> = policy
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow && request.caller.named_by(&s.principal))
        .flat_map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.evaluate(&request.key_value(&c.key)) == Tri::False)
                .map(move |c| {
                    let present = match request.key_value(&c.key) {
                        KeyValue::Present(v) => format!("the request has {}", v.join(", ")),
                        _ => "the request does not carry it".to_string(),
                    };
                    format!(
                        "{}: {} on {:?} fails ({present})",
                        s.label(),
                        c.operator.name,
                        c.key
                    )
                })
        })
        .collect();
    if failing.is_empty() {
        String::new()
    } else {
        format!("; {}", failing.join("; "))
    }
}

/// The conditions of statements naming the caller that test a session tag: what can never
/// hold when session tags are disabled.
pub fn tag_conditions(policy: &PolicyDocument, request: &AssumeRoleRequest) -> Vec<String> {
    policy
        .statements
        .iter()
        .filter(|s| request.caller.named_by(&s.principal))
        .flat_map(|s| {
            s.conditions
                .iter()
                .filter(|c| request.is_tag_key(&c.key))
                .map(move |c| format!("{}: {} on {:?}", s.label(), c.operator.name, c.key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> PolicyDocument {
        PolicyDocument::parse(json).unwrap()
    }

    fn role() -> RoleArn {
        RoleArn::parse("arn:aws:iam::111122223333:role/pi").unwrap()
    }

    fn chained(tags: SessionTags) -> AssumeRoleRequest {
        AssumeRoleRequest {
            caller: Caller::Role(role()),
            actions: vec!["sts:AssumeRole".into(), "sts:TagSession".into()],
            known: [("sts:externalid".to_string(), "ext-1".to_string())].into(),
            tags,
        }
    }

    fn tags() -> SessionTags {
        SessionTags::Set(
            [
                ("kubernetes-namespace".to_string(), Some("shop".to_string())),
                ("kubernetes-pod-name".to_string(), None),
            ]
            .into(),
        )
    }

    #[test]
    fn a_role_session_is_named_by_its_arn_its_account_or_anyone() {
        for principal in [
            r#""arn:aws:iam::111122223333:role/pi""#,
            r#""arn:aws:iam::111122223333:root""#,
            r#""111122223333""#,
            r#""*""#,
        ] {
            let p = policy(&format!(
                r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":{principal}}},"Action":["sts:AssumeRole","sts:TagSession"]}}]}}"#
            ));
            assert_eq!(
                evaluate_assume_role(&p, &chained(tags())).allowed,
                Tri::True,
                "{principal}"
            );
        }
        let other = policy(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:root"},"Action":"sts:*"}]}"#,
        );
        let v = evaluate_assume_role(&other, &chained(tags()));
        assert_eq!(v.allowed, Tri::False);
        assert_eq!(v.findings[0].reason, Reason::PodIdentityTargetTrustDenies);
    }

    #[test]
    fn external_id_and_tags_are_evaluated_and_disabled_tags_never_match() {
        let p = policy(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/pi"},
                "Action":["sts:AssumeRole","sts:TagSession"],
                "Condition":{"StringEquals":{"sts:ExternalId":"ext-1","aws:PrincipalTag/kubernetes-namespace":"shop"}}}]}"#,
        );
        assert_eq!(
            evaluate_assume_role(&p, &chained(tags())).allowed,
            Tri::True
        );
        let mut wrong = chained(tags());
        wrong
            .known
            .insert("sts:externalid".into(), "someone-else".into());
        let v = evaluate_assume_role(&p, &wrong);
        assert_eq!(v.allowed, Tri::False);
        assert!(
            v.findings[0].message.contains("sts:ExternalId")
                && v.findings[0].message.contains("someone-else"),
            "{}",
            v.findings[0].message
        );
        let mut untagged = chained(SessionTags::Disabled);
        untagged.actions.truncate(1);
        assert_eq!(evaluate_assume_role(&p, &untagged).allowed, Tri::False);
        assert_eq!(tag_conditions(&p, &untagged).len(), 1);
        // A per-pod tag cannot be known offline.
        let by_pod = policy(
            &serde_json::to_string(&serde_json::json!({
                "Statement": [{"Effect": "Allow", "Principal": {"AWS": "111122223333"},
                  "Action": ["sts:AssumeRole", "sts:TagSession"],
                  "Condition": {"StringLike": {"aws:RequestTag/kubernetes-pod-name": "api-*"}}}]
            }))
            .unwrap(),
        );
        assert_eq!(
            evaluate_assume_role(&by_pod, &chained(tags())).allowed,
            Tri::Unknown
        );
    }
}
