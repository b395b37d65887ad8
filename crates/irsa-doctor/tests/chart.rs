//! What ships beside the binary: the Helm chart (rendered and linted by the real `helm`,
//! `make tools` installs it), its RBAC against the API calls the code makes, its CRD against the
//! generated one, and the operator's IAM policy against the AWS actions the code calls.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use test_support::operator::OPERATOR_RBAC;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn helm(args: &[&str]) -> Option<String> {
    let out = Command::new("helm")
        .args(args)
        .current_dir(repo())
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn render(extra: &[&str]) -> Option<Vec<Value>> {
    let mut args = vec![
        "template",
        "irsa-doctor",
        "charts/irsa-doctor",
        "--namespace",
        "irsa-doctor",
    ];
    args.extend(extra);
    let text = helm(&args)?;
    let docs = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("every rendered document is YAML"))
        .filter(|v| !v.is_null())
        .collect();
    Some(docs)
}

/// (API group, resource, verb).
type Grant = (String, String, String);

/// (namespace of the Role, or "" for a ClusterRole) → what it grants.
fn grants(docs: &[Value]) -> Vec<(String, BTreeSet<Grant>)> {
    docs.iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .map(|d| {
            let ns = d["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut set = BTreeSet::new();
            for rule in d["rules"].as_array().into_iter().flatten() {
                for g in rule["apiGroups"].as_array().into_iter().flatten() {
                    for r in rule["resources"].as_array().into_iter().flatten() {
                        for v in rule["verbs"].as_array().into_iter().flatten() {
                            set.insert((
                                g.as_str().unwrap().into(),
                                r.as_str().unwrap().into(),
                                v.as_str().unwrap().into(),
                            ));
                        }
                    }
                }
            }
            (ns, set)
        })
        .collect()
}

fn expected() -> BTreeSet<Grant> {
    OPERATOR_RBAC
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

#[test]
fn chart_lints_renders_and_grants_exactly_what_the_operator_calls() {
    if Command::new("helm").arg("version").output().is_err() {
        eprintln!("SKIPPED: helm is not on PATH (make tools installs it)");
        return;
    }
    helm(&["lint", "--strict", "charts/irsa-doctor"]).unwrap();
    let docs = render(&[]).unwrap();
    for d in &docs {
        assert!(d["apiVersion"].is_string() && d["kind"].is_string(), "{d}");
    }
    let all: BTreeSet<_> = grants(&docs).into_iter().flat_map(|(_, s)| s).collect();
    assert_eq!(
        all,
        expected(),
        "cluster-wide RBAC must grant exactly the operator's calls"
    );
    assert!(docs.iter().all(|d| d["kind"] != "Secret"));
    // /metrics names every IrsaCheck: fenced by a NetworkPolicy unless turned off.
    let fence = docs
        .iter()
        .find(|d| d["kind"] == "NetworkPolicy")
        .expect("a NetworkPolicy by default");
    assert_eq!(fence["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args.first(), Some(&"run"), "{args:?}");
    assert!(args.contains(&"--leader-election=true"), "{args:?}");
    // The binary accepts every argument the chart passes: it gets as far as loading a kubeconfig.
    let out = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"))
        .args(&args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loading the Kubernetes configuration"),
        "{args:?}: {stderr}"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");

    // Namespace scoping: the same grants, as a Role in each watched namespace.
    let scoped = render(&["--set", "watchNamespaces={team-a,team-b}"]).unwrap();
    let roles = grants(&scoped);
    for ns in ["team-a", "team-b"] {
        let (_, granted) = roles
            .iter()
            .find(|(n, _)| n == ns)
            .unwrap_or_else(|| panic!("no Role in {ns}"));
        let namespaced: BTreeSet<_> = expected()
            .into_iter()
            .filter(|(g, r, _)| {
                !(g == "coordination.k8s.io"
                    || r == "mutatingwebhookconfigurations"
                    || r == "namespaces")
            })
            .collect();
        assert_eq!(granted, &namespaced, "{ns}");
    }
    let cluster_wide: BTreeSet<_> = roles
        .iter()
        .filter(|(n, _)| n.is_empty())
        .flat_map(|(_, s)| s.clone())
        .collect();
    assert!(
        cluster_wide
            .iter()
            .all(|(_, r, _)| r == "mutatingwebhookconfigurations" || r == "namespaces"),
        "{cluster_wide:?}"
    );
    // A namespaced install reads the labels of its own namespaces only.
    let namespaces_rule = scoped
        .iter()
        .filter(|d| d["kind"] == "ClusterRole")
        .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
        .find(|r| r["resources"] == serde_json::json!(["namespaces"]))
        .expect("a rule for namespaces");
    assert_eq!(
        namespaces_rule["resourceNames"],
        serde_json::json!(["team-a", "team-b"]),
        "{namespaces_rule}"
    );

    // The node check reads nodes (and only with it on).
    let observing = render(&[
        "--set",
        "nodeCheck.enabled=true",
        "--set",
        "cloudTrail.enabled=true",
    ])
    .unwrap();
    let extra: BTreeSet<_> = grants(&observing)
        .into_iter()
        .flat_map(|(_, s)| s)
        .filter(|g| !expected().contains(g))
        .collect();
    assert_eq!(
        extra,
        BTreeSet::from([("".to_string(), "nodes".to_string(), "get".to_string())]),
        "nodeCheck adds exactly get nodes"
    );
    let observing_args = observing
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .map(|d| d["spec"]["template"]["spec"]["containers"][0]["args"].to_string())
        .unwrap();
    assert!(
        observing_args.contains("--node-check=true")
            && observing_args.contains("--cloudtrail-window=12h"),
        "{observing_args}"
    );
    assert!(!docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap()
        .to_string()
        .contains("--node-check"));

    // EKS Pod Identity lists EKS Auto Mode nodes and, when only some namespaces are watched,
    // the agent's pods in kube-system (and nothing more).
    let pod_identity = render(&["--set", "clusterName=prod"]).unwrap();
    let extra: BTreeSet<_> = grants(&pod_identity)
        .into_iter()
        .flat_map(|(_, s)| s)
        .filter(|g| !expected().contains(g))
        .collect();
    assert_eq!(
        extra,
        BTreeSet::from([("".to_string(), "nodes".to_string(), "list".to_string())])
    );
    let scoped_pi = render(&[
        "--set",
        "clusterName=prod",
        "--set",
        "watchNamespaces={team-a}",
    ])
    .unwrap();
    let agent_role: BTreeSet<_> = grants(&scoped_pi)
        .into_iter()
        .filter(|(ns, _)| ns == "kube-system")
        .flat_map(|(_, s)| s)
        .collect();
    assert_eq!(
        agent_role,
        BTreeSet::from([("".to_string(), "pods".to_string(), "list".to_string())])
    );

    // Without PolicyReports, no access to them.
    let off = render(&["--set", "policyReports.mode=off"]).unwrap();
    let without: BTreeSet<_> = expected()
        .into_iter()
        .filter(|(g, _, _)| g != "wgpolicyk8s.io")
        .collect();
    assert_ne!(without, expected(), "OPERATOR_RBAC lists policyreports");
    assert_eq!(
        grants(&off)
            .into_iter()
            .flat_map(|(_, s)| s)
            .collect::<BTreeSet<_>>(),
        without
    );
    let off_args = off.iter().find(|d| d["kind"] == "Deployment").unwrap()["spec"]["template"]
        ["spec"]["containers"][0]["args"]
        .to_string();
    assert!(off_args.contains("--policy-reports=off"), "{off_args}");
    assert!(args.contains(&"--policy-reports=auto"), "{args:?}");

    // Alerts.
    let with_alerts = render(&[
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "serviceMonitor.enabled=true",
    ])
    .unwrap();
    let rules = with_alerts
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .unwrap()
        .to_string();
    for alert in [
        "IrsaCheckFailing",
        "IrsaServiceAccountsMisconfigured",
        "IrsaDoctorAwsUnavailable",
        "IrsaDoctorDown",
    ] {
        assert!(rules.contains(alert), "{alert}");
    }
    assert!(
        rules.contains("AwsApiUnavailable"),
        "Unknown reasons are excluded from paging"
    );
    assert!(with_alerts.iter().any(|d| d["kind"] == "ServiceMonitor"));
}

#[test]
fn grafana_dashboard_is_a_configmap_with_the_dashboard_json_when_enabled() {
    let Some(default) = render(&[]) else {
        eprintln!("SKIPPED: helm is not on PATH (make tools installs it)");
        return;
    };
    assert!(
        default.iter().all(|d| d["kind"] != "ConfigMap"),
        "off by default"
    );
    let docs = render(&[
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "grafanaDashboard.annotations.grafana_folder=IRSA",
    ])
    .unwrap();
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["namespace"], "irsa-doctor");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "IRSA");
    let rendered: Value = serde_json::from_str(cm["data"]["irsa-doctor.json"].as_str().unwrap())
        .expect("the ConfigMap holds valid JSON");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("charts/irsa-doctor/dashboards/irsa-doctor.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rendered, file);
    assert_eq!(rendered["uid"], "irsa-doctor");
    assert!(rendered["panels"].as_array().unwrap().len() >= 10);

    let custom = render(&[
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "grafanaDashboard.label=my_dashboards",
        "--set",
        "grafanaDashboard.labelValue=irsa",
        "--set",
        "grafanaDashboard.namespace=monitoring",
    ])
    .unwrap();
    let cm = custom.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(cm["metadata"]["labels"]["my_dashboards"], "irsa");
    assert!(cm["metadata"]["labels"].get("grafana_dashboard").is_none());
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
}

#[test]
fn chart_crd_is_the_generated_one() {
    let generated = std::fs::read_to_string(repo().join("crds/irsacheck.yaml")).unwrap();
    let shipped =
        std::fs::read_to_string(repo().join("charts/irsa-doctor/crds/irsacheck.yaml")).unwrap();
    assert!(
        generated == shipped,
        "charts/irsa-doctor/crds/irsacheck.yaml drifted: run `make crd`"
    );
}

#[test]
fn iam_policy_grants_exactly_the_aws_actions_the_code_calls() {
    let granted = |file: &str| -> BTreeSet<String> {
        let policy: Value =
            serde_json::from_str(&std::fs::read_to_string(repo().join(file)).unwrap()).unwrap();
        let mut granted = BTreeSet::new();
        for st in policy["Statement"].as_array().unwrap() {
            assert_eq!(st["Effect"], "Allow", "{file}");
            match &st["Action"] {
                Value::String(a) => {
                    granted.insert(a.clone());
                }
                Value::Array(list) => {
                    granted.extend(list.iter().map(|a| a.as_str().unwrap().to_string()))
                }
                other => panic!("{file}: unexpected Action {other}"),
            }
        }
        assert!(
            granted.iter().all(|a| !a.contains('*')),
            "{file}: read-only and explicit"
        );
        granted
    };
    let set =
        |actions: &[&str]| -> BTreeSet<String> { actions.iter().map(|a| a.to_string()).collect() };
    // One policy per feature, each exactly what the feature calls: the core (operator and
    // check, every feature off) does not carry what only the CLI's audit or an opt-in needs.
    let mut core = set(irsa_aws::CORE_ACTIONS);
    core.insert(irsa_aws::CROSS_ACCOUNT_ACTION.to_string());
    assert_eq!(granted("deploy/iam-policy.json"), core);
    assert_eq!(
        granted("deploy/iam-policy-cloudtrail.json"),
        set(irsa_aws::CLOUDTRAIL_ACTIONS)
    );
    assert_eq!(
        granted("deploy/iam-policy-node-check.json"),
        set(irsa_aws::NODE_CHECK_ACTIONS)
    );
    assert_eq!(
        granted("deploy/iam-policy-audit-trust.json"),
        set(irsa_aws::AUDIT_TRUST_ACTIONS)
    );
    for opt_in in [
        "iam:ListRoles",
        "cloudtrail:LookupEvents",
        "ec2:DescribeInstances",
    ] {
        assert!(!core.contains(opt_in), "{opt_in} in the core policy");
    }
    // Every action the code calls belongs to a feature.
    let features: BTreeSet<String> = [
        irsa_aws::CORE_ACTIONS,
        irsa_aws::CLOUDTRAIL_ACTIONS,
        irsa_aws::NODE_CHECK_ACTIONS,
        irsa_aws::AUDIT_TRUST_ACTIONS,
    ]
    .into_iter()
    .flat_map(set)
    .collect();
    assert_eq!(features, set(irsa_aws::AWS_ACTIONS));
}

/// `grants` flattens rules and cannot say which objects a rule names: the leader-election Role
/// gets and patches the operator's own Lease only (`resourceNames`), and the one verb RBAC cannot
/// limit by name, `create`, stands alone in its own rule.
#[test]
fn leader_election_role_names_the_operators_lease() {
    let Some(docs) = render(&[]) else {
        eprintln!("SKIPPED: helm is not on PATH (make tools installs it)");
        return;
    };
    let lease_rules: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
        .flat_map(|d| d["rules"].as_array().into_iter().flatten())
        .filter(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|rs| rs.contains(&"leases".into()))
        })
        .collect();
    assert_eq!(lease_rules.len(), 2, "{lease_rules:?}");
    for rule in lease_rules {
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        if verbs == ["create"] {
            assert!(rule.get("resourceNames").is_none(), "{rule}");
        } else {
            assert_eq!(
                rule["resourceNames"],
                serde_json::json!([irsa_doctor::operator::LEASE_NAME]),
                "{rule}"
            );
            assert!(!verbs.contains(&"create"), "{rule}");
        }
    }
}
