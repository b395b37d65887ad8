//! Emulation of the EKS pod identity webhook (github.com/aws/amazon-eks-pod-identity-webhook), the
//! mutating admission webhook that injects credentials into pods on CREATE: IRSA's web identity
//! for a ServiceAccount annotated with a role, or EKS Pod Identity's container credentials for
//! one that has an association (which takes precedence, as upstream's `buildPodPatchConfig`
//! does). It runs on create only, so a pod created before its ServiceAccount got the role
//! annotation or the association stays un-injected until it is recreated, as in real clusters.
//!
//! The rules follow upstream `pkg/handler/handler.go`, `pkg/cache/cache.go` and
//! `pkg/containercredentials`; each place that mirrors a non-obvious upstream rule says so.

use serde_json::{json, Map, Value};

/// ServiceAccount annotation holding the IAM role the pod assumes; without it nothing is injected.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// ServiceAccount annotation overriding the token audience.
pub const AUDIENCE_ANNOTATION: &str = "eks.amazonaws.com/audience";
/// ServiceAccount annotation (a Go `strconv.ParseBool` value) overriding whether
/// `AWS_STS_REGIONAL_ENDPOINTS=regional` is injected.
pub const STS_REGIONAL_ENDPOINTS_ANNOTATION: &str = "eks.amazonaws.com/sts-regional-endpoints";
/// Token lifetime in seconds; read from the ServiceAccount and, overriding it, from the pod.
pub const TOKEN_EXPIRATION_ANNOTATION: &str = "eks.amazonaws.com/token-expiration";
/// Pod annotation: comma-separated container names the webhook leaves untouched.
pub const SKIP_CONTAINERS_ANNOTATION: &str = "eks.amazonaws.com/skip-containers";
/// Pod label that exempts the pod: EKS registers the webhook with an `objectSelector` requiring
/// this key to be absent (`DoesNotExist`), so any value, even `"false"`, skips the pod.
pub const SKIP_POD_LABEL: &str = "eks.amazonaws.com/skip-pod-identity-webhook";
/// Name of the injected projected volume and of its volumeMounts.
pub const TOKEN_VOLUME_NAME: &str = "aws-iam-token";
/// File name of the token inside the mount.
pub const TOKEN_FILE_NAME: &str = "token";
/// Audience used when the ServiceAccount sets none (upstream `--token-audience` default).
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
/// Where the token volume is mounted (upstream `--token-mount-path` default).
pub const DEFAULT_MOUNT_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
/// Token lifetime when nothing sets one (upstream `--token-expiration` default, 24h).
pub const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 86400;
/// Shortest token lifetime; shorter annotated values are raised to it (kube-apiserver's minimum).
pub const MIN_TOKEN_EXPIRATION_SECONDS: i64 = 600;

/// EKS Pod Identity: the audience of its token (upstream `--container-credentials-audience`).
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";
/// EKS Pod Identity: where its token is mounted.
pub const POD_IDENTITY_MOUNT_PATH: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
/// EKS Pod Identity: the projected volume's name, and the token's file name in it.
pub const POD_IDENTITY_TOKEN_VOLUME: &str = "eks-pod-identity-token";
/// EKS Pod Identity: the agent's endpoint (upstream `--container-credentials-full-uri`).
pub const POD_IDENTITY_FULL_URI: &str = "http://169.254.170.23/v1/credentials";
/// The label upstream adds to pods it gives container credentials.
pub const POD_IDENTITY_LABEL: &str = "eks.amazonaws.com/pod-identity";

const ROLE_ARN_ENV: &str = "AWS_ROLE_ARN";
const FULL_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
const AUTHORIZATION_TOKEN_FILE_ENV: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
const TOKEN_FILE_ENV: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
const REGION_ENV: &str = "AWS_REGION";
const DEFAULT_REGION_ENV: &str = "AWS_DEFAULT_REGION";
const STS_ENV: &str = "AWS_STS_REGIONAL_ENDPOINTS";

/// The webhook's command-line tunables. `Default` gives the upstream binary's flag defaults; EKS
/// runs it with `region` set to the cluster's region and, from Kubernetes 1.22 on, `regional_sts`
/// true, so set those for EKS-like pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOptions {
    /// `--aws-default-region`: when set, `AWS_DEFAULT_REGION` and `AWS_REGION` are injected into
    /// containers that set neither.
    pub region: Option<String>,
    /// `--token-audience`: the audience when the ServiceAccount has no audience annotation.
    pub default_audience: String,
    /// `--token-mount-path`: where the token volume is mounted in each container.
    pub mount_path: String,
    /// `--token-expiration`: the lifetime when no valid annotation sets one.
    pub token_expiration: i64,
    /// `--sts-regional-endpoint`: inject `AWS_STS_REGIONAL_ENDPOINTS=regional` unless the
    /// ServiceAccount's annotation says otherwise.
    pub regional_sts: bool,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            region: None,
            default_audience: DEFAULT_AUDIENCE.to_owned(),
            mount_path: DEFAULT_MOUNT_PATH.to_owned(),
            token_expiration: DEFAULT_TOKEN_EXPIRATION_SECONDS,
            regional_sts: false,
        }
    }
}

