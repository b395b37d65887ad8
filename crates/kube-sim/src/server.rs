//! The HTTP face of the simulator: routing, discovery, verbs, watch streams, tables.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::errors::ApiError;
use crate::events;
use crate::patch;
use crate::resources::{self, ResourceType};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{Change, ChangeType, Part, Propagation, Store};
use crate::table;
use crate::token::TokenIssuer;
use crate::webhook::{self, WebhookOptions};

/// Requests to fail on purpose: the next `remaining` requests to `plural` (and `verb`, if set).
#[derive(Debug, Clone)]
pub struct Fault {
    /// Resource plural, e.g. `pods`, or a subresource, e.g. `pods/status` (only that then).
    pub plural: String,
    /// Verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`), or any.
    pub verb: Option<String>,
    /// How many more requests fail.
    pub remaining: usize,
    /// The HTTP code they fail with.
    pub code: u16,
}

/// Everything the handlers share.
pub struct SimState {
    /// Objects and history.
    pub store: Store,
    /// Served resource types.
    pub types: RwLock<Vec<ResourceType>>,
    /// Pod identity webhook emulation, when on.
    pub webhook: RwLock<Option<WebhookOptions>>,
    /// Signs projected tokens and serves the OIDC discovery documents.
    pub tokens: TokenIssuer,
    /// Requests by (verb, resource).
    pub requests: Mutex<BTreeMap<(String, String), u64>>,
    /// Requests by (User-Agent, API group, resource, verb), to check a client's RBAC needs.
    pub requests_by_agent: Mutex<BTreeMap<(String, String, String, String), u64>>,
    /// Pending injected faults.
    pub faults: Mutex<Vec<Fault>>,
    /// Bumped to end every open watch.
    pub watch_epoch: tokio::sync::watch::Sender<u64>,
    /// Pod logs by (namespace, name), written by the kubelet emulation.
    pub logs: Mutex<HashMap<(String, String), String>>,
    /// How often watches that ask for bookmarks get one.
    pub bookmark_interval: Duration,
}

impl SimState {
    /// The type served at group/version/plural.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        let types = self.types.read().unwrap_or_else(|p| p.into_inner());
        types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The first served type of a group and plural (any version).
    pub fn resource_any_version(&self, group: &str, plural: &str) -> Option<ResourceType> {
        let types = self.types.read().unwrap_or_else(|p| p.into_inner());
        types
            .iter()
            .find(|t| t.group == group && t.plural == plural)
            .cloned()
    }

    fn count(&self, verb: &str, plural: &str) {
        let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *r.entry((verb.to_string(), plural.to_string())).or_default() += 1;
    }

