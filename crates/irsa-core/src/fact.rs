//! One fact and the values facts hold: a fact is either known, could not be learned (and why),
//! or was not looked for; roles, OIDC providers, permissions, the roles that may be looked up.

use std::fmt;

use wildmatch::WildMatch;

use crate::arn::{OidcProviderArn, RoleArn};
use crate::reason::Reason;

/// One fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact<T> {
    /// Learned.
    Known(T),
    /// Looked for but could not be learned: the condition it feeds becomes Unknown.
    Unavailable(Unavailable),
    /// Not looked for (no input given): the check is skipped and said so.
    Skipped(String),
}

impl<T> Fact<T> {
    /// The value when known.
    pub fn known(&self) -> Option<&T> {
        match self {
            Fact::Known(t) => Some(t),
            _ => None,
        }
    }
}

/// Why a fact could not be learned. Never a verdict on the user's setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// A reason of severity Unknown, e.g. `AwsApiUnavailable`, `AwsAccessDenied`, `ClusterIssuerUnknown`.
    pub reason: Reason,
    /// What failed, with which input.
    pub detail: String,
}

/// One `--allowed-role-arns` pattern: a role ARN in which `*` stands for any run of characters
/// (`/` included) and `?` for one, e.g. `arn:aws:iam::*:role/irsa/*`. Case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArnPattern(String);

/// Why a text is not a role ARN pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pattern:?} is not a role ARN pattern: {problem}; expected arn:<partition>:iam::<account>:role/<path/><name>, with * and ? as wildcards, e.g. arn:aws:iam::*:role/irsa/*")]
pub struct RoleArnPatternError {
    /// The text given.
    pub pattern: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl RoleArnPattern {
    /// Parses a pattern; it must have the six fields of a role ARN, each of which may use wildcards.
    pub fn parse(text: &str) -> Result<RoleArnPattern, RoleArnPatternError> {
        let pattern = text.trim();
        let error = |problem| RoleArnPatternError {
            pattern: pattern.to_string(),
            problem,
        };
        let wild = |field: &str| field.contains(['*', '?']);
        let fields: Vec<&str> = pattern.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = fields[..] else {
            return Err(error("it has fewer than six colon-separated fields"));
        };
        if arn != "arn" {
            return Err(error("it does not start with arn:"));
        }
        if partition.is_empty() {
            return Err(error("the partition is empty"));
        }
        if service != "iam" && !wild(service) {
            return Err(error("the service is not iam"));
        }
        if !region.is_empty() && !wild(region) {
            return Err(error("IAM ARNs have no region"));
        }
        if account.is_empty() {
            return Err(error("the account is empty"));
        }
        if !resource.starts_with("role/") && !resource.starts_with('*') {
            return Err(error("the resource does not start with role/"));
        }
        Ok(RoleArnPattern(pattern.to_string()))
    }

    /// Whether `arn` matches.
    pub fn matches(&self, arn: &RoleArn) -> bool {
        WildMatch::new(&self.0).matches(&arn.to_string())
    }
}

impl fmt::Display for RoleArnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The roles the operator may look up in AWS (`--allowed-role-arns`): a role that matches none
/// of the patterns is never asked about, and its ServiceAccount gets `RoleNotAllowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRoles(Vec<RoleArnPattern>);

impl AllowedRoles {
    /// The allow-list of `patterns`; `None` when there are none (every role is allowed).
    pub fn new(patterns: Vec<RoleArnPattern>) -> Option<AllowedRoles> {
        (!patterns.is_empty()).then_some(AllowedRoles(patterns))
    }

    /// Whether `arn` matches one of the patterns.
    pub fn admits(&self, arn: &RoleArn) -> bool {
        self.0.iter().any(|p| p.matches(arn))
    }
}

impl fmt::Display for AllowedRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&patterns.join(","))
    }
}

/// An IAM OIDC identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    /// Its ARN.
    pub arn: OidcProviderArn,
    /// Its client ID list (the audiences it accepts), when known.
    pub client_ids: Option<Vec<String>>,
    /// Its `ThumbprintList` (hex SHA-1 of the issuer's top certificate), when known.
    pub thumbprints: Option<Vec<String>>,
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The trust policy as IAM returns it (raw or URL-encoded JSON).
    pub trust_policy: String,
}

/// An action the role must be allowed, from `spec.permissions`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PermissionRequest {
    /// e.g. `s3:GetObject`.
    pub action: String,
    /// e.g. `arn:aws:s3:::reports/*`; `*` when not given.
    pub resource: String,
}

/// What IAM's policy simulator decided for one requested permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionDecision {
    /// Allowed.
    Allowed,
    /// No statement allows it.
    ImplicitDeny,
    /// A statement denies it.
    ExplicitDeny,
}

/// The simulator's verdict for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionVerdict {
    /// What was asked.
    pub request: PermissionRequest,
    /// What IAM decided.
    pub decision: PermissionDecision,
    /// The policies or statements IAM says matched, when it says.
    pub matched_statements: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arn(s: &str) -> RoleArn {
        RoleArn::parse(s).unwrap()
    }

    #[test]
    fn role_arn_patterns_match_with_wildcards_and_reject_what_is_not_a_role_arn() {
        let allowed = AllowedRoles::new(vec![
            RoleArnPattern::parse("arn:aws:iam::*:role/irsa/*").unwrap(),
            RoleArnPattern::parse(" arn:aws:iam::111122223333:role/app-? ").unwrap(),
        ])
        .unwrap();
        assert!(allowed.admits(&arn("arn:aws:iam::222233334444:role/irsa/s3-reader")));
        assert!(allowed.admits(&arn("arn:aws:iam::111122223333:role/irsa/team/a")));
        assert!(allowed.admits(&arn("arn:aws:iam::111122223333:role/app-1")));
        assert!(!allowed.admits(&arn("arn:aws:iam::111122223333:role/app-10")));
        assert!(!allowed.admits(&arn("arn:aws:iam::111122223333:role/admin")));
        assert!(!allowed.admits(&arn("arn:aws:iam::111122223333:role/IRSA/x")));
        assert!(!allowed.admits(&arn("arn:aws-cn:iam::111122223333:role/irsa/x")));
        assert_eq!(
            allowed.to_string(),
            "arn:aws:iam::*:role/irsa/*,arn:aws:iam::111122223333:role/app-?"
        );
        assert_eq!(AllowedRoles::new(Vec::new()), None);
        for bad in [
            "irsa/*",
            "arn:aws:s3:::bucket/*",
            "arn:aws:iam:us-east-1:1:role/x",
            "arn:aws:iam::*:user/x",
            "arn::iam::*:role/x",
        ] {
            let e = RoleArnPattern::parse(bad).unwrap_err().to_string();
            assert!(e.contains("arn:aws:iam::*:role/irsa/*"), "{bad}: {e}");
        }
    }
}
