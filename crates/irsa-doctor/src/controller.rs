//! The IrsaCheck reconciler: gather facts → diagnose → write status by server-side apply →
//! Events on transitions → metrics. Re-runs every `spec.interval`, on spec changes, and when
//! the ServiceAccount it names changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use irsa_core::{
    diagnose, ConditionType, ConditionVerdict, Fact, Finding, Reason, Report, Status, Unavailable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::conditions::{conditions, findings, transition, Remembered};
use crate::context::Context;
use crate::crd::{IrsaCheck, IrsaCheckStatus};
use crate::gather::gather;
use crate::workloads;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "irsa-doctor";

/// A reconcile that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the status failed (conflicts and outages are retried with backoff).
    #[error("writing the status of IrsaCheck {namespace}/{name}: {source}")]
    WriteStatus {
        /// The check's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

/// A report for a spec that cannot be checked: Ready False with `SpecInvalid`.
fn invalid_spec_report(check: &IrsaCheck, problem: String) -> Report {
    Report {
        service_account: format!(
            "{}/{}",
            check.namespace().unwrap_or_default(),
            check.spec.service_account_name
        ),
        role_arn: None,
        assumed_arn: None,
        findings: vec![Finding::new(
            Reason::SpecInvalid,
            ConditionType::Ready,
            problem.clone(),
        )],
        conditions: vec![ConditionVerdict {
            type_: ConditionType::Ready,
            status: Status::False,
            reason: Reason::SpecInvalid,
            message: problem,
        }],
    }
}

/// Runs one IrsaCheck's diagnosis and writes the result.
pub async fn reconcile(check: Arc<IrsaCheck>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = check.namespace().unwrap_or_default();
    let name = check.name_any();
    let sa_name = check.spec.service_account_name.clone();
    let valid = check
        .spec
        .validate()
        .and_then(|()| Ok((check.spec.interval()?, check.spec.probe.timeout()?)));
    let (report, requeue) = match valid {
        Err(e) => (
            invalid_spec_report(&check, e.to_string()),
            Duration::from_secs(3600),
        ),
        Ok((interval, probe_timeout)) => {
            let sa = ctx.service_account(&namespace, &sa_name).await;
            let exists = matches!(sa, Fact::Known(Some(_)));
            let mut facts = gather(
                &ctx.aws,
                &ctx.issuer(),
                &namespace,
                &sa_name,
                sa,
                Some(&check.spec),
            )
            .await;
            facts.workloads = Some(workloads::pods_of(&ctx.client, &namespace, &sa_name).await);
            facts.probe = Some(match (check.spec.probe.enabled, exists) {
                (false, _) => Fact::Skipped("spec.probe.enabled is false".into()),
                (true, false) => Fact::Unavailable(Unavailable {
                    reason: Reason::ProbeNotRun,
                    detail: format!("ServiceAccount {namespace}/{sa_name} does not exist"),
                }),
                (true, true) => ctx.prober.run(&check, probe_timeout).await,
            });
            (diagnose(&facts), interval)
        }
    };
    let previous = check.status.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let status = IrsaCheckStatus {
        observed_generation: check.metadata.generation,
        role_arn: report.role_arn.clone(),
        assumed_arn: report.assumed_arn.clone(),
        last_run_time: Some(now.0.to_string()),
        conditions: conditions(
            &report,
            &previous.conditions,
            check.metadata.generation,
            &now,
        ),
        findings: findings(&report),
    };
    tracing::debug!(check = %name, took_ms = started.elapsed().as_millis() as u64, "diagnosis done; writing status");
    let api: Api<IrsaCheck> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({"apiVersion": IrsaCheck::api_version(&()), "kind": IrsaCheck::kind(&()), "status": status});
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::WriteStatus {
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    })?;

    tracing::debug!(check = %name, took_ms = started.elapsed().as_millis() as u64, "status written");
    let ready = report.ready();
    let before: Option<Remembered> = previous
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()));
    if let Some(event) = transition(before.as_ref(), ready) {
        ctx.publish(&event, &check.object_ref(&())).await;
    }
    if let Some(event) = ctx.service_account_transition(&namespace, &sa_name, ready) {
        if let Some(sa) = ctx.service_account_reference(&namespace, &sa_name) {
            ctx.publish(&event, &sa).await;
        }
    }
    ctx.metrics.set_check(
        &namespace,
        &name,
        ready.status == Status::True,
        ready.reason.as_str(),
    );
    ctx.metrics.reconciled("irsacheck", started.elapsed());
    tracing::info!(
        check = %format!("{namespace}/{name}"),
        ready = %ready.status,
        reason = %ready.reason,
        took_ms = started.elapsed().as_millis() as u64,
        "diagnosed"
    );
    Ok(Action::requeue(requeue))
}

/// Failed reconciles are retried after a short pause; the error is counted and logged.
pub fn error_policy(check: Arc<IrsaCheck>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed("irsacheck");
    tracing::warn!(check = %check.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// The IrsaChecks that name a ServiceAccount.
pub fn checks_naming(
    store: &Store<IrsaCheck>,
    namespace: &str,
    service_account: &str,
) -> Vec<ObjectRef<IrsaCheck>> {
    store
        .state()
        .iter()
        .filter(|c| {
            c.namespace().as_deref() == Some(namespace)
                && c.spec.service_account_name == service_account
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}
