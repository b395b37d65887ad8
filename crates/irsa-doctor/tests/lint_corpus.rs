//! Runs every corpus case through the real `irsa-doctor lint` binary, from files, as CI would.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use test_support::corpus as case;

#[test]
fn lint_binary_reports_each_corpus_case_exactly() {
    let cases = case::load_all();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, (path, case)) in cases.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy();
        // Written as JSON (which is YAML): a YAML writer leaves `yes` unquoted, which kubectl
        // (YAML 1.1) and lint read as a boolean.
        let sa_file = dir.path().join(format!("{i}-sa.yaml"));
        std::fs::write(
            &sa_file,
            serde_json::to_string_pretty(&case.service_account).unwrap(),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
        cmd.args([
            "lint",
            "--format",
            "json",
            "--issuer",
            &case.issuer,
            "--service-account",
        ])
        .arg(&sa_file);
        for (j, (arn, policy)) in case.roles.iter().enumerate() {
            let file = dir.path().join(format!("{i}-role-{j}.json"));
            std::fs::write(&file, case::policy_text(policy)).unwrap();
            cmd.arg("--role").arg(format!("{arn}={}", file.display()));
        }
        for p in case.oidc_providers.iter().flatten() {
            let spec = match p.client_ids() {
                Some(ids) => format!("{}={}", p.arn(), ids.join(",")),
                None => p.arn().to_string(),
            };
            cmd.args(["--oidc-provider", &spec]);
        }
        if let Some(docs) = &case.pod_identity_associations {
            let file = dir.path().join(format!("{i}-associations.json"));
            std::fs::write(&file, serde_json::Value::Array(docs.clone()).to_string()).unwrap();
            cmd.arg("--pod-identity-association").arg(&file);
        }
        if let Some(docs) = &case.workloads {
            let file = dir.path().join(format!("{i}-workloads.yaml"));
            let text: Vec<String> = docs
                .iter()
                .map(|d| serde_json::to_string_pretty(d).unwrap() + "\n")
                .collect();
            std::fs::write(&file, text.join("---\n")).unwrap();
            cmd.arg("--workload").arg(&file);
        }
        if let Some(expected) = &case.expected_role_arn {
            cmd.args(["--expected-role-arn", expected]);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json: Value = match serde_json::from_str(&stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!(
                    "{name}: not JSON ({e}); stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
        };
        let found: BTreeSet<String> = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                matches!(
                    f["severity"].as_str(),
                    Some("error" | "warning" | "unknown")
                )
            })
            .map(|f| f["reason"].as_str().unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = case.expect.iter().cloned().collect();
        let has_error = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["severity"] == "error");
        let code = out.status.code();
        if found != expected || code != Some(i32::from(has_error)) {
            failures.push(format!(
                "{name}: expected {expected:?}, found {found:?}, exit {code:?}"
            ));
        }
        // The case's ServiceAccount, unless it neither asks for IRSA nor has an association, and
        // one more per association naming a ServiceAccount the namespace does not have.
        let sa = &case.service_account["metadata"];
        let associations: Vec<&Value> = case
            .pod_identity_associations
            .iter()
            .flatten()
            .map(|a| a.get("association").unwrap_or(a))
            .collect();
        let wants_irsa = irsa_core::manifest::service_accounts(&case.service_account, &name)
            .unwrap()
            .iter()
            .any(irsa_core::ServiceAccount::wants_irsa);
        let own = wants_irsa
            || associations
                .iter()
                .any(|a| a["namespace"] == sa["namespace"] && a["serviceAccount"] == sa["name"]);
        let orphans = associations
            .iter()
            .filter(|a| a["namespace"] == sa["namespace"] && a["serviceAccount"] != sa["name"])
            .count();
        assert_eq!(
            json["serviceAccounts"].as_array().map(Vec::len),
            Some(usize::from(own) + orphans),
            "{name}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
