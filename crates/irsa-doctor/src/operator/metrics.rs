//! Prometheus metrics, all named `irsa_doctor_*`, with low-cardinality labels (the per-check
//! gauge is the one exception: one series per IrsaCheck, which is what alerts need).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use irsa_aws::AwsFacts;
use irsa_core::probe::{ProbeObservation, ProbeResult};
use irsa_core::{Fact, Reason};
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::verdicts::VerdictClass;

/// What a diagnosis was for.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Kind {
    /// An IrsaCheck's reconcile.
    IrsaCheck,
    /// A ServiceAccount without an IrsaCheck (the sweep, or a change).
    ServiceAccount,
}

impl Kind {
    /// `irsacheck` or `serviceaccount`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IrsaCheck => "irsacheck",
            Kind::ServiceAccount => "serviceaccount",
        }
    }
}

impl EncodeLabelValue for Kind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for VerdictClass {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// A catalogue reason as a label value.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct ReasonLabel(pub Reason);

impl EncodeLabelValue for ReasonLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.0.as_str())
    }
}

/// Labels of the per-IrsaCheck ready gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// The IrsaCheck's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its Ready reason.
    pub reason: ReasonLabel,
}

/// Labels of the ServiceAccount verdict counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// `ok`, `error`, `unknown`.
    pub verdict: VerdictClass,
    /// The Ready reason.
    pub reason: ReasonLabel,
}

/// Labels of the Events that could not be published.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The Event's reason.
    pub reason: ReasonLabel,
}

/// Labels of reconcile metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `irsacheck` or `serviceaccount`.
    pub kind: Kind,
}

/// How a probe run ended, as a label value.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The probe container exited 0.
    Succeeded,
    /// It exited with another code (the CLI's error says what AWS refused).
    Failed,
    /// Its image could not be pulled.
    ImagePullFailed,
    /// It did not finish in time.
    TimedOut,
    /// It could not be run or read (API error, shutting down).
    NotRun,
    /// It was not asked for.
    Skipped,
}

impl ProbeOutcome {
    /// Every outcome.
    pub const ALL: [ProbeOutcome; 6] = [
        ProbeOutcome::Succeeded,
        ProbeOutcome::Failed,
        ProbeOutcome::ImagePullFailed,
        ProbeOutcome::TimedOut,
        ProbeOutcome::NotRun,
        ProbeOutcome::Skipped,
    ];

    /// The outcome of a probe's observation.
    pub fn of(probe: &Fact<ProbeObservation>) -> ProbeOutcome {
        match probe {
            Fact::Known(o) => match &o.result {
                ProbeResult::Exited { code: 0, .. } => ProbeOutcome::Succeeded,
                ProbeResult::Exited { .. } => ProbeOutcome::Failed,
                ProbeResult::ImagePullFailed(_) => ProbeOutcome::ImagePullFailed,
                ProbeResult::TimedOut(_) => ProbeOutcome::TimedOut,
            },
            Fact::Unavailable(_) => ProbeOutcome::NotRun,
            Fact::Skipped(_) => ProbeOutcome::Skipped,
        }
    }

    /// `succeeded`, `failed`, `image_pull_failed`, `timed_out`, `not_run`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeOutcome::Succeeded => "succeeded",
            ProbeOutcome::Failed => "failed",
            ProbeOutcome::ImagePullFailed => "image_pull_failed",
            ProbeOutcome::TimedOut => "timed_out",
            ProbeOutcome::NotRun => "not_run",
            ProbeOutcome::Skipped => "skipped",
        }
    }
}

impl EncodeLabelValue for ProbeOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Labels of the probe metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// How the probe ended.
    pub outcome: ProbeOutcome,
}

/// `irsa_doctor_check_ready` series of one namespace at most: a namespace with more IrsaChecks
/// cannot grow the operator's (and Prometheus's) series without bound; the rest are counted in
/// `irsa_doctor_checks_without_series`.
pub const MAX_CHECK_SERIES_PER_NAMESPACE: usize = 200;

/// Labels naming a namespace.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    /// The namespace.
    pub namespace: String,
}

/// Which IrsaChecks have a series, and which do not.
#[derive(Default)]
struct CheckSeries {
    /// The labels of each check's series.
    labels: std::collections::HashMap<(String, String), CheckLabels>,
    /// Series per namespace.
    per_namespace: std::collections::HashMap<String, usize>,
    /// Checks without a series (their namespace had its share), by namespace.
    without: std::collections::HashMap<String, std::collections::HashSet<String>>,
}

