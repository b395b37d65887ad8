//! Printing reports: text for people, JSON for tools.

use std::fmt::Write;

use std::process::ExitCode;

use clap::ValueEnum;
use irsa_core::{Report, Severity, Status};
use serde_json::json;

/// How findings are printed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Grouped per ServiceAccount, for people.
    Text,
    /// One JSON object, for tools.
    Json,
}

/// Prints `reports` and returns the exit status: 0 without error findings, 1 with.
pub fn print(reports: &[Report], format: Format) -> ExitCode {
    match format {
        Format::Text => print!("{}", text(reports)),
        Format::Json => println!("{}", json(reports)),
    }
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

/// `{"findings": [...], "serviceAccounts": [...]}`.
pub fn json(reports: &[Report]) -> String {
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
    serde_json::to_string_pretty(
        &json!({"findings": findings, "serviceAccounts": service_accounts}),
    )
    .expect("JSON values always serialise")
}
