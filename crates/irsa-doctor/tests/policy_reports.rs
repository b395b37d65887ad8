//! End to end on the real control plane, with the PolicyReport CRD of the Policy Working Group
//! (`tests/data/policyreport-crd.yaml`, vendored): one PolicyReport per namespace follows the
//! verdicts, written by server-side apply only when it changes, with the chart's RBAC; without
//! the CRD the operator runs as before, says so once, and starts writing when the CRD appears.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use irsa_aws::Clients;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::ApiResource;
use serde_json::{json, Value};
use test_support::cluster::kubectl_apply;

const CRD: &str = "policyreports.wgpolicyk8s.io";

fn policy_reports(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "wgpolicyk8s.io".into(),
        version: "v1alpha2".into(),
        api_version: "wgpolicyk8s.io/v1alpha2".into(),
        kind: "PolicyReport".into(),
        plural: "policyreports".into(),
    };
    Api::namespaced_with(client.clone(), namespace, &ar)
}

/// The report of `namespace` as JSON, once `ready` holds of it.
async fn report_when(
    client: &kube::Client,
    namespace: &str,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let api = policy_reports(client, namespace);
    eventually(what, Duration::from_secs(45), async || {
        let obj = api.get_opt("irsa-doctor").await.ok()??;
        let v = serde_json::to_value(obj).ok()?;
        ready(&v).then_some(v)
    })
    .await
}

/// The result of ServiceAccount `name` in a report.
fn result_of<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["results"]
        .as_array()?
        .iter()
        .find(|r| r["resources"][0]["name"] == name)
}

fn outcome(report: &Value, name: &str) -> Option<String> {
    Some(result_of(report, name)?["result"].as_str()?.to_string())
}

/// Installs the vendored CRD and waits until it is served.
async fn install_crd(cluster: &Cluster) {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/policyreport-crd.yaml"),
    )
    .unwrap();
    kubectl_apply(cluster.kubeconfig_path(), &manifest).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    eventually(
        "the PolicyReport CRD to be established",
        Duration::from_secs(30),
        async || {
            crds.get(CRD)
                .await
                .ok()?
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
}

/// A second namespace with one healthy ServiceAccount, `payments/api`.
async fn payments(cluster: &Cluster, admin: &Clients) {
    let client = cluster.client();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "payments"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let host_path = cluster.issuer().trim_start_matches("https://").to_string();
    admin
        .iam
        .create_role()
        .role_name("payments-api")
        .assume_role_policy_document(trust_policy(&host_path, "payments", "api"))
        .send()
        .await
        .unwrap();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "api",
        "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/payments-api")}}}))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client, "payments")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
}

