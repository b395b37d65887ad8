//! Printing reports: text for people, JSON and YAML for tools, the exit status both share.
//! `check`'s table is in [`super::table`], SARIF and GitHub annotations in [`super::sarif`].

use std::fmt::Write;

use std::process::ExitCode;

use clap::ValueEnum;
use irsa_core::{Report, Severity, Status};
use serde_json::{json, Value};

/// How `lint` prints its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Grouped per ServiceAccount, for people.
    Text,
    /// One JSON object, for tools.
    Json,
    /// SARIF 2.1.0, for code scanning (GitHub, GitLab, Azure DevOps), with file and line.
    Sarif,
    /// GitHub Actions workflow commands: an annotation on the manifest's line per finding.
    Github,
}

/// Writes `text` to standard output. A reader that went away (`| head`) is not an error: what
/// it wanted it has; `print!` would panic instead.
pub fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The exit status: 0 without error findings, 1 with.
pub fn exit_code(reports: &[Report]) -> ExitCode {
    ExitCode::from(u8::from(reports.iter().any(Report::has_errors)))
}

/// Findings grouped per ServiceAccount, with the fix under each, then a summary line.
pub fn text(reports: &[Report]) -> String {
    let mut out = String::new();
    for report in reports {
        let ready = report.ready();
        let role = report.role_arn.as_deref().unwrap_or("(no role)");
        let verdict = match ready.status {
            Status::True => "OK",
            Status::False => "FAIL",
            Status::Unknown => "UNKNOWN",
        };
        let _ = writeln!(out, "{}  {verdict}  role {role}", report.service_account);
        for f in &report.findings {
            let _ = writeln!(out, "  {:<8} {}", f.severity.as_str(), f.reason);
            let _ = writeln!(out, "           {}", f.message);
            if f.severity >= Severity::Warning {
                let _ = writeln!(out, "           fix: {}", f.fix);
            }
        }
        out.push('\n');
    }
    let count = |sev: Severity| {
        reports
            .iter()
            .flat_map(|r| &r.findings)
            .filter(|f| f.severity == sev)
            .count()
    };
    let failing = reports.iter().filter(|r| r.has_errors()).count();
    let _ = writeln!(
        out,
        "{} ServiceAccount(s) checked, {failing} failing: {} error(s), {} warning(s), {} unknown",
        reports.len(),
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Unknown)
    );
    out
}

/// `{"findings": [...], "serviceAccounts": [...]}`: what `--format json` and `-o json` print.
pub fn value(reports: &[Report]) -> Value {
    let findings: Vec<_> = reports
        .iter()
        .flat_map(|r| {
            r.findings.iter().map(move |f| {
                json!({
                    "serviceAccount": r.service_account,
                    "roleArn": r.role_arn,
                    "reason": f.reason,
                    "severity": f.severity,
                    "condition": f.condition,
                    "message": f.message,
                    "fix": f.fix,
                })
            })
        })
        .collect();
    let service_accounts: Vec<_> = reports
        .iter()
        .map(|r| {
            json!({
                "serviceAccount": r.service_account,
                "roleArn": r.role_arn,
                "ready": r.ready().status,
                "reason": r.ready().reason,
                "conditions": r.conditions,
            })
        })
        .collect();
    json!({"findings": findings, "serviceAccounts": service_accounts})
}

/// [`value`] as pretty-printed JSON.
pub fn json(reports: &[Report]) -> String {
    serde_json::to_string_pretty(&value(reports)).expect("JSON values always serialise")
}

/// AWS calls made, by `service:Operation`, whatever their outcome.
pub fn aws_calls(aws: &irsa_aws::AwsFacts) -> std::collections::BTreeMap<String, u64> {
    let mut calls = std::collections::BTreeMap::new();
    for c in aws.call_stats().snapshot() {
        *calls
            .entry(format!("{}:{}", c.service, c.operation))
            .or_default() += c.count;
    }
    calls
}

/// [`value`] with the AWS calls the run made (`awsCalls`, by `service:Operation`, and
/// `awsCallsTotal`), for `check`: what a run cost is part of its answer.
pub fn value_with_calls(
    reports: &[Report],
    calls: &std::collections::BTreeMap<String, u64>,
) -> Value {
    let mut v = value(reports);
    v["awsCalls"] = json!(calls);
    v["awsCallsTotal"] = json!(calls.values().sum::<u64>());
    v
}

/// [`value`] as YAML: the same data as [`json`].
pub fn yaml(reports: &[Report]) -> String {
    serde_yaml_ng::to_string(&value(reports)).expect("JSON values always serialise as YAML")
}
