//! ServiceAccounts as the operator sees them: metadata only, stripped to what the diagnosis
//! reads, cached by one watch per watched namespace.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use compact_str::CompactString;
use irsa_core::{annotations, Fact, Reason, ServiceAccount, Unavailable};
use k8s_openapi::api::core::v1::{ObjectReference, ServiceAccount as KubeServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

use super::sync::Synced;
use super::watch_namespace::WatchNamespace;
use crate::gather;

/// A cached ServiceAccount: its metadata, stripped by [`strip`].
pub type SaMeta = PartialObjectMeta<KubeServiceAccount>;

/// One event of the ServiceAccount watch, once applied to the cache.
pub struct SaEvent {
    /// The watch's event.
    pub event: watcher::Event<SaMeta>,
    /// What it changed that asks for a new verdict ([`Cache::apply`]).
    pub changed: Changed,
}

/// What an event of the ServiceAccount watch changed that asks for a new verdict: a new
/// ServiceAccount or other annotations, not a label or resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Nothing: an unchanged object, a deletion, the first list (the sweep diagnoses it), or a
    /// re-list still under way.
    Nothing,
    /// The `Apply` event's ServiceAccount.
    This,
    /// A re-list (after the watch broke) completed: the ServiceAccounts (namespace, name) it
    /// found new or with other annotations than before. Changes made while the watch was down
    /// are diagnosed now, not at the next sweep.
    WhileAway(Vec<(String, String)>),
}

/// How long a read waits for the caches' initial lists before answering Unavailable.
const SYNC_WAIT: Duration = Duration::from_secs(30);

/// Drops what the diagnosis never reads (labels, owner references, field-manager history, …)
/// before an object enters the cache. Of the managed fields, only when the role-arn annotation
/// was last set is kept: it tells a pod created before the annotation from one the webhook
/// failed to mutate.
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

/// A cached ServiceAccount with an annotation the diagnosis reads (or anything [`Plain`] cannot
/// hold), reduced to what the diagnosis and its Events read. A cache of whole (even stripped)
/// metadata held most of the ~3 KiB each ServiceAccount cost: `ObjectMeta`'s many fields, the
/// reflector's key repeating name, namespace, uid and resourceVersion, and the reduced
/// managed-fields entry as nested JSON maps. This holds the same facts in ~0.2 KiB (heaptrack
/// at 10,000 ServiceAccounts: 1.9 MB).
#[derive(Debug)]
struct Entry {
    uid: Option<Box<str>>,
    /// The annotations the diagnosis reads, sorted by key as the metadata's map was.
    annotations: Box<[(Box<str>, Box<str>)]>,
    created: Option<i64>,
    role_arn_set: Option<i64>,
    deleting: bool,
    /// [`digest`] of every annotation.
    digest: u32,
}

