//! The EKS pod identity webhook's mutation ([`mutation::mutate_pod_for`]: IRSA, and EKS Pod
//! Identity for ServiceAccounts the EKS stand-in associates) served as a real mutating admission
//! webhook: an HTTPS server on loopback answering
//! AdmissionReview v1 with a JSONPatch, registered with the API server as the
//! `MutatingWebhookConfiguration` EKS installs (`pod-identity-webhook`, webhook
//! `iam-for-pods.amazonaws.com`, pods CREATE, `failurePolicy: Ignore`, an `objectSelector` that
//! exempts pods labelled `eks.amazonaws.com/skip-pod-identity-webhook`).
//!
//! The real webhook (github.com/aws/amazon-eks-pod-identity-webhook) is not on the Go module
//! proxy, so the project keeps its emulation and serves it here.
//!
//! The small HTTPS server (tokio-rustls + hyper) is shared with the node agent.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{json, Value};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls;

use crate::eks::Associated;
use crate::pki;
use crate::ControlPlane;

pub mod mutation;

pub use mutation::WebhookOptions;

/// The `MutatingWebhookConfiguration`'s name, as EKS names it.
pub const CONFIGURATION_NAME: &str = "pod-identity-webhook";
/// The webhook's name inside the configuration, as EKS names it.
pub const WEBHOOK_NAME: &str = "iam-for-pods.amazonaws.com";
/// The User-Agent of the webhook's own API requests (ServiceAccount lookups, registration), to
/// pick them out with [`ControlPlane::requests_from`].
pub const USER_AGENT: &str = "control-plane-pod-identity-webhook";
/// Label of the dry-run pods [`PodIdentityWebhook::start`] creates to learn that the API server
/// calls the webhook.
const PROBE_LABEL: &str = "control-plane.irsa-doctor.io/webhook-probe";
/// How long the API server may take to start calling a newly registered webhook.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The pod identity webhook, served on `https://127.0.0.1:PORT/mutate` and registered with the
/// API server.
///
/// Dropping it stops the server at once and (when dropped inside a Tokio runtime) starts a
/// best-effort deletion of the `MutatingWebhookConfiguration` it registered, which is not
/// awaited and only deletes the configuration this webhook created (a uid precondition), so a
/// webhook started later is never deregistered by an earlier one's drop. Until the API server
/// notices the deletion, pods are admitted unmutated: with `failurePolicy: Ignore` a webhook
/// that does not answer only costs the failed connection. Call [`PodIdentityWebhook::deregister`]
/// to wait for the deletion.
pub struct PodIdentityWebhook {
    url: String,
    ca_pem: String,
    client: kube::Client,
    /// The registered configuration's uid, `None` once deregistered.
    uid: Option<String>,
    state: Arc<HandlerState>,
    _server: HttpsServer,
}

struct HandlerState {
    client: kube::Client,
    options: WebhookOptions,
    /// Which ServiceAccounts have an EKS Pod Identity association; none when `None`.
    associated: Option<Associated>,
    reviews: AtomicU64,
    mutated: AtomicU64,
    probes: Mutex<HashSet<String>>,
}

impl PodIdentityWebhook {
    /// Serves the webhook with `options` (the upstream binary's flags), registers it with
    /// `plane`'s API server, and returns once the API server calls it.
    ///
    /// The readiness check is a dry-run pod in namespace `default` for ServiceAccount `default`,
    /// which is created when missing (the ServiceAccount admission plugin refuses pods whose
    /// ServiceAccount does not exist).
    pub async fn start(
        plane: &ControlPlane,
        options: WebhookOptions,
    ) -> anyhow::Result<PodIdentityWebhook> {
        Self::start_with(plane, options, None).await
    }