/// `kubectl --kubeconfig <admin> ARGS`: (success, stdout + stderr).
fn kubectl(cluster: &Cluster, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args(args)
        .output()
        .expect("kubectl on PATH (make tools)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reports_follow_the_verdicts_and_are_written_only_on_change() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    install_crd(&cluster).await;
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    setup(&cluster, &admin).await;
    payments(&cluster, &admin).await;
    let client = cluster.client();
    // s3-reader is diagnosed through its IrsaCheck, exporter and legacy by the sweep.
    create_check(&client, "good", "s3-reader").await;
    let _op = start_operator(&cluster, &aws.url, &["--leader-election", "false"]);

    let report = report_when(&client, "reports", "the reports namespace's report", |r| {
        ["s3-reader", "exporter", "legacy"]
            .iter()
            .all(|n| result_of(r, n).is_some())
    })
    .await;
    assert_eq!(
        outcome(&report, "s3-reader").as_deref(),
        Some("pass"),
        "{report:#}"
    );
    assert_eq!(
        outcome(&report, "exporter").as_deref(),
        Some("fail"),
        "{report:#}"
    );
    assert_eq!(
        report["summary"],
        json!({"pass": 1, "fail": 2, "warn": 0, "error": 0, "skip": 0})
    );
    let exporter = result_of(&report, "exporter").unwrap();
    assert_eq!(exporter["policy"], "irsa-doctor");
    assert_eq!(exporter["source"], "irsa-doctor");
    assert_eq!(exporter["rule"], "TrustPolicySubjectMismatch");
    assert_eq!(exporter["severity"], "high");
    assert!(exporter["message"]
        .as_str()
        .unwrap()
        .contains("system:serviceaccount:reports:exporter"));
    assert_eq!(
        exporter["properties"]["roleArn"],
        format!("arn:aws:iam::{ACCOUNT}:role/exporter")
    );
    assert!(exporter["properties"]["fix"]
        .as_str()
        .unwrap()
        .contains(":sub"));
    assert!(exporter["timestamp"]["seconds"].as_i64().unwrap() > 1_700_000_000);
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "reports");
    let uid = sas.get("exporter").await.unwrap().metadata.uid;
    assert_eq!(
        exporter["resources"][0],
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "namespace": "reports",
               "name": "exporter", "uid": uid})
    );
    let good = result_of(&report, "s3-reader").unwrap();
    assert_eq!(good["rule"], "AllChecksPassed");
    assert_eq!(good["severity"], "info");
    assert_eq!(
        good["properties"]["roleArn"],
        format!("arn:aws:iam::{ACCOUNT}:role/s3-reader"),
        "read from the annotation when the check records only its Ready verdict"
    );
    let managers: Vec<(&str, &str)> = report["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap(),
                m["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(managers, [("irsa-doctor", "Apply")]);

    let other = report_when(&client, "payments", "the payments report", |r| {
        outcome(r, "api").is_some()
    })
    .await;
    assert_eq!(outcome(&other, "api").as_deref(), Some("pass"));
    assert_eq!(
        other["results"].as_array().unwrap().len(),
        1,
        "one namespace each"
    );

    // Unchanged verdicts are not written again: the object stays as it is over several sweeps.
    let version = report["metadata"]["resourceVersion"].clone();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let again = report_when(&client, "reports", "the report", |_| true).await;
    assert_eq!(
        again["metadata"]["resourceVersion"], version,
        "rewritten without a change"
    );

    // A report forged by someone else (here emptied) is written again after the next sweep.
    let reports_api = policy_reports(&client, "reports");
    reports_api
        .patch(
            "irsa-doctor",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"results": [], "summary": {"pass": 0, "fail": 0}})),
        )
        .await
        .unwrap();
    let restored = report_when(&client, "reports", "the forged report restored", |r| {
        ["s3-reader", "exporter", "legacy"]
            .iter()
            .all(|n| result_of(r, n).is_some())
    })
    .await;
    assert_eq!(
        restored["summary"],
        json!({"pass": 1, "fail": 2, "warn": 0, "error": 0, "skip": 0})
    );
    // Another tool's report is not the operator's to change.
    let other_tool: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
        "metadata": {"name": "other-tool"},
        "results": [{"policy": "other", "result": "fail", "source": "other-tool"}]}))
    .unwrap();
    reports_api
        .create(&kube::api::PostParams::default(), &other_tool)
        .await
        .unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.operator_kubeconfig()).unwrap();
    let as_operator = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap(),
    )
    .unwrap();
    match policy_reports(&as_operator, "reports")
        .patch(
            "other-tool",
            &kube::api::PatchParams::apply("irsa-doctor").force(),
            &kube::api::Patch::Apply(json!({"apiVersion": "wgpolicyk8s.io/v1alpha2",
                "kind": "PolicyReport", "results": []})),
        )
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("the operator emptied another tool's report: {other:?}"),
    }

    // Fixing the trust policy flips the result within a sweep.
    let host_path = cluster.issuer().trim_start_matches("https://").to_string();
    admin
        .iam
        .update_assume_role_policy()
        .role_name("exporter")
        .policy_document(trust_policy(&host_path, "reports", "exporter"))
        .send()
        .await
        .unwrap();
    let fixed = report_when(&client, "reports", "exporter to pass", |r| {
        outcome(r, "exporter").as_deref() == Some("pass")
    })
    .await;
    assert_eq!(
        fixed["summary"],
        json!({"pass": 2, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    assert_eq!(
        result_of(&fixed, "exporter").unwrap()["rule"],
        "AllChecksPassed"
    );

    // A deleted ServiceAccount leaves the report.
    sas.delete("legacy", &DeleteParams::default())
        .await
        .unwrap();
    let gone = report_when(&client, "reports", "legacy to leave", |r| {
        result_of(r, "legacy").is_none()
    })
    .await;
    assert_eq!(
        gone["summary"],
        json!({"pass": 2, "fail": 0, "warn": 0, "error": 0, "skip": 0})
    );

    // What a user sees.
    let (ok, out) =
        tokio::task::block_in_place(|| kubectl(&cluster, &["get", "policyreports", "-A"]));
    assert!(ok, "{out}");
    let header = out.lines().next().unwrap_or_default();
    for column in ["NAMESPACE", "NAME", "PASS", "FAIL", "WARN", "ERROR", "SKIP"] {
        assert!(header.contains(column), "{column}: {out}");
    }
    let row = |ns: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(ns))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row("reports")[..7],
        ["reports", "irsa-doctor", "2", "0", "0", "0", "0"],
        "{out}"
    );
    assert_eq!(
        row("payments")[..4],
        ["payments", "irsa-doctor", "1", "0"],
        "{out}"
    );
    eprintln!("{out}");
    assert_rbac_covers(&cluster);
    let made = cluster.requests_from("irsa-doctor/");
    assert!(
        made.contains_key(&(
            "wgpolicyk8s.io".into(),
            "policyreports".into(),
            "patch".into()
        )),
        "{made:?}"
    );
}

