//! End to end: the real `irsa-doctor run` binary against the real control plane and moto (the
//! real AWS SDK), asserting conditions, Events, metrics, recovery, outage handling and leader
//! election; and `irsa-doctor check` against the same.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use irsa_aws::Clients;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

/// What users run: `kubectl get irsachecks`, `kubectl wait`, `kubectl describe serviceaccount`.
/// Skipped (and said so) when kubectl is not on PATH.
fn kubectl_shows(sim: &Cluster) {
    let kubectl = |args: &[&str]| {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(sim.kubeconfig_path())
            .args(args)
            .output();
        out.map(|o| {
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr),
            )
        })
    };
    let Ok((_, _)) = kubectl(&["version", "--client"]) else {
        eprintln!("SKIPPED kubectl checks: kubectl is not on PATH");
        return;
    };
    let (ok, out) =
        tokio::task::block_in_place(|| kubectl(&["get", "irsachecks", "-n", "reports"])).unwrap();
    assert!(
        ok && out.contains("SERVICEACCOUNT") && out.contains("TrustPolicySubjectMismatch"),
        "{out}"
    );
    let (ok, out) = tokio::task::block_in_place(|| {
        kubectl(&[
            "wait",
            "--for=condition=Ready",
            "irsacheck/good",
            "-n",
            "reports",
            "--timeout=20s",
        ])
    })
    .unwrap();
    assert!(ok, "kubectl wait: {out}");
    let (ok, out) = tokio::task::block_in_place(|| {
        kubectl(&["describe", "serviceaccount", "exporter", "-n", "reports"])
    })
    .unwrap();
    assert!(
        ok && out.contains("Warning") && out.contains("TrustPolicySubjectMismatch"),
        "kubectl describe: {out}"
    );
}

