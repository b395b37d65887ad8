//! The operator's runtime against a real API server: the CRD preflight, readiness, shutdown
//! that releases the Lease, a lost Lease, malformed IrsaChecks beside good ones, and a
//! ServiceAccount change handled while a long sweep runs.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use control_plane::ControlPlane;
use irsa_aws::Clients;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use test_support::cluster::{crd_established, OPERATOR_NAMESPACE};

/// The operator with stderr captured, leader election on, in the chart's namespace.
fn operator(
    kubeconfig: &std::path::Path,
    aws_url: &str,
    identity: &str,
    extra: &[&str],
) -> (Child, String) {
    let port = test_support::net::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
    cmd.args([
        "run",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--lease-namespace",
        OPERATOR_NAMESPACE,
        "--identity",
        identity,
        "--aws-rate",
        "200",
    ])
    .args(extra)
    .env("KUBECONFIG", kubeconfig)
    .env("RUST_LOG", "info")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    aws_env(&mut cmd, aws_url);
    (cmd.spawn().unwrap(), format!("127.0.0.1:{port}"))
}

/// Waits for the process to exit, at most `within`; its status and stderr.
fn exited(child: &mut Child, within: Duration) -> Option<(std::process::ExitStatus, String)> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Some((status, err));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn lease_holder(client: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .get_opt("irsa-doctor")
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_crd_it_exits_and_says_how_to_install_it() {
    let plane = ControlPlane::start().await.unwrap();
    let aws = moto::Moto::start();
    let (mut op, _) = operator(plane.kubeconfig_path(), &aws.url, "a", &[]);
    let (status, stderr) = tokio::task::block_in_place(|| exited(&mut op, Duration::from_secs(20)))
        .expect("the operator exits when its CRD is missing");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kubectl apply -f crds/"), "{stderr}");
    assert!(stderr.contains("irsachecks.irsa-doctor.io"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease_and_a_lost_lease_ends_the_leader() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let aws = moto::Moto::start();
    let client = cluster.client();
    let (mut op, metrics) = operator(cluster.operator_kubeconfig(), &aws.url, "replica-a", &[]);
    eventually("replica-a to lead", Duration::from_secs(30), async || {
        (lease_holder(&client).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    eventually("readiness", Duration::from_secs(30), async || {
        get(&metrics, "/readyz").await.filter(|(c, _)| *c == 200)
    })
    .await;
    let stopping = Instant::now();
    kill(Pid::from_raw(op.id() as i32), Signal::SIGTERM).unwrap();
    let (status, stderr) = tokio::task::block_in_place(|| exited(&mut op, Duration::from_secs(5)))
        .expect("the operator exits within 5 s of SIGTERM");
    eprintln!("SIGTERM → exit: {} ms", stopping.elapsed().as_millis());
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        lease_holder(&client).await,
        None,
        "the Lease is released: {stderr}"
    );

    // Another holder takes the Lease: the leader stops, with an error.
    let (mut op, _) = operator(cluster.operator_kubeconfig(), &aws.url, "replica-b", &[]);
    eventually("replica-b to lead", Duration::from_secs(30), async || {
        (lease_holder(&client).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    Api::<Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .patch(
            "irsa-doctor",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "holderIdentity": "intruder",
                "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                "leaseDurationSeconds": 3600,
            }})),
        )
        .await
        .unwrap();
    let (status, stderr) = tokio::task::block_in_place(|| exited(&mut op, Duration::from_secs(30)))
        .expect("a leader that lost its Lease exits");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("lost the leader Lease"), "{stderr}");
}

/// The IrsaCheck CRD as if installed without its schema: the API server then stores anything.
fn schemaless_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "irsachecks.irsa-doctor.io"},
        "spec": {
            "group": "irsa-doctor.io",
            "scope": "Namespaced",
            "names": {"kind": "IrsaCheck", "plural": "irsachecks", "singular": "irsacheck", "listKind": "IrsaCheckList"},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_irsachecks_are_reported_on_themselves_and_the_rest_diagnosed() {
    let cluster = Cluster::start(ClusterOptions {
        without_crd: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let client = cluster.client();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &schemaless_crd())
        .await
        .unwrap();
    crd_established(&client).await;
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    setup(&cluster, &admin).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("irsa-doctor.io", "v1alpha1", "IrsaCheck"),
        "irsachecks",
    );
    let raw: Api<DynamicObject> = Api::namespaced_with(client.clone(), "reports", &ar);
    let object = |name: &str, spec: Option<serde_json::Value>| -> DynamicObject {
        let mut o = json!({"apiVersion": "irsa-doctor.io/v1alpha1", "kind": "IrsaCheck", "metadata": {"name": name}});
        if let Some(spec) = spec {
            o["spec"] = spec;
        }
        serde_json::from_value(o).unwrap()
    };
    for (name, spec) in [
        (
            "good",
            Some(json!({"serviceAccountName": "s3-reader", "probe": {"enabled": false}})),
        ),
        ("number", Some(json!({"serviceAccountName": 123}))),
        ("nospec", None),
        (
            "bad",
            Some(json!({"serviceAccountName": "exporter", "probe": {"enabled": false}})),
        ),
    ] {
        raw.create(&PostParams::default(), &object(name, spec))
            .await
            .unwrap();
    }
    let _op = start_operator(&cluster, &aws.url, &["--leader-election", "false"]);
    let checks = checks_api(&client, "reports");
    let reason = |name: &'static str| {
        let raw = raw.clone();
        async move {
            let o = raw.get(name).await.ok()?;
            let ready = o.data["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?
                .clone();
            Some((
                ready["reason"].as_str()?.to_string(),
                ready["message"].as_str()?.to_string(),
            ))
        }
    };
    let good = diagnosed(&checks, "good").await;
    assert_eq!(
        ready_of(&good),
        Some(("True".into(), "AllChecksPassed".into()))
    );
    let bad = diagnosed(&checks, "bad").await;
    assert_eq!(
        ready_of(&bad),
        Some(("False".into(), "TrustPolicySubjectMismatch".into()))
    );
    let (r, message) = eventually(
        "number to be reported",
        Duration::from_secs(30),
        async || reason("number").await,
    )
    .await;
    assert_eq!(r, "SpecInvalid");
    assert!(
        message.starts_with("spec.serviceAccountName: invalid type: integer `123`"),
        "{message}"
    );
    let (r, message) = eventually(
        "nospec to be reported",
        Duration::from_secs(30),
        async || reason("nospec").await,
    )
    .await;
    assert_eq!(r, "SpecInvalid");
    assert!(message.contains("missing field `spec`"), "{message}");
    let events = eventually(
        "a Warning on the malformed check",
        Duration::from_secs(10),
        async || {
            let evs = events_for(&client, "IrsaCheck", "number").await;
            (!evs.is_empty()).then_some(evs)
        },
    )
    .await;
    assert_eq!(events[0].reason.as_deref(), Some("SpecInvalid"));
    // A check created after the malformed ones is diagnosed too.
    raw.create(
        &PostParams::default(),
        &object(
            "later",
            Some(json!({"serviceAccountName": "s3-reader", "probe": {"enabled": false}})),
        ),
    )
    .await
    .unwrap();
    let later = diagnosed(&checks, "later").await;
    assert_eq!(
        ready_of(&later),
        Some(("True".into(), "AllChecksPassed".into()))
    );
}

/// The sum of the operator's metric lines (at `metrics`) that start with `prefix`: a counter,
/// over every label set the prefix leaves open.
async fn counter(metrics: &str, prefix: &str) -> u64 {
    get(metrics, "/metrics")
        .await
        .map(|(_, body)| {
            body.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_during_a_long_sweep_gets_its_event_within_two_seconds() {
    const ACCOUNTS: usize = 2000;
    const ROLES: usize = 200;
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let client = cluster.client();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    bootstrap_cluster(&cluster).await;
    let host_path = create_provider(&cluster, &admin).await;
    for r in 0..ROLES {
        let subjects: Vec<String> = (0..ACCOUNTS)
            .filter(|i| i % ROLES == r)
            .map(|i| format!("system:serviceaccount:sweep:sa-{i}"))
            .collect();
        let policy = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{host_path}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {format!("{host_path}:sub"): subjects, format!("{host_path}:aud"): "sts.amazonaws.com"}}}]});
        admin
            .iam
            .create_role()
            .role_name(format!("role-{r}"))
            .assume_role_policy_document(policy.to_string())
            .send()
            .await
            .unwrap();
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "sweep"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "sweep");
    use futures::StreamExt;
    futures::stream::iter(0..ACCOUNTS)
        .for_each_concurrent(32, |i| {
            let sas = sas.clone();
            async move {
                let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": format!("sa-{i}"),
                    "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/role-{}", i % ROLES)}}}))
                .unwrap();
                sas.create(&PostParams::default(), &sa).await.unwrap();
            }
        })
        .await;
    // Slow AWS: every call waits 100 ms and at most 20 pass per second, so the sweep's 200
    // GetRole calls alone take 10 s.
    let moto_port: u16 = aws.url.rsplit(':').next().unwrap().parse().unwrap();
    let slow = moto::slow_proxy(moto_port, Duration::from_millis(100), 20).await;
    let port = test_support::net::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
    cmd.args([
        "run",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--leader-election",
        "false",
        "--sweep-interval",
        "1h",
        "--aws-rate",
        "20",
    ])
    .env("KUBECONFIG", cluster.operator_kubeconfig())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    aws_env(&mut cmd, &format!("http://127.0.0.1:{slow}"));
    let mut child = cmd.spawn().unwrap();
    let metrics = format!("127.0.0.1:{port}");
    eventually("readiness", Duration::from_secs(60), async || {
        get(&metrics, "/readyz").await.filter(|(c, _)| *c == 200)
    })
    .await;
    let swept = async || {
        counter(
            &metrics,
            "irsa_doctor_reconciles_total{kind=\"serviceaccount\"}",
        )
        .await
    };
    // The sweep is under way once it asks AWS for roles (it gathers a batch's AWS facts before
    // it diagnoses any of them).
    let roles_asked = async || {
        counter(
            &metrics,
            "irsa_doctor_aws_calls_total{service=\"iam\",operation=\"GetRole\"",
        )
        .await
    };
    eventually(
        "the sweep to be under way",
        Duration::from_secs(30),
        async || (roles_asked().await > 0).then_some(()),
    )
    .await;
    // One ServiceAccount's annotation now names a role that does not exist.
    let changed = Instant::now();
    sas.patch(
        "sa-7",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/gone")}}})),
    )
    .await
    .unwrap();
    let client2 = client.clone();
    let event = eventually(
        "the Warning for sa-7",
        Duration::from_secs(30),
        async || {
            Api::<k8s_openapi::api::core::v1::Event>::namespaced(client2.clone(), "sweep")
                .list(&kube::api::ListParams::default().fields("involvedObject.name=sa-7"))
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("RoleNotFound"))
        },
    )
    .await;
    let latency = changed.elapsed();
    let done = swept().await;
    eprintln!(
        "annotation change → Event during a sweep: {} ms ({done} of {ACCOUNTS} swept by then)",
        latency.as_millis()
    );
    assert!(event.type_.as_deref() == Some("Warning"));
    assert!(done < ACCOUNTS as u64, "the sweep was still running");
    assert!(latency <= Duration::from_secs(2), "{latency:?}");
    let _ = child.kill();
    let _ = child.wait();
}
