//! The IrsaCheck reconciler in three steps: diagnose (facts → report, and when to run again),
//! status (build → server-side apply; when only the write failed, only the write is retried),
//! events (transitions only). Re-runs every `spec.interval`, on spec changes, and when the
//! ServiceAccount it names changes its annotations.
//!
//! One namespace cannot stall the others:
//!
//! - a probe needs one of the `--max-concurrent-probes` slots, taken without waiting. A check
//!   that finds them all busy does not hold its reconcile slot waiting. If its status was
//!   written less than `spec.interval` ago from the same spec and ServiceAccount annotations,
//!   nothing is written and it is looked at again in 5–15 s (jittered). Otherwise (a new or
//!   changed check, or a status older than its interval) it gets the rest of its diagnosis now,
//!   with the probe reported pending (`ProbePending`, Unknown), and is looked at again in
//!   5–15 s. So a check's static diagnosis is never older than its interval, however busy the
//!   probe slots are.
//! - a check's probe pod runs at most every `--min-probe-interval` (the same spec and
//!   ServiceAccount annotations); diagnoses in between reuse its last outcome.
//! - AWS calls queue in the namespace's lane of the fair limiter (`irsa_aws::Lane`), only roles
//!   `--allowed-role-arns` admits are looked up, and findings quote a role's trust policy only
//!   when it admits the ServiceAccount (`Disclosure::AdmittedOnly`).

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use irsa_core::diagnose::diagnose_with;
use irsa_core::probe::ProbeObservation;
use irsa_core::trust::Disclosure;
use irsa_core::{
    ConditionType, ConditionVerdict, Fact, Finding, Reason, Report, RoleArn, ServiceAccount,
    Status, Unavailable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DynamicObject;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::context::{Context, Unwritten, Written};
use super::events::transition;
use super::metrics::Kind;
use super::probe_slots::{Busy, ProbeSlot};
use super::recovery::Subject;
use super::status;
use super::stopwatch::Stopwatch;
use crate::api::dynamic_resource as resource;
use crate::api::{self, IrsaCheck, SpecError};
use crate::gather::workloads;

/// How soon an unusable spec is looked at again (a spec change re-runs it at once anyway).
const INVALID_SPEC_REQUEUE: Duration = Duration::from_secs(3600);
/// Pause before retrying a reconcile that failed.
const RETRY: Duration = Duration::from_secs(5);
/// A check that found every probe slot busy is looked at again after this, plus up to
/// [`PROBE_RETRY_JITTER`], so that the waiting checks do not all come back at once.
const PROBE_RETRY: Duration = Duration::from_secs(5);
/// See [`PROBE_RETRY`].
const PROBE_RETRY_JITTER: Duration = Duration::from_secs(10);

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

/// 5 s plus a random part of up to 10 s.
fn probe_retry() -> Duration {
    let random =
        std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    let jitter_ms = u64::try_from(PROBE_RETRY_JITTER.as_millis()).unwrap_or(u64::MAX);
    PROBE_RETRY + Duration::from_millis(random % jitter_ms.max(1))
}

/// What step 1 came to.
enum Diagnosis {
    /// A report to write.
    Report(Box<Diagnosed>),
    /// No probe slot, and the status was written within the interval from the same spec and
    /// ServiceAccount annotations: nothing to write; again after this.
    Wait(Duration),
}

/// A report to write, and what goes with it.
struct Diagnosed {
    report: Report,
    /// When to run again.
    requeue: Duration,
    /// The check; `None`: the spec was unusable.
    check: Option<IrsaCheck>,
    /// What it was diagnosed from, when the spec was usable.
    inputs: Option<Written>,
}

impl Diagnosis {
    fn report(
        report: Report,
        requeue: Duration,
        check: Option<IrsaCheck>,
        inputs: Option<Written>,
    ) -> Diagnosis {
        Diagnosis::Report(Box::new(Diagnosed {
            report,
            requeue,
            check,
            inputs,
        }))
    }
}

/// What to do about the probe of a check.
enum ProbePlan {
    /// Known already: disabled, impossible, or the last run, still recent.
    Decided(Fact<ProbeObservation>),
    /// Run it, holding this slot.
    Run(ProbeSlot),
}

/// Whether the check's probe runs now, is reused, or waits for a slot (and why).
fn plan_probe(
    ctx: &Context,
    check: &IrsaCheck,
    sa: Option<&ServiceAccount>,
    annotations: &BTreeMap<String, String>,
) -> Result<ProbePlan, Busy> {
    let namespace = check.namespace().unwrap_or_default();
    let sa_name = &check.spec.service_account_name;
    let decided = |fact| Ok(ProbePlan::Decided(fact));
    if !check.spec.probe.enabled {
        return decided(Fact::Skipped("spec.probe.enabled is false".into()));
    }
    let Some(sa) = sa else {
        return decided(Fact::Unavailable(Unavailable {
            reason: Reason::ProbeNotRun,
            detail: format!("ServiceAccount {namespace}/{sa_name} does not exist"),
        }));
    };
    if let (Some(allowed), Some(annotation)) = (ctx.allowed_roles(), sa.role_arn_annotation()) {
        // What is not a role ARN is admitted by no pattern: the webhook would inject it all the
        // same, so the probe would run as whatever it names.
        let admitted = RoleArn::parse(annotation).is_ok_and(|role| allowed.admits(&role));
        if !admitted {
            // The diagnosis says RoleNotAllowed or RoleArnInvalid and evaluates nothing that
            // needs the role.
            return decided(Fact::Unavailable(Unavailable {
                reason: Reason::ProbeNotRun,
                detail: format!(
                    "{:?} is outside --allowed-role-arns",
                    super::text::truncate(annotation, 256)
                ),
            }));
        }
    }
    let uid = check.metadata.uid.as_deref().unwrap_or_default();
    if let Some(last) = ctx.recent_probe(uid, check.metadata.generation, annotations) {
        return decided(Fact::Known(last));
    }
    ctx.try_probe_slot(&namespace).map(ProbePlan::Run)
}

/// Step 1: facts → report, and when to run again.
async fn diagnose_check(obj: &DynamicObject, ctx: &Context) -> Diagnosis {
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
            return Diagnosis::report(
                invalid_spec_report(format!("{namespace}/{named}"), &e),
                INVALID_SPEC_REQUEUE,
                None,
                None,
            );
        }
    };
    let sa_name = check.spec.service_account_name.clone();
    let sa = ctx.service_accounts().get(&namespace, &sa_name).await;
    let annotations = sa
        .known()
        .and_then(Option::as_ref)
        .map(|sa| sa.annotations.clone())
        .unwrap_or_default();
    let inputs = Written {
        uid: check.metadata.uid.clone(),
        generation: check.metadata.generation,
        annotations: annotations.clone(),
    };
    let mut requeue = interval;
    let plan = match plan_probe(
        ctx,
        &check,
        sa.known().and_then(Option::as_ref),
        &annotations,
    ) {
        Ok(plan) => plan,
        // No probe slot for this namespace now. Waiting here would hold a reconcile slot that
        // checks of other namespaces need, for as long as other probes take.
        Err(_) if ctx.status_is_from(&namespace, &check.name_any(), &inputs, interval) => {
            return Diagnosis::Wait(probe_retry());
        }
        Err(busy) => {
            requeue = probe_retry();
            ProbePlan::Decided(Fact::Unavailable(Unavailable {
                reason: Reason::ProbePending,
                detail: busy.to_string(),
            }))
        }
    };
    let mut facts = ctx
        .gather(&namespace, &sa_name, sa, Some(&check.spec))
        .await;
    facts.workloads = Some(
        workloads::pods_of(
            ctx.client(),
            ctx.prober().admission(),
            &namespace,
            &sa_name,
            &ctx.prober().live_probe_pods(),
        )
        .await,
    );
    ctx.observe(&mut facts).await;
    facts.probe = Some(match plan {
        ProbePlan::Decided(fact) => fact,
        ProbePlan::Run(slot) => {
            let observed = ctx
                .metrics()
                .time_probe(ctx.prober().run(&check, probe_timeout))
                .await;
            drop(slot);
            if let (Fact::Known(o), Some(uid)) = (&observed, check.metadata.uid.as_deref()) {
                ctx.remember_probe(uid, check.metadata.generation, annotations, o.clone());
            }
            observed
        }
    });
    // Status and Events are read by the namespace's users, who may only be able to point the
    // ServiceAccount at a role: quote its trust policy only when it admits the ServiceAccount.
    Diagnosis::report(
        diagnose_with(&facts, Disclosure::AdmittedOnly),
        requeue,
        Some(check),
        Some(inputs),
    )
}

