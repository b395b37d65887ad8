//! `irsa-doctor lint` as a user runs it: the bundled examples, output formats, exit statuses and
//! the messages for unusable input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const PROVIDER: &str =
    "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_irsa-doctor"))
        .current_dir(repo())
        .arg("lint")
        .args(args)
        .output()
        .unwrap()
}

fn examples_args(format: &'static str) -> Vec<String> {
    [
        "--issuer",
        ISSUER,
        "--oidc-provider",
        &format!("{PROVIDER}=sts.amazonaws.com"),
        "--service-account",
        "examples/serviceaccounts.yaml",
        "--role",
        "examples/roles/s3-reader.json",
        "--role",
        "examples/roles/ledger-writer.json",
        "--role",
        "examples/roles/payment-gateway.json",
        "--role",
        "arn:aws:iam::111122223333:role/ml-training=examples/roles/ml-training.trust-policy.json",
        "--role",
        "arn:aws:iam::111122223333:role/ml-batch-inference=examples/roles/ml-batch-inference.urlencoded.txt",
        "--format",
        format,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn examples_give_the_documented_verdicts() {
    let args = examples_args("json");
    let out = lint(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdict = |sa: &str| -> Vec<String> {
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["serviceAccount"] == sa && f["severity"] != "info")
            .map(|f| f["reason"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(verdict("reports/s3-reader").is_empty());
    assert!(verdict("payments/ledger-writer").is_empty());
    assert_eq!(
        verdict("reports/report-exporter"),
        ["RoleArnAnnotationKeyMisspelled"]
    );
    assert_eq!(
        verdict("payments/payments-api"),
        ["TrustPolicySubjectMismatch"]
    );
    assert_eq!(
        verdict("ml/training-runner"),
        ["TrustPolicyWildcardWithoutLike"]
    );
    assert_eq!(verdict("ml/notebook"), ["RoleArnMalformed"]);
    assert_eq!(
        verdict("ml/batch-inference"),
        ["TrustPolicySubjectTooBroad"]
    );
    // The Deployment in the file is skipped; the List's ServiceAccount is read.
    assert_eq!(json["serviceAccounts"].as_array().unwrap().len(), 7);
    let finding = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "TrustPolicySubjectMismatch")
        .unwrap();
    assert_eq!(
        finding["roleArn"],
        "arn:aws:iam::111122223333:role/payment-gateway"
    );
    assert_eq!(finding["severity"], "error");
    let message = finding["message"].as_str().unwrap();
    assert!(
        message.contains("system:serviceaccount:payments:payment-gateway"),
        "{message}"
    );
    assert!(
        message.contains("system:serviceaccount:payments:payments-api"),
        "{message}"
    );
}

#[test]
fn text_output_groups_findings_per_service_account_with_the_fix() {
    let args = examples_args("text");
    let out = lint(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("reports/s3-reader  OK"), "{text}");
    assert!(text.contains("payments/payments-api  FAIL"), "{text}");
    assert!(text.contains("fix: Use StringLike"), "{text}");
    assert!(
        text.contains("7 ServiceAccount(s) checked, 4 failing"),
        "{text}"
    );
}

#[test]
fn healthy_input_exits_zero_and_trust_policy_short_form_works() {
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("sa.yaml");
    std::fs::write(
        &sa,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: s3-reader\n  namespace: reports\n  annotations:\n    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/s3-reader\n",
    )
    .unwrap();
    let out = lint(&[
        "--issuer",
        ISSUER,
        "--service-account",
        sa.to_str().unwrap(),
        "--trust-policy",
        "examples/roles/s3-reader.json",
        "--oidc-provider",
        PROVIDER,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reports/s3-reader  OK"));
}

#[test]
fn missing_inputs_are_said_as_skipped_checks() {
    let out = lint(&[
        "--issuer",
        ISSUER,
        "--service-account",
        "examples/serviceaccounts.yaml",
        "--format",
        "json",
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["serviceAccount"] == "reports/s3-reader")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        skipped.iter().any(|m| m.contains("--oidc-provider")),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|m| m.contains("--role arn:aws:iam::111122223333:role/s3-reader=FILE")),
        "{skipped:?}"
    );
}

#[test]
fn unusable_input_exits_two_naming_the_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad_yaml = dir.path().join("bad.yaml");
    std::fs::write(&bad_yaml, "kind: ServiceAccount\nmetadata: [unclosed\n").unwrap();
    let nameless = dir.path().join("nameless.yaml");
    std::fs::write(
        &nameless,
        "---\nkind: ServiceAccount\nmetadata:\n  namespace: x\n",
    )
    .unwrap();
    let numeric = dir.path().join("numeric.yaml");
    std::fs::write(
        &numeric,
        "kind: ServiceAccount\nmetadata:\n  name: a\n  annotations:\n    eks.amazonaws.com/token-expiration: 86400\n",
    )
    .unwrap();
    let bare = dir.path().join("bare.json");
    std::fs::write(&bare, r#"{"Version":"2012-10-17","Statement":[]}"#).unwrap();
    // Workloads: env as a map, a key given twice, a misspelled field the audit reads, nesting
    // past the bound, and an association of the wrong shape.
    let workload = |name: &str, container: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: reports\nspec:\n  selector: {{matchLabels: {{app: api}}}}\n  template:\n    spec:\n      serviceAccountName: s3-reader\n      containers:\n      - name: app\n{container}"),
        )
        .unwrap();
        path
    };
    let env_map = workload("env-map.yaml", "        env:\n          AWS_PROFILE: x\n");
    let twice = workload(
        "twice.yaml",
        "        env: []\n        image: x\n        env:\n        - {name: AWS_PROFILE, value: x}\n",
    );
    let typo = workload(
        "typo.yaml",
        "        evn:\n        - {name: AWS_PROFILE, value: x}\n",
    );
    let deep = dir.path().join("deep.yaml");
    std::fs::write(
        &deep,
        (0..200)
            .map(|i| format!("{}a:\n", " ".repeat(i * 2)))
            .collect::<String>(),
    )
    .unwrap();
    let association = dir.path().join("association.json");
    std::fs::write(
        &association,
        r#"{"association": {"namespace": "reports", "serviceAccount": "s3-reader", "roleArn": "arn:aws:iam::111122223333:role/x", "disableSessionTags": "yes"}}"#,
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--workload", env_map.to_str().unwrap()],
            "document 1: Deployment reports/api: spec.template.spec.containers[0].env (line 13): invalid type: map, expected a sequence".into(),
        ),
        (
            vec!["--workload", twice.to_str().unwrap()],
            "key \"env\" of spec.template.spec.containers[0] is given twice (first on line 13)".into(),
        ),
        (
            vec!["--workload", typo.to_str().unwrap()],
            "spec.template.spec.containers[0].evn (line 13): unknown field \"evn\"; did you mean \"env\"?".into(),
        ),
        (
            vec!["--workload", deep.to_str().unwrap()],
            "nested more than 64 levels deep".into(),
        ),
        (
            vec!["--pod-identity-association", association.to_str().unwrap()],
            "\"disableSessionTags\" must be true or false".into(),
        ),
        (
            vec!["--service-account", "does/not/exist.yaml"],
            "does/not/exist.yaml: cannot read".into(),
        ),
        (
            vec!["--service-account", bad_yaml.to_str().unwrap()],
            format!("{}: document 1: invalid YAML", bad_yaml.display()),
        ),
        (
            vec!["--service-account", nameless.to_str().unwrap()],
            "needs metadata.name".into(),
        ),
        (
            vec!["--service-account", numeric.to_str().unwrap()],
            "(quote it)".into(),
        ),
        (
            vec!["--role", bare.to_str().unwrap()],
            "not the JSON `aws iam get-role` prints".into(),
        ),
        (
            vec![
                "--role",
                "arn:aws:iam::1234:role/x=examples/roles/s3-reader.json",
            ],
            "not 12 digits".into(),
        ),
        (
            vec![
                "--role",
                "arn:aws:iam::111122223333:role/other=examples/roles/s3-reader.json",
            ],
            "holds the role arn:aws:iam::111122223333:role/s3-reader".into(),
        ),
        (
            vec!["--oidc-provider", "arn:aws:iam::111122223333:role/x"],
            "--oidc-provider".into(),
        ),
        (vec!["--no-such-flag"], "--no-such-flag".into()),
        (
            vec!["--role", "arn:aws:iam::111122223333:role/x"],
            "expected ROLE_ARN=FILE".into(),
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["--issuer", ISSUER];
        if !args.contains(&"--service-account") {
            all.extend(["--service-account", "examples/serviceaccounts.yaml"]);
        }
        all.extend(args.iter().copied());
        let out = lint(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = lint(&["--issuer", ISSUER]);
    assert_eq!(out.status.code(), Some(2), "--service-account is required");
    let out = lint(&[
        "--issuer",
        "http://example.com",
        "--service-account",
        "examples/serviceaccounts.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--issuer") && stderr(&out).contains("https"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn trust_policy_short_form_refuses_ambiguity() {
    let out = lint(&[
        "--issuer",
        ISSUER,
        "--service-account",
        "examples/serviceaccounts.yaml",
        "--trust-policy",
        "examples/roles/s3-reader.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--role ROLE_ARN=FILE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn namespace_flag_applies_to_manifests_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("sa.yaml");
    std::fs::write(
        &sa,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: s3-reader\n  annotations:\n    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/s3-reader\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--issuer",
            ISSUER,
            "--service-account",
            sa.to_str().unwrap(),
            "--trust-policy",
            "examples/roles/s3-reader.json",
        ];
        args.extend(extra);
        lint(&args)
    };
    let defaulted = run(&[]);
    assert_eq!(
        defaulted.status.code(),
        Some(1),
        "default/s3-reader is not the subject the policy names"
    );
    assert!(String::from_utf8_lossy(&defaulted.stdout).contains("default/s3-reader"));
    let namespaced = run(&["-n", "reports"]);
    assert_eq!(
        namespaced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&namespaced.stdout)
    );
}

#[test]
fn workloads_are_checked_offline_and_named_in_findings() {
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("sa.yaml");
    std::fs::write(
        &sa,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: api\n  namespace: reports\n  annotations:\n    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/api\n",
    )
    .unwrap();
    let workloads = dir.path().join("workloads.yaml");
    std::fs::write(
        &workloads,
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: reports}
spec:
  template:
    spec:
      serviceAccountName: api
      containers:
      - name: app
        env:
        - {name: AWS_ROLE_ARN, value: arn:aws:iam::111122223333:role/api}
        - name: AWS_ACCESS_KEY_ID
          valueFrom: {secretKeyRef: {name: legacy-aws, key: id}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: reports}
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        spec:
          serviceAccountName: api
          securityContext: {runAsUser: 1000}
          containers:
          - name: job
",
    )
    .unwrap();
    let args = [
        "--issuer",
        ISSUER,
        "--service-account",
        sa.to_str().unwrap(),
        "--workload",
        workloads.to_str().unwrap(),
    ];
    let out = lint(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains("PresetWebIdentityEnv")
            && text.contains("Deployment reports/api container app"),
        "{text}"
    );
    assert!(
        text.contains("from Secret legacy-aws key id") && !text.contains("CronJob"),
        "{text}"
    );
    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json"]);
    let json: Value = serde_json::from_slice(&lint(&json_args).stdout).unwrap();
    let reasons: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"StaticCredentialsFound"), "{reasons:?}");
    let missing = lint(&[
        "--issuer",
        ISSUER,
        "--service-account",
        sa.to_str().unwrap(),
        "--workload",
        "/nonexistent.yaml",
    ]);
    assert_eq!(missing.status.code(), Some(2));
}
