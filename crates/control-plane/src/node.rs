//! A kubelet stand-in for the real API server: it registers a `Node`, binds every unscheduled
//! pod to it (there is no scheduler), runs each bound pod once — as local processes, or as the
//! outcome a test scripts ([`kube_sim::Script`]) — reports the pod's status through
//! `pods/status` as a kubelet does, mounts real tokens from the TokenRequest API, and serves the
//! containers' output on `GET /containerLogs/{namespace}/{pod}/{container}` over HTTPS, where
//! the API server's `pods/log` proxies.
//!
//! It ports kube-sim's kubelet ([`kube_sim::kubelet`]); where it differs, it does what a real
//! kubelet does (see [`NodeAgent`]).

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt as _;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt as _;
use kube_sim::{KubeletOptions, Script};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt as _;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::pki;
use crate::webhook::{agent_client, HttpsServer};
use crate::ControlPlane;

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
/// it is run once:
/// - its phase goes Pending → Running → Succeeded/Failed, with container statuses, `startTime`,
///   `hostIP` and the conditions a kubelet sets, written through `pods/status`;
/// - volumes are prepared in a directory per pod: each projected `serviceAccountToken` gets a
///   real token from the TokenRequest API, bound to the pod as a kubelet's are (never logged);
///   ConfigMap, Secret and downward API items are written too (`kube-root-ca.crt` falls back to
///   the API server's CA when no controller published it); other volumes are empty directories;
/// - unscripted containers run as local processes: `command` + `args`, an empty environment
///   but `PATH`, `HOME` (a fresh directory) and the container's literal `env` values (paths
///   under a volume mount rewritten to the local directory), then
///   [`KubeletOptions::extra_env`]. Init containers run first, one at a time; the containers
///   then run together. Each container runs in its own process group, killed when its main
///   process exits (as a container's PID namespace is) or when the pod stops;
/// - `activeDeadlineSeconds`, counted from `startTime`, fails the pod with reason
///   `DeadlineExceeded`, whatever it was doing;
/// - a deleted pod's processes are killed, its status is made terminal, and the deletion is
///   confirmed (DELETE with `gracePeriodSeconds=0` and the pod's uid as precondition).
///
/// Output of each container (stdout and stderr, interleaved as it arrives) is served like a
/// kubelet serves it: `tailLines`, `limitBytes`, `timestamps`, `sinceSeconds`, `sinceTime`,
/// `stream` and `follow` are honoured; `previous` finds no previous container (nothing restarts).
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
    let mut reporter = Reporter::new(api.clone(), &pod);
    // The pod's volumes and HOME live until the pod is gone.
    let root = tempfile::tempdir();
    if !terminal && *lifecycle.borrow() == Lifecycle::Running {
        if let Ok(root) = &root {
            let mut stop = lifecycle.clone();
            let stopped = async move {
                let _ = stop.wait_for(|l| *l != Lifecycle::Running).await;
            };
            let limit = pod["spec"]["activeDeadlineSeconds"]
                .as_u64()
                .map(Duration::from_secs);
            let run = async {
                let run = run_pod(&agent, &pod, root.path(), &mut reporter);
                match limit {
                    Some(limit) => tokio::time::timeout(limit, run).await.is_ok(),
                    None => {
                        run.await;
                        true
                    }
                }
            };
            tokio::select! {
                finished = run => {
                    if !finished {
                        reporter.stop_all(Some(("DeadlineExceeded", DEADLINE_MESSAGE)));
                        reporter.report().await;
                    }
                }
                () = stopped => {}
            }
        } else if let Err(e) = &root {
            reporter.all_waiting(
                "ContainerCreating",
                &format!("node-agent: no pod directory: {e}"),
            );
            reporter.report().await;
        }
    }
    // Every process of the pod is killed by now (dropped with the run).
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

