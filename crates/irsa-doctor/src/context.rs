//! What every diagnosis in the operator shares: clients, caches, the issuer, the recorder,
//! metrics, and the last verdict of each ServiceAccount (Events are for transitions only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use irsa_aws::AwsFacts;
use irsa_core::{ConditionVerdict, Fact, Issuer, Reason, ServiceAccount, Unavailable};
use k8s_openapi::api::core::v1::{ObjectReference, ServiceAccount as KubeServiceAccount};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::conditions::{transition, EventSpec, Remembered};
use crate::gather;
use crate::metrics::Metrics;

/// ServiceAccount metadata, cached by a metadata-only watch per watched namespace.
pub type SaStore = Store<PartialObjectMeta<KubeServiceAccount>>;

/// Shared state of the running operator.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// AWS facts, cached.
    pub aws: Arc<AwsFacts>,
    /// The cluster's issuer, or why it is not known yet.
    pub issuer: RwLock<Fact<Issuer>>,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// ServiceAccount caches by namespace (`None`: all namespaces).
    pub service_accounts: Vec<(Option<String>, SaStore)>,
    /// Turns true once every ServiceAccount cache has its initial list. (kube's own
    /// `Store::wait_until_ready` wakes only one of several concurrent waiters.)
    pub service_accounts_synced: tokio::sync::watch::Receiver<bool>,
    /// Runs probe pods.
    pub prober: crate::probe::Prober,
    /// Last Ready verdict of each ServiceAccount, for Events on transitions only.
    pub verdicts: Mutex<HashMap<(String, String), Remembered>>,
}

impl Context {
    /// The issuer as currently known.
    pub fn issuer(&self) -> Fact<Issuer> {
        self.issuer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A ServiceAccount from the cache: `Known(None)` when it does not exist. Waits for the
    /// cache's initial list, so that "not yet listed" is never reported as "not found".
    pub async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Fact<Option<ServiceAccount>> {
        let store = self
            .service_accounts
            .iter()
            .find(|(ns, _)| ns.as_deref().is_none_or(|n| n == namespace))
            .map(|(_, s)| s);
        let Some(store) = store else {
            return Fact::Skipped(format!("namespace {namespace} is not watched"));
        };
        let mut synced = self.service_accounts_synced.clone();
        let synced =
            tokio::time::timeout(std::time::Duration::from_secs(30), synced.wait_for(|s| *s)).await;
        if !matches!(synced, Ok(Ok(_))) {
            return Fact::Unavailable(Unavailable {
                reason: Reason::KubernetesApiUnavailable,
                detail: "the ServiceAccount cache has not finished its initial list".into(),
            });
        }
        Fact::Known(
            store
                .get(&ObjectRef::new(name).within(namespace))
                .map(|sa| gather::service_account(&sa.metadata)),
        )
    }

    /// The uid of a cached ServiceAccount, for Event references.
    pub fn service_account_reference(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<ObjectReference> {
        let (_, store) = self
            .service_accounts
            .iter()
            .find(|(ns, _)| ns.as_deref().is_none_or(|n| n == namespace))?;
        let sa = store.get(&ObjectRef::new(name).within(namespace))?;
        Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ServiceAccount".into()),
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            uid: sa.metadata.uid.clone(),
            ..ObjectReference::default()
        })
    }

    /// Records a ServiceAccount's new Ready verdict and returns the Event its transition
    /// deserves. One memory per ServiceAccount, shared by the sweep and every IrsaCheck naming
    /// it, so a verdict reaches `kubectl describe serviceaccount` once.
    pub fn service_account_transition(
        &self,
        namespace: &str,
        name: &str,
        ready: &ConditionVerdict,
    ) -> Option<EventSpec> {
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        let event = transition(verdicts.get(&key), ready);
        verdicts.insert(
            key,
            (
                ready.status.as_str().to_string(),
                ready.reason.as_str().to_string(),
            ),
        );
        event
    }

    /// Publishes an Event; a failure to publish is logged, never fatal.
    pub async fn publish(&self, event: &EventSpec, reference: &ObjectReference) {
        let ev = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.clone(),
            note: Some(event.note.clone()),
            action: "Diagnose".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, reason = %event.reason, object = ?reference.name, "could not publish an Event");
        }
    }
}
