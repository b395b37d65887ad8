//! The pod's status as the agent reports it through `pods/status`.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

use super::{containers, now};

/// Which container a state is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    Init(usize),
    Main(usize),
}

/// A container's state, to report.
pub(super) enum Run {
    Waiting(&'static str, String),
    Running,
    Terminated(i32, &'static str),
}

impl Run {
    pub(super) fn exited(code: i32) -> Run {
        Run::Terminated(code, if code == 0 { "Completed" } else { "Error" })
    }
}

struct ContainerStatus {
    name: Value,
    image: Value,
    state: Value,
    started_at: Option<String>,
    exit_code: Option<i64>,
    /// Whether its readiness probe passes (true when it has none).
    probe_ready: bool,
    restarts: u32,
    /// The state before the last restart.
    last_state: Option<Value>,
}

impl ContainerStatus {
    fn running(&self) -> bool {
        self.state.get("running").is_some()
    }

    fn ready(&self) -> bool {
        self.running() && self.probe_ready
    }

    fn to_json(&self, pod_ready: bool) -> Value {
        let mut status = json!({
            "name": self.name, "image": self.image, "imageID": "",
            "ready": pod_ready && self.ready(), "started": self.running(),
            "restartCount": self.restarts, "state": self.state,
        });
        if let Some(last) = &self.last_state {
            status["lastState"] = last.clone();
        }
        status
    }
}

/// The pod's status as the agent knows it, written with a merge patch on `pods/status` (whole
/// lists, so one container's states never merge with another's).
pub(super) struct Reporter {
    api: Api<Pod>,
    name: String,
    pod_ip: String,
    start_time: String,
    init: Vec<ContainerStatus>,
    main: Vec<ContainerStatus>,
    pub(super) volumes_ready: bool,
    /// A reason the pod failed whatever its containers did (`DeadlineExceeded`).
    failure: Option<(&'static str, &'static str)>,
    /// Condition type → (status, lastTransitionTime).
    conditions: HashMap<&'static str, (bool, String)>,
}

impl Reporter {
    pub(super) fn new(api: Api<Pod>, pod: &Value, pod_ip: &str) -> Reporter {
        let status = |c: &Value| ContainerStatus {
            name: c["name"].clone(),
            image: c["image"].clone(),
            state: json!({"waiting": {"reason": "ContainerCreating"}}),
            started_at: None,
            exit_code: None,
            probe_ready: c["readinessProbe"].is_null(),
            restarts: 0,
            last_state: None,
        };
        Reporter {
            api,
            name: pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            pod_ip: pod_ip.to_string(),
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

    /// Records what the container's readiness probe says; whether that changed anything.
    pub(super) fn set_probe_ready(&mut self, slot: Slot, ready: bool) -> bool {
        let Some(c) = self.slot(slot) else {
            return false;
        };
        let changed = c.probe_ready != ready;
        c.probe_ready = ready;
        changed
    }

    /// The container is about to start again: its last run becomes `lastState`.
    pub(super) fn restarting(&mut self, slot: Slot, message: &str) {
        let Some(c) = self.slot(slot) else {
            return;
        };
        c.restarts += 1;
        c.last_state = Some(c.state.clone());
        c.state = json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}});
        c.exit_code = None;
        c.probe_ready = false;
    }

    pub(super) fn set(&mut self, slot: Slot, state: Run) {
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

    pub(super) fn all_waiting(&mut self, reason: &'static str, message: &str) {
        for c in self.init.iter_mut().chain(self.main.iter_mut()) {
            c.state = json!({"waiting": {"reason": reason, "message": message}});
        }
    }

    pub(super) fn main_waiting(&mut self, reason: &'static str) {
        for c in &mut self.main {
            c.state = json!({"waiting": {"reason": reason}});
        }
    }

    /// Every container not terminated is: killed if running, never started otherwise; the
    /// pod fails for `failure` when given.
    pub(super) fn stop_all(&mut self, failure: Option<(&'static str, &'static str)>) {
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

    pub(super) fn terminal(&self) -> bool {
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
    pub(super) async fn report(&mut self) {
        let phase = self.phase();
        let terminal = self.terminal();
        let ready = !terminal && self.main.iter().all(ContainerStatus::ready);
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
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
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
