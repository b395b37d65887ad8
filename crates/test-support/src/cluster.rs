//! The clusters the end-to-end tests run on. [`Cluster`] is the real thing: etcd,
//! kube-apiserver and kube-controller-manager with RBAC enforced, the chart installed by
//! `helm template | kubectl apply --server-side`, the operator authenticating as the chart's
//! ServiceAccount, a node agent that runs pods as local processes and serves their logs, and
//! the pod identity webhook's emulation registered as a real admission webhook.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use control_plane::node::KubeletOptions;
use control_plane::node::NodeAgent;
use control_plane::webhook::PodIdentityWebhook;
use control_plane::webhook::WebhookOptions;
use control_plane::ControlPlane;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;

use crate::wait::eventually;

/// The namespace the chart is installed in, and the operator's Lease lives in.
pub const OPERATOR_NAMESPACE: &str = "irsa-doctor";
/// The chart's ServiceAccount, the operator's identity.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "irsa-doctor";

/// What the fixtures need of an API server.
pub trait TestCluster {
    /// A client with the admin's credentials.
    fn client(&self) -> kube::Client;
    /// The admin's kubeconfig (what a user's kubectl and `irsa-doctor check` use).
    fn kubeconfig_path(&self) -> &Path;
    /// The kubeconfig the operator runs with.
    fn operator_kubeconfig(&self) -> &Path;
    /// The service-account issuer URL.
    fn issuer(&self) -> &str;
    /// Requests by User-Agent prefix, counted by (API group, resource, verb).
    fn requests_from(
        &self,
        agent: &str,
    ) -> std::collections::BTreeMap<(String, String, String), u64>;
}

/// How to start a [`Cluster`].
#[derive(Clone, Default)]
pub struct ClusterOptions {
    /// How the node agent runs pods.
    pub node: KubeletOptions,
    /// The webhook's options; `None`: no pod identity webhook is registered.
    pub webhook: Option<WebhookOptions>,
    /// Extra `--set` values for the chart, e.g. `watchNamespaces={reports}`.
    pub chart_values: Vec<String>,
    /// Install the chart without its CRD (the test installs its own, or none).
    pub without_crd: bool,
    /// Apply no chart at all: the test installs it itself (`helm install`), and the operator's
    /// kubeconfig is the admin's.
    pub without_chart: bool,
    /// Start no node agent: pods stay Pending (the scale benchmark's 50,000 pods need no node).
    pub without_node: bool,
}

/// A real control plane with the chart installed, a node and the webhook.
pub struct Cluster {
    // Dropped first: they talk to the API server.
    webhook: Option<PodIdentityWebhook>,
    node: Option<NodeAgent>,
    operator_kubeconfig: PathBuf,
    plane: ControlPlane,
}

/// The chart's folder.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/irsa-doctor")
}

/// `helm template` of the chart with `values` (`--set`), with or without its CRD.
pub fn helm_template(values: &[String], include_crds: bool) -> anyhow::Result<String> {
    let mut helm = Command::new("helm");
    helm.args(["template", "irsa-doctor"])
        .arg(chart_dir())
        .args(["--namespace", OPERATOR_NAMESPACE]);
    if include_crds {
        helm.arg("--include-crds");
    }
    for v in values {
        helm.args(["--set", v]);
    }
    let out = helm
        .output()
        .context("running helm (run `make tools`, which puts it in .tools/bin)")?;
    if !out.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `kubectl apply --server-side -f -` of `manifests` with `kubeconfig`; kubectl's output.
pub fn kubectl_apply(kubeconfig: &Path, manifests: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "--server-side", "--field-manager=helm", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl (run `make tools`, which puts it in .tools/bin)")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(manifests.as_bytes())?;
    let out = child.wait_with_output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("kubectl apply failed: {text}");
    }
    Ok(text)
}

/// Waits until the IrsaCheck CRD is established (served).
pub async fn crd_established(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    eventually(
        "the IrsaCheck CRD to be established",
        Duration::from_secs(30),
        async || {
            let crd = crds.get("irsachecks.irsa-doctor.io").await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
}

impl Cluster {
    /// Starts the control plane, installs the chart (CRD, RBAC, the operator's ServiceAccount)
    /// and the node and webhook, and mints the operator's credentials.
    pub async fn start(options: ClusterOptions) -> anyhow::Result<Cluster> {
        let plane = ControlPlane::start().await?;
        eprintln!(
            "end-to-end test against kube-apiserver {} (RBAC enforced) at {}",
            plane.version(),
            plane.url()
        );
        let client = plane.client()?;
        let operator_kubeconfig = match options.without_chart {
            true => plane.kubeconfig_path().to_path_buf(),
            false => {
                kubectl_apply(
                    plane.kubeconfig_path(),
                    &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {OPERATOR_NAMESPACE}\n"),
                )?;
                kubectl_apply(
                    plane.kubeconfig_path(),
                    &helm_template(&options.chart_values, !options.without_crd)?,
                )?;
                if !options.without_crd {
                    crd_established(&client).await;
                }
                plane
                    .service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
                    .await?
            }
        };
        let node = match options.without_node {
            true => None,
            false => Some(NodeAgent::start(&plane, options.node).await?),
        };
        let webhook = match options.webhook {
            Some(w) => Some(PodIdentityWebhook::start(&plane, w).await?),
            None => None,
        };
        Ok(Cluster {
            webhook,
            node,
            operator_kubeconfig,
            plane,
        })
    }

    /// The control plane.
    pub fn plane(&self) -> &ControlPlane {
        &self.plane
    }

    /// The node agent, unless started without one.
    pub fn node(&self) -> Option<&NodeAgent> {
        self.node.as_ref()
    }

    /// Removes the pod identity webhook (and its registration), as on a cluster without it.
    pub async fn remove_webhook(&mut self) -> anyhow::Result<()> {
        if let Some(webhook) = self.webhook.take() {
            webhook.deregister().await?;
        }
        Ok(())
    }
}

impl TestCluster for Cluster {
    fn client(&self) -> kube::Client {
        self.plane.client().expect("a client for the admin")
    }
    fn kubeconfig_path(&self) -> &Path {
        self.plane.kubeconfig_path()
    }
    fn operator_kubeconfig(&self) -> &Path {
        &self.operator_kubeconfig
    }
    fn issuer(&self) -> &str {
        self.plane.issuer()
    }
    fn requests_from(
        &self,
        agent: &str,
    ) -> std::collections::BTreeMap<(String, String, String), u64> {
        self.plane
            .requests_from(agent)
            .expect("the audit log is readable")
    }
}
