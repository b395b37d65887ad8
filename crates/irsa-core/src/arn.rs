//! Amazon Resource Names: the generic form, IAM role ARNs and IAM OIDC provider ARNs.

use std::fmt;

use thiserror::Error;

/// An AWS partition irsa-doctor knows how to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Partition {
    /// Commercial regions.
    Aws,
    /// China regions.
    AwsCn,
    /// AWS GovCloud (US).
    AwsUsGov,
}

impl Partition {
    /// Every partition, for messages and tests.
    pub const ALL: [Partition; 3] = [Partition::Aws, Partition::AwsCn, Partition::AwsUsGov];

    /// The partition's identifier as it appears in ARNs.
    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
        }
    }

    /// Parses the partition field of an ARN.
    pub fn parse(s: &str) -> Option<Partition> {
        Partition::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The six fields of an ARN, split but not yet interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    /// `aws`, `aws-cn`, ... as written.
    pub partition: &'a str,
    /// `iam`, `sts`, `s3`, ...
    pub service: &'a str,
    /// Empty for global services such as IAM.
    pub region: &'a str,
    /// Twelve digits for IAM resources.
    pub account: &'a str,
    /// Everything after the fifth colon, e.g. `role/path/name`.
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// Splits `arn:partition:service:region:account:resource`; the resource may contain colons.
    pub fn split(s: &'a str) -> Option<Arn<'a>> {
        let mut parts = s.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        Some(Arn {
            partition: parts.next()?,
            service: parts.next()?,
            region: parts.next()?,
            account: parts.next()?,
            resource: parts.next()?,
        })
    }
}

/// Why a value is not a usable IAM role ARN. Each message names what was found and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RoleArnError {
    /// The value is empty or only whitespace.
    #[error(
        "the value is empty; set it to the role's ARN, e.g. arn:aws:iam::111122223333:role/my-role"
    )]
    Empty,
    /// The value has leading or trailing whitespace.
    #[error("the value has surrounding whitespace; set it to exactly {trimmed:?}")]
    SurroundingWhitespace {
        /// The value without it.
        trimmed: String,
    },
    /// The value starts or ends with a quote character.
    #[error("the value is wrapped in quotes; set it to {unquoted:?} without them")]
    SurroundingQuotes {
        /// The value without the quotes.
        unquoted: String,
    },
    /// The value does not start with `arn:`.
    #[error("{value:?} is not an ARN (it must start with \"arn:\"); use the role's ARN, e.g. arn:aws:iam::111122223333:role/{value}")]
    NotAnArn {
        /// The value as given.
        value: String,
    },
    /// The value starts with `arn:` but has fewer than six colon-separated fields.
    #[error("{value:?} has too few fields; a role ARN reads arn:<partition>:iam::<12-digit account>:role/<name>")]
    TooFewFields {
        /// The value as given.
        value: String,
    },
    /// The partition is not one of `aws`, `aws-cn`, `aws-us-gov`.
    #[error("unknown partition {found:?}; expected one of aws, aws-cn, aws-us-gov")]
    UnknownPartition {
        /// The partition as given.
        found: String,
    },
    /// The ARN is of a principal people confuse with a role, e.g. an assumed-role session or a user.
    #[error("{kind} ARN {value:?} is not a role ARN; annotate the role itself: {suggestion}")]
    NotARole {
        /// What the ARN names, e.g. `an IAM user`.
        kind: String,
        /// The ARN as given.
        value: String,
        /// The role ARN probably meant, or what to do instead.
        suggestion: String,
    },
    /// The service is not `iam`.
    #[error("the service is {found:?}, but role ARNs belong to \"iam\" (arn:<partition>:iam::<account>:role/<name>)")]
    WrongService {
        /// The service as given.
        found: String,
    },
    /// The region field is not empty.
    #[error("IAM ARNs have no region, found {found:?}; remove it (arn:<partition>:iam::<account>:role/<name>)")]
    UnexpectedRegion {
        /// The region as given.
        found: String,
    },
    /// The account id is not 12 digits.
    #[error("the account id {found:?} is not 12 digits; copy the account id of the role's account (leading zeros included)")]
    BadAccountId {
        /// The account id as given.
        found: String,
    },
    /// The resource does not start with `role/`.
    #[error(
        "the resource {found:?} does not start with \"role/\"; the ARN must read ...:role/{found}"
    )]
    MissingRolePrefix {
        /// The resource as given.
        found: String,
    },
    /// Nothing follows the last slash of the resource.
    #[error("the role name is empty; the ARN must end with role/<name>")]
    EmptyRoleName,
    /// The role name contains a character IAM does not allow in names.
    #[error("the role name {name:?} contains {found:?}, which IAM does not allow (letters, digits and +=,.@_- only)")]
    InvalidRoleName {
        /// The role name.
        name: String,
        /// The first character not allowed.
        found: char,
    },
    /// The value is longer than any ARN IAM accepts.
    #[error("the value is {length} bytes long (it starts {start:?}); an IAM role ARN is at most {MAX_ARN} characters")]
    TooLong {
        /// Its length in bytes.
        length: usize,
        /// Its first characters.
        start: String,
    },
    /// The role name is longer than IAM allows.
    #[error("the role name is {length} characters long (it starts {start:?}); IAM role names are at most {MAX_ROLE_NAME}")]
    RoleNameTooLong {
        /// Its length.
        length: usize,
        /// Its first characters.
        start: String,
    },
    /// The role path is longer than IAM allows.
    #[error(
        "the role path is {length} characters long; IAM role paths are at most {MAX_ROLE_PATH}"
    )]
    RolePathTooLong {
        /// Its length.
        length: usize,
    },
    /// The role path contains a character IAM does not allow in paths (space or non-printable).
    #[error("the role path {path:?} contains {found:?}, which IAM does not allow in paths")]
    InvalidRolePath {
        /// The role path, with its leading and trailing slashes.
        path: String,
        /// The first character not allowed.
        found: char,
    },
}

