//! What a probe pod showed, and what it means: did the pod really get the annotated role?

use crate::arn::RoleArn;
use crate::reason::Reason;

/// What the pod identity webhook put into the probe pod, as admitted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Injection {
    /// `AWS_ROLE_ARN` of the probe container, if set.
    pub role_arn: Option<String>,
    /// Whether `AWS_WEB_IDENTITY_TOKEN_FILE` is set.
    pub token_file: bool,
    /// Whether the projected token volume `aws-iam-token` exists.
    pub token_volume: bool,
    /// Whether `AWS_CONTAINER_CREDENTIALS_FULL_URI` is set (EKS Pod Identity).
    pub container_credentials_uri: bool,
    /// Whether `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` is set (EKS Pod Identity).
    pub container_token_file: bool,
    /// Whether the projected token volume `eks-pod-identity-token` exists (EKS Pod Identity).
    pub pod_identity_token_volume: bool,
}

impl Injection {
    /// Everything IRSA needs is there.
    pub fn complete(&self) -> bool {
        self.role_arn.is_some() && self.token_file && self.token_volume
    }

    /// Everything EKS Pod Identity needs is there (the webhook injects it instead of IRSA).
    pub fn pod_identity(&self) -> bool {
        self.container_credentials_uri && self.container_token_file
    }
}

/// How the probe pod ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// The container ran to completion.
    Exited {
        /// Its exit code.
        code: i32,
        /// Its output (stdout and stderr).
        output: String,
    },
    /// The image could not be pulled (says nothing about IRSA).
    ImagePullFailed(String),
    /// The pod did not finish in time (says nothing about IRSA).
    TimedOut(String),
}

/// Everything observed about one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeObservation {
    /// The pod's environment as admitted.
    pub injection: Injection,
    /// Whether a pod identity webhook configuration exists in the cluster, when known.
    pub webhook_configured: Option<bool>,
    /// How it ended.
    pub result: ProbeResult,
}

/// The verdict of a probe: a reason, a message quoting what was seen, and the assumed ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeVerdict {
    /// A Probe* reason.
    pub reason: Reason,
    /// What was seen.
    pub message: String,
    /// The caller identity's ARN when the role was assumed.
    pub assumed_arn: Option<String>,
}

/// `arn:<partition>:sts::<account>:assumed-role/<role>/<session>` → (role, session).
fn assumed_role(arn: &str) -> Option<(&str, &str)> {
    let resource = arn.split(':').nth(5)?;
    let rest = resource.strip_prefix("assumed-role/")?;
    rest.split_once('/')
}

/// The `"Arn"` of `aws sts get-caller-identity` JSON output.
fn caller_arn(output: &str) -> Option<String> {
    let start = output.find('{')?;
    let end = output.rfind('}')?;
    let json: serde_json::Value = serde_json::from_str(output.get(start..=end)?).ok()?;
    json.get("Arn")?.as_str().map(str::to_string)
}

