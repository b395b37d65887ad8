//! The workload audit: running pods of a ServiceAccount that never got (or lost) its role, and
//! why; pod templates (`lint --workload`) checked before they run; and containers whose
//! credentials shadow IRSA.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::annotations::{token_expiration_problem, SKIP_CONTAINERS, TOKEN_EXPIRATION};
use crate::reason::Reason;

/// The pod label that opts a pod out of the pod identity webhook.
pub const SKIP_LABEL: &str = "eks.amazonaws.com/skip-pod-identity-webhook";
/// kube2iam's and kiam's pod annotation.
pub const KUBE2IAM_ROLE: &str = "iam.amazonaws.com/role";
/// The projected token volume the webhook adds.
pub const TOKEN_VOLUME: &str = "aws-iam-token";
/// Where the webhook mounts it.
pub const TOKEN_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
/// Seconds within which a pod created with its ServiceAccount may have met the webhook's cache
/// before the ServiceAccount did.
pub const CACHE_RACE_SECONDS: i64 = 1;

/// The variables whose values the audit reads; of every other variable only the name is kept,
/// so that a literal key in a pod spec (`AWS_SECRET_ACCESS_KEY: ...`) never enters memory beyond
/// the parse.
const VALUES_READ: &[&str] = &[ROLE_ENV, TOKEN_ENV, "HOME"];

/// One container's environment: variable name → value (`None` when it comes from `valueFrom`,
/// or when the audit does not read its value).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerFacts {
    /// Container name.
    pub name: String,
    /// Its environment.
    pub env: BTreeMap<String, Option<String>>,
    /// Variables set from `valueFrom`: name → where from, e.g. `Secret aws-keys key id`.
    pub env_refs: BTreeMap<String, String>,
    /// `envFrom` sources: (`Secret` or `ConfigMap`, name, prefix).
    pub env_from: Vec<(String, String, String)>,
    /// Volume mounts: (volume name, mount path).
    pub mounts: Vec<(String, String)>,
    /// `securityContext.runAsUser` of the container.
    pub run_as_user: Option<i64>,
}

/// A projected volume with a `serviceAccountToken` source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenVolume {
    /// The volume's name.
    pub name: String,
    /// Its `defaultMode`, when set.
    pub default_mode: Option<i64>,
}

