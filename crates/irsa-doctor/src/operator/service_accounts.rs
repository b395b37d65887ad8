//! ServiceAccounts as the operator sees them: metadata only, stripped to what the diagnosis
//! reads, cached by one watch per watched namespace.

use std::time::Duration;

use irsa_core::{Fact, Reason, ServiceAccount, Unavailable};
use k8s_openapi::api::core::v1::{ObjectReference, ServiceAccount as KubeServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use super::sync::Synced;
use super::watch_namespace::WatchNamespace;
use crate::gather;

/// A cached ServiceAccount: its metadata, stripped by [`strip`].
pub type SaMeta = PartialObjectMeta<KubeServiceAccount>;

/// How long a read waits for the caches' initial lists before answering Unavailable.
const SYNC_WAIT: Duration = Duration::from_secs(30);

/// Drops what the diagnosis never reads (labels, owner references, field-manager history, …)
/// before an object enters the cache, so memory grows with annotations. Of the managed fields,
/// only when the role-arn annotation was last set is kept: it tells a pod created before the
/// annotation from one the webhook failed to mutate.
pub fn strip(sa: &mut SaMeta) {
    let m = &mut sa.metadata;
    m.managed_fields = role_arn_entry(m.managed_fields.take());
    m.labels = None;
    m.owner_references = None;
    m.finalizers = None;
    m.generate_name = None;
    m.self_link = None;
    if let Some(annotations) = m.annotations.as_mut() {
        // kubectl's copy of the last applied object repeats every annotation.
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The latest managed-fields entry that sets the role-arn annotation, reduced to its time and
/// that one field.
fn role_arn_entry(entries: Option<Vec<ManagedFieldsEntry>>) -> Option<Vec<ManagedFieldsEntry>> {
    let key = format!("f:{}", irsa_core::annotations::ROLE_ARN);
    let latest = entries
        .into_iter()
        .flatten()
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:metadata/f:annotations"))
                .is_some_and(|a| a.get(&key).is_some())
        })
        .filter_map(|e| e.time)
        .max()?;
    Some(vec![ManagedFieldsEntry {
        time: Some(latest),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(
            serde_json::json!({ "f:metadata": { "f:annotations": { key: {} } } }),
        )),
        ..ManagedFieldsEntry::default()
    }])
}

/// The ServiceAccount caches of every watched namespace.
pub struct ServiceAccounts {
    scopes: Vec<(WatchNamespace, Store<SaMeta>)>,
    synced: Synced,
}

impl ServiceAccounts {
    /// Caches fed by the watches; `synced` turns once every one has listed.
    pub fn new(scopes: Vec<(WatchNamespace, Store<SaMeta>)>, synced: Synced) -> ServiceAccounts {
        ServiceAccounts { scopes, synced }
    }

    fn store(&self, namespace: &str) -> Option<&Store<SaMeta>> {
        self.scopes
            .iter()
            .find(|(scope, _)| scope.contains(namespace))
            .map(|(_, s)| s)
    }

    /// A ServiceAccount from the cache: `Known(None)` when it does not exist. Waits for the
    /// initial list, so that "not yet listed" is never reported as "not found".
    pub async fn get(&self, namespace: &str, name: &str) -> Fact<Option<ServiceAccount>> {
        let Some(store) = self.store(namespace) else {
            return Fact::Skipped(format!("namespace {namespace} is not watched"));
        };
        if !self.synced.wait(SYNC_WAIT).await {
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

    /// A reference to a cached ServiceAccount, uid included, for Events.
    pub fn reference(&self, namespace: &str, name: &str) -> Option<ObjectReference> {
        let sa = self
            .store(namespace)?
            .get(&ObjectRef::new(name).within(namespace))?;
        Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ServiceAccount".into()),
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            uid: sa.metadata.uid.clone(),
            ..ObjectReference::default()
        })
    }

    /// A cached ServiceAccount, without waiting for the initial list; `None` when not cached
    /// (absent, being deleted, or in a namespace that is not watched).
    pub fn cached(&self, namespace: &str, name: &str) -> Option<ServiceAccount> {
        let sa = self
            .store(namespace)?
            .get(&ObjectRef::new(name).within(namespace))?;
        sa.metadata
            .deletion_timestamp
            .is_none()
            .then(|| gather::service_account(&sa.metadata))
    }

    /// Every cached ServiceAccount that asks for IRSA (or nearly does).
    pub fn wanting_irsa(&self) -> Vec<ServiceAccount> {
        self.scopes
            .iter()
            .flat_map(|(_, store)| store.state())
            .filter(|sa| sa.metadata.deletion_timestamp.is_none())
            .map(|sa| gather::service_account(&sa.metadata))
            .filter(ServiceAccount::wants_irsa)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn time(s: &str) -> Time {
        Time(s.parse().expect("a timestamp"))
    }

    #[test]
    fn strip_keeps_only_what_the_diagnosis_reads() {
        let mut sa = SaMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some("api".into()),
                namespace: Some("payments".into()),
                uid: Some("u".into()),
                labels: Some([("app".to_string(), "api".to_string())].into()),
                managed_fields: Some(vec![
                    ManagedFieldsEntry {
                        manager: Some("kubectl".into()),
                        time: Some(time("2026-01-01T00:00:00Z")),
                        fields_v1: Some(FieldsV1(serde_json::json!({"f:metadata": {
                            "f:annotations": {"f:eks.amazonaws.com/role-arn": {}},
                            "f:labels": {"f:app": {}}
                        }}))),
                        ..ManagedFieldsEntry::default()
                    },
                    ManagedFieldsEntry {
                        manager: Some("helm".into()),
                        time: Some(time("2026-03-01T00:00:00Z")),
                        fields_v1: Some(FieldsV1(serde_json::json!({"f:metadata": {
                            "f:annotations": {"f:eks.amazonaws.com/role-arn": {}}
                        }}))),
                        ..ManagedFieldsEntry::default()
                    },
                    ManagedFieldsEntry {
                        manager: Some("later-labeler".into()),
                        time: Some(time("2026-06-01T00:00:00Z")),
                        fields_v1: Some(FieldsV1(serde_json::json!({"f:metadata": {
                            "f:labels": {"f:team": {}}
                        }}))),
                        ..ManagedFieldsEntry::default()
                    },
                ]),
                annotations: Some(
                    [
                        ("eks.amazonaws.com/role-arn".to_string(), "arn".to_string()),
                        (
                            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                            "{}".to_string(),
                        ),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            _phantom: std::marker::PhantomData,
        };
        strip(&mut sa);
        let m = &sa.metadata;
        let kept = m.managed_fields.as_deref().unwrap_or_default();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].manager, None);
        assert_eq!(
            crate::gather::service_account(m).role_arn_set,
            Some(time("2026-03-01T00:00:00Z").0.as_second()),
            "the last time the role-arn annotation was set, not a later unrelated change"
        );
        assert_eq!(m.labels, None);
        assert_eq!(
            m.annotations.as_ref().unwrap().keys().collect::<Vec<_>>(),
            ["eks.amazonaws.com/role-arn"]
        );
        assert_eq!(
            (m.name.as_deref(), m.uid.as_deref()),
            (Some("api"), Some("u"))
        );
    }
}
