//! PolicyReports (`wgpolicyk8s.io/v1alpha2`, the Kubernetes Policy Working Group's format that
//! Kyverno, policy-reporter and other dashboards read): one report per namespace, named
//! `irsa-doctor`, with one result per IRSA ServiceAccount diagnosed.
//!
//! Two halves: [`build`] turns the remembered verdicts of one namespace into the report (pure,
//! bounded in results and bytes); [`run`] is the writer, woken by the verdict memory when a
//! namespace's results change and after every full sweep, writing each changed namespace at most
//! once per [`DEBOUNCE`] by server-side apply, only when the report differs from the one it last
//! wrote. Without the CRD (`--policy-reports auto`), the writer says so once and looks again
//! after every sweep; it never fails the operator.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use irsa_core::{ConditionVerdict, Reason, Report, Severity, Status};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use serde::Serialize;

use super::context::Context;
use super::text::truncate;
use super::watch_namespace::WatchNamespace;
use super::FIELD_MANAGER;

/// The name of the report in each namespace, and its results' `policy` and `source`.
pub const REPORT_NAME: &str = "irsa-doctor";
/// The API group of PolicyReports.
pub const GROUP: &str = "wgpolicyk8s.io";
/// The version written.
pub const VERSION: &str = "v1alpha2";
/// Each result's message is bounded to this many bytes.
pub const MESSAGE_MAX_BYTES: usize = 1024;
/// At most this many results per report; the summary still counts every ServiceAccount.
pub const MAX_RESULTS: usize = 5_000;
/// At most this many bytes of results per report (etcd refuses objects over 1.5 MiB).
pub const RESULTS_MAX_BYTES: usize = 1024 * 1024;
/// A namespace's report is written at most once per this interval.
pub const DEBOUNCE: Duration = Duration::from_secs(2);
/// The label every report carries, and the writer lists its own reports by.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "irsa-doctor");
/// The annotation that says how many results a report had to leave out.
pub const OMITTED_ANNOTATION: &str = "irsa-doctor.io/results-omitted";
/// Each result's category.
const CATEGORY: &str = "IAM Roles for Service Accounts";

/// `--policy-reports`: whether the operator writes PolicyReports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PolicyReportsMode {
    /// When the PolicyReport CRD is installed (looked for at start-up and after every sweep).
    #[default]
    Auto,
    /// Always; a missing CRD is logged as a warning at start-up.
    On,
    /// Never.
    Off,
}

/// The PolicyReport API resource.
pub fn resource() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: "PolicyReport".into(),
        plural: "policyreports".into(),
    }
}

/// A result's outcome. Ordered as reports list them: failures first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Ready False: IRSA does not work.
    Fail,
    /// Ready Unknown: could not tell (AWS or the API server unavailable, …). Never `fail`.
    Error,
    /// Ready True with warnings.
    Warn,
    /// Ready True.
    Pass,
}

/// A result's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultSeverity {
    /// A failing verdict, or any error finding.
    High,
    /// Warning findings.
    Medium,
    /// Nothing worse than a note.
    Info,
}

/// What a report needs of one ServiceAccount's last diagnosis, kept by the verdict memory:
/// small (the message is bounded, and its strings are shared between ServiceAccounts that say
/// the same), and compared to decide whether the report changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// pass, fail, warn or error.
    pub outcome: Outcome,
    /// The Ready reason; for a warning, the first warning's reason.
    pub rule: Reason,
    /// high, medium or info.
    pub severity: ResultSeverity,
    /// What was found, at most [`MESSAGE_MAX_BYTES`].
    pub message: Arc<str>,
    /// How to fix it.
    pub fix: &'static str,
    /// The annotated role ARN, when the diagnosis said which.
    pub role_arn: Option<Arc<str>>,
}

fn outcome_of(status: Status) -> Outcome {
    match status {
        Status::True => Outcome::Pass,
        Status::False => Outcome::Fail,
        Status::Unknown => Outcome::Error,
    }
}