    /// Like [`PodIdentityWebhook::start`]; pods of the ServiceAccounts `associated` names get EKS
    /// Pod Identity's container credentials, as EKS's webhook gives them.
    pub async fn start_with(
        plane: &ControlPlane,
        options: WebhookOptions,
        associated: Option<Associated>,
    ) -> anyhow::Result<PodIdentityWebhook> {
        let client = agent_client(plane, USER_AGENT).await?;
        let ca = pki::Ca::new("pod-identity-webhook-ca")?;
        let state = Arc::new(HandlerState {
            client: client.clone(),
            options,
            associated,
            reviews: AtomicU64::new(0),
            mutated: AtomicU64::new(0),
            probes: Mutex::new(HashSet::new()),
        });
        let router = axum::Router::new()
            .route("/mutate", post(mutate))
            .with_state(state.clone());
        let server = HttpsServer::start(&ca.serving_cert()?, router).await?;
        let url = format!("https://127.0.0.1:{}/mutate", server.port());
        let configuration = configuration(&url, ca.cert_pem());
        let applied = Api::<MutatingWebhookConfiguration>::all(client.clone())
            .patch(
                CONFIGURATION_NAME,
                &PatchParams::apply(USER_AGENT).force(),
                &Patch::Apply(&configuration),
            )
            .await
            .context("registering the MutatingWebhookConfiguration")?;
        let mut webhook = PodIdentityWebhook {
            url,
            ca_pem: ca.cert_pem().to_string(),
            client,
            uid: applied.metadata.uid,
            state,
            _server: server,
        };
        webhook.wait_called().await?;
        Ok(webhook)
    }

    /// Dry-run pod creations until one reaches the webhook.
    async fn wait_called(&mut self) -> anyhow::Result<()> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), "default");
        if accounts.get_opt("default").await?.is_none() {
            let sa: ServiceAccount =
                serde_json::from_value(json!({"metadata": {"name": "default"}}))?;
            match accounts.create(&PostParams::default(), &sa).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e).context("creating ServiceAccount default/default"),
            }
        }
        let nonce: String = pki::random_bytes(8)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"generateName": "pod-identity-webhook-probe-",
                         "labels": {PROBE_LABEL: nonce}},
            "spec": {"containers": [{"name": "probe", "image": "probe"}]},
        }))?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let deadline = Instant::now() + REGISTRATION_TIMEOUT;
        loop {
            let created = pods.create(&dry_run, &pod).await;
            if self
                .state
                .probes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&nonce)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the API server did not call the webhook within {REGISTRATION_TIMEOUT:?} (last dry-run pod: {:?})",
                    created.map(|_| ())
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The URL the API server calls, `https://127.0.0.1:PORT/mutate`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA (PEM) that signed the serving certificate, as put in the `caBundle`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// How many AdmissionReviews the webhook has answered (its readiness probes included).
    pub fn reviews(&self) -> u64 {
        self.state.reviews.load(Ordering::Relaxed)
    }

    /// How many of them it answered with a patch.
    pub fn mutated(&self) -> u64 {
        self.state.mutated.load(Ordering::Relaxed)
    }

    /// Deletes the `MutatingWebhookConfiguration` (when it is still the one this webhook
    /// registered), then stops the server. The API server may call the webhook for a moment
    /// after the deletion, until its informer notices; `failurePolicy: Ignore` then admits the
    /// pod unmutated.
    pub async fn deregister(mut self) -> anyhow::Result<()> {
        let uid = self.uid.take();
        delete_configuration(self.client.clone(), uid).await
    }
}

impl Drop for PodIdentityWebhook {
    fn drop(&mut self) {
        // The server stops when `_server` drops; the configuration is deleted best-effort.
        if let (Some(uid), Ok(runtime)) = (self.uid.take(), tokio::runtime::Handle::try_current()) {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = delete_configuration(client, Some(uid)).await;
            });
        }
    }
}

async fn delete_configuration(client: kube::Client, uid: Option<String>) -> anyhow::Result<()> {
    let Some(uid) = uid else {
        return Ok(());
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match Api::<MutatingWebhookConfiguration>::all(client)
        .delete(CONFIGURATION_NAME, &params)
        .await
    {
        // Gone already, or replaced by another webhook's registration: not ours to delete.
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e).context("deleting the MutatingWebhookConfiguration"),
    }
}

