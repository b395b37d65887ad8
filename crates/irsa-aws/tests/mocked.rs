//! What moto does not implement or cannot provoke — SimulatePrincipalPolicy, throttling,
//! access denied, 5xx — through the SDK's own mocking crate with real response shapes, so the
//! SDK's real deserialisers, retry classifier and backoff run.

mod support;

use std::sync::Arc;

use aws_sdk_iam::operation::get_role::GetRoleOutput;
use aws_sdk_iam::operation::simulate_principal_policy::SimulatePrincipalPolicyOutput;
use aws_sdk_iam::types::{EvaluationResult, PolicyEvaluationDecisionType, Role, Statement};
use aws_smithy_mocks::{mock, Rule};
use irsa_aws::{AwsFacts, Lane, Outcome};
use irsa_core::facts::{PermissionDecision, PermissionRequest};
use irsa_core::{
    diagnose, ConditionType, Fact, Facts, Issuer, Reason, RoleArn, ServiceAccount, Status,
};

/// The lane these look-ups are made in: one namespace.
static LANE: std::sync::LazyLock<Lane> = std::sync::LazyLock::new(|| Lane::namespace("reports"));

const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
const ATTEMPTS: u32 = 3;

fn iam_error(status: u16, code: &str) -> (u16, Option<String>) {
    (
        status,
        Some(format!(
            r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{code} for test</Message></Error><RequestId>4f1f8a3c</RequestId></ErrorResponse>"#
        )),
    )
}

fn facts_with(iam_rules: &[&Rule]) -> AwsFacts {
    support::facts(support::Mocked {
        attempts: ATTEMPTS,
        iam: iam_rules,
        ..support::Mocked::default()
    })
}

fn role() -> RoleArn {
    RoleArn::parse(ROLE).unwrap()
}

fn get_role_output() -> GetRoleOutput {
    GetRoleOutput::builder()
        .role(
            Role::builder()
                .path("/")
                .role_name("s3-reader")
                .role_id("AROAEXAMPLE")
                .arn(ROLE)
                .create_date(aws_smithy_types::DateTime::from_secs(0))
                .assume_role_policy_document("%7B%22Version%22%3A%222012-10-17%22%7D")
                .build()
                .unwrap(),
        )
        .build()
}

#[tokio::test]
async fn throttling_is_retried_then_unknown_never_false() {
    let (status, body) = iam_error(400, "Throttling");
    let throttled = mock!(aws_sdk_iam::Client::get_role)
        .sequence()
        .http_status(status, body)
        .repeatedly()
        .build();
    let facts = facts_with(&[&throttled]);
    let fact = facts.role(&LANE, &role()).await;
    assert_eq!(
        throttled.num_calls(),
        ATTEMPTS as usize,
        "the SDK's standard retry ran"
    );
    let Fact::Unavailable(u) = &fact else {
        panic!("{fact:?}")
    };
    assert_eq!(u.reason, Reason::AwsApiUnavailable);
    assert!(u.detail.contains("Throttling"), "{}", u.detail);
    let counts = facts.call_stats().snapshot();
    assert_eq!(counts.len(), 2, "{counts:?}"); // GetCallerIdentity + GetRole
    assert!(counts
        .iter()
        .any(|c| c.operation == "GetRole" && c.outcome == Outcome::Throttled && c.count == 1));

    let mut f = Facts::for_service_account(ServiceAccount {
        namespace: "reports".into(),
        name: "s3-reader".into(),
        annotations: [("eks.amazonaws.com/role-arn".to_string(), ROLE.to_string())].into(),
        ..Default::default()
    });
    f.issuer = Fact::Known(Issuer::parse("oidc.eks.us-east-1.amazonaws.com/id/X").unwrap());
    f.role = fact;
    let report = diagnose(&f);
    let trust = report.condition(ConditionType::TrustPolicyValid).unwrap();
    assert_eq!(
        (trust.status, trust.reason),
        (Status::Unknown, Reason::AwsApiUnavailable)
    );
    assert!(
        !report.has_errors(),
        "a throttled IAM call must not page anyone"
    );
}

#[tokio::test]
async fn server_errors_are_unavailable_and_not_cached() {
    let (status, body) = iam_error(500, "ServiceFailure");
    let failing = mock!(aws_sdk_iam::Client::get_role)
        .sequence()
        .http_status(status, body)
        .times(ATTEMPTS as usize)
        .build();
    let ok = mock!(aws_sdk_iam::Client::get_role).then_output(get_role_output);
    let facts = facts_with(&[&failing, &ok]);
    assert!(
        matches!(facts.role(&LANE, &role()).await, Fact::Unavailable(u) if u.reason == Reason::AwsApiUnavailable)
    );
    assert!(
        matches!(facts.role(&LANE, &role()).await, Fact::Known(Some(_))),
        "a failure is not served from the cache"
    );
}

#[tokio::test]
async fn access_denied_names_the_missing_permission() {
    let (status, body) = iam_error(403, "AccessDenied");
    let denied = mock!(aws_sdk_iam::Client::get_role)
        .sequence()
        .http_status(status, body)
        .repeatedly()
        .build();
    let facts = facts_with(&[&denied]);
    let Fact::Unavailable(u) = facts.role(&LANE, &role()).await else {
        panic!()
    };
    assert_eq!(u.reason, Reason::AwsAccessDenied);
    assert!(
        u.detail.contains("iam:GetRole") && u.detail.contains(ROLE),
        "{}",
        u.detail
    );
    assert_eq!(denied.num_calls(), 1, "access denied is not retried");
}

