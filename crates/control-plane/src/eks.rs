//! A stand-in for the EKS Pod Identity API, which moto does not implement: the smallest real-wire
//! server (REST-JSON over HTTP/1.1, the shapes the SDK deserialises) for
//! `ListPodIdentityAssociations` (`GET /clusters/{name}/pod-identity-associations`, filtered by
//! `namespace` and `serviceAccount`, one association per page so that pagination runs),
//! `DescribePodIdentityAssociation` (`GET /clusters/{name}/pod-identity-associations/{id}`),
//! `CreatePodIdentityAssociation` (`POST /clusters/{name}/pod-identity-associations`),
//! `DeletePodIdentityAssociation` (`DELETE /clusters/{name}/pod-identity-associations/{id}`) and
//! `DescribeAddon` (`GET /clusters/{name}/addons/{addon}`) and, once told the cluster's issuer,
//! `DescribeCluster` (`GET /clusters/{name}`). Point the SDK or the `aws` CLI at it
//! with `AWS_ENDPOINT_URL_EKS`; IAM and STS stay on moto.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// One association the stand-in serves.
#[derive(Debug, Clone, Default)]
pub struct StandInAssociation {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount's name.
    pub service_account: String,
    /// The role.
    pub role_arn: String,
    /// `targetRoleArn`, when it chains to one.
    pub target_role_arn: Option<String>,
    /// `externalId`, served with a target role.
    pub external_id: Option<String>,
    /// `disableSessionTags`.
    pub disable_session_tags: bool,
    /// `createdAt`, seconds since the epoch.
    pub created_at: f64,
}

/// Whether an association names `namespace/service_account` now: what the webhook emulation
/// asks to give a pod EKS Pod Identity.
pub type Associated = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// The associations served, each with its id (`a-<n>`), stable across deletions.
type Associations = Arc<Mutex<Vec<(usize, StandInAssociation)>>>;

/// The largest request body read.
const MAX_BODY: usize = 64 * 1024;

/// What every connection's handler reads and changes.
struct Shared {
    associations: Associations,
    addons: Arc<Mutex<Vec<String>>>,
    cluster: String,
    account: String,
    /// The issuer `DescribeCluster` reports; the cluster is not found while `None`.
    issuer: Mutex<Option<String>>,
}

/// The running stand-in; serves until the process ends.
pub struct Eks {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
}

impl Eks {
    /// Starts the stand-in for cluster `cluster` of account `account`.
    pub fn start(cluster: &str, account: &str) -> Eks {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            associations: Arc::new(Mutex::new(Vec::new())),
            addons: Arc::new(Mutex::new(Vec::new())),
            cluster: cluster.to_string(),
            account: account.to_string(),
            issuer: Mutex::new(None),
        });
        let state = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = state.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    // Headers up to the blank line, then the body the length announces (a
                    // create's JSON; bounded, as this only ever serves tests and a demo).
                    let mut length = 0usize;
                    let mut header = String::new();
                    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                        if let Some((name, value)) = header.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0).min(MAX_BODY);
                            }
                        }
                        header.clear();
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let mut words = line.split_whitespace();
                    let method = words.next().unwrap_or("GET").to_string();
                    let target = words.next().unwrap_or("/").to_string();
                    let (status, body) = route(&method, &target, &body, &state);
                    let body = body.to_string();
                    let error = if status == 200 {
                        String::new()
                    } else {
                        format!(
                            "x-amzn-ErrorType: {}\r\n",
                            body_type(&body).unwrap_or("ResourceNotFoundException")
                        )
                    };
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{error}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Eks { url, shared }
    }

    /// Adds an association of `namespace/service_account` to `role_arn`, created now.
    pub fn associate(&self, namespace: &str, service_account: &str, role_arn: &str) {
        self.associate_with(StandInAssociation {
            namespace: namespace.into(),
            service_account: service_account.into(),
            role_arn: role_arn.into(),
            ..StandInAssociation::default()
        });
    }

    /// Adds `association`; a `created_at` of 0 means now.
    pub fn associate_with(&self, association: StandInAssociation) {
        add(&self.shared.associations, association);
    }

    /// Deletes the associations of `namespace/service_account`.
    pub fn disassociate(&self, namespace: &str, service_account: &str) {
        self.shared
            .associations
            .lock()
            .unwrap()
            .retain(|(_, a)| !(a.namespace == namespace && a.service_account == service_account));
    }

    /// Whether an association names a ServiceAccount, as the stand-in serves them now.
    pub fn associated(&self) -> Associated {
        let associations = self.shared.associations.clone();
        Arc::new(move |namespace: &str, service_account: &str| {
            associations
                .lock()
                .unwrap()
                .iter()
                .any(|(_, a)| a.namespace == namespace && a.service_account == service_account)
        })
    }

    /// Installs an add-on, e.g. `eks-pod-identity-agent`.
    pub fn install_addon(&self, name: &str) {
        self.shared.addons.lock().unwrap().push(name.into());
    }

    /// Answers `DescribeCluster` for the cluster, with `issuer` as its OIDC issuer.
    pub fn serve_cluster(&self, issuer: &str) {
        *self.shared.issuer.lock().unwrap() = Some(issuer.to_string());
    }
}