/// The Ready condition of a diagnosed check.
fn ready_condition(
    check: &irsa_doctor::api::IrsaCheck,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    check
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .cloned()
        .expect("a Ready condition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_diagnoses_reports_recovers_and_stays_quiet() {
    let sim = Cluster::start(ClusterOptions::default()).await.unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    setup(&sim, &admin).await;
    let client = sim.client();
    let op = start_operator(&sim, &aws.url, &["--leader-election", "false"]);
    eventually("readiness", Duration::from_secs(30), async || {
        get(&op.metrics, "/readyz").await.filter(|(c, _)| *c == 200)
    })
    .await;

    let created = Instant::now();
    create_check(&client, "good", "s3-reader").await;
    create_check(&client, "bad", "exporter").await;
    let checks = checks_api(&client, "reports");
    let good = diagnosed(&checks, "good").await;
    eprintln!(
        "IrsaCheck create → condition: {} ms",
        created.elapsed().as_millis()
    );
    assert_eq!(
        ready_of(&good),
        Some(("True".into(), "AllChecksPassed".into()))
    );
    let status = good.status.clone().unwrap();
    assert_eq!(status.observed_generation, good.metadata.generation);
    assert_eq!(
        status.role_arn,
        Some(format!("arn:aws:iam::{ACCOUNT}:role/s3-reader"))
    );
    let conds = &status.conditions;
    for t in [
        "ServiceAccountValid",
        "OIDCProviderValid",
        "TrustPolicyValid",
        "PermissionsValid",
        "Ready",
    ] {
        assert!(
            conds.iter().any(|c| c.type_ == t && c.status == "True"),
            "{t}: {conds:?}"
        );
    }
    let bad = diagnosed(&checks, "bad").await;
    assert_eq!(
        ready_of(&bad),
        Some(("False".into(), "TrustPolicySubjectMismatch".into()))
    );
    let transition_time = ready_condition(&bad).last_transition_time;

    // Events: on the ServiceAccount (kubectl describe) and on the check; and the swept SA without a check.
    let sa_events = eventually(
        "a Warning on the exporter SA",
        Duration::from_secs(10),
        async || {
            Some(events_for(&client, "ServiceAccount", "exporter").await).filter(|e| !e.is_empty())
        },
    )
    .await;
    assert_eq!(sa_events[0].type_.as_deref(), Some("Warning"));
    assert_eq!(
        sa_events[0].reason.as_deref(),
        Some("TrustPolicySubjectMismatch")
    );
    assert!(sa_events[0]
        .message
        .as_deref()
        .unwrap_or_default()
        .contains("system:serviceaccount:reports:exporter"));
    assert_eq!(events_for(&client, "IrsaCheck", "bad").await.len(), 1);
    let legacy = eventually(
        "a Warning on the legacy SA (no IrsaCheck)",
        Duration::from_secs(10),
        async || {
            Some(events_for(&client, "ServiceAccount", "legacy").await).filter(|e| !e.is_empty())
        },
    )
    .await;
    assert_eq!(
        legacy[0].reason.as_deref(),
        Some("TrustPolicySubjectMismatch")
    );
    assert!(
        events_for(&client, "ServiceAccount", "s3-reader")
            .await
            .is_empty(),
        "no event for a healthy first verdict"
    );
    kubectl_shows(&sim);

    // Metrics.
    let metrics = eventually(
        "metrics with the sweep's counts",
        Duration::from_secs(15),
        async || {
            get(&op.metrics, "/metrics")
                .await
                .map(|(_, b)| b)
                .filter(|b| b.contains("irsa_doctor_service_accounts{"))
        },
    )
    .await;
    assert!(metrics.contains(r#"irsa_doctor_check_ready{namespace="reports",name="bad",reason="TrustPolicySubjectMismatch"} 0"#), "{metrics}");
    assert!(
        metrics.contains(
            r#"irsa_doctor_check_ready{namespace="reports",name="good",reason="AllChecksPassed"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"irsa_doctor_service_accounts{verdict="error",reason="TrustPolicySubjectMismatch"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"irsa_doctor_aws_calls_total{service="iam",operation="GetRole",outcome="success"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("irsa_doctor_reconcile_duration_seconds_bucket"),
        "{metrics}"
    );
    let aws_calls: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("irsa_doctor_aws_calls_total"))
        .collect();
    eprintln!(
        "AWS calls so far (3 roles, 1 provider):\n{}",
        aws_calls.join("\n")
    );

    // A label change is no reason to diagnose again: the check does not re-run.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "reports");
    let last_run = checks
        .get("bad")
        .await
        .unwrap()
        .status
        .unwrap()
        .last_run_time;
    sas.patch(
        "exporter",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touch": "label"}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        checks
            .get("bad")
            .await
            .unwrap()
            .status
            .unwrap()
            .last_run_time,
        last_run,
        "a label change re-ran the check"
    );

    // Many reconciles of an unchanged verdict (annotation changes re-run the check): no new
    // Events, same lastTransitionTime.
    for i in 0..5 {
        sas.patch(
            "exporter",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touch": i.to_string()}}})),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = events_for(&client, "ServiceAccount", "exporter").await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].count.unwrap_or(1), 1, "no repeated event");
    let bad = checks.get("bad").await.unwrap();
    assert_ne!(
        bad.status.as_ref().unwrap().last_run_time,
        last_run,
        "annotation changes re-run the check"
    );
    assert_eq!(ready_condition(&bad).last_transition_time, transition_time);

    // Fix the trust policy: the check recovers with a Normal Event.
    let host_path = sim.issuer().trim_start_matches("https://").to_string();
    admin
        .iam
        .update_assume_role_policy()
        .role_name("exporter")
        .policy_document(trust_policy(&host_path, "reports", "exporter"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let fixed_at = Instant::now();
    sas.patch(
        "exporter",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"touch": "fixed"}}})),
    )
    .await
    .unwrap();
    eventually("bad to recover", Duration::from_secs(30), async || {
        checks
            .get("bad")
            .await
            .ok()
            .filter(|c| ready_of(c) == Some(("True".into(), "AllChecksPassed".into())))
    })
    .await;
    eprintln!(
        "ServiceAccount change → recovered condition: {} ms",
        fixed_at.elapsed().as_millis()
    );
    let normal = eventually("a Normal event", Duration::from_secs(10), async || {
        let evs = events_for(&client, "ServiceAccount", "exporter").await;
        evs.into_iter()
            .find(|e| e.type_.as_deref() == Some("Normal"))
    })
    .await;
    assert_eq!(normal.reason.as_deref(), Some("AllChecksPassed"));

    // AWS goes away: Unknown with AwsApiUnavailable, never False, and no Warning.
    drop(aws);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    checks
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"interval": "2h"}})),
        )
        .await
        .unwrap();
    let outage = eventually(
        "good to turn Unknown",
        Duration::from_secs(60),
        async || {
            checks
                .get("good")
                .await
                .ok()
                .filter(|c| ready_of(c).is_some_and(|(s, _)| s == "Unknown"))
        },
    )
    .await;
    assert_eq!(ready_of(&outage).unwrap().1, "AwsApiUnavailable");
    assert!(events_for(&client, "IrsaCheck", "good")
        .await
        .iter()
        .all(|e| e.type_.as_deref() != Some("Warning")));
    assert_rbac_covers(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes() {
    let sim = Cluster::start(ClusterOptions::default()).await.unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    setup(&sim, &admin).await;
    let client = sim.client();
    create_check(&client, "good", "s3-reader").await;
    let args = [
        "--lease-namespace",
        test_support::cluster::OPERATOR_NAMESPACE,
    ];
    let first = start_operator(
        &sim,
        &aws.url,
        &[&args[..], &["--identity", "replica-a"]].concat(),
    );
    let second = start_operator(
        &sim,
        &aws.url,
        &[&args[..], &["--identity", "replica-b"]].concat(),
    );
    let checks = checks_api(&client, "reports");
    eventually(
        "the check to be diagnosed",
        Duration::from_secs(60),
        async || {
            checks
                .get("good")
                .await
                .ok()
                .filter(|c| ready_of(c).is_some())
        },
    )
    .await;
    let holder = async || -> String {
        let lease: Value = client
            .request(
                http::Request::get(
                    "/apis/coordination.k8s.io/v1/namespaces/irsa-doctor/leases/irsa-doctor",
                )
                .body(Vec::new())
                .unwrap(),
            )
            .await
            .unwrap();
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let reconciles = async |op: &Operator| {
        get(&op.metrics, "/metrics")
            .await
            .map(|(_, b)| {
                b.lines()
                    .filter(|l| l.starts_with("irsa_doctor_reconciles_total"))
                    .count()
            })
            .unwrap_or(0)
    };
    // Read while one replica holds the Lease throughout. On a loaded machine a leader can miss
    // its renewal and hand over (it then exits); that is failover, not two writers, so the
    // observation is taken again.
    let mut observed = None;
    for _ in 0..3 {
        let before = holder().await;
        let (leader, follower) = if before == "replica-a" {
            (&first, &second)
        } else {
            (&second, &first)
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        let counts = (reconciles(leader).await, reconciles(follower).await);
        if holder().await == before {
            observed = Some(counts);
            break;
        }
    }
    let (leader, follower) = observed.expect("one replica held the Lease for 3 s");
    assert!(leader > 0, "the leader diagnoses");
    assert_eq!(follower, 0, "the follower writes nothing");
    assert_rbac_covers(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_command_prints_findings_and_exits_one() {
    let sim = Cluster::start(ClusterOptions::default()).await.unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    setup(&sim, &admin).await;
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
        cmd.arg("check")
            .args(args)
            .env("KUBECONFIG", sim.kubeconfig_path());
        aws_env(&mut cmd, &aws.url);
        cmd.output().unwrap()
    };
    let out = tokio::task::block_in_place(|| run(&["-n", "reports"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // kubectl's layout: one row per ServiceAccount under a header, cells separated by spaces.
    let table: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        table[0],
        ["NAMESPACE", "SERVICEACCOUNT", "ROLE", "READY", "REASON"],
        "{text}"
    );
    let role = |name: &str| format!("arn:aws:iam::{ACCOUNT}:role/{name}");
    assert!(
        table.contains(&vec![
            "reports",
            "s3-reader",
            &role("s3-reader"),
            "True",
            "AllChecksPassed"
        ]),
        "{text}"
    );
    assert!(
        table.contains(&vec![
            "reports",
            "exporter",
            &role("exporter"),
            "False",
            "TrustPolicySubjectMismatch"
        ]),
        "{text}"
    );
    // -o json, and --format json as before -o existed: the same document.
    let one =
        tokio::task::block_in_place(|| run(&["-n", "reports", "s3-reader", "--format", "json"]));
    assert_eq!(one.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(json["serviceAccounts"][0]["ready"], "True");
    let o_json = tokio::task::block_in_place(|| run(&["-n", "reports", "s3-reader", "-o", "json"]));
    assert_eq!(o_json.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<Value>(&o_json.stdout).unwrap(),
        json
    );
    // -o yaml: the same data.
    let yaml = tokio::task::block_in_place(|| run(&["-n", "reports", "s3-reader", "-o", "yaml"]));
    assert_eq!(yaml.status.code(), Some(0));
    let from_yaml: Value = serde_yaml_ng::from_slice(&yaml.stdout).unwrap();
    assert_eq!(from_yaml, json);
    // -o wide: the Ready message and the fix; exit 1 still follows the findings.
    let wide = tokio::task::block_in_place(|| run(&["-n", "reports", "exporter", "-o", "wide"]));
    assert_eq!(wide.status.code(), Some(1));
    let wide = String::from_utf8_lossy(&wide.stdout);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "SERVICEACCOUNT",
            "ROLE",
            "READY",
            "REASON",
            "PODS",
            "WORKLOADS",
            "MESSAGE",
            "FIX"
        ]
    );
    let row = wide.lines().nth(1).unwrap();
    assert!(
        row.contains("TrustPolicyValid: ")
            && row.ends_with(irsa_core::Reason::TrustPolicySubjectMismatch.remediation()),
        "{wide}"
    );
    let both = tokio::task::block_in_place(|| run(&["--format", "json", "-o", "yaml"]));
    assert_eq!(both.status.code(), Some(2), "--format and -o conflict");
    let missing = tokio::task::block_in_place(|| run(&["-n", "reports", "nope"]));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stdout).contains("ServiceAccountNotFound"));
}
