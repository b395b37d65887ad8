//! The pods a ServiceAccount's diagnosis audits: listed per namespace, page by page, never
//! cached cluster-wide. Each page is read into the few fields the audit reads
//! ([`super::listed_pod`]), and a pod its audit passes is counted, not kept. irsa-doctor's own
//! probe pods are left out, and only pods with every mark of one
//! ([`crate::api::probe_pod_owner`]: the probe label and an IrsaCheck as controller): a label
//! alone must not hide a pod (one with static keys, say) from the audit. Labels cannot select by
//! owner, so this is decided here, after listing.

use std::collections::HashMap;

use irsa_core::pods::{PodAudit, Pods};
use irsa_core::{Fact, Reason, Unavailable};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::core::Request;
use kube::Resource;

use super::admission::Admission;
use super::listed_pod::{ListedPod, PodPage};

/// Pods that can still run: pending or running.
pub(crate) const LIVE: &str = "status.phase!=Succeeded,status.phase!=Failed";
const PAGE: u32 = 500;

fn unavailable(what: String, e: impl std::fmt::Display) -> Unavailable {
    Unavailable {
        reason: Reason::KubernetesApiUnavailable,
        detail: format!("{what}: {e}"),
    }
}

/// Lists the live pods of `namespace` selected by `fields`, page by page, handing each workload
/// pod to `each`; `what` names the list in errors.
async fn list_pods(
    client: &kube::Client,
    namespace: &str,
    fields: &str,
    what: impl Fn() -> String,
    mut each: impl FnMut(ListedPod),
) -> Result<(), Unavailable> {
    let request = Request::new(Pod::url_path(&(), Some(namespace)));
    let mut params = ListParams::default().fields(fields).limit(PAGE);
    loop {
        let list = request.list(&params).map_err(|e| unavailable(what(), e))?;
        let page: PodPage = client
            .request(list)
            .await
            .map_err(|e| unavailable(what(), e))?;
        page.items
            .into_iter()
            .filter(ListedPod::is_workload)
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
) -> Fact<Pods> {
    let mut pods = Vec::new();
    let listed = list_pods(
        client,
        namespace,
        &format!("spec.serviceAccountName={service_account},{LIVE}"),
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
    audit_of: impl Fn(&str) -> Option<PodAudit<'a>>,
) -> Result<HashMap<String, Pods>, Unavailable> {
    let mut grouped: HashMap<String, Pods> = HashMap::new();
    list_pods(
        client,
        namespace,
        LIVE,
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