/// Runs the pod to its end; the processes die when this future is dropped.
async fn run_pod(agent: &Agent, pod: &Value, root: &Path, reporter: &mut Reporter) {
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

    let volumes = loop {
        match prepare_volumes(agent, pod, root).await {
            Ok(v) => break v,
            // A kubelet keeps the pod in ContainerCreating and retries the mount.
            Err(e) => {
                reporter.all_waiting(
                    "ContainerCreating",
                    &format!("MountVolume.SetUp failed: {e:#}"),
                );
                reporter.report().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    reporter.volumes_ready = true;
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
                let code = run_process(agent, c, &volumes, root, &init_logs[i]).await;
                reporter.set(Slot::Init(i), Run::exited(code));
                code
            }
        };
        if code != 0 {
            reporter.main_waiting("PodInitializing");
            reporter.stop_all(None);
            return reporter.report().await;
        }
    }
    let reporter = tokio::sync::Mutex::new(reporter);
    let runs = main.iter().enumerate().map(|(i, c)| {
        run_container(
            agent,
            c,
            &script,
            &volumes,
            root,
            &main_logs[i],
            &reporter,
            i,
        )
    });
    futures::future::join_all(runs).await;
}

/// Runs main container `i` as scripted or as a process, reporting its states.
#[allow(clippy::too_many_arguments)]
async fn run_container(
    agent: &Agent,
    container: &Value,
    script: &Option<Script>,
    volumes: &HashMap<String, PathBuf>,
    root: &Path,
    log: &ContainerLog,
    reporter: &tokio::sync::Mutex<&mut Reporter>,
    i: usize,
) {
    let slot = Slot::Main(i);
    let update = |state: Run| async move {
        let mut r = reporter.lock().await;
        r.set(slot, state);
        r.report().await;
    };
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
            std::future::pending::<()>().await;
        }
        Some(Script::Hang) => {
            log.started();
            update(Run::Running).await;
            std::future::pending::<()>().await;
        }
        Some(Script::Exit {
            log: text,
            code,
            after,
        }) => {
            log.started();
            update(Run::Running).await;
            tokio::time::sleep(*after).await;
            log.append(false, text.as_bytes());
            log.finish();
            update(Run::exited(*code)).await;
        }
        None => {
            update(Run::Running).await;
            let code = run_process(agent, container, volumes, root, log).await;
            update(Run::exited(code)).await;
        }
    }
}

/// Where each of the container's mounts is here: mount path → local directory.
fn mount_dirs(container: &Value, volumes: &HashMap<String, PathBuf>) -> Vec<(String, PathBuf)> {
    container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let dir = volumes.get(m["name"].as_str()?)?;
            let dir = match m["subPath"].as_str().filter(|s| !s.is_empty()) {
                Some(sub) => dir.join(sub),
                None => dir.clone(),
            };
            let path = m["mountPath"].as_str()?.trim_end_matches('/').to_string();
            Some((path, dir))
        })
        .collect()
}

/// Rewrites an env value that points into a mount so it points at the local directory.
fn remap(value: &str, mounts: &[(String, PathBuf)]) -> String {
    mounts
        .iter()
        .find_map(|(path, local)| {
            let rest = value.strip_prefix(path.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", local.display()))
        })
        .unwrap_or_else(|| value.to_string())
}

/// Runs the container as a local process; its exit code (137 when killed by a signal).
async fn run_process(
    agent: &Agent,
    container: &Value,
    volumes: &HashMap<String, PathBuf>,
    root: &Path,
    log: &ContainerLog,
) -> i32 {
    let argv: Vec<&str> = container["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(container["args"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let fail = |code: i32, message: String| {
        log.started();
        log.append(true, format!("node-agent: {message}\n").as_bytes());
        log.finish();
        code
    };
    let Some((program, args)) = argv.split_first() else {
        return fail(
            127,
            "the local runtime needs the container's command".into(),
        );
    };
    let mounts = mount_dirs(container, volumes);
    let home = root
        .join("home")
        .join(container["name"].as_str().unwrap_or("container"));
    if let Err(e) = std::fs::create_dir_all(&home) {
        return fail(126, format!("cannot create HOME: {e}"));
    }
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .process_group(0)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for e in container["env"].as_array().into_iter().flatten() {
        if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
            cmd.env(k, remap(v, &mounts));
        }
    }
    for (k, v) in &agent.options.extra_env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(127, format!("cannot run {program:?}: {e}")),
    };
    log.started();
    // The whole group dies with the container's main process, or with this future.
    let _group = child.id().map(ProcessGroup);
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let read = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>, stderr: bool| async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            log.append(stderr, &buf[..n]);
        }
    };
    let wait = async {
        let status = child.wait().await;
        drop(_group);
        status
    };
    let (status, _, _) = tokio::join!(
        wait,
        async {
            if let Some(p) = stdout {
                read(Box::new(p), false).await;
            }
        },
        async {
            if let Some(p) = stderr {
                read(Box::new(p), true).await;
            }
        },
    );
    log.finish();
    match status {
        Ok(s) => s.code().unwrap_or(137),
        Err(_) => 137,
    }
}

