//! `lint --format sarif` (SARIF 2.1.0, for code scanning) and `lint --format github` (GitHub
//! Actions workflow commands): each finding on the manifest line of its ServiceAccount.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path};

use irsa_core::{Finding, Reason, Report, Severity};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::{json, Value};

use super::explain;
use super::inputs::SourceLocation;

/// The schema the log declares: OASIS's SARIF 2.1.0 (errata 01), the one the tests validate
/// against.
pub const SCHEMA_URI: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// The findings worth a result or an annotation: warnings, unknowns and errors; success and
/// info notes are not problems in a file.
fn reported(finding: &Finding) -> bool {
    finding.severity >= Severity::Warning
}

/// SARIF's `level` for a severity.
pub(crate) fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Unknown | Severity::Info | Severity::Ok => "note",
    }
}

/// The SARIF log of `reports`; `locations[i]` is where the ServiceAccount of `reports[i]` was read.
pub fn log(reports: &[Report], locations: &[SourceLocation]) -> Value {
    let findings: Vec<(&Report, &SourceLocation, &Finding)> = reports
        .iter()
        .zip(locations)
        .flat_map(|(r, l)| {
            r.findings
                .iter()
                .filter(|f| reported(f))
                .map(move |f| (r, l, f))
        })
        .collect();
    // One rule per reason that has a result, in catalogue order; results point at them by index.
    let reasons: BTreeMap<Reason, usize> = {
        let mut seen: Vec<Reason> = findings.iter().map(|(_, _, f)| f.reason).collect();
        seen.sort();
        seen.dedup();
        seen.into_iter().enumerate().map(|(i, r)| (r, i)).collect()
    };
    let rules: Vec<Value> = reasons.keys().map(|r| rule(*r)).collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|(report, location, finding)| {
            let mut physical = json!({"artifactLocation": {"uri": file_uri(&location.path)}});
            if let Some(line) = location.line {
                physical["region"] = json!({"startLine": line});
            }
            json!({
                "ruleId": finding.reason,
                "ruleIndex": reasons[&finding.reason],
                "level": level(finding.severity),
                "message": {"text": format!("{}: {}", report.service_account, finding.message)},
                "locations": [{"physicalLocation": physical}],
                "properties": {
                    "serviceAccount": report.service_account,
                    "roleArn": report.role_arn,
                    "condition": finding.condition,
                    "severity": finding.severity,
                },
            })
        })
        .collect();
    json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "irsa-doctor",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": env!("CARGO_PKG_REPOSITORY"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// A reason as a SARIF rule: the guide's summary, the catalogue's fix, the guide's entry online.
pub(crate) fn rule(reason: Reason) -> Value {
    let summary = explain::summary(reason).unwrap_or_else(|| reason.as_str().to_string());
    json!({
        "id": reason,
        "name": reason,
        "shortDescription": {"text": summary},
        "help": {"text": reason.remediation()},
        "helpUri": explain::help_uri(reason),
        "defaultConfiguration": {"level": level(reason.severity())},
    })
}

/// Characters a URI path segment cannot carry as they are (RFC 3986 `pchar` and `/` stay).
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A file as a URI reference: a relative path stays relative (code scanning resolves it against
/// the repository's root), with `/` separators and anything else a URI cannot hold escaped; an
/// absolute path becomes a `file://` URI.
pub fn file_uri(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => {
                Some(utf8_percent_encode(&s.to_string_lossy(), PATH).to_string())
            }
            Component::ParentDir => Some("..".to_string()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    let joined = parts.join("/");
    if path.is_absolute() {
        format!("file:///{joined}")
    } else {
        // A first segment with a colon would read as a URI scheme.
        match parts.first() {
            Some(first) if first.contains(':') => format!("./{joined}"),
            _ => joined,
        }
    }
}

/// GitHub Actions workflow commands, one per finding worth an annotation:
/// `::error file=F,line=N,title=REASON::message` (`::warning`, `::notice` for unknown).
pub fn github(reports: &[Report], locations: &[SourceLocation]) -> String {
    let mut out = String::new();
    for (report, location) in reports.iter().zip(locations) {
        for finding in report.findings.iter().filter(|f| reported(f)) {
            let command = match finding.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                _ => "notice",
            };
            let mut properties = format!("file={}", property(&location.path.to_string_lossy()));
            if let Some(line) = location.line {
                let _ = write!(properties, ",line={line}");
            }
            let _ = write!(properties, ",title={}", property(finding.reason.as_str()));
            let message = format!(
                "{}: {}\nFix: {}",
                report.service_account, finding.message, finding.fix
            );
            let _ = writeln!(out, "::{command} {properties}::{}", data(&message));
        }
    }
    out
}

/// A workflow command's message, escaped as the runner unescapes it.
fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: also `:` and `,`, which delimit properties.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_are_relative_references_or_file_uris() {
        assert_eq!(file_uri(Path::new("deploy/sa.yaml")), "deploy/sa.yaml");
        assert_eq!(
            file_uri(Path::new("./deploy/my sa.yaml")),
            "deploy/my%20sa.yaml"
        );
        assert_eq!(file_uri(Path::new("../x/#1.yaml")), "../x/%231.yaml");
        assert_eq!(file_uri(Path::new("/abs/sa.yaml")), "file:///abs/sa.yaml");
        assert_eq!(file_uri(Path::new("c:sa.yaml")), "./c:sa.yaml");
    }

    #[test]
    fn workflow_command_values_are_escaped() {
        assert_eq!(data("50%\nnext"), "50%25%0Anext");
        assert_eq!(property("a:b,c"), "a%3Ab%2Cc");
    }
}
