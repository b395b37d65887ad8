//! Runs every case of the trust-evaluation corpus (`tests/corpus/*.yaml`) through `diagnose`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use irsa_core::manifest::service_accounts;
use irsa_core::{
    diagnose, Facts, Issuer, OidcProvider, OidcProviderArn, Reason, RoleArn, Severity,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    description: String,
    issuer: String,
    oidc_providers: Option<Vec<ProviderEntry>>,
    service_account: Value,
    #[serde(default)]
    roles: BTreeMap<String, Value>,
    expected_role_arn: Option<String>,
    expect: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ProviderEntry {
    Arn(String),
    #[serde(rename_all = "camelCase")]
    WithClientIds {
        arn: String,
        client_ids: Vec<String>,
    },
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

/// A role's policy as written in a case: a string is the document's text, an object is JSON.
fn policy_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn every_corpus_case_yields_exactly_its_expected_reasons() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 40,
        "the corpus has only {} cases",
        paths.len()
    );
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        let case: Case =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let sa = service_accounts(&case.service_account, &path.display().to_string())
            .unwrap()
            .pop()
            .unwrap_or_else(|| {
                panic!("{}: serviceAccount is not a ServiceAccount", path.display())
            });
        let providers = case.oidc_providers.map(|entries| {
            entries
                .into_iter()
                .map(|e| match e {
                    ProviderEntry::Arn(arn) => (arn, None),
                    ProviderEntry::WithClientIds { arn, client_ids } => (arn, Some(client_ids)),
                })
                .map(|(arn, client_ids)| OidcProvider {
                    arn: OidcProviderArn::parse(&arn).unwrap(),
                    client_ids,
                })
                .collect()
        });
        let roles: BTreeMap<RoleArn, String> = case
            .roles
            .iter()
            .map(|(arn, policy)| (RoleArn::parse(arn).unwrap(), policy_text(policy)))
            .collect();
        let mut facts =
            Facts::offline(sa, Issuer::parse(&case.issuer).unwrap(), providers, |arn| {
                roles.get(arn).cloned()
            });
        facts.expected_role_arn = case.expected_role_arn;
        let report = diagnose(&facts);
        let found: BTreeSet<String> = report
            .reasons_at_least(Severity::Warning)
            .into_iter()
            .map(|r| r.to_string())
            .collect();
        let expected: BTreeSet<String> = case.expect.iter().cloned().collect();
        for name in &expected {
            assert!(
                Reason::from_name(name).is_some(),
                "{}: unknown reason {name}",
                path.display()
            );
        }
        covered.extend(found.iter().cloned());
        if found != expected {
            let messages: Vec<String> = report
                .findings
                .iter()
                .map(|f| format!("{}: {}", f.reason, f.message))
                .collect();
            failures.push(format!(
                "{}\n  expected {expected:?}\n  found    {found:?}\n  {}",
                path.file_name().unwrap().to_string_lossy(),
                messages.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every reason the offline diagnosis can produce is exercised by some case.
    for reason in Reason::ALL {
        let offline = !matches!(
            reason.condition(),
            Some(
                irsa_core::ConditionType::PermissionsValid
                    | irsa_core::ConditionType::ProbeSucceeded
                    | irsa_core::ConditionType::WorkloadsValid
            )
        ) && reason.severity() >= Severity::Warning
            && !matches!(
                reason,
                Reason::ServiceAccountNotFound
                    | Reason::RoleNotFound
                    | Reason::ClusterIssuerUnknown
                    | Reason::AwsApiUnavailable
                    | Reason::AwsAccessDenied
                    | Reason::NotEvaluated
            );
        assert!(
            !offline || covered.contains(reason.as_str()),
            "no corpus case covers {reason}"
        );
    }
}
