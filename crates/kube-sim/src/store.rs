//! The object store: every object, one global resourceVersion counter, and the history of
//! changes that watches replay from. All API machinery semantics that are not HTTP live here:
//! metadata stamping, generation, status-subresource isolation, optimistic concurrency,
//! finalizers and garbage collection.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::errors::ApiError;
use crate::resources::ResourceType;

/// Where a kind of object is kept: (group, plural).
pub type StorageKey = (String, String);

/// The kind of a change, as watch events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// Created.
    Added,
    /// Updated (including gaining a deletionTimestamp).
    Modified,
    /// Removed.
    Deleted,
}

impl ChangeType {
    /// `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// Which bucket.
    pub storage: StorageKey,
    /// What happened.
    pub change: ChangeType,
    /// The object after the change (its last state for deletions).
    pub object: Arc<Value>,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object itself: `.status` is kept when the type has a status subresource.
    Main,
    /// The `/status` subresource: only `.status` changes.
    Status,
}

/// What happens to dependents when their owner goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted after the owner.
    Background,
    /// Dependents are deleted before the owner.
    Foreground,
    /// Dependents lose their owner reference and stay.
    Orphan,
}

type Objects = BTreeMap<(String, String), Value>;

struct Inner {
    rv: u64,
    buckets: HashMap<StorageKey, Objects>,
    history: VecDeque<Change>,
    history_limit: usize,
    /// History holds every change with rv greater than this.
    compacted_to: u64,
    generated: u64,
}

/// The object store.
pub struct Store {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Change>,
}

/// Current time as the API server writes timestamps.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

/// Whether anything outside metadata and status differs: that is what bumps `generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for k in ["metadata", "status", "apiVersion", "kind"] {
                m.remove(k);
            }
        }
        v
    };
    strip(old) != strip(new)
}