impl Observation {
    /// From a whole report: warnings, fixes and the role ARN are known.
    pub fn of_report(report: &Report) -> Observation {
        let ready = report.ready();
        let warning = report
            .findings
            .iter()
            .find(|f| f.severity == Severity::Warning);
        let severity = if ready.status == Status::False
            || report
                .findings
                .iter()
                .any(|f| f.severity == Severity::Error)
        {
            ResultSeverity::High
        } else if warning.is_some() {
            ResultSeverity::Medium
        } else {
            ResultSeverity::Info
        };
        let role_arn = report.role_arn.as_deref().map(Arc::from);
        match (ready.status, warning) {
            (Status::True, Some(w)) => Observation {
                outcome: Outcome::Warn,
                rule: w.reason,
                severity,
                message: truncate(&w.message, MESSAGE_MAX_BYTES).into(),
                fix: w.fix,
                role_arn,
            },
            _ => Observation {
                outcome: outcome_of(ready.status),
                rule: ready.reason,
                severity,
                message: truncate(&ready.message, MESSAGE_MAX_BYTES).into(),
                fix: report
                    .findings
                    .iter()
                    .find(|f| f.reason == ready.reason)
                    .map_or_else(|| ready.reason.remediation(), |f| f.fix),
                role_arn,
            },
        }
    }

    /// From the Ready verdict alone: no warnings, no role ARN (the writer reads the annotation).
    pub fn of_ready(ready: &ConditionVerdict) -> Observation {
        Observation {
            outcome: outcome_of(ready.status),
            rule: ready.reason,
            severity: if ready.status == Status::False {
                ResultSeverity::High
            } else {
                ResultSeverity::Info
            },
            message: truncate(&ready.message, MESSAGE_MAX_BYTES).into(),
            fix: ready.reason.remediation(),
            role_arn: None,
        }
    }
}

/// One ServiceAccount's line in a report, as [`build`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The ServiceAccount's name.
    pub name: String,
    /// Its uid.
    pub uid: Option<String>,
    /// Its last diagnosis.
    pub observation: Observation,
    /// The role ARN when the observation has none (read from the annotation).
    pub role_arn: Option<String>,
    /// Since when the observation has been what it is.
    pub since: jiff::Timestamp,
}

/// `{seconds, nanos}`, as PolicyReports write time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReportTime {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: i32,
}

impl From<jiff::Timestamp> for ReportTime {
    fn from(t: jiff::Timestamp) -> ReportTime {
        ReportTime {
            seconds: t.as_second(),
            nanos: t.subsec_nanosecond(),
        }
    }
}

/// One result of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportResult {
    /// Always `irsa-doctor`.
    pub policy: &'static str,
    /// The reason.
    pub rule: &'static str,
    /// The outcome.
    pub result: Outcome,
    /// The severity.
    pub severity: ResultSeverity,
    /// Always [`CATEGORY`].
    pub category: &'static str,
    /// Whether the result counts toward compliance: always.
    pub scored: bool,
    /// What was found.
    pub message: String,
    /// The ServiceAccount, uid included.
    pub resources: Vec<ObjectReference>,
    /// `roleArn` (when known) and `fix`.
    pub properties: BTreeMap<&'static str, String>,
    /// Always `irsa-doctor`.
    pub source: &'static str,
    /// Since when the result has been what it is.
    pub timestamp: ReportTime,
}

/// Result counts; they count every ServiceAccount, listed or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passing.
    pub pass: u64,
    /// Failing.
    pub fail: u64,
    /// Passing with warnings.
    pub warn: u64,
    /// Unknown.
    pub error: u64,
    /// Never used: every IRSA ServiceAccount is diagnosed.
    pub skip: u64,
}

/// The report's metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportMeta {
    /// Always `irsa-doctor`.
    pub name: &'static str,
    /// The namespace.
    pub namespace: String,
    /// [`MANAGED_BY`].
    pub labels: BTreeMap<&'static str, &'static str>,
    /// [`OMITTED_ANNOTATION`] when results were left out.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<&'static str, String>,
}

