//! What decides whether the pod identity webhook sees a pod: the webhook's registrations
//! (cluster-wide `MutatingWebhookConfiguration`s) and the labels of the pod's namespace, which
//! the registrations' `namespaceSelector` matches. Read only when a pod lacks the injected
//! variables, and reused for a while, so that a healthy cluster costs no request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use irsa_core::workloads::{webhook_registrations, PodFacts, WebhookRegistration};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use moka::future::Cache;

/// At most this many namespaces' labels are kept.
const MAX_NAMESPACES: u64 = 10_000;

/// The webhook's registrations and namespaces' labels, each read at most once per `ttl`.
pub struct Admission {
    client: kube::Client,
    webhooks: Cache<(), Arc<Vec<WebhookRegistration>>>,
    namespaces: Cache<String, Arc<BTreeMap<String, String>>>,
}

impl Admission {
    /// Reads through `client`, reusing answers for `ttl`.
    pub fn new(client: kube::Client, ttl: Duration) -> Admission {
        Admission {
            client,
            webhooks: Cache::builder().max_capacity(1).time_to_live(ttl).build(),
            namespaces: Cache::builder()
                .max_capacity(MAX_NAMESPACES)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The pod identity webhook's registrations (empty when there is none); `None` when they
    /// cannot be listed. A failure is not kept: the next call asks again.
    pub async fn webhooks(&self) -> Option<Arc<Vec<WebhookRegistration>>> {
        let client = self.client.clone();
        self.webhooks
            .try_get_with((), async move {
                let api: Api<MutatingWebhookConfiguration> = Api::all(client);
                let list = api.list(&ListParams::default()).await?;
                let registrations = list
                    .items
                    .iter()
                    .filter_map(|c| serde_json::to_value(c).ok())
                    .flat_map(|c| webhook_registrations(&c))
                    .collect();
                Ok::<_, kube::Error>(Arc::new(registrations))
            })
            .await
            .map_err(|e| tracing::debug!(error = %e, "listing mutating webhook configurations"))
            .ok()
    }

    /// The labels of `namespace`; `None` when it cannot be read (e.g. not granted).
    pub async fn namespace_labels(&self, namespace: &str) -> Option<Arc<BTreeMap<String, String>>> {
        let client = self.client.clone();
        let name = namespace.to_string();
        self.namespaces
            .try_get_with(name.clone(), async move {
                let api: Api<Namespace> = Api::all(client);
                let ns = api.get_metadata(&name).await?;
                Ok::<_, kube::Error>(Arc::new(ns.metadata.labels.unwrap_or_default()))
            })
            .await
            .map_err(|e| tracing::debug!(namespace, error = %e, "reading the namespace's labels"))
            .ok()
    }

    /// Tells each pod of `namespace` that lacks the injected variables which webhooks could
    /// have mutated it and what its namespace's labels are, so the audit can say why it was
    /// not mutated. Pods that were injected cost nothing.
    pub async fn explain(&self, namespace: &str, pods: &mut [PodFacts]) {
        if !pods.iter().any(PodFacts::lacks_injection) {
            return;
        }
        let webhooks = self.webhooks().await;
        let labels = self.namespace_labels(namespace).await;
        for pod in pods.iter_mut().filter(|p| p.lacks_injection()) {
            pod.webhooks = webhooks.as_deref().cloned();
            pod.namespace_labels = labels.as_deref().cloned();
        }
    }
}