#[tokio::test]
async fn missing_role_is_a_fact() {
    let (status, body) = iam_error(404, "NoSuchEntity");
    let missing = mock!(aws_sdk_iam::Client::get_role)
        .sequence()
        .http_status(status, body)
        .repeatedly()
        .build();
    let facts = facts_with(&[&missing]);
    assert_eq!(facts.role(&LANE, &role()).await, Fact::Known(None));
}

#[tokio::test]
async fn a_hundred_concurrent_lookups_make_one_get_role() {
    let get_role = mock!(aws_sdk_iam::Client::get_role).then_output(get_role_output);
    let facts = Arc::new(facts_with(&[&get_role]));
    let lookups: Vec<_> = (0..100)
        .map(|_| {
            let facts = facts.clone();
            tokio::spawn(async move { facts.role(&LANE, &role()).await })
        })
        .collect();
    for l in lookups {
        let Fact::Known(Some(r)) = l.await.unwrap() else {
            panic!()
        };
        assert!(r.trust_policy.starts_with("%7B"));
    }
    assert_eq!(get_role.num_calls(), 1);
}

#[tokio::test]
async fn permission_simulation_maps_iam_decisions() {
    let result = |action: &str, decision| {
        EvaluationResult::builder()
            .eval_action_name(action)
            .eval_resource_name("arn:aws:s3:::reports/*")
            .eval_decision(decision)
            .matched_statements(
                Statement::builder()
                    .source_policy_id("deny-deletes")
                    .build(),
            )
            .build()
            .unwrap()
    };
    let simulate = mock!(aws_sdk_iam::Client::simulate_principal_policy)
        .match_requests(|r| {
            r.policy_source_arn() == Some(ROLE) && r.resource_arns() == ["arn:aws:s3:::reports/*"]
        })
        .then_output(move || {
            SimulatePrincipalPolicyOutput::builder()
                .evaluation_results(result(
                    "s3:GetObject",
                    PolicyEvaluationDecisionType::Allowed,
                ))
                .evaluation_results(result(
                    "s3:PutObject",
                    PolicyEvaluationDecisionType::ImplicitDeny,
                ))
                .evaluation_results(result(
                    "s3:DeleteObject",
                    PolicyEvaluationDecisionType::ExplicitDeny,
                ))
                .is_truncated(false)
                .build()
        });
    let facts = facts_with(&[&simulate]);
    let requests: Vec<PermissionRequest> = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
        .into_iter()
        .map(|a| PermissionRequest {
            action: a.into(),
            resource: "arn:aws:s3:::reports/*".into(),
        })
        .collect();
    let Fact::Known(verdicts) = facts.permissions(&LANE, &role(), &requests).await else {
        panic!()
    };
    let decision = |a: &str| {
        verdicts
            .iter()
            .find(|v| v.request.action == a)
            .unwrap()
            .decision
            .clone()
    };
    assert_eq!(decision("s3:GetObject"), PermissionDecision::Allowed);
    assert_eq!(decision("s3:PutObject"), PermissionDecision::ImplicitDeny);
    assert_eq!(
        decision("s3:DeleteObject"),
        PermissionDecision::ExplicitDeny
    );
    assert_eq!(simulate.num_calls(), 1, "one call per distinct resource");
    // Asking again (in another order) is a cache hit.
    let mut reversed = requests.clone();
    reversed.reverse();
    assert!(matches!(
        facts.permissions(&LANE, &role(), &reversed).await,
        Fact::Known(_)
    ));
    assert_eq!(simulate.num_calls(), 1);

    let mut f = Facts::for_service_account(ServiceAccount {
        namespace: "reports".into(),
        name: "s3-reader".into(),
        annotations: [("eks.amazonaws.com/role-arn".to_string(), ROLE.to_string())].into(),
        ..Default::default()
    });
    f.permission_requests = requests.clone();
    f.permissions = Fact::Known(verdicts);
    let report = diagnose(&f);
    let denied: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.reason == Reason::PermissionDenied)
        .collect();
    assert_eq!(denied.len(), 2);
    assert!(denied
        .iter()
        .any(|f| f.message.contains("s3:DeleteObject") && f.message.contains("deny-deletes")));
}

#[tokio::test]
async fn simulation_failures_are_unknown() {
    let (status, body) = iam_error(403, "AccessDenied");
    let denied = mock!(aws_sdk_iam::Client::simulate_principal_policy)
        .sequence()
        .http_status(status, body)
        .repeatedly()
        .build();
    let facts = facts_with(&[&denied]);
    let request = [PermissionRequest {
        action: "s3:GetObject".into(),
        resource: "*".into(),
    }];
    let Fact::Unavailable(u) = facts.permissions(&LANE, &role(), &request).await else {
        panic!()
    };
    assert_eq!(u.reason, Reason::AwsAccessDenied);
    assert!(
        u.detail.contains("iam:SimulatePrincipalPolicy"),
        "{}",
        u.detail
    );
}
