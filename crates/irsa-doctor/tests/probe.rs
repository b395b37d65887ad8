//! End to end, issue of record: the probe pod and the workload audit. The webhook emulation and
//! the node agent run the probe pod as a local process — the real `aws` CLI with the injected env and
//! token, against moto — or play the AWS CLI's real error outputs; the real operator binary
//! reads the outcome.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use control_plane::node::{KubeletOptions, Script};
use control_plane::webhook::WebhookOptions;
use irsa_aws::Clients;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const PROBE_LABEL: &str = "irsa-doctor.io/probe=true";

/// The AWS CLI's own words for each failure.
fn scripted(pod: &Value) -> Option<Script> {
    let exit = |log: &str, code| {
        Some(Script::Exit {
            log: log.into(),
            code,
            after: Duration::from_millis(50),
        })
    };
    match pod["spec"]["serviceAccountName"].as_str()? {
        "denied" => exit("\nAn error occurred (AccessDenied) when calling the AssumeRoleWithWebIdentity operation: Not authorized to perform sts:AssumeRoleWithWebIdentity\n", 254),
        "badtoken" => exit("\nAn error occurred (InvalidIdentityToken) when calling the AssumeRoleWithWebIdentity operation: No OpenIDConnect provider found in your account for https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE\n", 254),
        "nocreds" => exit("\nUnable to locate credentials. You can configure credentials by running \"aws configure\".\n", 253),
        "pullfail" => Some(Script::ImagePullFailure),
        // 40 KiB of output before the CLI's error: the operator reads no more than 16 KiB.
        "chatty" => exit(&format!("{}\nAn error occurred (AccessDenied) when calling the AssumeRoleWithWebIdentity operation: Not authorized\n",
            (0..640).map(|i| format!("line {i:05} {}\n", "x".repeat(52))).collect::<String>()), 254),
        "slow" => Some(Script::Hang),
        // Workload pods idle; probe pods of other accounts run the real CLI.
        _ if pod["metadata"]["labels"]["irsa-doctor.io/probe"].is_null() => Some(Script::Hang),
        _ => None,
    }
}

async fn sim_with(moto_url: &str, extra: Vec<(String, String)>) -> Cluster {
    let mut env = vec![
        ("AWS_ENDPOINT_URL".to_string(), moto_url.to_string()),
        // The CLI reads AWS_DEFAULT_REGION; without the webhook nothing else sets it.
        ("AWS_DEFAULT_REGION".to_string(), "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ];
    env.extend(extra);
    // As on EKS, the webhook injects the cluster's region and regional STS endpoints.
    let webhook = WebhookOptions {
        region: Some("us-east-1".into()),
        regional_sts: true,
        ..WebhookOptions::default()
    };
    Cluster::start(ClusterOptions {
        node: KubeletOptions {
            extra_env: env,
            script: Some(Arc::new(scripted)),
            ..KubeletOptions::default()
        },
        webhook: Some(webhook),
        ..ClusterOptions::default()
    })
    .await
    .unwrap()
}

async fn add_sa(client: &kube::Client, name: &str, role: Option<&str>) {
    let annotations = role
        .map(|r| json!({"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/{r}")}));
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations}}))
            .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "reports")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
}

async fn condition(
    client: &kube::Client,
    check: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let c = checks_api(client, "reports").get(check).await.ok()?;
    let cond = c
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((cond.status, cond.reason, cond.message))
}