/// A PolicyReport as the operator applies it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    /// `wgpolicyk8s.io/v1alpha2`.
    pub api_version: String,
    /// `PolicyReport`.
    pub kind: &'static str,
    /// Name, namespace, label.
    pub metadata: ReportMeta,
    /// The counts.
    pub summary: Summary,
    /// The results, failures first, bounded.
    pub results: Vec<ReportResult>,
}

impl PolicyReport {
    /// A digest of the whole report: the writer applies it only when this changes.
    pub fn digest(&self) -> u64 {
        let mut h = DefaultHasher::new();
        serde_json::to_string(self).unwrap_or_default().hash(&mut h);
        h.finish()
    }
}

/// How much one report may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Results.
    pub results: usize,
    /// Bytes of results (JSON).
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            results: MAX_RESULTS,
            bytes: RESULTS_MAX_BYTES,
        }
    }
}

fn result_of(namespace: &str, s: Subject) -> ReportResult {
    let o = s.observation;
    let mut properties = BTreeMap::from([("fix", o.fix.to_string())]);
    if let Some(arn) = o.role_arn.map(|a| a.to_string()).or(s.role_arn) {
        properties.insert("roleArn", arn);
    }
    ReportResult {
        policy: REPORT_NAME,
        rule: o.rule.as_str(),
        result: o.outcome,
        severity: o.severity,
        category: CATEGORY,
        scored: true,
        message: o.message.to_string(),
        resources: vec![ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ServiceAccount".into()),
            namespace: Some(namespace.into()),
            name: Some(s.name),
            uid: s.uid,
            ..ObjectReference::default()
        }],
        properties,
        source: REPORT_NAME,
        timestamp: s.since.into(),
    }
}

/// The report of `namespace` for its ServiceAccounts, with the default [`Limits`].
pub fn build(namespace: &str, subjects: Vec<Subject>) -> PolicyReport {
    build_with(namespace, subjects, Limits::default())
}

/// The report of `namespace`: one result per ServiceAccount, failures first then by name, as
/// many as `limits` allow; the summary counts them all, and an annotation says how many were
/// left out.
pub fn build_with(namespace: &str, mut subjects: Vec<Subject>, limits: Limits) -> PolicyReport {
    subjects
        .sort_by(|a, b| (a.observation.outcome, &a.name).cmp(&(b.observation.outcome, &b.name)));
    let total = subjects.len();
    let mut summary = Summary::default();
    let mut results = Vec::new();
    let mut bytes = 0;
    let mut full = false;
    for s in subjects {
        match s.observation.outcome {
            Outcome::Pass => summary.pass += 1,
            Outcome::Fail => summary.fail += 1,
            Outcome::Warn => summary.warn += 1,
            Outcome::Error => summary.error += 1,
        }
        if full {
            continue;
        }
        let result = result_of(namespace, s);
        let size = serde_json::to_vec(&result).map_or(0, |v| v.len());
        if results.len() >= limits.results || bytes + size > limits.bytes {
            full = true;
            continue;
        }
        bytes += size;
        results.push(result);
    }
    let mut annotations = BTreeMap::new();
    if results.len() < total {
        annotations.insert(
            OMITTED_ANNOTATION,
            format!(
                "{} of {total} results left out (at most {} results and {} KiB per report); \
                 failures are listed first and the summary counts every ServiceAccount",
                total - results.len(),
                limits.results,
                limits.bytes / 1024,
            ),
        );
    }
    PolicyReport {
        api_version: format!("{GROUP}/{VERSION}"),
        kind: "PolicyReport",
        metadata: ReportMeta {
            name: REPORT_NAME,
            namespace: namespace.into(),
            labels: BTreeMap::from([MANAGED_BY]),
            annotations,
        },
        summary,
        results,
    }
}

/// Whether the API server serves PolicyReports (discovery, which every identity may read).
async fn served(client: &kube::Client) -> Result<bool, kube::Error> {
    match client
        .list_api_group_resources(&format!("{GROUP}/{VERSION}"))
        .await
    {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == "policyreports")),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The writer's state.