/// A container's process group, killed on drop.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // No signal API without `unsafe`: procps' kill does it. A group already gone is fine.
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn containers(pod: &Value, list: &str) -> Vec<Value> {
    pod["spec"][list].as_array().cloned().unwrap_or_default()
}

/// A relative path with no `..`, as the API server validates them.
fn safe_join(dir: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(relative);
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        bail!("refusing path {relative:?}");
    }
    Ok(dir.join(path))
}

fn write_file(dir: &Path, relative: &str, content: &[u8]) -> anyhow::Result<()> {
    let path = safe_join(dir, relative)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))
}

/// Fills a directory per volume; volume name → directory.
async fn prepare_volumes(
    agent: &Agent,
    pod: &Value,
    root: &Path,
) -> anyhow::Result<HashMap<String, PathBuf>> {
    let mut dirs = HashMap::new();
    for volume in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let Some(name) = volume["name"].as_str() else {
            continue;
        };
        let dir = safe_join(&root.join("volumes"), name)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        if let Some(sources) = volume["projected"]["sources"].as_array() {
            for source in sources {
                write_source(agent, pod, source, &dir).await?;
            }
        } else {
            // configMap, secret and downwardAPI volumes are sources of their own.
            for kind in ["configMap", "secret", "downwardAPI"] {
                if volume[kind].is_object() {
                    let mut source = volume[kind].clone();
                    if kind == "secret" {
                        source["name"] = volume[kind]["secretName"].clone();
                    }
                    write_source(agent, pod, &json!({kind: source}), &dir).await?;
                }
            }
        }
        dirs.insert(name.to_string(), dir);
    }
    Ok(dirs)
}

/// Writes one projected source into `dir`.
async fn write_source(
    agent: &Agent,
    pod: &Value,
    source: &Value,
    dir: &Path,
) -> anyhow::Result<()> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let token = &source["serviceAccountToken"];
    if token.is_object() {
        let account = pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default");
        let audiences: Vec<&str> = token["audience"]
            .as_str()
            .filter(|a| !a.is_empty())
            .into_iter()
            .collect();
        let request: TokenRequest = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": audiences,
                "expirationSeconds": token["expirationSeconds"].as_i64().unwrap_or(3600),
                "boundObjectRef": {
                    "apiVersion": "v1", "kind": "Pod",
                    "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"],
                },
            },
        }))?;
        let created: TokenRequest = Api::<ServiceAccount>::namespaced(agent.client.clone(), ns)
            .create_subresource("token", account, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for ServiceAccount {ns}/{account}"))?;
        let jwt = created.status.map(|s| s.token).unwrap_or_default();
        return write_file(
            dir,
            token["path"].as_str().unwrap_or("token"),
            jwt.as_bytes(),
        );
    }
    let items = |source: &Value| -> Vec<(String, String)> {
        source["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                Some((
                    i["key"].as_str()?.to_string(),
                    i["path"].as_str()?.to_string(),
                ))
            })
            .collect()
    };
    let config_map = &source["configMap"];
    if config_map.is_object() {
        let name = config_map["name"].as_str().unwrap_or_default();
        let data: Vec<(String, Vec<u8>)> =
            match Api::<ConfigMap>::namespaced(agent.client.clone(), ns)
                .get_opt(name)
                .await?
            {
                Some(cm) => cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .chain(
                        cm.binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    )
                    .collect(),
                // No controller publishes it here: the API server's CA is what it would hold.
                None if name == "kube-root-ca.crt" => {
                    vec![("ca.crt".to_string(), agent.cluster_ca.clone().into_bytes())]
                }
                None if config_map["optional"] == true => return Ok(()),
                None => bail!("configmap {ns}/{name} not found"),
            };
        return write_items(dir, data, items(config_map));
    }
    let secret = &source["secret"];
    if secret.is_object() {
        let name = secret["name"].as_str().unwrap_or_default();
        let data: Vec<(String, Vec<u8>)> = match Api::<Secret>::namespaced(agent.client.clone(), ns)
            .get_opt(name)
            .await?
        {
            Some(s) => s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
            None if secret["optional"] == true => return Ok(()),
            None => bail!("secret {ns}/{name} not found"),
        };
        return write_items(dir, data, items(secret));
    }
    for item in source["downwardAPI"]["items"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(path) = item["path"].as_str() else {
            continue;
        };
        let metadata = &pod["metadata"];
        let map = |m: &Value| -> String {
            m.as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    format!(
                        "{k}={}\n",
                        Value::String(v.as_str().unwrap_or_default().into())
                    )
                })
                .collect()
        };
        let value = match item["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => metadata["name"].as_str().unwrap_or_default().to_string(),
            Some("metadata.namespace") => ns.to_string(),
            Some("metadata.uid") => metadata["uid"].as_str().unwrap_or_default().to_string(),
            Some("metadata.labels") => map(&metadata["labels"]),
            Some("metadata.annotations") => map(&metadata["annotations"]),
            _ => String::new(),
        };
        write_file(dir, path, value.as_bytes())?;
    }
    Ok(())
}

