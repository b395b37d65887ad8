//! Faults the real API server cannot be asked for: a proxy in front of it, on plain HTTP on
//! loopback, that forwards every request with the admin's credentials and streams the answer
//! back (watches and logs included), except the next N requests of a given resource and verb,
//! which it fails with the status a test chooses. It also counts requests by verb and resource.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

use crate::webhook::agent_client;
use crate::ControlPlane;

/// The User-Agent of the proxy's own requests to the API server.
pub const USER_AGENT: &str = "control-plane-fault-proxy";

/// One rule: fail the next `times` requests of `resource` (and `verb`, any when `None`).
#[derive(Debug, Clone)]
struct Rule {
    resource: String,
    verb: Option<String>,
    times: u32,
    status: u16,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    /// (verb, resource) → requests seen.
    counts: Mutex<BTreeMap<(String, String), u64>>,
}

struct ProxyState {
    upstream: kube::Client,
    shared: Arc<Shared>,
}

/// A fault-injecting proxy in front of a [`ControlPlane`]'s API server; stops on drop.
pub struct FaultProxy {
    url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The verb and resource (with its subresource, as `pods/log`) of a request, as the API server
/// authorizes it.
fn classify(method: &http::Method, path: &str, query: Option<&str>) -> (String, String) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let rest: &[&str] = match parts.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
        _ => (String::new(), false),
    };
    let watching =
        query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match *method {
        http::Method::GET if watching => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if named => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb.to_string(), resource)
}

async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let (verb, resource) = classify(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    *state
        .shared
        .counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((verb.clone(), resource.clone()))
        .or_insert(0) += 1;
    let failure = {
        let mut rules = state.shared.rules.lock().unwrap_or_else(|p| p.into_inner());
        let found = rules.iter_mut().find(|r| {
            r.times > 0 && r.resource == resource && r.verb.as_ref().is_none_or(|v| *v == verb)
        });
        found.map(|r| {
            r.times -= 1;
            r.status
        })
    };
    if let Some(status) = failure {
        let body = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("injected fault: {verb} {resource}"),
            "reason": "InternalError", "code": status,
        });
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            code,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return (StatusCode::BAD_REQUEST, "unreadable request body").into_response();
    };
    let mut upstream = http::Request::builder().method(parts.method).uri(
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
    );
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::AUTHORIZATION {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(upstream) = upstream.body(bytes.to_vec()) else {
        return (StatusCode::BAD_REQUEST, "an unusable request").into_response();
    };
    match state
        .upstream
        .send(upstream.map(kube::client::Body::from))
        .await
    {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

impl FaultProxy {
    /// Starts the proxy in front of `plane`'s API server.
    pub async fn start(plane: &ControlPlane) -> anyhow::Result<FaultProxy> {
        let upstream = agent_client(plane, USER_AGENT).await?;
        let shared = Arc::new(Shared::default());
        let state = Arc::new(ProxyState {
            upstream,
            shared: shared.clone(),
        });
        let router = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(FaultProxy {
            url,
            shared,
            server,
        })
    }

    /// The proxy's URL, `http://127.0.0.1:PORT`: whoever talks to it acts as the admin.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client that talks to the API server through the proxy (as the admin).
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        let config = kube::Config::new(self.url.parse()?);
        Ok(kube::Client::try_from(config)?)
    }

    /// Fails the next `times` requests of `resource` (e.g. `pods`, `pods/log`) and `verb` (any
    /// when `None`) with `status`.
    pub fn fail_next(&self, resource: &str, verb: Option<&str>, times: u32, status: u16) {
        self.shared
            .rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Rule {
                resource: resource.to_string(),
                verb: verb.map(str::to_string),
                times,
                status,
            });
    }

    /// Requests of `verb` on `resource` seen so far, failed ones included.
    pub fn request_count(&self, verb: &str, resource: &str) -> u64 {
        self.shared
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_as_the_api_server_authorizes_them() {
        let get = http::Method::GET;
        let c = |m: &http::Method, p: &str, q: Option<&str>| classify(m, p, q);
        assert_eq!(
            c(&get, "/api/v1/namespaces/a/pods", None),
            ("list".into(), "pods".into())
        );
        assert_eq!(
            c(
                &get,
                "/api/v1/namespaces/a/pods",
                Some("watch=true&resourceVersion=1")
            ),
            ("watch".into(), "pods".into())
        );
        assert_eq!(
            c(&get, "/api/v1/namespaces/a/pods/p/log", None),
            ("get".into(), "pods/log".into())
        );
        assert_eq!(
            c(&get, "/api/v1/pods", None),
            ("list".into(), "pods".into())
        );
        assert_eq!(
            c(&http::Method::DELETE, "/api/v1/namespaces/a/pods/p", None),
            ("delete".into(), "pods".into())
        );
        assert_eq!(
            c(
                &http::Method::PATCH,
                "/apis/irsa-doctor.io/v1alpha1/namespaces/a/irsachecks/c/status",
                None
            ),
            ("patch".into(), "irsachecks/status".into())
        );
        assert_eq!(
            c(&get, "/api/v1/namespaces/a", None),
            ("get".into(), "namespaces".into())
        );
    }
}