/// Mutates `pod` as the EKS pod identity webhook would on pod CREATE, with default options.
///
/// Call it on pod CREATE only: the real webhook is registered for CREATE only, so pods created
/// before their ServiceAccount gained `eks.amazonaws.com/role-arn` stay un-injected until they are
/// recreated, as in real clusters. See [`mutate_pod_with_options`].
pub fn mutate_pod(pod: &mut Value, service_account: Option<&Value>) {
    mutate_pod_with_options(pod, service_account, &WebhookOptions::default());
}

/// Mutates `pod` as the EKS pod identity webhook configured by `options` would on pod CREATE.
///
/// Call it on pod CREATE only, never on update: the real webhook is registered for CREATE only, so
/// pods created before their ServiceAccount gained `eks.amazonaws.com/role-arn` stay un-injected
/// until they are recreated, as in real clusters.
///
/// `service_account` is the pod's ServiceAccount object, `None` when it does not exist. Nothing
/// happens when the pod carries the [`SKIP_POD_LABEL`] label or the ServiceAccount has no
/// non-empty [`ROLE_ARN_ANNOTATION`]. Otherwise every container and initContainer not named in the
/// pod's [`SKIP_CONTAINERS_ANNOTATION`] gets, each unless already present:
/// - `AWS_STS_REGIONAL_ENDPOINTS=regional`, when regional STS applies;
/// - `AWS_DEFAULT_REGION` and `AWS_REGION`, when a region is configured and it sets neither;
/// - `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`, when it sets neither;
/// - the `aws-iam-token` volumeMount;
///
/// except that a container already setting a role/token variable, a region variable and
/// `AWS_STS_REGIONAL_ENDPOINTS` is left wholly alone. The pod gets the projected `aws-iam-token`
/// volume first in its volumes unless a volume of that name exists.
///
/// Difference from upstream: the newest webhook jitters the default 24h lifetime down to as
/// little as 22h (a random pick); this emulation keeps `token_expiration` exactly, so tests stay
/// deterministic.
pub fn mutate_pod_with_options(
    pod: &mut Value,
    service_account: Option<&Value>,
    options: &WebhookOptions,
) {
    mutate_pod_for(pod, service_account, options, false);
}

/// Mutates `pod` as [`mutate_pod_with_options`] does, except that when `associated` (an EKS Pod
/// Identity association names the pod's ServiceAccount) the pod gets container credentials
/// instead of IRSA, whatever the ServiceAccount's annotation says (upstream gives the container
/// credentials configuration precedence), and the label [`POD_IDENTITY_LABEL`].
pub fn mutate_pod_for(
    pod: &mut Value,
    service_account: Option<&Value>,
    options: &WebhookOptions,
    associated: bool,
) {
    if metadata_map(pod, "labels").is_some_and(|labels| labels.contains_key(SKIP_POD_LABEL)) {
        return;
    }
    let empty = Map::new();
    let sa_annotations = service_account
        .and_then(|sa| metadata_map(sa, "annotations"))
        .unwrap_or(&empty);
    // Upstream mutates only when the cached role is non-empty, so an empty annotation is no role.
    let role_arn = annotation(sa_annotations, ROLE_ARN_ANNOTATION).filter(|a| !a.is_empty());
    let credentials = match (associated, role_arn) {
        (true, _) => Credentials::Container,
        (false, Some(role)) if service_account.is_some() => {
            Credentials::WebIdentity(role.to_owned())
        }
        _ => return,
    };
    // Presence, not emptiness, decides: upstream takes an empty audience annotation as given.
    let audience = match credentials {
        Credentials::Container => POD_IDENTITY_AUDIENCE.to_owned(),
        Credentials::WebIdentity(_) => annotation(sa_annotations, AUDIENCE_ANNOTATION)
            .unwrap_or(&options.default_audience)
            .to_owned(),
    };
    let regional_sts = annotation(sa_annotations, STS_REGIONAL_ENDPOINTS_ANNOTATION)
        .and_then(parse_go_bool)
        .unwrap_or(options.regional_sts);
    let sa_expiration = annotation(sa_annotations, TOKEN_EXPIRATION_ANNOTATION)
        .and_then(parse_expiration)
        .unwrap_or(options.token_expiration);

    let pod_annotations = metadata_map(pod, "annotations");
    // The pod's annotation wins over the ServiceAccount's; an invalid one is ignored.
    let token_expiration = pod_annotations
        .and_then(|a| annotation(a, TOKEN_EXPIRATION_ANNOTATION))
        .and_then(parse_expiration)
        .unwrap_or(sa_expiration);
    let skipped: Vec<String> = pod_annotations
        .and_then(|a| annotation(a, SKIP_CONTAINERS_ANNOTATION))
        .and_then(first_csv_record)
        .unwrap_or_default();

    if credentials == Credentials::Container {
        if let Some(metadata) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
            let labels = metadata
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert(POD_IDENTITY_LABEL.to_owned(), json!("enabled"));
            }
        }
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let (volume_name, mount_path, token_name) = match credentials {
        Credentials::Container => (
            POD_IDENTITY_TOKEN_VOLUME,
            POD_IDENTITY_MOUNT_PATH.to_owned(),
            POD_IDENTITY_TOKEN_VOLUME,
        ),
        Credentials::WebIdentity(_) => (
            TOKEN_VOLUME_NAME,
            options.mount_path.clone(),
            TOKEN_FILE_NAME,
        ),
    };
    let injection = Injection {
        token_file: token_file_path(&mount_path, token_name, spec),
        credentials: credentials.clone(),
        volume_name,
        mount_path,
        region: options.region.clone().filter(|r| !r.is_empty()),
        regional_sts,
    };
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let name = container.get("name").and_then(Value::as_str).unwrap_or("");
            if !skipped.iter().any(|s| s == name) {
                injection.apply(container);
            }
        }
    }

    let volume = json!({
        "name": volume_name,
        "projected": {"sources": [{"serviceAccountToken": {
            "audience": audience,
            "expirationSeconds": token_expiration,
            "path": token_name,
        }}]},
    });
    match spec.get_mut("volumes").and_then(Value::as_array_mut) {
        Some(volumes) => {
            if !volumes.iter().any(|v| has_name(v, volume_name)) {
                // Upstream's patch is `add /spec/volumes/0`: the token volume goes first.
                volumes.insert(0, volume);
            }
        }
        None => {
            spec.insert("volumes".to_owned(), Value::Array(vec![volume]));
        }
    }
}