/// Every metric the operator exposes.
pub struct Metrics {
    registry: Registry,
    check_ready: Family<CheckLabels, Gauge>,
    check_series: Mutex<CheckSeries>,
    checks_without_series: Family<NamespaceLabels, Gauge>,
    service_accounts: Family<VerdictLabels, Gauge>,
    reconciles: Family<KindLabels, Counter>,
    reconcile_errors: Family<KindLabels, Counter>,
    reconcile_duration: Family<KindLabels, Histogram>,
    probe_runs: Family<ProbeLabels, Counter>,
    probe_duration: Family<ProbeLabels, Histogram>,
    events_failed: Family<EventLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers every metric, including AWS call and cache counters read from `aws` at scrape time.
    pub fn new(aws: Arc<AwsFacts>) -> Metrics {
        let mut registry = Registry::default();
        let check_ready = Family::<CheckLabels, Gauge>::default();
        registry.register(
            "irsa_doctor_check_ready",
            "1 when the IrsaCheck is Ready, 0 otherwise, labelled with the Ready reason",
            check_ready.clone(),
        );
        let checks_without_series = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "irsa_doctor_checks_without_series",
            "IrsaChecks of a namespace without an irsa_doctor_check_ready series, the namespace \
             having the most it may have",
            checks_without_series.clone(),
        );
        let service_accounts = Family::<VerdictLabels, Gauge>::default();
        registry.register(
            "irsa_doctor_service_accounts",
            "IRSA ServiceAccounts by the verdict of their last diagnosis and its Ready reason",
            service_accounts.clone(),
        );
        let reconciles = Family::<KindLabels, Counter>::default();
        registry.register(
            "irsa_doctor_reconciles",
            "Diagnoses run",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "irsa_doctor_reconcile_errors",
            "Diagnoses that failed to complete (API errors writing results)",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register_with_unit(
            "irsa_doctor_reconcile_duration",
            "Time to gather facts, diagnose and write one result",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let probe_runs = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "irsa_doctor_probe_runs",
            "Probe pods run, by how they ended",
            probe_runs.clone(),
        );
        // From 0.5 s to about 17 minutes: a probe's timeout is at most 15 minutes.
        let probe_duration = Family::<ProbeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.5, 2.0, 12))
        });
        registry.register_with_unit(
            "irsa_doctor_probe_duration",
            "Time from asking for a probe to its outcome: waiting for a probe slot, the pod's \
             creation, run and log read",
            Unit::Seconds,
            probe_duration.clone(),
        );
        let events_failed = Family::<EventLabels, Counter>::default();
        registry.register(
            "irsa_doctor_events_failed",
            "Events that could not be published (the verdict is in the status all the same), by \
             the Event's reason",
            events_failed.clone(),
        );
        // Failures from the start, at 0, so that rates see the first one and a dashboard finds
        // the metric. (Diagnoses are not: a standby replica exports none.)
        for kind in [Kind::IrsaCheck, Kind::ServiceAccount] {
            drop(reconcile_errors.get_or_create(&KindLabels { kind }));
        }
        // Every outcome from the start, at 0: rates see the first probe, dashboards the metric.
        for outcome in ProbeOutcome::ALL {
            let labels = ProbeLabels { outcome };
            drop(probe_runs.get_or_create(&labels));
            drop(probe_duration.get_or_create(&labels));
        }
        registry.register_collector(Box::new(AwsCollector(aws)));
        Metrics {
            registry,
            check_ready,
            check_series: Mutex::new(CheckSeries::default()),
            checks_without_series,
            service_accounts,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            probe_runs,
            probe_duration,
            events_failed,
        }
    }

    /// Counts one probe run by its outcome, with its duration.
    // Called by the probe's caller (reconcile.rs), through `time_probe`.
    #[allow(dead_code)]
    pub fn probed(&self, probe: &Fact<ProbeObservation>, took: Duration) {
        let labels = ProbeLabels {
            outcome: ProbeOutcome::of(probe),
        };
        self.probe_runs.get_or_create(&labels).inc();
        self.probe_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Runs a probe (`ctx.prober().run(..)`) and records its outcome and duration.
    #[allow(dead_code)]
    pub async fn time_probe(
        &self,
        probe: impl std::future::Future<Output = Fact<ProbeObservation>>,
    ) -> Fact<ProbeObservation> {
        let started = std::time::Instant::now();
        let observed = probe.await;
        self.probed(&observed, started.elapsed());
        observed
    }

    /// Sets the ready gauge of one IrsaCheck, dropping its series for a previous reason; a
    /// check of a namespace that has [`MAX_CHECK_SERIES_PER_NAMESPACE`] series already gets none
    /// and is counted in `irsa_doctor_checks_without_series`.
    pub fn set_check(&self, namespace: &str, name: &str, ready: bool, reason: Reason) {
        let labels = CheckLabels {
            namespace: namespace.into(),
            name: name.into(),
            reason: ReasonLabel(reason),
        };
        let mut series = self.check_series.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        match series.labels.get(&key) {
            Some(old) if *old != labels => {
                self.check_ready.remove(old);
            }
            Some(_) => {}
            None => {
                let listed = series.per_namespace.get(namespace).copied().unwrap_or(0);
                if listed >= MAX_CHECK_SERIES_PER_NAMESPACE {
                    let without = series.without.entry(namespace.to_string()).or_default();
                    without.insert(name.to_string());
                    let count = i64::try_from(without.len()).unwrap_or(i64::MAX);
                    self.checks_without_series
                        .get_or_create(&NamespaceLabels {
                            namespace: namespace.into(),
                        })
                        .set(count);
                    return;
                }
                *series
                    .per_namespace
                    .entry(namespace.to_string())
                    .or_default() += 1;
                if let Some(without) = series.without.get_mut(namespace) {
                    if without.remove(name) {
                        let gauge = NamespaceLabels {
                            namespace: namespace.into(),
                        };
                        match without.len() {
                            0 => drop(self.checks_without_series.remove(&gauge)),
                            n => drop(
                                self.checks_without_series
                                    .get_or_create(&gauge)
                                    .set(i64::try_from(n).unwrap_or(i64::MAX)),
                            ),
                        }
                    }
                }
            }
        }
        series.labels.insert(key, labels.clone());
        self.check_ready
            .get_or_create(&labels)
            .set(i64::from(ready));
    }

    /// Forgets IrsaChecks that no longer exist.
    pub fn retain_checks(&self, live: &std::collections::HashSet<(String, String)>) {
        let mut series = self.check_series.lock().unwrap_or_else(|p| p.into_inner());
        let CheckSeries {
            labels,
            per_namespace,
            without,
        } = &mut *series;
        labels.retain(|key, labels| {
            let keep = live.contains(key);
            if !keep {
                self.check_ready.remove(labels);
                if let Some(n) = per_namespace.get_mut(&key.0) {
                    *n -= 1;
                    if *n == 0 {
                        per_namespace.remove(&key.0);
                    }
                }
            }
            keep
        });
        without.retain(|namespace, names| {
            names.retain(|name| live.contains(&(namespace.clone(), name.clone())));
            let labels = NamespaceLabels {
                namespace: namespace.clone(),
            };
            if names.is_empty() {
                self.checks_without_series.remove(&labels);
                return false;
            }
            self.checks_without_series
                .get_or_create(&labels)
                .set(i64::try_from(names.len()).unwrap_or(i64::MAX));
            true
        });
    }

    /// Replaces the verdict counts with those of a finished sweep.
    pub fn set_service_accounts(
        &self,
        counts: &std::collections::BTreeMap<(VerdictClass, Reason), i64>,
    ) {
        self.service_accounts.clear();
        for ((verdict, reason), n) in counts {
            self.service_accounts
                .get_or_create(&VerdictLabels {
                    verdict: *verdict,
                    reason: ReasonLabel(*reason),
                })
                .set(*n);
        }
    }

    /// Counts one diagnosis of `kind` and its duration.
    pub fn reconciled(&self, kind: Kind, took: Duration) {
        let labels = KindLabels { kind };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts one Event of `reason` that could not be published.
    pub fn event_failed(&self, reason: Reason) {
        self.events_failed
            .get_or_create(&EventLabels {
                reason: ReasonLabel(reason),
            })
            .inc();
    }

    /// Counts one failed diagnosis of `kind`.
    pub fn failed(&self, kind: Kind) {
        self.reconcile_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// AWS call and cache counters, read from [`AwsFacts`] at each scrape.
struct AwsCollector(Arc<AwsFacts>);

impl std::fmt::Debug for AwsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsCollector")
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    operation: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    kind: String,
    result: String,
}

impl prometheus_client::collector::Collector for AwsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let calls = self.0.call_stats().snapshot();
        let mut family = encoder.encode_descriptor(
            "irsa_doctor_aws_calls",
            "AWS API calls by service, operation and outcome",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for c in calls {
            let labels = CallLabels {
                service: c.service.into(),
                operation: c.operation.into(),
                outcome: c.outcome.as_str().into(),
            };
            ConstCounter::new(c.count).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "irsa_doctor_aws_cache_lookups",
            "Fact look-ups answered from the cache (hit) or by AWS (miss), by fact kind",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for s in self.0.cache_stats() {
            for (result, n) in [("hit", s.hits), ("miss", s.misses)] {
                let labels = CacheLabels {
                    kind: s.kind.into(),
                    result: result.into(),
                };
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        let waited = encoder.encode_descriptor(
            "irsa_doctor_aws_rate_limit_wait",
            "Time AWS calls spent waiting in the client-side limiter (fair queue, concurrency bound, rate limit), summed",
            Some(&Unit::Seconds),
            ConstCounter::new(0f64).metric_type(),
        )?;
        ConstCounter::new(self.0.rate_limit_wait_seconds()).encode(waited)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Metrics over AWS facts that are never asked (no credentials, no region).
    pub(crate) fn unconnected() -> Metrics {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let aws = AwsFacts::new(
            irsa_aws::Clients::new(&sdk),
            Default::default(),
            &irsa_aws::AwsFactsConfig::default(),
        );
        Metrics::new(Arc::new(aws))
    }
    use irsa_core::probe::Injection;
    use irsa_core::Unavailable;

    fn exited(code: i32) -> Fact<ProbeObservation> {
        Fact::Known(ProbeObservation {
            injection: Injection {
                role_arn: None,
                token_file: false,
                token_volume: false,
                ..Injection::default()
            },
            webhook_configured: None,
            result: ProbeResult::Exited {
                code,
                output: String::new(),
            },
        })
    }

    #[tokio::test]
    async fn probe_runs_are_counted_by_outcome_with_their_duration() {
        let m = unconnected();
        let text = m.encode();
        assert!(
            text.contains(r#"irsa_doctor_probe_runs_total{outcome="timed_out"} 0"#)
                && text
                    .contains(r#"irsa_doctor_probe_duration_seconds_count{outcome="timed_out"} 0"#),
            "every outcome at 0 before the first probe: {text}"
        );
        m.time_probe(async { exited(0) }).await;
        m.probed(&exited(254), Duration::from_secs(3));
        m.probed(
            &Fact::Unavailable(Unavailable {
                reason: Reason::ProbeNotRun,
                detail: "x".into(),
            }),
            Duration::from_millis(10),
        );
        let text = m.encode();
        for line in [
            r#"irsa_doctor_probe_runs_total{outcome="succeeded"} 1"#,
            r#"irsa_doctor_probe_runs_total{outcome="failed"} 1"#,
            r#"irsa_doctor_probe_runs_total{outcome="not_run"} 1"#,
            r#"irsa_doctor_probe_duration_seconds_count{outcome="failed"} 1"#,
            r#"irsa_doctor_probe_duration_seconds_bucket{le="4.0",outcome="failed"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn check_series_are_bounded_per_namespace() {
        let m = unconnected();
        let over = MAX_CHECK_SERIES_PER_NAMESPACE + 50;
        for i in 0..over {
            m.set_check("flood", &format!("c{i}"), true, Reason::AllChecksPassed);
        }
        m.set_check("calm", "one", false, Reason::RoleNotFound);
        let series = |text: &str, ns: &str| {
            text.lines()
                .filter(|l| l.starts_with("irsa_doctor_check_ready{"))
                .filter(|l| l.contains(&format!("namespace=\"{ns}\"")))
                .count()
        };
        let text = m.encode();
        assert_eq!(series(&text, "flood"), MAX_CHECK_SERIES_PER_NAMESPACE);
        assert_eq!(
            series(&text, "calm"),
            1,
            "another namespace keeps its series"
        );
        assert!(
            text.contains(r#"irsa_doctor_checks_without_series{namespace="flood"} 50"#),
            "{text}"
        );
        // Ten listed checks deleted: ten of the others get series when next diagnosed.
        let live: std::collections::HashSet<(String, String)> = (10..over)
            .map(|i| ("flood".to_string(), format!("c{i}")))
            .chain([("calm".to_string(), "one".to_string())])
            .collect();
        m.retain_checks(&live);
        for i in MAX_CHECK_SERIES_PER_NAMESPACE..over {
            m.set_check("flood", &format!("c{i}"), false, Reason::RoleNotFound);
        }
        let text = m.encode();
        assert_eq!(series(&text, "flood"), MAX_CHECK_SERIES_PER_NAMESPACE);
        assert!(
            text.contains(r#"irsa_doctor_checks_without_series{namespace="flood"} 40"#),
            "{text}"
        );
    }
}
