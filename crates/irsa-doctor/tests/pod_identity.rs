//! EKS Pod Identity end to end: the real operator against kube-sim, moto (IAM, STS) and the EKS
//! Pod Identity stand-in (`test_support::eks`, since moto does not implement that API); and
//! `lint --pod-identity-association` offline.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use irsa_aws::Clients;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;
use test_support::eks::Eks;

fn pod_identity_trust(actions: &[&str]) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": actions}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_identity_service_accounts_are_diagnosed_with_the_association_in_force() {
    let sim = Cluster::start(ClusterOptions::default()).await.unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    setup(&sim, &admin).await;
    let client = sim.client();
    for (role, actions) in [
        ("pi-reader", &["sts:AssumeRole", "sts:TagSession"][..]),
        ("pi-untagged", &["sts:AssumeRole"][..]),
    ] {
        admin
            .iam
            .create_role()
            .role_name(role)
            .assume_role_policy_document(pod_identity_trust(actions))
            .send()
            .await
            .unwrap();
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "reports");
    for name in ["pi-app", "pi-broken"] {
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        sas.create(&PostParams::default(), &sa).await.unwrap();
    }
    let role = |name: &str| format!("arn:aws:iam::{ACCOUNT}:role/{name}");
    let eks = Eks::start("test", ACCOUNT);
    eks.associate("reports", "pi-app", &role("pi-reader"));
    // s3-reader is annotated with its own role too: the association wins.
    eks.associate("reports", "s3-reader", &role("pi-reader"));
    eks.associate("reports", "pi-broken", &role("pi-untagged"));
    eks.install_addon("eks-pod-identity-agent");

    let op = test_support::operator::start_operator_with_env(
        std::path::Path::new(env!("CARGO_BIN_EXE_irsa-doctor")),
        &sim,
        &aws.url,
        &[
            "--leader-election",
            "false",
            "--cluster-name",
            "test",
            "--issuer",
            sim.issuer(),
        ],
        &[("AWS_ENDPOINT_URL_EKS", eks.url.as_str())],
    );
    eventually("readiness", Duration::from_secs(30), async || {
        get(&op.metrics, "/readyz").await.filter(|(c, _)| *c == 200)
    })
    .await;

    create_check(&client, "pi", "pi-app").await;
    create_check(&client, "both", "s3-reader").await;
    let checks = checks_api(&client, "reports");
    let pi = diagnosed(&checks, "pi").await;
    assert_eq!(
        ready_of(&pi),
        Some(("True".into(), "AllChecksPassed".into())),
        "{:?}",
        pi.status
    );
    let status = pi.status.clone().unwrap();
    assert_eq!(status.role_arn, Some(role("pi-reader")));
    let reason_of = |c: &irsa_doctor::api::IrsaCheck, t: &str| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == t))
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap()
    };
    assert_eq!(
        reason_of(&pi, "ServiceAccountValid").0,
        "PodIdentityAssociated"
    );
    assert_eq!(
        reason_of(&pi, "OIDCProviderValid").0,
        "OIDCProviderNotNeeded"
    );

    let both = diagnosed(&checks, "both").await;
    assert_eq!(ready_of(&both).unwrap().0, "True", "{:?}", both.status);
    let (_, message) = reason_of(&both, "ServiceAccountValid");
    assert!(
        message.contains(&role("pi-reader")) && message.contains(&role("s3-reader")),
        "{message}"
    );
    assert!(message.contains("injects Pod Identity"), "{message}");
    assert_eq!(both.status.unwrap().role_arn, Some(role("pi-reader")));

    // The sweep diagnoses an unannotated ServiceAccount that only has an association.
    let events = eventually(
        "a Warning on pi-broken",
        Duration::from_secs(20),
        async || {
            Some(events_for(&client, "ServiceAccount", "pi-broken").await).filter(|e| !e.is_empty())
        },
    )
    .await;
    assert_eq!(
        events[0].reason.as_deref(),
        Some("PodIdentityTrustMissingTagSession"),
        "{events:?}"
    );

    // `check` from a laptop: the same verdicts, the unannotated associated ServiceAccounts
    // included when it lists a namespace.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
    cmd.args(["check", "-n", "reports", "-o", "json", "--skip-node-check"])
        .arg("--skip-issuer-keys")
        .args(["--kubeconfig", sim.kubeconfig_path().to_str().unwrap()])
        .args(["--cluster-name", "test", "--issuer", sim.issuer()])
        .env("AWS_ENDPOINT_URL_EKS", eks.url.as_str());
    aws_env(&mut cmd, &aws.url);
    let out = tokio::task::block_in_place(|| cmd.output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let of = |sa: &str| {
        json["serviceAccounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["serviceAccount"] == format!("reports/{sa}"))
            .unwrap_or_else(|| panic!("{sa} not checked: {json:#}"))
            .clone()
    };
    let app = of("pi-app");
    assert_eq!(app["roleArn"], role("pi-reader"), "{app:#}");
    let broken = of("pi-broken");
    assert_eq!(
        broken["reason"], "PodIdentityTrustMissingTagSession",
        "{broken:#}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "pi-broken is an error: {stderr}"
    );
}

#[test]
fn lint_checks_an_association_offline() {
    let dir = std::env::temp_dir().join(format!("irsa-doctor-pi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let sa = write(
        "sa.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n  namespace: a\n  annotations:\n    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/old\n",
    );
    let association = write(
        "association.json",
        r#"{"association":{"clusterName":"prod","namespace":"a","serviceAccount":"web","roleArn":"arn:aws:iam::111122223333:role/pi","associationId":"a-1"}}"#,
    );
    let trust = write("trust.json", &pod_identity_trust(&["sts:TagSession"]));
    let out = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"))
        .args(["lint", "--format", "json", "--issuer"])
        .arg("https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE")
        .arg("--service-account")
        .arg(&sa)
        .arg("--pod-identity-association")
        .arg(&association)
        .arg("--role")
        .arg(format!(
            "arn:aws:iam::111122223333:role/pi={}",
            trust.display()
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for reason in [
        "PodIdentityOverridesAnnotation",
        "PodIdentityTrustMissingService",
    ] {
        assert!(text.contains(reason), "{reason}: {text}");
    }
}
