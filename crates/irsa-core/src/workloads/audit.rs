//! The audit itself: for each pod or template, does the declared identity reach the container
//! that needs it, and does nothing the SDKs read first take its place? The SDKs' credential
//! chain, in order: environment keys, a profile (shared credentials and config files), web
//! identity (IRSA), container credentials (EKS Pod Identity), the instance's metadata (the node's
//! role). Whatever the chain finds before the mechanism in force wins over it.

use std::collections::BTreeMap;

use super::{token, why, ContainerFacts, Expected, Mechanism, PodFacts, WorkloadFinding};
use super::{KUBE2IAM_ROLE, ROLE_ENV, SKIP_LABEL, TOKEN_ENV, TOKEN_VOLUME};
use crate::annotations::{token_expiration_problem, SKIP_CONTAINERS, TOKEN_EXPIRATION};
use crate::pod_identity::{AGENT_URIS, FULL_URI_ENV, RELATIVE_URI_ENV, TOKEN_DIR, TOKEN_FILE_ENV};
use crate::reason::Reason;

/// Variables that hold static keys.
const KEY_VARIABLES: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
/// Variables that point the SDKs at a profile.
const PROFILE_VARIABLES: [&str; 3] = [
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_PROFILE",
];

/// Findings collected by reason, each a list of what was found where.
type Found = BTreeMap<Reason, Vec<String>>;

fn add(found: &mut Found, reason: Reason, message: String) {
    found.entry(reason).or_default().push(message);
}