/// Adds `association` (a `created_at` of 0 means now); its id and the association as stored.
fn add(
    associations: &Mutex<Vec<(usize, StandInAssociation)>>,
    mut association: StandInAssociation,
) -> (usize, StandInAssociation) {
    if association.created_at == 0.0 {
        association.created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
    }
    let mut all = associations.lock().unwrap();
    let id = all.last().map_or(0, |(id, _)| id + 1);
    all.push((id, association.clone()));
    (id, association)
}

fn body_type(body: &str) -> Option<&'static str> {
    [
        "ResourceNotFoundException",
        "InvalidParameterException",
        "ResourceInUseException",
    ]
    .into_iter()
    .find(|t| body.contains(&format!("\"__type\":\"{t}\"")))
}

fn not_found(what: &str) -> (u16, Value) {
    (
        404,
        json!({"__type": "ResourceNotFoundException", "message": format!("{what} not found")}),
    )
}

fn query(target: &str) -> Vec<(String, String)> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%2F", "/")))
        .collect()
}

fn invalid(message: &str) -> (u16, Value) {
    (
        400,
        json!({"__type": "InvalidParameterException", "message": message}),
    )
}

/// An association as `DescribePodIdentityAssociation` (and create and delete) answer it.
fn described(shared: &Shared, id: usize, a: &StandInAssociation) -> Value {
    let mut association = json!({"clusterName": shared.cluster, "namespace": a.namespace,
        "serviceAccount": a.service_account, "roleArn": a.role_arn,
        "associationId": format!("a-{id}"), "associationArn": association_arn(shared, id),
        "createdAt": a.created_at, "modifiedAt": a.created_at,
        "disableSessionTags": a.disable_session_tags});
    if let Some(target) = &a.target_role_arn {
        association["targetRoleArn"] = json!(target);
    }
    if let Some(external_id) = &a.external_id {
        association["externalId"] = json!(external_id);
    }
    association
}

fn association_arn(shared: &Shared, id: usize) -> String {
    format!(
        "arn:aws:eks:us-east-1:{}:podidentityassociation/{}/a-{id}",
        shared.account, shared.cluster
    )
}

