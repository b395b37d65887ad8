//! kube-sim: test support for irsa-doctor — a Kubernetes API server that runs inside a test
//! process over real HTTP, so the real kube-rs client, watcher, controller and event recorder,
//! and `kubectl`, talk to it unmodified; plus emulations of the EKS pod identity webhook and of a
//! kubelet. Never linked into the shipped binary.
//!
//! Server-side apply is treated as a JSON merge patch (creating the object when it does not
//! exist, and requiring a field manager); managed fields and conflicts are not tracked. Bodies
//! are JSON (or YAML for apply) only: protobuf and CBOR get 415, so kubectl's typed generators
//! (`kubectl create namespace x`) are refused — `kubectl create -f` and `apply -f` work.
//!
//! # What it is still for
//!
//! Every end-to-end test runs against the real control plane (crate `control-plane`). kube-sim
//! stays for what the real API server cannot do — injecting faults into chosen requests
//! (`fail_next`, `drop_watches`, `compact`), which the probe's fault test relies on — for
//! `make demo`, which needs no Go toolchain, and for its webhook module, whose mutation the real
//! control plane serves as an admission webhook.
//!
//! # Where it differs from the real API server
//!
//! Found by running the same end-to-end tests against kube-apiserver v1.36.3; none of kube-sim's
//! remaining uses depends on them.
//!
//! - **No authentication or authorization.** A request the chart's RBAC does not grant (the
//!   operator's Lease in a namespace other than its own, say) succeeds here and gets 403 there.
//!   The end-to-end tests now run the operator as the chart's ServiceAccount with the chart's
//!   RBAC, on the real server.
//! - **Pods of a missing ServiceAccount are accepted**; the real ServiceAccount admission plugin
//!   refuses them, and namespaces get their `default` ServiceAccount only from
//!   kube-controller-manager. The tests create every ServiceAccount their pods use.
//! - **A deleted pod disappears at once**; the real server keeps it (with a deletion timestamp)
//!   until its kubelet confirms the containers stopped, so a pod of the same name cannot be
//!   created meanwhile. The tests wait for the deletion.
//! - **Event notes are not limited**; the real `events.k8s.io/v1` refuses notes over 1,024
//!   bytes. The operator's truncation added "…" past the limit and its long Warnings would have
//!   been dropped; it now cuts to exactly 1,024 bytes, with a regression test on the real server.
//! - **Server-side apply is a merge patch** without field managers; the real server tracks them.
//!   The operator's status apply worked on both, but the real server answers a status write
//!   with the whole object, which kube-rs then deserialized as an IrsaCheck: a malformed
//!   object's status write "failed" (and kube logged its body). The operator now writes status
//!   through a dynamic API.
//! - **The webhook's skip label is checked inside the mutation**; the real registration
//!   excludes such pods with an `objectSelector`, so they never reach the webhook.
//! - **Tokens are signed by kube-sim** and carry no pod binding; the real TokenRequest API binds
//!   them to the pod (`kubernetes.io` claims).
//! - **Namespace deletion is immediate**; the real namespace controller takes at least 5 s.
//! - **Delete preconditions (uid) are ignored**; the real server answers 409 when the uid no
//!   longer matches. The operator's deletions of probe pods rely on it; they are tested on the
//!   real server.

pub mod errors;
pub mod events;
pub mod jsonpath;
pub mod kubelet;
pub mod patch;
pub mod resources;
pub mod selectors;
pub mod server;
pub mod store;
pub mod table;
pub mod token;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use kubelet::{KubeletOptions, Script, ScriptFn};
pub use server::Fault;
pub use webhook::WebhookOptions;

use crate::server::SimState;
use crate::store::Store;
use crate::token::TokenIssuer;

/// How a simulator starts.
#[derive(Clone)]
pub struct Options {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The OIDC issuer it serves and signs tokens with.
    pub issuer: String,
    /// Pod identity webhook emulation; `None` turns it off.
    pub webhook: Option<WebhookOptions>,
    /// Kubelet emulation; `None` (the default) leaves pods Pending.
    pub kubelet: Option<KubeletOptions>,
    /// How often watches that ask for bookmarks get one.
    pub bookmark_interval: Duration,
    /// Changes kept for watch resumption; older resourceVersions get 410 Gone.
    pub history_limit: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            port: 0,
            issuer: token::DEFAULT_ISSUER.to_string(),
            webhook: Some(WebhookOptions::default()),
            kubelet: None,
            bookmark_interval: Duration::from_secs(1),
            history_limit: 200_000,
        }
    }
}

/// A running simulator; it shuts down when dropped.
pub struct KubeSim {
    state: Arc<SimState>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    kubelet: Option<JoinHandle<()>>,
}

impl KubeSim {
    /// Starts with default options on a free port.
    pub async fn start() -> anyhow::Result<KubeSim> {
        KubeSim::start_with(Options::default()).await
    }

