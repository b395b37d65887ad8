//! irsa-aws against moto, a real AWS wire-protocol emulator, through the real SDK.

use std::sync::Arc;

use irsa_aws::{AwsFacts, AwsFactsConfig, Clients, Lane};
use irsa_core::facts::Fact;
use irsa_core::{diagnose, ConditionType, Facts, Issuer, Reason, RoleArn, ServiceAccount, Status};
use test_support::moto::Moto;

/// The lane these look-ups are made in: one namespace.
static LANE: std::sync::LazyLock<Lane> = std::sync::LazyLock::new(|| Lane::namespace("reports"));

/// moto's default account.
const ACCOUNT: &str = "123456789012";

struct Env {
    _moto: Moto,
    facts: AwsFacts,
    admin: Clients,
}

async fn env(config: AwsFactsConfig) -> Env {
    let moto = Moto::start();
    let facts = AwsFacts::from_loader(moto.loader(), &config).await;
    let admin = Clients::new(&moto.loader().load().await);
    Env {
        _moto: moto,
        facts,
        admin,
    }
}

async fn create_cluster(admin: &Clients, name: &str) -> Issuer {
    let out = admin
        .eks
        .create_cluster()
        .name(name)
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/eks-cluster"))
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-1")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let url = out
        .cluster()
        .unwrap()
        .identity()
        .unwrap()
        .oidc()
        .unwrap()
        .issuer()
        .unwrap();
    Issuer::parse(url).unwrap()
}

fn trust_policy(issuer: &Issuer, namespace: &str, name: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{}", issuer.host_path())},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                issuer.condition_key("sub"): format!("system:serviceaccount:{namespace}:{name}"),
                issuer.condition_key("aud"): "sts.amazonaws.com"
            }}
        }]
    })
    .to_string()
}

async fn create_role(admin: &Clients, name: &str, policy: &str) -> RoleArn {
    let out = admin
        .iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(policy)
        .send()
        .await
        .unwrap();
    RoleArn::parse(out.role().unwrap().arn()).unwrap()
}

