//! Kubelet emulation: pods move Pending → Running → Succeeded/Failed with container statuses.
//! A pod runs either as a local process (its command, its env, its projected token written to a
//! temp file) or as a script the test states (image pull failure, given log and exit code, hang).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use crate::server::SimState;
use crate::store::{now, ChangeType, Part};

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

/// Chooses a script for a pod; `None` runs it as a local process.
pub type ScriptFn = Arc<dyn Fn(&Value) -> Option<Script> + Send + Sync>;

/// How the kubelet runs pods.
#[derive(Clone, Default)]
pub struct KubeletOptions {
    /// Extra environment for local processes (e.g. `AWS_ENDPOINT_URL` of a local AWS emulator).
    pub extra_env: Vec<(String, String)>,
    /// Scripted outcomes, by pod.
    pub script: Option<ScriptFn>,
}

/// Starts the kubelet: every pod created from now on is run.
pub fn spawn(sim: Arc<SimState>, options: KubeletOptions) -> JoinHandle<()> {
    let mut changes = sim.store.subscribe();
    tokio::spawn(async move {
        let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
        while let Ok(c) = changes.recv().await {
            if c.storage != (String::new(), "pods".to_string()) {
                continue;
            }
            let uid = c.object["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match c.change {
                ChangeType::Added => {
                    let task =
                        tokio::spawn(run_pod(sim.clone(), (*c.object).clone(), options.clone()));
                    running.insert(uid, task);
                }
                // Deleting a pod stops its containers (the process is killed on drop).
                ChangeType::Deleted => {
                    if let Some(task) = running.remove(&uid) {
                        task.abort();
                    }
                }
                ChangeType::Modified => {}
            }
            running.retain(|_, t| !t.is_finished());
        }
        for (_, t) in running {
            t.abort();
        }
    })
}

fn container_status(pod: &Value, state: Value, ready: bool) -> Value {
    let c = &pod["spec"]["containers"][0];
    json!([{"name": c["name"], "image": c["image"], "imageID": "", "ready": ready, "started": ready,
            "restartCount": 0, "state": state}])
}

fn set_status(sim: &SimState, pod: &Value, status: Value) {
    let Some(rt) = sim.resource("", "v1", "pods") else {
        return;
    };
    let ns = pod["metadata"]["namespace"].as_str();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let mut update = pod.clone();
    update["status"] = status;
    update["metadata"]["resourceVersion"] = json!("");
    // The pod may be gone already; a kubelet then has nothing to report.
    let _ = sim.store.update(&rt, ns, name, update, Part::Status);
}

fn terminated(sim: &SimState, pod: &Value, code: i32, reason: &str, log: String) {
    let key = (
        pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    );
    sim.logs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, log);
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let state = json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": now(), "finishedAt": now()}});
    set_status(
        sim,
        pod,
        json!({"phase": phase, "startTime": now(), "containerStatuses": container_status(pod, state, false)}),
    );
}

fn running(sim: &SimState, pod: &Value) {
    let state = json!({"running": {"startedAt": now()}});
    set_status(
        sim,
        pod,
        json!({"phase": "Running", "startTime": now(), "containerStatuses": container_status(pod, state, true)}),
    );
}

fn deadline(pod: &Value) -> Option<Duration> {
    pod["spec"]["activeDeadlineSeconds"]
        .as_u64()
        .map(Duration::from_secs)
}

fn deadline_exceeded(sim: &SimState, pod: &Value) {
    set_status(
        sim,
        pod,
        json!({"phase": "Failed", "reason": "DeadlineExceeded",
               "message": "Pod was active on the node longer than the specified deadline"}),
    );
}