/// Runs one IrsaCheck's diagnosis and writes the result.
#[instrument(skip_all, fields(namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any()))]
pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = Stopwatch::start();
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let generation = obj.metadata.generation;
    let uid = obj.metadata.uid.clone();
    let previous = status::previous(&obj);

    let (report, requeue, valid, inputs) =
        match ctx.take_unwritten(&namespace, &name, uid.as_deref(), generation) {
            Some(u) => {
                tracing::debug!("writing the status kept from the last run");
                let valid = api::from_dynamic(&obj).ok();
                (u.report, u.requeue, valid, u.inputs)
            }
            None => match diagnose_check(&obj, &ctx).await {
                Diagnosis::Report(d) => (d.report, d.requeue, d.check, d.inputs),
                Diagnosis::Wait(again) => {
                    tracing::debug!(
                        again_ms = again.as_millis(),
                        "every probe slot is busy; the status is current, so nothing is written"
                    );
                    return Ok(Action::requeue(again));
                }
            },
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
                inputs,
            },
        );
        return Err(Error::WriteStatus {
            namespace,
            name,
            source,
        });
    }
    if let Some(inputs) = inputs {
        ctx.remember_written(&namespace, &name, inputs);
    }

    ctx.recovery().record(
        Subject::Check(namespace.clone(), name.clone()),
        report.awaits_recovery(),
    );
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
