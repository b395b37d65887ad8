//! A pure index fed by the IrsaCheck watch: which IrsaChecks name a ServiceAccount.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use kube::core::DynamicObject;
use kube::runtime::watcher;
use kube::ResourceExt;

/// (namespace, name).
pub type Key = (String, String);

/// IrsaChecks by the ServiceAccount they name, kept from the IrsaCheck watch's events.
#[derive(Debug, Default)]
pub struct CheckIndex {
    inner: RwLock<Checks>,
}

#[derive(Debug, Default)]
struct Checks {
    /// Check → the ServiceAccount it names (`None`: it names none readable).
    by_check: HashMap<Key, Option<String>>,
    /// (namespace, ServiceAccount) → the checks naming it.
    by_service_account: HashMap<Key, HashSet<String>>,
    /// A re-list in progress replaces everything when it completes.
    relist: Option<HashMap<Key, Option<String>>>,
}

/// The ServiceAccount an IrsaCheck names, read leniently: a malformed object names none.
fn named_service_account(check: &DynamicObject) -> Option<String> {
    check
        .data
        .get("spec")?
        .get("serviceAccountName")?
        .as_str()
        .map(str::to_string)
}

fn key(check: &DynamicObject) -> Key {
    (check.namespace().unwrap_or_default(), check.name_any())
}

impl Checks {
    fn remove(&mut self, check: &Key) {
        if let Some(Some(sa)) = self.by_check.remove(check) {
            let sa_key = (check.0.clone(), sa);
            if let Some(set) = self.by_service_account.get_mut(&sa_key) {
                set.remove(&check.1);
                if set.is_empty() {
                    self.by_service_account.remove(&sa_key);
                }
            }
        }
    }

    fn insert(&mut self, check: Key, sa: Option<String>) {
        self.remove(&check);
        if let Some(sa) = &sa {
            self.by_service_account
                .entry((check.0.clone(), sa.clone()))
                .or_default()
                .insert(check.1.clone());
        }
        self.by_check.insert(check, sa);
    }
}

impl CheckIndex {
    /// Applies one event of the IrsaCheck watch.
    pub fn observe(&self, event: &watcher::Event<DynamicObject>) {
        let mut c = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match event {
            watcher::Event::Init => c.relist = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                if let Some(relist) = c.relist.as_mut() {
                    relist.insert(key(obj), named_service_account(obj));
                }
            }
            watcher::Event::InitDone => {
                let listed = c.relist.take().unwrap_or_default();
                *c = Checks::default();
                for (check, sa) in listed {
                    c.insert(check, sa);
                }
            }
            watcher::Event::Apply(obj) => c.insert(key(obj), named_service_account(obj)),
            watcher::Event::Delete(obj) => c.remove(&key(obj)),
        }
    }

    /// Names of the IrsaChecks in `namespace` that name ServiceAccount `name`.
    pub fn naming(&self, namespace: &str, name: &str) -> Vec<String> {
        let c = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = c
            .by_service_account
            .get(&(namespace.to_string(), name.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Whether the IrsaCheck `namespace/name` exists, as last seen.
    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        let c = self.inner.read().unwrap_or_else(|p| p.into_inner());
        c.by_check
            .contains_key(&(namespace.to_string(), name.to_string()))
    }

    /// Whether any IrsaCheck names this ServiceAccount.
    pub fn is_named(&self, namespace: &str, name: &str) -> bool {
        let c = self.inner.read().unwrap_or_else(|p| p.into_inner());
        c.by_service_account
            .contains_key(&(namespace.to_string(), name.to_string()))
    }

    /// Every IrsaCheck known, by (namespace, name).
    pub fn checks(&self) -> HashSet<Key> {
        let c = self.inner.read().unwrap_or_else(|p| p.into_inner());
        c.by_check.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(ns: &str, name: &str, sa: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "irsa-doctor.io/v1alpha1", "kind": "IrsaCheck",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"serviceAccountName": sa},
        }))
        .unwrap()
    }

    #[test]
    fn index_follows_applies_deletes_and_relists() {
        let index = CheckIndex::default();
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(check("a", "c1", json!("api"))));
        index.observe(&watcher::Event::InitApply(check("a", "c2", json!("api"))));
        index.observe(&watcher::Event::InitApply(check("a", "bad", json!(123))));
        assert!(
            index.naming("a", "api").is_empty(),
            "nothing until InitDone"
        );
        index.observe(&watcher::Event::InitDone);
        assert_eq!(index.naming("a", "api"), ["c1", "c2"]);
        assert_eq!(
            index.checks().len(),
            3,
            "a malformed check is still a check"
        );
        assert!(!index.is_named("b", "api"), "namespaces are apart");

        index.observe(&watcher::Event::Apply(check("a", "c2", json!("worker"))));
        assert_eq!(index.naming("a", "api"), ["c1"]);
        assert_eq!(index.naming("a", "worker"), ["c2"]);
        index.observe(&watcher::Event::Delete(check("a", "c1", json!("api"))));
        assert!(!index.is_named("a", "api"));

        // A re-list drops what it no longer lists.
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(check("a", "c3", json!("api"))));
        index.observe(&watcher::Event::InitDone);
        assert_eq!(index.naming("a", "api"), ["c3"]);
        assert!(!index.is_named("a", "worker"));
    }
}