/// Writes every key, or the listed ones at their paths.
fn write_items(
    dir: &Path,
    data: Vec<(String, Vec<u8>)>,
    items: Vec<(String, String)>,
) -> anyhow::Result<()> {
    if items.is_empty() {
        for (key, value) in &data {
            write_file(dir, key, value)?;
        }
        return Ok(());
    }
    for (key, path) in items {
        if let Some((_, value)) = data.iter().find(|(k, _)| *k == key) {
            write_file(dir, &path, value)?;
        }
    }
    Ok(())
}

/// Which container a state is for.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Init(usize),
    Main(usize),
}

/// A container's state, to report.
enum Run {
    Waiting(&'static str, String),
    Running,
    Terminated(i32, &'static str),
}

impl Run {
    fn exited(code: i32) -> Run {
        Run::Terminated(code, if code == 0 { "Completed" } else { "Error" })
    }
}

struct ContainerStatus {
    name: Value,
    image: Value,
    state: Value,
    started_at: Option<String>,
    exit_code: Option<i64>,
}

impl ContainerStatus {
    fn running(&self) -> bool {
        self.state.get("running").is_some()
    }

    fn to_json(&self, ready: bool) -> Value {
        json!({
            "name": self.name, "image": self.image, "imageID": "",
            "ready": ready && self.running(), "started": self.running(),
            "restartCount": 0, "state": self.state,
        })
    }
}

/// The pod's status as the agent knows it, written with a merge patch on `pods/status` (whole
/// lists, so one container's states never merge with another's).
struct Reporter {
    api: Api<Pod>,
    name: String,
    start_time: String,
    init: Vec<ContainerStatus>,
    main: Vec<ContainerStatus>,
    volumes_ready: bool,
    /// A reason the pod failed whatever its containers did (`DeadlineExceeded`).
    failure: Option<(&'static str, &'static str)>,
    /// Condition type → (status, lastTransitionTime).
    conditions: HashMap<&'static str, (bool, String)>,
}

impl Reporter {
    fn new(api: Api<Pod>, pod: &Value) -> Reporter {
        let status = |c: &Value| ContainerStatus {
            name: c["name"].clone(),
            image: c["image"].clone(),
            state: json!({"waiting": {"reason": "ContainerCreating"}}),
            started_at: None,
            exit_code: None,
        };
        Reporter {
            api,
            name: pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            start_time: now(),
            init: containers(pod, "initContainers")
                .iter()
                .map(status)
                .collect(),
            main: containers(pod, "containers").iter().map(status).collect(),
            volumes_ready: false,
            failure: None,
            conditions: HashMap::new(),
        }
    }

    fn slot(&mut self, slot: Slot) -> Option<&mut ContainerStatus> {
        match slot {
            Slot::Init(i) => self.init.get_mut(i),
            Slot::Main(i) => self.main.get_mut(i),
        }
    }

    fn set(&mut self, slot: Slot, state: Run) {
        let Some(c) = self.slot(slot) else {
            return;
        };
        match state {
            Run::Waiting(reason, message) => {
                c.state = json!({"waiting": {"reason": reason, "message": message}});
            }
            Run::Running => {
                let at = now();
                c.state = json!({"running": {"startedAt": at}});
                c.started_at = Some(at);
            }
            Run::Terminated(code, reason) => {
                let finished = now();
                let started = c.started_at.clone().unwrap_or_else(|| finished.clone());
                c.state = json!({"terminated": {"exitCode": code, "reason": reason,
                                                "startedAt": started, "finishedAt": finished}});
                c.exit_code = Some(code.into());
            }
        }
    }

    fn all_waiting(&mut self, reason: &'static str, message: &str) {
        for c in self.init.iter_mut().chain(self.main.iter_mut()) {
            c.state = json!({"waiting": {"reason": reason, "message": message}});
        }
    }

    fn main_waiting(&mut self, reason: &'static str) {
        for c in &mut self.main {
            c.state = json!({"waiting": {"reason": reason}});
        }
    }

    /// Every container not terminated is: killed if running, never started otherwise; the
    /// pod fails for `failure` when given.
    fn stop_all(&mut self, failure: Option<(&'static str, &'static str)>) {
        if failure.is_some() {
            self.failure = failure;
        }
        let finished = now();
        for c in self.init.iter_mut().chain(self.main.iter_mut()) {
            if c.exit_code.is_some() {
                continue;
            }
            let (reason, message) = if c.running() {
                ("Error", None)
            } else {
                (
                    "ContainerStatusUnknown",
                    Some("The container could not be located when the pod was terminated"),
                )
            };
            let started = c.started_at.clone().unwrap_or_else(|| finished.clone());
            c.state = json!({"terminated": {"exitCode": 137, "reason": reason, "message": message,
                                            "startedAt": started, "finishedAt": finished}});
            c.exit_code = Some(137);
        }
    }

    fn initialized(&self) -> bool {
        self.init.iter().all(|c| c.exit_code == Some(0))
    }

    fn phase(&self) -> &'static str {
        if self.failure.is_some()
            || self
                .init
                .iter()
                .any(|c| c.exit_code.is_some_and(|e| e != 0))
        {
            return "Failed";
        }
        if !self.initialized() {
            return "Pending";
        }
        if self.main.iter().all(|c| c.exit_code.is_some()) {
            return if self.main.iter().all(|c| c.exit_code == Some(0)) {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if self.main.iter().any(|c| c.started_at.is_some()) {
            "Running"
        } else {
            "Pending"
        }
    }

    fn terminal(&self) -> bool {
        matches!(self.phase(), "Succeeded" | "Failed")
    }

    fn condition(&mut self, kind: &'static str, status: bool, reason: Option<&str>) -> Value {
        let entry = self
            .conditions
            .entry(kind)
            .or_insert_with(|| (status, now()));
        if entry.0 != status {
            *entry = (status, now());
        }
        let mut c = json!({"type": kind, "status": if status { "True" } else { "False" },
                           "lastTransitionTime": entry.1});
        if let (false, Some(reason)) = (status, reason) {
            c["reason"] = json!(reason);
        }
        c
    }

    /// Writes the status; a pod gone meanwhile has nothing to report to.
    async fn report(&mut self) {
        let phase = self.phase();
        let terminal = self.terminal();
        let ready = !terminal && self.main.iter().all(ContainerStatus::running);
        let not_ready = if terminal {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let initialized = self.initialized();
        let volumes_ready = self.volumes_ready;
        let conditions = vec![
            self.condition("PodReadyToStartContainers", volumes_ready, None),
            self.condition("Initialized", initialized, Some("ContainersNotInitialized")),
            self.condition("Ready", ready, Some(not_ready)),
            self.condition("ContainersReady", ready, Some(not_ready)),
            self.condition("PodScheduled", true, None),
        ];
        let mut status = json!({
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": conditions,
            "containerStatuses": self.main.iter().map(|c| c.to_json(ready)).collect::<Vec<_>>(),
        });
        if !self.init.is_empty() {
            status["initContainerStatuses"] = json!(self
                .init
                .iter()
                .map(|c| c.to_json(true))
                .collect::<Vec<_>>());
        }
        if let Some((reason, message)) = self.failure {
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        let _ = self
            .api
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await;
    }
}

/// Every container's output, by (namespace, pod, container).
#[derive(Default)]
struct Logs(Mutex<HashMap<(String, String, String), Arc<ContainerLog>>>);

impl Logs {
    /// A fresh log for a container that is about to run.
    fn open(&self, ns: &str, pod: &str, uid: &str, container: &str) -> Arc<ContainerLog> {
        let log = Arc::new(ContainerLog {
            uid: uid.to_string(),
            lines: watch::Sender::new(LogLines {
                lines: Vec::new(),
                partial: [Vec::new(), Vec::new()],
                waiting: Some("ContainerCreating".into()),
                done: false,
            }),
        });
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((ns.into(), pod.into(), container.into()), log.clone());
        log
    }

    fn get(&self, ns: &str, pod: &str, container: &str) -> Option<Arc<ContainerLog>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(ns.into(), pod.into(), container.into()))
            .cloned()
    }

    /// Forgets the pod's logs, unless a new pod of that name has taken them over.
    fn remove_pod(&self, ns: &str, pod: &str, uid: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(n, p, _), log| !(n == ns && p == pod && log.uid == uid));
    }
}

struct ContainerLog {
    uid: String,
    lines: watch::Sender<LogLines>,
}

struct LogLines {
    lines: Vec<LogLine>,
    /// An unfinished line per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
    /// Why the container has not started, while it has not.
    waiting: Option<String>,
    /// The container has exited: no more lines.
    done: bool,
}

struct LogLine {
    time: jiff::Timestamp,
    stderr: bool,
    text: String,
}

impl ContainerLog {
    fn waiting(&self, reason: &str) {
        self.lines.send_modify(|l| l.waiting = Some(reason.into()));
    }

    fn started(&self) {
        self.lines.send_modify(|l| l.waiting = None);
    }

    /// Adds output; each complete line is stamped with the time it arrived.
    fn append(&self, stderr: bool, bytes: &[u8]) {
        self.lines.send_modify(|l| {
            let partial = &mut l.partial[usize::from(stderr)];
            partial.extend_from_slice(bytes);
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                l.lines.push(LogLine {
                    time: jiff::Timestamp::now(),
                    stderr,
                    text: String::from_utf8_lossy(&line).into_owned(),
                });
            }
        });
    }

    /// The container exited: unfinished lines are complete as they are.
    fn finish(&self) {
        self.lines.send_modify(|l| {
            for stderr in [false, true] {
                let rest = std::mem::take(&mut l.partial[usize::from(stderr)]);
                if !rest.is_empty() {
                    l.lines.push(LogLine {
                        time: jiff::Timestamp::now(),
                        stderr,
                        text: String::from_utf8_lossy(&rest).into_owned(),
                    });
                }
            }
            l.done = true;
        });
    }
}

/// The query the API server passes on from `pods/log`.
struct LogQuery {
    follow: bool,
    timestamps: bool,
    tail: Option<usize>,
    limit: Option<usize>,
    since: Option<jiff::Timestamp>,
    /// `Some(true)`: stderr only, `Some(false)`: stdout only.
    stderr: Option<bool>,
}

impl LogQuery {
    fn parse(q: &HashMap<String, String>) -> Result<LogQuery, String> {
        let number = |key: &str| -> Result<Option<i64>, String> {
            q.get(key)
                .map(|v| v.parse::<i64>().map_err(|e| format!("{key}: {e}")))
                .transpose()
        };
        let since = match (number("sinceSeconds")?, q.get("sinceTime")) {
            (Some(s), _) => Some(
                jiff::Timestamp::now()
                    .checked_sub(jiff::SignedDuration::from_secs(s))
                    .map_err(|e| e.to_string())?,
            ),
            (None, Some(t)) => Some(t.parse().map_err(|e| format!("sinceTime: {e}"))?),
            (None, None) => None,
        };
        Ok(LogQuery {
            follow: q.get("follow").is_some_and(|v| v == "true"),
            timestamps: q.get("timestamps").is_some_and(|v| v == "true"),
            tail: number("tailLines")?.map(|n| n.max(0) as usize),
            limit: number("limitBytes")?.map(|n| n.max(0) as usize),
            since,
            stderr: match q.get("stream").map(String::as_str) {
                Some("Stdout") => Some(false),
                Some("Stderr") => Some(true),
                _ => None,
            },
        })
    }

