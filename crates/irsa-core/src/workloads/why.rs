//! Why the webhook did not mutate an admitted pod that lacks what its ServiceAccount declares,
//! when the facts tell: no webhook, selectors that exclude it, a pod older than the annotation or
//! the association, the webhook's cache race, a webhook that fails open.

use super::{Expected, Mechanism, PodFacts, WebhookRegistration, CACHE_RACE_SECONDS};
use crate::reason::Reason;

/// The reason and message for `pod`, admitted without `expected`'s injection.
pub(super) fn not_injected(pod: &PodFacts, expected: &Expected<'_>) -> (Reason, String) {
    let who = pod.describe();
    let mechanism = expected.mechanism();
    if let Some(found) = webhook_problem(pod) {
        return found;
    }
    let declared_at = match expected {
        Expected::Irsa { .. } => pod.role_arn_annotated.or(pod.service_account_created),
        Expected::PodIdentity { association, .. } => association.created_at,
    };
    let what = match expected {
        Expected::Irsa { .. } => "the role-arn annotation was set".to_string(),
        Expected::PodIdentity { association, .. } => {
            format!(
                "EKS Pod Identity association {} was created",
                association.id
            )
        }
    };
    // Strictly earlier than the declaration comes first: such a pod was never going to get it,
    // even if it was also created right after its ServiceAccount.
    if let (Some(created), Some(declared)) = (pod.created, declared_at) {
        if created < declared {
            let reason = match mechanism {
                Mechanism::Irsa => Reason::PodCreatedBeforeAnnotation,
                Mechanism::PodIdentity => Reason::PodCreatedBeforeAssociation,
            };
            return (
                reason,
                format!(
                    "{who} was created {}s before {what}; restart it",
                    declared - created
                ),
            );
        }
    }
    if let Some(other) = other_mechanism(pod, mechanism) {
        return (
            Reason::StalePodsFound,
            format!(
                "{who} has {other} injected instead of {}: it was created before the ServiceAccount's \
                 credentials changed; restart it",
                expected.describe()
            ),
        );
    }
    // The cache race needs the annotation known to be as old as the ServiceAccount: the API
    // server keeps no managedFields for an object created without tracked fields (`kubectl
    // create serviceaccount`) until its first apply, so an annotation added later by `kubectl
    // annotate` has no time, and then nothing is claimed.
    if mechanism == Mechanism::Irsa {
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
    }
    if declared_at.is_some() {
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
                    "{who} was created after {what} but not mutated; webhook {} has failurePolicy Ignore, so it \
                     was admitted unmutated while the webhook was unreachable",
                    fails_open.join(", ")
                ),
            );
        }
    }
    let [a, b] = mechanism.variables();
    (
        Reason::StalePodsFound,
        format!(
            "{who} has no {a}/{b}, so it runs without {} (created before it was declared, or not mutated)",
            expected.describe()
        ),
    )
}

/// `IRSA's AWS_ROLE_ARN arn:…`: the other mechanism's injection, when a container has it.
fn other_mechanism(pod: &PodFacts, mechanism: Mechanism) -> Option<String> {
    let other = mechanism.other();
    let [first, _] = other.variables();
    pod.containers
        .iter()
        .filter(|c| other.injected(c))
        .map(|c| match c.env.get(first).cloned().flatten() {
            Some(value) => format!("{}'s {first} {value}", other.name()),
            None => other.name().to_string(),
        })
        .next()
}

/// No webhook at all, or none whose selectors select the pod.
fn webhook_problem(pod: &PodFacts) -> Option<(Reason, String)> {
    let who = pod.describe();
    let webhooks = pod.webhooks.as_ref()?;
    if webhooks.is_empty() {
        return Some((
            Reason::PodIdentityWebhookMissing,
            format!("{who}: no MutatingWebhookConfiguration registers the pod identity webhook, so nothing injects credentials"),
        ));
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
        return Some((
            Reason::WebhookSelectorExcludesPod,
            format!(
                "{who}: the namespaceSelector/objectSelector of webhook {} does not select this pod or its namespace, so the webhook never sees it",
                names.join(", ")
            ),
        ));
    }
    None
}