struct Writer {
    ctx: Arc<Context>,
    namespaces: Vec<WatchNamespace>,
    mode: PolicyReportsMode,
    /// Whether the CRD is served, as last seen.
    available: bool,
    /// Namespaces holding a report of an earlier run, written once the first sweep is done.
    adopted: BTreeSet<String>,
    /// Digest and resourceVersion of the report last written, per namespace: a report whose
    /// resourceVersion is no longer ours was changed by someone else, and is written again.
    written: HashMap<String, (u64, Option<String>)>,
    /// A write was refused (403) and said so; quiet until one succeeds.
    refused: bool,
}

impl Writer {
    /// Looks for the CRD; logs what changed. `start`: the first look.
    async fn discover(&mut self, start: bool) {
        let was = self.available;
        // A failed look changes nothing: it is looked for again after the next sweep.
        self.available = match served(self.ctx.client()).await {
            Ok(served) => served,
            Err(e) => {
                tracing::warn!(error = %e, "could not tell whether the PolicyReport CRD is installed; looking again after the next sweep");
                return;
            }
        };
        match (start, was, self.available, self.mode) {
            (true, _, true, _) | (false, false, true, _) => {
                tracing::info!("writing PolicyReports ({GROUP}/{VERSION}), one per namespace named {REPORT_NAME}");
                self.adopt().await;
            }
            (true, _, false, PolicyReportsMode::On) => tracing::warn!(
                "--policy-reports=on, but the API server does not serve {GROUP}/{VERSION} policyreports: install the PolicyReport CRD; looking again after every sweep"
            ),
            (true, _, false, _) => tracing::info!(
                "the PolicyReport CRD ({GROUP}/{VERSION}) is not installed: no PolicyReports; looking again after every sweep"
            ),
            (false, true, false, _) => {
                tracing::info!("the PolicyReport CRD is no longer served: PolicyReports stop until it is back");
                self.written.clear();
            }
            _ => {}
        }
    }