/// A label selector as Kubernetes evaluates it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// `matchLabels`.
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`: (key, operator `In`/`NotIn`/`Exists`/`DoesNotExist`, values).
    pub match_expressions: Vec<(String, String, Vec<String>)>,
}

impl LabelSelector {
    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether it selects an object with these labels.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|(k, op, values)| {
                let v = labels.get(k);
                match op.as_str() {
                    "In" => v.is_some_and(|v| values.contains(v)),
                    "NotIn" => !v.is_some_and(|v| values.contains(v)),
                    "Exists" => v.is_some(),
                    "DoesNotExist" => v.is_none(),
                    _ => false,
                }
            })
    }

    /// Reads a selector from its JSON form.
    pub fn from_value(v: Option<&Value>) -> LabelSelector {
        let Some(v) = v else {
            return LabelSelector::default();
        };
        LabelSelector {
            match_labels: string_map(v.get("matchLabels")),
            match_expressions: v
                .get("matchExpressions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        str_of(e, "key"),
                        str_of(e, "operator"),
                        e.get("values")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                    )
                })
                .collect(),
        }
    }
}

/// One webhook of a MutatingWebhookConfiguration that serves the pod identity webhook.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookRegistration {
    /// `<configuration>/<webhook>`.
    pub name: String,
    /// `failurePolicy: Ignore`: pods are admitted unmutated while the webhook is down.
    pub ignore_failures: bool,
    /// `namespaceSelector`.
    pub namespace_selector: LabelSelector,
    /// `objectSelector`.
    pub object_selector: LabelSelector,
}

/// A running (or pending) pod of the ServiceAccount, or a pod template (`lint --workload`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodFacts {
    /// Pod name; for a template, the workload, e.g. `Deployment reports/api`.
    pub name: String,
    /// Its controller, e.g. `Deployment/api` or `ReplicaSet/api-5d8f`, if any.
    pub owner: Option<String>,
    /// Containers and init containers.
    pub containers: Vec<ContainerFacts>,
    /// Containers the webhook was told to skip (`eks.amazonaws.com/skip-containers`).
    pub skip_containers: Vec<String>,
    /// Whether this is a pod as admitted (live), not a template the webhook has not seen yet.
    pub admitted: bool,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// `metadata.creationTimestamp`, in seconds since the epoch.
    pub created: Option<i64>,
    /// Pod-level `securityContext.runAsUser`.
    pub run_as_user: Option<i64>,
    /// Pod-level `securityContext.fsGroup`.
    pub fs_group: Option<i64>,
    /// Projected volumes with a `serviceAccountToken` source.
    pub token_volumes: Vec<TokenVolume>,
    /// When the ServiceAccount was created (seconds since the epoch), when the gatherer knows.
    pub service_account_created: Option<i64>,
    /// When the role-arn annotation was last set (its managedFields entry), when known.
    pub role_arn_annotated: Option<i64>,
    /// The labels of the pod's namespace; `None` when unknown.
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// The pod identity webhook's registrations; `None` when unknown, empty when there is none.
    pub webhooks: Option<Vec<WebhookRegistration>>,
}

impl PodFacts {
    /// Whether this admitted pod has a container the webhook should have given the role and did
    /// not: one it does not skip, with neither of the web-identity variables.
    pub fn lacks_injection(&self) -> bool {
        self.admitted
            && !self.labels.contains_key(SKIP_LABEL)
            && self.containers.iter().any(|c| {
                !self.skip_containers.contains(&c.name)
                    && !c.env.contains_key(ROLE_ENV)
                    && !c.env.contains_key(TOKEN_ENV)
            })
    }
}

/// A finding of the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadFinding {
    /// A reason of WorkloadsValid (or `TokenExpirationInvalid` for a pod's annotation).
    pub reason: Reason,
    /// Names the pods and what is wrong.
    pub message: String,
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// Seconds since the epoch of an RFC 3339 time as Kubernetes writes it (`2024-05-01T12:00:00Z`).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let rest = &s[19..];
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

fn container_facts(c: &Value) -> ContainerFacts {
    let mut facts = ContainerFacts {
        name: str_of(c, "name"),
        run_as_user: c
            .pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64),
        ..ContainerFacts::default()
    };
    for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
        let name = str_of(e, "name");
        let value = e
            .get("value")
            .and_then(Value::as_str)
            .filter(|_| VALUES_READ.contains(&name.as_str()));
        facts.env.insert(name.clone(), value.map(str::to_string));
        if let Some(from) = e.get("valueFrom") {
            let what = if let Some(r) = from.get("secretKeyRef") {
                format!("Secret {} key {}", str_of(r, "name"), str_of(r, "key"))
            } else if let Some(r) = from.get("configMapKeyRef") {
                format!("ConfigMap {} key {}", str_of(r, "name"), str_of(r, "key"))
            } else {
                "a field reference".to_string()
            };
            facts.env_refs.insert(name, what);
        }
    }
    for e in c
        .get("envFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let prefix = str_of(e, "prefix");
        for kind in ["Secret", "ConfigMap"] {
            let key = if kind == "Secret" {
                "secretRef"
            } else {
                "configMapRef"
            };
            if let Some(r) = e.get(key) {
                facts
                    .env_from
                    .push((kind.to_string(), str_of(r, "name"), prefix.clone()));
            }
        }
    }
    for m in c
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        facts
            .mounts
            .push((str_of(m, "name"), str_of(m, "mountPath")));
    }
    facts
}

/// The facts of a pod from its `metadata` and `spec` in JSON form; `name` names it in findings.
pub fn pod_facts_from(
    meta: Option<&Value>,
    spec: Option<&Value>,
    name: String,
    admitted: bool,
) -> PodFacts {
    let null = Value::Null;
    let meta = meta.unwrap_or(&null);
    let spec = spec.unwrap_or(&null);
    let annotations = string_map(meta.get("annotations"));
    let containers = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec.get(k).and_then(Value::as_array).into_iter().flatten())
        .map(container_facts)
        .collect();
    let token_volumes = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| {
            v.pointer("/projected/sources")
                .and_then(Value::as_array)
                .is_some_and(|s| s.iter().any(|s| s.get("serviceAccountToken").is_some()))
        })
        .map(|v| TokenVolume {
            name: str_of(v, "name"),
            default_mode: v.pointer("/projected/defaultMode").and_then(Value::as_i64),
        })
        .collect();
    let owner = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| format!("{}/{}", str_of(o, "kind"), str_of(o, "name")));
    PodFacts {
        name,
        owner,
        containers,
        skip_containers: annotations
            .get(SKIP_CONTAINERS)
            .map(|s| {
                s.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        admitted,
        labels: string_map(meta.get("labels")),
        created: meta
            .get("creationTimestamp")
            .and_then(Value::as_str)
            .and_then(parse_timestamp),
        run_as_user: spec
            .pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64),
        fs_group: spec
            .pointer("/securityContext/fsGroup")
            .and_then(Value::as_i64),
        token_volumes,
        annotations,
        ..PodFacts::default()
    }
}

/// A pod or pod template read from a manifest, with the ServiceAccount it runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The namespace.
    pub namespace: String,
    /// `spec.serviceAccountName` (`default` when unset).
    pub service_account: String,
    /// The template's facts, named e.g. `Deployment reports/api`.
    pub pod: PodFacts,
}

/// Every Pod and pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) in
/// a manifest, flattening `kind: List`. Templates are not admitted: injection is not expected.
pub fn workloads_in(doc: &Value, default_namespace: &str) -> Vec<Workload> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let template = match kind {
        "Pod" => Some(doc.clone()),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            doc.pointer("/spec/template").cloned()
        }
        "CronJob" => doc.pointer("/spec/jobTemplate/spec/template").cloned(),
        k if k == "List" || k.ends_with("List") => {
            return doc
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|i| workloads_in(i, default_namespace))
                .collect()
        }
        _ => None,
    };
    let Some(template) = template else {
        return Vec::new();
    };
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(default_namespace)
        .to_string();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let spec = template.get("spec");
    let service_account = spec
        .and_then(|s| s.get("serviceAccountName"))
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let mut pod = pod_facts_from(
        template.get("metadata"),
        spec,
        format!("{kind} {namespace}/{name}"),
        false,
    );
    pod.owner = None;
    vec![Workload {
        namespace,
        service_account,
        pod,
    }]
}

fn describe(pod: &PodFacts) -> String {
    match &pod.owner {
        Some(owner) => format!("{} (owned by {owner})", pod.name),
        None => pod.name.clone(),
    }
}

fn list(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

const ROLE_ENV: &str = "AWS_ROLE_ARN";
const TOKEN_ENV: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";

/// Why the webhook did not mutate an admitted pod that lacks the role, when the facts tell.
fn why_not_injected(pod: &PodFacts) -> (Reason, String) {
    let who = describe(pod);
    if let Some(webhooks) = &pod.webhooks {
        if webhooks.is_empty() {
            return (
                Reason::PodIdentityWebhookMissing,
                format!("{who}: no MutatingWebhookConfiguration registers the pod identity webhook, so nothing injects the role"),
            );
        }
        let selects = |w: &WebhookRegistration| -> Option<bool> {
            if !w.object_selector.matches(&pod.labels) {
                return Some(false);
            }
            if w.namespace_selector.is_empty() {
                return Some(true);
            }
            pod.namespace_labels
                .as_ref()
                .map(|l| w.namespace_selector.matches(l))
        };
        if webhooks.iter().all(|w| selects(w) == Some(false)) {
            let names: Vec<&str> = webhooks.iter().map(|w| w.name.as_str()).collect();
            return (
                Reason::WebhookSelectorExcludesPod,
                format!(
                    "{who}: the namespaceSelector/objectSelector of webhook {} does not select this pod or its namespace, so the webhook never sees it",
                    names.join(", ")
                ),
            );
        }
    }
    let annotated = pod.role_arn_annotated.or(pod.service_account_created);
    // Strictly earlier than the annotation comes first: such a pod was never going to get it,
    // even if it was also created right after its ServiceAccount.
    if let (Some(created), Some(annotated)) = (pod.created, annotated) {
        if created < annotated {
            return (
                Reason::PodCreatedBeforeAnnotation,
                format!(
                    "{who} was created {}s before the role-arn annotation was set; restart it",
                    annotated - created
                ),
            );
        }
    }
    // The cache race needs the annotation known to be as old as the ServiceAccount: the API
    // server keeps no managedFields for an object created without tracked fields (`kubectl
    // create serviceaccount`) until its first apply, so an annotation added later by `kubectl
    // annotate` has no time, and then nothing is claimed.
    if let (Some(created), Some(sa_created), Some(set)) = (
        pod.created,
        pod.service_account_created,
        pod.role_arn_annotated,
    ) {
        let with_sa = (created - sa_created).abs() <= CACHE_RACE_SECONDS;
        if with_sa && set <= sa_created + CACHE_RACE_SECONDS {
            return (
                Reason::PodCreatedWithServiceAccount,
                format!("{who} was created within {CACHE_RACE_SECONDS}s of its ServiceAccount, before the webhook's cache had the annotation; restart it once"),
            );
        }
    }
    if annotated.is_some() {
        let fails_open = pod
            .webhooks
            .iter()
            .flatten()
            .filter(|w| w.ignore_failures)
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>();
        if !fails_open.is_empty() {
            return (
                Reason::InjectionFailedOpen,
                format!(
                    "{who} was created after the annotation but not mutated; webhook {} has failurePolicy Ignore, so it was admitted unmutated while the webhook was unreachable",
                    fails_open.join(", ")
                ),
            );
        }
    }
    (
        Reason::StalePodsFound,
        format!(
            "{who} has no {ROLE_ENV}/{TOKEN_ENV} (created before the annotation, or not mutated)"
        ),
    )
}

