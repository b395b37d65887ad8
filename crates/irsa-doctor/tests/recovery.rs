//! End to end, issue 24: recovering as fast as the fault ends, and never losing an Event. On
//! the real control plane with the real operator and moto.

mod common;

use std::time::Duration;

use common::*;
use irsa_aws::Clients;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;

/// A valid object name of the greatest length, 253 characters (four DNS labels), starting
/// with `tag`.
fn longest_name(tag: &str) -> String {
    let first = format!("{tag}{}", "a".repeat(63 - tag.len()));
    [first, "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".")
}

/// Events of any valid object name are published: a 253-character IrsaCheck and a
/// 253-character ServiceAccount (diagnosed by the sweep) both get theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_for_the_longest_object_names() {
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    setup(&cluster, &admin).await;
    let client = cluster.client();
    let (check_sa, swept_sa) = (longest_name("check"), longest_name("swept"));
    assert_eq!((check_sa.len(), swept_sa.len()), (253, 253));
    let role = format!("arn:aws:iam::{ACCOUNT}:role/exporter");
    for name in [&check_sa, &swept_sa] {
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name,
            "annotations": {"eks.amazonaws.com/role-arn": role}}}))
        .unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), "reports")
            .create(&PostParams::default(), &sa)
            .await
            .unwrap();
    }
    let check_name = longest_name("irsacheck");
    create_check(&client, &check_name, &check_sa).await;
    let op = start_operator(&cluster, &aws.url, &["--leader-election", "false"]);

    for (kind, name) in [("IrsaCheck", &check_name), ("ServiceAccount", &swept_sa)] {
        let events = eventually(
            &format!("an Event on the {kind} of 253 characters"),
            Duration::from_secs(30),
            async || {
                let events = events_for(&client, kind, name).await;
                (!events.is_empty()).then_some(events)
            },
        )
        .await;
        let event = &events[0];
        assert_eq!(event.reason.as_deref(), Some("TrustPolicySubjectMismatch"));
        let event_name = event.metadata.name.as_deref().unwrap();
        assert!(event_name.len() <= 253, "{event_name}");
        assert!(event_name.starts_with(&name[..200]), "{event_name}");
    }
    let metrics = get(&op.metrics, "/metrics").await.unwrap().1;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("irsa_doctor_events_failed_total{") && !l.ends_with(" 0")),
        "no Event failed: {metrics}"
    );
}

/// Reads a counter or gauge off the operator's metrics, summed over the lines starting with
/// `prefix`.
async fn metric_sum(metrics: &str, prefix: &str) -> f64 {
    let text = get(metrics, "/metrics")
        .await
        .map(|(_, t)| t)
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// AWS refuses connections for 60 s, then returns: an IrsaCheck and ten ServiceAccounts the
/// sweep diagnoses (at a 1-hour interval, far beyond the test) that turned Unknown during the
/// outage are true again within 30 s of its end, and the outage costs a bounded number of AWS
/// calls however many verdicts wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_verdicts_are_diagnosed_again_soon_after_aws_returns() {
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    setup(&cluster, &admin).await;
    let client = cluster.client();
    let host_path = cluster.issuer().trim_start_matches("https://").to_string();
    let swept: Vec<String> = (0..10).map(|i| format!("swept-{i}")).collect();
    for name in &swept {
        admin
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust_policy(&host_path, "reports", name))
            .send()
            .await
            .unwrap();
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name,
            "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/{name}")}}}))
        .unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), "reports")
            .create(&PostParams::default(), &sa)
            .await
            .unwrap();
    }
    create_check(&client, "good", "s3-reader").await;
    let moto_port: u16 = aws.url.rsplit(':').next().unwrap().parse().unwrap();
    let gate = test_support::net::Gate::start(moto_port).await;
    let port = test_support::net::free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
    cmd.args([
        "run",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--leader-election",
        "false",
        "--sweep-interval",
        "1h",
        "--aws-cache-ttl",
        "1s",
    ])
    .env("KUBECONFIG", cluster.operator_kubeconfig())
    .env("RUST_LOG", "info")
    .stdout(std::process::Stdio::null())
    .stderr(operator_log(port));
    aws_env(&mut cmd, &format!("http://127.0.0.1:{}", gate.port));
    let _op = Operator {
        child: cmd.spawn().unwrap(),
        metrics: format!("127.0.0.1:{port}"),
    };
    let metrics = format!("127.0.0.1:{port}");
    let checks = checks_api(&client, "reports");
    let ready_status = async || {
        let check = checks.get("good").await.ok()?;
        ready_of(&check)
    };
    eventually("good Ready True", Duration::from_secs(30), async || {
        ready_status().await.filter(|(s, _)| s == "True")
    })
    .await;
    // The first sweep diagnosed the ten (True, so no Event yet).
    eventually("the sweep", Duration::from_secs(30), async || {
        let n = metric_sum(
            &metrics,
            "irsa_doctor_reconciles_total{kind=\"serviceaccount\"}",
        )
        .await;
        (n >= 10.0).then_some(())
    })
    .await;

    // AWS goes away; a change to each makes the operator ask again (the cache has expired).
    gate.close();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls_before = metric_sum(&metrics, "irsa_doctor_aws_calls_total{").await;
    let patch = |v: serde_json::Value| kube::api::Patch::Merge(v);
    checks
        .patch(
            "good",
            &kube::api::PatchParams::default(),
            &patch(json!({"spec": {"interval": "59m"}})),
        )
        .await
        .unwrap();
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), "reports");
    for name in &swept {
        sas.patch(
            name,
            &kube::api::PatchParams::default(),
            &patch(json!({"metadata": {"annotations": {"outage": "now"}}})),
        )
        .await
        .unwrap();
    }
    eventually("good Ready Unknown", Duration::from_secs(60), async || {
        ready_status()
            .await
            .filter(|(s, r)| s == "Unknown" && r == "AwsApiUnavailable")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let calls_during = metric_sum(&metrics, "irsa_doctor_aws_calls_total{").await - calls_before;

    // AWS returns.
    gate.open();
    let returned = std::time::Instant::now();
    eventually(
        "good Ready True again",
        Duration::from_secs(60),
        async || ready_status().await.filter(|(s, _)| s == "True"),
    )
    .await;
    let check_back = returned.elapsed();
    let mut swept_back = Duration::ZERO;
    for name in &swept {
        eventually(
            &format!("{name} True again (its recovery Event)"),
            Duration::from_secs(60),
            async || {
                events_for(&client, "ServiceAccount", name)
                    .await
                    .into_iter()
                    .find(|e| e.reason.as_deref() == Some("AllChecksPassed"))
            },
        )
        .await;
        swept_back = swept_back.max(returned.elapsed());
    }
    eprintln!(
        "AWS refused for 60 s: {calls_during} AWS calls during the outage for 11 waiting verdicts; \
         true again {:.1} s (IrsaCheck) and {:.1} s (the last swept ServiceAccount) after AWS returned",
        check_back.as_secs_f64(),
        swept_back.as_secs_f64()
    );
    assert!(check_back <= Duration::from_secs(30), "{check_back:?}");
    assert!(swept_back <= Duration::from_secs(30), "{swept_back:?}");
    // One diagnosis per backoff step (about 5 in 60 s) while AWS is away, not one per verdict.
    assert!(
        calls_during <= 40.0,
        "{calls_during} AWS calls during the outage"
    );
}
