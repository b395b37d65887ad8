//! ServiceAccounts as the operator sees them: metadata only, stripped to what the diagnosis
//! reads, cached by one watch per watched namespace.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use irsa_core::{Fact, Reason, ServiceAccount, Unavailable};
use k8s_openapi::api::core::v1::{ObjectReference, ServiceAccount as KubeServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

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

/// One cached ServiceAccount, reduced to what the diagnosis and its Events read. A cache of
/// whole (even stripped) metadata held most of the ~3 KiB each ServiceAccount cost:
/// `ObjectMeta`'s many fields, the reflector's key repeating name, namespace, uid and
/// resourceVersion, and the reduced managed-fields entry as nested JSON maps. This holds the
/// same facts in ~0.2 KiB (heaptrack at 10,000 ServiceAccounts: 1.9 MB).
#[derive(Debug)]
struct Entry {
    uid: Option<Box<str>>,
    /// Sorted by key, as the metadata's map was.
    annotations: Box<[(Box<str>, Box<str>)]>,
    created: Option<i64>,
    role_arn_set: Option<i64>,
    /// [`ServiceAccount::wants_irsa`], decided once.
    wants_irsa: bool,
    deleting: bool,
}

impl Entry {
    fn of(meta: &ObjectMeta) -> Entry {
        // The same reader as everywhere else, so the times read alike.
        let sa = gather::service_account(meta);
        let wants_irsa = sa.wants_irsa();
        Entry {
            uid: meta.uid.as_deref().map(Box::from),
            annotations: sa
                .annotations
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
            created: sa.created,
            role_arn_set: sa.role_arn_set,
            wants_irsa,
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    fn service_account(&self, namespace: &str, name: &str) -> ServiceAccount {
        ServiceAccount {
            namespace: namespace.to_string(),
            name: name.to_string(),
            annotations: self
                .annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created: self.created,
            role_arn_set: self.role_arn_set,
        }
    }
}

type Namespaces = HashMap<Box<str>, HashMap<Box<str>, Entry>>;

/// The ServiceAccounts of one watched scope by namespace and name, fed by its watch's events.
/// A re-list builds a new map and replaces the old one when it completes, as kube's reflector
/// does, so readers never see a partial list.
#[derive(Debug, Default)]
pub struct Cache {
    inner: RwLock<(Namespaces, Option<Namespaces>)>,
}

fn names(meta: &ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

fn insert(map: &mut Namespaces, meta: &ObjectMeta) {
    let (namespace, name) = names(meta);
    map.entry(namespace.into())
        .or_default()
        .insert(name.into(), Entry::of(meta));
}

impl Cache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, (Namespaces, Option<Namespaces>)> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one event of the ServiceAccount watch (objects already [`strip`]ped).
    pub fn apply(&self, event: &watcher::Event<SaMeta>) {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let (live, relist) = &mut *guard;
        match event {
            watcher::Event::Init => *relist = Some(Namespaces::new()),
            watcher::Event::InitApply(sa) => {
                if let Some(relist) = relist.as_mut() {
                    insert(relist, &sa.metadata);
                }
            }
            watcher::Event::InitDone => {
                if let Some(listed) = relist.take() {
                    *live = listed;
                }
            }
            watcher::Event::Apply(sa) => insert(live, &sa.metadata),
            watcher::Event::Delete(sa) => {
                let (namespace, name) = names(&sa.metadata);
                if let Some(accounts) = live.get_mut(namespace) {
                    accounts.remove(name);
                    if accounts.is_empty() {
                        live.remove(namespace);
                    }
                }
            }
        }
    }

    fn with<T>(&self, namespace: &str, name: &str, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        self.read().0.get(namespace)?.get(name).map(f)
    }
}

/// The ServiceAccount caches of every watched namespace.
pub struct ServiceAccounts {
    scopes: Vec<(WatchNamespace, Arc<Cache>)>,
    synced: Synced,
}

impl ServiceAccounts {
    /// Caches fed by the watches; `synced` turns once every one has listed.
    pub fn new(scopes: Vec<(WatchNamespace, Arc<Cache>)>, synced: Synced) -> ServiceAccounts {
        ServiceAccounts { scopes, synced }
    }

    fn cache(&self, namespace: &str) -> Option<&Cache> {
        self.scopes
            .iter()
            .find(|(scope, _)| scope.contains(namespace))
            .map(|(_, c)| c.as_ref())
    }

    /// A ServiceAccount from the cache: `Known(None)` when it does not exist. Waits for the
    /// initial list, so that "not yet listed" is never reported as "not found".
    pub async fn get(&self, namespace: &str, name: &str) -> Fact<Option<ServiceAccount>> {
        let Some(cache) = self.cache(namespace) else {
            return Fact::Skipped(format!("namespace {namespace} is not watched"));
        };
        if !self.synced.wait(SYNC_WAIT).await {
            return Fact::Unavailable(Unavailable {
                reason: Reason::KubernetesApiUnavailable,
                detail: "the ServiceAccount cache has not finished its initial list".into(),
            });
        }
        Fact::Known(cache.with(namespace, name, |e| e.service_account(namespace, name)))
    }

    /// A reference to a cached ServiceAccount, uid included, for Events.
    pub fn reference(&self, namespace: &str, name: &str) -> Option<ObjectReference> {
        let uid = self
            .cache(namespace)?
            .with(namespace, name, |e| e.uid.as_deref().map(String::from))?;
        Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ServiceAccount".into()),
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            uid,
            ..ObjectReference::default()
        })
    }

    /// A cached ServiceAccount, without waiting for the initial list; `None` when not cached
    /// (absent, being deleted, or in a namespace that is not watched).
    pub fn cached(&self, namespace: &str, name: &str) -> Option<ServiceAccount> {
        self.cache(namespace)?
            .with(namespace, name, |e| {
                (!e.deleting).then(|| e.service_account(namespace, name))
            })
            .flatten()
    }

    /// The names of the cached ServiceAccounts of `namespace`, for naming a near miss.
    pub fn names_in(&self, namespace: &str) -> Vec<String> {
        self.cache(namespace)
            .and_then(|c| {
                c.read()
                    .0
                    .get(namespace)
                    .map(|accounts| accounts.keys().map(|n| n.to_string()).collect())
            })
            .unwrap_or_default()
    }

    /// Whether `namespace` is watched.
    pub fn watches(&self, namespace: &str) -> bool {
        self.cache(namespace).is_some()
    }

    /// The namespace and name of every cached ServiceAccount that asks for IRSA (or nearly
    /// does): names only, so that a sweep materialises one namespace's ServiceAccounts at a
    /// time ([`ServiceAccounts::cached`]), not the cluster's.
    pub fn wanting_irsa(&self) -> Vec<(String, String)> {
        let mut wanting = Vec::new();
        for (_, cache) in &self.scopes {
            for (namespace, accounts) in &cache.read().0 {
                wanting.extend(
                    accounts
                        .iter()
                        .filter(|(_, e)| !e.deleting && e.wants_irsa)
                        .map(|(name, _)| (namespace.to_string(), name.to_string())),
                );
            }
        }
        wanting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn time(s: &str) -> Time {
        Time(s.parse().expect("a timestamp"))
    }

    fn sa(name: &str, annotations: &[(&str, &str)], set: &str) -> SaMeta {
        let mut sa = SaMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("payments".into()),
                uid: Some(format!("uid-{name}")),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubectl".into()),
                    time: Some(time(set)),
                    fields_v1: Some(FieldsV1(serde_json::json!({"f:metadata": {
                        "f:annotations": {"f:eks.amazonaws.com/role-arn": {}}
                    }}))),
                    ..ManagedFieldsEntry::default()
                }]),
                ..ObjectMeta::default()
            },
            _phantom: std::marker::PhantomData,
        };
        strip(&mut sa);
        sa
    }

    #[tokio::test]
    async fn the_cache_follows_the_watch_and_keeps_what_the_diagnosis_reads() {
        let cache = Arc::new(Cache::default());
        let accounts = ServiceAccounts::new(vec![(WatchNamespace::All, cache.clone())], {
            let synced = Synced::new(1);
            synced.tracker()(&watcher::Event::<SaMeta>::InitDone);
            synced
        });
        let role = [(
            irsa_core::annotations::ROLE_ARN,
            "arn:aws:iam::111122223333:role/api",
        )];
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(sa(
            "api",
            &role,
            "2026-03-01T00:00:00Z",
        )));
        cache.apply(&watcher::Event::InitApply(sa(
            "plain",
            &[("team", "a")],
            "2026-03-01T00:00:00Z",
        )));
        assert_eq!(
            accounts.cached("payments", "api"),
            None,
            "nothing until InitDone"
        );
        cache.apply(&watcher::Event::InitDone);

        let api = accounts.cached("payments", "api").expect("cached");
        assert_eq!(api.role_arn_annotation(), Some(role[0].1));
        assert_eq!(
            api.role_arn_set,
            Some(time("2026-03-01T00:00:00Z").0.as_second()),
            "the annotation's time survives the compact form"
        );
        assert_eq!(
            accounts.get("payments", "api").await,
            Fact::Known(Some(api))
        );
        assert_eq!(
            accounts.reference("payments", "api").and_then(|r| r.uid),
            Some("uid-api".into())
        );
        let wanting: Vec<String> = accounts
            .wanting_irsa()
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        assert_eq!(wanting, ["api"]);

        cache.apply(&watcher::Event::Delete(sa(
            "api",
            &role,
            "2026-03-01T00:00:00Z",
        )));
        assert_eq!(accounts.get("payments", "api").await, Fact::Known(None));
        // A re-list replaces everything once complete: what it no longer lists is gone.
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(sa(
            "api",
            &role,
            "2026-04-01T00:00:00Z",
        )));
        assert!(
            accounts.cached("payments", "plain").is_some(),
            "the old list until InitDone"
        );
        cache.apply(&watcher::Event::InitDone);
        assert!(accounts.cached("payments", "plain").is_none());
        assert!(accounts.cached("payments", "api").is_some());
        assert_eq!(accounts.get("elsewhere", "api").await, Fact::Known(None));
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