/// Token-file readability by the kubelet's rules for projected service account tokens
/// (KEP-2451, Kubernetes 1.19+): with `fsGroup`, mode 0600 plus group read for the fsGroup
/// (0640); without, when every container runs as the same explicit `runAsUser`, 0600 owned by
/// it; otherwise the volume's `defaultMode` (0644 unless set), owned by root.
fn unreadable_token(pod: &PodFacts) -> Vec<String> {
    let mut out = Vec::new();
    if pod.fs_group.is_some() {
        return out;
    }
    let users: Vec<Option<i64>> = pod
        .containers
        .iter()
        .map(|c| c.run_as_user.or(pod.run_as_user))
        .collect();
    if users
        .first()
        .is_some_and(|u| u.is_some() && users.iter().all(|v| v == u))
    {
        return out;
    }
    for v in &pod.token_volumes {
        let mode = v.default_mode.unwrap_or(0o644);
        for c in &pod.containers {
            let Some((_, path)) = c.mounts.iter().find(|(n, _)| *n == v.name) else {
                continue;
            };
            let irsa = v.name == TOKEN_VOLUME
                || path.starts_with(TOKEN_DIR)
                || c.env
                    .get(TOKEN_ENV)
                    .and_then(Option::as_deref)
                    .is_some_and(|f| f.starts_with(path.as_str()));
            let uid = c.run_as_user.or(pod.run_as_user);
            if irsa && uid.is_some_and(|u| u != 0) && mode & 0o004 == 0 {
                out.push(format!(
                    "{} container {} runs as uid {} but token volume {} is mode {:04o} owned by root (no fsGroup, and the containers do not share one runAsUser)",
                    describe(pod),
                    c.name,
                    uid.unwrap_or_default(),
                    v.name,
                    mode
                ));
            }
        }
    }
    out
}

