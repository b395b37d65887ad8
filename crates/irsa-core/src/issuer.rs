//! The cluster's OIDC issuer: normalisation and what IAM derives from it.

use std::fmt;

use thiserror::Error;

use crate::arn::{OidcProviderArn, Partition};

/// Why an issuer URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IssuerError {
    /// The issuer is empty or only whitespace.
    #[error("the issuer is empty; pass the cluster's issuer, e.g. from `aws eks describe-cluster --query cluster.identity.oidc.issuer`")]
    Empty,
    /// The issuer has a scheme other than https.
    #[error("the issuer {value:?} uses scheme {scheme:?}; OIDC issuers are https URLs")]
    UnsupportedScheme {
        /// The issuer as given.
        value: String,
        /// The scheme as given.
        scheme: String,
    },
    /// The issuer contains whitespace inside it.
    #[error("the issuer {value:?} contains whitespace inside it")]
    Whitespace {
        /// The issuer as given.
        value: String,
    },
    /// The issuer has a query (`?`) or fragment (`#`).
    #[error(
        "the issuer {value:?} has a query or fragment; an issuer is https://<host>[/<path>] only"
    )]
    QueryOrFragment {
        /// The issuer as given.
        value: String,
    },
    /// Nothing precedes the first slash after the scheme.
    #[error("the issuer {value:?} has no host")]
    NoHost {
        /// The issuer as given.
        value: String,
    },
}

/// A normalised OIDC issuer: host (lower case) and path, without scheme or trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Issuer {
    host_path: String,
}

/// The parts of an EKS-shaped issuer `oidc.eks.<region>.amazonaws.com[.cn]/id/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EksIssuerParts<'a> {
    /// The cluster's region.
    pub region: &'a str,
    /// The cluster's issuer id (hex).
    pub id: &'a str,
}

impl Issuer {
    /// Normalises `https://host/path/`, `host/path` and the like.
    pub fn parse(value: &str) -> Result<Issuer, IssuerError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(IssuerError::Empty);
        }
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
            Some((scheme, _)) => {
                return Err(IssuerError::UnsupportedScheme {
                    value: value.to_string(),
                    scheme: scheme.to_string(),
                })
            }
            None => trimmed,
        };
        if rest.chars().any(char::is_whitespace) {
            return Err(IssuerError::Whitespace {
                value: value.to_string(),
            });
        }
        if rest.contains(['?', '#']) {
            return Err(IssuerError::QueryOrFragment {
                value: value.to_string(),
            });
        }
        let rest = rest.trim_end_matches('/');
        let (host, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(IssuerError::NoHost {
                value: value.to_string(),
            });
        }
        Ok(Issuer {
            host_path: format!("{}{path}", host.to_ascii_lowercase()),
        })
    }

    /// `host/path`, the form IAM uses in provider ARNs and condition keys.
    pub fn host_path(&self) -> &str {
        &self.host_path
    }

    /// The issuer as a URL, `https://host/path`.
    pub fn url(&self) -> String {
        format!("https://{}", self.host_path)
    }

    /// The ARN of the IAM OIDC provider for this issuer in an account.
    pub fn provider_arn(&self, partition: Partition, account: &str) -> OidcProviderArn {
        OidcProviderArn {
            partition,
            account: account.to_string(),
            host_path: self.host_path.clone(),
        }
    }

    /// The condition key for a token claim, e.g. `oidc.eks.us-east-1.amazonaws.com/id/X:sub`.
    pub fn condition_key(&self, claim: &str) -> String {
        format!("{}:{claim}", self.host_path)
    }

    /// Region and id when this is an EKS issuer.
    pub fn eks_parts(&self) -> Option<EksIssuerParts<'_>> {
        eks_parts(&self.host_path)
    }
}

impl fmt::Display for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

/// Region and id of an EKS-shaped `host/path`, compared case-insensitively on the host.
pub fn eks_parts(host_path: &str) -> Option<EksIssuerParts<'_>> {
    let (host, id) = host_path.split_once("/id/")?;
    let lower = host.to_ascii_lowercase();
    let region_end = lower
        .strip_suffix(".amazonaws.com")
        .or_else(|| lower.strip_suffix(".amazonaws.com.cn"))?
        .len();
    if !lower.starts_with("oidc.eks.")
        || region_end <= "oidc.eks.".len()
        || id.is_empty()
        || id.contains('/')
    {
        return None;
    }
    Some(EksIssuerParts {
        region: &host["oidc.eks.".len()..region_end],
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_PATH: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

    #[test]
    fn normalises_scheme_case_and_trailing_slash() {
        for input in [
            format!("https://{HOST_PATH}"),
            format!("https://{HOST_PATH}/"),
            format!("HTTPS://{HOST_PATH}"),
            HOST_PATH.to_string(),
            format!(" {HOST_PATH}/ "),
            "https://OIDC.EKS.US-EAST-1.AMAZONAWS.COM/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
                .to_string(),
        ] {
            let issuer = Issuer::parse(&input).unwrap();
            assert_eq!(issuer.host_path(), HOST_PATH, "{input}");
        }
    }

    #[test]
    fn keeps_path_case_because_ids_are_case_sensitive() {
        let issuer = Issuer::parse("https://example.com/Tenant/ABC").unwrap();
        assert_eq!(issuer.host_path(), "example.com/Tenant/ABC");
    }

    #[test]
    fn derives_provider_arn_and_condition_keys() {
        let issuer = Issuer::parse(&format!("https://{HOST_PATH}")).unwrap();
        assert_eq!(
            issuer
                .provider_arn(Partition::AwsUsGov, "111122223333")
                .to_string(),
            format!("arn:aws-us-gov:iam::111122223333:oidc-provider/{HOST_PATH}")
        );
        assert_eq!(issuer.condition_key("sub"), format!("{HOST_PATH}:sub"));
        let parts = issuer.eks_parts().unwrap();
        assert_eq!(parts.region, "us-east-1");
        assert_eq!(parts.id, "EXAMPLED539D4633E53DE1B71EXAMPLE");
        let cn = Issuer::parse("oidc.eks.cn-north-1.amazonaws.com.cn/id/ABC").unwrap();
        assert_eq!(cn.eks_parts().unwrap().region, "cn-north-1");
        assert!(Issuer::parse("https://example.com/x")
            .unwrap()
            .eks_parts()
            .is_none());
        assert!(eks_parts("oidc.eks.amazonaws.com/id/ABC").is_none());
    }

    #[test]
    fn rejects_what_cannot_be_an_issuer() {
        assert_eq!(Issuer::parse("  "), Err(IssuerError::Empty));
        assert!(matches!(
            Issuer::parse("http://example.com"),
            Err(IssuerError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Issuer::parse("https://exa mple.com"),
            Err(IssuerError::Whitespace { .. })
        ));
        assert!(matches!(
            Issuer::parse("https://example.com/?x=1"),
            Err(IssuerError::QueryOrFragment { .. })
        ));
        assert!(matches!(
            Issuer::parse("https:///x"),
            Err(IssuerError::NoHost { .. })
        ));
    }
}