impl Entry {
    /// [`ServiceAccount::wants_irsa`]: the annotations kept are exactly those it looks for.
    fn wants_irsa(&self) -> bool {
        !self.annotations.is_empty()
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

/// A ServiceAccount without an annotation the diagnosis reads, which is most of a cluster's
/// (every namespace's `default` among them): its name (inline up to 24 bytes), creation time
/// and annotations' digest in 32 bytes, where an [`Entry`] under its key costs ~150. Its uid
/// is read again when an Event or a report names it ([`Cache::keep_uid`]): few ever are.
#[derive(Debug)]
struct Plain {
    name: CompactString,
    /// Seconds since the epoch (until 2106; an [`Entry`] holds any other).
    created: u32,
    /// [`digest`] of every annotation.
    digest: u32,
}

/// A digest of every annotation. Any change to them diagnoses the ServiceAccount again (touching
/// an annotation is how a user asks for a new verdict now), and a label change does not; 32 bits
/// keep [`Plain`] small, and a change whose digest collides (odds 2⁻³²) waits for the sweep.
fn digest(annotations: Option<&BTreeMap<String, String>>) -> u32 {
    let mut hasher = DefaultHasher::new();
    annotations.hash(&mut hasher);
    hasher.finish() as u32
}

/// How one ServiceAccount is kept.
enum Stored {
    Full(Entry),
    Plain(Plain),
}

impl Stored {
    fn of(meta: &ObjectMeta) -> Stored {
        // The same reader as everywhere else, so the times read alike.
        let mut sa = gather::service_account(meta);
        let digest = digest(meta.annotations.as_ref());
        // Only these are ever read; the digest stands for the others.
        sa.annotations.retain(|k, _| annotations::is_read(k));
        let deleting = meta.deletion_timestamp.is_some();
        let plain = (sa.annotations.is_empty() && !deleting && sa.role_arn_set.is_none())
            .then(|| u32::try_from(sa.created?).ok())
            .flatten();
        if let Some(created) = plain {
            return Stored::Plain(Plain {
                name: CompactString::from(sa.name.as_str()),
                created,
                digest,
            });
        }
        Stored::Full(Entry {
            uid: meta.uid.as_deref().map(Box::from),
            annotations: sa
                .annotations
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
            created: sa.created,
            role_arn_set: sa.role_arn_set,
            deleting,
            digest,
        })
    }

    fn digest(&self) -> u32 {
        match self {
            Stored::Full(e) => e.digest,
            Stored::Plain(p) => p.digest,
        }
    }
}

/// A cached ServiceAccount, however it is kept.
#[derive(Clone, Copy)]
enum Found<'a> {
    Full(&'a Entry),
    Plain(&'a Plain),
}

impl Found<'_> {
    fn service_account(self, namespace: &str, name: &str) -> ServiceAccount {
        match self {
            Found::Full(e) => e.service_account(namespace, name),
            Found::Plain(p) => ServiceAccount {
                namespace: namespace.to_string(),
                name: name.to_string(),
                annotations: Default::default(),
                created: Some(i64::from(p.created)),
                role_arn_set: None,
            },
        }
    }

    /// The uid, when kept: a [`Plain`] one keeps none.
    fn uid(self) -> Option<String> {
        match self {
            Found::Full(e) => e.uid.as_deref().map(String::from),
            Found::Plain(_) => None,
        }
    }

    fn deleting(self) -> bool {
        matches!(self, Found::Full(e) if e.deleting)
    }

    fn digest(self) -> u32 {
        match self {
            Found::Full(e) => e.digest,
            Found::Plain(p) => p.digest,
        }
    }
}

/// One namespace's ServiceAccounts.
#[derive(Debug, Default)]
struct Accounts {
    full: HashMap<Box<str>, Entry>,
    /// Sorted by name, except in a list being filled (sorted when it completes).
    plain: Vec<Plain>,
}

impl Accounts {
    fn plain_index(&self, name: &str) -> Result<usize, usize> {
        self.plain.binary_search_by(|p| p.name.as_str().cmp(name))
    }

    fn get(&self, name: &str) -> Option<Found<'_>> {
        match self.full.get(name) {
            Some(e) => Some(Found::Full(e)),
            None => self
                .plain_index(name)
                .ok()
                .map(|i| Found::Plain(&self.plain[i])),
        }
    }

    fn remove(&mut self, name: &str) {
        if self.full.remove(name).is_none() {
            if let Ok(i) = self.plain_index(name) {
                self.plain.remove(i);
            }
        }
    }

    /// Keeps `stored` as `name`, replacing what was there; `true` when it is new or its
    /// annotations changed.
    fn put(&mut self, name: &str, stored: Stored) -> bool {
        let changed = self
            .get(name)
            .is_none_or(|old| old.digest() != stored.digest());
        self.remove(name);
        match stored {
            Stored::Full(e) => {
                self.full.insert(name.into(), e);
            }
            Stored::Plain(p) => {
                let at = self.plain_index(name).unwrap_or_else(|at| at);
                self.plain.insert(at, p);
            }
        }
        changed
    }

    /// Adds a listed ServiceAccount; [`Accounts::finish_list`] sorts once the list is complete.
    fn push_listed(&mut self, name: &str, stored: Stored) {
        match stored {
            Stored::Full(e) => {
                self.full.insert(name.into(), e);
            }
            Stored::Plain(p) => self.plain.push(p),
        }
    }

    /// Sorts a complete list, drops duplicate names and trims what the list grew spare.
    fn finish_list(&mut self) {
        self.plain.sort_by(|a, b| a.name.cmp(&b.name));
        self.plain.dedup_by(|a, b| a.name == b.name);
        self.plain.shrink_to_fit();
        self.full.shrink_to_fit();
    }

    fn is_empty(&self) -> bool {
        self.full.is_empty() && self.plain.is_empty()
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.full
            .keys()
            .map(|n| &**n)
            .chain(self.plain.iter().map(|p| p.name.as_str()))
    }
}

type Namespaces = HashMap<Box<str>, Accounts>;

/// A list under way: what it has listed, and (in a re-list) what differs from the live map.
#[derive(Debug, Default)]
struct Listing {
    listed: Namespaces,
    changed: Vec<(String, String)>,
}

/// The live map, and the list that will replace it.
#[derive(Debug, Default)]
struct State {
    live: Namespaces,
    listing: Option<Listing>,
    /// A list has completed: a later one is a re-list, compared with the live map.
    listed_once: bool,
}

/// The ServiceAccounts of one watched scope by namespace and name, fed by its watch's events.
/// A re-list builds a new map and replaces the old one when it completes, as kube's reflector
/// does, so readers never see a partial list.
#[derive(Debug, Default)]
pub struct Cache {
    inner: RwLock<State>,
}

fn names(meta: &ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

impl Cache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one event of the ServiceAccount watch (objects already [`strip`]ped), and says
    /// what it changed that asks for a new verdict ([`Changed`]).
    pub fn apply(&self, event: &watcher::Event<SaMeta>) -> Changed {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        match event {
            watcher::Event::Init => state.listing = Some(Listing::default()),
            watcher::Event::InitApply(sa) => {
                if let Some(listing) = state.listing.as_mut() {
                    let (namespace, name) = names(&sa.metadata);
                    let stored = Stored::of(&sa.metadata);
                    if state.listed_once
                        && state
                            .live
                            .get(namespace)
                            .and_then(|accounts| accounts.get(name))
                            .is_none_or(|old| old.digest() != stored.digest())
                    {
                        listing.changed.push((namespace.into(), name.into()));
                    }
                    listing
                        .listed
                        .entry(namespace.into())
                        .or_default()
                        .push_listed(name, stored);
                }
            }
            watcher::Event::InitDone => {
                if let Some(mut listing) = state.listing.take() {
                    listing.listed.values_mut().for_each(Accounts::finish_list);
                    state.live = listing.listed;
                    state.listed_once = true;
                    if !listing.changed.is_empty() {
                        return Changed::WhileAway(listing.changed);
                    }
                }
            }
            watcher::Event::Apply(sa) => {
                let (namespace, name) = names(&sa.metadata);
                let changed = state
                    .live
                    .entry(namespace.into())
                    .or_default()
                    .put(name, Stored::of(&sa.metadata));
                if changed {
                    return Changed::This;
                }
            }
            watcher::Event::Delete(sa) => {
                let (namespace, name) = names(&sa.metadata);
                if let Some(accounts) = state.live.get_mut(namespace) {
                    accounts.remove(name);
                    if accounts.is_empty() {
                        state.live.remove(namespace);
                    }
                }
            }
        }
        Changed::Nothing
    }

    fn with<T>(&self, namespace: &str, name: &str, f: impl FnOnce(Found<'_>) -> T) -> Option<T> {
        self.read().live.get(namespace)?.get(name).map(f)
    }

    /// Keeps `uid`, read from the API server, for a ServiceAccount kept [`Plain`], as an
    /// [`Entry`] from now on (until a re-list): it is named by Events or a report.
    fn keep_uid(&self, namespace: &str, name: &str, uid: &str) {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let Some(accounts) = guard.live.get_mut(namespace) else {
            return;
        };
        let Ok(i) = accounts.plain_index(name) else {
            return;
        };
        let plain = accounts.plain.remove(i);
        accounts.full.insert(
            name.into(),
            Entry {
                uid: Some(uid.into()),
                annotations: Box::default(),
                created: Some(i64::from(plain.created)),
                role_arn_set: None,
                deleting: false,
                digest: plain.digest,
            },
        );
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
        Fact::Known(cache.with(namespace, name, |found| {
            found.service_account(namespace, name)
        }))
    }

    /// A reference to a cached ServiceAccount for Events and reports; without a uid when it is
    /// kept [`Plain`] (then read it from the API server and [`ServiceAccounts::keep_uid`]).
    pub fn reference(&self, namespace: &str, name: &str) -> Option<ObjectReference> {
        let uid = self
            .cache(namespace)?
            .with(namespace, name, |found| found.uid())?;
        Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ServiceAccount".into()),
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            uid,
            ..ObjectReference::default()
        })
    }

