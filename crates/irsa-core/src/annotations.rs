//! The IRSA annotations of a ServiceAccount: which keys the EKS pod identity webhook reads,
//! near-misses of them, and what their values must look like.

use std::collections::BTreeMap;

/// The annotation the webhook reads the role from.
pub const ROLE_ARN: &str = "eks.amazonaws.com/role-arn";
/// Overrides the token audience.
pub const AUDIENCE: &str = "eks.amazonaws.com/audience";
/// Token lifetime in seconds.
pub const TOKEN_EXPIRATION: &str = "eks.amazonaws.com/token-expiration";
/// Containers the webhook leaves alone (comma-separated names).
pub const SKIP_CONTAINERS: &str = "eks.amazonaws.com/skip-containers";
/// Whether pods use the regional STS endpoint (`AWS_STS_REGIONAL_ENDPOINTS=regional`).
pub const STS_REGIONAL_ENDPOINTS: &str = "eks.amazonaws.com/sts-regional-endpoints";
/// The prefix of every annotation the webhook reads.
pub const PREFIX: &str = "eks.amazonaws.com/";
/// The audience tokens carry when the SA does not set one.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
/// The shortest token lifetime the webhook accepts.
pub const MIN_TOKEN_EXPIRATION_SECONDS: i64 = 600;

/// The parts of a ServiceAccount the diagnosis reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its annotations: all of them, or (in the operator's cache) those [`is_read`] keeps.
    pub annotations: BTreeMap<String, String>,
    /// When it was created (seconds since the epoch), when known.
    pub created: Option<i64>,
    /// When its role-arn annotation was last set (its `managedFields` entry), when known.
    pub role_arn_set: Option<i64>,
}

impl ServiceAccount {
    /// The role-arn annotation's value, exactly as written.
    pub fn role_arn_annotation(&self) -> Option<&str> {
        self.annotations.get(ROLE_ARN).map(String::as_str)
    }

    /// Annotation keys that look like a mistyped role-arn key, when the real key is absent.
    pub fn misspelled_role_arn_keys(&self) -> Vec<&str> {
        if self.annotations.contains_key(ROLE_ARN) {
            return Vec::new();
        }
        self.annotations
            .keys()
            .map(String::as_str)
            .filter(|k| is_near_miss(k))
            .collect()
    }

    /// Whether the SA shows any intent to use IRSA: the key, a near-miss, or another webhook annotation.
    pub fn wants_irsa(&self) -> bool {
        self.annotations.keys().any(|k| is_read(k))
    }

    /// The audience the webhook puts in tokens for this SA.
    pub fn audience(&self) -> &str {
        self.annotations
            .get(AUDIENCE)
            .map(String::as_str)
            .unwrap_or(DEFAULT_AUDIENCE)
    }

    /// The `eks.amazonaws.com/token-expiration` value when it is not usable.
    pub fn invalid_token_expiration(&self) -> Option<&str> {
        let value = self.annotations.get(TOKEN_EXPIRATION)?;
        match value.parse::<i64>() {
            Ok(seconds) if seconds >= MIN_TOKEN_EXPIRATION_SECONDS => None,
            _ => Some(value),
        }
    }
}

/// Whether the diagnosis reads annotation `key`: the role-arn key, a near miss of it, or another
/// key under the webhook's prefix. A ServiceAccount with none of them does not ask for IRSA, and
/// its other annotations never change a verdict.
pub fn is_read(key: &str) -> bool {
    key == ROLE_ARN || is_near_miss(key) || key.trim().to_ascii_lowercase().starts_with(PREFIX)
}

