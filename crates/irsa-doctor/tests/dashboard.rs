//! The chart's Grafana dashboard (`charts/irsa-doctor/dashboards/irsa-doctor.json`) queries only
//! what the operator exports: every metric named in every panel's `expr`, and every label its
//! selectors match on, is checked against the `/metrics` of the real operator after a sweep on
//! the real control plane.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::*;
use irsa_aws::Clients;
use serde_json::Value;

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../charts/irsa-doctor/dashboards/irsa-doctor.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .expect("the dashboard is valid JSON")
}

/// Every `expr` of every panel, rows' nested panels included: (panel title, expr).
fn exprs(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_string()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// PromQL outside its string literals (label values may contain anything).
fn without_strings(expr: &str) -> String {
    let mut out = String::new();
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push('"');
                }
            }
            None if c == '"' || c == '\'' || c == '`' => {
                quote = Some(c);
                out.push('"');
            }
            None => out.push(c),
        }
    }
    out
}

/// The metric selectors of an expression: (metric, label names it matches on).
fn selectors(expr: &str) -> Vec<(String, BTreeSet<String>)> {
    let code = without_strings(expr);
    let bytes: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_' || bytes[i] == ':')
            {
                i += 1;
            }
            let name: String = bytes[start..i].iter().collect();
            if !name.starts_with("irsa_doctor_") {
                continue;
            }
            let mut labels = BTreeSet::new();
            if bytes.get(i) == Some(&'{') {
                let end = bytes[i..].iter().position(|c| *c == '}').unwrap() + i;
                let inside: String = bytes[i + 1..end].iter().collect();
                for matcher in inside.split(',').filter(|m| !m.trim().is_empty()) {
                    let label = matcher.split(['=', '!']).next().unwrap().trim();
                    labels.insert(label.to_string());
                }
                i = end;
            }
            found.push((name, labels));
        } else {
            i += 1;
        }
    }
    found
}

/// Metric names a scrape exports, each with the label names its samples carry. A family
/// declared without samples yet (no probe has run) exports its names too.
fn exported(scrape: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for s in suffixes {
                names.entry(format!("{name}{s}")).or_default();
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = names.entry(line[..end].to_string()).or_default();
            if let Some(inside) = line[end..]
                .strip_prefix('{')
                .and_then(|l| l.split_once('}'))
            {
                for pair in inside.0.split("\",") {
                    if let Some((label, _)) = pair.split_once('=') {
                        labels.insert(label.trim_matches(',').to_string());
                    }
                }
            }
        }
    }
    names
}

#[test]
fn selectors_are_read_outside_string_literals() {
    assert_eq!(
        selectors(
            r#"sum by (kind) (rate(irsa_doctor_aws_cache_lookups_total{result="hit,irsa_doctor_x{"}[5m])) / irsa_doctor_up"#
        ),
        [
            (
                "irsa_doctor_aws_cache_lookups_total".to_string(),
                BTreeSet::from(["result".to_string()])
            ),
            ("irsa_doctor_up".to_string(), BTreeSet::new()),
        ]
    );
    let scrape = "# TYPE irsa_doctor_probe_runs counter\n# TYPE irsa_doctor_d_seconds histogram\nirsa_doctor_g{verdict=\"ok\",reason=\"A\"} 1\n";
    let e = exported(scrape);
    assert!(e.contains_key("irsa_doctor_probe_runs_total"));
    assert!(e.contains_key("irsa_doctor_d_seconds_bucket"));
    assert_eq!(
        e["irsa_doctor_g"],
        BTreeSet::from(["verdict".to_string(), "reason".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_uses_what_the_operator_exports() {
    let dashboard = dashboard();
    let exprs = exprs(&dashboard);
    assert!(exprs.len() >= 10, "{exprs:?}");

    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    setup(&cluster, &admin).await;
    create_check(&cluster.client(), "bad", "exporter").await;
    let op = start_operator(&cluster, &aws.url, &["--leader-election", "false"]);
    let scrape = eventually(
        "metrics after a sweep and a check",
        Duration::from_secs(45),
        async || {
            get(&op.metrics, "/metrics")
                .await
                .map(|(_, b)| b)
                .filter(|b| {
                    b.contains("irsa_doctor_service_accounts{")
                        && b.contains("irsa_doctor_check_ready{")
                })
        },
    )
    .await;
    let exported = exported(&scrape);
    let mut problems = Vec::new();
    for (title, expr) in &exprs {
        let used = selectors(expr);
        if used.is_empty() {
            problems.push(format!("{title}: no irsa_doctor_ metric in {expr}"));
        }
        for (metric, labels) in used {
            match exported.get(&metric) {
                None => problems.push(format!("{title}: {metric} is not exported")),
                // Labels are checked where the scrape has samples to read them from.
                Some(have) if !have.is_empty() => {
                    for label in labels.difference(have) {
                        problems.push(format!("{title}: {metric} has no label {label}"));
                    }
                }
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}\n\nscrape:\n{scrape}");
    let metrics: BTreeSet<String> = exprs
        .iter()
        .flat_map(|(_, e)| selectors(e).into_iter().map(|(m, _)| m))
        .collect();
    eprintln!(
        "the dashboard queries {} metrics, all exported: {metrics:?}",
        metrics.len()
    );
    assert_rbac_covers(&cluster);
}
