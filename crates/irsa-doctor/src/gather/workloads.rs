//! The pods a ServiceAccount's diagnosis audits: listed per namespace, page by page, never
//! cached cluster-wide. irsa-doctor's own probe pods are left out, and only pods with every mark
//! of one ([`probe_pod_owner`]: the probe label and an IrsaCheck as controller): a label alone
//! must not hide a pod (one with static keys, say) from the audit. Labels cannot select by
//! owner, so this is decided here, after listing.

use std::collections::HashMap;

use irsa_core::workloads::PodFacts;
use irsa_core::{Fact, Reason, Unavailable};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::admission::Admission;
use crate::api::probe_pod_owner;

/// Pods that can still run: pending or running.
pub(crate) const LIVE: &str = "status.phase!=Succeeded,status.phase!=Failed";
const PAGE: u32 = 500;

/// The parts of a pod the audit reads, as admitted. Read through the pod's JSON form, with the
/// same reader `lint --workload` uses for manifests.
pub fn pod_facts(pod: &Pod) -> PodFacts {
    let value = serde_json::to_value(pod).unwrap_or_default();
    irsa_core::workloads::pod_facts_from(
        value.get("metadata"),
        value.get("spec"),
        pod.name_any(),
        true,
    )
}

/// Every pod but irsa-doctor's own probe pods.
fn is_workload(pod: &Pod) -> bool {
    probe_pod_owner(&pod.metadata).is_err()
}

fn unavailable(what: String, e: kube::Error) -> Unavailable {
    Unavailable {
        reason: Reason::KubernetesApiUnavailable,
        detail: format!("{what}: {e}"),
    }
}

/// Live pods of one ServiceAccount (field selector `spec.serviceAccountName`), with what
/// `admission` tells of those the webhook did not mutate.
pub async fn pods_of(
    client: &kube::Client,
    admission: &Admission,
    namespace: &str,
    service_account: &str,
) -> Fact<Vec<PodFacts>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params =
        ListParams::default().fields(&format!("spec.serviceAccountName={service_account},{LIVE}"));
    match api.list(&params).await {
        Ok(list) => {
            let mut pods: Vec<PodFacts> = list
                .items
                .iter()
                .filter(|p| is_workload(p))
                .map(pod_facts)
                .collect();
            admission.explain(namespace, &mut pods).await;
            Fact::Known(pods)
        }
        Err(e) => Fact::Unavailable(unavailable(
            format!("listing pods of {namespace}/{service_account}"),
            e,
        )),
    }
}

/// Live pods of a namespace (all when `None`) grouped by (namespace, ServiceAccount), one page
/// at a time so memory does not grow with the cluster's pod count beyond what is kept; with
/// what `admission` tells of those the webhook did not mutate.
pub async fn pods_by_service_account(
    client: &kube::Client,
    admission: &Admission,
    namespace: Option<&str>,
    wanted: impl Fn(&str, &str) -> bool,
) -> Result<HashMap<(String, String), Vec<PodFacts>>, Unavailable> {
    let api: Api<Pod> = match namespace {
        Some(n) => Api::namespaced(client.clone(), n),
        None => Api::all(client.clone()),
    };
    let mut grouped: HashMap<(String, String), Vec<PodFacts>> = HashMap::new();
    let mut params = ListParams::default().fields(LIVE).limit(PAGE);
    loop {
        let page = api.list(&params).await.map_err(|e| {
            unavailable(
                format!("listing pods in {}", namespace.unwrap_or("all namespaces")),
                e,
            )
        })?;
        for pod in page.items.iter().filter(|p| is_workload(p)) {
            let ns = pod.namespace().unwrap_or_default();
            let sa = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into());
            if wanted(&ns, &sa) {
                grouped.entry((ns, sa)).or_default().push(pod_facts(pod));
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    for ((namespace, _), pods) in grouped.iter_mut() {
        admission.explain(namespace, pods).await;
    }
    Ok(grouped)
}
