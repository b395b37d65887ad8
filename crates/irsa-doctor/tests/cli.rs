//! The command line as users meet it: `explain`, `completion`, `lint --format sarif|github`, the
//! krew manifest, and `kubectl irsa-doctor check` through the real kubectl against a real API
//! server and moto.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use irsa_aws::Clients;
use irsa_core::{Reason, Severity};
use serde_json::Value;

const ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const PROVIDER: &str =
    "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `irsa-doctor ARGS` from this crate's folder, so fixture paths are `tests/data/...`.
fn irsa_doctor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_irsa-doctor"))
        .current_dir(crate_dir())
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn explain_prints_the_guide_entry_with_its_fix() {
    let out = irsa_doctor(&["explain", "TrustPolicySubjectMismatch"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("TrustPolicySubjectMismatch\n---"),
        "{text}"
    );
    for part in [
        "Cause: ",
        "How irsa-doctor detects it: ",
        "Fix: Put the exact subject",
    ] {
        assert!(text.contains(part), "{part:?} missing:\n{text}");
    }
    // The "After" policy of the entry, as an indented code block, without Markdown's fences.
    assert!(
        text.contains("\n        \"system:serviceaccount:reports:s3-reader\",\n"),
        "{text}"
    );
    assert!(!text.contains("```") && !text.contains("**"), "{text}");
    assert!(
        text.contains("/docs/troubleshooting.md#trustpolicysubjectmismatch"),
        "{text}"
    );
    // Any case; it is the same entry, and it stops before the next one.
    let lower = irsa_doctor(&["explain", "trustpolicysubjectmismatch"]);
    assert_eq!(stdout(&lower), text);
    assert!(!text.contains("TrustPolicyAudienceMismatch\n---"), "{text}");
}

#[test]
fn explain_without_a_reason_lists_every_reason_with_its_severity() {
    let out = irsa_doctor(&["explain"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["REASON", "SEVERITY", "SUMMARY"]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), Reason::ALL.len(), "{text}");
    for (row, reason) in rows.iter().zip(Reason::ALL) {
        assert_eq!(row[0], reason.as_str());
        assert_eq!(row[1], reason.severity().as_str());
        assert!(row.len() > 4, "{reason} has no summary: {row:?}");
    }
    let mismatch = text
        .lines()
        .find(|l| l.starts_with("TrustPolicySubjectMismatch "))
        .unwrap();
    assert!(
        mismatch.contains("The `:sub` condition does not admit"),
        "{mismatch}"
    );
}

#[test]
fn explain_of_an_unknown_reason_exits_two_and_suggests_the_closest() {
    let out = irsa_doctor(&["explain", "TrustPolicySubjectMismach"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("unknown reason \"TrustPolicySubjectMismach\"")
            && err.contains("did you mean TrustPolicySubjectMismatch?"),
        "{err}"
    );
    let far = irsa_doctor(&["explain", "Bogus"]);
    assert_eq!(far.status.code(), Some(2));
    assert!(
        !stderr(&far).contains("did you mean"),
        "no guess when nothing is close: {}",
        stderr(&far)
    );
}

#[test]
fn completion_scripts_cover_the_subcommands() {
    let bash = irsa_doctor(&["completion", "bash"]);
    assert_eq!(bash.status.code(), Some(0), "{}", stderr(&bash));
    let script = stdout(&bash);
    assert!(
        script.contains("complete ") && script.contains("irsa-doctor"),
        "{script}"
    );
    for sub in ["check", "lint", "explain"] {
        assert!(script.contains(sub), "bash completion lacks {sub}");
    }
    for shell in ["zsh", "fish"] {
        let out = irsa_doctor(&["completion", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("check"), "{shell}");
    }
    let bad = irsa_doctor(&["completion", "cmd.exe"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("bash"), "{}", stderr(&bad));
}

/// `lint` over the fixtures: a multi-document YAML file and a JSON file.
fn lint_fixtures(format: &str) -> Output {
    irsa_doctor(&[
        "lint",
        "--issuer",
        ISSUER,
        "--oidc-provider",
        &format!("{PROVIDER}=sts.amazonaws.com"),
        "--service-account",
        "tests/data/lint-multi.yaml",
        "--service-account",
        "tests/data/lint-sa.json",
        "--role",
        "../../examples/roles/s3-reader.json",
        "--role",
        "../../examples/roles/ledger-writer.json",
        "--role",
        "../../examples/roles/payment-gateway.json",
        "--role",
        "arn:aws:iam::111122223333:role/ml-training=../../examples/roles/ml-training.trust-policy.json",
        "--role",
        "arn:aws:iam::111122223333:role/office-only=tests/data/office-only.trust-policy.json",
        "--format",
        format,
    ])
}

fn sarif_validator() -> jsonschema::Validator {
    let path = crate_dir().join("tests/data/sarif-schema-2.1.0.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        schema["$schema"], "http://json-schema.org/draft-04/schema#",
        "the vendored schema is the published draft-04 one"
    );
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn schema_errors(validator: &jsonschema::Validator, log: &Value) -> Vec<String> {
    validator
        .iter_errors(log)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn sarif_is_valid_and_points_at_each_service_account_line() {
    let out = lint_fixtures("sarif");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    let validator = sarif_validator();
    let errors = schema_errors(&validator, &log);
    assert!(errors.is_empty(), "{errors:#?}");
    // The validation can fail: a level SARIF does not know is refused.
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(!schema_errors(&validator, &broken).is_empty());

    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "irsa-doctor");
    let located: Vec<(String, String, String, u64)> = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let physical = &r["locations"][0]["physicalLocation"];
            (
                r["ruleId"].as_str().unwrap().to_string(),
                r["level"].as_str().unwrap().to_string(),
                physical["artifactLocation"]["uri"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                physical["region"]["startLine"].as_u64().unwrap(),
            )
        })
        .collect();
    let at = |rule: &str, level: &str, uri: &str, line: u64| {
        (rule.to_string(), level.to_string(), uri.to_string(), line)
    };
    assert_eq!(
        located,
        [
            at(
                "TrustPolicySubjectMismatch",
                "error",
                "tests/data/lint-multi.yaml",
                27
            ),
            at(
                "RoleArnAnnotationKeyMisspelled",
                "error",
                "tests/data/lint-multi.yaml",
                38
            ),
            at(
                "TokenExpirationInvalid",
                "warning",
                "tests/data/lint-multi.yaml",
                45
            ),
            at(
                "TrustPolicyConditionUnverifiable",
                "note",
                "tests/data/lint-multi.yaml",
                51
            ),
            at(
                "TrustPolicyWildcardWithoutLike",
                "error",
                "tests/data/lint-sa.json",
                9
            ),
        ]
    );
    // One rule per reason with a result, each pointing at its troubleshooting entry; results
    // refer to their rule by index.
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "RoleArnAnnotationKeyMisspelled",
            "TokenExpirationInvalid",
            "TrustPolicySubjectMismatch",
            "TrustPolicyWildcardWithoutLike",
            "TrustPolicyConditionUnverifiable"
        ]
    );
    for result in run["results"].as_array().unwrap() {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
    }
    let mismatch = &rules[2];
    let reason = Reason::TrustPolicySubjectMismatch;
    assert_eq!(mismatch["help"]["text"], reason.remediation());
    assert_eq!(
        mismatch["helpUri"],
        "https://github.com/irsa-doctor/irsa-doctor/blob/main/docs/troubleshooting.md#trustpolicysubjectmismatch"
    );
    assert!(mismatch["shortDescription"]["text"]
        .as_str()
        .unwrap()
        .starts_with("The `:sub` condition does not admit"));
    assert_eq!(mismatch["defaultConfiguration"]["level"], "error");
    assert_eq!(
        rules[1]["defaultConfiguration"]["level"],
        Severity::Warning.as_str()
    );
    assert_eq!(rules[4]["defaultConfiguration"]["level"], "note");
}

#[test]
fn github_format_prints_one_workflow_command_per_finding() {
    let out = lint_fixtures("github");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    let prefixes = [
        "::error file=tests/data/lint-multi.yaml,line=27,title=TrustPolicySubjectMismatch::payments/payments-api: ",
        "::error file=tests/data/lint-multi.yaml,line=38,title=RoleArnAnnotationKeyMisspelled::reports/report-exporter: ",
        "::warning file=tests/data/lint-multi.yaml,line=45,title=TokenExpirationInvalid::payments/ledger-writer: ",
        "::notice file=tests/data/lint-multi.yaml,line=51,title=TrustPolicyConditionUnverifiable::reports/office-only: ",
        "::error file=tests/data/lint-sa.json,line=9,title=TrustPolicyWildcardWithoutLike::ml/training-runner: ",
    ];
    for (line, prefix) in lines.iter().zip(prefixes) {
        assert!(line.starts_with(prefix), "{line}\nexpected {prefix}");
    }
    // The message and its fix on one line: the runner turns %0A back into a line break.
    assert!(
        lines[0].ends_with(&format!(
            "%0AFix: {}",
            Reason::TrustPolicySubjectMismatch.remediation()
        )),
        "{}",
        lines[0]
    );
}

#[test]
fn lint_text_and_json_are_unchanged_by_the_new_formats() {
    let json = lint_fixtures("json");
    assert_eq!(json.status.code(), Some(1), "{}", stderr(&json));
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["serviceAccounts"].as_array().unwrap().len(), 6);
    let text = stdout(&lint_fixtures("text"));
    assert!(
        text.contains("payments/payments-api  FAIL")
            && text.contains("6 ServiceAccount(s) checked"),
        "{text}"
    );
}

/// Writes a .tar.gz at `path` holding `files` (name, content) at its top level, with tar.
fn archive(path: &Path, files: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .arg("-czf")
        .arg(path)
        .args(files.iter().map(|(name, _)| name))
        .status()
        .unwrap();
    assert!(status.success());
}

/// `make krew-manifest`'s script over four archives.
fn render_krew_manifest(version: &str, dist: &Path) -> Output {
    Command::new("python3")
        .arg(crate_dir().join("../../deploy/krew/render-manifest.py"))
        .args([version, dist.to_str().unwrap()])
        .output()
        .expect("python3 runs `make krew-manifest`")
}

#[test]
fn krew_manifest_names_every_platform_archive_and_its_checksum() {
    let dist = tempfile::tempdir().unwrap();
    let platforms = [
        ("linux", "amd64"),
        ("linux", "arm64"),
        ("darwin", "amd64"),
        ("darwin", "arm64"),
    ];
    for (os, arch) in platforms {
        archive(
            &dist
                .path()
                .join(format!("irsa-doctor-v1.2.3-{os}-{arch}.tar.gz")),
            &[
                ("kubectl-irsa_doctor", &format!("{os}/{arch}")),
                ("LICENSE", "Apache"),
            ],
        );
    }
    let out = render_krew_manifest("1.2.3", dist.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dist.path().join("irsa-doctor.yaml")).unwrap();
    assert!(!text.contains("{{"), "a placeholder is left: {text}");
    let manifest: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "irsa-doctor");
    assert_eq!(manifest["spec"]["version"], "v1.2.3");
    let listed = manifest["spec"]["platforms"].as_array().unwrap();
    assert_eq!(listed.len(), platforms.len());
    for ((os, arch), platform) in platforms.iter().zip(listed) {
        let labels = &platform["selector"]["matchLabels"];
        assert_eq!(
            (labels["os"].as_str(), labels["arch"].as_str()),
            (Some(*os), Some(*arch))
        );
        assert!(platform["uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1.2.3/irsa-doctor-v1.2.3-{os}-{arch}.tar.gz")));
        assert_eq!(platform["bin"], "kubectl-irsa_doctor");
        // The SHA-256 of that platform's archive (coreutils computes it independently).
        let archive = dist
            .path()
            .join(format!("irsa-doctor-v1.2.3-{os}-{arch}.tar.gz"));
        let sum = Command::new("sha256sum").arg(&archive).output().unwrap();
        let expected = String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        assert_eq!(platform["sha256"].as_str(), Some(expected.as_str()));
    }
    // An archive without the LICENSE krew installs is refused, naming what it lacks.
    let linux = dist.path().join("irsa-doctor-v1.2.3-linux-amd64.tar.gz");
    archive(&linux, &[("kubectl-irsa_doctor", "linux/amd64")]);
    let unlicensed = render_krew_manifest("1.2.3", dist.path());
    assert_ne!(unlicensed.status.code(), Some(0));
    assert!(
        stderr(&unlicensed).contains("irsa-doctor-v1.2.3-linux-amd64.tar.gz lacks LICENSE"),
        "{}",
        stderr(&unlicensed)
    );
    archive(
        &linux,
        &[
            ("kubectl-irsa_doctor", "linux/amd64"),
            ("LICENSE", "Apache"),
        ],
    );
    // A missing archive is named; a `v` in VERSION is refused with the right spelling.
    std::fs::remove_file(dist.path().join("irsa-doctor-v1.2.3-darwin-arm64.tar.gz")).unwrap();
    let missing = render_krew_manifest("1.2.3", dist.path());
    assert_ne!(missing.status.code(), Some(0));
    assert!(
        stderr(&missing).contains("irsa-doctor-v1.2.3-darwin-arm64.tar.gz is missing"),
        "{}",
        stderr(&missing)
    );
    let prefixed = render_krew_manifest("v1.2.3", dist.path());
    assert_ne!(prefixed.status.code(), Some(0));
    assert!(
        stderr(&prefixed).contains("without the v"),
        "{}",
        stderr(&prefixed)
    );
}

