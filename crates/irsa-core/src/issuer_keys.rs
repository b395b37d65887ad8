//! The issuer's published keys and TLS chain, as STS meets them: the discovery document
//! (`<issuer>/.well-known/openid-configuration`), the JWKS its `jwks_uri` names, the keys the API
//! server signs tokens with, and the IAM OIDC provider's thumbprints.
//!
//! Fetching is the shell's job; this module parses what was fetched and judges it. The verdicts
//! belong to the OIDCProviderValid condition.

use serde_json::Value;
use thiserror::Error;

use crate::fact::{Fact, OidcProvider};
use crate::issuer::Issuer;
use crate::reason::Reason;

/// The largest discovery document or JWKS read, in bytes: real ones are a few KiB.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// The most keys read from one JWKS; real ones hold a handful.
pub const MAX_KEYS: usize = 100;
/// The most key ids a finding names.
const MAX_NAMED: usize = 5;
/// The longest key id or URL quoted, in characters.
const MAX_QUOTED: usize = 200;

/// Why a served document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DocumentError {
    /// Not a JSON object.
    #[error("it is not a JSON object ({0})")]
    NotJson(String),
    /// A required field is missing or not a string.
    #[error("it has no string field {0:?}")]
    MissingField(&'static str),
    /// `jwks_uri` is not an https URL.
    #[error("its jwks_uri {0:?} is not an https:// URL")]
    JwksUriNotHttps(String),
    /// `keys` is missing, not an array, or empty.
    #[error("it has no keys (an array \"keys\" of at least one JSON Web Key)")]
    NoKeys,
    /// More keys than [`MAX_KEYS`].
    #[error("it lists {0} keys, more than the {MAX_KEYS} irsa-doctor reads")]
    TooManyKeys(usize),
}

/// The discovery document's fields irsa-doctor reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// `issuer`.
    pub issuer: String,
    /// `jwks_uri`: where STS fetches the keys.
    pub jwks_uri: String,
}

/// Parses a discovery document.
pub fn parse_discovery(body: &[u8]) -> Result<Discovery, DocumentError> {
    let doc: Value = parse_object(body)?;
    let field = |name: &'static str| {
        doc.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(DocumentError::MissingField(name))
    };
    let jwks_uri = field("jwks_uri")?;
    if !jwks_uri
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        return Err(DocumentError::JwksUriNotHttps(quote(&jwks_uri)));
    }
    Ok(Discovery {
        issuer: field("issuer")?,
        jwks_uri,
    })
}

/// One key of a JWKS, as far as telling keys apart goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonWebKey {
    /// `kid`, when present.
    pub kid: Option<String>,
    /// The public key itself (`kty` with `n`/`e` or `crv`/`x`/`y`), when readable: the same key
    /// published under another `kid` is still the same key.
    pub material: Option<String>,
}

impl JsonWebKey {
    fn from_json(key: &Value) -> JsonWebKey {
        let s = |name: &str| key.get(name).and_then(Value::as_str);
        let material = match (s("kty"), s("n"), s("e"), s("crv"), s("x"), s("y")) {
            (Some("RSA"), Some(n), Some(e), ..) => Some(format!("RSA:{n}:{e}")),
            (Some("EC"), _, _, Some(crv), Some(x), Some(y)) => Some(format!("EC:{crv}:{x}:{y}")),
            _ => None,
        };
        JsonWebKey {
            kid: s("kid").map(str::to_string),
            material,
        }
    }

    /// Whether `self` and `other` are the same key: same `kid`, or same public key.
    fn same_as(&self, other: &JsonWebKey) -> bool {
        let kid = matches!((&self.kid, &other.kid), (Some(a), Some(b)) if a == b);
        let material = matches!((&self.material, &other.material), (Some(a), Some(b)) if a == b);
        kid || material
    }

    /// How a finding names it.
    fn name(&self) -> String {
        match &self.kid {
            Some(kid) => format!("kid {:?}", quote(kid)),
            None => "a key without kid".to_string(),
        }
    }
}

/// Parses a JWKS (`{"keys": [...]}`) into its keys.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<JsonWebKey>, DocumentError> {
    let doc = parse_object(body)?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .filter(|k| !k.is_empty())
        .ok_or(DocumentError::NoKeys)?;
    if keys.len() > MAX_KEYS {
        return Err(DocumentError::TooManyKeys(keys.len()));
    }
    Ok(keys.iter().map(JsonWebKey::from_json).collect())
}