/// IAM's limits: a role name of at most 64 characters, a path of at most 512, an ARN of at
/// most 2,048. Checked before anything else, so that neither an error message nor an AWS call
/// ever carries an annotation of hundreds of kilobytes.
pub const MAX_ROLE_NAME: usize = 64;
/// See [`MAX_ROLE_NAME`].
pub const MAX_ROLE_PATH: usize = 512;
/// See [`MAX_ROLE_NAME`].
pub const MAX_ARN: usize = 2048;

/// A valid IAM role ARN: `arn:<partition>:iam::<account>:role<path><name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleArn {
    partition: Partition,
    account: String,
    /// `/` or `/a/b/`: always starts and ends with a slash.
    path: String,
    name: String,
}

impl RoleArn {
    /// Validates an annotation value exactly as written: no trimming, since the webhook does not trim either.
    pub fn parse(value: &str) -> Result<RoleArn, RoleArnError> {
        if value.len() > MAX_ARN {
            return Err(RoleArnError::TooLong {
                length: value.len(),
                start: value.chars().take(64).collect(),
            });
        }
        if value.trim().is_empty() {
            return Err(RoleArnError::Empty);
        }
        if value.trim() != value {
            return Err(RoleArnError::SurroundingWhitespace {
                trimmed: value.trim().to_string(),
            });
        }
        if let Some(unquoted) = strip_quotes(value) {
            return Err(RoleArnError::SurroundingQuotes {
                unquoted: unquoted.to_string(),
            });
        }
        let Some(arn) = Arn::split(value) else {
            return Err(if value.starts_with("arn:") {
                RoleArnError::TooFewFields {
                    value: value.to_string(),
                }
            } else {
                RoleArnError::NotAnArn {
                    value: value.to_string(),
                }
            });
        };
        let partition =
            Partition::parse(arn.partition).ok_or_else(|| RoleArnError::UnknownPartition {
                found: arn.partition.to_string(),
            })?;
        if let Some(err) = not_a_role(&arn) {
            return Err(err);
        }
        if arn.service != "iam" {
            return Err(RoleArnError::WrongService {
                found: arn.service.to_string(),
            });
        }
        if !arn.region.is_empty() {
            return Err(RoleArnError::UnexpectedRegion {
                found: arn.region.to_string(),
            });
        }
        if !is_account_id(arn.account) {
            return Err(RoleArnError::BadAccountId {
                found: arn.account.to_string(),
            });
        }
        let Some(path_and_name) = arn.resource.strip_prefix("role/") else {
            return Err(RoleArnError::MissingRolePrefix {
                found: arn.resource.to_string(),
            });
        };
        let (path, name) = match path_and_name.rfind('/') {
            Some(i) => (
                format!("/{}", &path_and_name[..=i]),
                &path_and_name[i + 1..],
            ),
            None => ("/".to_string(), path_and_name),
        };
        validate_name(name)?;
        validate_path(&path)?;
        Ok(RoleArn {
            partition,
            account: arn.account.to_string(),
            path,
            name: name.to_string(),
        })
    }

    /// The partition the role lives in.
    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// The 12-digit account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The role's path, `/` when it has none.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The role's name (what `assumed-role/<name>/<session>` shows).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:iam::{}:role{}{}",
            self.partition, self.account, self.path, self.name
        )
    }
}

/// An IAM OIDC identity provider ARN: `arn:<partition>:iam::<account>:oidc-provider/<issuer host+path>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OidcProviderArn {
    /// The partition of the provider.
    pub partition: Partition,
    /// The account that holds the provider.
    pub account: String,
    /// The issuer's host and path, without scheme.
    pub host_path: String,
}

