//! End to end, issue 13: what a user controls is bounded, and what irsa-doctor deletes, skips
//! or prints on the strength of it. On the real API server: the CRD's bounds; probe pods told
//! apart from pods that only look like one (by owner, not label) when deleting and auditing;
//! and control and bidi characters of an annotation escaped in status and Events, as in
//! `irsa-doctor lint`.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use control_plane::node::{KubeletOptions, Script};
use control_plane::webhook::WebhookOptions;
use irsa_aws::Clients;
use irsa_core::text::escape_untrusted;
use irsa_doctor::api::{IrsaCheck, IrsaCheckSpec, SpecError};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};

/// An annotation value that recolours a terminal (ESC [31m) and reverses what follows (U+202E).
const HOSTILE_ARN: &str = "arn:aws:iam::123456789012:role/x\u{1b}[31m\u{202e}";
/// How it must read wherever irsa-doctor shows it.
const ESCAPED_ARN: &str = "arn:aws:iam::123456789012:role/x\\u{1b}[31m\\u{202e}";

/// Every string in `value` that holds a character irsa-doctor must escape, with where it is.
fn unescaped(value: &Value, at: &str) -> Vec<String> {
    match value {
        Value::String(s) if escape_untrusted(s) != s.as_str() => vec![format!("{at}: {s:?}")],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .flat_map(|(i, v)| unescaped(v, &format!("{at}[{i}]")))
            .collect(),
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| unescaped(v, &format!("{at}.{k}")))
            .collect(),
        _ => Vec::new(),
    }
}

