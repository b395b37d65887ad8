//! A kubelet stand-in for the real API server: it registers a `Node`, binds every unscheduled
//! pod to it (there is no scheduler), runs each bound pod — as local processes, or as the outcome
//! a test scripts ([`Script`]) — reports the pod's status through `pods/status` as a kubelet does,
//! mounts real tokens from the TokenRequest API, polls readiness and liveness probes, restarts the
//! containers of workload pods, and serves the containers' output on
//! `GET /containerLogs/{namespace}/{pod}/{container}` over HTTPS, where the API server's
//! `pods/log` proxies. See [`NodeAgent`] for what it does and where it differs from a kubelet.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::get;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt as _;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::pki;
use crate::webhook::{agent_client, HttpsServer};
use crate::ControlPlane;

mod logs;
mod probes;
mod process;
mod status;
mod volumes;

use logs::{container_logs, ContainerLog, Logs};
use status::{Reporter, Run, Slot};

/// What a scripted pod does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// The image cannot be pulled: waiting in `ErrImagePull`, then `ImagePullBackOff`.
    ImagePullFailure,
    /// Runs for `after`, prints `log`, exits with `code`.
    Exit {
        /// The container's output.
        log: String,
        /// Its exit code.
        code: i32,
        /// How long it runs.
        after: Duration,
    },
    /// Runs until its deadline or deletion.
    Hang,
}

/// Chooses a script for a pod; `None` runs it as local processes.
pub type ScriptFn = Arc<dyn Fn(&Value) -> Option<Script> + Send + Sync>;

/// How the node agent runs pods.
#[derive(Clone, Default)]
pub struct KubeletOptions {
    /// Extra environment for local processes (e.g. `AWS_ENDPOINT_URL` of a local AWS emulator).
    pub extra_env: Vec<(String, String)>,
    /// Scripted outcomes, by pod.
    pub script: Option<ScriptFn>,
    /// Images the agent runs as a local binary, by repository (the image without its tag or
    /// digest): a container of such an image with no `command` runs the binary with its `args`,
    /// as the image's entrypoint would.
    pub images: Vec<(String, PathBuf)>,
}

/// The name of the `Node` the agent registers.
pub const NODE_NAME: &str = "local";
/// The User-Agent of the agent's API requests (bindings, status, tokens), to pick them out with
/// [`ControlPlane::requests_from`].
pub const USER_AGENT: &str = "control-plane-node-agent";
/// What a kubelet says when it fails a pod for its `activeDeadlineSeconds`.
const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// A kubelet stand-in serving node [`NODE_NAME`] of a [`ControlPlane`].
///
/// Once started, every pod without `spec.nodeName` is bound to the node, and every pod bound to
/// it is run:
/// - its phase goes Pending → Running → Succeeded/Failed, with container statuses, `startTime`,
///   `hostIP`, a `podIP` of its own (a loopback address, 127.0.0.2 and up, since every pod shares
///   the host's network) and the conditions a kubelet sets, written through `pods/status`;
/// - volumes are prepared in a directory per pod: each projected `serviceAccountToken` gets a
///   real token from the TokenRequest API, bound to the pod as a kubelet's are (never logged);
///   ConfigMap, Secret and downward API items are written too (`kube-root-ca.crt` falls back to
///   the API server's CA when no controller published it); other volumes are empty directories;
/// - unscripted containers run as local processes: `command` + `args` (or, for an image
///   [`KubeletOptions::images`] maps, that binary with the `args`), `$(VAR)` references
///   expanded as a kubelet expands them, in an empty environment but `PATH`, `HOME` (a fresh
///   directory), `KUBERNETES_SERVICE_HOST`/`PORT`, the container's `env` (literal values, and
///   `fieldRef`s of the downward API: name, namespace, uid, podIP, hostIP, nodeName,
///   serviceAccountName; paths under a volume mount rewritten to the local directory), then
///   [`KubeletOptions::extra_env`]. The in-cluster files cannot be at their fixed path
///   (`/var/run/secrets/kubernetes.io/serviceaccount`) for every pod at once, so a container that
///   mounts them gets `KUBECONFIG`, a kubeconfig the agent writes from the pod's own projected
///   token file and CA: the client authenticates as the pod's ServiceAccount, with the token the
///   kubelet would have mounted. Init containers run first, one at a time; the containers then
///   run together. Each container runs in its own process group, killed when its main process
///   exits (as a container's PID namespace is) or when the pod stops;
/// - `readinessProbe` and `livenessProbe` (`httpGet`, `tcpSocket`, `exec`) are polled as a
///   kubelet polls them (initial delay, period, timeout, failure and success thresholds): the
///   container's and the pod's `Ready` follow readiness, and a container failing its liveness
///   probe is restarted;
/// - the containers of a pod a controller owns (a Deployment's, a DaemonSet's, …) are
///   restarted when they exit, as `restartPolicy` says (`Always`; `OnFailure` on a non-zero
///   exit), with a backoff (1 s doubling to 30 s) and `restartCount`. A pod without an owner
///   runs once whatever its policy, so that a test can read how it ended;
/// - `activeDeadlineSeconds`, counted from `startTime`, fails the pod with reason
///   `DeadlineExceeded`, whatever it was doing;
/// - a deleted pod's processes get SIGTERM, then SIGKILL after the pod's
///   `terminationGracePeriodSeconds` (30 s at most), its status is made terminal, and the
///   deletion is confirmed (DELETE with `gracePeriodSeconds=0` and the pod's uid as
///   precondition).
///
/// Output of each container (stdout and stderr, interleaved as it arrives) is served like a
/// kubelet serves it: `tailLines`, `limitBytes`, `timestamps`, `sinceSeconds`, `sinceTime`,
/// `stream` and `follow` are honoured; `previous` finds no previous container (a restarted
/// container's log continues).
///
/// Dropping the agent stops its server, its watch and every pod process. The `Node` object
/// stays registered, as a stopped kubelet's does; pods then stay as they were.
pub struct NodeAgent {
    port: u16,
    ca_pem: String,
    controller: JoinHandle<()>,
    _server: HttpsServer,
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        // Aborting the controller drops its pod workers, whose processes are killed on drop.
        self.controller.abort();
    }
}