fn service_account(namespace: &str, name: &str, role: &str) -> ServiceAccount {
    ServiceAccount {
        namespace: namespace.into(),
        name: name.into(),
        annotations: [("eks.amazonaws.com/role-arn".to_string(), role.to_string())].into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gathers_every_fact_and_the_diagnosis_passes() {
    let Env {
        _moto,
        facts,
        admin,
    } = env(AwsFactsConfig::default()).await;
    let created = create_cluster(&admin, "prod").await;
    let issuer = facts.cluster_issuer("prod").await.unwrap();
    assert_eq!(issuer, created);
    admin
        .iam
        .create_open_id_connect_provider()
        .url(issuer.url())
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .unwrap();
    let role = create_role(
        &admin,
        "s3-reader",
        &trust_policy(&issuer, "reports", "s3-reader"),
    )
    .await;
    assert_eq!(facts.caller_identity().await.unwrap().account, ACCOUNT);

    let providers = facts.oidc_providers(ACCOUNT, &issuer).await;
    let Fact::Known(list) = &providers else {
        panic!("{providers:?}")
    };
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].client_ids.as_deref(),
        Some(&["sts.amazonaws.com".to_string()][..])
    );
    let role_fact = facts.role(&LANE, &role).await;
    let Fact::Known(Some(r)) = &role_fact else {
        panic!("{role_fact:?}")
    };
    // moto, like IAM, returns the trust policy URL-encoded; the engine decodes it.
    assert!(r.trust_policy.starts_with("%7B"), "{}", r.trust_policy);

    let mut f =
        Facts::for_service_account(service_account("reports", "s3-reader", &role.to_string()));
    f.issuer = Fact::Known(issuer.clone());
    f.oidc_providers = providers;
    f.role = role_fact;
    let report = diagnose(&f);
    assert_eq!(report.ready().status, Status::True, "{report:#?}");
    assert_eq!(
        report
            .condition(ConditionType::TrustPolicyValid)
            .unwrap()
            .reason,
        Reason::TrustPolicyAllows
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_role_is_a_fact_and_unknown_cluster_is_unknown() {
    let Env { _moto, facts, .. } = env(AwsFactsConfig::default()).await;
    let missing = RoleArn::parse(&format!("arn:aws:iam::{ACCOUNT}:role/nope")).unwrap();
    assert_eq!(facts.role(&LANE, &missing).await, Fact::Known(None));
    let err = facts.cluster_issuer("no-such-cluster").await.unwrap_err();
    assert_eq!(err.reason, Reason::ClusterIssuerUnknown);
    let mut f = Facts::for_service_account(service_account("a", "b", &missing.to_string()));
    f.issuer = Fact::Known(Issuer::parse("oidc.eks.us-east-1.amazonaws.com/id/X").unwrap());
    f.role = facts.role(&LANE, &missing).await;
    assert_eq!(
        diagnose(&f)
            .condition(ConditionType::TrustPolicyValid)
            .unwrap()
            .reason,
        Reason::RoleNotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_and_concurrent_lookups_make_one_call() {
    let Env {
        _moto,
        facts,
        admin,
    } = env(AwsFactsConfig::default()).await;
    let issuer = Issuer::parse("oidc.eks.us-east-1.amazonaws.com/id/ABC").unwrap();
    let role = create_role(&admin, "shared", &trust_policy(&issuer, "a", "b")).await;
    let facts = Arc::new(facts);
    let lookups: Vec<_> = (0..100)
        .map(|_| {
            let (facts, role) = (facts.clone(), role.clone());
            tokio::spawn(async move { facts.role(&LANE, &role).await })
        })
        .collect();
    for l in lookups {
        assert!(matches!(l.await.unwrap(), Fact::Known(Some(_))));
    }
    assert_eq!(facts.call_stats().calls("GetRole"), 1);
    assert!(matches!(
        facts.role(&LANE, &role).await,
        Fact::Known(Some(_))
    ));
    assert_eq!(
        facts.call_stats().calls("GetRole"),
        1,
        "a cache hit must not call IAM"
    );
    let roles = facts
        .cache_stats()
        .into_iter()
        .find(|c| c.kind == "role")
        .unwrap();
    assert_eq!((roles.hits, roles.misses), (100, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_bound_holds() {
    let config = AwsFactsConfig {
        max_concurrent_calls: 3,
        calls_per_second: 1000,
        burst: 1000,
        ..AwsFactsConfig::default()
    };
    let Env {
        _moto,
        facts,
        admin,
    } = env(config).await;
    let issuer = Issuer::parse("oidc.eks.us-east-1.amazonaws.com/id/ABC").unwrap();
    let mut roles = Vec::new();
    for i in 0..30 {
        roles.push(
            create_role(
                &admin,
                &format!("r{i}"),
                &trust_policy(&issuer, "a", &format!("b{i}")),
            )
            .await,
        );
    }
    let facts = Arc::new(facts);
    let lookups: Vec<_> = roles
        .into_iter()
        .map(|role| {
            let facts = facts.clone();
            tokio::spawn(async move { facts.role(&LANE, &role).await })
        })
        .collect();
    for l in lookups {
        assert!(matches!(l.await.unwrap(), Fact::Known(Some(_))));
    }
    assert_eq!(facts.call_stats().calls("GetRole"), 30);
    let peak = facts.peak_concurrent_calls();
    assert!((2..=3).contains(&peak), "peak {peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_accounts_without_a_role_to_assume_are_unknown_not_errors() {
    let Env { _moto, facts, .. } = env(AwsFactsConfig::default()).await;
    let foreign = RoleArn::parse("arn:aws:iam::444455556666:role/x").unwrap();
    let fact = facts.role(&LANE, &foreign).await;
    let Fact::Unavailable(u) = &fact else {
        panic!("{fact:?}")
    };
    assert_eq!(u.reason, Reason::AwsAccessDenied);
    assert!(
        u.detail.contains("444455556666") && u.detail.contains(ACCOUNT),
        "{}",
        u.detail
    );
    assert_eq!(facts.call_stats().calls("GetRole"), 0);
    let mut f = Facts::for_service_account(service_account("a", "b", &foreign.to_string()));
    f.issuer = Fact::Known(Issuer::parse("oidc.eks.us-east-1.amazonaws.com/id/X").unwrap());
    f.role = fact;
    let report = diagnose(&f);
    assert_eq!(
        report
            .condition(ConditionType::TrustPolicyValid)
            .unwrap()
            .status,
        Status::Unknown
    );
    assert!(!report.has_errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_of_other_accounts_are_read_through_the_configured_role() {
    let foreign_account = "444455556666";
    let reader = format!("arn:aws:iam::{foreign_account}:role/irsa-doctor-reader");
    let config = AwsFactsConfig {
        assume_role_per_account: [(foreign_account.to_string(), reader.clone())].into(),
        ..AwsFactsConfig::default()
    };
    let Env {
        _moto: moto, facts, ..
    } = env(config).await;
    // The role is created in the other account through the same assumed role (moto keeps
    // each account's IAM apart and picks the account from the assumed credentials).
    let assumed = aws_config::sts::AssumeRoleProvider::builder(&reader)
        .session_name("setup")
        .configure(&moto.loader().load().await)
        .build()
        .await;
    let other = Clients::new(&moto.loader().credentials_provider(assumed).load().await);
    let issuer = Issuer::parse("oidc.eks.us-east-1.amazonaws.com/id/ABC").unwrap();
    let role = create_role(&other, "cross", &trust_policy(&issuer, "a", "b")).await;
    assert_eq!(role.account(), foreign_account);
    assert!(matches!(
        facts.role(&LANE, &role).await,
        Fact::Known(Some(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds() {
    let config = AwsFactsConfig {
        calls_per_second: 20,
        burst: 1,
        ..AwsFactsConfig::default()
    };
    let Env { _moto, facts, .. } = env(config).await;
    let start = std::time::Instant::now();
    for i in 0..11 {
        let role = RoleArn::parse(&format!("arn:aws:iam::{ACCOUNT}:role/none-{i}")).unwrap();
        assert_eq!(facts.role(&LANE, &role).await, Fact::Known(None));
    }
    // 12 calls (identity + 11 GetRole) at 20/s with no burst need at least 11 intervals of 50 ms.
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}
