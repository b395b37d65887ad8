//! What decides whether the pod identity webhook sees a pod: the webhook's registrations
//! (cluster-wide `MutatingWebhookConfiguration`s) and the labels of the pod's namespace, which
//! the registrations' `namespaceSelector` matches. Read only when a pod lacks the injected
//! variables: the operator watches the registrations (a sweep lists none) and reuses a
//! namespace's labels for a while, so that a healthy cluster costs no request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use irsa_core::workloads::{webhook_registrations, PodFacts, WebhookRegistration};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::runtime::reflector;
use moka::future::Cache;

/// At most this many namespaces' labels are kept.
const MAX_NAMESPACES: u64 = 10_000;

/// How long a read waits for the registrations' watch to list before answering "cannot tell".
const WATCH_WAIT: Duration = Duration::from_secs(5);

/// Where the webhook's registrations come from.
enum Registrations {
    /// Listed when asked, each answer reused for a while (a one-shot run).
    Listed(Cache<(), Arc<Vec<WebhookRegistration>>>),
    /// Kept current by a watch (the operator): a read costs no request, and a fixed
    /// registration is seen at once.
    Watched(reflector::Store<MutatingWebhookConfiguration>),
}

/// The webhook's registrations and namespaces' labels; labels are read at most once per `ttl`.
pub struct Admission {
    client: kube::Client,
    webhooks: Registrations,
    namespaces: Cache<String, Arc<BTreeMap<String, String>>>,
}

fn labels_cache(ttl: Duration) -> Cache<String, Arc<BTreeMap<String, String>>> {
    Cache::builder()
        .max_capacity(MAX_NAMESPACES)
        .time_to_live(ttl)
        .build()
}

fn registrations<'a>(
    configurations: impl IntoIterator<Item = &'a MutatingWebhookConfiguration>,
) -> Vec<WebhookRegistration> {
    configurations
        .into_iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .flat_map(|c| webhook_registrations(&c))
        .collect()
}

/// Drops what reading the registrations never needs (CA bundles, field-manager history) before
/// a configuration enters the watch's store.
pub fn strip_configuration(configuration: &mut MutatingWebhookConfiguration) {
    configuration.metadata.managed_fields = None;
    for webhook in configuration.webhooks.iter_mut().flatten() {
        webhook.client_config.ca_bundle = None;
    }
}

impl Admission {
    /// Reads through `client`, reusing answers for `ttl`.
    pub fn new(client: kube::Client, ttl: Duration) -> Admission {
        Admission {
            client,
            webhooks: Registrations::Listed(
                Cache::builder().max_capacity(1).time_to_live(ttl).build(),
            ),
            namespaces: labels_cache(ttl),
        }
    }

    /// Reads the registrations from `webhooks`, a watch's store, and namespaces' labels
    /// through `client`, reusing them for `ttl`.
    pub fn watched(
        client: kube::Client,
        webhooks: reflector::Store<MutatingWebhookConfiguration>,
        ttl: Duration,
    ) -> Admission {
        Admission {
            client,
            webhooks: Registrations::Watched(webhooks),
            namespaces: labels_cache(ttl),
        }
    }

    /// The pod identity webhook's registrations (empty when there is none); `None` when they
    /// cannot be listed. A failure is not kept: the next call asks again.
    pub async fn webhooks(&self) -> Option<Arc<Vec<WebhookRegistration>>> {
        let listed = match &self.webhooks {
            Registrations::Watched(store) => {
                return match tokio::time::timeout(WATCH_WAIT, store.wait_until_ready()).await {
                    Ok(Ok(())) => Some(Arc::new(registrations(store.state().iter().map(|c| &**c)))),
                    _ => {
                        tracing::debug!("the mutating webhook configurations have not been listed");
                        None
                    }
                };
            }
            Registrations::Listed(listed) => listed,
        };
        let client = self.client.clone();
        listed
            .try_get_with((), async move {
                let api: Api<MutatingWebhookConfiguration> = Api::all(client);
                let list = api.list(&ListParams::default()).await?;
                Ok::<_, kube::Error>(Arc::new(registrations(&list.items)))
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