struct Agent {
    client: kube::Client,
    options: KubeletOptions,
    logs: Logs,
    /// The API server's CA, for `kube-root-ca.crt` when no controller published it.
    cluster_ca: String,
    /// The API server's URL, for the in-cluster configuration of the pods.
    api_url: String,
    /// The last pod IP handed out (127.0.0.0/8 is all loopback here).
    last_ip: AtomicU32,
}

impl Agent {
    /// A loopback address of the pod's own, so that pods listening on the same port (the
    /// replicas of a Deployment) do not collide: 127.0.0.2, 127.0.0.3, …, 127.0.1.0, ….
    fn next_pod_ip(&self) -> String {
        let n = self.last_ip.fetch_add(1, Ordering::Relaxed) + 2;
        let n = n % (1 << 24);
        format!("127.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
    }
}

impl NodeAgent {
    /// Starts serving, registers the node as Ready, and starts binding and running pods.
    pub async fn start(plane: &ControlPlane, options: KubeletOptions) -> anyhow::Result<NodeAgent> {
        let client = agent_client(plane, USER_AGENT).await?;
        let agent = Arc::new(Agent {
            client: client.clone(),
            options,
            logs: Logs::default(),
            cluster_ca: plane.ca_pem().to_string(),
            api_url: plane.url().to_string(),
            last_ip: AtomicU32::new(0),
        });
        let ca = pki::Ca::new("node-agent-ca")?;
        let router = axum::Router::new()
            .route(
                "/containerLogs/{namespace}/{pod}/{container}",
                get(container_logs),
            )
            .route("/healthz", get(|| async { "ok" }))
            .with_state(agent.clone());
        let server = HttpsServer::start(&ca.serving_cert()?, router).await?;
        register_node(&client, server.port(), plane.version()).await?;
        let controller = tokio::spawn(control(agent));
        Ok(NodeAgent {
            port: server.port(),
            ca_pem: ca.cert_pem().to_string(),
            controller,
            _server: server,
        })
    }

    /// The node's name, [`NODE_NAME`].
    pub fn node_name(&self) -> &str {
        NODE_NAME
    }

    /// The port of its HTTPS endpoint on 127.0.0.1 (the node's `kubeletEndpoint`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA (PEM) of its serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Creates (or takes over) the node and reports it Ready, reachable on `port`.
async fn register_node(client: &kube::Client, port: u16, version: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
        }},
    });
    nodes
        .patch(
            NODE_NAME,
            &PatchParams::apply(USER_AGENT).force(),
            &Patch::Apply(&node),
        )
        .await
        .context("registering the node")?;
    // Admission taints a new node not-ready; the node lifecycle controller (not running here)
    // would lift the taint once the node is Ready.
    nodes
        .patch(
            NODE_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": null}})),
        )
        .await?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .map(|kb| format!("{}Ki", kb.trim()))
        })
        .unwrap_or_else(|| "1Gi".to_string());
    let resources = json!({"cpu": cpus.to_string(), "memory": memory, "pods": "110"});
    let status = json!({"status": {
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": NODE_NAME},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now(), "lastTransitionTime": now(),
        }],
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": "", "osImage": "local processes",
            "containerRuntimeVersion": "local://0.0.0",
            "kubeletVersion": version, "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": arch,
        },
    }});
    nodes
        .patch_status(NODE_NAME, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .context("reporting the node's status")?;
    Ok(())
}

