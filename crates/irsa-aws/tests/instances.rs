//! `ec2:DescribeInstances` for the nodes' metadata options, against moto (which serves
//! `MetadataOptions` as EC2 does) through the real SDK.

use irsa_aws::{AwsFacts, AwsFactsConfig, Clients, Lane};
use irsa_core::node_fallback::HttpTokens;
use irsa_core::Fact;
use test_support::moto::{launch_instance, Moto};

#[tokio::test]
async fn metadata_options_are_read_in_one_call_unknown_instances_left_out_and_cached() {
    let moto = Moto::start();
    let admin = Clients::new(&moto.loader().load().await);
    let facts = AwsFacts::from_loader(moto.loader(), &AwsFactsConfig::default()).await;
    let open = launch_instance(&admin, "optional", 2).await;
    let hardened = launch_instance(&admin, "required", 1).await;
    // A node whose instance is long gone: DescribeInstances by InstanceIds would fail whole.
    let gone = "i-0000000000000000f".to_string();
    let lane = Lane::namespace("reports");

    let ids = [open.clone(), hardened.clone(), gone.clone(), open.clone()];
    let Fact::Known(found) = facts.instance_metadata(&lane, &ids).await else {
        panic!("not known")
    };
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[&open].http_tokens, HttpTokens::Optional);
    assert_eq!(found[&open].hop_limit, Some(2));
    assert!(found[&open].endpoint_enabled);
    assert_eq!(found[&hardened].http_tokens, HttpTokens::Required);
    assert_eq!(found[&hardened].hop_limit, Some(1));
    assert!(!found.contains_key(&gone));
    assert_eq!(facts.call_stats().calls("DescribeInstances"), 1);

    // Asked again (another ServiceAccount on the same nodes): from the cache, the unknown
    // instance included.
    let again = facts.instance_metadata(&lane, &ids[..3]).await;
    assert_eq!(again, Fact::Known(found));
    assert_eq!(facts.call_stats().calls("DescribeInstances"), 1);
}

/// moto grants everything; a caller without ec2:DescribeInstances is provoked with the SDK's
/// own mocks (EC2's real error shape): the fact is Unavailable with a reason of severity
/// Unknown, naming the permission, never an error about the nodes.
#[tokio::test]
async fn a_caller_without_describe_instances_gets_unknown() {
    use aws_config::{BehaviorVersion, Region};
    use aws_credential_types::Credentials;
    use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, RuleMode};
    use irsa_core::{Reason, Severity};

    let denied = mock!(aws_sdk_ec2::Client::describe_instances)
        .sequence()
        .http_status(
            403,
            Some(
                r#"<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>5f1e</RequestID></Response>"#
                    .into(),
            ),
        )
        .repeatedly()
        .build();
    let identity = mock!(aws_sdk_sts::Client::get_caller_identity).then_output(|| {
        aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput::builder()
            .account("111122223333")
            .arn("arn:aws:sts::111122223333:assumed-role/dev/me")
            .build()
    });
    let config = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "mock",
            )),
        )
        .http_client(create_mock_http_client())
        .build();
    let mut clients = Clients::new(&config);
    let with = |rule| {
        MockResponseInterceptor::new()
            .rule_mode(RuleMode::MatchAny)
            .with_rule(rule)
    };
    clients.ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&config)
            .interceptor(with(&denied))
            .build(),
    );
    clients.sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&config)
            .interceptor(with(&identity))
            .build(),
    );
    let facts = AwsFacts::new(clients, Default::default(), &AwsFactsConfig::default());
    let _ = facts.caller_identity().await;
    let fact = facts
        .instance_metadata(&Lane::namespace("reports"), &["i-0123456789abcdef0".into()])
        .await;
    let Fact::Unavailable(u) = fact else {
        panic!("{fact:?}")
    };
    assert_eq!(u.reason, Reason::AwsAccessDenied);
    assert_eq!(u.reason.severity(), Severity::Unknown);
    assert!(u.detail.contains("ec2:DescribeInstances"), "{}", u.detail);
    assert!(u.detail.contains("assumed-role/dev/me"), "{}", u.detail);
}