fn last_lines(output: &str) -> String {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// The cause of an STS failure, from the error code and message the AWS CLI prints.
fn sts_error_cause(output: &str) -> Option<(Reason, &'static str)> {
    let has = |s: &str| output.contains(s);
    Some(if has("No OpenIDConnect provider found") {
        (
            Reason::ProbeInvalidIdentityToken,
            "STS found no IAM OIDC provider for the token's issuer in the role's account",
        )
    } else if has("Incorrect token audience") {
        (
            Reason::ProbeTokenAudienceRejected,
            "the IAM OIDC provider does not list the token's audience among its client IDs",
        )
    } else if has("Couldn't retrieve verification key") {
        (
            Reason::ProbeJwksUnreachable,
            "STS could not fetch the issuer's signing keys (JWKS)",
        )
    } else if has("ExpiredToken") {
        (
            Reason::ProbeTokenExpired,
            "STS says the token expired: a skewed node clock or a token cached past its lifetime",
        )
    } else if has("RegionDisabledException") {
        (
            Reason::ProbeRegionDisabled,
            "STS is not activated in the region the pod calls",
        )
    } else if has("Connect timeout on endpoint URL") || has("Could not connect to the endpoint URL")
    {
        (
            Reason::ProbeStsUnreachable,
            "the pod cannot reach the STS endpoint (no STS VPC endpoint or egress; AWS_STS_REGIONAL_ENDPOINTS decides which endpoint is called)",
        )
    } else {
        return None;
    })
}

/// Classifies a probe run against the annotated role.
pub fn classify(observation: &ProbeObservation, role: &RoleArn) -> ProbeVerdict {
    let verdict = |reason, message: String| ProbeVerdict {
        reason,
        message,
        assumed_arn: None,
    };
    let injection = &observation.injection;
    let not_injected = || {
        let webhook = match observation.webhook_configured {
            Some(true) => "a pod identity webhook is configured, but it did not mutate this pod",
            Some(false) => "no pod identity webhook configuration exists in the cluster",
            None => "whether a pod identity webhook is configured could not be read",
        };
        format!(
            "the probe pod as admitted has AWS_ROLE_ARN {}, AWS_WEB_IDENTITY_TOKEN_FILE {}, token volume {}; {webhook}",
            if injection.role_arn.is_some() { "set" } else { "missing" },
            if injection.token_file { "set" } else { "missing" },
            if injection.token_volume { "present" } else { "missing" },
        )
    };
    match &observation.result {
        ProbeResult::ImagePullFailed(detail) => {
            verdict(Reason::ProbeImagePullFailed, detail.clone())
        }
        ProbeResult::TimedOut(detail) => verdict(Reason::ProbeTimedOut, detail.clone()),
        ProbeResult::Exited { code: 0, output } => {
            let Some(arn) = caller_arn(output) else {
                return verdict(
                    Reason::ProbeFailed,
                    format!(
                        "aws sts get-caller-identity printed no caller ARN: {}",
                        last_lines(output)
                    ),
                );
            };
            match assumed_role(&arn) {
                Some((name, _))
                    if name == role.name()
                        && (injection.complete() || injection.pod_identity()) =>
                {
                    ProbeVerdict {
                        reason: Reason::ProbeAssumedRole,
                        message: format!("the probe pod ran as {arn}"),
                        assumed_arn: Some(arn),
                    }
                }
                // EC2 instance sessions are named after the instance id.
                Some((_, session))
                    if session.starts_with("i-")
                        || !(injection.complete() || injection.pod_identity()) =>
                {
                    verdict(
                        Reason::ProbeAssumedNodeRole,
                        format!(
                            "the probe pod ran as {arn}, the node's role, not {role}; {}",
                            not_injected()
                        ),
                    )
                }
                _ => verdict(
                    Reason::ProbeAssumedWrongRole,
                    format!(
                        "the probe pod ran as {arn}, expected assumed-role/{}/…",
                        role.name()
                    ),
                ),
            }
        }
        ProbeResult::Exited { code, output } => {
            let seen = last_lines(output);
            if !injection.complete() && !injection.pod_identity() {
                return verdict(
                    Reason::ProbeCredentialsNotInjected,
                    format!("{}; the CLI said: {seen}", not_injected()),
                );
            }
            if output.contains("Unable to locate credentials") {
                verdict(
                    Reason::ProbeNoCredentials,
                    format!("the AWS CLI found no credentials: {seen}"),
                )
            } else if let Some((reason, why)) = sts_error_cause(output) {
                verdict(reason, format!("{why}: {seen}"))
            } else if output.contains("InvalidIdentityToken") {
                verdict(
                    Reason::ProbeInvalidIdentityToken,
                    format!("STS rejected the token: {seen}"),
                )
            } else if output.contains("AccessDenied")
                && output.contains("AssumeRoleWithWebIdentity")
            {
                verdict(
                    Reason::ProbeAccessDenied,
                    format!("STS refused AssumeRoleWithWebIdentity: {seen}"),
                )
            } else {
                verdict(
                    Reason::ProbeFailed,
                    format!("the probe exited with {code}: {seen}"),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role() -> RoleArn {
        RoleArn::parse("arn:aws:iam::111122223333:role/s3-reader").unwrap()
    }

    fn injected() -> Injection {
        Injection {
            role_arn: Some(role().to_string()),
            token_file: true,
            token_volume: true,
            ..Injection::default()
        }
    }

    fn run(injection: Injection, code: i32, output: &str) -> ProbeVerdict {
        classify(
            &ProbeObservation {
                injection,
                webhook_configured: Some(false),
                result: ProbeResult::Exited {
                    code,
                    output: output.into(),
                },
            },
            &role(),
        )
    }

    const IDENTITY: &str = r#"{
    "UserId": "AROAEXAMPLE:botocore-session-1700000000",
    "Account": "111122223333",
    "Arn": "arn:aws:sts::111122223333:assumed-role/s3-reader/botocore-session-1700000000"
}"#;

    #[test]
    fn classifies_real_cli_outputs() {
        let ok = run(injected(), 0, IDENTITY);
        assert_eq!(ok.reason, Reason::ProbeAssumedRole);
        assert_eq!(
            ok.assumed_arn.as_deref(),
            Some("arn:aws:sts::111122223333:assumed-role/s3-reader/botocore-session-1700000000")
        );
        let node = IDENTITY.replace(
            "s3-reader/botocore-session-1700000000",
            "eks-node-group/i-0abc123",
        );
        assert_eq!(
            run(Injection::default(), 0, &node).reason,
            Reason::ProbeAssumedNodeRole
        );
        let other = IDENTITY.replace("assumed-role/s3-reader", "assumed-role/admin");
        assert_eq!(
            run(injected(), 0, &other).reason,
            Reason::ProbeAssumedWrongRole
        );
        let denied = "\nAn error occurred (AccessDenied) when calling the AssumeRoleWithWebIdentity operation: Not authorized to perform sts:AssumeRoleWithWebIdentity\n";
        assert_eq!(
            run(injected(), 254, denied).reason,
            Reason::ProbeAccessDenied
        );
        let token = "An error occurred (InvalidIdentityToken) when calling the AssumeRoleWithWebIdentity operation: No OpenIDConnect provider found in your account for https://oidc.eks.us-east-1.amazonaws.com/id/X";
        assert_eq!(
            run(injected(), 254, token).reason,
            Reason::ProbeInvalidIdentityToken
        );
        let none = "\nUnable to locate credentials. You can configure credentials by running \"aws configure\".\n";
        assert_eq!(
            run(injected(), 253, none).reason,
            Reason::ProbeNoCredentials
        );
        let missing = run(Injection::default(), 253, none);
        assert_eq!(missing.reason, Reason::ProbeCredentialsNotInjected);
        assert!(
            missing
                .message
                .contains("no pod identity webhook configuration exists"),
            "{}",
            missing.message
        );
        let other_error = run(
            injected(),
            255,
            "Could not connect to the endpoint URL: \"https://sts.us-east-1.amazonaws.com/\"",
        );
        assert_eq!(other_error.reason, Reason::ProbeStsUnreachable);
        assert!(other_error.message.contains("Could not connect"));
        for (output, reason) in [
            ("An error occurred (InvalidIdentityToken) when calling the AssumeRoleWithWebIdentity operation: Incorrect token audience", Reason::ProbeTokenAudienceRejected),
            ("An error occurred (InvalidIdentityToken) when calling the AssumeRoleWithWebIdentity operation: Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements", Reason::ProbeJwksUnreachable),
            ("An error occurred (ExpiredTokenException) when calling the AssumeRoleWithWebIdentity operation: Token expired: current date/time 1700000000 must be before the expiration date/time 1699990000", Reason::ProbeTokenExpired),
            ("An error occurred (RegionDisabledException) when calling the AssumeRoleWithWebIdentity operation: STS is not activated in this region for account:111122223333", Reason::ProbeRegionDisabled),
            ("Connect timeout on endpoint URL: \"https://sts.ap-southeast-1.amazonaws.com/\"", Reason::ProbeStsUnreachable),
            ("An error occurred (Throttling) when calling the AssumeRoleWithWebIdentity operation: Rate exceeded", Reason::ProbeFailed),
        ] {
            assert_eq!(run(injected(), 254, output).reason, reason, "{output}");
        }
    }

    #[test]
    fn pull_failures_and_timeouts_are_their_own_reasons() {
        let pull = classify(
            &ProbeObservation {
                injection: injected(),
                webhook_configured: None,
                result: ProbeResult::ImagePullFailed("ImagePullBackOff".into()),
            },
            &role(),
        );
        assert_eq!(pull.reason, Reason::ProbeImagePullFailed);
        assert_eq!(pull.reason.severity(), crate::Severity::Unknown);
    }
}