/// Where a pod's worker is: running, asked to stop by a graceful deletion, or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Running,
    Terminating,
    Gone,
}

/// Watches every pod: binds the unscheduled, runs the bound, finalizes the deleted.
async fn control(agent: Arc<Agent>) {
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let mut events = std::pin::pin!(watcher(pods, watcher::Config::default()).default_backoff());
    // By uid; dropping the set (the controller is aborted) stops every pod.
    let mut workers: HashMap<String, watch::Sender<Lifecycle>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut listed: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                // The backoff retries; a failed watch restarts with a fresh list.
                let Ok(event) = event else { continue };
                match event {
                    Event::Init => listed = Some(HashSet::new()),
                    Event::InitApply(pod) => {
                        if let (Some(listed), Some(uid)) = (listed.as_mut(), pod.metadata.uid.clone()) {
                            listed.insert(uid);
                        }
                        observe(&agent, pod, &mut workers, &mut tasks).await;
                    }
                    // Pods deleted while the watch was down have no Delete event.
                    Event::InitDone => {
                        if let Some(listed) = listed.take() {
                            workers.retain(|uid, lifecycle| {
                                let keep = listed.contains(uid);
                                if !keep {
                                    lifecycle.send_replace(Lifecycle::Gone);
                                }
                                keep
                            });
                        }
                    }
                    Event::Apply(pod) => observe(&agent, pod, &mut workers, &mut tasks).await,
                    Event::Delete(pod) => {
                        let uid = pod.metadata.uid.unwrap_or_default();
                        if let Some(lifecycle) = workers.remove(&uid) {
                            lifecycle.send_replace(Lifecycle::Gone);
                        }
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

async fn observe(
    agent: &Arc<Agent>,
    pod: Pod,
    workers: &mut HashMap<String, watch::Sender<Lifecycle>>,
    tasks: &mut JoinSet<()>,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let spec = pod.spec.as_ref();
    let deleting = pod.metadata.deletion_timestamp.is_some();
    match spec.and_then(|s| s.node_name.as_deref()) {
        None => {
            let gated = spec
                .and_then(|s| s.scheduling_gates.as_ref())
                .is_some_and(|g| !g.is_empty());
            if !deleting && !gated {
                bind(agent, &pod).await;
            }
        }
        Some(NODE_NAME) => {
            let state = if deleting {
                Lifecycle::Terminating
            } else {
                Lifecycle::Running
            };
            if let Some(lifecycle) = workers.get(&uid) {
                lifecycle.send_if_modified(|l| {
                    let changed = *l == Lifecycle::Running && state == Lifecycle::Terminating;
                    if changed {
                        *l = state;
                    }
                    changed
                });
            } else {
                let Ok(pod) = serde_json::to_value(&pod) else {
                    return;
                };
                let (sender, receiver) = watch::channel(state);
                workers.insert(uid, sender);
                tasks.spawn(pod_worker(agent.clone(), pod, receiver));
            }
        }
        Some(_) => {}
    }
}

/// Binds `pod` to the node, as a scheduler would.
async fn bind(agent: &Agent, pod: &Pod) {
    let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
        return;
    };
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
    });
    // A pod bound or deleted meanwhile refuses the binding; nothing to do then.
    let _ = Api::<Pod>::namespaced(agent.client.clone(), ns)
        .create_subresource::<_, Value>("binding", name, &PostParams::default(), &binding)
        .await;
}

/// Completes once the pod stops (or its worker is gone), holding no borrow of the state.
async fn stopping(stop: &mut watch::Receiver<Lifecycle>) -> Lifecycle {
    stop.wait_for(|l| *l != Lifecycle::Running)
        .await
        .map(|l| *l)
        .unwrap_or(Lifecycle::Gone)
}