    /// Remembers the namespaces that hold a report of an earlier run, so that one whose
    /// ServiceAccounts are all gone is emptied too.
    async fn adopt(&mut self) {
        let ar = resource();
        let params = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
        for scope in &self.namespaces {
            match scope
                .api_with(self.ctx.client(), &ar)
                .list_metadata(&params)
                .await
            {
                Ok(list) => self.adopted.extend(
                    list.items
                        .into_iter()
                        .filter(|r| r.metadata.name.as_deref() == Some(REPORT_NAME))
                        .filter_map(|r| r.metadata.namespace),
                ),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    tracing::info!("listing PolicyReports: not found; the CRD is gone");
                    self.available = false;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, scope = %scope.describe(), "could not list earlier PolicyReports")
                }
            }
        }
    }

    /// The subjects of `namespace`, from the verdict memory and the ServiceAccount cache.
    async fn subjects(&self, namespace: &str) -> Vec<Subject> {
        let mut subjects = Vec::new();
        for (name, remembered) in self.ctx.verdicts().of_namespace(namespace) {
            // Not in the cache: deleted, and about to be forgotten.
            let Some(reference) = self.ctx.service_account_reference(namespace, &name).await else {
                continue;
            };
            let role_arn = match remembered.observation.role_arn {
                Some(_) => None,
                None => match self.ctx.service_accounts().get(namespace, &name).await {
                    irsa_core::Fact::Known(Some(sa)) => {
                        sa.role_arn_annotation().map(str::to_string)
                    }
                    _ => None,
                },
            };
            subjects.push(Subject {
                name,
                uid: reference.uid,
                observation: remembered.observation,
                role_arn,
                since: remembered.since,
            });
        }
        subjects
    }

    /// Writes the report of `namespace` if it changed. `Err` with the API error to retry on.
    async fn write(&mut self, namespace: &str) -> Result<(), kube::Error> {
        let report = build(namespace, self.subjects(namespace).await);
        let digest = report.digest();
        if self.written.get(namespace).map(|(d, _)| *d) == Some(digest) {
            return Ok(());
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.ctx.client().clone(), namespace, &resource());
        let applied = api
            .patch(
                REPORT_NAME,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&report),
            )
            .await?;
        self.refused = false;
        tracing::debug!(
            namespace,
            pass = report.summary.pass,
            fail = report.summary.fail,
            warn = report.summary.warn,
            error = report.summary.error,
            "PolicyReport written"
        );
        self.written.insert(
            namespace.to_string(),
            (digest, applied.metadata.resource_version),
        );
        Ok(())
    }

    /// The namespaces whose report was changed or deleted by someone else since it was written:
    /// one list of the reports named irsa-doctor per watched scope, their resourceVersions
    /// compared with those of the writes. Forgotten as written, so that they are written again.
    async fn tampered(&mut self) -> BTreeSet<String> {
        // Nothing written yet, nothing to compare: no list.
        if self.written.is_empty() {
            return BTreeSet::new();
        }
        let ar = resource();
        let params = ListParams::default().fields(&format!("metadata.name={REPORT_NAME}"));
        let mut seen: HashMap<String, Option<String>> = HashMap::new();
        for scope in &self.namespaces {
            match scope
                .api_with(self.ctx.client(), &ar)
                .list_metadata(&params)
                .await
            {
                Ok(list) => seen.extend(
                    list.items
                        .into_iter()
                        .filter_map(|r| Some((r.metadata.namespace?, r.metadata.resource_version))),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, scope = %scope.describe(), "could not list PolicyReports to find changed ones; looking again after the next sweep");
                    return BTreeSet::new();
                }
            }
        }
        let tampered: BTreeSet<String> = self
            .written
            .iter()
            .filter(|(ns, (_, ours))| seen.get(*ns) != Some(ours))
            .map(|(ns, _)| ns.clone())
            .collect();
        for namespace in &tampered {
            tracing::info!(%namespace, "the PolicyReport was changed or deleted by someone else; writing it again");
            self.written.remove(namespace);
        }
        tampered
    }

    /// Writes every namespace of `batch`; a failed one is kept for the next round.
    async fn write_all(&mut self, batch: BTreeSet<String>) -> BTreeSet<String> {
        let mut failed = BTreeSet::new();
        for namespace in batch {
            if !self.available {
                break;
            }
            match self.write(&namespace).await {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    // The namespace is gone, or the CRD is: discovery tells which.
                    self.written.remove(&namespace);
                    self.discover(false).await;
                }
                // The RBAC lacks create or patch (a chart with policyReports.mode=off and the
                // flag on): said once, not at every sweep.
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    if !std::mem::replace(&mut self.refused, true) {
                        tracing::warn!(error = %s, %namespace, "the operator may not write PolicyReports: grant create, list and patch of wgpolicyk8s.io policyreports, or set --policy-reports=off; retrying after every sweep");
                    }
                    failed.insert(namespace);
                }
                Err(e) => {
                    tracing::warn!(error = %e, %namespace, "could not write the PolicyReport; retrying after the next sweep");
                    failed.insert(namespace);
                }
            }
        }
        failed
    }
}