/// Why a value is not an IAM OIDC provider ARN.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{value:?} is not an IAM OIDC provider ARN (arn:<partition>:iam::<12-digit account>:oidc-provider/<issuer host+path>)")]
pub struct OidcProviderArnError {
    /// The rejected value.
    pub value: String,
}

impl OidcProviderArn {
    /// Parses a provider ARN as IAM prints it.
    pub fn parse(value: &str) -> Result<OidcProviderArn, OidcProviderArnError> {
        let err = || OidcProviderArnError {
            value: value.to_string(),
        };
        let arn = Arn::split(value).ok_or_else(err)?;
        let partition = Partition::parse(arn.partition).ok_or_else(err)?;
        let host_path = arn
            .resource
            .strip_prefix("oidc-provider/")
            .ok_or_else(err)?;
        if arn.service != "iam"
            || !arn.region.is_empty()
            || !is_account_id(arn.account)
            || host_path.is_empty()
        {
            return Err(err());
        }
        Ok(OidcProviderArn {
            partition,
            account: arn.account.to_string(),
            host_path: host_path.to_string(),
        })
    }
}

impl fmt::Display for OidcProviderArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:iam::{}:oidc-provider/{}",
            self.partition, self.account, self.host_path
        )
    }
}

/// True for a 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn strip_quotes(value: &str) -> Option<&str> {
    ['"', '\'', '`'].into_iter().find_map(|q| {
        let inner = value.strip_prefix(q).or_else(|| value.strip_suffix(q))?;
        Some(inner.trim_matches(q))
    })
}

/// Recognises ARNs of principals people confuse with roles, and says which role ARN they meant.
fn not_a_role(arn: &Arn<'_>) -> Option<RoleArnError> {
    let (kind, suggestion) = match (arn.service, arn.resource.split_once('/')) {
        ("sts", Some(("assumed-role", rest))) => {
            let role = rest.split('/').next().unwrap_or_default();
            (
                "an assumed-role (session)",
                format!(
                    "arn:{}:iam::{}:role/{role} (roles with a path need it too)",
                    arn.partition, arn.account
                ),
            )
        }
        ("iam", Some(("user", _))) => (
            "an IAM user",
            "create a role for the workload; IRSA cannot assume users".to_string(),
        ),
        ("iam", Some(("instance-profile", rest))) => (
            "an instance profile",
            format!(
                "arn:{}:iam::{}:role/{rest} if the profile's role has that name",
                arn.partition, arn.account
            ),
        ),
        ("iam", Some(("group", _))) => (
            "an IAM group",
            "create a role for the workload; IRSA assumes roles only".to_string(),
        ),
        ("iam", Some(("policy", _))) => (
            "a managed policy",
            "attach the policy to a role and annotate the role's ARN".to_string(),
        ),
        ("iam", Some(("oidc-provider", _))) => (
            "an OIDC provider",
            "annotate the role whose trust policy names this provider".to_string(),
        ),
        _ => return None,
    };
    Some(RoleArnError::NotARole {
        kind: kind.to_string(),
        value: format!(
            "arn:{}:{}:{}:{}:{}",
            arn.partition, arn.service, arn.region, arn.account, arn.resource
        ),
        suggestion,
    })
}

