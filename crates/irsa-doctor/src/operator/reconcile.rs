//! The IrsaCheck reconciler in three steps: diagnose (facts → report, and when to run again),
//! status (build → server-side apply; when only the write failed, only the write is retried),
//! events (transitions only). Re-runs every `spec.interval`, on spec changes, and when the
//! ServiceAccount it names changes its annotations.

use std::sync::Arc;
use std::time::Duration;

use irsa_core::{
    diagnose, ConditionType, ConditionVerdict, Fact, Finding, Reason, Report, Status, Unavailable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::context::{Context, Unwritten};
use super::events::transition;
use super::metrics::Kind;
use super::status;
use super::stopwatch::Stopwatch;
use crate::api::{self, IrsaCheck, IrsaCheckStatus, SpecError};
use crate::gather::{gather, workloads};

/// How soon an unusable spec is looked at again (a spec change re-runs it at once anyway).
const INVALID_SPEC_REQUEUE: Duration = Duration::from_secs(3600);
/// Pause before retrying a reconcile that failed.
const RETRY: Duration = Duration::from_secs(5);

/// A reconcile that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the status failed (conflicts, outages, a refused permission); retried with
    /// backoff, without diagnosing again.
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

impl Error {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::WriteStatus { .. } => "write_status",
        }
    }
}

/// The API resource the controller watches: IrsaChecks as dynamic objects, so that one object
/// that does not deserialize cannot fail the list it comes in.
pub fn resource() -> ApiResource {
    ApiResource::erase::<IrsaCheck>(&())
}

/// A report for a spec that cannot be checked: Ready False with `SpecInvalid`.
fn invalid_spec_report(service_account: String, problem: &SpecError) -> Report {
    let problem = problem.to_string();
    Report {
        service_account,
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

/// Step 1: facts → report, and when to run again. `None` as the check: the spec was unusable.
async fn diagnose_check(
    obj: &DynamicObject,
    ctx: &Context,
) -> (Report, Duration, Option<IrsaCheck>) {
    let namespace = obj.namespace().unwrap_or_default();
    let check = api::from_dynamic(obj).and_then(|check| {
        check.spec.validate()?;
        let interval = check.spec.interval()?;
        let timeout = check.spec.probe.timeout()?;
        Ok((check, interval, timeout))
    });
    let (check, interval, probe_timeout) = match check {
        Ok(c) => c,
        Err(e) => {
            let named = obj.data["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("?");
            return (
                invalid_spec_report(format!("{namespace}/{named}"), &e),
                INVALID_SPEC_REQUEUE,
                None,
            );
        }
    };
    let sa_name = check.spec.service_account_name.clone();
    let sa = ctx.service_accounts().get(&namespace, &sa_name).await;
    let exists = matches!(sa, Fact::Known(Some(_)));
    let mut facts = gather(
        ctx.aws(),
        &ctx.issuer(),
        &namespace,
        &sa_name,
        sa,
        Some(&check.spec),
    )
    .await;
    facts.workloads = Some(workloads::pods_of(ctx.client(), &namespace, &sa_name).await);
    facts.probe = Some(match (check.spec.probe.enabled, exists) {
        (false, _) => Fact::Skipped("spec.probe.enabled is false".into()),
        (true, false) => Fact::Unavailable(Unavailable {
            reason: Reason::ProbeNotRun,
            detail: format!("ServiceAccount {namespace}/{sa_name} does not exist"),
        }),
        (true, true) => ctx.prober().run(&check, probe_timeout).await,
    });
    (diagnose(&facts), interval, Some(check))
}

/// Runs one IrsaCheck's diagnosis and writes the result.
#[instrument(skip_all, fields(namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any()))]
pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = Stopwatch::start();
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let generation = obj.metadata.generation;
    let uid = obj.metadata.uid.clone();
    // Read leniently: a status this version cannot read is no memory, not an error.
    let previous: IrsaCheckStatus = obj
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();

    let (report, requeue, valid) =
        match ctx.take_unwritten(&namespace, &name, uid.as_deref(), generation) {
            Some(u) => {
                tracing::debug!("writing the status kept from the last run");
                let valid = api::from_dynamic(&obj).ok();
                (u.report, u.requeue, valid)
            }
            None => diagnose_check(&obj, &ctx).await,
        };
    tracing::debug!(took_ms = timer.ms(), "diagnosis done; writing status");

    let status = status::build(
        &report,
        &previous,
        generation,
        &Time(jiff::Timestamp::now()),
    );
    if let Err(source) = status::apply(ctx.client(), &namespace, &name, &status).await {
        ctx.keep_unwritten(
            &namespace,
            &name,
            Unwritten {
                uid,
                generation,
                report,
                requeue,
            },
        );
        return Err(Error::WriteStatus {
            namespace,
            name,
            source,
        });
    }

    let ready = report.ready();
    if let Some(event) = transition(status::ready_verdict(&previous), ready) {
        ctx.publish(&event, &obj.object_ref(&resource())).await;
    }
    if let Some(check) = &valid {
        ctx.record_service_account(&namespace, &check.spec.service_account_name, ready)
            .await;
    }
    ctx.metrics().set_check(
        &namespace,
        &name,
        ready.status == Status::True,
        ready.reason,
    );
    ctx.metrics().reconciled(Kind::IrsaCheck, timer.elapsed());
    tracing::info!(ready = %ready.status, reason = %ready.reason, took_ms = timer.ms(), "diagnosed");
    Ok(Action::requeue(requeue))
}

/// Failed reconciles are retried after a short pause; the error is counted and logged.
pub fn error_policy(obj: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics().failed(Kind::IrsaCheck);
    tracing::warn!(
        check = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
        error = %error,
        kind = error.metric_label(),
        "reconcile failed; retrying"
    );
    Action::requeue(RETRY)
}
