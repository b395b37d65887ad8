//! What every diagnosis in the operator shares: clients, caches, the issuer, the Event
//! recorder, metrics, the verdict memory and the prober.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use irsa_aws::AwsFacts;
use irsa_core::{ConditionVerdict, Fact, Issuer, Report};
use kube::runtime::events::Recorder;

use super::events::{self, EventSpec};
use super::index::CheckIndex;
use super::metrics::Metrics;
use super::probe::Prober;
use super::service_accounts::ServiceAccounts;
use super::verdicts::Verdicts;

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
}

/// Shared state of the running operator.
pub struct Context {
    client: kube::Client,
    aws: Arc<AwsFacts>,
    issuer: RwLock<Fact<Issuer>>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    service_accounts: ServiceAccounts,
    checks: Arc<CheckIndex>,
    verdicts: Verdicts,
    prober: Prober,
    unwritten: Mutex<HashMap<(String, String), Unwritten>>,
}

impl Context {
    /// Assembles the context.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        aws: Arc<AwsFacts>,
        issuer: Fact<Issuer>,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        service_accounts: ServiceAccounts,
        checks: Arc<CheckIndex>,
        prober: Prober,
    ) -> Context {
        Context {
            client,
            aws,
            issuer: RwLock::new(issuer),
            recorder,
            metrics,
            service_accounts,
            checks,
            verdicts: Verdicts::default(),
            prober,
            unwritten: Mutex::new(HashMap::new()),
        }
    }

    /// The Kubernetes client.
    pub fn client(&self) -> &kube::Client {
        &self.client
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

    /// Publishes an Event about an object.
    pub async fn publish(
        &self,
        event: &EventSpec,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
    ) {
        events::publish(&self.recorder, event, reference).await;
    }

    /// Records a ServiceAccount's verdict and publishes the Event its transition deserves on
    /// the ServiceAccount.
    pub async fn record_service_account(
        &self,
        namespace: &str,
        name: &str,
        ready: &ConditionVerdict,
    ) {
        if let Some(event) = self.verdicts.record(namespace, name, ready) {
            if let Some(reference) = self.service_accounts.reference(namespace, name) {
                self.publish(&event, &reference).await;
            }
        }
    }
}
