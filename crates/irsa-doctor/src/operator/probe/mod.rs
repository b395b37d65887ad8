//! The probe: a pod that assumes the role for real, run, observed and deleted. Image and
//! command come from the operator's configuration only, never from the custom resource.
//!
//! Only pods the operator created are ever deleted: a pod must carry every mark of a probe pod
//! ([`probe_pod_owner`]), and every delete has a uid precondition, so a pod that took the name
//! in the meantime is never the one deleted.

mod pod;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use irsa_core::probe::{ProbeObservation, ProbeResult};
use irsa_core::text::escape_untrusted;
use irsa_core::{Fact, Reason, Unavailable};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, Preconditions};
use kube::runtime::wait::await_condition;
use kube::ResourceExt;
use tokio::sync::Semaphore;

pub use pod::{injection, probe_pod, ProbeConfig, CONTAINER};

use super::watch_namespace::WatchNamespace;
use crate::api::{probe_pod_name, probe_pod_owner, IrsaCheck, PROBE_LABEL};
use crate::gather::admission::Admission;

/// (namespace, pod name).
type PodKey = (String, String);

/// Runs probes within a global bound and remembers which pods are in flight.
pub struct Prober {
    client: kube::Client,
    config: ProbeConfig,
    permits: Semaphore,
    /// Probe pods of running probes, with the uid of the IrsaCheck each runs for.
    in_flight: Mutex<HashMap<PodKey, String>>,
    /// The uids of the probe pods created and not yet deleted: the only pods the workload audit
    /// leaves out.
    live: Mutex<HashSet<String>>,
    /// Whether a probe pod may have been left behind since the last orphan sweep: at start-up
    /// (a predecessor may have crashed), and once a probe has started.
    unswept: AtomicBool,
    admission: Arc<Admission>,
}

fn not_run(what: &str, e: impl std::fmt::Display) -> Fact<ProbeObservation> {
    Fact::Unavailable(Unavailable {
        reason: Reason::ProbeNotRun,
        detail: format!("{what}: {e}"),
    })
}

fn image_pull_failure(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            matches!(
                reason,
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
            )
            .then(|| format!("{reason}: {}", waiting.message.clone().unwrap_or_default()))
        })
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The probe's log is the CLI's answer (a few hundred bytes) or its error; anything longer is
/// cut by the API server, so a probe cannot make the operator read megabytes.
pub const MAX_LOG_BYTES: i64 = 16 * 1024;

/// How the probe container's log is read.
fn log_params() -> LogParams {
    LogParams {
        container: Some(CONTAINER.into()),
        limit_bytes: Some(MAX_LOG_BYTES),
        ..LogParams::default()
    }
}

/// The one pod named `name` in `api`'s namespace, by a list (the operator's RBAC has no `get`).
async fn find(api: &Api<Pod>, name: &str) -> Result<Option<Pod>, kube::Error> {
    let params = ListParams::default().fields(&format!("metadata.name={name}"));
    Ok(api.list(&params).await?.items.into_iter().next())
}

impl Prober {
    /// A prober with the operator's probe configuration, telling why a pod was not mutated
    /// through `admission`.
    pub fn new(client: kube::Client, config: ProbeConfig, admission: Arc<Admission>) -> Prober {
        Prober {
            permits: Semaphore::new(config.max_concurrent.max(1)),
            config,
            in_flight: Mutex::new(HashMap::new()),
            live: Mutex::new(HashSet::new()),
            unswept: AtomicBool::new(true),
            admission,
            client,
        }
    }

