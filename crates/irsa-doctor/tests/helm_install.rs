//! End to end, issue 25: the chart as users install it. `helm install` (the real helm) on the
//! real control plane; the node runs the chart's Deployment — its image mapped to this package's
//! binary, its args and env as rendered, the downward API, its own ServiceAccount's token, the
//! probes polled, its AWS identity from IRSA — and the operator it runs diagnoses an IrsaCheck. `helm upgrade` rolls the
//! pods and the new value takes effect; `helm uninstall` leaves no pods, Lease or RBAC behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use control_plane::node::KubeletOptions;
use control_plane::webhook::WebhookOptions;
use irsa_aws::Clients;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use test_support::cluster::{chart_dir, OPERATOR_NAMESPACE};

/// The chart's image repository (values.yaml `image.repository`).
const IMAGE: &str = "ghcr.io/irsa-doctor/irsa-doctor";
/// The labels of everything the release `irsa-doctor` renders.
const RELEASE: &str = "app.kubernetes.io/instance=irsa-doctor";

/// Runs helm or kubectl with the cluster's kubeconfig; its stdout, or a panic with its stderr.
fn run(tool: &str, kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(tool)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {tool} (make tools puts it in .tools/bin): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// On a failing test, the operator pods' logs (served by the node through the API server).
struct LogsOnFailure(PathBuf);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let out = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.0)
                .args([
                    "logs",
                    "-n",
                    OPERATOR_NAMESPACE,
                    "-l",
                    RELEASE,
                    "--tail=40",
                    "--prefix",
                ])
                .output();
            if let Ok(out) = out {
                eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
    }
}

/// The names of the operator's pods (not being deleted) and of their ReplicaSet's template hash.
async fn operator_pods(pods: &Api<Pod>) -> Vec<(String, String)> {
    pods.list(&ListParams::default().labels(RELEASE))
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let hash = p
                .labels()
                .get("pod-template-hash")
                .cloned()
                .unwrap_or_default();
            (p.name_any(), hash)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_operator_as_a_deployment_and_uninstall_leaves_nothing() {
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    // No static keys: the operator's AWS identity is IRSA (the chart's serviceAccount.roleArn),
    // from the token the webhook projects into its pod, as on EKS.
    let aws_env = [
        ("AWS_ENDPOINT_URL", aws.url.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let cluster = Cluster::start(ClusterOptions {
        node: KubeletOptions {
            extra_env: aws_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            images: vec![(IMAGE.into(), env!("CARGO_BIN_EXE_irsa-doctor").into())],
            ..KubeletOptions::default()
        },
        webhook: Some(WebhookOptions::default()),
        without_chart: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let _logs = LogsOnFailure(kubeconfig.clone());
    let client = cluster.client();
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();

    // IAM first, as a user sets it up: the provider, the role to diagnose and the operator's.
    let host_path = create_provider(&cluster, &admin).await;
    for (role, namespace, service_account) in [
        ("s3-reader", "reports", "s3-reader"),
        ("irsa-doctor", OPERATOR_NAMESPACE, "irsa-doctor"),
    ] {
        admin
            .iam
            .create_role()
            .role_name(role)
            .assume_role_policy_document(trust_policy(&host_path, namespace, service_account))
            .send()
            .await
            .unwrap();
    }

    // Every pod shares the host's network here, each with a loopback address of its own:
    // the two replicas listen on theirs.
    run(
        "helm",
        &kubeconfig,
        &[
            "install",
            "irsa-doctor",
            chart,
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--set",
            "service.listenAddress=$(POD_IP)",
            "--set",
            "logFormat=text",
            "--set",
            "serviceAccount.roleArn=arn:aws:iam::123456789012:role/irsa-doctor",
        ],
    );
    run(
        "kubectl",
        &kubeconfig,
        &[
            "rollout",
            "status",
            "deployment/irsa-doctor",
            "-n",
            OPERATOR_NAMESPACE,
            "--timeout=120s",
        ],
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let first = operator_pods(&pods).await;
    assert_eq!(first.len(), 2, "{first:?}");
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let leader = eventually(
        "a leader among the replicas",
        Duration::from_secs(30),
        async || {
            let lease = leases
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .pop()?;
            lease
                .spec?
                .holder_identity
                .filter(|h| first.iter().any(|(p, _)| p == h))
        },
    )
    .await;
    eprintln!("leader: {leader}");

    bootstrap_cluster(&cluster).await;
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "s3-reader",
        "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/s3-reader")}}}))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "reports")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    create_check(&client, "s3-reader", "s3-reader").await;
    let checks = checks_api(&client, "reports");
    let ready = eventually(
        "s3-reader Ready True",
        Duration::from_secs(60),
        async || {
            let check = checks.get("s3-reader").await.ok()?;
            ready_of(&check).filter(|(status, _)| status == "True")
        },
    )
    .await;
    assert_eq!(ready.1, "AllChecksPassed");

    // A changed value: the role is no longer allowed; the pods roll and the new leader says so.
    run(
        "helm",
        &kubeconfig,
        &[
            "upgrade",
            "irsa-doctor",
            chart,
            "--namespace",
            OPERATOR_NAMESPACE,
            "--reuse-values",
            "--set",
            "allowedRoleArns={arn:aws:iam::123456789012:role/team-*}",
        ],
    );
    run(
        "kubectl",
        &kubeconfig,
        &[
            "rollout",
            "status",
            "deployment/irsa-doctor",
            "-n",
            OPERATOR_NAMESPACE,
            "--timeout=120s",
        ],
    );
    let second = operator_pods(&pods).await;
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(
        second
            .iter()
            .all(|(_, hash)| first.iter().all(|(_, old)| old != hash)),
        "the upgrade rolled the pods: {first:?} → {second:?}"
    );
    let not_allowed = eventually(
        "s3-reader RoleNotAllowed",
        Duration::from_secs(60),
        async || {
            let check = checks.get("s3-reader").await.ok()?;
            ready_of(&check).filter(|(_, reason)| reason == "RoleNotAllowed")
        },
    )
    .await;
    assert_eq!(not_allowed.0, "False");

    run(
        "helm",
        &kubeconfig,
        &[
            "uninstall",
            "irsa-doctor",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--wait",
        ],
    );
    let mut left = leftovers(&client).await;
    for _ in 0..120 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = leftovers(&client).await;
    }
    assert!(left.is_empty(), "left behind by helm uninstall: {left:?}");
}

/// What of the release is still there: pods and Leases of the operator's namespace, and RBAC
/// objects labelled with the release.
async fn leftovers(client: &kube::Client) -> Vec<String> {
    async fn names<K>(api: Api<K>, selector: &ListParams) -> Vec<String>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let kind = K::kind(&()).to_string();
        api.list(selector)
            .await
            .unwrap()
            .iter()
            .map(|o| format!("{kind}/{}", o.name_any()))
            .collect()
    }
    let all = ListParams::default();
    let release = ListParams::default().labels(RELEASE);
    let ns = OPERATOR_NAMESPACE;
    let mut left = names::<Pod>(Api::namespaced(client.clone(), ns), &all).await;
    left.extend(names::<Lease>(Api::namespaced(client.clone(), ns), &all).await);
    left.extend(names::<ClusterRole>(Api::all(client.clone()), &release).await);
    left.extend(names::<ClusterRoleBinding>(Api::all(client.clone()), &release).await);
    left.extend(names::<Role>(Api::all(client.clone()), &release).await);
    left.extend(names::<RoleBinding>(Api::all(client.clone()), &release).await);
    left
}
