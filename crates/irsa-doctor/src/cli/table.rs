//! `check`'s kubectl-style table: one row per ServiceAccount, columns aligned as kubectl aligns
//! them (an elastic tabwriter, three spaces between columns), `-o wide` adding the pods and
//! workloads that run as each ServiceAccount, the Ready message and the fix.

use std::io::Write;

use irsa_core::{Report, Severity, Status};
use tabwriter::TabWriter;

/// What kubectl prints for an empty cell.
const NONE: &str = "<none>";

/// The longest MESSAGE cell, in characters: a row should stay readable on a wide terminal; the
/// whole message is in `-o json`/`-o yaml`.
pub const MESSAGE_WIDTH: usize = 100;

/// Which columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// NAMESPACE, SERVICEACCOUNT, ROLE, READY, REASON.
    Default,
    /// The default columns, then PODS and WORKLOADS (live pods of the ServiceAccount and the
    /// workloads they belong to; `?` when unknown), MESSAGE (first line of Ready's message) and
    /// FIX.
    Wide,
}

/// How many live pods run as a ServiceAccount, and of how many workloads; `None` when its
/// pods could not be listed.
pub type Usage = Option<(usize, usize)>;

/// The pods and distinct workloads of `pods`.
pub fn usage(pods: &irsa_core::pods::Pods) -> (usize, usize) {
    let workloads: std::collections::BTreeSet<String> = pods
        .listed()
        .iter()
        .map(|p| irsa_core::workloads::workload_of(p.owner.as_deref(), &p.labels, &p.name))
        .collect();
    (pods.len(), workloads.len())
}

/// The table, header included; `usage[i]` belongs to `reports[i]` (read for `-o wide`).
pub fn table(reports: &[Report], usage: &[Usage], columns: Columns) -> String {
    let mut tw = TabWriter::new(Vec::new()).padding(3);
    let mut header = vec!["NAMESPACE", "SERVICEACCOUNT", "ROLE", "READY", "REASON"];
    if columns == Columns::Wide {
        header.extend(["PODS", "WORKLOADS", "MESSAGE", "FIX"]);
    }
    let _ = writeln!(tw, "{}", header.join("\t"));
    for (i, report) in reports.iter().enumerate() {
        let ready = report.ready();
        let (namespace, name) = report
            .service_account
            .split_once('/')
            .unwrap_or(("", report.service_account.as_str()));
        let mut row = vec![
            cell(namespace),
            cell(name),
            cell(report.role_arn.as_deref().unwrap_or_default()),
            ready.status.as_str().to_string(),
            ready.reason.as_str().to_string(),
        ];
        if columns == Columns::Wide {
            let (pods, workloads) = match usage.get(i).copied().flatten() {
                Some((p, w)) => (p.to_string(), w.to_string()),
                None => ("?".to_string(), "?".to_string()),
            };
            row.extend([pods, workloads]);
            row.push(cell(&first_line(&ready.message, MESSAGE_WIDTH)));
            // A passing check has nothing to fix; Unknown and False name what to do.
            let fix = match ready.status {
                Status::True if ready.reason.severity() == Severity::Ok => "",
                _ => ready.reason.remediation(),
            };
            row.push(cell(fix));
        }
        let _ = writeln!(tw, "{}", row.join("\t"));
    }
    let _ = tw.flush();
    String::from_utf8_lossy(&tw.into_inner().unwrap_or_default()).into_owned()
}

/// A cell: `<none>` when empty; tabs and line breaks, which would break the columns, as spaces.
fn cell(text: &str) -> String {
    if text.trim().is_empty() {
        return NONE.to_string();
    }
    text.replace(['\t', '\n', '\r'], " ")
}

/// The first line of `text`, cut at a word boundary to at most `max` characters with `...`.
pub fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default().trim_end();
    if line.chars().count() <= max {
        return line.to_string();
    }
    let keep = max.saturating_sub(3);
    let cut = line.char_indices().nth(keep).map_or(line.len(), |(i, _)| i);
    let head = &line[..cut];
    // Prefer ending on a word boundary, unless that would throw most of the room away.
    let head = match head.rfind(' ') {
        Some(space) if space >= keep / 2 => &head[..space],
        _ => head,
    };
    format!("{}...", head.trim_end_matches([' ', ',', ';', ':']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_cuts_long_messages_at_a_word() {
        assert_eq!(first_line("short\nsecond line", 20), "short");
        let cut = first_line("the trust policy admits system:serviceaccount:a:b only", 30);
        assert_eq!(cut, "the trust policy admits...");
        assert!(cut.chars().count() <= 30);
        let word = first_line(&"x".repeat(50), 20);
        assert_eq!(word, format!("{}...", "x".repeat(17)));
    }

    #[test]
    fn empty_cells_read_none_and_tabs_do_not_split_columns() {
        assert_eq!(cell(""), NONE);
        assert_eq!(cell("a\tb\nc"), "a b c");
    }
}
