//! End-to-end fixtures for the operator: an API server with the CRD, moto with the cluster's
//! OIDC provider and roles, ServiceAccounts and IrsaChecks, the operator process, and what the
//! tests read back.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use irsa_aws::Clients;
use irsa_doctor::api::{IrsaCheck, IrsaCheckSpec};
use k8s_openapi::api::core::v1::{Event, Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::cluster::{crd_established, TestCluster};
use crate::net::free_port;
use crate::wait::eventually;

/// The AWS account of every test.
pub const ACCOUNT: &str = "123456789012";

/// A running operator process, killed when dropped.
pub struct Operator {
    /// The process.
    pub child: Child,
    /// `127.0.0.1:PORT` of /metrics, /healthz, /readyz.
    pub metrics: String,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the operator's log goes: `$OPERATOR_LOG_DIR/operator-PORT.log` when that variable is
/// set (to read what an end-to-end test's operator did), else nowhere.
pub fn operator_log(port: u16) -> Stdio {
    match std::env::var_os("OPERATOR_LOG_DIR") {
        Some(dir) => std::fs::File::create(Path::new(&dir).join(format!("operator-{port}.log")))
            .map_or_else(|_| Stdio::null(), Stdio::from),
        None => Stdio::null(),
    }
}

/// Points a command's AWS SDK or CLI at `aws_url` with static test credentials and no IMDS.
pub fn aws_env(cmd: &mut Command, aws_url: &str) {
    cmd.env("AWS_ENDPOINT_URL", aws_url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
}

/// `irsa-doctor run` (the binary at `bin`) with the cluster's operator credentials and moto at
/// `aws_url`, with fast sweeps and short caches; `extra` adds flags.
pub fn start_operator(
    bin: &Path,
    cluster: &(impl TestCluster + ?Sized),
    aws_url: &str,
    extra: &[&str],
) -> Operator {
    start_operator_with_env(bin, cluster, aws_url, extra, &[])
}

/// [`start_operator`] with extra environment variables, e.g. `AWS_ENDPOINT_URL_EKS`.
pub fn start_operator_with_env(
    bin: &Path,
    cluster: &(impl TestCluster + ?Sized),
    aws_url: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Operator {
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args([
        "run",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--sweep-interval",
        "2s",
        "--aws-cache-ttl",
        "1s",
        "--aws-rate",
        "200",
    ])
    .args(extra)
    .env("KUBECONFIG", cluster.operator_kubeconfig())
    .env("RUST_LOG", "info")
    .stdout(Stdio::null())
    .stderr(operator_log(port));
    aws_env(&mut cmd, aws_url);
    cmd.envs(env.iter().copied());
    Operator {
        child: cmd.spawn().unwrap(),
        metrics: format!("127.0.0.1:{port}"),
    }
}

/// A trust policy for one ServiceAccount through the provider of `issuer_host_path`.
pub fn trust_policy(issuer_host_path: &str, namespace: &str, name: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{issuer_host_path}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            format!("{issuer_host_path}:sub"): format!("system:serviceaccount:{namespace}:{name}"),
            format!("{issuer_host_path}:aud"): "sts.amazonaws.com"}}}]})
    .to_string()
}

/// IrsaChecks of a namespace.
pub fn checks_api(client: &kube::Client, ns: &str) -> Api<IrsaCheck> {
    Api::namespaced(client.clone(), ns)
}

/// Waits (30 s at most) until an IrsaCheck has a Ready condition, and returns it.
pub async fn diagnosed(checks: &Api<IrsaCheck>, name: &str) -> IrsaCheck {
    eventually(
        &format!("{name} to be diagnosed"),
        Duration::from_secs(30),
        async || {
            checks
                .get(name)
                .await
                .ok()
                .filter(|c| ready_of(c).is_some())
        },
    )
    .await
}

/// The Ready condition's (status, reason).
pub fn ready_of(check: &IrsaCheck) -> Option<(String, String)> {
    let ready = check
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((ready.status.clone(), ready.reason.clone()))
}

/// The committed IrsaCheck CRD.
pub fn crd() -> CustomResourceDefinition {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/irsacheck.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The IrsaCheck CRD (unless installed already, e.g. by the chart) and the `reports` namespace.
pub async fn bootstrap_cluster(cluster: &(impl TestCluster + ?Sized)) {
    let client = cluster.client();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    if crds
        .get_opt("irsachecks.irsa-doctor.io")
        .await
        .unwrap()
        .is_none()
    {
        crds.create(&PostParams::default(), &crd()).await.unwrap();
    }
    crd_established(&client).await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "reports"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// The IAM OIDC provider for the cluster's issuer; returns the issuer's host+path.
pub async fn create_provider(cluster: &(impl TestCluster + ?Sized), admin: &Clients) -> String {
    admin
        .iam
        .create_open_id_connect_provider()
        .url(cluster.issuer())
        .client_id_list("sts.amazonaws.com")
        .send()
        .await
        .unwrap();
    cluster.issuer().trim_start_matches("https://").to_string()
}

/// The cluster, the provider for its issuer, three roles, and their ServiceAccounts:
/// `s3-reader` (healthy), `exporter` (trust policy names `old-exporter`), `legacy` (no check).
pub async fn setup(cluster: &(impl TestCluster + ?Sized), admin: &Clients) {
    bootstrap_cluster(cluster).await;
    let client = cluster.client();
    let host_path = create_provider(cluster, admin).await;
    for (role, sub_name) in [
        ("s3-reader", "s3-reader"),
        ("exporter", "old-exporter"),
        ("legacy", "someone-else"),
    ] {
        admin
            .iam
            .create_role()
            .role_name(role)
            .assume_role_policy_document(trust_policy(&host_path, "reports", sub_name))
            .send()
            .await
            .unwrap();
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "reports");
    for (name, role) in [
        ("s3-reader", "s3-reader"),
        ("exporter", "exporter"),
        ("legacy", "legacy"),
    ] {
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name,
            "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/{role}")}}}))
        .unwrap();
        sas.create(&PostParams::default(), &sa).await.unwrap();
    }
}