fn parse_object(body: &[u8]) -> Result<Value, DocumentError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(DocumentError::NotJson("a JSON value, not an object".into())),
        Err(e) => Err(DocumentError::NotJson(e.to_string())),
    }
}

/// What fetching the issuer's discovery document and JWKS came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Both fetched and read.
    Keys {
        /// The JWKS URL.
        jwks_uri: String,
        /// Its keys.
        keys: Vec<JsonWebKey>,
    },
    /// One could not be fetched from where irsa-doctor runs (network, TLS, HTTP status): STS,
    /// from the internet with its own trust store, may still reach it.
    Unreachable {
        /// The URL asked.
        url: String,
        /// What failed.
        detail: String,
    },
    /// One was served but cannot be used, by STS either.
    Invalid {
        /// The URL asked.
        url: String,
        /// What is wrong with it.
        problem: DocumentError,
    },
}

/// The certificate chain the JWKS host serves, as IAM's thumbprint sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedChain {
    /// The host (of `jwks_uri`).
    pub host: String,
    /// Lower-case hex SHA-1 of the last (root-most) certificate the host sends: what
    /// "Obtaining the thumbprint for an OpenID Connect identity provider" computes.
    pub thumbprint: String,
    /// Whether the chain verifies against the system's trust store alone (without
    /// `--issuer-ca-file`): AWS then verifies it with its own library of trusted root CAs and
    /// uses thumbprints only for certificates no such CA signs.
    pub publicly_trusted: bool,
}

/// Everything learned about the issuer's keys, once per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKeys {
    /// The discovery document and JWKS.
    pub published: Published,
    /// The JWKS host's chain; `None` when it was not reached.
    pub chain: Option<ServedChain>,
    /// The keys the API server verifies (and signs) tokens with, from its `/openid/v1/jwks`.
    pub cluster_keys: Fact<Vec<JsonWebKey>>,
}

/// A finding about the issuer's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFinding {
    /// The catalogue reason.
    pub reason: Reason,
    /// What was expected and found.
    pub message: String,
}

/// The judgement on an issuer's keys: findings, and what was verified (for the success message).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyVerdict {
    /// What is wrong or worth knowing.
    pub findings: Vec<KeyFinding>,
    /// What was checked and passed, or could not be checked, in short clauses.
    pub checked: Vec<String>,
}

/// Judges the issuer's published keys against the API server's, and the served chain against
/// `provider`'s thumbprints (`None`: no provider for the issuer, so no thumbprints to compare).
pub fn evaluate(issuer: &Issuer, keys: &IssuerKeys, provider: Option<&OidcProvider>) -> KeyVerdict {
    let mut v = KeyVerdict::default();
    let discovery = format!("{}/.well-known/openid-configuration", issuer.url());
    match &keys.published {
        Published::Unreachable { url, detail } => v.findings.push(KeyFinding {
            reason: Reason::IssuerDiscoveryUnreachable,
            message: format!(
                "irsa-doctor could not fetch {} ({detail}); if STS cannot either, every \
                 AssumeRoleWithWebIdentity fails with \"Couldn't retrieve verification key from your \
                 identity provider\"",
                quote(url)
            ),
        }),
        Published::Invalid { url, problem } => v.findings.push(KeyFinding {
            reason: Reason::IssuerDiscoveryInvalid,
            message: format!(
                "{} ({}) cannot be used: {problem}; STS rejects every token of the issuer",
                quote(url),
                if *url == discovery {
                    "the discovery document"
                } else {
                    "the JWKS"
                }
            ),
        }),
        Published::Keys { jwks_uri, keys: published } => match &keys.cluster_keys {
            Fact::Known(cluster) => {
                let missing: Vec<&JsonWebKey> = cluster
                    .iter()
                    .filter(|k| !published.iter().any(|p| p.same_as(k)))
                    .collect();
                if missing.is_empty() {
                    v.checked.push(format!(
                        "the issuer's JWKS has all {} key(s) the API server signs and verifies tokens with",
                        cluster.len()
                    ));
                } else {
                    let mut named: Vec<String> =
                        missing.iter().take(MAX_NAMED).map(|k| k.name()).collect();
                    if missing.len() > MAX_NAMED {
                        named.push(format!("and {} more", missing.len() - MAX_NAMED));
                    }
                    v.findings.push(KeyFinding {
                        reason: Reason::IssuerSigningKeyMissing,
                        message: format!(
                            "the API server's /openid/v1/jwks has {} that the issuer's JWKS {} ({} key(s)) \
                             lacks; STS cannot verify tokens signed with it and answers \"Couldn't \
                             retrieve verification key from your identity provider\" or \"Invalid \
                             identity token\"",
                            named.join(", "),
                            quote(jwks_uri),
                            published.len()
                        ),
                    });
                }
            }
            Fact::Unavailable(u) => v.checked.push(format!(
                "whether the issuer's JWKS has the API server's signing key was not checked: {}",
                u.detail
            )),
            Fact::Skipped(why) => v.checked.push(format!(
                "whether the issuer's JWKS has the API server's signing key was not checked: {why}"
            )),
        },
    }
    if let (Some(chain), Some(thumbprints)) = (
        &keys.chain,
        provider.and_then(|p| Some((p, p.thumbprints.as_ref()?))),
    ) {
        let (provider, thumbprints) = thumbprints;
        v.findings
            .extend(thumbprint_finding(issuer, chain, provider, thumbprints));
        if v.findings.iter().all(|f| !is_thumbprint(f.reason)) {
            v.checked.push(format!(
                "the provider's thumbprints include that of {}'s certificate chain",
                chain.host
            ));
        }
    }
    v
}