/// Audits the pods (or templates) of a ServiceAccount annotated with `role_arn`.
pub fn audit(pods: &[PodFacts], role_arn: &str) -> Vec<WorkloadFinding> {
    let mut found: BTreeMap<Reason, Vec<String>> = BTreeMap::new();
    let mut add = |r: Reason, m: String| found.entry(r).or_default().push(m);
    for pod in pods {
        let who = describe(pod);
        let opted_out = pod.labels.contains_key(SKIP_LABEL);
        let checked: Vec<&ContainerFacts> = pod
            .containers
            .iter()
            .filter(|c| !pod.skip_containers.contains(&c.name))
            .collect();
        if opted_out {
            add(
                Reason::PodOptedOutOfInjection,
                format!("{who} has label {SKIP_LABEL}, so the webhook leaves it alone"),
            );
        } else if checked.is_empty() && !pod.containers.is_empty() {
            add(
                Reason::PodOptedOutOfInjection,
                format!("{who} names every container in {SKIP_CONTAINERS}"),
            );
        } else {
            let mut missing = false;
            for c in &checked {
                let role = c.env.get(ROLE_ENV);
                let token = c.env.contains_key(TOKEN_ENV);
                let preset = |why: &str| format!("{who} container {} {why}", c.name);
                match (role, token) {
                    (Some(_), false) => add(Reason::PresetWebIdentityEnv, preset(&format!("sets {ROLE_ENV} but not {TOKEN_ENV}; the webhook injects neither when one is set"))),
                    (None, true) => add(Reason::PresetWebIdentityEnv, preset(&format!("sets {TOKEN_ENV} but not {ROLE_ENV}; the webhook injects neither when one is set"))),
                    (None, false) if pod.admitted => missing = true,
                    (Some(Some(v)), true) if v != role_arn => {
                        if pod.admitted && pod.token_volumes.iter().any(|t| t.name == TOKEN_VOLUME) {
                            add(Reason::StalePodsFound, format!("{who} container {} has {ROLE_ENV} {v} (the annotation changed since it started)", c.name));
                        } else {
                            add(Reason::PresetWebIdentityEnv, preset(&format!("sets {ROLE_ENV} {v} itself, so the webhook does not inject the annotated role")));
                        }
                    }
                    _ => {}
                }
            }
            if missing {
                let (r, m) = why_not_injected(pod);
                add(r, m);
            }
        }
        for m in unreadable_token(pod) {
            add(Reason::TokenUnreadable, m);
        }
        for c in &pod.containers {
            for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                if c.env.contains_key(key) {
                    let from = match c.env_refs.get(key) {
                        Some(src) => format!(" from {src}"),
                        None => String::new(),
                    };
                    add(
                        Reason::StaticCredentialsFound,
                        format!("{who} container {} sets {key}{from}", c.name),
                    );
                    break;
                }
            }
            for (kind, name, prefix) in &c.env_from {
                if "AWS_ACCESS_KEY_ID".starts_with(prefix.as_str()) {
                    add(Reason::CredentialsMayBeShadowed, format!("{who} container {} takes its environment from {kind} {name} (envFrom); if it holds AWS_ACCESS_KEY_ID, those keys take precedence", c.name));
                }
            }
            let home = c.env.get("HOME").cloned().flatten();
            let mut shared: Vec<String> = [
                "AWS_SHARED_CREDENTIALS_FILE",
                "AWS_CONFIG_FILE",
                "AWS_PROFILE",
            ]
            .into_iter()
            .filter(|k| c.env.contains_key(*k))
            .map(|k| format!("sets {k}"))
            .collect();
            for (volume, path) in &c.mounts {
                let p = path.trim_end_matches('/');
                if p == "/root/.aws"
                    || p.ends_with("/.aws")
                    || home
                        .as_deref()
                        .is_some_and(|h| p == format!("{}/.aws", h.trim_end_matches('/')))
                {
                    shared.push(format!("mounts volume {volume} at {path}"));
                }
            }
            if !shared.is_empty() {
                add(
                    Reason::SharedCredentialsConfigured,
                    format!("{who} container {} {}", c.name, shared.join(" and ")),
                );
            }
        }
        if let Some(role) = pod.annotations.get(KUBE2IAM_ROLE) {
            add(
                Reason::Kube2iamAnnotationFound,
                format!("{who} has annotation {KUBE2IAM_ROLE}: {role:?} (kube2iam/kiam)"),
            );
        }
        if let Some(problem) = pod
            .annotations
            .get(TOKEN_EXPIRATION)
            .and_then(|v| token_expiration_problem(v))
        {
            add(
                Reason::TokenExpirationInvalid,
                format!("{who}: pod annotation {problem}"),
            );
        }
    }
    found
        .into_iter()
        .map(|(reason, items)| {
            let message = match reason {
                Reason::StalePodsFound => format!(
                    "{} pod(s) lack the current role: {}; restart them",
                    items.len(),
                    list(&items)
                ),
                Reason::StaticCredentialsFound => format!(
                    "static credentials take precedence over IRSA: {}",
                    list(&items)
                ),
                _ => list(&items),
            };
            WorkloadFinding { reason, message }
        })
        .collect()
}