/// Which credentials the webhook injects.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Credentials {
    /// IRSA: `AWS_ROLE_ARN` (this role) and `AWS_WEB_IDENTITY_TOKEN_FILE`.
    WebIdentity(String),
    /// EKS Pod Identity: `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
    Container,
}

/// What gets injected into each container of one pod.
struct Injection {
    credentials: Credentials,
    token_file: String,
    volume_name: &'static str,
    mount_path: String,
    region: Option<String>,
    regional_sts: bool,
}

impl Injection {
    /// Upstream `addEnvToContainer`: each env group is added only when the container sets none of
    /// it, and the volumeMount whenever one of that name is missing; a container that already sets
    /// all three groups is left wholly alone, volumeMount included.
    fn apply(&self, container: &mut Map<String, Value>) {
        let names: Vec<String> = container
            .get("env")
            .and_then(Value::as_array)
            .map(|env| {
                env.iter()
                    .filter_map(|e| e.get("name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let defines = |keys: &[&str]| names.iter().any(|n| keys.contains(&n.as_str()));
        // Upstream looks only at the variables of the credentials it injects.
        let credentials_defined = match self.credentials {
            Credentials::WebIdentity(_) => defines(&[ROLE_ARN_ENV, TOKEN_FILE_ENV]),
            Credentials::Container => defines(&[FULL_URI_ENV, AUTHORIZATION_TOKEN_FILE_ENV]),
        };
        let region_defined = defines(&[REGION_ENV, DEFAULT_REGION_ENV]);
        let sts_defined = defines(&[STS_ENV]);
        if credentials_defined && region_defined && sts_defined {
            return;
        }

        let mut added = Vec::new();
        if !sts_defined && self.regional_sts {
            added.push(env_var(STS_ENV, "regional"));
        }
        if let Some(region) = self.region.as_deref().filter(|_| !region_defined) {
            added.push(env_var(DEFAULT_REGION_ENV, region));
            added.push(env_var(REGION_ENV, region));
        }
        if !credentials_defined {
            match &self.credentials {
                Credentials::WebIdentity(role_arn) => {
                    added.push(env_var(ROLE_ARN_ENV, role_arn));
                    added.push(env_var(TOKEN_FILE_ENV, &self.token_file));
                }
                Credentials::Container => {
                    added.push(env_var(FULL_URI_ENV, POD_IDENTITY_FULL_URI));
                    added.push(env_var(AUTHORIZATION_TOKEN_FILE_ENV, &self.token_file));
                }
            }
        }
        if !added.is_empty() {
            array_entry(container, "env").extend(added);
        }

        let mounts = array_entry(container, "volumeMounts");
        if !mounts.iter().any(|m| has_name(m, self.volume_name)) {
            mounts.push(json!({
                "name": self.volume_name,
                "readOnly": true,
                "mountPath": self.mount_path,
            }));
        }
    }
}

/// The token path put in `AWS_WEB_IDENTITY_TOKEN_FILE`; upstream rewrites it as a Windows path
/// (`C:\var\run\...`) for pods whose nodeSelector picks Windows nodes.
fn token_file_path(mount_path: &str, file: &str, spec: &Map<String, Value>) -> String {
    let path = format!("{}/{file}", mount_path.trim_end_matches('/'));
    let selector = spec.get("nodeSelector");
    let windows = ["kubernetes.io/os", "beta.kubernetes.io/os"]
        .iter()
        .any(|key| selector.and_then(|s| s.get(key)).and_then(Value::as_str) == Some("windows"));
    if windows {
        format!("C:{}", path.replace('/', "\\"))
    } else {
        path
    }
}

/// `metadata.<field>` of an object, when it is a map.
fn metadata_map<'a>(object: &'a Value, field: &str) -> Option<&'a Map<String, Value>> {
    object.get("metadata")?.get(field)?.as_object()
}

fn annotation<'a>(annotations: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    annotations.get(key).and_then(Value::as_str)
}

fn has_name(item: &Value, name: &str) -> bool {
    item.get("name").and_then(Value::as_str) == Some(name)
}

fn env_var(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

/// The array at `key`, created (or replacing a non-array) so injection can append to it.
fn array_entry<'a>(object: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let entry = object
        .entry(key)
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    match entry {
        Value::Array(items) => items,
        _ => unreachable!("the entry was just made an array"),
    }
}

/// A token-expiration annotation as upstream reads it: a base-10 `int64` (`strconv.ParseInt`),
/// raised to [`MIN_TOKEN_EXPIRATION_SECONDS`]; `None` (use the fallback) when it does not parse.
fn parse_expiration(value: &str) -> Option<i64> {
    value
        .parse::<i64>()
        .ok()
        .map(|seconds| seconds.max(MIN_TOKEN_EXPIRATION_SECONDS))
}

/// Go's `strconv.ParseBool`, which upstream uses for the regional-STS annotation.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The first record of `text` as Go's `encoding/csv` reads it, which is how upstream splits the
/// skip-containers annotation: fields are not trimmed, quoted fields may hold commas, blank lines
/// are skipped, and a malformed record is `None` (upstream then skips no container).
fn first_csv_record(text: &str) -> Option<Vec<String>> {
    let text = text.replace("\r\n", "\n");
    let mut chars = text.trim_start_matches('\n').chars().peekable();
    chars.peek()?;
    let mut fields = Vec::new();
    loop {
        let mut field = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next()? {
                    '"' if chars.next_if_eq(&'"').is_some() => field.push('"'),
                    '"' => break,
                    c => field.push(c),
                }
            }
            match chars.next() {
                Some(',') => fields.push(field),
                None | Some('\n') => {
                    fields.push(field);
                    return Some(fields);
                }
                Some(_) => return None,
            }
        } else {
            loop {
                match chars.next() {
                    Some(',') => break,
                    None | Some('\n') => {
                        fields.push(field);
                        return Some(fields);
                    }
                    Some('"') => return None,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/s3-reader";
    const TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

    fn sa(annotations: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "app", "namespace": "default", "annotations": annotations},
        })
    }