/// `CreatePodIdentityAssociation`: one association per ServiceAccount, as EKS allows.
fn create(shared: &Shared, body: &[u8]) -> (u16, Value) {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("the request body is not JSON");
    };
    let text = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(namespace), Some(service_account), Some(role_arn)) =
        (text("namespace"), text("serviceAccount"), text("roleArn"))
    else {
        return invalid("namespace, serviceAccount and roleArn are required");
    };
    let taken = shared
        .associations
        .lock()
        .unwrap()
        .iter()
        .any(|(_, a)| a.namespace == namespace && a.service_account == service_account);
    if taken {
        return (
            409,
            json!({"__type": "ResourceInUseException",
                   "message": format!("an association for {namespace}/{service_account} already exists")}),
        );
    }
    let target_role_arn = text("targetRoleArn");
    let association = StandInAssociation {
        namespace,
        service_account,
        role_arn,
        // EKS generates the external id of an association that chains to a target role.
        external_id: target_role_arn.as_ref().map(|_| uuid_like()),
        target_role_arn,
        disable_session_tags: request
            .get("disableSessionTags")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        created_at: 0.0,
    };
    let (id, association) = add(&shared.associations, association);
    (
        200,
        json!({ "association": described(shared, id, &association) }),
    )
}

/// A random id shaped like EKS's external ids.
fn uuid_like() -> String {
    let hex: String = crate::pki::random_bytes(16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn route(method: &str, target: &str, body: &[u8], shared: &Shared) -> (u16, Value) {
    let path = target.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let find = |id: &str| {
        let all = shared.associations.lock().unwrap();
        id.strip_prefix("a-")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| all.iter().find(|(id, _)| *id == i).cloned())
    };
    match (method, &parts[..]) {
        (_, ["clusters", c, ..]) if *c != shared.cluster => not_found(&format!("cluster {c}")),
        ("GET", ["clusters", name]) => match shared.issuer.lock().unwrap().clone() {
            Some(issuer) => (
                200,
                json!({"cluster": {"name": name, "status": "ACTIVE",
                    "arn": format!("arn:aws:eks:us-east-1:{}:cluster/{name}", shared.account),
                    "identity": {"oidc": {"issuer": issuer}}}}),
            ),
            None => not_found(&format!("cluster {name}")),
        },
        ("POST", ["clusters", _, "pod-identity-associations"]) => create(shared, body),
        ("GET", ["clusters", _, "pod-identity-associations"]) => {
            let q = query(target);
            let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
            let all = shared.associations.lock().unwrap().clone();
            let matching: Vec<(usize, &StandInAssociation)> = all
                .iter()
                .map(|(id, a)| (*id, a))
                .filter(|(_, a)| get("namespace").is_none_or(|n| n == a.namespace))
                .filter(|(_, a)| get("serviceAccount").is_none_or(|s| s == a.service_account))
                .collect();
            let start: usize = get("nextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
            let page: Vec<Value> = matching
                .iter()
                .skip(start)
                .take(1)
                .map(|(i, a)| {
                    json!({"clusterName": shared.cluster, "namespace": a.namespace,
                           "serviceAccount": a.service_account, "associationId": format!("a-{i}"),
                           "associationArn": association_arn(shared, *i)})
                })
                .collect();
            let mut body = json!({ "associations": page });
            if start + 1 < matching.len() {
                body["nextToken"] = json!((start + 1).to_string());
            }
            (200, body)
        }
        ("GET", ["clusters", _, "pod-identity-associations", id]) => match find(id) {
            Some((i, a)) => (200, json!({ "association": described(shared, i, &a) })),
            None => not_found(&format!("association {id}")),
        },
        ("DELETE", ["clusters", _, "pod-identity-associations", id]) => match find(id) {
            Some((i, a)) => {
                shared.associations.lock().unwrap().retain(|(j, _)| *j != i);
                (200, json!({ "association": described(shared, i, &a) }))
            }
            None => not_found(&format!("association {id}")),
        },
        ("GET", ["clusters", _, "addons", name])
            if shared.addons.lock().unwrap().iter().any(|a| a == name) =>
        {
            (
                200,
                json!({"addon": {"addonName": name, "clusterName": shared.cluster, "status": "ACTIVE"}}),
            )
        }
        _ => not_found(path),
    }
}
