//! The probe: a pod that assumes the role for real, run, observed and deleted. Image and
//! command come from the operator's configuration only, never from the custom resource.

mod pod;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use irsa_core::probe::{ProbeObservation, ProbeResult};
use irsa_core::{Fact, Reason, Unavailable};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::ResourceExt;
use tokio::sync::Semaphore;

pub use pod::{injection, pod_name, probe_pod, ProbeConfig, CONTAINER};

use super::watch_namespace::WatchNamespace;
use crate::api::{IrsaCheck, PROBE_LABEL};

/// How long the answer to "is a pod identity webhook registered?" is reused.
const WEBHOOK_TTL: Duration = Duration::from_secs(60);

/// Runs probes within a global bound and remembers which pods are in flight.
pub struct Prober {
    client: kube::Client,
    config: ProbeConfig,
    permits: Semaphore,
    in_flight: Mutex<HashSet<(String, String)>>,
    webhook: Mutex<Option<(Instant, Option<bool>)>>,
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

impl Prober {
    /// A prober with the operator's probe configuration.
    pub fn new(client: kube::Client, config: ProbeConfig) -> Prober {
        Prober {
            client,
            permits: Semaphore::new(config.max_concurrent.max(1)),
            config,
            in_flight: Mutex::new(HashSet::new()),
            webhook: Mutex::new(None),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the probe of one IrsaCheck and deletes its pod, whatever happened.
    pub async fn run(&self, check: &IrsaCheck, timeout: Duration) -> Fact<ProbeObservation> {
        let Ok(_permit) = self.permits.acquire().await else {
            return not_run("probe", "the prober is shutting down");
        };
        let namespace = check.namespace().unwrap_or_default();
        let name = pod_name(&check.name_any());
        let key = (namespace.clone(), name.clone());
        self.in_flight().insert(key.clone());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let observation = self.observe(&api, check, &name, timeout).await;
        self.delete(&api, &name).await;
        self.in_flight().remove(&key);
        observation
    }

    async fn observe(
        &self,
        api: &Api<Pod>,
        check: &IrsaCheck,
        name: &str,
        timeout: Duration,
    ) -> Fact<ProbeObservation> {
        // A pod left by an earlier run (crash, failed delete) goes first: one probe per check.
        self.delete(api, name).await;
        let created = match api
            .create(
                &PostParams::default(),
                &probe_pod(check, &self.config, timeout),
            )
            .await
        {
            Ok(p) => p,
            Err(e) => return not_run(&format!("creating probe pod {name}"), e),
        };
        let injection = injection(&created);
        let webhook_configured = self.webhook_configured().await;
        // The deadline is enforced by the kubelet (activeDeadlineSeconds); the extra time covers
        // scheduling and status propagation.
        let wait = await_condition(api.clone(), name, |pod: Option<&Pod>| {
            pod.is_none_or(|p| finished(p) || image_pull_failure(p).is_some())
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
            let params = LogParams {
                container: Some(CONTAINER.into()),
                ..LogParams::default()
            };
            match api.logs(name, &params).await {
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

    /// Whether a pod identity webhook is registered, reused for [`WEBHOOK_TTL`].
    async fn webhook_configured(&self) -> Option<bool> {
        let cached = *self.webhook.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, answer)) = cached.filter(|(at, _)| at.elapsed() < WEBHOOK_TTL) {
            return answer;
        }
        let answer = self.list_webhooks().await;
        // Only a real answer is kept: an API error is asked again next time.
        if answer.is_some() {
            *self.webhook.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Instant::now(), answer));
        }
        answer
    }

    /// Lists webhook configurations for a pod identity webhook (EKS names it `pod-identity-webhook`).
    async fn list_webhooks(&self) -> Option<bool> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let list = api.list(&ListParams::default()).await.ok()?;
        Some(list.items.iter().any(|c| {
            let names = std::iter::once(c.name_any())
                .chain(c.webhooks.iter().flatten().map(|w| w.name.clone()));
            names
                .into_iter()
                .any(|n| n.contains("pod-identity") || n.contains("iam-for-pods"))
        }))
    }

    /// Deletes a probe pod now; retried a few times, then left to the orphan sweep.
    async fn delete(&self, api: &Api<Pod>, name: &str) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::background()
        };
        for attempt in 0..3u32 {
            match api.delete(name, &params).await {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 404 => return,
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
    }

    /// Deletes every probe pod still in flight (at shutdown: their runs are abandoned).
    pub async fn delete_in_flight(&self) {
        let pods: Vec<(String, String)> = self.in_flight().iter().cloned().collect();
        for (namespace, name) in pods {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            self.delete(&api, &name).await;
        }
    }

    /// Removes probe pods that no running probe owns (left by a crash or a failed delete).
    /// Returns how many it deleted.
    pub async fn sweep_orphans(&self, namespaces: &[WatchNamespace]) -> usize {
        let mut deleted = 0;
        for ns in namespaces {
            let api: Api<Pod> = ns.api(&self.client);
            let Ok(pods) = api
                .list_metadata(&ListParams::default().labels(&format!("{PROBE_LABEL}=true")))
                .await
            else {
                continue;
            };
            for pod in pods.items {
                let (pod_ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
                if self.in_flight().contains(&(pod_ns.clone(), name.clone())) {
                    continue;
                }
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod_ns);
                self.delete(&api, &name).await;
                deleted += 1;
            }
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IrsaCheckSpec;
    use kube::api::ListParams;
    use serde_json::json;

    fn check() -> IrsaCheck {
        let mut c = IrsaCheck::new(
            "s3-reader",
            serde_json::from_value::<IrsaCheckSpec>(json!({"serviceAccountName": "s3-reader"}))
                .unwrap(),
        );
        c.metadata.namespace = Some("reports".into());
        c.metadata.uid = Some("0b3f5c1e-0000-4000-8000-000000000000".into());
        c
    }

    fn config() -> ProbeConfig {
        ProbeConfig {
            image: "amazon/aws-cli:2.22.35".into(),
            command: vec!["aws".into(), "sts".into(), "get-caller-identity".into()],
            max_concurrent: 2,
        }
    }

    /// 200 probe runs while the API server fails creates, deletes, log reads and watches now
    /// and then: no run leaves a probe pod behind once the orphan sweep has passed, and there
    /// is never more than one probe pod for the check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn faults_leave_no_probe_pod_behind() {
        let script: kube_sim::ScriptFn = std::sync::Arc::new(|_| {
            Some(kube_sim::Script::Exit {
                log: r#"{"Arn": "arn:aws:sts::111122223333:assumed-role/s3-reader/s"}"#.into(),
                code: 0,
                after: Duration::from_millis(5),
            })
        });
        let sim = kube_sim::KubeSim::start_with(kube_sim::Options {
            kubelet: Some(kube_sim::KubeletOptions {
                extra_env: Vec::new(),
                script: Some(script),
            }),
            ..kube_sim::Options::default()
        })
        .await
        .unwrap();
        let client = sim.client();
        let prober = Prober::new(client.clone(), config());
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