    /// Starts with `options`.
    pub async fn start_with(options: Options) -> anyhow::Result<KubeSim> {
        let (watch_epoch, _) = tokio::sync::watch::channel(0);
        let state = Arc::new(SimState {
            store: Store::new(options.history_limit),
            types: RwLock::new(resources::builtins()),
            webhook: RwLock::new(options.webhook.clone()),
            tokens: TokenIssuer::new(&options.issuer),
            requests: Mutex::new(BTreeMap::new()),
            requests_by_agent: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Vec::new()),
            watch_epoch,
            logs: Mutex::new(HashMap::new()),
            bookmark_interval: options.bookmark_interval,
        });
        let ns_rt = state.resource("", "v1", "namespaces").expect("built-in");
        for ns in ["default", "kube-system", "kube-public"] {
            state
                .create_object(
                    &ns_rt,
                    None,
                    json!({"metadata": {"name": ns}, "status": {"phase": "Active"}}),
                )
                .map_err(|e| anyhow::anyhow!("creating namespace {ns}: {}", e.message))?;
        }
        let kubelet = options
            .kubelet
            .clone()
            .map(|k| kubelet::spawn(state.clone(), k));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", options.port))?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(state.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let dir = tempfile::tempdir().context("creating a temp dir for the kubeconfig")?;
        let kubeconfig = dir.path().join("kubeconfig");
        let sim = KubeSim {
            state,
            addr,
            kubeconfig,
            _dir: dir,
            shutdown: Some(shutdown),
            server,
            kubelet,
        };
        sim.write_kubeconfig(&sim.kubeconfig)?;
        Ok(sim)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube-rs client for this server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        let uri = self.url().parse().expect("a socket address is a valid URI");
        kube::Client::try_from(kube::Config::new(uri))
            .expect("a plain-HTTP client needs no TLS setup")
    }

    /// The kubeconfig written at start-up, for `kubectl` and other processes.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Writes a kubeconfig pointing at this server.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube-sim", "cluster": {"server": self.url()}}],
            "users": [{"name": "kube-sim", "user": {}}],
            "contexts": [{"name": "kube-sim", "context": {"cluster": "kube-sim", "user": "kube-sim", "namespace": "default"}}],
            "current-context": "kube-sim",
        });
        std::fs::write(path, serde_yaml_ng::to_string(&config)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The OIDC issuer the server advertises.
    pub fn issuer(&self) -> &str {
        self.state.tokens.issuer()
    }

    /// Every stored object (Events in core/v1 form).
    pub fn objects(&self) -> Vec<Value> {
        self.state
            .store
            .dump()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// Stored objects of one group and plural (`""`, `"pods"`), across namespaces.
    pub fn objects_of(&self, group: &str, plural: &str) -> Vec<Value> {
        self.state
            .store
            .list(&(group.to_string(), plural.to_string()), None)
            .0
    }

    /// Requests served so far by (verb, resource), e.g. `("list", "pods")`.
    pub fn requests(&self) -> BTreeMap<(String, String), u64> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests by (API group, resource, verb) of clients whose User-Agent starts with
    /// `agent`: what that client's RBAC must allow, and how much it asked.
    pub fn requests_from(&self, agent: &str) -> BTreeMap<(String, String, String), u64> {
        let by_agent = self
            .state
            .requests_by_agent
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for ((a, g, r, v), n) in by_agent.iter() {
            if a.starts_with(agent) {
                *out.entry((g.clone(), r.clone(), v.clone())).or_default() += n;
            }
        }
        out
    }

    /// Requests of one verb and resource.
    pub fn request_count(&self, verb: &str, resource: &str) -> u64 {
        self.requests()
            .get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Fails the next `count` requests to `plural` (or only to a subresource, `pods/status`),
    /// of `verb` if given, with `code`.
    pub fn fail_next(&self, plural: &str, verb: Option<&str>, count: usize, code: u16) {
        self.state
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Fault {
                plural: plural.into(),
                verb: verb.map(str::to_string),
                remaining: count,
                code,
            });
    }

    /// Ends every open watch (clients must re-watch).
    pub fn drop_watches(&self) {
        self.state.watch_epoch.send_modify(|e| *e += 1);
    }

    /// Forgets the change history, so watches from any earlier resourceVersion get 410 Gone.
    pub fn compact(&self) {
        self.state.store.compact();
    }

    /// Turns the pod identity webhook emulation on or off.
    pub fn set_webhook(&self, options: Option<WebhookOptions>) {
        *self
            .state
            .webhook
            .write()
            .unwrap_or_else(|p| p.into_inner()) = options;
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.store.current_rv()
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.drop_watches();
        self.server.abort();
        if let Some(k) = self.kubelet.take() {
            k.abort();
        }
    }
}
