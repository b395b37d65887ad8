//! What every diagnosis in the operator shares: clients, caches, the issuer, the Event
//! publisher, metrics, the verdict memory, the prober, and what keeps tenants apart ([`Tenancy`]:
//! the roles that may be looked up, the probe slots, each check's last probe).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use irsa_aws::AwsFacts;
use irsa_core::facts::AllowedRoles;
use irsa_core::probe::ProbeObservation;
use irsa_core::{Fact, Issuer, Report};
use kube::core::DynamicObject;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use super::events::{EventSpec, Publisher};
use super::index::CheckIndex;
use super::metrics::Metrics;
use super::probe::Prober;
use super::probe_slots::{Busy, ProbeSlot, ProbeSlots};
use super::recovery::{Recovery, Subject};
use super::service_accounts::ServiceAccounts;
use super::verdicts::{Diagnosed, Verdicts};
use super::watch_namespace::WatchNamespace;
use crate::gather::node_fallback::Nodes;
use crate::gather::observed::{observe, Observations};
use crate::gather::pod_identity::{Agents, Lookup, AGENT_NAMESPACE};

/// A diagnosis whose status could not be written: the next attempt writes it again instead of
/// diagnosing again (and starting another probe pod).
#[derive(Debug, Clone)]
pub struct Unwritten {
    /// The object's uid and generation the report was made for.
    pub uid: Option<String>,
    /// The generation the report was made for.
    pub generation: Option<i64>,
    /// The report.
    pub report: Report,
    /// When to diagnose again.
    pub requeue: std::time::Duration,
    /// What it was diagnosed from, when the spec was usable.
    pub inputs: Option<Written>,
}

/// What keeps one namespace from using the operator against the others, or stalling it for them.
#[derive(Debug, Clone)]
pub struct Tenancy {
    /// `--allowed-role-arns`: the only roles looked up; `None`: any.
    pub allowed_roles: Option<AllowedRoles>,
    /// `--max-concurrent-probes`: probe pods at once, cluster-wide.
    pub max_concurrent_probes: usize,
    /// `--max-probes-per-namespace`: probe pods at once of one namespace.
    pub max_probes_per_namespace: usize,
    /// `--min-probe-interval`: how often one check's probe may run at most.
    pub min_probe_interval: Duration,
}

impl Default for Tenancy {
    /// The flags' defaults: any role, 4 probe slots, 2 of them to one namespace, a probe at most
    /// every 10 minutes per check.
    fn default() -> Tenancy {
        Tenancy {
            allowed_roles: None,
            max_concurrent_probes: 4,
            max_probes_per_namespace: 2,
            min_probe_interval: Duration::from_secs(600),
        }
    }
}

/// A check's last probe, reused until `--min-probe-interval` has passed, unless what the probe
/// depends on changed: the check's spec (generation) or the ServiceAccount's annotations.
#[derive(Debug, Clone)]
struct LastProbe {
    at: Instant,
    generation: Option<i64>,
    annotations: BTreeMap<String, String>,
    observation: ProbeObservation,
}

/// Shared state of the running operator.
pub struct Context {
    client: kube::Client,
    aws: Arc<AwsFacts>,
    issuer: RwLock<Fact<Issuer>>,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    service_accounts: ServiceAccounts,
    checks: Arc<CheckIndex>,
    verdicts: Verdicts,
    prober: Prober,
    unwritten: Mutex<HashMap<(String, String), Unwritten>>,
    tenancy: Tenancy,
    /// One slot per probe pod that may run, shared fairly among namespaces; taken without
    /// waiting, so a reconcile never blocks on another namespace's probes.
    probe_slots: ProbeSlots,
    /// The last probe of each check, by uid.
    last_probes: Mutex<HashMap<String, LastProbe>>,
    /// What each check's written status was diagnosed from, and when it was written, by
    /// namespace and name.
    written: Mutex<HashMap<(String, String), (Written, Instant)>>,
    /// `--cluster-name`: EKS Pod Identity associations are looked up only with it.
    cluster_name: Option<String>,
    /// `--node-check` and `--cloudtrail`: what is observed of running pods.
    observations: Observations,
    /// Nodes' provider IDs, for the node check.
    nodes: Nodes,
    /// Where the EKS Pod Identity Agent runs.
    agents: Agents,
    /// The ServiceAccounts that have an EKS Pod Identity association, as last listed.
    associated: RwLock<HashSet<(String, String)>>,
    /// Each watched scope's way to re-run an IrsaCheck.
    triggers: Mutex<Vec<(WatchNamespace, Trigger)>>,
    /// The verdicts Unknown because of a fault, diagnosed again soon.
    recovery: Recovery,
}

