//! The SDK-mock set-up the mocked tests share: every client answering from its own
//! `aws-smithy-mocks` rules (none: it answers nothing), test credentials, quick retries, and the
//! caller's identity in account 111122223333.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput;
use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
use irsa_aws::{AwsFacts, AwsFactsConfig, Clients};

/// The rules each client answers from, and how often a call is attempted.
pub struct Mocked<'a> {
    /// Attempts per call (the SDK's standard retry, 1 ms backoff).
    pub attempts: u32,
    /// IAM's rules.
    pub iam: &'a [&'a Rule],
    /// EKS's rules.
    pub eks: &'a [&'a Rule],
    /// CloudTrail's rules.
    pub cloudtrail: &'a [&'a Rule],
}

impl Default for Mocked<'_> {
    fn default() -> Self {
        Mocked {
            attempts: 2,
            iam: &[],
            eks: &[],
            cloudtrail: &[],
        }
    }
}

macro_rules! client {
    ($krate:ident, $rules:expr, $attempts:expr) => {{
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for rule in $rules {
            interceptor = interceptor.with_rule(rule);
        }
        $krate::Client::from_conf(
            $krate::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("testing", "testing", None, None, "mock"))
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts($attempts)
                        .with_initial_backoff(Duration::from_millis(1)),
                )
                .http_client(create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        )
    }};
}

/// AWS facts over clients that answer from `mocked`'s rules.
pub fn facts(mocked: Mocked<'_>) -> AwsFacts {
    let identity = mock!(aws_sdk_sts::Client::get_caller_identity).then_output(|| {
        GetCallerIdentityOutput::builder()
            .account("111122223333")
            .arn("arn:aws:sts::111122223333:assumed-role/irsa-doctor/s")
            .build()
    });
    let n = mocked.attempts;
    let clients = Clients {
        iam: client!(aws_sdk_iam, mocked.iam.iter().copied(), n),
        sts: client!(aws_sdk_sts, [&identity], n),
        eks: client!(aws_sdk_eks, mocked.eks.iter().copied(), n),
        ec2: client!(aws_sdk_ec2, std::iter::empty::<&Rule>(), n),
        cloudtrail: client!(aws_sdk_cloudtrail, mocked.cloudtrail.iter().copied(), n),
    };
    AwsFacts::new(clients, BTreeMap::new(), &AwsFactsConfig::default())
}