    /// Keeps the uid read from the API server for cached ServiceAccount `namespace`/`name`.
    pub fn keep_uid(&self, namespace: &str, name: &str, uid: &str) {
        if let Some(cache) = self.cache(namespace) {
            cache.keep_uid(namespace, name, uid);
        }
    }

    /// A cached ServiceAccount, without waiting for the initial list; `None` when not cached
    /// (absent, being deleted, or in a namespace that is not watched).
    pub fn cached(&self, namespace: &str, name: &str) -> Option<ServiceAccount> {
        self.cache(namespace)?
            .with(namespace, name, |found| {
                (!found.deleting()).then(|| found.service_account(namespace, name))
            })
            .flatten()
    }

    /// The names of the cached ServiceAccounts of `namespace`, for naming a near miss.
    pub fn names_in(&self, namespace: &str) -> Vec<String> {
        self.cache(namespace)
            .and_then(|c| {
                c.read()
                    .live
                    .get(namespace)
                    .map(|accounts| accounts.names().map(String::from).collect())
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
            for (namespace, accounts) in &cache.read().live {
                // A ServiceAccount kept plain does not ask for IRSA.
                wanting.extend(
                    accounts
                        .full
                        .iter()
                        .filter(|(_, e)| !e.deleting && e.wants_irsa())
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

    fn with_uid(mut sa: SaMeta, uid: &str) -> SaMeta {
        sa.metadata.uid = Some(uid.into());
        sa.metadata.creation_timestamp = Some(time("2026-02-01T00:00:00Z"));
        sa
    }

    #[tokio::test]
    async fn plain_service_accounts_are_kept_small_and_changes_are_told() {
        assert_eq!(std::mem::size_of::<Plain>(), 32, "the unannotated majority");
        let cache = Arc::new(Cache::default());
        let accounts = ServiceAccounts::new(vec![(WatchNamespace::All, cache.clone())], {
            let synced = Synced::new(1);
            synced.tracker()(&watcher::Event::<SaMeta>::InitDone);
            synced
        });
        let uid = "0b5e3a36-5c4e-4f0e-9d1a-2f6c9f1e7a10";
        let plain = |name: &str, annotations: &[(&str, &str)]| {
            let mut sa = with_uid(sa(name, annotations, "2026-03-01T00:00:00Z"), uid);
            sa.metadata.managed_fields = None;
            sa
        };
        cache.apply(&watcher::Event::Init);
        for name in ["zeta", "default", "build-bot"] {
            cache.apply(&watcher::Event::InitApply(plain(name, &[])));
        }
        cache.apply(&watcher::Event::InitDone);
        {
            let listed = cache.read();
            let kept = &listed.live["payments"];
            assert!(kept.full.is_empty(), "{:?}", kept.full);
            let names: Vec<&str> = kept.plain.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(
                names,
                ["build-bot", "default", "zeta"],
                "sorted once listed"
            );
        }

        let default = accounts.cached("payments", "default").expect("cached");
        assert_eq!(
            (
                default.created,
                default.annotations.len(),
                default.wants_irsa()
            ),
            (Some(time("2026-02-01T00:00:00Z").0.as_second()), 0, false)
        );
        assert_eq!(
            accounts
                .reference("payments", "default")
                .map(|r| (r.name, r.uid)),
            Some((Some("default".into()), None)),
            "a plain one keeps no uid"
        );
        accounts.keep_uid("payments", "default", uid);
        assert_eq!(
            accounts
                .reference("payments", "default")
                .and_then(|r| r.uid),
            Some(uid.into()),
            "the uid read again is kept"
        );
        assert_eq!(
            accounts.cached("payments", "default").map(|sa| sa.created),
            Some(default.created),
            "and so is the rest"
        );
        assert!(accounts.wanting_irsa().is_empty());

        let role = [(
            irsa_core::annotations::ROLE_ARN,
            "arn:aws:iam::111122223333:role/api",
        )];
        assert!(
            cache.apply(&watcher::Event::Apply(plain("default", &[("touch", "1")])))
                == Changed::This,
            "touching any annotation asks for a new verdict"
        );
        assert!(
            cache.read().live["payments"].full.is_empty(),
            "still kept plain: the diagnosis reads no such annotation"
        );
        let mut labelled = plain("default", &[("touch", "1")]);
        labelled.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
        assert!(
            cache.apply(&watcher::Event::Apply(labelled)) == Changed::Nothing,
            "a label change is no reason to diagnose again"
        );
        assert!(
            cache.apply(&watcher::Event::Apply(plain("default", &role))) == Changed::This,
            "annotated"
        );
        assert_eq!(
            accounts.wanting_irsa(),
            [("payments".to_string(), "default".to_string())]
        );
        assert_eq!(
            cache.apply(&watcher::Event::Apply(plain("default", &role))),
            Changed::Nothing
        );
        assert!(
            cache.apply(&watcher::Event::Apply(plain("default", &[]))) == Changed::This,
            "the annotation removed"
        );
        assert!(accounts.wanting_irsa().is_empty());
        assert!(
            cache.apply(&watcher::Event::Apply(plain("new", &[]))) == Changed::This,
            "created"
        );
        let mut names = accounts.names_in("payments");
        names.sort();
        assert_eq!(names, ["build-bot", "default", "new", "zeta"]);
        assert!(cache.read().live["payments"].full.is_empty());
        cache.apply(&watcher::Event::Delete(plain("zeta", &[])));
        assert_eq!(accounts.get("payments", "zeta").await, Fact::Known(None));
    }

    #[test]
    fn a_relist_tells_what_changed_while_the_watch_was_down() {
        let cache = Cache::default();
        let listed = |name: &str, arn: Option<&str>| {
            let annotations: Vec<(&str, &str)> = arn
                .map(|a| vec![(irsa_core::annotations::ROLE_ARN, a)])
                .unwrap_or_default();
            watcher::Event::InitApply(sa(name, &annotations, "2026-03-01T00:00:00Z"))
        };
        let list = |objects: Vec<watcher::Event<SaMeta>>| {
            let mut told = vec![cache.apply(&watcher::Event::Init)];
            told.extend(objects.iter().map(|o| cache.apply(o)));
            let done = cache.apply(&watcher::Event::InitDone);
            assert!(told.iter().all(|t| *t == Changed::Nothing), "{told:?}");
            done
        };
        assert_eq!(
            list(vec![
                listed("api", Some("arn:aws:iam::111122223333:role/api")),
                listed("worker", None),
                listed("gone", None)
            ]),
            Changed::Nothing,
            "the first list is the sweep's to diagnose"
        );
        let moved = "arn:aws:iam::111122223333:role/api-v2";
        assert_eq!(
            list(vec![
                listed("api", Some(moved)),
                listed("new", None),
                listed("worker", None)
            ]),
            Changed::WhileAway(vec![
                ("payments".into(), "api".into()),
                ("payments".into(), "new".into())
            ]),
            "re-annotated and created while away; unchanged and deleted ones are not told"
        );
        assert_eq!(
            list(vec![listed("api", Some(moved)), listed("worker", None)]),
            Changed::Nothing,
            "nothing changed"
        );
    }

    #[test]
    fn a_complete_list_is_sorted_and_kept_without_slack() {
        let cache = Cache::default();
        let listed = |namespace: &str, name: &str| {
            let mut sa = with_uid(
                sa(name, &[], "2026-03-01T00:00:00Z"),
                "0b5e3a36-5c4e-4f0e-9d1a-2f6c9f1e7a10",
            );
            sa.metadata.namespace = Some(namespace.into());
            sa.metadata.managed_fields = None;
            watcher::Event::InitApply(sa)
        };
        cache.apply(&watcher::Event::Init);
        for i in [3, 0, 4, 1] {
            cache.apply(&listed("payments", &format!("sa-{i}")));
        }
        cache.apply(&listed("shipping", "default"));
        // Out of order, and a name listed twice.
        cache.apply(&listed("payments", "sa-2"));
        cache.apply(&listed("payments", "sa-0"));
        assert!(cache.read().live.is_empty(), "a partial list is not read");
        cache.apply(&watcher::Event::InitDone);
        let guard = cache.read();
        let payments = &guard.live["payments"].plain;
        let names: Vec<&str> = payments.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["sa-0", "sa-1", "sa-2", "sa-3", "sa-4"]);
        assert_eq!(payments.capacity(), 5, "no growth slack kept");
        assert_eq!(guard.live["shipping"].plain.len(), 1);
        assert!(guard.listing.is_none());
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