    fn selects(&self, line: &LogLine) -> bool {
        self.stderr.is_none_or(|s| s == line.stderr) && self.since.is_none_or(|t| line.time >= t)
    }

    fn format(&self, line: &LogLine) -> String {
        if self.timestamps {
            format!("{} {}", line.time, line.text)
        } else {
            line.text.clone()
        }
    }
}

/// `GET /containerLogs/{namespace}/{pod}/{container}`, as a kubelet serves it.
async fn container_logs(
    State(agent): State<Arc<Agent>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(log) = agent.logs.get(&ns, &pod, &container) else {
        return (
            StatusCode::NOT_FOUND,
            format!("container {container:?} in pod {pod:?} is not on this node"),
        )
            .into_response();
    };
    if query.get("previous").is_some_and(|v| v == "true") {
        return (
            StatusCode::BAD_REQUEST,
            format!("previous terminated container {container:?} in pod {pod:?} not found"),
        )
            .into_response();
    }
    let query = match LogQuery::parse(&query) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let mut receiver = log.lines.subscribe();
    let (first, next) = {
        let lines = receiver.borrow_and_update();
        if let Some(reason) = &lines.waiting {
            let reason = if reason.contains("ImagePull") {
                "trying and failing to pull image"
            } else {
                reason
            };
            return (
                StatusCode::BAD_REQUEST,
                format!("container {container:?} in pod {pod:?} is waiting to start: {reason}"),
            )
                .into_response();
        }
        let selected: Vec<&LogLine> = lines.lines.iter().filter(|l| query.selects(l)).collect();
        let skip = query.tail.map_or(0, |n| selected.len().saturating_sub(n));
        let text: String = selected[skip..].iter().map(|l| query.format(l)).collect();
        (text, lines.lines.len())
    };
    let remaining = query.limit.unwrap_or(usize::MAX);
    let (first, remaining) = truncate(first, remaining);
    let content_type = [(header::CONTENT_TYPE, "text/plain")];
    if !query.follow {
        return (content_type, first).into_response();
    }
    let later = futures::stream::unfold(
        (receiver, next, remaining, query),
        |(mut receiver, mut next, mut remaining, query)| async move {
            loop {
                if remaining == 0 {
                    return None;
                }
                let (text, done) = {
                    let lines = receiver.borrow_and_update();
                    let text: String = lines.lines[next..]
                        .iter()
                        .filter(|l| query.selects(l))
                        .map(|l| query.format(l))
                        .collect();
                    next = lines.lines.len();
                    (text, lines.done)
                };
                if !text.is_empty() {
                    let (text, left) = truncate(text, remaining);
                    remaining = left;
                    return Some((Bytes::from(text), (receiver, next, remaining, query)));
                }
                // Done, or the pod was deleted and its log dropped.
                if done || receiver.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    let body = futures::stream::once(async move { Bytes::from(first) })
        .chain(later)
        .filter(|b| std::future::ready(!b.is_empty()))
        .map(Ok::<_, std::convert::Infallible>);
    (content_type, Body::from_stream(body)).into_response()
}

/// At most `limit` bytes of `text`, and what is left of the limit.
fn truncate(mut text: String, limit: usize) -> (String, usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        return (text, 0);
    }
    let left = limit - text.len();
    (text, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_paths_under_mounts_only() {
        let mounts = vec![("/var/run/secrets/eks".to_string(), PathBuf::from("/tmp/x"))];
        assert_eq!(remap("/var/run/secrets/eks/token", &mounts), "/tmp/x/token");
        assert_eq!(
            remap("/var/run/secrets/eksy", &mounts),
            "/var/run/secrets/eksy"
        );
        assert_eq!(remap("plain", &mounts), "plain");
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), ("h".to_string(), 0));
        assert_eq!(truncate("abc".into(), 5), ("abc".to_string(), 2));
    }

    #[test]
    fn refuses_escaping_paths() {
        assert!(safe_join(Path::new("/d"), "../x").is_err());
        assert!(safe_join(Path::new("/d"), "/x").is_err());
        assert_eq!(
            safe_join(Path::new("/d"), "a/b").unwrap(),
            PathBuf::from("/d/a/b")
        );
    }
}
