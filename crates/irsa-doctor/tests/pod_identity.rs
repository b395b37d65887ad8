//! EKS Pod Identity end to end: the real operator and `check` against the real control plane,
//! moto (IAM, STS) and the EKS Pod Identity stand-in (`test_support::eks`, since moto does not
//! implement that API): associations in force, the live workload cases (pods older than their
//! association, the agent on the pod's node, Fargate), associations without their
//! ServiceAccount; and `lint --pod-identity-association` offline.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use irsa_aws::Clients;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
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
    // Worded for the mechanism in force, not "IRSA".
    let (_, ready) = reason_of(&pi, "Ready");
    assert!(
        ready.starts_with("EKS Pod Identity is set up correctly"),
        "{ready}"
    );

    // The annotation names another role than the association: it is dead, an error.
    let both = diagnosed(&checks, "both").await;
    assert_eq!(
        ready_of(&both),
        Some(("False".into(), "PodIdentityOverridesAnnotation".into())),
        "{:?}",
        both.status
    );
    let (_, message) = reason_of(&both, "ServiceAccountValid");
    assert!(
        message.contains(&role("pi-reader")) && message.contains(&role("s3-reader")),
        "{message}"
    );
    assert!(message.contains("the association is in force"), "{message}");
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

    // The associations cannot be listed (EKS refuses connections): no ServiceAccount is dropped;
    // those without the annotation are Unknown, and the list is asked for once, not once each.
    let closed = format!("http://127.0.0.1:{}", test_support::net::free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
    cmd.args(["check", "-n", "reports", "-o", "json", "--skip-node-check"])
        .args(["--skip-issuer-keys", "--aws-max-attempts", "1"])
        .args(["--kubeconfig", sim.kubeconfig_path().to_str().unwrap()])
        .args(["--cluster-name", "test", "--issuer", sim.issuer()])
        .env("AWS_ENDPOINT_URL_EKS", &closed);
    aws_env(&mut cmd, &aws.url);
    let out = tokio::task::block_in_place(|| cmd.output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let app = failed["serviceAccounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["serviceAccount"] == "reports/pi-app")
        .unwrap_or_else(|| panic!("pi-app dropped: {failed:#}"));
    assert_eq!(app["ready"], "Unknown", "{app:#}");
    assert_eq!(
        failed["awsCalls"]["eks:ListPodIdentityAssociations"], 1,
        "{failed:#}"
    );
    assert!(stderr.contains("could not be listed"), "{stderr}");
}

/// A pod of `shop/checkout` running `sleep`, with the agent's variables preset (the webhook
/// emulation injects IRSA only), on `node` (`None`: the node agent binds and runs it).
fn checkout_pod(name: &str, node: Option<&str>, scheduler: Option<&str>, injected: bool) -> Pod {
    let env = if injected {
        json!([
            {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"},
            {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
             "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"},
        ])
    } else {
        json!([])
    };
    let mut spec = json!({"serviceAccountName": "checkout", "containers": [
        {"name": "app", "image": "app:1", "command": ["sleep", "600"], "env": env}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    if let Some(scheduler) = scheduler {
        spec["schedulerName"] = json!(scheduler);
    }
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "checkout"}}, "spec": spec}),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_identity_is_followed_to_the_node_of_each_pod() {
    let sim = Cluster::start(ClusterOptions {
        chart_values: vec!["clusterName=test".into()],
        webhook: Some(Default::default()),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    bootstrap_cluster(&sim).await;
    let client = sim.client();
    admin
        .iam
        .create_role()
        .role_name("pi-checkout")
        .assume_role_policy_document(pod_identity_trust(&["sts:AssumeRole", "sts:TagSession"]))
        .send()
        .await
        .unwrap();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "checkout"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    // Created before the association: the webhook had nothing to inject.
    pods.create(
        &PostParams::default(),
        &checkout_pod("early", None, None, false),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let eks = Eks::start("test", ACCOUNT);
    let role = format!("arn:aws:iam::{ACCOUNT}:role/pi-checkout");
    eks.associate("shop", "checkout", &role);
    // Terraform names a ServiceAccount the chart does not create.
    eks.associate("shop", "checkout-svc", &role);
    eks.install_addon("eks-pod-identity-agent");
    // The agent's DaemonSet pod, on the node agent's node only.
    let agent: Pod = serde_json::from_value(json!({
        "metadata": {"name": "eks-pod-identity-agent-x1", "labels": {"app.kubernetes.io/name": "eks-pod-identity-agent"}},
        "spec": {"containers": [{"name": "agent", "image": "agent:1", "command": ["sleep", "600"]}]}}))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &agent)
        .await
        .unwrap();
    for pod in [
        checkout_pod("served", None, None, true),
        checkout_pod("elsewhere", Some("ip-10-0-9-9.ec2.internal"), None, true),
        checkout_pod(
            "on-fargate",
            Some("fargate-ip-10-0-3-7.ec2.internal"),
            Some("fargate-scheduler"),
            true,
        ),
    ] {
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    eventually("the agent pod Ready", Duration::from_secs(30), async || {
        let pod = Api::<Pod>::namespaced(client.clone(), "kube-system")
            .get("eks-pod-identity-agent-x1")
            .await
            .ok()?;
        pod.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;

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
            "--association-poll-interval",
            "2s",
        ],
        &[("AWS_ENDPOINT_URL_EKS", eks.url.as_str())],
    );
    eventually("readiness", Duration::from_secs(30), async || {
        get(&op.metrics, "/readyz").await.filter(|(c, _)| *c == 200)
    })
    .await;
    // An association created while the operator runs is seen at the next poll, not at the next
    // sweep (10 minutes away): its role's trust lacks sts:TagSession.
    admin
        .iam
        .create_role()
        .role_name("pi-untagged")
        .assume_role_policy_document(pod_identity_trust(&["sts:AssumeRole"]))
        .send()
        .await
        .unwrap();
    let late: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &late)
        .await
        .unwrap();
    eks.associate(
        "shop",
        "late",
        &format!("arn:aws:iam::{ACCOUNT}:role/pi-untagged"),
    );
    let events = eventually(
        "a Warning on shop/late",
        Duration::from_secs(20),
        async || {
            let events: Vec<_> =
                Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "shop")
                    .list(&Default::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("late")
                    })
                    .collect();
            Some(events).filter(|e| !e.is_empty())
        },
    )
    .await;
    assert_eq!(
        events[0].reason.as_deref(),
        Some("PodIdentityTrustMissingTagSession"),
        "{events:?}"
    );
    let spec: irsa_doctor::api::IrsaCheckSpec = serde_json::from_value(
        json!({"serviceAccountName": "checkout", "interval": "1h", "probe": {"enabled": false}}),
    )
    .unwrap();
    let checks = checks_api(&client, "shop");
    checks
        .create(
            &PostParams::default(),
            &irsa_doctor::api::IrsaCheck::new("checkout", spec),
        )
        .await
        .unwrap();
    let check = diagnosed(&checks, "checkout").await;
    let status = check.status.clone().unwrap();
    let findings: Vec<(String, String)> = status
        .findings
        .iter()
        .map(|f| (f.reason.clone(), f.message.clone()))
        .collect();
    let finding = |reason: &str| {
        findings
            .iter()
            .find(|(r, _)| r == reason)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("no {reason}: {findings:#?}"))
    };
    assert!(finding("PodCreatedBeforeAssociation").contains("early"));
    let agentless = finding("PodIdentityAgentNotReady");
    assert!(
        agentless.contains("elsewhere") && agentless.contains("ip-10-0-9-9.ec2.internal"),
        "{agentless}"
    );
    assert!(finding("PodIdentityOnFargate").contains("on-fargate"));
    assert!(
        !findings.iter().any(|(_, m)| m.contains("served")),
        "the pod on the agent's node is fine: {findings:#?}"
    );
    assert_eq!(ready_of(&check).unwrap().0, "False", "{status:?}");

    // `check` from a laptop: the same audit, and the association without its ServiceAccount,
    // pointing at the one the namespace has.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
    cmd.args(["check", "-n", "shop", "-o", "json", "--skip-node-check"])
        .arg("--skip-issuer-keys")
        .args(["--kubeconfig", sim.kubeconfig_path().to_str().unwrap()])
        .args(["--cluster-name", "test", "--issuer", sim.issuer()])
        .env("AWS_ENDPOINT_URL_EKS", eks.url.as_str());
    aws_env(&mut cmd, &aws.url);
    let out = tokio::task::block_in_place(|| cmd.output().unwrap());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for reason in [
        "PodCreatedBeforeAssociation",
        "PodIdentityAgentNotReady",
        "PodIdentityOnFargate",
        "PodIdentityServiceAccountMissing",
    ] {
        assert!(text.contains(reason), "{reason}: {text}");
    }
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let missing = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "PodIdentityServiceAccountMissing")
        .unwrap();
    assert_eq!(missing["serviceAccount"], "shop/checkout-svc");
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("did you mean \"checkout\""),
        "{missing}"
    );
    assert_eq!(out.status.code(), Some(1));
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
