//! An IrsaCheck's status: built from a report (pure, takes `now`) and written by server-side
//! apply through the status subresource.

use irsa_core::{ConditionType, Reason, Report, Severity, Status};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::Resource;
use serde_json::json;

use super::events::Verdict;
use super::text::truncate;
use super::FIELD_MANAGER;
use crate::api::dynamic_resource as resource;
use crate::api::{IrsaCheck, IrsaCheckStatus, StatusFinding};

/// Condition messages are bounded so one verbose finding cannot bloat the object.
const MESSAGE_MAX_BYTES: usize = 4096;
/// ARNs in the status, as the CRD's schema bounds them (IAM's own limit is 2,048 characters).
const ARN_MAX_BYTES: usize = 2048;
/// Each listed finding's message is bounded likewise.
const FINDING_MAX_BYTES: usize = 1024;

/// Conditions for `report`; `lastTransitionTime` is kept from `previous` unless the status flipped.
pub fn conditions(
    report: &Report,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    report
        .conditions
        .iter()
        .map(|v| {
            let status = v.status.as_str().to_string();
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == v.type_.as_str() && p.status == status)
                .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
            Condition {
                type_: v.type_.as_str().to_string(),
                status,
                reason: v.reason.as_str().to_string(),
                message: truncate(&v.message, MESSAGE_MAX_BYTES),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The findings worth listing on the object (warnings and worse), in the report's order: at most
/// [`crate::api::MAX_STATUS_FINDINGS`], as the CRD's schema allows; when there are more, errors
/// are kept before unknowns and unknowns before warnings. The conditions summarise them all.
pub fn findings(report: &Report) -> Vec<StatusFinding> {
    let mut listed: Vec<(usize, &irsa_core::Finding)> = report
        .findings
        .iter()
        .enumerate()
        .filter(|(_, f)| f.severity >= Severity::Warning)
        .collect();
    if listed.len() > crate::api::MAX_STATUS_FINDINGS {
        // Stable: among findings of one severity, the report's order decides.
        listed.sort_by_key(|(_, f)| std::cmp::Reverse(f.severity));
        listed.truncate(crate::api::MAX_STATUS_FINDINGS);
        listed.sort_by_key(|(i, _)| *i);
    }
    listed
        .into_iter()
        .map(|(_, f)| StatusFinding {
            reason: f.reason.as_str().to_string(),
            severity: f.severity.as_str().to_string(),
            message: truncate(&f.message, FINDING_MAX_BYTES),
        })
        .collect()
}

/// The whole status for `report`, given the status the object had.
pub fn build(
    report: &Report,
    previous: &IrsaCheckStatus,
    generation: Option<i64>,
    now: &Time,
) -> IrsaCheckStatus {
    IrsaCheckStatus {
        observed_generation: generation,
        // The annotation is the user's (and bounded by nothing but the 256 KiB of all of them).
        role_arn: report
            .role_arn
            .as_deref()
            .map(|a| truncate(a, ARN_MAX_BYTES)),
        assumed_arn: report
            .assumed_arn
            .as_deref()
            .map(|a| truncate(a, ARN_MAX_BYTES)),
        last_run_time: Some(now.0.to_string()),
        conditions: conditions(report, &previous.conditions, generation, now),
        findings: findings(report),
    }
}

/// The status `check` records, read leniently: one this version cannot read is no memory, not an
/// error.
pub fn previous(check: &DynamicObject) -> IrsaCheckStatus {
    check
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default()
}

/// Reduces a watched IrsaCheck to what its reconcile reads: no field-manager history (every
/// status write adds to it) and, of its status, each condition's type, status, reason and
/// lastTransitionTime ([`previous`] and [`ready_verdict`]), so the watch cache does not hold every
/// check's messages and findings.
pub fn keep_what_reconcile_reads(check: &mut DynamicObject) {
    check.metadata.managed_fields = None;
    let Some(status) = check.data.get_mut("status") else {
        return;
    };
    let kept = serde_json::from_value::<IrsaCheckStatus>(status.take())
        .ok()
        .map(|read| IrsaCheckStatus {
            conditions: read
                .conditions
                .into_iter()
                .map(|c| Condition {
                    message: String::new(),
                    observed_generation: None,
                    ..c
                })
                .collect(),
            ..IrsaCheckStatus::default()
        });
    match kept.and_then(|k| serde_json::to_value(k).ok()) {
        Some(v) => *status = v,
        None => {
            if let Some(data) = check.data.as_object_mut() {
                data.remove("status");
            }
        }
    }
}

/// The Ready verdict a status records, if it records one this version understands.
pub fn ready_verdict(status: &IrsaCheckStatus) -> Option<Verdict> {
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Ready.as_str())?;
    let status = match ready.status.as_str() {
        "True" => Status::True,
        "False" => Status::False,
        "Unknown" => Status::Unknown,
        _ => return None,
    };
    Some(Verdict {
        status,
        reason: Reason::from_name(&ready.reason)?,
    })
}

/// Writes `status` by server-side apply, owning exactly the fields it sets.
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    status: &IrsaCheckStatus,
) -> Result<(), kube::Error> {
    // Dynamic, so that the answer (the whole object) is not deserialized as an IrsaCheck: a
    // malformed object's status must be writable too.
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource());
    let patch = json!({
        "apiVersion": IrsaCheck::api_version(&()),
        "kind": IrsaCheck::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use irsa_core::ConditionVerdict;

    fn report(status: Status, reason: Reason) -> Report {
        Report {
            service_account: "a/b".into(),
            role_arn: None,
            assumed_arn: None,
            findings: Vec::new(),
            conditions: vec![ConditionVerdict {
                type_: ConditionType::Ready,
                status,
                reason,
                message: "m".into(),
            }],
        }
    }

    #[test]
    fn last_transition_time_changes_only_on_a_flip() {
        let t0 = Time(jiff::Timestamp::from_second(1_000).unwrap());
        let t1 = Time(jiff::Timestamp::from_second(2_000).unwrap());
        let ok = report(Status::True, Reason::AllChecksPassed);
        let first = conditions(&ok, &[], Some(1), &t0);
        let same = conditions(&ok, &first, Some(2), &t1);
        assert_eq!(same[0].last_transition_time, t0);
        assert_eq!(same[0].observed_generation, Some(2));
        let bad = report(Status::False, Reason::RoleNotFound);
        let flipped = conditions(&bad, &same, Some(2), &t1);
        assert_eq!(flipped[0].last_transition_time, t1);
    }

    /// 50 denied permissions make 50 findings; the CRD admits 32 of 1,024 characters each, and
    /// a status the API server refuses is no status at all.
    #[test]
    fn listed_findings_fit_the_schema_and_keep_the_worst() {
        use irsa_core::Finding;
        use kube::CustomResourceExt;

        let denied = |i: usize| {
            Finding::new(
                Reason::PermissionDenied,
                ConditionType::PermissionsValid,
                format!("{i} {}", "é".repeat(2000)),
            )
        };
        let mut report = report(Status::False, Reason::PermissionDenied);
        report.findings = (0..50).map(denied).collect();
        let listed = findings(&report);

        let crd = serde_json::to_value(IrsaCheck::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["status"]["properties"]["findings"];
        let max_items = schema["maxItems"].as_u64().unwrap() as usize;
        let max_message = schema["items"]["properties"]["message"]["maxLength"]
            .as_u64()
            .unwrap() as usize;
        assert_eq!(listed.len(), max_items);
        assert!(listed
            .iter()
            .all(|f| f.message.chars().count() <= max_message));
        assert!(listed[0].message.starts_with("0 "), "the report's order");
        assert!(listed[31].message.starts_with("31 "));

        // A warning first and an unknown last, around 31 errors: the warning goes.
        let warning = Finding::new(
            Reason::TokenExpirationInvalid,
            ConditionType::ServiceAccountValid,
            "w",
        );
        let unknown = Finding::new(
            Reason::AwsApiUnavailable,
            ConditionType::WorkloadsValid,
            "u",
        );
        report.findings = std::iter::once(warning.clone())
            .chain((0..31).map(denied))
            .chain([unknown])
            .collect();
        let listed = findings(&report);
        assert_eq!(listed.len(), 32);
        assert!(listed.iter().all(|f| f.severity != "warning"));
        assert_eq!(listed[31].reason, "AwsApiUnavailable");

        report.findings = vec![warning, denied(0)];
        assert_eq!(
            findings(&report)
                .iter()
                .map(|f| f.reason.as_str())
                .collect::<Vec<_>>(),
            ["TokenExpirationInvalid", "PermissionDenied"],
            "under the bound, every warning and worse is listed"
        );
    }

    #[test]
    fn the_recorded_ready_verdict_is_read_back_typed() {
        let t0 = Time(jiff::Timestamp::from_second(1_000).unwrap());
        let status = build(
            &report(Status::False, Reason::RoleNotFound),
            &IrsaCheckStatus::default(),
            Some(3),
            &t0,
        );
        assert_eq!(
            ready_verdict(&status),
            Some(Verdict {
                status: Status::False,
                reason: Reason::RoleNotFound
            })
        );
        let mut foreign = status.clone();
        foreign.conditions[0].reason = "SomethingOlder".into();
        assert_eq!(
            ready_verdict(&foreign),
            None,
            "an unknown reason is no memory"
        );
        assert_eq!(ready_verdict(&IrsaCheckStatus::default()), None);
    }

    /// The watch cache keeps of a check only what the next reconcile reads, and that reads the
    /// same as the whole status did.
    #[test]
    fn a_cached_check_keeps_what_reconcile_reads() {
        use irsa_core::Finding;

        let t0 = Time(jiff::Timestamp::from_second(1_000).unwrap());
        let mut report = report(Status::False, Reason::RoleNotFound);
        report.role_arn = Some("arn:aws:iam::111122223333:role/app".into());
        report.findings = vec![Finding::new(
            Reason::RoleNotFound,
            ConditionType::Ready,
            "x".repeat(3000),
        )];
        let written = build(&report, &IrsaCheckStatus::default(), Some(3), &t0);
        let object = |status: serde_json::Value| {
            let mut check = DynamicObject::new("c", &resource()).within("ns");
            check.metadata.managed_fields = Some(vec![Default::default()]);
            check.data = json!({"spec": {"serviceAccountName": "app"}, "status": status});
            check
        };
        let mut check = object(serde_json::to_value(&written).unwrap());
        let whole = previous(&check);
        keep_what_reconcile_reads(&mut check);

        assert_eq!(check.metadata.managed_fields, None);
        assert_eq!(check.data["spec"]["serviceAccountName"], "app");
        let kept = previous(&check);
        assert_eq!(ready_verdict(&kept), ready_verdict(&whole));
        assert!(ready_verdict(&kept).is_some());
        let later = Time(jiff::Timestamp::from_second(2_000).unwrap());
        assert_eq!(
            conditions(&report, &kept.conditions, Some(4), &later),
            conditions(&report, &whole.conditions, Some(4), &later),
            "lastTransitionTime is carried over the same"
        );
        assert!(kept.findings.is_empty() && kept.role_arn.is_none());
        assert!(check.data.to_string().len() < 400, "{}", check.data);

        let mut unreadable = object(json!({"conditions": "not a list"}));
        keep_what_reconcile_reads(&mut unreadable);
        assert_eq!(unreadable.data.get("status"), None);
        assert_eq!(previous(&unreadable), IrsaCheckStatus::default());
    }
}
