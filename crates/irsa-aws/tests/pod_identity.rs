//! EKS Pod Identity facts through the SDK's mocks (moto does not implement the Pod Identity API):
//! the paginated list, the describe, the agent add-on, caching, and failures as Unknown.

mod support;

use aws_sdk_eks::operation::describe_pod_identity_association::DescribePodIdentityAssociationOutput;
use aws_sdk_eks::operation::list_pod_identity_associations::ListPodIdentityAssociationsOutput;
use aws_sdk_eks::types::{PodIdentityAssociation, PodIdentityAssociationSummary};
use aws_smithy_mocks::{mock, Rule};
use aws_smithy_runtime_api::http::{Response as HttpResponse, StatusCode};
use aws_smithy_types::body::SdkBody;
use irsa_aws::{AwsFacts, Lane};
use irsa_core::{Fact, Reason};

fn facts_with(eks_rules: &[&Rule]) -> AwsFacts {
    support::facts(support::Mocked {
        eks: eks_rules,
        ..support::Mocked::default()
    })
}

fn eks_error(status: u16, code: &str) -> HttpResponse {
    let mut r = HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(format!(r#"{{"message":"{code} for test"}}"#)),
    );
    r.headers_mut().insert("x-amzn-errortype", code.to_string());
    r.headers_mut()
        .insert("content-type", "application/json".to_string());
    r
}

fn summary(ns: &str, sa: &str, id: &str) -> PodIdentityAssociationSummary {
    PodIdentityAssociationSummary::builder()
        .cluster_name("prod")
        .namespace(ns)
        .service_account(sa)
        .association_id(id)
        .build()
}

#[tokio::test]
async fn lists_every_page_describes_and_caches() {
    let page2 = mock!(aws_sdk_eks::Client::list_pod_identity_associations)
        .match_requests(|r| r.next_token() == Some("t2"))
        .then_output(|| {
            ListPodIdentityAssociationsOutput::builder()
                .associations(summary("b", "api", "a-2"))
                .build()
        });
    let page1 = mock!(aws_sdk_eks::Client::list_pod_identity_associations)
        .match_requests(|r| r.next_token().is_none() && r.cluster_name() == Some("prod"))
        .then_output(|| {
            ListPodIdentityAssociationsOutput::builder()
                .associations(summary("a", "web", "a-1"))
                .next_token("t2")
                .build()
        });
    let describe = mock!(aws_sdk_eks::Client::describe_pod_identity_association)
        .match_requests(|r| r.association_id() == Some("a-1"))
        .then_output(|| {
            DescribePodIdentityAssociationOutput::builder()
                .association(
                    PodIdentityAssociation::builder()
                        .cluster_name("prod")
                        .namespace("a")
                        .service_account("web")
                        .association_id("a-1")
                        .role_arn("arn:aws:iam::111122223333:role/pi")
                        .build(),
                )
                .build()
        });
    let addon = mock!(aws_sdk_eks::Client::describe_addon)
        .then_http_response(|| eks_error(404, "ResourceNotFoundException"));
    let aws = facts_with(&[&page2, &page1, &describe, &addon]);
    let all = aws
        .pod_identity_association_list(&Lane::Operator, "prod", None)
        .await
        .unwrap();
    let pairs: Vec<(&str, &str)> = all
        .iter()
        .map(|a| (a.namespace.as_str(), a.service_account.as_str()))
        .collect();
    assert_eq!(pairs, [("a", "web"), ("b", "api")]);
    // Cached: a second sweep asks nothing.
    aws.pod_identity_association_list(&Lane::Operator, "prod", None)
        .await
        .unwrap();
    assert_eq!((page1.num_calls(), page2.num_calls()), (1, 1));
    let lane = Lane::namespace("a");
    let a = aws.pod_identity_association(&lane, "prod", "a-1").await;
    assert_eq!(
        a.known().unwrap().as_ref().unwrap().role_arn,
        "arn:aws:iam::111122223333:role/pi"
    );
    aws.pod_identity_association(&lane, "prod", "a-1").await;
    assert_eq!(describe.num_calls(), 1);
    assert_eq!(
        aws.addon_installed("prod", "eks-pod-identity-agent").await,
        Fact::Known(false)
    );
}

#[tokio::test]
async fn denied_and_throttled_calls_are_unknown_never_false() {
    let denied = mock!(aws_sdk_eks::Client::list_pod_identity_associations)
        .then_http_response(|| eks_error(403, "AccessDeniedException"));
    let addon = mock!(aws_sdk_eks::Client::describe_addon)
        .then_http_response(|| eks_error(429, "ThrottlingException"));
    let aws = facts_with(&[&denied, &addon]);
    match aws
        .service_account_association(&Lane::namespace("a"), "prod", "a", "web")
        .await
    {
        Fact::Unavailable(u) => {
            assert_eq!(u.reason, Reason::AwsAccessDenied, "{}", u.detail);
            assert!(
                u.detail.contains("eks:ListPodIdentityAssociations"),
                "{}",
                u.detail
            );
        }
        other => panic!("{other:?}"),
    }
    match aws.addon_installed("prod", "eks-pod-identity-agent").await {
        Fact::Unavailable(u) => assert_eq!(u.reason, Reason::AwsApiUnavailable, "{}", u.detail),
        other => panic!("{other:?}"),
    }
}
