//! The pods a ServiceAccount's diagnosis audits: listed per namespace, page by page, never
//! cached cluster-wide. Each page is read into the few fields the audit reads
//! ([`super::listed_pod`]), and a pod its audit passes is counted, not kept. The only pods left
//! out are the operator's own probe pods running now, by uid ([`Skip`]): marks a pod's creator
//! writes (the probe label, an IrsaCheck as owner, the probe's name) must not hide a pod (one
//! with static keys, say) from the audit.

use std::collections::HashMap;

use irsa_core::pods::{PodAudit, Pods};
use irsa_core::{Fact, Reason, Unavailable};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::core::Request;
use kube::Resource;

use super::admission::Admission;
pub use super::listed_pod::PodPlacement;
use super::listed_pod::{ListedPod, PodPage};

/// Pods not audited, by uid: the probe pods running now (`check`, which runs none, skips none).
pub type Skip = std::collections::HashSet<String>;

/// Whether the audit reads `pod`: every pod but the live probe pods of `skip`, whatever marks
/// it carries.
fn audited(pod: &ListedPod, skip: &Skip) -> bool {
    !skip.contains(pod.uid())
}

/// Pods that can still run: pending or running.
pub(crate) const LIVE: &str = "status.phase!=Succeeded,status.phase!=Failed";
const PAGE: u32 = 500;

fn unavailable(what: String, e: impl std::fmt::Display) -> Unavailable {
    Unavailable {
        reason: Reason::KubernetesApiUnavailable,
        detail: format!("{what}: {e}"),
    }
}

/// Lists the live pods of `namespace` (every namespace: `None`) selected by `fields`, page by
/// page, handing each workload pod to `each`; `what` names the list in errors.
async fn list_pods(
    client: &kube::Client,
    namespace: Option<&str>,
    fields: &str,
    skip: &Skip,
    what: impl Fn() -> String,
    mut each: impl FnMut(ListedPod),
) -> Result<(), Unavailable> {
    let request = Request::new(Pod::url_path(&(), namespace));
    let mut params = ListParams::default().fields(fields).limit(PAGE);
    loop {
        let list = request.list(&params).map_err(|e| unavailable(what(), e))?;
        let page: PodPage = client
            .request(list)
            .await
            .map_err(|e| unavailable(what(), e))?;
        page.items
            .into_iter()
            .filter(|pod| audited(pod, skip))
            .for_each(&mut each);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(()),
        }
    }
}

/// Live pods of one ServiceAccount (field selector `spec.serviceAccountName`), every one kept,
/// with what `admission` tells of those the webhook did not mutate.
pub async fn pods_of(
    client: &kube::Client,
    admission: &Admission,
    namespace: &str,
    service_account: &str,
    skip: &Skip,
) -> Fact<Pods> {
    let mut pods = Vec::new();
    let listed = list_pods(
        client,
        Some(namespace),
        &format!("spec.serviceAccountName={service_account},{LIVE}"),
        skip,
        || format!("listing pods of {namespace}/{service_account}"),
        |pod| pods.push(pod.facts()),
    )
    .await;
    match listed {
        Ok(()) => {
            admission.explain(namespace, &mut pods).await;
            Fact::Known(Pods::all(pods))
        }
        Err(u) => Fact::Unavailable(u),
    }
}

/// Live pods of a namespace by ServiceAccount, for those `audit_of` names: one paginated list,
/// each pod kept or counted as its ServiceAccount's audit decides, so memory holds one page and
/// the pods with something to report, whatever the namespace's pod count. With what `admission`
/// tells of those the webhook did not mutate.
pub async fn pods_by_service_account<'a>(
    client: &kube::Client,
    admission: &Admission,
    namespace: &str,
    skip: &Skip,
    audit_of: impl Fn(&str) -> Option<PodAudit<'a>>,
) -> Result<HashMap<String, Pods>, Unavailable> {
    let mut grouped: HashMap<String, Pods> = HashMap::new();
    list_pods(
        client,
        Some(namespace),
        LIVE,
        skip,
        || format!("listing pods in {namespace}"),
        |pod| {
            if let Some(audit) = audit_of(pod.service_account()) {
                let key = pod.service_account().to_string();
                grouped.entry(key).or_default().add(pod.facts(), &audit);
            }
        },
    )
    .await?;
    for pods in grouped.values_mut() {
        admission.explain(namespace, pods.listed_mut()).await;
    }
    Ok(grouped)
}

/// Every live pod of the cluster, where it belongs, a page at a time (only the placement of
/// each is kept).
pub async fn placements(client: &kube::Client) -> Result<Vec<PodPlacement>, Unavailable> {
    let mut found = Vec::new();
    list_pods(
        client,
        None,
        LIVE,
        &Skip::new(),
        || "listing the pods of every namespace".to_string(),
        |pod| found.push(pod.placement()),
    )
    .await?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_live_probe_pods_are_left_out_by_uid() {
        // Every mark of a probe pod, copied by whoever created it: audited all the same.
        let copycat: ListedPod = serde_json::from_value(json!({"metadata": {
            "name": "web-irsa-probe", "uid": "pod-1",
            "labels": {"irsa-doctor.io/probe": "true", "irsa-doctor.io/check-uid": "check-1"},
            "ownerReferences": [{"apiVersion": "irsa-doctor.io/v1alpha1", "kind": "IrsaCheck",
                "name": "web", "uid": "check-1", "controller": true}]}}))
        .unwrap();
        assert!(audited(&copycat, &Skip::new()));
        assert!(audited(&copycat, &Skip::from(["pod-2".to_string()])));
        // The operator's own probe pod, running now.
        assert!(!audited(&copycat, &Skip::from(["pod-1".to_string()])));
    }
}