/// `irsa-doctor run` as in `start_operator`, its log (text, INFO) written to `log`.
fn start_operator_logging(cluster: &Cluster, aws_url: &str, log: &Path) -> Operator {
    let port = test_support::net::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
    cmd.args(["run", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .args([
            "--sweep-interval",
            "2s",
            "--aws-cache-ttl",
            "1s",
            "--aws-rate",
            "200",
        ])
        .args(["--leader-election", "false"])
        .env("KUBECONFIG", cluster.operator_kubeconfig())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    aws_env(&mut cmd, aws_url);
    Operator {
        child: cmd.spawn().unwrap(),
        metrics: format!("127.0.0.1:{port}"),
    }
}

/// Lines of the log that mention PolicyReports.
fn policy_report_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.to_lowercase().contains("policyreport"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_crd_the_operator_runs_as_before_until_it_is_installed() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    setup(&cluster, &admin).await;
    let client = cluster.client();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    let op = start_operator_logging(&cluster, &aws.url, &log);

    // It diagnoses as always: Events on the broken ServiceAccounts, metrics after sweeps.
    eventually("a Warning on legacy", Duration::from_secs(30), async || {
        Some(events_for(&client, "ServiceAccount", "legacy").await).filter(|e| !e.is_empty())
    })
    .await;
    let sweeps = async || {
        get(&op.metrics, "/metrics").await.and_then(|(_, body)| {
            body.lines()
                .find(|l| l.starts_with(r#"irsa_doctor_reconciles_total{kind="serviceaccount"}"#))
                .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        })
    };
    let before = eventually("a sweep", Duration::from_secs(30), sweeps).await;
    eventually("three more sweeps", Duration::from_secs(30), async || {
        sweeps().await.filter(|n| *n >= before + 9.0)
    })
    .await;
    let lines = policy_report_lines(&log);
    assert_eq!(
        lines.len(),
        1,
        "one line at start-up, none per sweep: {lines:#?}"
    );
    assert!(
        lines[0].contains("INFO") && lines[0].contains("not installed"),
        "{lines:#?}"
    );
    let made = cluster.requests_from("irsa-doctor/");
    assert!(
        made.keys().all(|(group, _, _)| group != "wgpolicyk8s.io"),
        "nothing asked of an API that is not there: {made:?}"
    );

    // The CRD arrives: the next sweep finds it and the reports follow.
    install_crd(&cluster).await;
    let report = report_when(&client, "reports", "a report once the CRD exists", |r| {
        ["s3-reader", "exporter", "legacy"]
            .iter()
            .all(|n| result_of(r, n).is_some())
    })
    .await;
    assert_eq!(
        report["summary"],
        json!({"pass": 1, "fail": 2, "warn": 0, "error": 0, "skip": 0})
    );
    let lines = policy_report_lines(&log);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("INFO") && l.contains("writing PolicyReports")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("WARN") && !l.contains("ERROR")),
        "{lines:#?}"
    );
    assert_rbac_covers(&cluster);
}