async fn run_pod(sim: Arc<SimState>, pod: Value, options: KubeletOptions) {
    set_status(&sim, &pod, json!({"phase": "Pending"}));
    let script = options.script.as_ref().and_then(|f| f(&pod));
    let limit = deadline(&pod).unwrap_or(Duration::from_secs(3600 * 24));
    match script {
        Some(Script::ImagePullFailure) => {
            let image = pod["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            for reason in ["ErrImagePull", "ImagePullBackOff"] {
                let waiting = json!({"waiting": {"reason": reason,
                    "message": format!("Back-off pulling image \"{image}\": failed to pull and unpack image")}});
                set_status(
                    &sim,
                    &pod,
                    json!({"phase": "Pending", "containerStatuses": container_status(&pod, waiting, false)}),
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Some(Script::Hang) => {
            running(&sim, &pod);
            tokio::time::sleep(limit).await;
            deadline_exceeded(&sim, &pod);
        }
        Some(Script::Exit { log, code, after }) => {
            running(&sim, &pod);
            if after > limit {
                tokio::time::sleep(limit).await;
                return deadline_exceeded(&sim, &pod);
            }
            tokio::time::sleep(after).await;
            terminated(
                &sim,
                &pod,
                code,
                if code == 0 { "Completed" } else { "Error" },
                log,
            );
        }
        None => run_local(&sim, &pod, &options, limit).await,
    }
}

/// Where the pod's mounts live on this machine: mount path → local directory.
fn prepare_mounts(
    sim: &SimState,
    pod: &Value,
    root: &Path,
) -> std::io::Result<Vec<(String, String)>> {
    let container = &pod["spec"]["containers"][0];
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let sa = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    let mut mounts = Vec::new();
    for (i, m) in container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (Some(name), Some(path)) = (m["name"].as_str(), m["mountPath"].as_str()) else {
            continue;
        };
        let dir = root.join(format!("mount-{i}"));
        std::fs::create_dir_all(&dir)?;
        let volume = volumes.iter().find(|v| v["name"] == name);
        for source in volume
            .and_then(|v| v["projected"]["sources"].as_array())
            .into_iter()
            .flatten()
        {
            let token = &source["serviceAccountToken"];
            if token.is_object() {
                let audience = token["audience"]
                    .as_str()
                    .unwrap_or("https://kubernetes.default.svc")
                    .to_string();
                let expiration = token["expirationSeconds"].as_i64().unwrap_or(3600);
                let jwt = sim.tokens.sign(ns, sa, &[audience], expiration);
                std::fs::write(dir.join(token["path"].as_str().unwrap_or("token")), jwt)?;
            }
        }
        mounts.push((
            path.trim_end_matches('/').to_string(),
            dir.display().to_string(),
        ));
    }
    Ok(mounts)
}

/// Rewrites an env value that points into a mount so it points at the local directory.
fn remap(value: &str, mounts: &[(String, String)]) -> String {
    mounts
        .iter()
        .find_map(|(path, local)| {
            value
                .strip_prefix(path.as_str())
                .map(|rest| format!("{local}{rest}"))
        })
        .unwrap_or_else(|| value.to_string())
}

async fn run_local(sim: &SimState, pod: &Value, options: &KubeletOptions, limit: Duration) {
    let container = &pod["spec"]["containers"][0];
    let argv: Vec<String> = container["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(container["args"].as_array().into_iter().flatten())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let Some((program, args)) = argv.split_first() else {
        return terminated(
            sim,
            pod,
            127,
            "Error",
            "kube-sim: the local runtime needs the container's command".into(),
        );
    };
    let Ok(root) = tempfile::tempdir() else {
        return terminated(
            sim,
            pod,
            126,
            "Error",
            "kube-sim: cannot create a temp dir".into(),
        );
    };
    let mounts = match prepare_mounts(sim, pod, root.path()) {
        Ok(m) => m,
        Err(e) => {
            return terminated(
                sim,
                pod,
                126,
                "Error",
                format!("kube-sim: cannot prepare mounts: {e}"),
            )
        }
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", root.path())
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for e in container["env"].as_array().into_iter().flatten() {
        if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
            cmd.env(k, remap(v, &mounts));
        }
    }
    for (k, v) in &options.extra_env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return terminated(
                sim,
                pod,
                127,
                "Error",
                format!("kube-sim: cannot run {program:?}: {e}"),
            )
        }
    };
    running(sim, pod);
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let collect = async {
        let read = |pipe: Option<tokio::process::ChildStdout>| async move {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text).await;
            }
            text
        };
        let read_err = |pipe: Option<tokio::process::ChildStderr>| async move {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text).await;
            }
            text
        };
        // Both pipes at once, so a chatty stderr cannot block stdout.
        let (o, e) = tokio::join!(read(out.take()), read_err(err.take()));
        let status = child.wait().await;
        (status, format!("{o}{e}"))
    };
    match tokio::time::timeout(limit, collect).await {
        Ok((Ok(status), log)) => {
            let code = status.code().unwrap_or(137);
            terminated(
                sim,
                pod,
                code,
                if code == 0 { "Completed" } else { "Error" },
                log,
            );
        }
        Ok((Err(e), log)) => terminated(
            sim,
            pod,
            137,
            "Error",
            format!("{log}kube-sim: wait failed: {e}"),
        ),
        Err(_) => deadline_exceeded(sim, pod),
    }
}
