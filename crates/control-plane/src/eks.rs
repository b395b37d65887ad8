//! A stand-in for the EKS Pod Identity API, which moto does not implement: the smallest real-wire
//! server (REST-JSON over HTTP/1.1, the shapes the SDK deserialises) for
//! `ListPodIdentityAssociations` (`GET /clusters/{name}/pod-identity-associations`, filtered by
//! `namespace` and `serviceAccount`, one association per page so that pagination runs),
//! `DescribePodIdentityAssociation` (`GET /clusters/{name}/pod-identity-associations/{id}`) and
//! `DescribeAddon` (`GET /clusters/{name}/addons/{addon}`). Point the SDK at it with
//! `AWS_ENDPOINT_URL_EKS`; IAM and STS stay on moto.

use std::io::{BufRead, BufReader, Write};
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

/// The running stand-in; serves until the process ends.
pub struct Eks {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    associations: Associations,
    addons: Arc<Mutex<Vec<String>>>,
}

impl Eks {
    /// Starts the stand-in for cluster `cluster` of account `account`.
    pub fn start(cluster: &str, account: &str) -> Eks {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let associations = Arc::new(Mutex::new(Vec::new()));
        let addons = Arc::new(Mutex::new(Vec::new()));
        let state = (
            associations.clone(),
            addons.clone(),
            cluster.to_string(),
            account.to_string(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = state.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    // Headers up to the blank line; GETs have no body.
                    let mut header = String::new();
                    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                        header.clear();
                    }
                    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (status, body) = route(&target, &state.0, &state.1, &state.2, &state.3);
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
        Eks {
            url,
            associations,
            addons,
        }
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
    pub fn associate_with(&self, mut association: StandInAssociation) {
        if association.created_at == 0.0 {
            association.created_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
        }
        let mut all = self.associations.lock().unwrap();
        let id = all.last().map_or(0, |(id, _)| id + 1);
        all.push((id, association));
    }

    /// Deletes the associations of `namespace/service_account`.
    pub fn disassociate(&self, namespace: &str, service_account: &str) {
        self.associations
            .lock()
            .unwrap()
            .retain(|(_, a)| !(a.namespace == namespace && a.service_account == service_account));
    }

    /// Whether an association names a ServiceAccount, as the stand-in serves them now.
    pub fn associated(&self) -> Associated {
        let associations = self.associations.clone();
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
        self.addons.lock().unwrap().push(name.into());
    }
}

fn body_type(body: &str) -> Option<&'static str> {
    body.contains("\"__type\":\"ResourceNotFoundException\"")
        .then_some("ResourceNotFoundException")
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

fn route(
    target: &str,
    associations: &Mutex<Vec<(usize, StandInAssociation)>>,
    addons: &Mutex<Vec<String>>,
    cluster: &str,
    account: &str,
) -> (u16, Value) {
    let path = target.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let arn = |id: usize| {
        format!("arn:aws:eks:us-east-1:{account}:podidentityassociation/{cluster}/a-{id}")
    };
    match parts[..] {
        ["clusters", c, ..] if c != cluster => not_found(&format!("cluster {c}")),
        ["clusters", _, "pod-identity-associations"] => {
            let q = query(target);
            let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
            let all = associations.lock().unwrap().clone();
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
                    json!({"clusterName": cluster, "namespace": a.namespace,
                           "serviceAccount": a.service_account, "associationId": format!("a-{i}"),
                           "associationArn": arn(*i)})
                })
                .collect();
            let mut body = json!({ "associations": page });
            if start + 1 < matching.len() {
                body["nextToken"] = json!((start + 1).to_string());
            }
            (200, body)
        }
        ["clusters", _, "pod-identity-associations", id] => {
            let all = associations.lock().unwrap().clone();
            let found = id
                .strip_prefix("a-")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| all.iter().find(|(id, _)| *id == i))
                .map(|(i, a)| (*i, a));
            match found {
                Some((i, a)) => {
                    let mut association = json!({"clusterName": cluster, "namespace": a.namespace,
                        "serviceAccount": a.service_account, "roleArn": a.role_arn,
                        "associationId": format!("a-{i}"), "associationArn": arn(i),
                        "createdAt": a.created_at, "modifiedAt": a.created_at,
                        "disableSessionTags": a.disable_session_tags});
                    if let Some(target) = &a.target_role_arn {
                        association["targetRoleArn"] = json!(target);
                    }
                    if let Some(id) = &a.external_id {
                        association["externalId"] = json!(id);
                    }
                    (200, json!({ "association": association }))
                }
                None => not_found(&format!("association {id}")),
            }
        }
        ["clusters", _, "addons", name] if addons.lock().unwrap().iter().any(|a| a == name) => (
            200,
            json!({"addon": {"addonName": name, "clusterName": cluster, "status": "ACTIVE"}}),
        ),
        _ => not_found(path),
    }
}