/// Re-runs an IrsaCheck of one watched scope.
pub type Trigger = mpsc::UnboundedSender<ObjectRef<DynamicObject>>;

/// What a check's written status was diagnosed from: a check waiting for a probe slot skips
/// writing only while these are unchanged (and the status is younger than its interval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The check's uid.
    pub uid: Option<String>,
    /// Its generation.
    pub generation: Option<i64>,
    /// Its ServiceAccount's annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Context {
    /// Assembles the context.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        aws: Arc<AwsFacts>,
        issuer: Fact<Issuer>,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        service_accounts: ServiceAccounts,
        checks: Arc<CheckIndex>,
        prober: Prober,
    ) -> Context {
        Context {
            aws,
            issuer: RwLock::new(issuer),
            publisher,
            metrics,
            service_accounts,
            checks,
            verdicts: Verdicts::default(),
            prober,
            unwritten: Mutex::new(HashMap::new()),
            probe_slots: ProbeSlots::new(
                Tenancy::default().max_concurrent_probes,
                Tenancy::default().max_probes_per_namespace,
            ),
            tenancy: Tenancy::default(),
            last_probes: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            cluster_name: None,
            observations: Observations::default(),
            nodes: Nodes::new(client.clone()),
            agents: Agents::new(client.clone(), AGENT_NAMESPACE),
            associated: RwLock::new(HashSet::new()),
            triggers: Mutex::new(Vec::new()),
            recovery: Recovery::default(),
            client,
        }
    }

    /// The context observing what `observations` asks of running pods (off by default).
    pub fn with_observations(mut self, observations: Observations) -> Context {
        self.observations = observations;
        self
    }

    /// Fills the facts of running pods' nodes and CloudTrail calls, when enabled.
    pub async fn observe(&self, facts: &mut irsa_core::Facts) {
        observe(
            self.observations,
            self.aws(),
            self.client(),
            &self.nodes,
            facts,
        )
        .await;
    }

    /// The context for EKS cluster `name` (`--cluster-name`): Pod Identity is diagnosed too.
    pub fn with_cluster_name(mut self, name: Option<String>) -> Context {
        self.cluster_name = name;
        self
    }

    /// `--cluster-name`, when configured.
    pub fn cluster_name(&self) -> Option<&str> {
        self.cluster_name.as_deref()
    }

    /// The context with `tenancy` instead of the flags' defaults.
    pub fn with_tenancy(mut self, tenancy: Tenancy) -> Context {
        self.probe_slots = ProbeSlots::new(
            tenancy.max_concurrent_probes,
            tenancy.max_probes_per_namespace,
        );
        self.tenancy = tenancy;
        self
    }

    /// The roles that may be looked up in AWS; `None`: any.
    pub fn allowed_roles(&self) -> Option<&AllowedRoles> {
        self.tenancy.allowed_roles.as_ref()
    }

    /// A probe slot for a check of `namespace` if it may have one now; never waits (the caller
    /// requeues instead).
    pub fn try_probe_slot(&self, namespace: &str) -> Result<ProbeSlot, Busy> {
        self.probe_slots.try_acquire(namespace, Instant::now())
    }

    /// The last probe of the check `uid`, if it ran less than `--min-probe-interval` ago for the
    /// same generation of the check and the same ServiceAccount annotations.
    pub fn recent_probe(
        &self,
        uid: &str,
        generation: Option<i64>,
        annotations: &BTreeMap<String, String>,
    ) -> Option<ProbeObservation> {
        let probes = self.last_probes.lock().unwrap_or_else(|p| p.into_inner());
        let last = probes.get(uid)?;
        (last.at.elapsed() < self.tenancy.min_probe_interval
            && last.generation == generation
            && &last.annotations == annotations)
            .then(|| last.observation.clone())
    }

    /// Remembers what the status just written for a check was diagnosed from.
    pub fn remember_written(&self, namespace: &str, name: &str, written: Written) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (namespace.to_string(), name.to_string()),
                (written, Instant::now()),
            );
    }

    /// Whether the check's status was written less than `within` ago, diagnosed from exactly
    /// `current`.
    pub fn status_is_from(
        &self,
        namespace: &str,
        name: &str,
        current: &Written,
        within: Duration,
    ) -> bool {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_string(), name.to_string()))
            .is_some_and(|(written, at)| written == current && at.elapsed() < within)
    }

    /// Forgets the checks that no longer exist.
    pub fn retain_written(&self, live: &std::collections::HashSet<(String, String)>) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| live.contains(key));
    }

    /// Remembers the probe that just ran for the check `uid`; forgets those too old to reuse.
    pub fn remember_probe(
        &self,
        uid: &str,
        generation: Option<i64>,
        annotations: BTreeMap<String, String>,
        observation: ProbeObservation,
    ) {
        let mut probes = self.last_probes.lock().unwrap_or_else(|p| p.into_inner());
        let reusable_for = self.tenancy.min_probe_interval;
        probes.retain(|_, p| p.at.elapsed() < reusable_for);
        probes.insert(
            uid.to_string(),
            LastProbe {
                at: Instant::now(),
                generation,
                annotations,
                observation,
            },
        );
    }

    /// Remembers which ServiceAccounts have an association, as just listed.
    pub fn set_associated(&self, pairs: HashSet<(String, String)>) {
        *self.associated.write().unwrap_or_else(|p| p.into_inner()) = pairs;
    }

    /// Whether `namespace/name` had an association when they were last listed.
    pub fn is_associated(&self, namespace: &str, name: &str) -> bool {
        self.associated
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(namespace.to_string(), name.to_string()))
    }

    /// Registers how the IrsaChecks of `scope` are re-run.
    pub fn register_trigger(&self, scope: WatchNamespace, trigger: Trigger) {
        self.triggers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((scope, trigger));
    }

    /// Re-runs the IrsaChecks naming `namespace/name`; whether there are any.
    pub fn trigger_checks_naming(&self, namespace: &str, name: &str) -> bool {
        let checks = self.checks.naming(namespace, name);
        let triggers = self.triggers.lock().unwrap_or_else(|p| p.into_inner());
        let ar = crate::api::dynamic_resource();
        for check in &checks {
            if let Some((_, trigger)) = triggers.iter().find(|(scope, _)| scope.contains(namespace))
            {
                let _ = trigger.send(ObjectRef::new_with(check, ar.clone()).within(namespace));
            }
        }
        !checks.is_empty()
    }

    /// Re-runs the IrsaCheck `namespace/name`; false when no such check is known.
    pub fn trigger_check(&self, namespace: &str, name: &str) -> bool {
        if !self.checks.contains(namespace, name) {
            return false;
        }
        let triggers = self.triggers.lock().unwrap_or_else(|p| p.into_inner());
        let ar = crate::api::dynamic_resource();
        match triggers.iter().find(|(scope, _)| scope.contains(namespace)) {
            Some((_, trigger)) => trigger
                .send(ObjectRef::new_with(name, ar).within(namespace))
                .is_ok(),
            None => false,
        }
    }

    /// The verdicts Unknown because of a fault.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The Kubernetes client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Every fact about one ServiceAccount but its pods and the probe: the annotation's role
    /// (AWS calls in the namespace's lane, only allowed roles looked up) and EKS Pod Identity.
    pub async fn gather(
        &self,
        namespace: &str,
        name: &str,
        sa: irsa_core::Fact<Option<irsa_core::ServiceAccount>>,
        spec: Option<&crate::api::IrsaCheckSpec>,
    ) -> irsa_core::Facts {
        let mut facts = crate::gather::gather_within(
            self.aws(),
            &self.issuer(),
            namespace,
            name,
            sa,
            spec,
            self.allowed_roles(),
        )
        .await;
        crate::gather::pod_identity::with_pod_identity(
            self.aws(),
            self.cluster_name(),
            self.allowed_roles(),
            Lookup::Cluster,
            Some(&self.agents),
            &mut facts,
        )
        .await;
        facts
    }

    /// AWS facts, cached.
    pub fn aws(&self) -> &AwsFacts {
        &self.aws
    }

    /// The issuer as currently known.
    pub fn issuer(&self) -> Fact<Issuer> {
        self.issuer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the issuer (once discovery succeeds).
    pub fn set_issuer(&self, issuer: Fact<Issuer>) {
        *self.issuer.write().unwrap_or_else(|p| p.into_inner()) = issuer;
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The ServiceAccount caches.
    pub fn service_accounts(&self) -> &ServiceAccounts {
        &self.service_accounts
    }

    /// IrsaChecks by the ServiceAccount they name.
    pub fn checks(&self) -> &CheckIndex {
        &self.checks
    }

    /// The last verdict of each ServiceAccount.
    pub fn verdicts(&self) -> &Verdicts {
        &self.verdicts
    }

    /// Runs probe pods.
    pub fn prober(&self) -> &Prober {
        &self.prober
    }

    /// Keeps a report whose status write failed.
    pub fn keep_unwritten(&self, namespace: &str, name: &str, unwritten: Unwritten) {
        self.unwritten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((namespace.into(), name.into()), unwritten);
    }

    /// Takes the kept report of a check, if it is still for this uid and generation.
    pub fn take_unwritten(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        generation: Option<i64>,
    ) -> Option<Unwritten> {
        self.unwritten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(namespace.to_string(), name.to_string()))
            .filter(|u| u.uid.as_deref() == uid && u.generation == generation)
    }

    /// Publishes an Event about an object; a failure is logged and counted, never fatal.
    pub async fn publish(
        &self,
        event: &EventSpec,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
    ) {
        let now = k8s_openapi::jiff::Timestamp::now();
        if let Err(e) = self.publisher.publish(event, reference, now).await {
            self.metrics.event_failed(event.reason);
            tracing::warn!(error = %e, reason = %event.reason, object = ?reference.name, "could not publish an Event");
        }
    }

    /// Records a ServiceAccount's verdict (its whole report, or its Ready verdict) and publishes
    /// the Event its transition deserves on the ServiceAccount; the verdict memory tells the
    /// PolicyReport writer when the namespace's report changed.
    pub async fn record_service_account<'a>(
        &self,
        namespace: &str,
        name: &str,
        diagnosed: impl Into<Diagnosed<'a>>,
    ) {
        let diagnosed = diagnosed.into();
        // A Ready verdict alone comes from an IrsaCheck, which waits for recovery as itself.
        if let Diagnosed::Report(report) = &diagnosed {
            self.recovery.record(
                Subject::ServiceAccount(namespace.to_string(), name.to_string()),
                report.awaits_recovery(),
            );
        }
        if let Some(event) = self.verdicts.record(namespace, name, diagnosed) {
            if let Some(reference) = self.service_account_reference(namespace, name).await {
                self.publish(&event, &reference).await;
            }
        }
    }

    /// A reference to cached ServiceAccount `namespace`/`name` for an Event or a report, uid
    /// included: the cache keeps none for an unannotated one, so it is read from the API
    /// server (a list by name: the operator lists ServiceAccounts, it never gets one) and kept.
    /// Without it when that read fails: an Event still says what broke.
    pub async fn service_account_reference(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
        let mut reference = self.service_accounts.reference(namespace, name)?;
        if reference.uid.is_none() {
            let api: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
                kube::Api::namespaced(self.client.clone(), namespace);
            let by_name = kube::api::ListParams::default().fields(&format!("metadata.name={name}"));
            match api.list_metadata(&by_name).await {
                Ok(list) => {
                    reference.uid = list.items.into_iter().find_map(|sa| sa.metadata.uid);
                    if let Some(uid) = &reference.uid {
                        self.service_accounts.keep_uid(namespace, name, uid);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, namespace, name, "could not read a ServiceAccount's uid for an Event or report")
                }
            }
        }
        Some(reference)
    }
}