    fn injected_fault(&self, verb: &str, plural: &str, resource: &str) -> Option<ApiError> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let f = faults.iter_mut().find(|f| {
            (f.plural == plural || f.plural == resource)
                && f.remaining > 0
                && f.verb.as_deref().is_none_or(|v| v == verb)
        })?;
        f.remaining -= 1;
        Some(ApiError::injected(f.code))
    }

    /// An object as served through `rt`: its apiVersion, and the events.k8s.io view of Events.
    pub fn present(&self, rt: &ResourceType, obj: &Value) -> Value {
        let mut out = if rt.group == "events.k8s.io" {
            events::to_events_v1(obj)
        } else {
            obj.clone()
        };
        out["apiVersion"] = json!(rt.api_version());
        out["kind"] = json!(rt.kind);
        out
    }

    fn ingest(rt: &ResourceType, obj: Value) -> Value {
        if rt.group == "events.k8s.io" {
            events::to_core(&obj)
        } else {
            obj
        }
    }

    /// The type objects are stored as (core/v1 for both Event APIs).
    fn storage_type(&self, rt: &ResourceType) -> ResourceType {
        if rt.group == "events.k8s.io" {
            return self
                .resource("", "v1", "events")
                .unwrap_or_else(|| rt.clone());
        }
        rt.clone()
    }

    /// Creates an object through the same path as a POST, admission included.
    pub fn create_object(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        body: Value,
    ) -> Result<Value, ApiError> {
        let mut body = Self::ingest(rt, body);
        let storage_rt = self.storage_type(rt);
        if rt.group.is_empty() && rt.plural == "pods" {
            self.admit_pod(ns.unwrap_or_default(), &mut body)?;
        }
        let created = self.store.create(&storage_rt, ns, body)?;
        self.after_write(rt, &created)?;
        Ok(created)
    }

    /// ServiceAccount admission and the pod identity webhook, on pod create only.
    fn admit_pod(&self, ns: &str, pod: &mut Value) -> Result<(), ApiError> {
        let sa_name = pod["spec"]["serviceAccountName"]
            .as_str()
            .or(pod["spec"]["serviceAccount"].as_str())
            .unwrap_or("default")
            .to_string();
        if !pod["spec"].is_object() {
            pod["spec"] = json!({});
        }
        pod["spec"]["serviceAccountName"] = json!(sa_name);
        let sa_rt = self
            .resource("", "v1", "serviceaccounts")
            .expect("built-in");
        let sa = self.store.get(&sa_rt, Some(ns), &sa_name).map_err(|_| ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "pods \"{}\" is forbidden: error looking up service account {ns}/{sa_name}: serviceaccount \"{sa_name}\" not found",
                pod["metadata"]["name"].as_str().unwrap_or_default()
            ),
            details: None,
        })?;
        let options = self
            .webhook
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(options) = options {
            webhook::mutate_pod_with_options(pod, Some(&sa), &options);
        }
        Ok(())
    }

    /// Side effects of writes: CRDs register their types; namespaces get a default ServiceAccount.
    fn after_write(&self, rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            self.register_crd(rt, obj)?;
        }
        if rt.group.is_empty()
            && rt.plural == "namespaces"
            && obj["metadata"]["resourceVersion"].is_string()
        {
            let ns = obj["metadata"]["name"].as_str().unwrap_or_default();
            let sa_rt = self
                .resource("", "v1", "serviceaccounts")
                .expect("built-in");
            if self.store.get(&sa_rt, Some(ns), "default").is_err()
                && obj["metadata"]["deletionTimestamp"].is_null()
            {
                let _ =
                    self.store
                        .create(&sa_rt, Some(ns), json!({"metadata": {"name": "default"}}));
            }
        }
        Ok(())
    }

    fn register_crd(&self, crd_rt: &ResourceType, crd: &Value) -> Result<(), ApiError> {
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let new_types = resources::from_crd(crd)
            .map_err(|e| ApiError::invalid("CustomResourceDefinition", &name, "spec", &e))?;
        {
            let mut types = self.types.write().unwrap_or_else(|p| p.into_inner());
            if let Some(first) = new_types.first() {
                types.retain(|t| !(t.group == first.group && t.plural == first.plural));
            }
            types.extend(new_types.iter().cloned());
        }
        if crd["status"]["conditions"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            return Ok(());
        }
        let now = crate::store::now();
        let mut with_status = crd.clone();
        with_status["status"] = json!({
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": new_types.iter().map(|t| t.version.clone()).take(1).collect::<Vec<_>>(),
        });
        with_status["metadata"]["resourceVersion"] = json!("");
        self.store
            .update(crd_rt, None, &name, with_status, Part::Status)?;
        Ok(())
    }

    fn unregister_crd(&self, crd: &Value) {
        let Some(group) = crd["spec"]["group"].as_str() else {
            return;
        };
        let Some(plural) = crd["spec"]["names"]["plural"].as_str() else {
            return;
        };
        self.types
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|t| !(t.group == group && t.plural == plural));
        self.store
            .drop_bucket(&(group.to_string(), plural.to_string()));
    }
}

/// A parsed resource URL.
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn json_response(code: u16, value: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.code, &self.to_status())
    }
}