fn validate_name(name: &str) -> Result<(), RoleArnError> {
    if name.is_empty() {
        return Err(RoleArnError::EmptyRoleName);
    }
    if name.chars().count() > MAX_ROLE_NAME {
        return Err(RoleArnError::RoleNameTooLong {
            length: name.chars().count(),
            start: name.chars().take(MAX_ROLE_NAME).collect(),
        });
    }
    if let Some(found) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c)))
    {
        return Err(RoleArnError::InvalidRoleName {
            name: name.to_string(),
            found,
        });
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), RoleArnError> {
    if path.chars().count() > MAX_ROLE_PATH {
        return Err(RoleArnError::RolePathTooLong {
            length: path.chars().count(),
        });
    }
    // IAM paths allow printable ASCII without spaces.
    if let Some(found) = path.chars().find(|c| !('\u{21}'..='\u{7e}').contains(c)) {
        return Err(RoleArnError::InvalidRolePath {
            path: path.to_string(),
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_arns_are_bounded_as_iam_bounds_them() {
        use super::*;
        let arn = |path: &str, name: &str| format!("arn:aws:iam::111122223333:role{path}{name}");
        assert!(RoleArn::parse(&arn("/", &"r".repeat(64))).is_ok());
        assert!(matches!(
            RoleArn::parse(&arn("/", &"r".repeat(65))),
            Err(RoleArnError::RoleNameTooLong { length: 65, .. })
        ));
        let long_path = format!("/{}/", "p".repeat(511));
        assert!(matches!(
            RoleArn::parse(&arn(&long_path, "r")),
            Err(RoleArnError::RolePathTooLong { length: 513 })
        ));
        // 200 KiB: refused before anything else, and the message stays short.
        let huge = arn("/", &"r".repeat(200 * 1024));
        let err = RoleArn::parse(&huge).unwrap_err();
        assert!(matches!(err, RoleArnError::TooLong { .. }), "{err:?}");
        assert!(err.to_string().len() < 300, "{}", err.to_string().len());
        let not_an_arn = "x".repeat(300 * 1024);
        assert!(RoleArn::parse(&not_an_arn).unwrap_err().to_string().len() < 300);
    }

    use super::*;

    #[test]
    fn parses_roles_in_every_partition_with_paths() {
        for p in Partition::ALL {
            let value = format!("arn:{p}:iam::111122223333:role/teams/data/s3-reader");
            let arn = RoleArn::parse(&value).unwrap();
            assert_eq!(arn.partition(), p);
            assert_eq!(arn.account(), "111122223333");
            assert_eq!(arn.path(), "/teams/data/");
            assert_eq!(arn.name(), "s3-reader");
            assert_eq!(arn.to_string(), value);
        }
        let plain = RoleArn::parse("arn:aws:iam::111122223333:role/s3-reader").unwrap();
        assert_eq!(plain.path(), "/");
    }

    #[test]
    fn says_precisely_what_is_wrong() {
        type Check = fn(&RoleArnError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, RoleArnError::Empty)),
            (
                " arn:aws:iam::111122223333:role/x",
                |e| matches!(e, RoleArnError::SurroundingWhitespace { trimmed } if trimmed == "arn:aws:iam::111122223333:role/x"),
            ),
            (
                "\"arn:aws:iam::111122223333:role/x\"",
                |e| matches!(e, RoleArnError::SurroundingQuotes { unquoted } if unquoted == "arn:aws:iam::111122223333:role/x"),
            ),
            ("s3-reader", |e| matches!(e, RoleArnError::NotAnArn { .. })),
            ("arn:aws:iam::111122223333", |e| {
                matches!(e, RoleArnError::TooFewFields { .. })
            }),
            (
                "arn:aws-foo:iam::111122223333:role/x",
                |e| matches!(e, RoleArnError::UnknownPartition { found } if found == "aws-foo"),
            ),
            (
                "arn:aws:iam::111122223333:user/alice",
                |e| matches!(e, RoleArnError::NotARole { kind, .. } if kind.contains("user")),
            ),
            (
                "arn:aws:iam::111122223333:instance-profile/node",
                |e| matches!(e, RoleArnError::NotARole { kind, .. } if kind.contains("instance profile")),
            ),
            (
                "arn:aws:sts::111122223333:assumed-role/s3-reader/session",
                |e| matches!(e, RoleArnError::NotARole { suggestion, .. } if suggestion.starts_with("arn:aws:iam::111122223333:role/s3-reader")),
            ),
            (
                "arn:aws:s3:::reports",
                |e| matches!(e, RoleArnError::WrongService { found } if found == "s3"),
            ),
            ("arn:aws:iam:us-east-1:111122223333:role/x", |e| {
                matches!(e, RoleArnError::UnexpectedRegion { .. })
            }),
            (
                "arn:aws:iam::11112222333:role/x",
                |e| matches!(e, RoleArnError::BadAccountId { found } if found == "11112222333"),
            ),
            ("arn:aws:iam::1111-2222-3333:role/x", |e| {
                matches!(e, RoleArnError::BadAccountId { .. })
            }),
            (
                "arn:aws:iam::111122223333:s3-reader",
                |e| matches!(e, RoleArnError::MissingRolePrefix { found } if found == "s3-reader"),
            ),
            ("arn:aws:iam::111122223333:role/", |e| {
                matches!(e, RoleArnError::EmptyRoleName)
            }),
            ("arn:aws:iam::111122223333:role/s3 reader", |e| {
                matches!(e, RoleArnError::InvalidRoleName { found: ' ', .. })
            }),
        ];
        for (value, expected) in cases {
            let err = RoleArn::parse(value).expect_err(value);
            assert!(expected(&err), "{value:?} gave {err:?}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn parses_provider_arns() {
        let arn = OidcProviderArn::parse(
            "arn:aws-cn:iam::111122223333:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/ABC",
        )
        .unwrap();
        assert_eq!(arn.partition, Partition::AwsCn);
        assert_eq!(arn.host_path, "oidc.eks.cn-north-1.amazonaws.com.cn/id/ABC");
        assert!(OidcProviderArn::parse("arn:aws:iam::111122223333:role/x").is_err());
        assert!(OidcProviderArn::parse("arn:aws:iam::1:oidc-provider/x").is_err());
    }
}