/// When a ServiceAccount was created and when its role-arn annotation was last set, from its
/// `metadata` in JSON form: the time of the `managedFields` entry that owns
/// `f:metadata.f:annotations.f:eks.amazonaws.com/role-arn` (the latest, if several do), or `None`.
pub fn service_account_times(meta: &Value) -> (Option<i64>, Option<i64>) {
    let created = meta
        .get("creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_timestamp);
    let annotated = meta
        .get("managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| {
            m.pointer("/fieldsV1/f:metadata/f:annotations")
                .and_then(|a| a.get(format!("f:{}", crate::annotations::ROLE_ARN)))
                .is_some()
        })
        .filter_map(|m| {
            m.get("time")
                .and_then(Value::as_str)
                .and_then(parse_timestamp)
        })
        .max();
    (created, annotated)
}

/// The webhooks of a MutatingWebhookConfiguration (JSON form) that serve the pod identity
/// webhook (`iam-for-pods` or `pod-identity-webhook` in the configuration's or webhook's name).
pub fn webhook_registrations(config: &Value) -> Vec<WebhookRegistration> {
    let config_name = config
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ours = |n: &str| n.contains("iam-for-pods") || n.contains("pod-identity-webhook");
    config
        .get("webhooks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|w| ours(config_name) || ours(&str_of(w, "name")))
        .map(|w| WebhookRegistration {
            name: format!("{config_name}/{}", str_of(w, "name")),
            ignore_failures: w.get("failurePolicy").and_then(Value::as_str) == Some("Ignore"),
            namespace_selector: LabelSelector::from_value(w.get("namespaceSelector")),
            object_selector: LabelSelector::from_value(w.get("objectSelector")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/app";

    fn container(name: &str, env: &[(&str, &str)]) -> ContainerFacts {
        ContainerFacts {
            name: name.into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
            ..Default::default()
        }
    }

    fn injected(name: &str) -> ContainerFacts {
        container(
            name,
            &[
                ("AWS_ROLE_ARN", ROLE),
                (
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
                ),
            ],
        )
    }

    fn live(name: &str, containers: Vec<ContainerFacts>) -> PodFacts {
        PodFacts {
            name: name.into(),
            containers,
            admitted: true,
            token_volumes: vec![TokenVolume {
                name: TOKEN_VOLUME.into(),
                default_mode: None,
            }],
            ..Default::default()
        }
    }

    fn reasons(pods: &[PodFacts]) -> Vec<Reason> {
        audit(pods, ROLE).into_iter().map(|f| f.reason).collect()
    }

    #[test]
    fn finds_stale_and_shadowed_pods_and_respects_skip_containers() {
        let good = live("good", vec![injected("app")]);
        assert!(audit(std::slice::from_ref(&good), ROLE).is_empty());
        let mut old = live("old", vec![container("app", &[])]);
        old.owner = Some("ReplicaSet/api-5d8f".into());
        let moved = live(
            "moved",
            vec![container(
                "app",
                &[
                    ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/old"),
                    ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
                ],
            )],
        );
        let findings = audit(&[good.clone(), old, moved], ROLE);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].reason, Reason::StalePodsFound);
        assert!(
            findings[0]
                .message
                .contains("old (owned by ReplicaSet/api-5d8f)"),
            "{}",
            findings[0].message
        );
        assert!(
            findings[0].message.contains("role/old")
                && findings[0].message.contains("restart them")
        );
        let mut skipped = live("sidecar", vec![injected("app"), container("proxy", &[])]);
        skipped.skip_containers = vec!["proxy".into()];
        assert!(audit(&[skipped], ROLE).is_empty());
        let mut keys = live("keys", vec![injected("app")]);
        keys.containers[0]
            .env
            .insert("AWS_ACCESS_KEY_ID".into(), None);
        keys.containers[0]
            .env_refs
            .insert("AWS_ACCESS_KEY_ID".into(), "Secret aws-keys key id".into());
        let f = audit(&[keys], ROLE);
        assert_eq!(f[0].reason, Reason::StaticCredentialsFound);
        assert!(
            f[0].message.contains("from Secret aws-keys key id"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn tells_why_injection_failed() {
        let bare = || live("p", vec![container("app", &[])]);
        // Created before the annotation.
        let mut p = bare();
        p.created = Some(100);
        p.service_account_created = Some(10);
        p.role_arn_annotated = Some(200);
        assert_eq!(reasons(&[p.clone()]), [Reason::PodCreatedBeforeAnnotation]);
        // Created right after its ServiceAccount, but the annotation came later still.
        p.created = Some(11);
        assert_eq!(reasons(&[p.clone()]), [Reason::PodCreatedBeforeAnnotation]);
        // Created with its ServiceAccount (annotation set at creation).
        p.created = Some(11);
        p.role_arn_annotated = Some(10);
        assert_eq!(
            reasons(&[p.clone()]),
            [Reason::PodCreatedWithServiceAccount]
        );
        // When the annotation was set is unknown (no managedFields): no claim either way.
        p.role_arn_annotated = None;
        assert_eq!(reasons(&[p.clone()]), [Reason::StalePodsFound]);
        p.role_arn_annotated = Some(10);
        // Created later, webhook fails open.
        p.created = Some(500);
        p.webhooks = Some(vec![WebhookRegistration {
            name: "pod-identity-webhook/iam-for-pods.amazonaws.com".into(),
            ignore_failures: true,
            ..Default::default()
        }]);
        assert_eq!(reasons(&[p.clone()]), [Reason::InjectionFailedOpen]);
        // No webhook at all.
        p.webhooks = Some(vec![]);
        assert_eq!(reasons(&[p.clone()]), [Reason::PodIdentityWebhookMissing]);
        // A namespace selector the namespace does not match; unknown labels: cannot tell.
        let mut w = WebhookRegistration {
            name: "w".into(),
            ..Default::default()
        };
        w.namespace_selector
            .match_labels
            .insert("irsa".into(), "enabled".into());
        p.webhooks = Some(vec![w.clone()]);
        p.namespace_labels = Some(BTreeMap::new());
        assert_eq!(reasons(&[p.clone()]), [Reason::WebhookSelectorExcludesPod]);
        p.namespace_labels = None;
        assert_eq!(reasons(&[p.clone()]), [Reason::StalePodsFound]);
        // An object selector expression excludes the pod's label.
        w.namespace_selector = LabelSelector::default();
        w.object_selector.match_expressions =
            vec![("team".into(), "NotIn".into(), vec!["legacy".into()])];
        p.webhooks = Some(vec![w]);
        p.labels.insert("team".into(), "legacy".into());
        assert_eq!(reasons(&[p.clone()]), [Reason::WebhookSelectorExcludesPod]);
        // Opted out.
        let mut o = bare();
        o.labels.insert(SKIP_LABEL.into(), "true".into());
        assert_eq!(reasons(&[o]), [Reason::PodOptedOutOfInjection]);
        // Preset AWS_ROLE_ARN without the token file.
        let preset = live("p", vec![container("app", &[("AWS_ROLE_ARN", ROLE)])]);
        assert_eq!(reasons(&[preset]), [Reason::PresetWebIdentityEnv]);
    }

    #[test]
    fn keeps_no_value_it_does_not_read() {
        let spec = serde_json::json!({"containers": [{"name": "app", "env": [
            {"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI/K7MDENG"},
            {"name": "AWS_ROLE_ARN", "value": ROLE}
        ]}]});
        let pod = pod_facts_from(None, Some(&spec), "p".into(), true);
        let env = &pod.containers[0].env;
        assert_eq!(env.get("AWS_SECRET_ACCESS_KEY"), Some(&None));
        assert_eq!(env.get("AWS_ROLE_ARN"), Some(&Some(ROLE.to_string())));
        assert!(!format!("{pod:?}").contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn token_readability_follows_the_kubelet() {
        let mount = |c: &mut ContainerFacts| c.mounts.push((TOKEN_VOLUME.into(), TOKEN_DIR.into()));
        let mut a = injected("a");
        mount(&mut a);
        let mut b = injected("b");
        mount(&mut b);
        let mut p = live("p", vec![a, b]);
        p.token_volumes[0].default_mode = Some(0o600);
        // Same runAsUser everywhere: 0600 owned by it.
        p.run_as_user = Some(1000);
        assert!(reasons(&[p.clone()]).is_empty());
        // Different users, no fsGroup: root-owned 0600.
        p.containers[1].run_as_user = Some(2000);
        assert_eq!(reasons(&[p.clone()]), [Reason::TokenUnreadable]);
        p.fs_group = Some(3000);
        assert!(reasons(&[p.clone()]).is_empty());
        // The default 0644 is readable by anyone.
        p.fs_group = None;
        p.token_volumes[0].default_mode = None;
        assert!(reasons(&[p]).is_empty());
    }

    #[test]
    fn reads_service_account_times_and_webhook_registrations() {
        let meta = serde_json::json!({
            "creationTimestamp": "2024-05-01T12:00:00Z",
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "time": "2024-05-01T12:00:00Z",
                 "fieldsV1": {"f:metadata": {"f:labels": {}}}},
                {"manager": "kubectl-annotate", "time": "2024-05-02T08:30:00Z",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:eks.amazonaws.com/role-arn": {}}}}}
            ]
        });
        let (created, annotated) = service_account_times(&meta);
        assert_eq!(created, parse_timestamp("2024-05-01T12:00:00Z"));
        assert_eq!(annotated, parse_timestamp("2024-05-02T08:30:00Z"));
        let config = serde_json::json!({
            "metadata": {"name": "pod-identity-webhook"},
            "webhooks": [{
                "name": "iam-for-pods.amazonaws.com",
                "failurePolicy": "Ignore",
                "objectSelector": {"matchExpressions": [
                    {"key": SKIP_LABEL, "operator": "DoesNotExist"}
                ]}
            }]
        });
        let w = webhook_registrations(&config);
        assert_eq!(w.len(), 1);
        assert!(w[0].ignore_failures);
        assert!(w[0].object_selector.matches(&BTreeMap::new()));
        let labels = BTreeMap::from([(SKIP_LABEL.to_string(), "true".to_string())]);
        assert!(!w[0].object_selector.matches(&labels));
        let other = serde_json::json!({"metadata": {"name": "istio-sidecar-injector"}, "webhooks": [{"name": "sidecar-injector.istio.io"}]});
        assert!(webhook_registrations(&other).is_empty());
    }

    #[test]
    fn reads_templates_and_timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2024-03-01T00:00:01Z"), Some(1_709_251_201));
        assert_eq!(
            parse_timestamp("2024-03-01T01:00:01+01:00"),
            Some(1_709_251_201)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
        let doc: Value = serde_json::json!({
            "kind": "List",
            "items": [{
                "kind": "CronJob",
                "metadata": {"name": "nightly", "namespace": "reports"},
                "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                    "serviceAccountName": "s3-reader",
                    "containers": [{"name": "job", "envFrom": [{"secretRef": {"name": "aws"}}]}]
                }}}}}
            }]
        });
        let w = workloads_in(&doc, "default");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].pod.name, "CronJob reports/nightly");
        assert_eq!(w[0].service_account, "s3-reader");
        assert_eq!(
            reasons(&[w[0].pod.clone()]),
            [Reason::CredentialsMayBeShadowed]
        );
    }
}
