//! One container as a local process: what it runs (its command, or the binary its image maps
//! to), its environment as a kubelet builds it, and its end — its own exit, a stop (SIGTERM,
//! then SIGKILL after the grace period), or a failed liveness probe.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncReadExt as _;
use tokio::sync::watch;

use super::logs::ContainerLog;
use super::{Lifecycle, PodRun};

/// Where the in-cluster files are mounted in every container that has them.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

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

/// Rewrites a value that points into a mount so it points at the local directory.
fn remap(value: &str, mounts: &[(String, PathBuf)]) -> String {
    mounts
        .iter()
        .find_map(|(path, local)| {
            let rest = value.strip_prefix(path.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", local.display()))
        })
        .unwrap_or_else(|| value.to_string())
}

/// `$(VAR)` references expanded as a kubelet expands them in `command`, `args` and `env`: a
/// defined variable is replaced, `$$` is a literal `$`, and an undefined one stays as written.
fn expand(text: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after
            .strip_prefix('(')
            .and_then(|inner| inner.split_once(')'))
        {
            match vars.iter().rev().find(|(k, _)| k == name) {
                Some((_, value)) => out.push_str(value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A `fieldRef` of the downward API, for the fields a kubelet resolves in `env`.
fn field(run: &PodRun<'_>, path: &str) -> Option<String> {
    let pod = run.pod;
    let text = |v: &Value| v.as_str().map(str::to_string);
    match path {
        "metadata.name" => text(&pod["metadata"]["name"]),
        "metadata.namespace" => text(&pod["metadata"]["namespace"]),
        "metadata.uid" => text(&pod["metadata"]["uid"]),
        "spec.nodeName" => text(&pod["spec"]["nodeName"]),
        "spec.serviceAccountName" => text(&pod["spec"]["serviceAccountName"]),
        "status.podIP" => Some(run.pod_ip.clone()),
        "status.hostIP" => Some("127.0.0.1".to_string()),
        _ => None,
    }
}

/// The container's environment, in the order a kubelet builds it; the notes say what could not
/// be resolved here (for the container's log).
fn environment(
    run: &PodRun<'_>,
    container: &Value,
    mounts: &[(String, PathBuf)],
) -> (Vec<(String, String)>, Vec<String>) {
    let (host, port) = api_host_port(&run.agent.api_url);
    let mut vars = vec![
        ("KUBERNETES_SERVICE_HOST".to_string(), host),
        ("KUBERNETES_SERVICE_PORT".to_string(), port),
    ];
    let mut notes = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let Some(name) = e["name"].as_str() else {
            continue;
        };
        let value = if let Some(value) = e["value"].as_str() {
            Some(expand(value, &vars))
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            field(run, path)
        } else if e["valueFrom"].is_object() {
            notes.push(format!(
                "{name}: only literal values and fieldRefs are resolved"
            ));
            None
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            vars.push((name.to_string(), remap(&value, mounts)));
        }
    }
    (vars, notes)
}

fn api_host_port(url: &str) -> (String, String) {
    let authority = url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.to_string()),
        None => (authority.to_string(), "443".to_string()),
    }
}

/// A kubeconfig from the pod's own in-cluster files (its projected token, refreshed in place,
/// and the cluster's CA), for a container that mounts them: what the client reads where it
/// would read the fixed in-cluster paths on a node.
fn in_cluster_kubeconfig(run: &PodRun<'_>, mounts: &[(String, PathBuf)]) -> Option<PathBuf> {
    let (_, dir) = mounts
        .iter()
        .find(|(path, _)| path == SERVICE_ACCOUNT_DIR)?;
    let namespace = run.pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": {
            "server": run.agent.api_url,
            "certificate-authority": dir.join("ca.crt"),
        }}],
        "users": [{"name": "service-account", "user": {"tokenFile": dir.join("token")}}],
        "contexts": [{"name": "in-cluster", "context": {
            "cluster": "in-cluster", "user": "service-account", "namespace": namespace,
        }}],
        "current-context": "in-cluster",
    });
    let path = run.root.join(format!(
        "kubeconfig-{}",
        run.pod["metadata"]["uid"].as_str().unwrap_or("pod")
    ));
    std::fs::write(&path, serde_json::to_vec(&config).ok()?).ok()?;
    Some(path)
}