/// The single entry point: everything is routed by path.
pub async fn handle(
    State(sim): State<Arc<SimState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let result = match segments.as_slice() {
        ["version"] => Ok(json_response(
            200,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-kube-sim", "gitCommit": "kube-sim",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "n/a",
                "compiler": "rustc", "platform": "linux/amd64"
            }),
        )),
        ["healthz"] | ["readyz"] | ["livez"] => Ok((StatusCode::OK, "ok").into_response()),
        [".well-known", "openid-configuration"] => {
            Ok(json_response(200, &sim.tokens.openid_configuration()))
        }
        ["openid", "v1", "jwks"] => Ok(json_response(200, &sim.tokens.jwks())),
        ["api"] => Ok(json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1")}]}),
        )),
        ["api", "v1"] => Ok(json_response(200, &resource_list(&sim, "", "v1"))),
        ["apis"] => Ok(json_response(200, &group_list(&sim))),
        ["apis", group] => group_list(&sim)["groups"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["name"] == *group).cloned())
            .map(|mut g| {
                g["kind"] = json!("APIGroup");
                g["apiVersion"] = json!("v1");
                json_response(200, &g)
            })
            .ok_or_else(|| ApiError::not_found("groups", group)),
        ["apis", group, version] => {
            let list = resource_list(&sim, group, version);
            if list["resources"].as_array().is_some_and(|r| r.is_empty()) {
                Err(ApiError::not_found(
                    "groupversions",
                    &format!("{group}/{version}"),
                ))
            } else {
                Ok(json_response(200, &list))
            }
        }
        ["api", "v1", rest @ ..] => {
            route(&sim, "", "v1", rest, method, &headers, &query, body).await
        }
        ["apis", group, version, rest @ ..] => {
            route(&sim, group, version, rest, method, &headers, &query, body).await
        }
        _ => Err(ApiError::not_found("paths", path)),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn resource_list(sim: &SimState, group: &str, version: &str) -> Value {
    let types = sim.types.read().unwrap_or_else(|p| p.into_inner());
    let mut resources = Vec::new();
    for t in types
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        resources.push(json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": t.short_names, "categories": t.categories,
        }));
        if t.status_subresource {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
        if t.group.is_empty() && t.plural == "pods" {
            resources.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

fn group_list(sim: &SimState) -> Value {
    let types = sim.types.read().unwrap_or_else(|p| p.into_inner());
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        let versions = groups.entry(&t.group).or_default();
        if !versions.contains(&t.version.as_str()) {
            versions.push(&t.version);
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": vs, "preferredVersion": vs[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn parse_target(
    sim: &SimState,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Target, ApiError> {
    let find = |plural: &str| {
        sim.resource(group, version, plural).ok_or_else(|| {
            ApiError::not_found("resources", &format!("{plural} in {group}/{version}"))
        })
    };
    let target = |rt, ns: Option<&&str>, name: Option<&&str>, sub: Option<&&str>| Target {
        rt,
        namespace: ns.map(|s| s.to_string()),
        name: name.map(|s| s.to_string()),
        subresource: sub.map(|s| s.to_string()),
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..]
            if sim
                .resource(group, version, plural)
                .is_some_and(|t| t.namespaced)
                && tail.len() <= 2 =>
        {
            Ok(target(find(plural)?, Some(ns), tail.first(), tail.get(1)))
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let rt = find(plural)?;
            if rt.namespaced && !tail.is_empty() {
                return Err(ApiError::not_found("resources", &rest.join("/")));
            }
            Ok(target(rt, None, tail.first(), tail.get(1)))
        }
        _ => Err(ApiError::not_found("paths", &rest.join("/"))),
    }
}

#[allow(clippy::too_many_arguments)]
async fn route(
    sim: &Arc<SimState>,
    group: &str,
    version: &str,
    rest: &[&str],
    method: Method,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let t = parse_target(sim, group, version, rest)?;
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, t.name.is_some(), watching) {
        (&Method::GET, _, true) => "watch",
        (&Method::GET, false, _) => "list",
        (&Method::GET, true, _) => "get",
        (&Method::POST, _, _) => "create",
        (&Method::PUT, _, _) => "update",
        (&Method::PATCH, _, _) => "patch",
        (&Method::DELETE, true, _) => "delete",
        (&Method::DELETE, false, _) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "{method} is not supported"
            )))
        }
    };
    let resource = match &t.subresource {
        Some(sub) => format!("{}/{sub}", t.rt.plural),
        None => t.rt.plural.clone(),
    };
    sim.count(verb, &resource);
    {
        let agent = headers
            .get(header::USER_AGENT)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut by_agent = sim
            .requests_by_agent
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *by_agent
            .entry((agent, group.to_string(), resource.clone(), verb.to_string()))
            .or_default() += 1;
    }
    if let Some(err) = sim.injected_fault(verb, &t.rt.plural, &resource) {
        return Err(err);
    }
    let ns = t.namespace.as_deref();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json");
    match verb {
        "watch" => watch(sim.clone(), t, query, accept).await,
        "list" => list(sim, &t, query, accept),
        "get" => get(sim, &t, query, accept),
        "create" => {
            if t.rt.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed(
                    "create of a namespaced resource needs a namespace in the path",
                ));
            }
            let obj = parse_body(&body, content_type)?;
            let created = sim.create_object(&t.rt, ns, obj)?;
            Ok(json_response(201, &sim.present(&t.rt, &created)))
        }
        "update" => {
            let name = t.name.as_deref().unwrap_or_default();
            let part = if t.subresource.as_deref() == Some("status") {
                Part::Status
            } else {
                Part::Main
            };
            let obj = SimState::ingest(&t.rt, parse_body(&body, content_type)?);
            let updated = sim
                .store
                .update(&sim.storage_type(&t.rt), ns, name, obj, part)?;
            sim.after_write(&t.rt, &updated)?;
            Ok(json_response(200, &sim.present(&t.rt, &updated)))
        }
        "patch" => patch_object(sim, &t, query, content_type, &body),
        "delete" => {
            let name = t.name.as_deref().unwrap_or_default();
            let options: Value = if body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&body).unwrap_or(json!({}))
            };
            let policy = query
                .get("propagationPolicy")
                .map(String::as_str)
                .or(options["propagationPolicy"].as_str())
                .unwrap_or("Background");
            let propagation = match policy {
                "Foreground" => Propagation::Foreground,
                "Orphan" => Propagation::Orphan,
                _ => Propagation::Background,
            };
            let storage_rt = sim.storage_type(&t.rt);
            let before = sim.store.get(&storage_rt, ns, name)?;
            let after = sim.store.delete(&storage_rt, ns, name, propagation)?;
            let still_there = sim.store.get(&storage_rt, ns, name).is_ok();
            if t.rt.group == "apiextensions.k8s.io" && !still_there {
                sim.unregister_crd(&before);
            }
            if still_there {
                Ok(json_response(200, &sim.present(&t.rt, &after)))
            } else {
                Ok(json_response(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": t.rt.group, "kind": t.rt.plural, "uid": before["metadata"]["uid"]}}),
                ))
            }
        }
        _ => {
            let (items, _) = selected(sim, &t.rt, ns, query)?;
            let storage_rt = sim.storage_type(&t.rt);
            for item in items {
                let name = item["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let item_ns = item["metadata"]["namespace"].as_str().map(str::to_string);
                let _ = sim.store.delete(
                    &storage_rt,
                    item_ns.as_deref(),
                    &name,
                    Propagation::Background,
                );
            }
            Ok(json_response(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            ))
        }
    }
}