/// Go's `strconv.ParseBool`, which the webhook parses boolean annotations with.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// What the webhook does with a `eks.amazonaws.com/token-expiration` value it does not use as
/// written (it reads it with `strconv.ParseInt`); `None` when it is used as is.
pub fn token_expiration_problem(value: &str) -> Option<String> {
    match value.parse::<i64>() {
        Ok(seconds) if seconds >= MIN_TOKEN_EXPIRATION_SECONDS => None,
        Ok(seconds) => Some(format!(
            "{TOKEN_EXPIRATION} {value:?} is below {MIN_TOKEN_EXPIRATION_SECONDS}: the webhook raises it to 600 seconds{}",
            if seconds <= 0 { " (and a non-positive lifetime is never what was meant)" } else { "" }
        )),
        Err(_) => Some(format!(
            "{TOKEN_EXPIRATION} {value:?} is not a whole number of seconds: the webhook ignores it and uses its default (86400)"
        )),
    }
}

/// A bare IAM role name (no `arn:`): the characters IAM allows, at most 64.
pub fn is_role_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// Normalises a key for comparison: lower case, no whitespace or punctuation.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '/')
        .flat_map(char::to_lowercase)
        .collect()
}

/// A key that was meant to be `eks.amazonaws.com/role-arn`: different case, separators, whitespace,
/// a shortened domain, or a typo of one or two characters.
fn is_near_miss(key: &str) -> bool {
    if key == ROLE_ARN {
        return false;
    }
    let squashed = squash(key);
    if squashed == squash(ROLE_ARN) {
        return true;
    }
    if let Some((domain, name)) = squashed.split_once('/') {
        // `eks.amazon.com/role-arn`, `eks.aws.com/rolearn`: an eks-ish domain with the right name.
        if name == "rolearn" && domain.starts_with("eks") {
            return true;
        }
    }
    strsim::damerau_levenshtein(&key.trim().to_ascii_lowercase(), ROLE_ARN) <= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(annotations: &[(&str, &str)]) -> ServiceAccount {
        ServiceAccount {
            namespace: "ns".into(),
            name: "sa".into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn recognises_near_miss_keys() {
        for key in [
            "eks.amazonaws.com/role_arn",
            "eks.amazonaws.com/rolearn",
            "eks.amazonaws.com/roleArn",
            "eks.amazon.com/role-arn",
            "EKS.amazonaws.com/role-arn",
            " eks.amazonaws.com/role-arn",
            "eks.amazonaws.com/role-arn ",
            "eks.amazonaws.com/role-ar",
            "eks.amazonaws.com./role-arn",
        ] {
            let s = sa(&[(key, "arn:aws:iam::111122223333:role/x")]);
            assert_eq!(s.misspelled_role_arn_keys(), [key], "{key:?}");
            assert!(s.wants_irsa());
        }
    }

    #[test]
    fn leaves_other_keys_alone() {
        for key in [
            AUDIENCE,
            TOKEN_EXPIRATION,
            SKIP_CONTAINERS,
            "eks.amazonaws.com/sts-regional-endpoints",
            "iam.gke.io/gcp-service-account",
            "azure.workload.identity/client-id",
            "kubectl.kubernetes.io/last-applied-configuration",
        ] {
            assert!(
                sa(&[(key, "x")]).misspelled_role_arn_keys().is_empty(),
                "{key}"
            );
        }
        let both = sa(&[(ROLE_ARN, "x"), ("eks.amazonaws.com/role_arn", "y")]);
        assert!(both.misspelled_role_arn_keys().is_empty());
        assert!(!sa(&[("iam.gke.io/gcp-service-account", "x")]).wants_irsa());
        assert!(sa(&[(AUDIENCE, "x")]).wants_irsa());
    }

    #[test]
    fn audience_and_token_expiration() {
        assert_eq!(sa(&[]).audience(), "sts.amazonaws.com");
        assert_eq!(sa(&[(AUDIENCE, "vault")]).audience(), "vault");
        assert_eq!(
            sa(&[(TOKEN_EXPIRATION, "86400")]).invalid_token_expiration(),
            None
        );
        assert_eq!(
            sa(&[(TOKEN_EXPIRATION, "600")]).invalid_token_expiration(),
            None
        );
        for bad in ["599", "1h", "", "-1", "86400.0"] {
            assert_eq!(
                sa(&[(TOKEN_EXPIRATION, bad)]).invalid_token_expiration(),
                Some(bad)
            );
        }
    }
}