/// A folder holding `kubectl-irsa_doctor`, this build's binary under the plugin's name, as
/// `make release` and krew install it.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_irsa-doctor"),
        dir.path().join("kubectl-irsa_doctor"),
    )
    .unwrap();
    dir
}

/// The cells of a table's rows, header first.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_irsa_doctor_check_runs_as_a_kubectl_plugin() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    setup(&cluster, &admin).await;
    let plugins = plugin_dir();
    let path = std::env::join_paths(std::iter::once(plugins.path().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let kubeconfig = cluster.kubeconfig_path().to_str().unwrap().to_string();
    // The real kubectl finds the plugin on PATH and runs it; neither KUBECONFIG nor a
    // ~/.kube/config can stand in for --kubeconfig.
    let kubectl = |args: &[&str]| {
        let mut cmd = Command::new("kubectl");
        cmd.arg("irsa-doctor")
            .args(args)
            .env("PATH", &path)
            .env("HOME", plugins.path())
            .env_remove("KUBECONFIG");
        aws_env(&mut cmd, &aws.url);
        tokio::task::block_in_place(|| cmd.output().unwrap())
    };

    let all = kubectl(&["check", "-A", "--kubeconfig", &kubeconfig]);
    assert_eq!(all.status.code(), Some(1), "{}", stderr(&all));
    // Not a terminal: no progress indicator, nothing else either.
    assert_eq!(stderr(&all), "");
    let table = rows(&stdout(&all));
    assert_eq!(
        table[0],
        ["NAMESPACE", "SERVICEACCOUNT", "ROLE", "READY", "REASON"]
    );
    let row = |name: &str| {
        table
            .iter()
            .find(|r| r.get(1).map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {table:?}"))
            .clone()
    };
    assert_eq!(
        row("s3-reader"),
        [
            "reports",
            "s3-reader",
            &format!("arn:aws:iam::{ACCOUNT}:role/s3-reader"),
            "True",
            "AllChecksPassed"
        ]
    );
    assert_eq!(
        row("exporter"),
        [
            "reports",
            "exporter",
            &format!("arn:aws:iam::{ACCOUNT}:role/exporter"),
            "False",
            "TrustPolicySubjectMismatch"
        ]
    );

    // `-n` and one ServiceAccount through the plugin, wide.
    let one = kubectl(&[
        "check",
        "-n",
        "reports",
        "s3-reader",
        "--kubeconfig",
        &kubeconfig,
        "-o",
        "wide",
    ]);
    assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
    let wide = rows(&stdout(&one));
    assert_eq!(wide.len(), 2, "{wide:?}");
    assert_eq!(&wide[0][5..], ["PODS", "WORKLOADS", "MESSAGE", "FIX"]);
    assert_eq!(
        wide[1].last().unwrap(),
        "<none>",
        "nothing to fix: {wide:?}"
    );

    // A context the kubeconfig lacks: exit 2, naming the flag and the contexts there are.
    let bad = kubectl(&["check", "--kubeconfig", &kubeconfig, "--context", "prod"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = stderr(&bad);
    assert!(
        err.starts_with("kubectl irsa-doctor check: error: --context prod: no such context"),
        "{err}"
    );

    // kubectl's `--context` picks the kubeconfig's context by name.
    let context = current_context(cluster.kubeconfig_path());
    let by_context = kubectl(&[
        "check",
        "-n",
        "reports",
        "--kubeconfig",
        &kubeconfig,
        "--context",
        &context,
        "-o",
        "json",
    ]);
    assert_eq!(by_context.status.code(), Some(1), "{}", stderr(&by_context));
    let json: Value = serde_json::from_slice(&by_context.stdout).unwrap();
    assert_eq!(json["serviceAccounts"].as_array().unwrap().len(), 3);

    // What the run cost: each AWS fact asked once (a role once per ARN), whatever the number of
    // ServiceAccounts, and said in the output.
    let roles: std::collections::BTreeSet<&str> = json["serviceAccounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|sa| sa["roleArn"].as_str())
        .collect();
    let calls = &json["awsCalls"];
    assert!(
        calls["iam:GetRole"].as_u64().unwrap_or(0) as usize <= roles.len(),
        "{calls} for {roles:?}"
    );
    let total = json["awsCallsTotal"].as_u64().unwrap();
    assert_eq!(
        total,
        calls
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    );
    // Roles, plus the account's providers, the provider, and who the caller is.
    assert!(total as usize <= roles.len() + 4, "{calls}");
}

fn current_context(kubeconfig: &Path) -> String {
    let config: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    config["current-context"].as_str().unwrap().to_string()
}

/// `check` follows the ServiceAccount's pods to their nodes and the nodes to their EC2
/// instances (moto, the real SDK): a node allowing IMDSv1 with hop limit 2 is reported with
/// its pod, a node requiring IMDSv2 with hop limit 1 is not, except for a hostNetwork pod on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_nodes_whose_instance_role_pods_can_fall_back_to() {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Api, PostParams};

    let cluster = Cluster::start(ClusterOptions {
        without_node: true,
        // The operator's half of the test: its ClusterRole gets `get nodes`.
        chart_values: vec!["nodeCheck.enabled=true".into()],
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    setup(&cluster, &admin).await;
    let open = moto::launch_instance(&admin, "optional", 2).await;
    let hardened = moto::launch_instance(&admin, "required", 1).await;
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, id) in [("open-node", &open), ("hardened-node", &hardened)] {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"providerID": format!("aws:///us-east-1a/{id}")}
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "reports");
    for (name, node, host_network) in [
        ("app-open", "open-node", false),
        ("app-hardened", "hardened-node", false),
        ("app-host", "hardened-node", true),
    ] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "serviceAccountName": "s3-reader",
                "nodeName": node,
                "hostNetwork": host_network,
                // As the webhook would have injected them (this cluster runs none): the pods
                // have the role, and only their nodes are in question.
                "containers": [{"name": "app", "image": "registry.example/app:1", "env": [
                    {"name": "AWS_ROLE_ARN", "value": format!("arn:aws:iam::{ACCOUNT}:role/s3-reader")},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE",
                     "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}]}]
            }
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let kubeconfig = cluster.kubeconfig_path().to_str().unwrap().to_string();
    let check = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
        cmd.args([
            "check",
            "-n",
            "reports",
            "s3-reader",
            "--kubeconfig",
            &kubeconfig,
        ])
        .args(["-o", "json", "--aws-max-attempts", "1"])
        .args(extra);
        aws_env(&mut cmd, &aws.url);
        tokio::task::block_in_place(|| cmd.output().unwrap())
    };

    let out = check(&[]);
    // A warning: the exit status stays 0.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fallback: Vec<&Value> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["reason"] == "NodeRoleFallbackPossible")
        .collect();
    assert_eq!(fallback.len(), 1, "{json:#}");
    assert_eq!(fallback[0]["condition"], "WorkloadsValid");
    assert_eq!(fallback[0]["severity"], Severity::Warning.as_str());
    let message = fallback[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "node open-node ({open}): IMDSv1 allowed (HttpTokens optional), pod(s) app-open"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("node hardened-node ({hardened}): hostNetwork pods reach IMDS whatever the hop limit, pod(s) app-host")),
        "{message}"
    );
    assert!(!message.contains("app-hardened"), "{message}");
    let conditions = json["serviceAccounts"][0]["conditions"].as_array().unwrap();
    let workloads = conditions
        .iter()
        .find(|c| c["type"] == "WorkloadsValid")
        .unwrap_or_else(|| panic!("{conditions:?}"));
    assert_eq!(workloads["status"], "True", "{workloads}");

    // moto does not serve cloudtrail:LookupEvents: with --cloudtrail the condition is Unknown,
    // never an error, and the exit status stays 0.
    let out = check(&["--cloudtrail", "--cloudtrail-window", "3h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let conditions = json["serviceAccounts"][0]["conditions"].as_array().unwrap();
    let workloads = conditions
        .iter()
        .find(|c| c["type"] == "WorkloadsValid")
        .unwrap();
    assert_eq!(workloads["status"], "Unknown", "{workloads}");
    assert_eq!(workloads["reason"], Reason::AwsApiUnavailable.as_str());
    assert!(
        workloads["message"]
            .as_str()
            .unwrap()
            .contains("cloudtrail:LookupEvents"),
        "{workloads}"
    );

    // A window beyond CloudTrail's history is refused, naming the flag's limit.
    let bad = check(&["--cloudtrail", "--cloudtrail-window", "100d"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("at most 90d"), "{}", stderr(&bad));

    // The operator does the same with --node-check, as the chart's ServiceAccount: the
    // IrsaCheck lists the finding.
    let op = start_operator(
        &cluster,
        &aws.url,
        &["--leader-election", "false", "--node-check"],
    );
    create_check(&client, "nodes", "s3-reader").await;
    let finding = eventually(
        "NodeRoleFallbackPossible in the IrsaCheck",
        std::time::Duration::from_secs(30),
        async || {
            let status = checks_api(&client, "reports")
                .get("nodes")
                .await
                .ok()?
                .status?;
            status
                .findings
                .into_iter()
                .find(|f| f.reason == "NodeRoleFallbackPossible")
        },
    )
    .await;
    assert!(
        finding.message.contains("open-node") && finding.message.contains("app-open"),
        "{finding:?}"
    );
    // What it called is what the core and node-check policies grant.
    assert!(aws_actions_called(&op)
        .await
        .contains("ec2:DescribeInstances"));
    assert_aws_calls_within(&op, &[irsa_aws::CORE_ACTIONS, irsa_aws::NODE_CHECK_ACTIONS]).await;
}