/// An IrsaCheck of `sa` in `reports`, hourly, without the probe.
pub async fn create_check(client: &kube::Client, name: &str, sa: &str) {
    create_check_with(
        client,
        name,
        json!({"serviceAccountName": sa, "interval": "1h", "probe": {"enabled": false}}),
    )
    .await;
}

/// An IrsaCheck in `reports` with the given spec.
pub async fn create_check_with(client: &kube::Client, name: &str, spec: serde_json::Value) {
    let spec: IrsaCheckSpec = serde_json::from_value(spec).unwrap();
    checks_api(client, "reports")
        .create(&PostParams::default(), &IrsaCheck::new(name, spec))
        .await
        .unwrap();
}

/// Events in `reports` about the object of `kind` and `name`.
pub async fn events_for(client: &kube::Client, kind: &str, name: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), "reports")
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind={kind},involvedObject.name={name}"
        )))
        .await
        .unwrap()
        .items
}

/// Every (API group, resource, verb) the operator's code calls — what its RBAC grants, exactly.
/// The chart test checks the chart against this list; the end-to-end tests check that every
/// request the running operator made is in it.
pub const OPERATOR_RBAC: &[(&str, &str, &str)] = &[
    ("", "pods", "create"),
    ("", "pods", "delete"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods/log", "get"),
    // The labels of a namespace whose pod the webhook did not mutate (its namespaceSelector).
    ("", "namespaces", "get"),
    ("", "serviceaccounts", "list"),
    ("", "serviceaccounts", "watch"),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "list",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "watch",
    ),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "patch"),
    ("events.k8s.io", "events", "create"),
    ("irsa-doctor.io", "irsachecks", "list"),
    ("irsa-doctor.io", "irsachecks", "watch"),
    ("irsa-doctor.io", "irsachecks/status", "patch"),
    // PolicyReports: server-side apply (the API server asks for create too when the apply
    // creates the report), and the start-up list of those an earlier run wrote. Granted unless
    // the chart's policyReports.mode is off.
    ("wgpolicyk8s.io", "policyreports", "create"),
    ("wgpolicyk8s.io", "policyreports", "list"),
    ("wgpolicyk8s.io", "policyreports", "patch"),
];

/// Fails if the operator made a request its RBAC does not grant.
pub fn assert_rbac_covers(cluster: &(impl TestCluster + ?Sized)) {
    let made = cluster.requests_from("irsa-doctor/");
    assert!(
        !made.is_empty(),
        "no request carried the operator's User-Agent"
    );
    let missing: Vec<_> = made
        .keys()
        .filter(|(g, r, v)| !OPERATOR_RBAC.contains(&(g.as_str(), r.as_str(), v.as_str())))
        .collect();
    assert!(
        missing.is_empty(),
        "requests the chart's RBAC does not grant: {missing:?}"
    );
    eprintln!("operator requests by (group, resource, verb): {made:?}");
    let unexercised: Vec<_> = OPERATOR_RBAC
        .iter()
        .filter(|(g, r, v)| !made.contains_key(&(g.to_string(), r.to_string(), v.to_string())))
        .collect();
    eprintln!("granted by the chart but not exercised by this test: {unexercised:?}");
}

/// The AWS actions (`service:Operation`) the operator has called, from its metrics.
pub async fn aws_actions_called(op: &Operator) -> std::collections::BTreeSet<String> {
    let (_, metrics) = crate::net::get(&op.metrics, "/metrics")
        .await
        .expect("the operator's metrics");
    let label = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let len = line[start..].find('"')?;
        Some(line[start..start + len].to_string())
    };
    metrics
        .lines()
        .filter(|l| l.starts_with("irsa_doctor_aws_calls_total{"))
        .filter_map(|l| {
            Some(format!(
                "{}:{}",
                label(l, "service")?,
                label(l, "operation")?
            ))
        })
        .collect()
}

/// Asserts that every AWS action the operator called is granted by the features' policies
/// (`irsa_aws::CORE_ACTIONS` and the like, which the IAM policy files grant exactly).
pub async fn assert_aws_calls_within(op: &Operator, features: &[&[&str]]) {
    let allowed: std::collections::BTreeSet<String> = features
        .iter()
        .flat_map(|f| f.iter().map(|a| a.to_string()))
        .collect();
    let called = aws_actions_called(op).await;
    assert!(!called.is_empty(), "the operator called AWS");
    let beyond: Vec<&String> = called.difference(&allowed).collect();
    assert!(
        beyond.is_empty(),
        "AWS actions called beyond the features' IAM policies: {beyond:?} (called: {called:?})"
    );
}