/// Audits the pods (or templates) of a ServiceAccount whose declared identity is `expected`.
pub fn audit(pods: &[PodFacts], expected: &Expected<'_>) -> Vec<WorkloadFinding> {
    let mut found = Found::new();
    for pod in pods {
        if injection(pod, expected, &mut found) == Reach::Reaches {
            if let Expected::PodIdentity { agents, .. } = expected {
                pod_identity_on_node(pod, *agents, &mut found);
            }
        }
        for m in token::unreadable(pod, expected.mechanism()) {
            add(&mut found, Reason::TokenUnreadable, m);
        }
        for c in &pod.containers {
            shadows(pod, c, expected, &mut found);
        }
        if let Some(role) = pod.annotations.get(KUBE2IAM_ROLE) {
            add(
                &mut found,
                Reason::Kube2iamAnnotationFound,
                format!(
                    "{} has annotation {KUBE2IAM_ROLE}: {role:?} (kube2iam/kiam)",
                    pod.describe()
                ),
            );
        }
        if let Some(problem) = pod
            .annotations
            .get(TOKEN_EXPIRATION)
            .and_then(|v| token_expiration_problem(v))
        {
            add(
                &mut found,
                Reason::TokenExpirationInvalid,
                format!("{}: pod annotation {problem}", pod.describe()),
            );
        }
    }
    let mechanism = expected.mechanism().name();
    found
        .into_iter()
        .map(|(reason, items)| {
            let message = match reason {
                Reason::StalePodsFound => format!(
                    "{} pod(s) lack the current credentials: {}; restart them",
                    items.len(),
                    list(&items)
                ),
                Reason::StaticCredentialsFound => format!(
                    "static credentials take precedence over {mechanism}: {}",
                    list(&items)
                ),
                _ => list(&items),
            };
            WorkloadFinding { reason, message }
        })
        .collect()
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

/// Whether the declared identity reaches the pod, as far as admission decides.
#[derive(Debug, PartialEq, Eq)]
enum Reach {
    /// It does (or, for a template, will).
    Reaches,
    /// The webhook leaves the pod or its main container alone.
    Skipped,
}

/// The skip label, `skip-containers`, preset variables, and (for admitted pods) whether the
/// webhook injected what it should have and, if not, why.
fn injection(pod: &PodFacts, expected: &Expected<'_>, found: &mut Found) -> Reach {
    let who = pod.describe();
    let mechanism = expected.mechanism();
    let main_injected = pod.main_container().is_some_and(|c| mechanism.injected(c));
    if let Some(value) = pod.labels.get(SKIP_LABEL) {
        // A webhook without the EKS objectSelector may have mutated it anyway: then it reached.
        if pod.admitted && main_injected {
            return Reach::Reaches;
        }
        let falsy = ["false", "no", "0", "off", ""].contains(&value.to_ascii_lowercase().as_str());
        let note = if falsy {
            format!(
                " (the value {value:?} skips it too: the webhook's objectSelector only asks whether the label exists)"
            )
        } else {
            String::new()
        };
        add(
            found,
            Reason::PodOptedOutOfInjection,
            format!(
                "{who} has label {SKIP_LABEL}={value:?}{note}, so the webhook leaves it alone: its containers \
                 get no {} and run as the node's role",
                expected.describe()
            ),
        );
        return Reach::Skipped;
    }
    if let Some(main) = pod.main_container() {
        if pod.skips(main) && !(pod.admitted && main_injected) {
            let every = pod
                .containers
                .iter()
                .filter(|c| !c.init)
                .all(|c| pod.skips(c));
            let which = if every {
                "every container".to_string()
            } else {
                format!("the main container {:?}", main.name)
            };
            let value = pod
                .annotations
                .get(SKIP_CONTAINERS)
                .cloned()
                .unwrap_or_default();
            add(
                found,
                Reason::MainContainerSkipped,
                format!(
                    "{who}: {SKIP_CONTAINERS} {value:?} names {which}, so the webhook gives it no {} and it runs \
                     as the node's role; list only the sidecars that need no AWS access",
                    expected.describe()
                ),
            );
            return Reach::Skipped;
        }
    }
    let mut missing = false;
    for c in pod.containers.iter().filter(|c| !pod.skips(c)) {
        let preset = |why: String| format!("{who} container {} {why}", c.name);
        match expected {
            Expected::Irsa { role_arn } => match (c.env.get(ROLE_ENV), c.env.contains_key(TOKEN_ENV)) {
                (Some(_), false) => add(found, Reason::PresetWebIdentityEnv, preset(format!("sets {ROLE_ENV} but not {TOKEN_ENV}; the webhook injects neither when one is set"))),
                (None, true) => add(found, Reason::PresetWebIdentityEnv, preset(format!("sets {TOKEN_ENV} but not {ROLE_ENV}; the webhook injects neither when one is set"))),
                (None, false) if pod.admitted => missing = true,
                (Some(Some(v)), true) if v != role_arn => {
                    if pod.admitted && pod.token_volumes.iter().any(|t| t.name == TOKEN_VOLUME) {
                        add(found, Reason::StalePodsFound, format!("{who} container {} has {ROLE_ENV} {v} (the annotation changed since it started)", c.name));
                    } else {
                        add(found, Reason::PresetWebIdentityEnv, preset(format!("sets {ROLE_ENV} {v} itself, so the webhook does not inject the annotated role")));
                    }
                }
                _ => {}
            },
            Expected::PodIdentity { .. } => {
                match (c.env.get(FULL_URI_ENV), c.env.get(TOKEN_FILE_ENV)) {
                    (Some(_), None) => add(found, Reason::PresetContainerCredentialsEnv, preset(format!("sets {FULL_URI_ENV} but not {TOKEN_FILE_ENV}; the webhook injects neither when one is set"))),
                    (None, Some(_)) => add(found, Reason::PresetContainerCredentialsEnv, preset(format!("sets {TOKEN_FILE_ENV} but not {FULL_URI_ENV}; the webhook injects neither when one is set"))),
                    (None, None) if pod.admitted => missing = true,
                    (Some(uri), Some(token)) => {
                        let agent = uri.as_deref().is_some_and(|u| AGENT_URIS.contains(&u));
                        let ours = token.as_deref().is_some_and(|t| t.starts_with(TOKEN_DIR));
                        if !(agent && ours) {
                            add(found, Reason::PresetContainerCredentialsEnv, preset(format!(
                                "sets {FULL_URI_ENV} {} and {TOKEN_FILE_ENV} {} itself; the webhook keeps them, so the \
                                 EKS Pod Identity Agent's endpoint and token are not the ones used",
                                shown(uri),
                                shown(token)
                            )));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    if missing {
        let (reason, message) = why::not_injected(pod, expected);
        add(found, reason, message);
        return Reach::Skipped;
    }
    Reach::Reaches
}

fn shown(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "(from valueFrom)".to_string(),
    }
}

/// Every variable the container gets, with where it comes from (for messages): `env` first,
/// then the keys of `envFrom` sources whose keys are known, prefixed; `env` wins on a clash.
fn variables(c: &ContainerFacts) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = c
        .env
        .keys()
        .map(|k| {
            let from = c
                .env_refs
                .get(k)
                .map(|s| format!(" from {s}"))
                .unwrap_or_default();
            (k.clone(), from)
        })
        .collect();
    for source in &c.env_from {
        for key in source.keys.iter().flatten() {
            vars.entry(format!("{}{key}", source.prefix))
                .or_insert_with(|| format!(" from {}", source.describe()));
        }
    }
    vars
}

/// Credentials the SDKs find before the mechanism in force.
fn shadows(pod: &PodFacts, c: &ContainerFacts, expected: &Expected<'_>, found: &mut Found) {
    let who = pod.describe();
    let vars = variables(c);
    if let Some((key, from)) = KEY_VARIABLES
        .iter()
        .find_map(|k| vars.get(*k).map(|from| (k, from)))
    {
        add(
            found,
            Reason::StaticCredentialsFound,
            format!("{who} container {} sets {key}{from}", c.name),
        );
    }
    for source in c.env_from.iter().filter(|s| s.keys.is_none()) {
        if KEY_VARIABLES[0].starts_with(source.prefix.as_str()) {
            add(
                found,
                Reason::CredentialsMayBeShadowed,
                format!(
                    "{who} container {} takes its environment from {}; if it holds AWS_ACCESS_KEY_ID, those keys \
                     take precedence",
                    c.name,
                    source.describe()
                ),
            );
        }
    }
    let home = c.env.get("HOME").cloned().flatten();
    let mut shared: Vec<String> = PROFILE_VARIABLES
        .into_iter()
        .filter_map(|k| vars.get(k).map(|from| format!("sets {k}{from}")))
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
            found,
            Reason::SharedCredentialsConfigured,
            format!("{who} container {} {}", c.name, shared.join(" and ")),
        );
    }
    if expected.mechanism() != Mechanism::PodIdentity || pod.skips(c) {
        return;
    }
    // Web identity and the ECS endpoint come before the agent's endpoint in the chain. An
    // admitted container without Pod Identity is told about by the injection check instead.
    if pod.admitted && !Mechanism::PodIdentity.injected(c) {
        return;
    }
    if let Some(from) = vars.get(RELATIVE_URI_ENV) {
        add(
            found,
            Reason::PresetContainerCredentialsEnv,
            format!(
                "{who} container {} sets {RELATIVE_URI_ENV}{from}, which the SDKs read before {FULL_URI_ENV}, \
                 so they ask the ECS endpoint instead of the EKS Pod Identity Agent",
                c.name
            ),
        );
    }
    if let (Some(role_from), Some(_)) = (vars.get(ROLE_ENV), vars.get(TOKEN_ENV)) {
        let role = c
            .env
            .get(ROLE_ENV)
            .cloned()
            .flatten()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        add(
            found,
            Reason::PresetWebIdentityEnv,
            format!(
                "{who} container {} sets {ROLE_ENV}{role}{role_from} and {TOKEN_ENV}, which the SDKs read before \
                 container credentials, so it does not run as {}",
                c.name,
                expected.describe()
            ),
        );
    }
}

/// Pod Identity needs the agent on the pod's node: none on AWS Fargate, and on other nodes a
/// Ready agent pod (or one built into the node).
fn pod_identity_on_node(
    pod: &PodFacts,
    agents: Option<&crate::pod_identity::AgentPods>,
    found: &mut Found,
) {
    if !pod.admitted {
        return;
    }
    let who = pod.describe();
    if pod.on_fargate() {
        add(
            found,
            Reason::PodIdentityOnFargate,
            format!(
                "{who} runs on AWS Fargate, where no EKS Pod Identity Agent runs, so it cannot get the \
                 association's credentials"
            ),
        );
        return;
    }
    let (Some(agents), Some(node)) = (agents, pod.node_name.as_deref()) else {
        return;
    };
    if agents.serves(node) {
        return;
    }
    let state = if agents.unready.contains(node) {
        "the eks-pod-identity-agent pod is not Ready"
    } else {
        "no eks-pod-identity-agent pod runs"
    };
    add(
        found,
        Reason::PodIdentityAgentNotReady,
        format!(
            "{who} runs on node {node}, where {state}, so its SDKs get no answer from 169.254.170.23 and the \
             pod has no credentials of its own"
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_identity::{AgentPods, Association};
    use crate::workloads::{
        EnvFromSource, TokenVolume, WebhookRegistration, TOKEN_DIR as IRSA_DIR,
    };
    use std::collections::BTreeSet;

    const ROLE: &str = "arn:aws:iam::111122223333:role/app";

    fn association() -> Association {
        Association {
            id: "a-1".into(),
            namespace: "ns".into(),
            service_account: "app".into(),
            role_arn: ROLE.into(),
            created_at: Some(100),
            ..Default::default()
        }
    }

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

    /// A container as the webhook leaves it for `m`.
    fn injected(m: Mechanism, name: &str) -> ContainerFacts {
        match m {
            Mechanism::Irsa => container(
                name,
                &[(ROLE_ENV, ROLE), (TOKEN_ENV, &format!("{IRSA_DIR}/token"))],
            ),
            Mechanism::PodIdentity => container(
                name,
                &[
                    (FULL_URI_ENV, AGENT_URIS[0]),
                    (
                        TOKEN_FILE_ENV,
                        &format!("{TOKEN_DIR}/eks-pod-identity-token"),
                    ),
                ],
            ),
        }
    }

    fn live(m: Mechanism, name: &str, containers: Vec<ContainerFacts>) -> PodFacts {
        PodFacts {
            name: name.into(),
            containers,
            admitted: true,
            created: Some(500),
            node_name: Some("node-1".into()),
            token_volumes: vec![TokenVolume {
                name: m.volume().into(),
                default_mode: None,
            }],
            ..Default::default()
        }
    }

    fn template(containers: Vec<ContainerFacts>) -> PodFacts {
        PodFacts {
            name: "Deployment ns/api".into(),
            containers,
            ..Default::default()
        }
    }

    fn reasons_for(m: Mechanism, pods: &[PodFacts], agents: Option<&AgentPods>) -> Vec<Reason> {
        let a = association();
        let expected = match m {
            Mechanism::Irsa => Expected::Irsa { role_arn: ROLE },
            Mechanism::PodIdentity => Expected::PodIdentity {
                association: &a,
                agents,
            },
        };
        audit(pods, &expected)
            .into_iter()
            .map(|f| f.reason)
            .collect()
    }

    fn reasons(m: Mechanism, pods: &[PodFacts]) -> Vec<Reason> {
        reasons_for(m, pods, None)
    }

    const BOTH: [Mechanism; 2] = [Mechanism::Irsa, Mechanism::PodIdentity];

    #[test]
    fn a_healthy_pod_or_template_of_either_mechanism_passes() {
        for m in BOTH {
            assert!(
                reasons(m, &[live(m, "p", vec![injected(m, "app")])]).is_empty(),
                "{m:?}"
            );
            // A template is never stale: the webhook has not seen it yet.
            assert!(
                reasons(m, &[template(vec![container("app", &[])])]).is_empty(),
                "{m:?}"
            );
            let mut sidecars = template(vec![container("app", &[]), container("proxy", &[])]);
            sidecars.skip_containers = vec!["proxy".into()];
            assert!(reasons(m, &[sidecars]).is_empty(), "{m:?}");
        }
    }

    #[test]
    fn the_other_mechanisms_injection_is_not_this_ones() {
        for m in BOTH {
            let wrong = live(m, "p", vec![injected(m.other(), "app")]);
            let a = association();
            let e = [
                Expected::Irsa { role_arn: ROLE },
                Expected::PodIdentity {
                    association: &a,
                    agents: None,
                },
            ];
            let found = audit(&[wrong], &e[usize::from(m == Mechanism::PodIdentity)]);
            assert_eq!(found.len(), 1, "{m:?}: {found:?}");
            assert_eq!(found[0].reason, Reason::StalePodsFound);
            assert!(
                found[0].message.contains(m.other().name()),
                "{}",
                found[0].message
            );
        }
    }

    #[test]
    fn the_skip_label_with_any_value_keeps_the_role_from_the_pod() {
        for m in BOTH {
            for value in ["true", "false", "yes"] {
                let mut t = template(vec![container("app", &[])]);
                t.labels.insert(SKIP_LABEL.into(), value.into());
                assert_eq!(
                    reasons(m, std::slice::from_ref(&t)),
                    [Reason::PodOptedOutOfInjection]
                );
                let mut p = live(m, "p", vec![container("app", &[])]);
                p.labels = t.labels.clone();
                assert_eq!(reasons(m, &[p]), [Reason::PodOptedOutOfInjection]);
            }
            let mut t = template(vec![container("app", &[])]);
            t.labels.insert(SKIP_LABEL.into(), "false".into());
            let a = association();
            let e = [
                Expected::Irsa { role_arn: ROLE },
                Expected::PodIdentity {
                    association: &a,
                    agents: None,
                },
            ];
            let f = audit(&[t], &e[usize::from(m == Mechanism::PodIdentity)]);
            assert!(
                f[0].message.contains("\"false\" skips it too"),
                "{}",
                f[0].message
            );
            // A webhook without the EKS objectSelector mutated it anyway: the role reached it.
            let mut p = live(m, "p", vec![injected(m, "app")]);
            p.labels.insert(SKIP_LABEL.into(), "true".into());
            assert!(reasons(m, &[p]).is_empty());
        }
    }

    #[test]
    fn skip_containers_naming_the_main_container_is_an_error_sidecars_are_not() {
        for m in BOTH {
            let mut t = template(vec![container("app", &[]), container("proxy", &[])]);
            t.skip_containers = vec!["app".into()];
            assert_eq!(
                reasons(m, std::slice::from_ref(&t)),
                [Reason::MainContainerSkipped]
            );
            // The default-container annotation names the main container.
            t.annotations
                .insert(super::super::DEFAULT_CONTAINER.into(), "proxy".into());
            assert!(reasons(m, std::slice::from_ref(&t)).is_empty());
            t.skip_containers = vec!["app".into(), "proxy".into()];
            let a = association();
            let e = [
                Expected::Irsa { role_arn: ROLE },
                Expected::PodIdentity {
                    association: &a,
                    agents: None,
                },
            ];
            let f = audit(&[t], &e[usize::from(m == Mechanism::PodIdentity)]);
            assert_eq!(f[0].reason, Reason::MainContainerSkipped);
            assert!(f[0].message.contains("every container"), "{}", f[0].message);
            // Live: the skipped main container lacks the injection.
            let mut p = live(m, "p", vec![container("app", &[]), injected(m, "sidecar")]);
            p.skip_containers = vec!["app".into()];
            assert_eq!(reasons(m, &[p]), [Reason::MainContainerSkipped]);
        }
    }

    #[test]
    fn tells_why_injection_failed() {
        let bare = |m| live(m, "p", vec![container("app", &[])]);
        // Created before the annotation.
        let mut p = bare(Mechanism::Irsa);
        p.created = Some(100);
        p.service_account_created = Some(10);
        p.role_arn_annotated = Some(200);
        assert_eq!(
            reasons(Mechanism::Irsa, std::slice::from_ref(&p)),
            [Reason::PodCreatedBeforeAnnotation]
        );
        p.created = Some(11);
        p.role_arn_annotated = Some(10);
        assert_eq!(
            reasons(Mechanism::Irsa, std::slice::from_ref(&p)),
            [Reason::PodCreatedWithServiceAccount]
        );
        p.role_arn_annotated = None;
        assert_eq!(
            reasons(Mechanism::Irsa, std::slice::from_ref(&p)),
            [Reason::StalePodsFound]
        );
        // Created before the association (created_at 100).
        let mut q = bare(Mechanism::PodIdentity);
        q.created = Some(50);
        assert_eq!(
            reasons(Mechanism::PodIdentity, &[q.clone()]),
            [Reason::PodCreatedBeforeAssociation]
        );
        for m in BOTH {
            let mut p = bare(m);
            p.role_arn_annotated = Some(10);
            p.webhooks = Some(vec![WebhookRegistration {
                name: "pod-identity-webhook/iam-for-pods.amazonaws.com".into(),
                ignore_failures: true,
                ..Default::default()
            }]);
            assert_eq!(
                reasons(m, std::slice::from_ref(&p)),
                [Reason::InjectionFailedOpen],
                "{m:?}"
            );
            p.webhooks = Some(vec![]);
            assert_eq!(
                reasons(m, std::slice::from_ref(&p)),
                [Reason::PodIdentityWebhookMissing]
            );
            let mut w = WebhookRegistration {
                name: "w".into(),
                ..Default::default()
            };
            w.object_selector.match_expressions =
                vec![("team".into(), "NotIn".into(), vec!["legacy".into()])];
            p.webhooks = Some(vec![w]);
            p.labels.insert("team".into(), "legacy".into());
            assert_eq!(
                reasons(m, std::slice::from_ref(&p)),
                [Reason::WebhookSelectorExcludesPod]
            );
        }
    }

    #[test]
    fn preset_variables_keep_the_webhook_from_injecting() {
        // IRSA: one of the two, or another role.
        let t = template(vec![container("app", &[(ROLE_ENV, ROLE)])]);
        assert_eq!(
            reasons(Mechanism::Irsa, &[t]),
            [Reason::PresetWebIdentityEnv]
        );
        let t = template(vec![container(
            "app",
            &[(ROLE_ENV, "arn:aws:iam::1:role/x"), (TOKEN_ENV, "/t")],
        )]);
        assert_eq!(
            reasons(Mechanism::Irsa, &[t]),
            [Reason::PresetWebIdentityEnv]
        );
        // Pod Identity: one of the two, values of its own, the ECS variable, or web identity,
        // which the SDKs read before container credentials.
        for env in [
            vec![(FULL_URI_ENV, AGENT_URIS[0])],
            vec![
                (FULL_URI_ENV, "http://localhost:9000/creds"),
                (TOKEN_FILE_ENV, "/tmp/t"),
            ],
        ] {
            let t = template(vec![container("app", &env)]);
            assert_eq!(
                reasons(Mechanism::PodIdentity, &[t]),
                [Reason::PresetContainerCredentialsEnv]
            );
        }
        let t = template(vec![container("app", &[(RELATIVE_URI_ENV, "/v2/creds")])]);
        assert_eq!(
            reasons(Mechanism::PodIdentity, &[t]),
            [Reason::PresetContainerCredentialsEnv]
        );
        let t = template(vec![container(
            "app",
            &[(ROLE_ENV, ROLE), (TOKEN_ENV, "/t")],
        )]);
        assert_eq!(
            reasons(Mechanism::PodIdentity, std::slice::from_ref(&t)),
            [Reason::PresetWebIdentityEnv]
        );
        // For IRSA, a preset container-credentials variable is read after web identity.
        let mut irsa = live(Mechanism::Irsa, "p", vec![injected(Mechanism::Irsa, "app")]);
        irsa.containers[0].env.insert(RELATIVE_URI_ENV.into(), None);
        assert!(reasons(Mechanism::Irsa, &[irsa]).is_empty());
    }

    #[test]
    fn credentials_the_sdks_read_first_are_found_for_both_mechanisms() {
        for m in BOTH {
            let mut keys = live(m, "keys", vec![injected(m, "app")]);
            keys.containers[0]
                .env
                .insert("AWS_ACCESS_KEY_ID".into(), None);
            keys.containers[0]
                .env_refs
                .insert("AWS_ACCESS_KEY_ID".into(), "Secret aws-keys key id".into());
            let a = association();
            let e = [
                Expected::Irsa { role_arn: ROLE },
                Expected::PodIdentity {
                    association: &a,
                    agents: None,
                },
            ];
            let f = audit(&[keys], &e[usize::from(m == Mechanism::PodIdentity)]);
            assert_eq!(f[0].reason, Reason::StaticCredentialsFound);
            assert!(
                f[0].message.contains("from Secret aws-keys key id"),
                "{}",
                f[0].message
            );
            assert!(f[0].message.contains(m.name()), "{}", f[0].message);
            let mut profile = template(vec![container("app", &[("AWS_PROFILE", "x")])]);
            assert_eq!(
                reasons(m, &[profile.clone()]),
                [Reason::SharedCredentialsConfigured]
            );
            profile.containers[0].env.clear();
            profile.containers[0]
                .mounts
                .push(("creds".into(), "/root/.aws".into()));
            assert_eq!(
                reasons(m, &[profile]),
                [Reason::SharedCredentialsConfigured]
            );
            let mut k2 = template(vec![container("app", &[])]);
            k2.annotations.insert(KUBE2IAM_ROLE.into(), "old".into());
            assert_eq!(reasons(m, &[k2]), [Reason::Kube2iamAnnotationFound]);
        }
    }

    #[test]
    fn env_from_is_judged_by_its_keys_when_they_are_known() {
        let source = |keys: Option<&[&str]>, prefix: &str| EnvFromSource {
            kind: "ConfigMap".into(),
            name: "settings".into(),
            prefix: prefix.into(),
            keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()),
        };
        for m in BOTH {
            let with = |s: EnvFromSource| {
                let mut c = container("app", &[]);
                c.env_from.push(s);
                template(vec![c])
            };
            assert_eq!(
                reasons(m, &[with(source(None, ""))]),
                [Reason::CredentialsMayBeShadowed]
            );
            assert!(reasons(m, &[with(source(None, "APP_"))]).is_empty());
            assert!(reasons(m, &[with(source(Some(&["LOG_LEVEL", "REGION"]), ""))]).is_empty());
            assert_eq!(
                reasons(m, &[with(source(Some(&["AWS_ACCESS_KEY_ID"]), ""))]),
                [Reason::StaticCredentialsFound]
            );
            assert_eq!(
                reasons(m, &[with(source(Some(&["PROFILE"]), "AWS_"))]),
                [Reason::SharedCredentialsConfigured]
            );
        }
        // Web identity from a ConfigMap shadows Pod Identity.
        let mut c = container("app", &[]);
        c.env_from.push(source(Some(&[ROLE_ENV, TOKEN_ENV]), ""));
        assert_eq!(
            reasons(Mechanism::PodIdentity, &[template(vec![c])]),
            [Reason::PresetWebIdentityEnv]
        );
    }

    #[test]
    fn pod_identity_needs_the_agent_on_the_pods_node() {
        let m = Mechanism::PodIdentity;
        let p = live(m, "p", vec![injected(m, "app")]);
        let mut agents = AgentPods::default();
        assert_eq!(
            reasons_for(m, std::slice::from_ref(&p), Some(&agents)),
            [Reason::PodIdentityAgentNotReady]
        );
        agents.unready.insert("node-1".into());
        let a = association();
        let f = audit(
            std::slice::from_ref(&p),
            &Expected::PodIdentity {
                association: &a,
                agents: Some(&agents),
            },
        );
        assert!(f[0].message.contains("not Ready"), "{}", f[0].message);
        agents.ready.insert("node-1".into());
        assert!(reasons_for(m, std::slice::from_ref(&p), Some(&agents)).is_empty());
        let auto = AgentPods {
            built_in: BTreeSet::from(["node-1".to_string()]),
            ..Default::default()
        };
        assert!(reasons_for(m, std::slice::from_ref(&p), Some(&auto)).is_empty());
        // Pending, not yet on a node: nothing to say.
        let mut pending = p.clone();
        pending.node_name = None;
        assert!(reasons_for(m, &[pending], Some(&AgentPods::default())).is_empty());
        // Fargate runs no agent; IRSA works there.
        let mut fargate = p.clone();
        fargate.scheduler_name = Some(super::super::FARGATE_SCHEDULER.into());
        assert_eq!(
            reasons(m, &[fargate.clone()]),
            [Reason::PodIdentityOnFargate]
        );
        let mut irsa = live(Mechanism::Irsa, "p", vec![injected(Mechanism::Irsa, "app")]);
        irsa.scheduler_name = fargate.scheduler_name.clone();
        assert!(reasons(Mechanism::Irsa, &[irsa]).is_empty());
    }

    #[test]
    fn token_readability_is_checked_for_the_mechanism_in_force() {
        for m in BOTH {
            let mut a = injected(m, "a");
            a.mounts.push((m.volume().into(), m.mount_dir().into()));
            let mut b = a.clone();
            b.name = "b".into();
            b.run_as_user = Some(2000);
            let mut p = live(m, "p", vec![a, b]);
            p.run_as_user = Some(1000);
            p.token_volumes[0].default_mode = Some(0o600);
            assert_eq!(reasons(m, &[p]), [Reason::TokenUnreadable], "{m:?}");
        }
    }
}