    fn role_sa() -> Value {
        sa(json!({ROLE_ARN_ANNOTATION: ROLE}))
    }

    fn pod(spec: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "app", "namespace": "default"},
            "spec": spec,
        })
    }

    fn simple_pod() -> Value {
        pod(json!({
            "serviceAccountName": "app",
            "containers": [{"name": "app", "image": "amazonlinux"}],
        }))
    }

    fn with_options(mut pod: Value, sa: &Value, options: &WebhookOptions) -> Value {
        mutate_pod_with_options(&mut pod, Some(sa), options);
        pod
    }

    fn mutated(mut pod: Value, sa: &Value) -> Value {
        mutate_pod(&mut pod, Some(sa));
        pod
    }

    fn eks_options() -> WebhookOptions {
        WebhookOptions {
            region: Some("us-east-1".to_owned()),
            regional_sts: true,
            ..WebhookOptions::default()
        }
    }

    fn env_names(container: &Value) -> Vec<&str> {
        container["env"]
            .as_array()
            .map(|env| env.iter().map(|e| e["name"].as_str().unwrap()).collect())
            .unwrap_or_default()
    }

    fn token_projection(pod: &Value) -> &Value {
        &pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
    }

    fn expiration_for(sa_value: Option<&str>, pod_value: Option<&str>) -> i64 {
        let mut annotations = json!({ROLE_ARN_ANNOTATION: ROLE});
        if let Some(v) = sa_value {
            annotations[TOKEN_EXPIRATION_ANNOTATION] = json!(v);
        }
        let mut p = simple_pod();
        if let Some(v) = pod_value {
            p["metadata"]["annotations"] = json!({TOKEN_EXPIRATION_ANNOTATION: v});
        }
        let out = mutated(p, &sa(annotations));
        token_projection(&out)["expirationSeconds"]
            .as_i64()
            .unwrap()
    }

    #[test]
    fn injects_env_mount_and_volume_like_upstream() {
        let out = mutated(simple_pod(), &role_sa());
        assert_eq!(
            out["spec"]["containers"][0],
            json!({
                "name": "app",
                "image": "amazonlinux",
                "env": [
                    {"name": "AWS_ROLE_ARN", "value": ROLE},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": TOKEN_FILE},
                ],
                "volumeMounts": [{
                    "name": "aws-iam-token",
                    "readOnly": true,
                    "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount",
                }],
            })
        );
        assert_eq!(
            out["spec"]["volumes"],
            json!([{
                "name": "aws-iam-token",
                "projected": {"sources": [{"serviceAccountToken": {
                    "audience": "sts.amazonaws.com",
                    "expirationSeconds": 86400,
                    "path": "token",
                }}]},
            }])
        );
    }

    #[test]
    fn region_and_regional_sts_come_first_in_upstream_order() {
        let out = with_options(simple_pod(), &role_sa(), &eks_options());
        let container = &out["spec"]["containers"][0];
        assert_eq!(
            env_names(container),
            [
                "AWS_STS_REGIONAL_ENDPOINTS",
                "AWS_DEFAULT_REGION",
                "AWS_REGION",
                "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
            ]
        );
        assert_eq!(container["env"][0]["value"], "regional");
        assert_eq!(container["env"][1]["value"], "us-east-1");
        assert_eq!(container["env"][2]["value"], "us-east-1");
    }

    #[test]
    fn no_service_account_or_no_role_means_no_change() {
        let original = simple_pod();
        let mut p = original.clone();
        mutate_pod(&mut p, None);
        assert_eq!(p, original);

        for annotations in [
            json!({}),
            json!({ROLE_ARN_ANNOTATION: ""}),
            json!({AUDIENCE_ANNOTATION: "x"}),
        ] {
            assert_eq!(mutated(original.clone(), &sa(annotations)), original);
        }
        let no_annotations = json!({"metadata": {"name": "app"}});
        assert_eq!(mutated(original.clone(), &no_annotations), original);
    }

    #[test]
    fn skip_label_with_any_value_leaves_pod_alone() {
        for value in ["true", "false", ""] {
            let mut p = simple_pod();
            p["metadata"]["labels"] = json!({SKIP_POD_LABEL: value});
            let original = p.clone();
            assert_eq!(mutated(p, &role_sa()), original, "label value {value:?}");
        }
        // Only a label exempts the pod, not an annotation of the same key.
        let mut p = simple_pod();
        p["metadata"]["annotations"] = json!({SKIP_POD_LABEL: "true"});
        let out = mutated(p, &role_sa());
        assert!(out["spec"]["volumes"].is_array());
    }

    #[test]
    fn an_association_gets_container_credentials_instead_of_irsa() {
        let mut p = simple_pod();
        p["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "image": "envoy"}));
        p["metadata"]["annotations"] = json!({SKIP_CONTAINERS_ANNOTATION: "sidecar"});
        // The annotation names a role too: the association takes precedence, as upstream.
        mutate_pod_for(&mut p, Some(&role_sa()), &eks_options(), true);
        assert_eq!(p["metadata"]["labels"][POD_IDENTITY_LABEL], "enabled");
        let app = &p["spec"]["containers"][0];
        let env: Vec<(&str, &str)> = app["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
            .collect();
        assert!(
            env.contains(&(FULL_URI_ENV, POD_IDENTITY_FULL_URI)),
            "{env:?}"
        );
        assert!(env.contains(&(
            AUTHORIZATION_TOKEN_FILE_ENV,
            "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"
        )));
        assert!(!env.iter().any(|(k, _)| *k == ROLE_ARN_ENV));
        assert_eq!(app["volumeMounts"][0]["mountPath"], POD_IDENTITY_MOUNT_PATH);
        assert!(p["spec"]["containers"][1]["env"].is_null(), "skipped");
        assert_eq!(token_projection(&p)["audience"], POD_IDENTITY_AUDIENCE);
        assert_eq!(p["spec"]["volumes"][0]["name"], POD_IDENTITY_TOKEN_VOLUME);
        // A container setting one of them is left its own (upstream's containerCredentialsKeysDefined).
        let mut own = simple_pod();
        own["spec"]["containers"][0]["env"] = json!([{"name": FULL_URI_ENV, "value": "http://x"}]);
        mutate_pod_for(
            &mut own,
            Some(&sa(json!({}))),
            &WebhookOptions::default(),
            true,
        );
        let names = env_names(&own["spec"]["containers"][0]);
        assert_eq!(names, [FULL_URI_ENV]);
    }

    #[test]
    fn audience_annotation_overrides_default() {
        let out = mutated(
            simple_pod(),
            &sa(json!({ROLE_ARN_ANNOTATION: ROLE, AUDIENCE_ANNOTATION: "my-aud"})),
        );
        assert_eq!(token_projection(&out)["audience"], "my-aud");

        let options = WebhookOptions {
            default_audience: "flag-aud".to_owned(),
            ..WebhookOptions::default()
        };
        let out = with_options(simple_pod(), &role_sa(), &options);
        assert_eq!(token_projection(&out)["audience"], "flag-aud");
    }

    #[test]
    fn token_expiration_parsing_matches_upstream() {
        assert_eq!(expiration_for(None, None), 86400);
        assert_eq!(expiration_for(Some("3600"), None), 3600);
        assert_eq!(expiration_for(Some("+7200"), None), 7200);
        assert_eq!(expiration_for(Some("100"), None), 600);
        assert_eq!(expiration_for(Some("0"), None), 600);
        assert_eq!(expiration_for(Some("-5"), None), 600);
        assert_eq!(expiration_for(Some("1h"), None), 86400);
        assert_eq!(expiration_for(Some(" 3600"), None), 86400);
        assert_eq!(expiration_for(Some(""), None), 86400);
        // Upstream has no upper clamp on annotations.
        assert_eq!(expiration_for(Some("172800"), None), 172800);
    }

    #[test]
    fn pod_token_expiration_overrides_service_account() {
        assert_eq!(expiration_for(Some("3600"), Some("7200")), 7200);
        assert_eq!(expiration_for(Some("3600"), Some("0")), 600);
        // An invalid pod value keeps the ServiceAccount's (already validated) value.
        assert_eq!(expiration_for(Some("3600"), Some("soon")), 3600);
        assert_eq!(expiration_for(None, Some("1800")), 1800);
    }

    #[test]
    fn invalid_sa_expiration_falls_back_to_the_flag() {
        let options = WebhookOptions {
            token_expiration: 43200,
            ..WebhookOptions::default()
        };
        let bad = sa(json!({ROLE_ARN_ANNOTATION: ROLE, TOKEN_EXPIRATION_ANNOTATION: "x"}));
        let out = with_options(simple_pod(), &bad, &options);
        assert_eq!(token_projection(&out)["expirationSeconds"], 43200);
    }

    #[test]
    fn regional_sts_annotation_uses_go_parse_bool() {
        let sts = |value: &str, default: bool| {
            let options = WebhookOptions {
                regional_sts: default,
                ..WebhookOptions::default()
            };
            let s =
                sa(json!({ROLE_ARN_ANNOTATION: ROLE, STS_REGIONAL_ENDPOINTS_ANNOTATION: value}));
            let out = with_options(simple_pod(), &s, &options);
            env_names(&out["spec"]["containers"][0]).contains(&STS_ENV)
        };
        for truthy in ["true", "True", "TRUE", "t", "1"] {
            assert!(sts(truthy, false), "{truthy}");
        }
        for falsy in ["false", "False", "f", "0"] {
            assert!(!sts(falsy, true), "{falsy}");
        }
        // Unparseable values fall back to the flag.
        assert!(!sts("yes", false));
        assert!(sts("yes", true));
        assert!(!sts(" true", false));
        // Absent: the flag decides.
        let out = with_options(simple_pod(), &role_sa(), &eks_options());
        assert!(env_names(&out["spec"]["containers"][0]).contains(&STS_ENV));
        let out = mutated(simple_pod(), &role_sa());
        assert!(!env_names(&out["spec"]["containers"][0]).contains(&STS_ENV));
    }

    #[test]
    fn existing_role_env_keeps_user_values_but_still_gets_region_and_mount() {
        // Mirrors upstream fixture rawPodSkip.pod.yaml.
        let p = pod(json!({
            "containers": [
                {"name": "sidecar", "image": "amazonlinux"},
                {"name": "app", "image": "amazonlinux",
                 "env": [{"name": "AWS_ROLE_ARN", "value": "already-defined"}]},
            ],
        }));
        let mut p = p;
        p["metadata"]["annotations"] = json!({SKIP_CONTAINERS_ANNOTATION: "sidecar"});
        let options = WebhookOptions {
            region: Some("us-west-2".to_owned()),
            ..WebhookOptions::default()
        };
        let out = with_options(p, &role_sa(), &options);
        assert_eq!(
            out["spec"]["containers"][0],
            json!({"name": "sidecar", "image": "amazonlinux"})
        );
        let app = &out["spec"]["containers"][1];
        assert_eq!(
            app["env"],
            json!([
                {"name": "AWS_ROLE_ARN", "value": "already-defined"},
                {"name": "AWS_DEFAULT_REGION", "value": "us-west-2"},
                {"name": "AWS_REGION", "value": "us-west-2"},
            ])
        );
        assert_eq!(app["volumeMounts"][0]["name"], "aws-iam-token");
        assert!(out["spec"]["volumes"].is_array());
    }

    #[test]
    fn token_file_env_alone_also_counts_as_web_identity_defined() {
        let p = pod(json!({"containers": [{"name": "app",
            "env": [{"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/custom"}]}]}));
        let out = mutated(p, &role_sa());
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/custom"}])
        );
        assert_eq!(
            out["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "aws-iam-token"
        );
    }

    #[test]
    fn fully_configured_container_is_left_alone() {
        // Mirrors upstream fixture rawPodHasAll.pod.yaml: no env and no volumeMount added.
        let container = json!({"name": "app", "image": "amazonlinux", "env": [
            {"name": "AWS_REGION", "value": "cn-northwest-1"},
            {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
            {"name": "AWS_ROLE_ARN", "value": "arn:aws-cn:iam::111122223333:role/s3-reader"},
        ]});
        let out = with_options(
            pod(json!({"containers": [container.clone()]})),
            &role_sa(),
            &eks_options(),
        );
        assert_eq!(out["spec"]["containers"][0], container);
        // The pod-level volume is still added.
        assert_eq!(out["spec"]["volumes"][0]["name"], "aws-iam-token");
    }

    #[test]
    fn either_region_variable_suppresses_both() {
        let p = pod(json!({"containers": [{"name": "app",
            "env": [{"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"}]}]}));
        let out = with_options(p, &role_sa(), &eks_options());
        assert_eq!(
            env_names(&out["spec"]["containers"][0]),
            [
                "AWS_DEFAULT_REGION",
                "AWS_STS_REGIONAL_ENDPOINTS",
                "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE"
            ]
        );
    }

    #[test]
    fn empty_region_injects_no_region() {
        let options = WebhookOptions {
            region: Some(String::new()),
            ..WebhookOptions::default()
        };
        let out = with_options(simple_pod(), &role_sa(), &options);
        assert_eq!(
            env_names(&out["spec"]["containers"][0]),
            ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
        );
    }

    #[test]
    fn init_containers_are_injected_too() {
        let p = pod(json!({
            "initContainers": [
                {"name": "init", "image": "amazonlinux"},
                {"name": "sidecar", "image": "amazonlinux", "restartPolicy": "Always"},
            ],
            "containers": [{"name": "app", "image": "amazonlinux"}],
        }));
        let out = mutated(p, &role_sa());
        for path in ["initContainers", "containers"] {
            for c in out["spec"][path].as_array().unwrap() {
                assert_eq!(
                    env_names(c),
                    ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
                );
                assert_eq!(c["volumeMounts"][0]["name"], "aws-iam-token");
            }
        }
        assert_eq!(out["spec"]["initContainers"][1]["restartPolicy"], "Always");
    }

    #[test]
    fn skip_containers_applies_to_init_and_regular_containers() {
        let mut p = pod(json!({
            "initContainers": [{"name": "init"}, {"name": "init2"}],
            "containers": [{"name": "app"}, {"name": "proxy"}],
        }));
        p["metadata"]["annotations"] = json!({SKIP_CONTAINERS_ANNOTATION: "init,proxy"});
        let out = mutated(p, &role_sa());
        assert_eq!(out["spec"]["initContainers"][0], json!({"name": "init"}));
        assert_eq!(out["spec"]["containers"][1], json!({"name": "proxy"}));
        assert!(out["spec"]["initContainers"][1]["env"].is_array());
        assert!(out["spec"]["containers"][0]["env"].is_array());
    }

    #[test]
    fn skip_containers_on_the_service_account_is_ignored_like_upstream() {
        let s = sa(json!({ROLE_ARN_ANNOTATION: ROLE, SKIP_CONTAINERS_ANNOTATION: "app"}));
        let out = mutated(simple_pod(), &s);
        assert!(out["spec"]["containers"][0]["env"].is_array());
    }

    #[test]
    fn skip_containers_is_not_trimmed() {
        let mut p = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        p["metadata"]["annotations"] = json!({SKIP_CONTAINERS_ANNOTATION: "a, b"});
        let out = mutated(p, &role_sa());
        assert_eq!(out["spec"]["containers"][0], json!({"name": "a"}));
        assert!(out["spec"]["containers"][1]["env"].is_array());
    }

    #[test]
    fn csv_parsing_follows_encoding_csv() {
        let rec = |s: &str| first_csv_record(s);
        let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(rec("a,b"), strings(&["a", "b"]));
        assert_eq!(rec("a, b"), strings(&["a", " b"]));
        assert_eq!(rec("a,,b,"), strings(&["a", "", "b", ""]));
        assert_eq!(rec("\n\na,b\nc"), strings(&["a", "b"]));
        assert_eq!(rec("a\r\nb"), strings(&["a"]));
        assert_eq!(rec(r#""a,b",c"#), strings(&["a,b", "c"]));
        assert_eq!(rec(r#""a""b""#), strings(&["a\"b"]));
        assert_eq!(rec("\"multi\nline\",x"), strings(&["multi\nline", "x"]));
        assert_eq!(rec(r#""open"#), None);
        assert_eq!(rec(""), None);
        assert_eq!(rec("\n"), None);
        assert_eq!(rec(r#"a"b"#), None);
        assert_eq!(rec(r#""a"b"#), None);
    }

    #[test]
    fn malformed_skip_list_skips_nothing() {
        let mut p = simple_pod();
        // A quoted field left open is a parse error in encoding/csv.
        p["metadata"]["annotations"] = json!({SKIP_CONTAINERS_ANNOTATION: "app,\"x"});
        // So is a quote inside an unquoted field.
        let mut q = simple_pod();
        q["metadata"]["annotations"] = json!({SKIP_CONTAINERS_ANNOTATION: "ap\"p"});
        for p in [p, q] {
            let out = mutated(p, &role_sa());
            assert!(out["spec"]["containers"][0]["env"].is_array());
        }
    }

    #[test]
    fn existing_volume_is_not_added_twice_and_new_one_goes_first() {
        let p = pod(json!({
            "containers": [{"name": "app"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }));
        let once = mutated(p, &role_sa());
        let volumes = once["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[0]["name"], "aws-iam-token");
        assert_eq!(volumes[1]["name"], "data");

        // A second pass (as on a webhook reinvocation) changes nothing.
        let twice = mutated(once.clone(), &role_sa());
        assert_eq!(twice, once);
    }

    #[test]
    fn user_volume_and_mount_named_aws_iam_token_are_kept() {
        // Mirrors upstream fixture rawPodHasVolumeMount.pod.yaml.
        let p = pod(json!({
            "containers": [{"name": "app",
                "volumeMounts": [{"name": "aws-iam-token", "mountPath": "/custom"}]}],
            "volumes": [{"name": "aws-iam-token", "hostPath": {"path": "/path/to/token"}}],
        }));
        let out = mutated(p, &role_sa());
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "aws-iam-token", "hostPath": {"path": "/path/to/token"}}])
        );
        let c = &out["spec"]["containers"][0];
        assert_eq!(
            c["volumeMounts"],
            json!([{"name": "aws-iam-token", "mountPath": "/custom"}])
        );
        assert_eq!(
            env_names(c),
            ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
        );
    }

    #[test]
    fn empty_volumes_list_gets_the_token_volume() {
        let p = pod(json!({"containers": [{"name": "app"}], "volumes": []}));
        let out = mutated(p, &role_sa());
        assert_eq!(out["spec"]["volumes"][0]["name"], "aws-iam-token");
        assert_eq!(out["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn windows_pods_get_a_windows_token_path() {
        for key in ["kubernetes.io/os", "beta.kubernetes.io/os"] {
            let p = pod(json!({
                "containers": [{"name": "app"}],
                "nodeSelector": {key: "windows"},
            }));
            let out = mutated(p, &role_sa());
            let c = &out["spec"]["containers"][0];
            assert_eq!(
                c["env"][1]["value"],
                r"C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token"
            );
            // The mount path itself stays in Unix form, as upstream leaves it.
            assert_eq!(c["volumeMounts"][0]["mountPath"], DEFAULT_MOUNT_PATH);
        }
    }

    #[test]
    fn custom_mount_path_is_used_for_mount_and_token_file() {
        let options = WebhookOptions {
            mount_path: "/var/run/aws/".to_owned(),
            ..WebhookOptions::default()
        };
        let out = with_options(simple_pod(), &role_sa(), &options);
        let c = &out["spec"]["containers"][0];
        assert_eq!(c["env"][1]["value"], "/var/run/aws/token");
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/var/run/aws/");
    }

    #[test]
    fn existing_env_and_mounts_are_preserved_and_appended_to() {
        let p = pod(json!({"containers": [{"name": "app",
            "env": [{"name": "FOO", "value": "bar"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}));
        let out = mutated(p, &role_sa());
        let c = &out["spec"]["containers"][0];
        assert_eq!(
            env_names(c),
            ["FOO", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
        );
        assert_eq!(c["volumeMounts"][0]["name"], "data");
        assert_eq!(c["volumeMounts"][1]["name"], "aws-iam-token");
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        for spec in [
            json!(null),
            json!({"containers": "nope"}),
            json!({"containers": [1, null, {"name": 5}], "volumes": {"x": 1}}),
            json!({"containers": [{"name": "a", "env": "x", "volumeMounts": 3}]}),
        ] {
            let mut p = pod(spec);
            mutate_pod(&mut p, Some(&role_sa()));
        }
        let mut no_spec = json!({"metadata": {"name": "x"}});
        mutate_pod(&mut no_spec, Some(&role_sa()));
        assert_eq!(no_spec, json!({"metadata": {"name": "x"}}));
    }

    #[test]
    fn default_options_are_the_upstream_flag_defaults() {
        let o = WebhookOptions::default();
        assert_eq!(o.region, None);
        assert_eq!(o.default_audience, "sts.amazonaws.com");
        assert_eq!(
            o.mount_path,
            "/var/run/secrets/eks.amazonaws.com/serviceaccount"
        );
        assert_eq!(o.token_expiration, 86400);
        assert!(!o.regional_sts);
    }
}