/// Keeps the PolicyReports of `namespaces` in step with the verdict memory, until dropped.
/// Writes nothing before the first full sweep, so a report is never emptied by a restart.
pub async fn run(ctx: Arc<Context>, namespaces: Vec<WatchNamespace>, mode: PolicyReportsMode) {
    let changes = ctx.verdicts().changes();
    changes.enable();
    let mut writer = Writer {
        ctx: ctx.clone(),
        namespaces,
        mode,
        available: false,
        adopted: BTreeSet::new(),
        written: HashMap::new(),
        refused: false,
    };
    writer.discover(true).await;
    let mut swept_once = false;
    let mut pending = BTreeSet::new();
    loop {
        changes.wait().await;
        tokio::time::sleep(DEBOUNCE).await;
        let (dirty, swept) = changes.take();
        pending.extend(dirty);
        if swept && !writer.available {
            writer.discover(false).await;
            if writer.available {
                // Everything changed while it was away.
                pending.extend(ctx.verdicts().namespaces());
            }
        }
        if !writer.available {
            pending.clear();
            continue;
        }
        swept_once |= swept;
        if !swept_once {
            continue;
        }
        pending.append(&mut writer.adopted);
        if swept {
            pending.append(&mut writer.tampered().await);
        }
        let batch = std::mem::take(&mut pending);
        // A failed write is retried with the next batch, at the latest after the next sweep.
        pending = writer.write_all(batch).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use irsa_core::{ConditionType, Finding};

    fn report(status: Status, reason: Reason, findings: Vec<Finding>) -> Report {
        Report {
            service_account: "team/api".into(),
            role_arn: Some("arn:aws:iam::111122223333:role/api".into()),
            assumed_arn: None,
            findings,
            conditions: vec![ConditionVerdict {
                type_: ConditionType::Ready,
                status,
                reason,
                message: format!("Ready: {reason}"),
            }],
        }
    }

    fn subject(name: &str, observation: Observation) -> Subject {
        Subject {
            name: name.into(),
            uid: Some(format!("uid-{name}")),
            observation,
            role_arn: None,
            since: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
        }
    }

    #[test]
    fn verdicts_map_to_results_and_unknown_is_never_a_failure() {
        let pass = Observation::of_report(&report(Status::True, Reason::AllChecksPassed, vec![]));
        assert_eq!(
            (pass.outcome, pass.rule, pass.severity),
            (Outcome::Pass, Reason::AllChecksPassed, ResultSeverity::Info)
        );
        assert_eq!(
            pass.role_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/api")
        );

        let mismatch = Finding::new(
            Reason::TrustPolicySubjectMismatch,
            ConditionType::TrustPolicyValid,
            "sub names old-exporter",
        );
        let fail = Observation::of_report(&report(
            Status::False,
            Reason::TrustPolicySubjectMismatch,
            vec![mismatch],
        ));
        assert_eq!(
            (fail.outcome, fail.rule, fail.severity),
            (
                Outcome::Fail,
                Reason::TrustPolicySubjectMismatch,
                ResultSeverity::High
            )
        );
        assert_eq!(fail.fix, Reason::TrustPolicySubjectMismatch.remediation());

        let broad = Finding::new(
            Reason::TrustPolicySubjectTooBroad,
            ConditionType::TrustPolicyValid,
            "sub is a pattern",
        );
        let warn =
            Observation::of_report(&report(Status::True, Reason::AllChecksPassed, vec![broad]));
        assert_eq!(
            (warn.outcome, warn.rule, warn.severity),
            (
                Outcome::Warn,
                Reason::TrustPolicySubjectTooBroad,
                ResultSeverity::Medium
            )
        );
        assert_eq!(&*warn.message, "sub is a pattern");

        let unavailable = Finding::new(
            Reason::AwsApiUnavailable,
            ConditionType::TrustPolicyValid,
            "throttled",
        );
        let unknown = Observation::of_report(&report(
            Status::Unknown,
            Reason::AwsApiUnavailable,
            vec![unavailable],
        ));
        assert_eq!(
            (unknown.outcome, unknown.severity),
            (Outcome::Error, ResultSeverity::Info),
            "Unknown is error, never fail"
        );
        let ready_only = Observation::of_ready(
            &report(Status::Unknown, Reason::AwsApiUnavailable, vec![]).conditions[0],
        );
        assert_eq!(ready_only.outcome, Outcome::Error);
        assert_eq!(ready_only.role_arn, None);
    }

    #[test]
    fn report_lists_failures_first_counts_everything_and_serializes_as_the_crd_wants() {
        let ok = Observation::of_report(&report(Status::True, Reason::AllChecksPassed, vec![]));
        let bad = Observation::of_ready(
            &report(Status::False, Reason::RoleNotFound, vec![]).conditions[0],
        );
        let mut fallback = subject("b-bad", bad);
        fallback.role_arn = Some("arn:aws:iam::111122223333:role/gone".into());
        let r = build("team", vec![subject("a-ok", ok), fallback]);
        assert_eq!(
            r.summary,
            Summary {
                pass: 1,
                fail: 1,
                ..Summary::default()
            }
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(json["kind"], "PolicyReport");
        assert_eq!(json["metadata"]["name"], "irsa-doctor");
        assert_eq!(json["metadata"]["namespace"], "team");
        assert_eq!(
            json["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "irsa-doctor"
        );
        assert!(json["metadata"].get("annotations").is_none());
        assert_eq!(
            json["summary"],
            serde_json::json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
        );
        let first = &json["results"][0];
        assert_eq!(first["result"], "fail", "failures first");
        assert_eq!(first["rule"], "RoleNotFound");
        assert_eq!(first["severity"], "high");
        assert_eq!(first["policy"], "irsa-doctor");
        assert_eq!(first["source"], "irsa-doctor");
        assert_eq!(
            first["timestamp"],
            serde_json::json!({"seconds": 1_700_000_000, "nanos": 0})
        );
        assert_eq!(
            first["resources"],
            serde_json::json!([{"apiVersion": "v1", "kind": "ServiceAccount", "namespace": "team", "name": "b-bad", "uid": "uid-b-bad"}])
        );
        assert_eq!(
            first["properties"]["roleArn"], "arn:aws:iam::111122223333:role/gone",
            "read from the annotation"
        );
        assert_eq!(
            first["properties"]["fix"],
            Reason::RoleNotFound.remediation()
        );
        assert_eq!(json["results"][1]["result"], "pass");
        assert_eq!(
            json["results"][1]["properties"]["roleArn"],
            "arn:aws:iam::111122223333:role/api"
        );
    }

    #[test]
    fn reports_are_bounded_and_their_digest_follows_their_content() {
        let mut long = report(Status::False, Reason::RoleNotFound, vec![]);
        long.conditions[0].message = "é".repeat(4000);
        let bad = Observation::of_report(&long);
        assert!(bad.message.len() <= MESSAGE_MAX_BYTES);
        let ok = Observation::of_report(&report(Status::True, Reason::AllChecksPassed, vec![]));
        let subjects: Vec<Subject> = (0..30)
            .map(|i| {
                subject(
                    &format!("sa-{i:02}"),
                    if i % 3 == 0 { bad.clone() } else { ok.clone() },
                )
            })
            .collect();
        let capped = build_with(
            "team",
            subjects.clone(),
            Limits {
                results: 12,
                bytes: usize::MAX,
            },
        );
        assert_eq!(capped.results.len(), 12);
        assert_eq!(
            capped.summary,
            Summary {
                pass: 20,
                fail: 10,
                ..Summary::default()
            }
        );
        assert!(
            capped.results[..10]
                .iter()
                .all(|r| r.result == Outcome::Fail),
            "every failure fits first"
        );
        assert!(capped.metadata.annotations[OMITTED_ANNOTATION].starts_with("18 of 30"));
        let by_bytes = build_with(
            "team",
            subjects.clone(),
            Limits {
                results: usize::MAX,
                bytes: 8 * 1024,
            },
        );
        let bytes: usize = by_bytes
            .results
            .iter()
            .map(|r| serde_json::to_vec(r).unwrap().len())
            .sum();
        assert!(bytes <= 8 * 1024 && by_bytes.results.len() < 30, "{bytes}");
        let all = build("team", subjects.clone());
        assert_eq!(all.results.len(), 30);
        assert!(all.metadata.annotations.is_empty());

        assert_eq!(
            all.digest(),
            build("team", subjects.clone()).digest(),
            "stable"
        );
        let mut changed = subjects;
        changed[1].observation = bad;
        assert_ne!(all.digest(), build("team", changed).digest());
    }
}