/// The program and its arguments: `command` + `args`, or the binary the image maps to + `args`.
fn argv(run: &PodRun<'_>, container: &Value, vars: &[(String, String)]) -> Option<Vec<String>> {
    let list = |key: &str| -> Vec<String> {
        container[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| expand(s, vars))
            .collect()
    };
    let command = list("command");
    let args = list("args");
    if !command.is_empty() {
        return Some(command.into_iter().chain(args).collect());
    }
    let image = container["image"].as_str().unwrap_or_default();
    let repository = image.split('@').next().unwrap_or_default();
    let repository = match repository.rsplit_once(':') {
        // A colon after the last slash is a tag; before it, a registry's port.
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => repository,
    };
    let (_, binary) = run
        .agent
        .options
        .images
        .iter()
        .find(|(mapped, _)| mapped == repository)?;
    Some(
        std::iter::once(binary.display().to_string())
            .chain(args)
            .collect(),
    )
}

/// How a run ended, besides its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// The process exited by itself.
    Exited,
    /// The pod is stopping.
    Stopped,
    /// Its liveness probe failed: it was killed, to be restarted.
    Unhealthy,
}

/// Runs the container as a local process until it exits, the pod stops (SIGTERM, SIGKILL after
/// the grace period; at once when the pod is gone), or `unhealthy` completes (SIGKILL); its exit
/// code (137 when killed by a signal).
pub(super) async fn run_process(
    run: &PodRun<'_>,
    container: &Value,
    log: &ContainerLog,
    stop: &mut watch::Receiver<Lifecycle>,
    unhealthy: impl Future<Output = ()>,
) -> (i32, Ended) {
    let fail = |code: i32, message: String| {
        log.started();
        log.append(true, format!("node-agent: {message}\n").as_bytes());
        log.finish();
        (code, Ended::Exited)
    };
    let mounts = mount_dirs(container, &run.volumes);
    let (mut vars, notes) = environment(run, container, &mounts);
    let Some(argv) = argv(run, container, &vars) else {
        return fail(
            127,
            "the local runtime needs the container's command (or an image it maps to a binary)"
                .into(),
        );
    };
    let home = run
        .root
        .join("home")
        .join(container["name"].as_str().unwrap_or("container"));
    if let Err(e) = std::fs::create_dir_all(&home) {
        return fail(126, format!("cannot create HOME: {e}"));
    }
    if let Some(kubeconfig) = in_cluster_kubeconfig(run, &mounts) {
        vars.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
    }
    let (program, args) = argv.split_first().expect("argv is never empty");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .envs(vars)
        .envs(run.agent.options.extra_env.iter().cloned())
        .process_group(0)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(127, format!("cannot run {program:?}: {e}")),
    };
    log.started();
    for note in notes {
        log.append(true, format!("node-agent: {note}\n").as_bytes());
    }
    // The whole group dies with the container's main process, or with this future.
    let group = child.id().map(ProcessGroup);
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
    let finished = async {
        let (status, _, _) = tokio::join!(
            child.wait(),
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
        status.ok().and_then(|s| s.code()).unwrap_or(137)
    };
    let mut finished = std::pin::pin!(finished);
    let ended = tokio::select! {
        code = &mut finished => (code, Ended::Exited),
        end = super::stopping(stop) => {
            if let (Some(group), false) = (&group, end == Lifecycle::Gone) {
                group.signal("TERM");
                match tokio::time::timeout(run.grace, &mut finished).await {
                    Ok(code) => (code, Ended::Stopped),
                    Err(_) => (137, Ended::Stopped),
                }
            } else {
                (137, Ended::Stopped)
            }
        }
        () = unhealthy => (137, Ended::Unhealthy),
    };
    drop(group);
    log.finish();
    ended
}

/// A container's process group, killed on drop.
struct ProcessGroup(u32);

impl ProcessGroup {
    /// Sends `signal` to every process of the group. No signal API without `unsafe`: procps'
    /// kill does it. A group already gone is fine.
    fn signal(&self, signal: &str) {
        let _ = std::process::Command::new("kill")
            .args(["-s", signal, "--", &format!("-{}", self.0)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal("KILL");
    }
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
    fn expands_variables_as_a_kubelet_does() {
        let vars = vec![
            ("POD_IP".to_string(), "127.0.0.7".to_string()),
            ("PORT".to_string(), "8080".to_string()),
        ];
        assert_eq!(
            expand("--metrics-addr=$(POD_IP):$(PORT)", &vars),
            "--metrics-addr=127.0.0.7:8080"
        );
        assert_eq!(
            expand("$$(POD_IP) $(NOPE) $x $", &vars),
            "$(POD_IP) $(NOPE) $x $"
        );
        assert_eq!(
            api_host_port("https://127.0.0.1:6443"),
            ("127.0.0.1".to_string(), "6443".to_string())
        );
    }
}