/// The configuration EKS registers, pointing at `url` and trusting `ca_pem`.
fn configuration(url: &str, ca_pem: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION_NAME},
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "clientConfig": {
                "url": url,
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
            },
            "rules": [{
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "*",
            }],
            "objectSelector": {"matchExpressions": [{
                "key": mutation::SKIP_POD_LABEL,
                "operator": "DoesNotExist",
            }]},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Ignore",
            "reinvocationPolicy": "IfNeeded",
            "matchPolicy": "Equivalent",
            "timeoutSeconds": 10,
        }],
    })
}

/// `POST /mutate`: an AdmissionReview v1 in, the same with a response out. Always allowed.
async fn mutate(State(state): State<Arc<HandlerState>>, body: Bytes) -> Response {
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not an AdmissionReview: {e}"),
            )
                .into_response()
        }
    };
    let request = &review["request"];
    let Some(uid) = request["uid"].as_str() else {
        return (
            StatusCode::BAD_REQUEST,
            "an AdmissionReview without request.uid",
        )
            .into_response();
    };
    state.reviews.fetch_add(1, Ordering::Relaxed);
    let mut response = json!({"uid": uid, "allowed": true});
    let pod = &request["object"];
    if let Some(nonce) = pod["metadata"]["labels"][PROBE_LABEL].as_str() {
        state
            .probes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(nonce.to_string());
    }
    let is_pod_create = request["operation"] == "CREATE"
        && request["kind"]["kind"] == "Pod"
        && request["subResource"]
            .as_str()
            .unwrap_or_default()
            .is_empty();
    if is_pod_create && pod.is_object() {
        let namespace = request["namespace"]
            .as_str()
            .or(pod["metadata"]["namespace"].as_str())
            .unwrap_or("default");
        let account = pod["spec"]["serviceAccountName"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        let accounts: Api<ServiceAccount> = Api::namespaced(state.client.clone(), namespace);
        match accounts.get_opt(account).await {
            Ok(sa) => {
                let sa = sa.and_then(|sa| serde_json::to_value(sa).ok());
                let mut mutated = pod.clone();
                let associated = state
                    .associated
                    .as_ref()
                    .is_some_and(|a| a(namespace, account));
                mutation::mutate_pod_for(&mut mutated, sa.as_ref(), &state.options, associated);
                let patch = json_patch::diff(pod, &mutated);
                if !patch.0.is_empty() {
                    let patch = serde_json::to_vec(&patch).unwrap_or_default();
                    response["patchType"] = json!("JSONPatch");
                    response["patch"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(patch));
                    state.mutated.fetch_add(1, Ordering::Relaxed);
                }
            }
            // failurePolicy Ignore: admit unmutated, and say why.
            Err(e) => {
                response["warnings"] = json!([format!(
                    "pod identity webhook: cannot read ServiceAccount {namespace}/{account}: {e}"
                )]);
            }
        }
    }
    let answer = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&answer).unwrap_or_default(),
    )
        .into_response()
}

/// A client with the admin's credentials and its own User-Agent.
pub(crate) async fn agent_client(
    plane: &ControlPlane,
    user_agent: &str,
) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(plane.kubeconfig_path())?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(user_agent)?,
    ));
    Ok(kube::Client::try_from(config)?)
}

/// An HTTPS (HTTP/1.1) server on `127.0.0.1:PORT` serving a router; stopped, with every
/// connection it holds, on drop.
pub(crate) struct HttpsServer {
    port: u16,
    task: JoinHandle<()>,
}

impl HttpsServer {
    /// Serves `router` with `cert` on a free loopback port.
    pub(crate) async fn start(
        cert: &pki::ServingCert,
        router: axum::Router,
    ) -> anyhow::Result<HttpsServer> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let certs = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("reading the serving certificate")?;
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
            .context("reading the serving key")?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        // HTTP/1.1 only: the API server's Go clients fall back to it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            // Dropping the set (the task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        let (acceptor, router) = (acceptor.clone(), router.clone());
                        connections.spawn(async move {
                            let handshake = tokio::time::timeout(
                                Duration::from_secs(10),
                                acceptor.accept(tcp),
                            );
                            let Ok(Ok(tls)) = handshake.await else {
                                return;
                            };
                            let service = hyper_util::service::TowerToHyperService::new(router);
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(HttpsServer { port, task })
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
