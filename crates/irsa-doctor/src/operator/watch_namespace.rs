//! Which namespaces the operator watches: all, or a list given by configuration.

use kube::api::Api;
use kube::Resource;

/// One watched scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchNamespace {
    /// Every namespace.
    All,
    /// One namespace.
    One(String),
}

impl WatchNamespace {
    /// The scopes for `--namespaces`: all when the list is empty.
    pub fn from_list(namespaces: &[String]) -> Vec<WatchNamespace> {
        if namespaces.is_empty() {
            vec![WatchNamespace::All]
        } else {
            namespaces
                .iter()
                .cloned()
                .map(WatchNamespace::One)
                .collect()
        }
    }

    /// An API handle for namespaced `K` in this scope.
    pub fn api<K>(&self, client: &kube::Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            WatchNamespace::All => Api::all(client.clone()),
            WatchNamespace::One(ns) => Api::namespaced(client.clone(), ns),
        }
    }

    /// An API handle for a dynamic resource in this scope.
    pub fn api_with(
        &self,
        client: &kube::Client,
        resource: &kube::core::ApiResource,
    ) -> Api<kube::core::DynamicObject> {
        match self {
            WatchNamespace::All => Api::all_with(client.clone(), resource),
            WatchNamespace::One(ns) => Api::namespaced_with(client.clone(), ns, resource),
        }
    }

    /// Whether `namespace` is in this scope.
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            WatchNamespace::All => true,
            WatchNamespace::One(ns) => ns == namespace,
        }
    }

    /// For messages: "all namespaces" or "namespace x".
    pub fn describe(&self) -> String {
        match self {
            WatchNamespace::All => "all namespaces".into(),
            WatchNamespace::One(ns) => format!("namespace {ns}"),
        }
    }
}