    /// The webhook's registrations and namespaces' labels, shared with the workload audit.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The uids of the probe pods running now, which the workload audit leaves out.
    pub fn live_probe_pods(&self) -> HashSet<String> {
        self.live().clone()
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<PodKey, String>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the probe of one IrsaCheck and deletes its pod, whatever happened.
    pub async fn run(&self, check: &IrsaCheck, timeout: Duration) -> Fact<ProbeObservation> {
        let Ok(_permit) = self.permits.acquire().await else {
            return not_run("probe", "the prober is shutting down");
        };
        // Objects read from the API server always have one; the probe pod is labelled with it.
        let Some(check_uid) = check.uid() else {
            return not_run("probe", "the IrsaCheck has no metadata.uid");
        };
        let namespace = check.namespace().unwrap_or_default();
        let name = probe_pod_name(&check.name_any());
        let key = (namespace.clone(), name.clone());
        self.in_flight().insert(key.clone(), check_uid.clone());
        self.unswept.store(true, Ordering::SeqCst);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        // Boxed: the future nests deep inside the controller's, beyond what rustc lays out.
        let observation = Box::pin(self.create_and_observe(&api, check, &check_uid, timeout)).await;
        self.in_flight().remove(&key);
        observation
    }

    async fn create_and_observe(
        &self,
        api: &Api<Pod>,
        check: &IrsaCheck,
        check_uid: &str,
        timeout: Duration,
    ) -> Fact<ProbeObservation> {
        let pod = probe_pod(check, &self.config, timeout);
        let name = pod.name_any();
        // A pod left by an earlier run (crash, failed delete) goes first: one probe per check.
        if let Err(refused) = self.make_room(api, &name, check_uid).await {
            return refused;
        }
        let created = match api.create(&PostParams::default(), &pod).await {
            Ok(p) => p,
            Err(e) => {
                // The pod may exist although the request failed (a timeout after the write).
                self.delete_if_ours(api, &name, check_uid).await;
                return not_run(&format!("creating probe pod {name}"), e);
            }
        };
        let uid = created.uid();
        if let Some(uid) = &uid {
            self.live().insert(uid.clone());
        }
        let observation = self.observe(api, &created, timeout).await;
        if let Some(uid) = &uid {
            self.delete(api, &name, uid).await;
            self.live().remove(uid);
        }
        observation
    }

    /// Removes this check's earlier probe pod, if one is left. A pod of the probe's name that
    /// is not this check's probe pod is left alone, and the probe does not run.
    async fn make_room(
        &self,
        api: &Api<Pod>,
        name: &str,
        check_uid: &str,
    ) -> Result<(), Fact<ProbeObservation>> {
        let namespace = api.namespace().unwrap_or_default();
        let existing = find(api, name).await.map_err(|e| {
            not_run(
                &format!("looking for an earlier probe pod {namespace}/{name}"),
                e,
            )
        })?;
        let Some(existing) = existing else {
            return Ok(());
        };
        let (why, fix) = match probe_pod_owner(&existing.metadata) {
            Ok(owner) if owner.uid == check_uid => {
                if let Some(uid) = existing.uid() {
                    self.delete(api, name, &uid).await;
                }
                return Ok(());
            }
            Ok(owner) => (
                format!(
                    "it is the probe pod of an earlier IrsaCheck of this name, uid {}",
                    owner.uid
                ),
                "the garbage collector or the operator's orphan sweep removes it, and the next \
                 run probes",
            ),
            Err(not_ours) => (
                not_ours.to_string(),
                "delete that pod, or give the IrsaCheck another name",
            ),
        };
        tracing::warn!(
            namespace,
            pod = name,
            // The reason quotes the pod's ownerReference, which its creator wrote.
            why = %escape_untrusted(&why),
            "a pod has the probe pod's name but is not this IrsaCheck's; it was left alone"
        );
        Err(Fact::Unavailable(Unavailable {
            reason: Reason::ProbeNotRun,
            detail: format!(
                "pod {namespace}/{name} exists and is not this IrsaCheck's probe pod ({why}); \
                 irsa-doctor deletes only pods it created, so it left that pod alone: {fix}"
            ),
        }))
    }

    /// Follows the created probe pod to its outcome.
    async fn observe(
        &self,
        api: &Api<Pod>,
        created: &Pod,
        timeout: Duration,
    ) -> Fact<ProbeObservation> {
        let name = created.name_any();
        let created_uid = created.uid();
        let injection = injection(created);
        let webhook_configured = self.webhook_configured().await;
        // The deadline is enforced by the kubelet (activeDeadlineSeconds); the extra time covers
        // scheduling and status propagation. A pod of the same name but another uid is not the
        // probe: whoever may delete and create pods in the namespace could have put it there.
        let uid = created_uid.clone();
        let wait = await_condition(api.clone(), &name, move |pod: Option<&Pod>| {
            pod.is_none_or(|p| p.uid() != uid || finished(p) || image_pull_failure(p).is_some())
        });
        let pod = match tokio::time::timeout(timeout + Duration::from_secs(15), wait).await {
            Err(_) => {
                return Fact::Known(ProbeObservation {
                    injection,
                    webhook_configured,
                    result: ProbeResult::TimedOut(format!(
                        "the probe pod did not finish within {}s",
                        timeout.as_secs()
                    )),
                })
            }
            Ok(Err(e)) => return not_run(&format!("watching probe pod {name}"), e),
            Ok(Ok(None)) => {
                return not_run(&format!("probe pod {name}"), "deleted before it finished")
            }
            Ok(Ok(Some(pod))) if pod.uid() != created_uid => {
                return not_run(
                    &format!("probe pod {name}"),
                    "replaced by another pod of that name before it finished",
                )
            }
            Ok(Ok(Some(pod))) => pod,
        };
        let status = pod.status.clone().unwrap_or_default();
        let result = if let Some(detail) = image_pull_failure(&pod) {
            ProbeResult::ImagePullFailed(detail)
        } else if status.reason.as_deref() == Some("DeadlineExceeded") {
            ProbeResult::TimedOut(format!(
                "the probe pod exceeded its deadline of {}s",
                timeout.as_secs()
            ))
        } else {
            let code = status
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code))
                .unwrap_or(-1);
            match api.logs(&name, &log_params()).await {
                // The log is read by name: it is the probe's only if the pod of that name is
                // still the one created.
                Ok(_)
                    if find(api, &name).await.ok().flatten().and_then(|p| p.uid())
                        != created_uid =>
                {
                    return not_run(
                        &format!("probe pod {name}"),
                        "replaced by another pod of that name while its log was read",
                    )
                }
                Ok(output) => ProbeResult::Exited { code, output },
                Err(e) => return not_run(&format!("reading the log of probe pod {name}"), e),
            }
        };
        Fact::Known(ProbeObservation {
            injection,
            webhook_configured,
            result,
        })
    }

    /// Whether a pod identity webhook is registered; `None` when that cannot be told.
    async fn webhook_configured(&self) -> Option<bool> {
        Some(!self.admission.webhooks().await?.is_empty())
    }

    /// Deletes the probe pod `name` if it is still the pod `uid`: retried a few times, then
    /// left to the orphan sweep. Whether this call deleted it.
    async fn delete(&self, api: &Api<Pod>, name: &str, uid: &str) -> bool {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        for attempt in 0..3u32 {
            match api.delete(name, &params).await {
                Ok(_) => return true,
                // Gone, or (409: the uid precondition failed) the name is another pod's now.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return false,
                Err(e) => {
                    tracing::debug!(pod = name, error = %e, "deleting the probe pod failed");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
                }
            }
        }
        tracing::warn!(
            pod = name,
            "could not delete the probe pod; the orphan sweep will"
        );
        false
    }

    /// Deletes the pod `name` if it is the probe pod of the IrsaCheck `check_uid`.
    async fn delete_if_ours(&self, api: &Api<Pod>, name: &str, check_uid: &str) {
        let Ok(Some(pod)) = find(api, name).await else {
            return;
        };
        if probe_pod_owner(&pod.metadata).is_ok_and(|owner| owner.uid == check_uid) {
            if let Some(uid) = pod.uid() {
                self.delete(api, name, &uid).await;
            }
        }
    }

    /// Deletes every probe pod still in flight (at shutdown: their runs are abandoned).
    pub async fn delete_in_flight(&self) {
        let pods: Vec<(PodKey, String)> = self
            .in_flight()
            .iter()
            .map(|(k, uid)| (k.clone(), uid.clone()))
            .collect();
        for ((namespace, name), check_uid) in pods {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            self.delete_if_ours(&api, &name, &check_uid).await;
        }
    }

    /// Removes probe pods that no running probe owns (left by a crash or a failed delete).
    /// Returns how many it deleted.
    ///
    /// A pod is removed only when it carries every mark of a probe pod ([`probe_pod_owner`]):
    /// whether its IrsaCheck still exists or not, it is then a pod the operator created, and no
    /// run needs it unless one is in flight for that IrsaCheck. A pod that merely carries the
    /// label (a user's, or another tool's) is never touched.
    ///
    /// Only the leader creates probe pods, so when no probe started since the last sweep there
    /// is nothing new to find, and the list (one more pod list per sweep) is skipped.
    pub async fn sweep_orphans(&self, namespaces: &[WatchNamespace]) -> usize {
        if !self.unswept.swap(false, Ordering::SeqCst) {
            return 0;
        }
        let mut deleted = 0;
        for ns in namespaces {
            let api: Api<Pod> = ns.api(&self.client);
            let Ok(pods) = api
                .list_metadata(&ListParams::default().labels(&format!("{PROBE_LABEL}=true")))
                .await
            else {
                self.unswept.store(true, Ordering::SeqCst);
                continue;
            };
            for pod in pods.items {
                let (pod_ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
                let owner = match probe_pod_owner(&pod.metadata) {
                    Ok(owner) => owner,
                    Err(not_ours) => {
                        let why = not_ours.to_string();
                        tracing::debug!(
                            namespace = pod_ns,
                            pod = name,
                            // Quotes the pod's ownerReference, which its creator wrote.
                            why = %escape_untrusted(&why),
                            "not a probe pod; left alone"
                        );
                        continue;
                    }
                };
                let running = self
                    .in_flight()
                    .get(&(pod_ns.clone(), name.clone()))
                    .is_some_and(|check_uid| *check_uid == owner.uid);
                let Some(uid) = pod.uid().filter(|_| !running) else {
                    continue;
                };
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod_ns);
                if self.delete(&api, &name, &uid).await {
                    deleted += 1;
                } else {
                    self.unswept.store(true, Ordering::SeqCst);
                }
            }
        }
        // A probe still running may yet leave its pod: look again next time.
        if !self.in_flight().is_empty() {
            self.unswept.store(true, Ordering::SeqCst);
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use super::pod::tests::{check, config};
    use super::*;
    use control_plane::faults::FaultProxy;
    use control_plane::node::{KubeletOptions, NodeAgent, Script, ScriptFn};
    use control_plane::ControlPlane;
    use kube::api::ListParams;
    use serde_json::json;

    /// The orphan sweep removes a probe pod no run owns, and no pod that merely looks like one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweep_removes_only_probe_pods() {
        let plane = ControlPlane::start().await.unwrap();
        let proxy = FaultProxy::start(&plane).await.unwrap();
        let client = proxy.client().unwrap();
        let admission = Arc::new(Admission::new(client.clone(), Duration::from_secs(60)));
        let prober = Prober::new(client.clone(), config(), admission);
        let mut check = check();
        check.metadata.namespace = Some("default".into());
        check.spec.service_account_name = "default".into();
        let uid = check.uid().unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let orphan = probe_pod(&check, &config(), Duration::from_secs(60));
        let mut misnamed = orphan.clone();
        misnamed.metadata.name = Some("other".into());
        let container = json!([{"name": "app", "image": "busybox"}]);
        // A real owner: the garbage collector deletes pods whose owner does not exist.
        let worker: k8s_openapi::api::apps::v1::ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "worker"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "worker"}},
                     "template": {"metadata": {"labels": {"app": "worker"}}, "spec": {"containers": container}}}}))
        .unwrap();
        let worker =
            Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(client.clone(), "default")
                .create(&PostParams::default(), &worker)
                .await
                .unwrap();
        let lookalikes = [
            // The labels copied, no owner.
            json!({"metadata": {"name": "decoy", "labels": {PROBE_LABEL: "true", crate::api::CHECK_LABEL: uid}},
                "spec": {"containers": container}}),
            // The label on a workload.
            json!({"metadata": {"name": "worker-7d9f", "labels": {PROBE_LABEL: "true"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "worker",
                    "uid": worker.metadata.uid, "controller": true}]},
                "spec": {"containers": container}}),
        ];
        for pod in lookalikes
            .into_iter()
            .map(|p| serde_json::from_value::<Pod>(p).unwrap())
            .chain([orphan, misnamed])
        {
            pods.create(&PostParams::default(), &pod).await.unwrap();
        }
        assert_eq!(prober.sweep_orphans(&[WatchNamespace::All]).await, 1);
        let mut left: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        left.sort();
        assert_eq!(left, ["decoy", "other", "worker-7d9f"]);

        // No probe started since: the next sweep has nothing new to find and lists nothing.
        let before = proxy.request_count("list", "pods");
        assert_eq!(prober.sweep_orphans(&[WatchNamespace::All]).await, 0);
        assert_eq!(
            proxy.request_count("list", "pods"),
            before,
            "a sweep with nothing new to find"
        );
    }

    /// 200 probe runs while the API server (through a fault-injecting proxy) fails creates,
    /// deletes, log reads and watches now and then, and the node agent runs each probe pod as a
    /// scripted outcome: no run leaves a probe pod behind once the orphan sweep has passed, and
    /// there is never more than one probe pod for the check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn faults_leave_no_probe_pod_behind() {
        let script: ScriptFn = std::sync::Arc::new(|_| {
            Some(Script::Exit {
                log: r#"{"Arn": "arn:aws:sts::111122223333:assumed-role/s3-reader/s"}"#.into(),
                code: 0,
                after: Duration::from_millis(5),
            })
        });
        let plane = ControlPlane::start().await.unwrap();
        let _node = NodeAgent::start(
            &plane,
            KubeletOptions {
                script: Some(script),
                ..KubeletOptions::default()
            },
        )
        .await
        .unwrap();
        let sim = FaultProxy::start(&plane).await.unwrap();
        let client = sim.client().unwrap();
        let admission = Arc::new(Admission::new(client.clone(), Duration::from_secs(60)));
        let prober = Prober::new(client.clone(), config(), admission);
        let mut check = check();
        check.metadata.namespace = Some("default".into());
        check.spec.service_account_name = "default".into();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let probe_pods = || {
            let pods = pods.clone();
            async move {
                pods.list(&ListParams::default().labels(&format!("{PROBE_LABEL}=true")))
                    .await
                    .unwrap()
                    .items
                    .len()
            }
        };
        let mut outcomes = std::collections::BTreeMap::new();
        for i in 0..200u32 {
            match i % 6 {
                1 => sim.fail_next("pods", Some("create"), 1, 500),
                2 => sim.fail_next("pods", Some("delete"), 4, 503),
                3 => sim.fail_next("pods/log", Some("get"), 1, 500),
                4 => sim.fail_next("pods", Some("watch"), 1, 500),
                _ => {}
            }
            let outcome = match prober.run(&check, Duration::from_secs(10)).await {
                Fact::Known(o) => format!("{:?}", std::mem::discriminant(&o.result)),
                Fact::Unavailable(u) => u.reason.to_string(),
                Fact::Skipped(_) => "skipped".into(),
            };
            *outcomes.entry(outcome).or_insert(0) += 1;
            assert!(probe_pods().await <= 1, "run {i}: more than one probe pod");
        }
        prober.sweep_orphans(&[WatchNamespace::All]).await;
        assert_eq!(probe_pods().await, 0, "outcomes: {outcomes:?}");
        assert!(outcomes.len() >= 2, "faults were injected: {outcomes:?}");
    }
}