fn parse_body(body: &Bytes, content_type: &str) -> Result<Value, ApiError> {
    // Real servers also speak protobuf and CBOR; clients fall back to JSON on 415.
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    let parsed = if content_type.contains("yaml") {
        serde_yaml_ng::from_slice(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))
}

/// Objects of `rt` in `ns` that match the request's selectors, as served.
fn selected(
    sim: &SimState,
    rt: &ResourceType,
    ns: Option<&str>,
    query: &HashMap<String, String>,
) -> Result<(Vec<Value>, u64), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let (items, rv) = sim.store.list(&rt.storage(), ns);
    let items = items
        .iter()
        .map(|o| sim.present(rt, o))
        .filter(|o| labels.matches(o["metadata"].get("labels")) && fields.matches(o))
        .collect();
    Ok((items, rv))
}

fn list(
    sim: &SimState,
    t: &Target,
    query: &HashMap<String, String>,
    accept: &str,
) -> Result<Response, ApiError> {
    let (mut items, rv) = selected(sim, &t.rt, t.namespace.as_deref(), query)?;
    let key = |o: &Value| {
        format!(
            "{}/{}",
            o["metadata"]["namespace"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    if let Some(token) = query.get("continue").filter(|c| !c.is_empty()) {
        let start = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::bad_request("continue: invalid continue token"))?;
        items.retain(|o| key(o) > start);
    }
    let mut next = None;
    if let Some(limit) = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
    {
        if items.len() > limit {
            items.truncate(limit);
            next = items.last().map(|o| URL_SAFE_NO_PAD.encode(key(o)));
        }
    }
    if table::wants_table(accept) {
        let include = query
            .get("includeObject")
            .map_or("Metadata", String::as_str);
        let mut t_out = table::table(&t.rt, &items, include, &rv.to_string());
        if let Some(c) = next {
            t_out["metadata"]["continue"] = json!(c);
        }
        return Ok(json_response(200, &t_out));
    }
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = next {
        metadata["continue"] = json!(c);
    }
    Ok(json_response(
        200,
        &json!({
            "kind": format!("{}List", t.rt.kind),
            "apiVersion": t.rt.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    ))
}

fn get(
    sim: &SimState,
    t: &Target,
    query: &HashMap<String, String>,
    accept: &str,
) -> Result<Response, ApiError> {
    let name = t.name.as_deref().unwrap_or_default();
    let storage_rt = sim.storage_type(&t.rt);
    let obj = sim.store.get(&storage_rt, t.namespace.as_deref(), name)?;
    if t.subresource.as_deref() == Some("log") {
        let logs = sim.logs.lock().unwrap_or_else(|p| p.into_inner());
        let text = logs
            .get(&(t.namespace.clone().unwrap_or_default(), name.to_string()))
            .cloned()
            .unwrap_or_default();
        return Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response());
    }
    let obj = sim.present(&t.rt, &obj);
    if table::wants_table(accept) {
        let include = query
            .get("includeObject")
            .map_or("Metadata", String::as_str);
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return Ok(json_response(
            200,
            &table::table(&t.rt, &[obj], include, &rv),
        ));
    }
    Ok(json_response(200, &obj))
}

fn patch_object(
    sim: &SimState,
    t: &Target,
    query: &HashMap<String, String>,
    content_type: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let name = t.name.as_deref().unwrap_or_default();
    let ns = t.namespace.as_deref();
    let part = if t.subresource.as_deref() == Some("status") {
        Part::Status
    } else {
        Part::Main
    };
    let storage_rt = sim.storage_type(&t.rt);
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media == "application/apply-patch+yaml"
        && query.get("fieldManager").is_none_or(|m| m.is_empty())
    {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
        ));
    }
    let patch_body = parse_body(
        body,
        if media.contains("yaml") {
            "yaml"
        } else {
            "json"
        },
    )?;
    let current = match sim.store.get(&storage_rt, ns, name) {
        Ok(c) => sim.present(&t.rt, &c),
        // Server-side apply creates what does not exist.
        Err(e)
            if e.code == 404 && media == "application/apply-patch+yaml" && part == Part::Main =>
        {
            let created = sim.create_object(&t.rt, ns, patch_body)?;
            return Ok(json_response(201, &sim.present(&t.rt, &created)));
        }
        Err(e) => return Err(e),
    };
    let mut patched = current.clone();
    match media {
        "application/json-patch+json" => patch::json_patch(&mut patched, &patch_body)
            .map_err(|e| ApiError::invalid(&t.rt.kind, name, "patch", &e))?,
        "application/merge-patch+json" | "application/apply-patch+yaml" => {
            patch::merge_patch(&mut patched, &patch_body)
        }
        "application/strategic-merge-patch+json"
            if !t.rt.group.contains('.') || t.rt.group.ends_with(".k8s.io") =>
        {
            patch::strategic_merge(&mut patched, &patch_body)
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    // Only a resourceVersion the patch itself names is a precondition.
    let precondition = patch_body["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string);
    patched["metadata"]["resourceVersion"] = json!(precondition.unwrap_or_default());
    let updated = sim.store.update(
        &storage_rt,
        ns,
        name,
        SimState::ingest(&t.rt, patched),
        part,
    )?;
    sim.after_write(&t.rt, &updated)?;
    Ok(json_response(200, &sim.present(&t.rt, &updated)))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

async fn watch(
    sim: Arc<SimState>,
    t: Target,
    query: &HashMap<String, String>,
    accept: &str,
) -> Result<Response, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let initial_events = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let as_table = table::wants_table(accept);
    let include = query
        .get("includeObject")
        .cloned()
        .unwrap_or_else(|| "Metadata".into());
    let requested_rv = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .cloned();
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let rt = t.rt.clone();
    let ns = t.namespace.clone();
    let storage = rt.storage();
    let matches = {
        let (rt, ns) = (rt.clone(), ns.clone());
        move |sim: &SimState, c: &Change| -> Option<Value> {
            if c.storage != storage {
                return None;
            }
            let obj = sim.present(&rt, &c.object);
            let in_ns = ns
                .as_deref()
                .is_none_or(|n| obj["metadata"]["namespace"].as_str() == Some(n));
            (in_ns && labels.matches(obj["metadata"].get("labels")) && fields.matches(&obj))
                .then_some(obj)
        }
    };
    let render = {
        let rt = rt.clone();
        move |obj: &Value| -> Value {
            if as_table {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                table::table(&rt, std::slice::from_ref(obj), &include, &rv)
            } else {
                obj.clone()
            }
        }
    };
    // Start point: the given version (replaying history), or "now" with synthetic ADDED events.
    let (initial, start_rv): (Vec<(ChangeType, Value)>, u64) =
        match requested_rv.as_deref().map(str::parse::<u64>) {
            Some(Ok(rv)) if !initial_events => (Vec::new(), rv),
            Some(Err(_)) => {
                return Err(ApiError::bad_request(
                    "resourceVersion: not a valid resource version",
                ))
            }
            _ => {
                let (items, rv) = sim.store.list(&rt.storage(), ns.as_deref());
                let added = items
                    .iter()
                    .filter_map(|o| {
                        let c = Change {
                            rv,
                            storage: rt.storage(),
                            change: ChangeType::Added,
                            object: Arc::new(o.clone()),
                        };
                        matches(&sim, &c).map(|v| (ChangeType::Added, v))
                    })
                    .collect();
                (added, rv)
            }
        };
    let mut epoch = sim.watch_epoch.subscribe();
    let (replay, mut live) = match sim.store.watch_from(start_rv) {
        Ok(r) => r,
        Err(gone) => {
            let line = event_line("ERROR", &gone.to_status());
            return Ok(streaming(futures::stream::iter([Ok::<_, Infallible>(
                line,
            )])));
        }
    };
    let bookmark_interval = sim.bookmark_interval;
    tokio::spawn(async move {
        let mut seen = start_rv;
        for (kind, obj) in initial {
            if tx
                .send(event_line(kind.as_str(), &render(&obj)))
                .await
                .is_err()
            {
                return;
            }
        }
        if initial_events {
            let bm = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {
                "resourceVersion": seen.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(event_line("BOOKMARK", &bm)).await.is_err() {
                return;
            }
        }
        for c in replay {
            seen = seen.max(c.rv);
            if let Some(obj) = matches(&sim, &c) {
                if tx
                    .send(event_line(c.change.as_str(), &render(&obj)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(bookmark_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                change = live.recv() => match change {
                    Ok(c) if c.rv <= seen => {}
                    Ok(c) => {
                        seen = c.rv;
                        if let Some(obj) = matches(&sim, &c) {
                            if tx.send(event_line(c.change.as_str(), &render(&obj))).await.is_err() {
                                return;
                            }
                        }
                    }
                    // A watcher too slow to keep up is closed; the client re-watches, as with a real server.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": seen.to_string()}});
                    if tx.send(event_line("BOOKMARK", &bm)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = epoch.changed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok(streaming(stream))
}

fn streaming<S>(stream: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid")
}