async fn wait_condition(
    client: &kube::Client,
    check: &str,
    type_: &str,
    reason: &str,
) -> (String, String, String) {
    for _ in 0..600 {
        if let Some(c) = condition(client, check, type_)
            .await
            .filter(|(_, r, _)| r == reason)
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = checks_api(client, "reports")
        .get(check)
        .await
        .map(|c| c.status);
    panic!("{check} never got {type_}={reason}: {status:#?}");
}

async fn probe_pods(client: &kube::Client) -> usize {
    Api::<Pod>::all(client.clone())
        .list(&ListParams::default().labels(PROBE_LABEL))
        .await
        .unwrap()
        .items
        .len()
}

fn probing(sa: &str, timeout: &str) -> Value {
    json!({"serviceAccountName": sa, "interval": "1h", "probe": {"enabled": true, "timeout": timeout}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_verdicts_and_workload_audit() {
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    let sim = sim_with(&aws.url, Vec::new()).await;
    setup(&sim, &admin).await;
    let client = sim.client();
    // "denied" names the exporter role, whose trust policy admits another subject.
    add_sa(&client, "denied", Some("exporter")).await;
    for sa in ["badtoken", "nocreds", "pullfail", "slow", "chatty"] {
        add_sa(&client, sa, Some("s3-reader")).await;
    }
    let _op = start_operator(&sim, &aws.url, &["--leader-election", "false"]);

    // The real aws CLI, with the injected token, assumes the role in moto.
    create_check_with(&client, "good", probing("s3-reader", "1m")).await;
    let (_, _, message) =
        wait_condition(&client, "good", "ProbeSucceeded", "ProbeAssumedRole").await;
    assert!(
        message.contains(&format!("arn:aws:sts::{ACCOUNT}:assumed-role/s3-reader/")),
        "{message}"
    );
    let good = checks_api(&client, "reports").get("good").await.unwrap();
    assert!(good
        .status
        .as_ref()
        .and_then(|s| s.assumed_arn.as_deref())
        .unwrap()
        .contains(":assumed-role/s3-reader/"));
    assert_eq!(
        ready_of(&good),
        Some(("True".into(), "AllChecksPassed".into()))
    );

    // The AWS CLI's real error outputs.
    let outcomes = [
        ("denied", "ProbeAccessDenied", "False"),
        ("badtoken", "ProbeInvalidIdentityToken", "False"),
        ("nocreds", "ProbeNoCredentials", "False"),
        ("pullfail", "ProbeImagePullFailed", "Unknown"),
        ("slow", "ProbeTimedOut", "Unknown"),
    ];
    for (sa, _, _) in outcomes {
        create_check_with(&client, sa, probing(sa, "10s")).await;
    }
    for (sa, reason, status) in outcomes {
        let (s, _, _) = wait_condition(&client, sa, "ProbeSucceeded", reason).await;
        assert_eq!(s, status, "{sa}");
    }
    // A log past the operator's 16 KiB read bound: its end (the CLI's error) is never read.
    create_check_with(&client, "chatty", probing("chatty", "10s")).await;
    let (_, _, message) = wait_condition(&client, "chatty", "ProbeSucceeded", "ProbeFailed").await;
    assert!(
        message.contains("line 00") && !message.contains("line 00639"),
        "{message}"
    );
    // When static checks explain the failure, Ready names the root cause and the probe's
    // finding corroborates it. (moto does not enforce trust policies, so the refusal is played.)
    let (status, reason, _) = eventually("denied's Ready", Duration::from_secs(30), async || {
        condition(&client, "denied", "Ready").await
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "TrustPolicySubjectMismatch")
    );

    // Workload audit: a pod created before the annotation is told apart (by the annotation's
    // managedFields time) and "restart it" is the fix; recreating it recovers.
    // Created with a label, as kubectl apply or Helm would: a bare `kubectl create` leaves no
    // managedFields for the API server to time the annotation by.
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "late", "labels": {"app": "late"}}}))
            .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "reports")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "reports");
    let workload: Pod = serde_json::from_value(
        json!({"metadata": {"name": "api-0"}, "spec": {"serviceAccountName": "late",
        "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &workload)
        .await
        .unwrap();
    // Timestamps have whole seconds: the annotation comes in a later one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    Api::<ServiceAccount>::namespaced(client.clone(), "reports")
        .patch("late", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/s3-reader")}}})))
        .await
        .unwrap();
    create_check(&client, "late", "late").await;
    let (_, _, message) = wait_condition(
        &client,
        "late",
        "WorkloadsValid",
        "PodCreatedBeforeAnnotation",
    )
    .await;
    assert!(
        message.contains("api-0") && message.contains("before the role-arn annotation was set"),
        "{message}"
    );
    let old = pods
        .delete("api-0", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .and_then(|p| p.metadata.uid)
        .unwrap_or_default();
    // A real API server keeps a deleted pod until its kubelet confirms the containers stopped.
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(
            pods.clone(),
            "api-0",
            kube::runtime::wait::conditions::is_deleted(&old),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    pods.create(&PostParams::default(), &workload)
        .await
        .unwrap();
    checks_api(&client, "reports")
        .patch(
            "late",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"interval": "2h"}})),
        )
        .await
        .unwrap();
    wait_condition(&client, "late", "WorkloadsValid", "WorkloadsInjected").await;

    // Every probe pod is gone once its outcome was read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(probe_pods(&client).await, 0);
    assert_rbac_covers(&sim);
}

/// The findings an IrsaCheck's status lists.
async fn findings(client: &kube::Client, check: &str) -> Vec<(String, String)> {
    checks_api(client, "reports")
        .get(check)
        .await
        .ok()
        .and_then(|c| c.status)
        .map(|s| {
            s.findings
                .into_iter()
                .map(|f| (f.reason, f.message))
                .collect()
        })
        .unwrap_or_default()
}

/// The pod side on a real API server, through the webhook's real registration: what the audit
/// reports for a preset AWS_ROLE_ARN, token readability by the kubelet's rules, and credentials
/// that shadow IRSA — and what it must not report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_side_findings_on_a_real_server() {
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    let sim = sim_with(&aws.url, Vec::new()).await;
    setup(&sim, &admin).await;
    let client = sim.client();
    let role = format!("arn:aws:iam::{ACCOUNT}:role/s3-reader");
    let other = format!("arn:aws:iam::{ACCOUNT}:role/exporter");
    let mixed_user = |name: &str, uid: i64| {
        json!({"name": name, "image": "busybox", "securityContext": {"runAsUser": uid},
            "env": [{"name": "AWS_ROLE_ARN", "value": role},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/tokens/aws/token"}],
            "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/tokens/aws"}]})
    };
    let workloads = [
        // The template sets AWS_ROLE_ARN itself: the webhook injects neither variable.
        (
            "preset",
            json!({"containers": [{"name": "app", "image": "busybox",
            "env": [{"name": "AWS_ROLE_ARN", "value": other}]}]}),
        ),
        // Non-root without fsGroup: the kubelet makes the token world-readable (KEP-2451).
        (
            "nonroot",
            json!({"securityContext": {"runAsUser": 1000, "runAsNonRoot": true},
            "containers": [{"name": "app", "image": "busybox"}]}),
        ),
        // Its own token volume, mode 0600, read by two different users: root-owned, unreadable.
        (
            "mixed",
            json!({
            "volumes": [{"name": "token", "projected": {"defaultMode": 0o600, "sources": [
                {"serviceAccountToken": {"audience": "sts.amazonaws.com", "path": "token"}}]}}],
            "containers": [mixed_user("app", 1000), mixed_user("sidecar", 2000)]}),
        ),
        // Keys from a Secret and a profile shadow IRSA in the SDKs' default chain.
        (
            "shadow",
            json!({"containers": [{"name": "app", "image": "busybox", "env": [
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "aws-keys", "key": "id"}}},
            {"name": "AWS_PROFILE", "value": "legacy"}]}]}),
        ),
    ];
    let _op = start_operator(&sim, &aws.url, &["--leader-election", "false"]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "reports");
    for (name, spec) in &workloads {
        add_sa(&client, name, Some("s3-reader")).await;
        let mut spec = spec.clone();
        spec["serviceAccountName"] = json!(name);
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": format!("{name}-0")}, "spec": spec}),
        )
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        create_check(&client, name, name).await;
    }

    let (status, _, message) =
        wait_condition(&client, "preset", "WorkloadsValid", "PresetWebIdentityEnv").await;
    assert_eq!(status, "False");
    assert!(
        message.contains("preset-0") && message.contains("AWS_ROLE_ARN"),
        "{message}"
    );
    assert!(!message.contains("restart"), "not a stale pod: {message}");

    let (status, _, _) =
        wait_condition(&client, "nonroot", "WorkloadsValid", "WorkloadsInjected").await;
    assert_eq!(status, "True");
    let listed = findings(&client, "nonroot").await;
    assert!(
        listed.iter().all(|(r, _)| r != "TokenUnreadable"),
        "the common non-root pod without fsGroup reads its token: {listed:?}"
    );

    let (_, _, message) =
        wait_condition(&client, "mixed", "WorkloadsValid", "TokenUnreadable").await;
    assert!(
        message.contains("mixed-0") && message.contains("0600"),
        "{message}"
    );

    // Warnings: the condition passes and says so; the findings name each one.
    let (status, _, message) =
        wait_condition(&client, "shadow", "WorkloadsValid", "WorkloadsInjected").await;
    assert_eq!(status, "True");
    assert!(
        message.contains("static credentials take precedence"),
        "{message}"
    );
    let listed = findings(&client, "shadow").await;
    let reasons: Vec<&str> = listed.iter().map(|(r, _)| r.as_str()).collect();
    assert!(
        reasons.contains(&"StaticCredentialsFound")
            && reasons.contains(&"SharedCredentialsConfigured"),
        "{listed:?}"
    );
    let keys = listed
        .iter()
        .find(|(r, _)| r == "StaticCredentialsFound")
        .unwrap();
    assert!(keys.1.contains("Secret aws-keys"), "{keys:?}");
    assert_rbac_covers(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_webhook_credentials_are_not_injected_or_the_node_role_answers() {
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    // Credentials of the node's instance role session, as IMDS would hand them out.
    admin
        .iam
        .create_role()
        .role_name("eks-node")
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)
        .send()
        .await
        .unwrap();
    let node = admin
        .sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/eks-node"))
        .role_session_name("i-0abc1234def567890")
        .send()
        .await
        .unwrap();
    let creds = node.credentials().unwrap();
    for (with_node_credentials, expected) in [
        (false, "ProbeCredentialsNotInjected"),
        (true, "ProbeAssumedNodeRole"),
    ] {
        let extra = if with_node_credentials {
            vec![
                (
                    "AWS_ACCESS_KEY_ID".to_string(),
                    creds.access_key_id().to_string(),
                ),
                (
                    "AWS_SECRET_ACCESS_KEY".to_string(),
                    creds.secret_access_key().to_string(),
                ),
                (
                    "AWS_SESSION_TOKEN".to_string(),
                    creds.session_token().to_string(),
                ),
            ]
        } else {
            Vec::new()
        };
        let mut sim = sim_with(&aws.url, extra).await;
        sim.remove_webhook().await.unwrap();
        if with_node_credentials {
            // setup() creates the provider and roles; only once per moto.
            let client = sim.client();
            bootstrap_cluster(&sim).await;
            add_sa(&client, "s3-reader", Some("s3-reader")).await;
        } else {
            setup(&sim, &admin).await;
        }
        let client = sim.client();
        let _op = start_operator(&sim, &aws.url, &["--leader-election", "false"]);
        create_check_with(&client, "check", probing("s3-reader", "1m")).await;
        let (status, _, message) =
            wait_condition(&client, "check", "ProbeSucceeded", expected).await;
        assert_eq!(status, "False");
        assert!(
            message.contains("no pod identity webhook configuration exists"),
            "{message}"
        );
        if with_node_credentials {
            assert!(
                message.contains("assumed-role/eks-node/i-0abc1234def567890"),
                "{message}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_probe_leaves_no_orphan() {
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    let sim = sim_with(&aws.url, Vec::new()).await;
    setup(&sim, &admin).await;
    let client = sim.client();
    add_sa(&client, "slow", Some("s3-reader")).await;
    let first = start_operator(&sim, &aws.url, &["--leader-election", "false"]);
    create_check_with(&client, "slow", probing("slow", "15m")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "reports");
    let orphan = eventually("the probe pod", Duration::from_secs(30), async || {
        pods.list(&ListParams::default().labels(PROBE_LABEL))
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    drop(first); // SIGKILL mid-probe: nothing cleans up.
    assert_eq!(probe_pods(&client).await, 1);
    let _second = start_operator(&sim, &aws.url, &["--leader-election", "false"]);
    let old_uid = orphan.metadata.uid.clone();
    eventually(
        "the orphan to be removed",
        Duration::from_secs(30),
        async || {
            let items = pods
                .list(&ListParams::default().labels(PROBE_LABEL))
                .await
                .ok()?
                .items;
            items
                .iter()
                .all(|p| p.metadata.uid != old_uid)
                .then_some(())
        },
    )
    .await;
}