fn has_finalizers(obj: &Value) -> bool {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

fn key(ns: Option<&str>, name: &str) -> (String, String) {
    (ns.unwrap_or_default().to_string(), name.to_string())
}

impl Store {
    /// An empty store keeping the last `history_limit` changes for watch resumption.
    pub fn new(history_limit: usize) -> Store {
        let (changes, _) = broadcast::channel(65_536);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                buckets: HashMap::new(),
                history: VecDeque::new(),
                history_limit: history_limit.max(1),
                compacted_to: 1,
                generated: 0,
            }),
            changes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Live changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Subscribes and returns the recorded changes after `rv`, atomically, so nothing falls
    /// between them; `Err` (410) when `rv` is older than the history kept.
    pub fn watch_from(
        &self,
        rv: u64,
    ) -> Result<(Vec<Change>, broadcast::Receiver<Change>), ApiError> {
        let inner = self.lock();
        if rv < inner.compacted_to {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                inner.compacted_to
            )));
        }
        let receiver = self.changes.subscribe();
        let replay = inner
            .history
            .iter()
            .filter(|c| c.rv > rv)
            .cloned()
            .collect();
        Ok((replay, receiver))
    }

    /// Every object of a bucket in `ns` (all namespaces when `None`), sorted, with the list's rv.
    pub fn list(&self, storage: &StorageKey, ns: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .buckets
            .get(storage)
            .map(|objects| {
                objects
                    .iter()
                    .filter(|((o_ns, _), _)| ns.is_none_or(|n| n == o_ns))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.rv)
    }

    /// Every object in every bucket, for inspection.
    pub fn dump(&self) -> Vec<(StorageKey, Value)> {
        let inner = self.lock();
        inner
            .buckets
            .iter()
            .flat_map(|(k, objects)| objects.values().map(move |v| (k.clone(), v.clone())))
            .collect()
    }

    /// One object.
    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.lock()
            .buckets
            .get(&rt.storage())
            .and_then(|o| o.get(&key(ns, name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))
    }

    /// Creates an object: stamps uid, resourceVersion, creationTimestamp, generation and the
    /// namespace; expands `generateName`.
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let mut inner = self.lock();
        if let (Some(ns), true) = (ns, rt.namespaced) {
            let exists = inner
                .buckets
                .get(&(String::new(), "namespaces".to_string()))
                .is_some_and(|o| o.contains_key(&key(None, ns)));
            if !exists {
                return Err(ApiError::not_found("namespaces", ns));
            }
            if let Some(body_ns) = meta_str(&obj, "namespace") {
                if body_ns != ns {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
                    )));
                }
            }
        }
        let name = match (meta_str(&obj, "name"), meta_str(&obj, "generateName")) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(prefix)) if !prefix.is_empty() => {
                inner.generated += 1;
                format!("{prefix}{:05x}", inner.generated)
            }
            _ => {
                return Err(ApiError::invalid(
                    &rt.kind,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ))
            }
        };
        if !is_dns_subdomain(&name) {
            return Err(ApiError::invalid(
                &rt.kind,
                &name,
                "metadata.name",
                "Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            ));
        }
        let storage = rt.storage();
        if inner
            .buckets
            .get(&storage)
            .is_some_and(|o| o.contains_key(&key(ns, &name)))
        {
            return Err(ApiError::already_exists(&rt.qualified(), &name));
        }
        let m = meta_mut(&mut obj);
        m.insert("name".into(), json!(name));
        if let (Some(ns), true) = (ns, rt.namespaced) {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now()));
        m.insert("generation".into(), json!(1));
        m.remove("deletionTimestamp");
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        Ok(self.put(&mut inner, &storage, ns, &name, obj, ChangeType::Added))
    }

    /// Replaces an object (or its status). A non-empty `metadata.resourceVersion` in `new` must
    /// match the stored one (409 otherwise). Removing the last finalizer of an object being
    /// deleted removes it.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        new: Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let storage = rt.storage();
        let old = inner
            .buckets
            .get(&storage)
            .and_then(|o| o.get(&key(ns, name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))?;
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(n) = meta_str(&new, "name") {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        match meta_str(&new, "resourceVersion") {
            Some(rv) if !rv.is_empty() && Some(rv) != meta_str(&old, "resourceVersion") => {
                return Err(ApiError::conflict(&rt.qualified(), name));
            }
            _ => {}
        }
        let mut merged = match part {
            Part::Status => {
                let mut o = old.clone();
                o["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                if o["status"].is_null() {
                    o.as_object_mut().map(|m| m.remove("status"));
                }
                o
            }
            Part::Main => {
                let mut n = new;
                if rt.status_subresource {
                    match old.get("status") {
                        Some(s) => n["status"] = s.clone(),
                        None => {
                            n.as_object_mut().map(|m| m.remove("status"));
                        }
                    }
                }
                n
            }
        };
        // Immutable and server-owned metadata.
        let old_meta = meta(&old).cloned().unwrap_or_default();
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let bump = part == Part::Main && spec_changed(&old, &merged);
        let m = meta_mut(&mut merged);
        for k in [
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "deletionTimestamp",
        ] {
            match old_meta.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
        m.insert(
            "generation".into(),
            json!(if bump { generation + 1 } else { generation }),
        );
        merged["apiVersion"] = json!(rt.api_version());
        merged["kind"] = json!(rt.kind);
        if meta(&merged).is_some_and(|m| m.contains_key("deletionTimestamp"))
            && !has_finalizers(&merged)
        {
            self.remove(&mut inner, &storage, ns, name, Propagation::Background);
            return Ok(merged);
        }
        Ok(self.put(&mut inner, &storage, ns, name, merged, ChangeType::Modified))
    }

    /// Deletes an object: with finalizers it only gains a deletionTimestamp; without, it goes,
    /// and its dependents follow `propagation`.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        propagation: Propagation,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let storage = rt.storage();
        let obj = inner
            .buckets
            .get(&storage)
            .and_then(|o| o.get(&key(ns, name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))?;
        if propagation == Propagation::Foreground {
            if let Some(uid) = meta_str(&obj, "uid").map(str::to_string) {
                self.collect_dependents(&mut inner, &uid, Propagation::Foreground);
            }
        }
        if has_finalizers(&obj) {
            if meta(&obj).is_some_and(|m| m.contains_key("deletionTimestamp")) {
                return Ok(obj);
            }
            let mut marked = obj;
            meta_mut(&mut marked).insert("deletionTimestamp".into(), json!(now()));
            return Ok(self.put_modified(&mut inner, &storage, ns, name, marked));
        }
        Ok(self
            .remove(&mut inner, &storage, ns, name, propagation)
            .unwrap_or(obj))
    }

    /// Removes an object for good, then handles its dependents and, for a namespace, its contents.
    fn remove(
        &self,
        inner: &mut Inner,
        storage: &StorageKey,
        ns: Option<&str>,
        name: &str,
        propagation: Propagation,
    ) -> Option<Value> {
        let mut obj = inner.buckets.get_mut(storage)?.remove(&key(ns, name))?;
        inner.rv += 1;
        let rv = inner.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        self.record(inner, rv, storage.clone(), ChangeType::Deleted, &obj);
        if storage == &(String::new(), "namespaces".to_string()) {
            let contents: Vec<(StorageKey, String)> = inner
                .buckets
                .iter()
                .flat_map(|(k, objects)| {
                    objects
                        .keys()
                        .filter(|(o_ns, _)| o_ns == name)
                        .map(move |(_, n)| (k.clone(), n.clone()))
                })
                .collect();
            for (k, n) in contents {
                self.remove(inner, &k, Some(name), &n, Propagation::Background);
            }
        }
        if let Some(uid) = meta_str(&obj, "uid").map(str::to_string) {
            self.collect_dependents(inner, &uid, propagation);
        }
        Some(obj)
    }

    /// Garbage collection: objects whose ownerReferences name `uid`.
    fn collect_dependents(&self, inner: &mut Inner, uid: &str, propagation: Propagation) {
        let dependents: Vec<(StorageKey, String, String)> = inner
            .buckets
            .iter()
            .flat_map(|(k, objects)| {
                objects.iter().filter_map(move |((ns, name), v)| {
                    let owned = meta(v)
                        .and_then(|m| m.get("ownerReferences"))
                        .and_then(Value::as_array)
                        .is_some_and(|refs| {
                            refs.iter()
                                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                        });
                    owned.then(|| (k.clone(), ns.clone(), name.clone()))
                })
            })
            .collect();
        for (storage, ns, name) in dependents {
            let ns = (!ns.is_empty()).then_some(ns.as_str());
            if propagation == Propagation::Orphan {
                let Some(obj) = inner
                    .buckets
                    .get(&storage)
                    .and_then(|o| o.get(&key(ns, &name)))
                else {
                    continue;
                };
                let mut updated = obj.clone();
                if let Some(refs) = updated["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                }
                self.put_modified(inner, &storage, ns, &name, updated);
            } else {
                let has_fin = inner
                    .buckets
                    .get(&storage)
                    .and_then(|o| o.get(&key(ns, &name)))
                    .is_some_and(has_finalizers);
                if has_fin {
                    // Finalizers hold a dependent until its controller lets go, as in a real cluster.
                    let Some(obj) = inner
                        .buckets
                        .get(&storage)
                        .and_then(|o| o.get(&key(ns, &name)))
                    else {
                        continue;
                    };
                    if obj["metadata"].get("deletionTimestamp").is_none() {
                        let mut updated = obj.clone();
                        updated["metadata"]["deletionTimestamp"] = json!(now());
                        self.put_modified(inner, &storage, ns, &name, updated);
                    }
                } else {
                    self.remove(inner, &storage, ns, &name, Propagation::Background);
                }
            }
        }
    }

    /// Stores a changed object under a new resourceVersion and records the change.
    fn put_modified(
        &self,
        inner: &mut Inner,
        storage: &StorageKey,
        ns: Option<&str>,
        name: &str,
        obj: Value,
    ) -> Value {
        self.put(inner, storage, ns, name, obj, ChangeType::Modified)
    }

    /// Stores an object under a new resourceVersion and records the change.
    fn put(
        &self,
        inner: &mut Inner,
        storage: &StorageKey,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        change: ChangeType,
    ) -> Value {
        inner.rv += 1;
        let rv = inner.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        inner
            .buckets
            .entry(storage.clone())
            .or_default()
            .insert(key(ns, name), obj.clone());
        self.record(inner, rv, storage.clone(), change, &obj);
        obj
    }

    fn record(
        &self,
        inner: &mut Inner,
        rv: u64,
        storage: StorageKey,
        change: ChangeType,
        obj: &Value,
    ) {
        let c = Change {
            rv,
            storage,
            change,
            object: Arc::new(obj.clone()),
        };
        inner.history.push_back(c.clone());
        while inner.history.len() > inner.history_limit {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted_to = old.rv;
            }
        }
        // No receiver is fine: nobody watches.
        let _ = self.changes.send(c);
    }

    /// Forgets history up to now, so that watches from any earlier resourceVersion get 410.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted_to = inner.rv;
    }

    /// Removes every object of a bucket (a CRD went away).
    pub fn drop_bucket(&self, storage: &StorageKey) {
        let mut inner = self.lock();
        let names: Vec<(String, String)> = inner
            .buckets
            .get(storage)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for (ns, name) in names {
            let ns = (!ns.is_empty()).then_some(ns);
            self.remove(
                &mut inner,
                storage,
                ns.as_deref(),
                &name,
                Propagation::Background,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtins;

    fn rt(plural: &str) -> ResourceType {
        builtins()
            .into_iter()
            .find(|r| r.plural == plural && r.group.is_empty())
            .unwrap()
    }

    fn store() -> Store {
        let s = Store::new(1000);
        s.create(&rt("namespaces"), None, json!({"metadata": {"name": "ns"}}))
            .unwrap();
        s
    }

    #[test]
    fn stamps_metadata_and_bumps_generation_on_spec_changes_only() {
        let s = store();
        let pods = rt("pods");
        let created = s
            .create(
                &pods,
                Some("ns"),
                json!({"metadata": {"generateName": "probe-"}, "spec": {"a": 1}}),
            )
            .unwrap();
        let name = created["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("probe-"));
        assert_eq!(created["metadata"]["generation"], 1);
        assert_eq!(created["metadata"]["namespace"], "ns");
        assert_eq!(created["kind"], "Pod");
        let mut status = created.clone();
        status["status"] = json!({"phase": "Running"});
        let after = s
            .update(&pods, Some("ns"), &name, status, Part::Status)
            .unwrap();
        assert_eq!(after["metadata"]["generation"], 1);
        assert_eq!(after["status"]["phase"], "Running");
        // Writes to the object keep .status.
        let mut spec = after.clone();
        spec["spec"] = json!({"a": 2});
        spec["status"] = json!({"phase": "Hacked"});
        let after = s
            .update(&pods, Some("ns"), &name, spec, Part::Main)
            .unwrap();
        assert_eq!(after["metadata"]["generation"], 2);
        assert_eq!(after["status"]["phase"], "Running");
        // A stale resourceVersion conflicts.
        let stale = s
            .update(&pods, Some("ns"), &name, created, Part::Main)
            .unwrap_err();
        assert_eq!(stale.code, 409);
    }

    #[test]
    fn finalizers_delay_deletion_and_owners_collect_dependents() {
        let s = store();
        let (pods, sas) = (rt("pods"), rt("serviceaccounts"));
        let owner = s
            .create(
                &sas,
                Some("ns"),
                json!({"metadata": {"name": "owner", "finalizers": ["x"]}}),
            )
            .unwrap();
        let uid = owner["metadata"]["uid"].clone();
        s.create(&pods, Some("ns"), json!({"metadata": {"name": "dep", "ownerReferences": [{"uid": uid, "kind": "ServiceAccount", "name": "owner", "apiVersion": "v1"}]}})).unwrap();
        let marked = s
            .delete(&sas, Some("ns"), "owner", Propagation::Background)
            .unwrap();
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        assert!(
            s.get(&pods, Some("ns"), "dep").is_ok(),
            "the owner still exists"
        );
        let mut released = marked.clone();
        released["metadata"]["finalizers"] = json!([]);
        s.update(&sas, Some("ns"), "owner", released, Part::Main)
            .unwrap();
        assert_eq!(s.get(&sas, Some("ns"), "owner").unwrap_err().code, 404);
        assert_eq!(
            s.get(&pods, Some("ns"), "dep").unwrap_err().code,
            404,
            "garbage collected"
        );
    }

    #[test]
    fn history_is_bounded_and_old_versions_are_gone() {
        let s = Store::new(3);
        s.create(&rt("namespaces"), None, json!({"metadata": {"name": "ns"}}))
            .unwrap();
        for i in 0..5 {
            s.create(
                &rt("configmaps"),
                Some("ns"),
                json!({"metadata": {"name": format!("c{i}")}}),
            )
            .unwrap();
        }
        assert_eq!(s.watch_from(2).unwrap_err().code, 410);
        let (replay, _) = s.watch_from(s.current_rv() - 2).unwrap();
        assert_eq!(replay.len(), 2);
    }
}
