//! The chart's alert rules, checked by the real Prometheus tool: `helm template --set
//! prometheusRule.enabled=true` renders the PrometheusRule, its `spec` becomes a rules file,
//! `promtool check rules` validates it and `promtool test rules` runs the unit tests in
//! `tests/alerts/` (a failing check alerts after its `for:`, Unknown never pages, a recovered
//! check resolves), then generated ones: every catalogue reason that makes Ready False pages,
//! and no reason that makes it Unknown ever does. promtool is built by `make tools`.

use std::path::{Path, PathBuf};
use std::process::Command;

use irsa_core::{Reason, Severity};
use serde::Deserialize;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// promtool from PATH, else from `.tools/bin`; `None` (the test is skipped) outside CI only.
fn promtool() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("promtool"),
        repo().join(".tools/bin/promtool"),
    ];
    let found = candidates
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing: `make tools` builds it into .tools/bin"
        );
        eprintln!("SKIPPED: promtool is not on PATH (make tools builds it)");
    }
    found
}

/// The rendered PrometheusRule's `spec`: what Prometheus loads as a rules file.
fn rendered_rules() -> Value {
    let out = Command::new("helm")
        .args(["template", "irsa-doctor", "charts/irsa-doctor"])
        .args(["--namespace", "irsa-doctor"])
        .args(["--set", "prometheusRule.enabled=true"])
        .current_dir(repo())
        .output()
        .expect("helm is on PATH (make tools installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rule = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule with prometheusRule.enabled=true");
    rule["spec"].clone()
}

fn promtool_run(promtool: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// Every Ready reason of the catalogue: (reason, whether it pages).
fn ready_reasons() -> Vec<(Reason, bool)> {
    Reason::ALL
        .iter()
        .filter_map(|r| match r.severity() {
            Severity::Error => Some((*r, true)),
            Severity::Unknown => Some((*r, false)),
            _ => None,
        })
        .collect()
}

/// A test that fails one IrsaCheck per Ready reason for 30 minutes: exactly those whose Ready is
/// False alert. Run against `rules` stripped of annotations, so only labels are compared.
fn every_reason_test() -> Value {
    let reasons = ready_reasons();
    let series: Vec<Value> = reasons
        .iter()
        .map(|(r, _)| {
            json!({
                "series": format!(
                    "irsa_doctor_check_ready{{namespace=\"catalogue\",name=\"{}\",reason=\"{r}\"}}",
                    r.as_str().to_lowercase()
                ),
                "values": "0x30",
            })
        })
        .collect();
    let firing: Vec<Value> = reasons
        .iter()
        .filter(|(_, pages)| *pages)
        .map(|(r, _)| {
            json!({"exp_labels": {
                "severity": "warning",
                "namespace": "catalogue",
                "name": r.as_str().to_lowercase(),
                "reason": r.as_str(),
            }})
        })
        .collect();
    json!({
        "rule_files": ["rules-without-annotations.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "name": "every Ready=False reason pages, no Unknown reason does",
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "IrsaCheckFailing", "exp_alerts": firing},
            ],
        }],
    })
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    if Command::new("helm").arg("version").output().is_err() {
        eprintln!("SKIPPED: helm is not on PATH (make tools installs it)");
        return;
    }
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = rendered_rules();
    let alerts: Vec<&str> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(
        alerts,
        [
            "IrsaCheckFailing",
            "IrsaServiceAccountsMisconfigured",
            "IrsaDoctorAwsUnavailable",
            "IrsaDoctorDown"
        ]
    );
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml_ng::to_string(&rules).unwrap(),
    )
    .unwrap();
    let checked = promtool_run(&promtool, dir.path(), &["check", "rules", "rules.yaml"]);
    assert!(checked.contains("SUCCESS: 4 rules found"), "{checked}");

    std::fs::copy(
        repo().join("tests/alerts/irsa-doctor.test.yaml"),
        dir.path().join("irsa-doctor.test.yaml"),
    )
    .unwrap();
    let tested = promtool_run(
        &promtool,
        dir.path(),
        &["test", "rules", "irsa-doctor.test.yaml"],
    );
    assert!(tested.contains("SUCCESS"), "{tested}");

    let mut bare = rules.clone();
    for group in bare["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            rule.as_object_mut().unwrap().remove("annotations");
        }
    }
    std::fs::write(
        dir.path().join("rules-without-annotations.yaml"),
        serde_yaml_ng::to_string(&bare).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("catalogue.test.yaml"),
        serde_yaml_ng::to_string(&every_reason_test()).unwrap(),
    )
    .unwrap();
    let tested = promtool_run(
        &promtool,
        dir.path(),
        &["test", "rules", "catalogue.test.yaml"],
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
    let (paging, silent): (Vec<_>, Vec<_>) = ready_reasons().into_iter().partition(|(_, p)| *p);
    eprintln!(
        "promtool: {} Ready=False reasons page, {} Unknown reasons never do",
        paging.len(),
        silent.len()
    );
    assert!(silent.iter().any(|(r, _)| *r == Reason::AwsApiUnavailable));
}