/// The API server's refusal of `result`: its code and message.
fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(s)) => (s.code, s.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn spec(value: Value) -> IrsaCheckSpec {
    serde_json::from_value(value).unwrap()
}

fn permissions(n: usize) -> Value {
    json!(vec![
        json!({"action": "s3:GetObject", "resource": "arn:aws:s3:::reports/*"});
        n
    ])
}

/// The CRD's bounds hold on the real API server, with messages naming the field, and
/// `validate()` agrees for objects that never reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_unbounded_specs_and_statuses() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    bootstrap_cluster(&cluster).await;
    let checks = checks_api(&cluster.client(), "reports");
    let create = |name: &str, s: &IrsaCheckSpec| {
        let check = IrsaCheck::new(name, s.clone());
        let checks = checks.clone();
        async move { checks.create(&PostParams::default(), &check).await }
    };

    let huge = spec(json!({"serviceAccountName": "s3-reader", "permissions": permissions(10_000)}));
    let (code, message) = refusal(create("huge", &huge).await);
    assert_eq!(code, 422, "{message}");
    assert!(
        message.contains("spec.permissions") && message.contains("50"),
        "{message}"
    );
    assert!(matches!(
        huge.validate(),
        Err(SpecError::TooManyPermissions {
            count: 10_000,
            max: 50
        })
    ));

    let long_arn = format!("arn:aws:iam::123456789012:role/{}", "r".repeat(2048));
    for (field, s) in [
        (
            "spec.expectedRoleArn",
            json!({"serviceAccountName": "s3-reader", "expectedRoleArn": long_arn}),
        ),
        (
            "spec.permissions[0].action",
            json!({"serviceAccountName": "s3-reader",
                "permissions": [{"action": format!("s3:{}", "A".repeat(200))}]}),
        ),
        (
            "spec.permissions[0].resource",
            json!({"serviceAccountName": "s3-reader",
                "permissions": [{"action": "s3:GetObject", "resource": long_arn}]}),
        ),
    ] {
        let s = spec(s);
        let (code, message) = refusal(create("long", &s).await);
        assert_eq!(code, 422, "{field}: {message}");
        assert!(message.contains(field), "{field}: {message}");
        match s.validate() {
            Err(SpecError::TooLong { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{field}: {other:?}"),
        }
    }

    // At the bound, accepted; and the status the operator writes is bounded too.
    let full = spec(json!({"serviceAccountName": "s3-reader", "permissions": permissions(50)}));
    create("full", &full).await.unwrap();
    let findings = |n: usize| {
        json!({"status": {"findings": vec![json!({"reason": "PermissionDenied",
            "severity": "error", "message": "m"}); n]}})
    };
    let (code, message) = refusal(
        checks
            .patch_status("full", &PatchParams::default(), &Patch::Merge(findings(33)))
            .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("status.findings"), "{message}");
    checks
        .patch_status("full", &PatchParams::default(), &Patch::Merge(findings(32)))
        .await
        .unwrap();
}

/// Every pod of this test idles until deleted: only what irsa-doctor deletes goes away.
fn idle(_: &Value) -> Option<Script> {
    Some(Script::Hang)
}

/// A pod of `s3-reader` (which exists from the start, unlike `default`), merged with `value`.
fn pod(value: Value) -> Pod {
    let mut pod = json!({"spec": {"serviceAccountName": "s3-reader",
        "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}]}});
    json_merge(&mut pod, value);
    serde_json::from_value(pod).unwrap()
}

fn json_merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                json_merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A pod named like a probe pod but not irsa-doctor's is reported and left alone; pods that
/// copy the probe label survive the orphan sweep and are audited, while a real orphaned probe
/// pod is removed and a running probe's pod is kept; the probe pod mounts no Kubernetes API
/// token, yet gets the web identity token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_pods_are_told_apart_by_owner_not_label() {
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    let cluster = Cluster::start(ClusterOptions {
        node: KubeletOptions {
            extra_env: Vec::new(),
            script: Some(Arc::new(idle)),
            ..KubeletOptions::default()
        },
        webhook: Some(WebhookOptions::default()),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    setup(&cluster, &admin).await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "reports");
    let create_pod = |p: Pod| {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &p)
                .await
                .unwrap()
                .uid()
                .unwrap()
        }
    };

    // A user's pod that happens to have the probe pod's name of IrsaCheck `squatter`.
    let squatter = create_pod(pod(json!({"metadata": {"name": "squatter-irsa-probe"}}))).await;
    // The probe label copied onto a pod without an owner.
    let decoy = create_pod(pod(json!({"metadata": {"name": "decoy",
        "labels": {"irsa-doctor.io/probe": "true", "irsa-doctor.io/check-uid": "x"}}})))
    .await;
    // A workload with static keys that sets the label to hide from the audit. Its owner is a
    // StatefulSet at zero replicas: no StatefulSet controller runs here to delete the pod.
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "worker",
        "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/s3-reader")}}}))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "reports")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let rs: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "worker"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "worker"}},
            "template": {"metadata": {"labels": {"app": "worker"}},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}}))
    .unwrap();
    let rs = Api::<StatefulSet>::namespaced(client.clone(), "reports")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let worker = create_pod(pod(json!({"metadata": {"name": "worker-7d9f",
            "labels": {"app": "worker", "irsa-doctor.io/probe": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                "name": "worker", "uid": rs.uid().unwrap(), "controller": true}]},
        "spec": {"serviceAccountName": "worker", "containers": [{"name": "app",
            "image": "busybox", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": "AKIAEXAMPLE"}]}]}})))
    .await;
    // A probe pod irsa-doctor left behind (a crash): every mark, no run in flight.
    create_check(&client, "orphaned", "s3-reader").await;
    let orphaned = checks_api(&client, "reports")
        .get("orphaned")
        .await
        .unwrap();
    let orphan_uid = orphaned.uid().unwrap();
    let orphan = create_pod(pod(json!({"metadata": {"name": "orphaned-irsa-probe",
        "labels": {"irsa-doctor.io/probe": "true", "irsa-doctor.io/check-uid": orphan_uid},
        "ownerReferences": [{"apiVersion": "irsa-doctor.io/v1alpha1", "kind": "IrsaCheck",
            "name": "orphaned", "uid": orphan_uid, "controller": true}]}})))
    .await;

    let _op = start_operator(&cluster, &aws.url, &["--leader-election", "false"]);
    create_check_with(
        &client,
        "squatter",
        json!({"serviceAccountName": "s3-reader", "probe": {"enabled": true, "timeout": "10s"}}),
    )
    .await;
    create_check(&client, "worker", "worker").await;
    // A probe that runs for as long as the test: its pod is in flight.
    create_check_with(
        &client,
        "running",
        json!({"serviceAccountName": "s3-reader", "probe": {"enabled": true, "timeout": "15m"}}),
    )
    .await;

    let probe_condition = eventually(
        "squatter's ProbeSucceeded",
        Duration::from_secs(60),
        async || {
            let check = checks_api(&client, "reports").get("squatter").await.ok()?;
            check
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "ProbeSucceeded")
        },
    )
    .await;
    assert_eq!(
        (
            probe_condition.status.as_str(),
            probe_condition.reason.as_str()
        ),
        ("Unknown", "ProbeNotRun")
    );
    assert!(
        probe_condition.message.contains(
            "pod reports/squatter-irsa-probe exists and is not this IrsaCheck's probe pod"
        ) && probe_condition.message.contains("left that pod alone"),
        "{}",
        probe_condition.message
    );

    // The workload is audited although it carries the probe label.
    let worker_check = eventually("worker's findings", Duration::from_secs(60), async || {
        let check = checks_api(&client, "reports").get("worker").await.ok()?;
        let findings = check.status?.findings;
        findings
            .into_iter()
            .find(|f| f.reason == "StaticCredentialsFound")
    })
    .await;
    assert!(
        worker_check.message.contains("worker-7d9f")
            && worker_check.message.contains("AWS_ACCESS_KEY_ID"),
        "{}",
        worker_check.message
    );

    // The running probe's pod: no API token, the webhook's token all the same.
    let running = eventually(
        "the running probe's pod",
        Duration::from_secs(60),
        async || pods.get_opt("running-irsa-probe").await.ok()?,
    )
    .await;
    let spec = running.spec.clone().unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    let volumes: Vec<String> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect();
    assert!(
        volumes.contains(&"aws-iam-token".to_string()),
        "{volumes:?}"
    );
    assert!(
        !volumes.iter().any(|v| v.starts_with("kube-api-access")),
        "{volumes:?}"
    );

    // The orphan goes; then several sweeps (every 2 s) later, nothing else has.
    eventually(
        "the orphan to be removed",
        Duration::from_secs(30),
        async || match pods.get_opt("orphaned-irsa-probe").await.ok()? {
            Some(p) if p.uid().as_deref() == Some(orphan.as_str()) => None,
            _ => Some(()),
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    for (name, uid) in [
        ("squatter-irsa-probe", &squatter),
        ("decoy", &decoy),
        ("worker-7d9f", &worker),
        ("running-irsa-probe", &running.uid().unwrap()),
    ] {
        let now = pods.get_opt(name).await.unwrap().and_then(|p| p.uid());
        assert_eq!(now.as_ref(), Some(uid), "{name} must survive");
    }
    assert_rbac_covers(&cluster);
}

/// A ServiceAccount annotated with a value that would recolour a terminal and reverse text:
/// the status, its findings and the Event show it escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_bidi_characters_are_escaped_in_status_and_events() {
    let aws = moto::Moto::start();
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    bootstrap_cluster(&cluster).await;
    let client = cluster.client();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "hostile",
        "annotations": {"eks.amazonaws.com/role-arn": HOSTILE_ARN}}}))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "reports")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let _op = start_operator(&cluster, &aws.url, &["--leader-election", "false"]);
    create_check(&client, "hostile", "hostile").await;

    let check = diagnosed(&checks_api(&client, "reports"), "hostile").await;
    let status = check.status.unwrap();
    assert_eq!(status.role_arn.as_deref(), Some(ESCAPED_ARN));
    let malformed = status
        .findings
        .iter()
        .find(|f| f.reason == "RoleArnMalformed")
        .expect("a RoleArnMalformed finding");
    assert!(
        malformed.message.contains(ESCAPED_ARN),
        "{}",
        malformed.message
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(ready.message.contains(ESCAPED_ARN), "{}", ready.message);
    let raw = unescaped(&serde_json::to_value(&status).unwrap(), "status");
    assert!(raw.is_empty(), "{raw:?}");

    let events = eventually(
        "the IrsaCheck's Event",
        Duration::from_secs(30),
        async || Some(events_for(&client, "IrsaCheck", "hostile").await).filter(|e| !e.is_empty()),
    )
    .await;
    let note = events[0].message.clone().unwrap_or_default();
    assert!(note.contains(ESCAPED_ARN), "{note}");
    assert_eq!(escape_untrusted(&note), note.as_str(), "{note:?}");
}

/// `irsa-doctor lint`, text and JSON, shows the same annotation escaped.
#[test]
fn lint_output_escapes_control_and_bidi_characters() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("sa.json");
    std::fs::write(
        &manifest,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "hostile", "namespace": "reports",
                "annotations": {"eks.amazonaws.com/role-arn": HOSTILE_ARN}}})
        .to_string(),
    )
    .unwrap();
    let lint = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"))
            .args([
                "lint",
                "--issuer",
                "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
                "--format",
                format,
                "--service-account",
            ])
            .arg(&manifest)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    let text = lint("text");
    assert!(text.contains("RoleArnMalformed"), "{text}");
    assert!(text.contains(&format!("role {ESCAPED_ARN}")), "{text}");
    assert_eq!(
        escape_untrusted(&text.replace('\n', "")),
        text.replace('\n', ""),
        "{text:?}"
    );

    let json: Value = serde_json::from_str(&lint("json")).unwrap();
    let finding = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "RoleArnMalformed")
        .expect("a RoleArnMalformed finding");
    assert_eq!(finding["roleArn"], ESCAPED_ARN);
    assert!(
        finding["message"].as_str().unwrap().contains(ESCAPED_ARN),
        "{finding}"
    );
    let raw = unescaped(&json, "output");
    assert!(raw.is_empty(), "{raw:?}");
}