fn is_thumbprint(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::OIDCProviderThumbprintMismatch | Reason::OIDCProviderThumbprintUnused
    )
}

/// The thumbprint rule: a provider whose list lacks the served chain's thumbprint fails only
/// where AWS relies on thumbprints, i.e. not for EKS issuers and not for certificates a
/// publicly trusted CA signs.
fn thumbprint_finding(
    issuer: &Issuer,
    chain: &ServedChain,
    provider: &OidcProvider,
    thumbprints: &[String],
) -> Option<KeyFinding> {
    if thumbprints
        .iter()
        .any(|t| t.trim().eq_ignore_ascii_case(&chain.thumbprint))
    {
        return None;
    }
    let listed: Vec<String> = thumbprints
        .iter()
        .take(MAX_NAMED)
        .map(|t| quote(t))
        .collect();
    let found = format!(
        "provider {} lists thumbprint(s) [{}], but the root-most certificate {} serves has SHA-1 \
         thumbprint {}",
        provider.arn,
        listed.join(", "),
        chain.host,
        chain.thumbprint
    );
    let (reason, why) = if issuer.eks_parts().is_some() {
        (
            Reason::OIDCProviderThumbprintUnused,
            "AWS no longer relies on thumbprints for EKS issuers (oidc.eks.<region>.amazonaws.com)",
        )
    } else if chain.publicly_trusted {
        (
            Reason::OIDCProviderThumbprintUnused,
            "the certificate chains to a publicly trusted root CA, and AWS uses thumbprints only for \
             certificates its library of trusted root CAs does not cover",
        )
    } else {
        (
            Reason::OIDCProviderThumbprintMismatch,
            "the certificate does not chain to a publicly trusted root CA, so STS trusts it only by \
             thumbprint and rejects the JWKS connection",
        )
    };
    Some(KeyFinding {
        reason,
        message: format!("{found}; {why}"),
    })
}