/// What a pod's containers run with.
struct PodRun<'a> {
    agent: &'a Agent,
    pod: &'a Value,
    /// The pod's directory: volumes, HOMEs, its kubeconfig.
    root: &'a Path,
    pod_ip: String,
    /// Volume name → local directory.
    volumes: HashMap<String, PathBuf>,
    /// `terminationGracePeriodSeconds`, at most 30 s.
    grace: Duration,
    /// Whether a controller owns the pod: only then are its containers restarted.
    owned: bool,
}

impl PodRun<'_> {
    /// Whether a container that ended with `code` starts again, by `restartPolicy`.
    fn restarts(&self, code: i32) -> bool {
        self.owned
            && match self.pod["spec"]["restartPolicy"]
                .as_str()
                .unwrap_or("Always")
            {
                "Always" => true,
                "OnFailure" => code != 0,
                _ => false,
            }
    }
}

/// One pod on the node, from its binding to its deletion.
async fn pod_worker(agent: Arc<Agent>, pod: Value, mut lifecycle: watch::Receiver<Lifecycle>) {
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    let terminal = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    let pod_ip = pod["status"]["podIP"]
        .as_str()
        .map_or_else(|| agent.next_pod_ip(), str::to_string);
    let mut reporter = Reporter::new(api.clone(), &pod, &pod_ip);
    // The pod's volumes and HOME live until the pod is gone.
    let root = tempfile::tempdir();
    if !terminal && *lifecycle.borrow() == Lifecycle::Running {
        if let Ok(root) = &root {
            let limit = pod["spec"]["activeDeadlineSeconds"]
                .as_u64()
                .map(Duration::from_secs);
            let run = run_pod(&agent, &pod, root.path(), pod_ip, &mut reporter, &lifecycle);
            let finished = match limit {
                Some(limit) => tokio::time::timeout(limit, run).await.is_ok(),
                None => {
                    run.await;
                    true
                }
            };
            if !finished {
                reporter.stop_all(Some(("DeadlineExceeded", DEADLINE_MESSAGE)));
                reporter.report().await;
            }
        } else if let Err(e) = &root {
            reporter.all_waiting(
                "ContainerCreating",
                &format!("node-agent: no pod directory: {e}"),
            );
            reporter.report().await;
        }
    }
    // Every process of the pod is stopped by now.
    let end = lifecycle
        .wait_for(|l| *l != Lifecycle::Running)
        .await
        .map(|l| *l)
        .unwrap_or(Lifecycle::Gone);
    agent.logs.remove_pod(&ns, &name, &uid);
    if end == Lifecycle::Terminating {
        if !terminal && !reporter.terminal() {
            reporter.stop_all(None);
            reporter.report().await;
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        for _ in 0..5 {
            match api.delete(&name, &params).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

/// Runs the pod to its end, or until it stops.
async fn run_pod(
    agent: &Agent,
    pod: &Value,
    root: &Path,
    pod_ip: String,
    reporter: &mut Reporter,
    lifecycle: &watch::Receiver<Lifecycle>,
) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let init = containers(pod, "initContainers");
    let main = containers(pod, "containers");
    let logs: Vec<Arc<ContainerLog>> = init
        .iter()
        .chain(&main)
        .map(|c| {
            agent
                .logs
                .open(ns, name, uid, c["name"].as_str().unwrap_or_default())
        })
        .collect();
    let (init_logs, main_logs) = logs.split_at(init.len());
    reporter.report().await;

    let mut stop = lifecycle.clone();
    let volumes = loop {
        match volumes::prepare_volumes(agent, pod, root).await {
            Ok(v) => break v,
            // A kubelet keeps the pod in ContainerCreating and retries the mount.
            Err(e) => {
                reporter.all_waiting(
                    "ContainerCreating",
                    &format!("MountVolume.SetUp failed: {e:#}"),
                );
                reporter.report().await;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopping(&mut stop) => return,
                }
            }
        }
    };
    reporter.volumes_ready = true;
    let owned = pod["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|o| o.iter().any(|r| r["controller"] == true));
    let run = PodRun {
        agent,
        pod,
        root,
        pod_ip,
        volumes,
        grace: Duration::from_secs(
            pod["spec"]["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(30)
                .min(30),
        ),
        owned,
    };
    let script = agent.options.script.as_ref().and_then(|f| f(pod));
    for (i, c) in init.iter().enumerate() {
        let code = match &script {
            // Scripts state the pod's outcome: init containers just complete.
            Some(_) => {
                reporter.set(Slot::Init(i), Run::Terminated(0, "Completed"));
                0
            }
            None => {
                reporter.set(Slot::Init(i), Run::Running);
                reporter.report().await;
                let (code, _) =
                    process::run_process(&run, c, &init_logs[i], &mut stop, std::future::pending())
                        .await;
                reporter.set(Slot::Init(i), Run::exited(code));
                code
            }
        };
        if code != 0 || *stop.borrow() != Lifecycle::Running {
            reporter.main_waiting("PodInitializing");
            reporter.stop_all(None);
            return reporter.report().await;
        }
    }
    let reporter = tokio::sync::Mutex::new(reporter);
    let runs = main.iter().enumerate().map(|(i, c)| {
        run_container(
            &run,
            c,
            &script,
            &main_logs[i],
            &reporter,
            i,
            lifecycle.clone(),
        )
    });
    futures::future::join_all(runs).await;
}

/// Runs main container `i` as scripted or as a process, restarting it as its pod's policy says,
/// with its probes, reporting its states.
#[allow(clippy::too_many_arguments)]
async fn run_container(
    run: &PodRun<'_>,
    container: &Value,
    script: &Option<Script>,
    log: &ContainerLog,
    reporter: &tokio::sync::Mutex<&mut Reporter>,
    i: usize,
    mut stop: watch::Receiver<Lifecycle>,
) {
    let slot = Slot::Main(i);
    let update = |state: Run| async move {
        let mut r = reporter.lock().await;
        r.set(slot, state);
        r.report().await;
    };
    let stopped = |stop: &watch::Receiver<Lifecycle>| *stop.borrow() != Lifecycle::Running;
    match script {
        Some(Script::ImagePullFailure) => {
            let image = container["image"].as_str().unwrap_or_default();
            let message =
                format!("Back-off pulling image \"{image}\": failed to pull and unpack image");
            for reason in ["ErrImagePull", "ImagePullBackOff"] {
                log.waiting(reason);
                update(Run::Waiting(reason, message.clone())).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            stopping(&mut stop).await;
        }
        Some(Script::Hang) => {
            log.started();
            update(Run::Running).await;
            stopping(&mut stop).await;
        }
        Some(Script::Exit {
            log: text,
            code,
            after,
        }) => {
            log.started();
            update(Run::Running).await;
            tokio::select! {
                () = tokio::time::sleep(*after) => {
                    log.append(false, text.as_bytes());
                    log.finish();
                    update(Run::exited(*code)).await;
                }
                _ = stopping(&mut stop) => {}
            }
        }
        None => {
            let readiness = probes::Probe::of(container, "readinessProbe", &run.pod_ip);
            let liveness = probes::Probe::of(container, "livenessProbe", &run.pod_ip);
            let mut backoff = Duration::from_secs(1);
            loop {
                update(Run::Running).await;
                let (verdict, mut verdicts) = watch::channel(readiness.is_none());
                let probing = async {
                    if let Some(probe) = &readiness {
                        probe
                            .watch(|ok| {
                                verdict.send_replace(ok);
                            })
                            .await;
                    }
                    std::future::pending::<()>().await
                };
                // The container's and the pod's Ready follow each flip, reported at once.
                let reporting = async {
                    while verdicts.changed().await.is_ok() {
                        let ok = *verdicts.borrow_and_update();
                        let mut r = reporter.lock().await;
                        if r.set_probe_ready(slot, ok) {
                            r.report().await;
                        }
                    }
                    std::future::pending::<()>().await
                };
                let unhealthy = async {
                    match &liveness {
                        Some(probe) => probe.failed().await,
                        None => std::future::pending().await,
                    }
                };
                let (code, ended) = tokio::select! {
                    ended = process::run_process(run, container, log, &mut stop, unhealthy) => ended,
                    () = probing => unreachable!("readiness polls until the container ends"),
                    () = reporting => unreachable!("readiness is reported until the container ends"),
                };
                let restart = match ended {
                    process::Ended::Stopped => false,
                    process::Ended::Unhealthy => run.owned,
                    process::Ended::Exited => run.restarts(code),
                };
                if !restart || stopped(&stop) {
                    update(Run::exited(code)).await;
                    break;
                }
                update(Run::exited(code)).await;
                let message = match ended {
                    process::Ended::Unhealthy => "liveness probe failed; restarting".to_string(),
                    _ => format!(
                        "back-off {}s restarting failed container",
                        backoff.as_secs()
                    ),
                };
                {
                    let mut r = reporter.lock().await;
                    r.restarting(slot, &message);
                    r.report().await;
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stopping(&mut stop) => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                log.restarted();
            }
        }
    }
}

fn containers(pod: &Value, list: &str) -> Vec<Value> {
    pod["spec"][list].as_array().cloned().unwrap_or_default()
}