/// `text` cut to [`MAX_QUOTED`] characters: keys and URLs come from servers irsa-doctor does not run.
fn quote(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED {
        return text.to_string();
    }
    let head: String = text.chars().take(MAX_QUOTED).collect();
    format!("{head}...")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arn::OidcProviderArn;
    use crate::fact::Unavailable;

    const EKS: &str =
        "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    const SELF_HOSTED: &str = "https://issuer.example.com/cluster-a";
    const THUMBPRINT: &str = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280";

    fn key(kid: &str, n: &str) -> JsonWebKey {
        JsonWebKey {
            kid: Some(kid.to_string()),
            material: Some(format!("RSA:{n}:AQAB")),
        }
    }

    fn provider(issuer: &Issuer, thumbprints: &[&str]) -> OidcProvider {
        OidcProvider {
            arn: OidcProviderArn::parse(&format!(
                "arn:aws:iam::111122223333:oidc-provider/{}",
                issuer.host_path()
            ))
            .unwrap(),
            client_ids: Some(vec!["sts.amazonaws.com".into()]),
            thumbprints: Some(thumbprints.iter().map(|t| t.to_string()).collect()),
        }
    }

    fn fetched(published: Vec<JsonWebKey>, cluster: Vec<JsonWebKey>) -> IssuerKeys {
        IssuerKeys {
            published: Published::Keys {
                jwks_uri: "https://issuer.example.com/cluster-a/keys.json".into(),
                keys: published,
            },
            chain: Some(ServedChain {
                host: "issuer.example.com".into(),
                thumbprint: THUMBPRINT.into(),
                publicly_trusted: false,
            }),
            cluster_keys: Fact::Known(cluster),
        }
    }

    fn reasons(v: &KeyVerdict) -> Vec<Reason> {
        v.findings.iter().map(|f| f.reason).collect()
    }

    #[test]
    fn discovery_documents_need_an_https_jwks_uri_and_issuer() {
        let ok = parse_discovery(
            br#"{"issuer":"https://issuer.example.com","jwks_uri":"https://issuer.example.com/keys"}"#,
        )
        .unwrap();
        assert_eq!(ok.jwks_uri, "https://issuer.example.com/keys");
        assert_eq!(ok.issuer, "https://issuer.example.com");
        assert_eq!(
            parse_discovery(br#"{"issuer":"https://a","jwks_uri":"http://a/keys"}"#),
            Err(DocumentError::JwksUriNotHttps("http://a/keys".into()))
        );
        assert_eq!(
            parse_discovery(br#"{"issuer":"https://a"}"#),
            Err(DocumentError::MissingField("jwks_uri"))
        );
        assert!(matches!(
            parse_discovery(b"<html>AccessDenied</html>"),
            Err(DocumentError::NotJson(_))
        ));
        assert!(matches!(
            parse_discovery(b"[1]"),
            Err(DocumentError::NotJson(_))
        ));
    }

    #[test]
    fn jwks_keys_are_read_by_kid_and_material_and_bounded() {
        let keys = parse_jwks(
            br#"{"keys":[{"kty":"RSA","kid":"a","n":"xyz","e":"AQAB","use":"sig"},
                         {"kty":"EC","crv":"P-256","x":"1","y":"2"},{"kty":"oct"}]}"#,
        )
        .unwrap();
        assert_eq!(keys[0], key("a", "xyz"));
        assert_eq!(keys[1].kid, None);
        assert_eq!(keys[1].material.as_deref(), Some("EC:P-256:1:2"));
        assert_eq!(keys[2].material, None);
        assert_eq!(parse_jwks(br#"{"keys":[]}"#), Err(DocumentError::NoKeys));
        assert_eq!(parse_jwks(br#"{"x":1}"#), Err(DocumentError::NoKeys));
        let many = format!(r#"{{"keys":[{}]}}"#, vec!["{}"; MAX_KEYS + 1].join(","));
        assert_eq!(
            parse_jwks(many.as_bytes()),
            Err(DocumentError::TooManyKeys(MAX_KEYS + 1))
        );
    }

    #[test]
    fn a_rotated_signing_key_missing_from_the_published_jwks_is_an_error() {
        let issuer = Issuer::parse(SELF_HOSTED).unwrap();
        let p = provider(&issuer, &[THUMBPRINT]);
        // Matching keys: nothing to report, and the success message says what was checked.
        let same = evaluate(
            &issuer,
            &fetched(vec![key("old", "n1")], vec![key("old", "n1")]),
            Some(&p),
        );
        assert_eq!(reasons(&same), []);
        assert!(
            same.checked[0].contains("all 1 key(s)"),
            "{:?}",
            same.checked
        );
        // The API server signs with "new"; the public JWKS still has only "old".
        let rotated = evaluate(
            &issuer,
            &fetched(
                vec![key("old", "n1")],
                vec![key("new", "n2"), key("old", "n1")],
            ),
            Some(&p),
        );
        assert_eq!(reasons(&rotated), [Reason::IssuerSigningKeyMissing]);
        let message = &rotated.findings[0].message;
        assert!(
            message.contains("kid \"new\"") && !message.contains("\"old\""),
            "{message}"
        );
        // The same public key published under another kid is not missing.
        let renamed = evaluate(
            &issuer,
            &fetched(vec![key("other", "n2")], vec![key("new", "n2")]),
            Some(&p),
        );
        assert_eq!(reasons(&renamed), []);
        // Many missing keys are named up to a bound.
        let cluster: Vec<JsonWebKey> = (0..9)
            .map(|i| key(&format!("k{i}"), &format!("n{i}")))
            .collect();
        let many = evaluate(&issuer, &fetched(vec![key("x", "nx")], cluster), Some(&p));
        assert!(
            many.findings[0].message.contains("and 4 more"),
            "{:?}",
            many.findings
        );
    }

    #[test]
    fn unreachable_is_unknown_and_invalid_is_an_error() {
        let issuer = Issuer::parse(SELF_HOSTED).unwrap();
        let mut keys = fetched(vec![], vec![key("a", "n")]);
        keys.chain = None;
        keys.published = Published::Unreachable {
            url: format!("{SELF_HOSTED}/.well-known/openid-configuration"),
            detail: "connection refused".into(),
        };
        let v = evaluate(&issuer, &keys, None);
        assert_eq!(reasons(&v), [Reason::IssuerDiscoveryUnreachable]);
        assert_eq!(
            Reason::IssuerDiscoveryUnreachable.severity(),
            crate::Severity::Unknown
        );
        assert!(v.findings[0].message.contains("connection refused"));
        keys.published = Published::Invalid {
            url: format!("{SELF_HOSTED}/.well-known/openid-configuration"),
            problem: DocumentError::MissingField("jwks_uri"),
        };
        let v = evaluate(&issuer, &keys, None);
        assert_eq!(reasons(&v), [Reason::IssuerDiscoveryInvalid]);
        assert!(
            v.findings[0].message.contains("the discovery document"),
            "{:?}",
            v.findings
        );
    }

    #[test]
    fn unknown_cluster_keys_leave_the_key_check_out_and_say_so() {
        let issuer = Issuer::parse(SELF_HOSTED).unwrap();
        let mut keys = fetched(vec![key("a", "n")], vec![]);
        keys.cluster_keys = Fact::Unavailable(Unavailable {
            reason: Reason::KubernetesApiUnavailable,
            detail: "GET /openid/v1/jwks: forbidden".into(),
        });
        let v = evaluate(&issuer, &keys, Some(&provider(&issuer, &[THUMBPRINT])));
        assert_eq!(reasons(&v), []);
        assert!(v.checked[0].contains("forbidden"), "{:?}", v.checked);
    }

    #[test]
    fn thumbprints_compare_case_insensitively_and_matter_only_where_aws_relies_on_them() {
        let upper = THUMBPRINT.to_ascii_uppercase();
        for (url, publicly_trusted, listed, expected) in [
            (SELF_HOSTED, false, vec![upper.as_str()], None),
            (
                SELF_HOSTED,
                false,
                vec!["0000000000000000000000000000000000000000"],
                Some(Reason::OIDCProviderThumbprintMismatch),
            ),
            (
                SELF_HOSTED,
                false,
                vec![],
                Some(Reason::OIDCProviderThumbprintMismatch),
            ),
            (
                SELF_HOSTED,
                true,
                vec!["0000000000000000000000000000000000000000"],
                Some(Reason::OIDCProviderThumbprintUnused),
            ),
            (
                EKS,
                false,
                vec!["0000000000000000000000000000000000000000"],
                Some(Reason::OIDCProviderThumbprintUnused),
            ),
            (EKS, false, vec![THUMBPRINT], None),
        ] {
            let issuer = Issuer::parse(url).unwrap();
            let mut keys = fetched(vec![key("a", "n")], vec![key("a", "n")]);
            if let Some(chain) = &mut keys.chain {
                chain.publicly_trusted = publicly_trusted;
            }
            let v = evaluate(&issuer, &keys, Some(&provider(&issuer, &listed)));
            let got = v
                .findings
                .iter()
                .map(|f| f.reason)
                .find(|r| is_thumbprint(*r));
            assert_eq!(got, expected, "{url} public={publicly_trusted} {listed:?}");
            if let Some(f) = v.findings.first() {
                assert!(f.message.contains(THUMBPRINT), "{}", f.message);
            }
        }
        assert_eq!(
            Reason::OIDCProviderThumbprintMismatch.severity(),
            crate::Severity::Error
        );
        assert_eq!(
            Reason::OIDCProviderThumbprintUnused.severity(),
            crate::Severity::Info
        );
        // No provider, or one whose thumbprints are not known: nothing to compare.
        let issuer = Issuer::parse(SELF_HOSTED).unwrap();
        let keys = fetched(vec![key("a", "n")], vec![key("a", "n")]);
        assert_eq!(reasons(&evaluate(&issuer, &keys, None)), []);
        let mut unknown = provider(&issuer, &[]);
        unknown.thumbprints = None;
        assert_eq!(reasons(&evaluate(&issuer, &keys, Some(&unknown))), []);
    }
}
