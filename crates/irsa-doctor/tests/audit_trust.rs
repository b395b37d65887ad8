//! `irsa-doctor audit trust` end to end: the real binary against a real kube-apiserver and moto,
//! 50 roles of assorted trust policies among 210, and the AWS calls it made to list them.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use common::*;
use irsa_aws::Clients;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};
use test_support::eks::Eks;

/// Another cluster's issuer, whose provider some roles trust instead of this cluster's.
const OTHER: &str = "oidc.eks.eu-west-1.amazonaws.com/id/OTHERCLUSTER0000000000000000000";

/// Roles of no concern to IRSA, so that listing them takes three pages of 100.
const FILLER_ROLES: usize = 160;

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// A web-identity statement for the provider of `host_path` under `condition`.
fn web_identity(host_path: &str, condition: Value) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{host_path}")},
        "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition}]})
    .to_string()
}

fn service_role(service: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})
    .to_string()
}

/// The 50 roles of interest and the fillers, by name.
fn roles(hp: &str) -> Vec<(String, String)> {
    let sub = |op: &str, subjects: Value| json!({op: {format!("{hp}:sub"): subjects, format!("{hp}:aud"): "sts.amazonaws.com"}});
    let mut roles = Vec::new();
    for i in 0..10 {
        let s = format!("system:serviceaccount:reports:app-{i}");
        roles.push((
            format!("exact-{i}"),
            web_identity(hp, sub("StringEquals", json!(s))),
        ));
        let gone = format!("system:serviceaccount:reports:gone-{i}");
        roles.push((
            format!("stale-{i}"),
            web_identity(hp, sub("StringEquals", json!(gone))),
        ));
        let other = json!({"StringEquals": {format!("{OTHER}:sub"): s}});
        roles.push((format!("other-{i}"), web_identity(OTHER, other)));
    }
    for i in 0..5 {
        let aud_only = json!({"StringEquals": {format!("{hp}:aud"): "sts.amazonaws.com"}});
        roles.push((format!("any-{i}"), web_identity(hp, aud_only)));
        let team = sub("StringLike", json!("system:serviceaccount:team-a:*"));
        roles.push((format!("ns-{i}"), web_identity(hp, team)));
        let subjects = json!([
            "system:serviceaccount:team-b:worker",
            format!("system:serviceaccount:team-b:gone-{i}")
        ]);
        roles.push((
            format!("partly-stale-{i}"),
            web_identity(hp, sub("StringEquals", subjects)),
        ));
        roles.push((format!("ec2-{i}"), service_role("ec2.amazonaws.com")));
    }
    assert_eq!(roles.len(), 50);
    for i in 0..FILLER_ROLES {
        roles.push((format!("filler-{i}"), service_role("lambda.amazonaws.com")));
    }
    roles
}

/// The ServiceAccounts: (namespace, name, the role its annotation names).
fn service_accounts() -> Vec<(&'static str, String, Option<String>)> {
    let mut sas: Vec<(&str, String, Option<String>)> = (0..10)
        .map(|i| ("reports", format!("app-{i}"), Some(format!("exact-{i}"))))
        .collect();
    sas.push(("team-a", "alpha".into(), None));
    sas.push(("team-a", "beta".into(), Some("ns-0".into())));
    sas.push(("team-b", "worker".into(), Some("partly-stale-0".into())));
    sas
}

async fn create(cluster: &Cluster, admin: &Clients) {
    let hp = create_provider(cluster, admin).await;
    for (name, policy) in roles(&hp) {
        admin
            .iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(policy)
            .send()
            .await
            .unwrap();
    }
    let client = cluster.client();
    for ns in ["reports", "team-a", "team-b"] {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    for (ns, name, role) in service_accounts() {
        let annotations = match role {
            Some(r) => json!({"eks.amazonaws.com/role-arn": role_arn(&r)}),
            None => json!({}),
        };
        let sa: ServiceAccount = serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": ns, "annotations": annotations}}),
        )
        .unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &sa)
            .await
            .unwrap();
    }
    // The ServiceAccount controller adds each namespace's `default`: wait, so that the count
    // of every ServiceAccount is stable.
    for ns in ["reports", "team-a", "team-b"] {
        let api = Api::<ServiceAccount>::namespaced(client.clone(), ns);
        eventually(
            &format!("the default ServiceAccount of {ns}"),
            std::time::Duration::from_secs(30),
            async || api.get_opt("default").await.ok().flatten(),
        )
        .await;
    }
}

fn audit(cluster: &Cluster, aws_url: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
    cmd.args(["audit", "trust", "--kubeconfig"])
        .arg(cluster.kubeconfig_path())
        .args(args)
        .env_remove("KUBECONFIG");
    aws_env(&mut cmd, aws_url);
    tokio::task::block_in_place(|| cmd.output().unwrap())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// (admitted ServiceAccounts, patterns as `kind` or `kind:value`, finding reasons) of a role.
fn summary(role: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let admitted = role["serviceAccounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["serviceAccount"].as_str().unwrap().to_string())
        .collect();
    let patterns = role["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let kind = p["kind"].as_str().unwrap();
            match p["namespace"].as_str().or(p["provider"].as_str()) {
                Some(v) => format!("{kind}:{v}"),
                None => kind.to_string(),
            }
        })
        .collect();
    let reasons = role["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap().to_string())
        .collect();
    (admitted, patterns, reasons)
}

fn sarif_validator() -> jsonschema::Validator {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif-schema-2.1.0.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trust_reports_who_can_assume_each_role() {
    let cluster = Cluster::start(ClusterOptions {
        without_node: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    create(&cluster, &admin).await;
    let every_sa: Vec<String> = Api::<ServiceAccount>::all(cluster.client())
        .list_metadata(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|m| {
            let m = &m.metadata;
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap(),
                m.name.as_deref().unwrap()
            )
        })
        .collect();

    let out = audit(&cluster, &aws.url, &["-o", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The any-* roles admit every ServiceAccount: an error.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["issuer"], cluster.issuer());
    assert_eq!(
        report["accounts"],
        json!([{"account": ACCOUNT, "rolesListed": 210}])
    );
    assert_eq!(report["serviceAccounts"], every_sa.len());
    // One ListRoles page per 100 roles, nothing per role; the account from GetCallerIdentity.
    assert_eq!(
        report["awsCalls"],
        json!({"iam:ListRoles": 3, "sts:GetCallerIdentity": 1})
    );
    let by_name: BTreeMap<String, &Value> = report["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let arn = r["roleArn"].as_str().unwrap();
            (arn.rsplit('/').next().unwrap().to_string(), r)
        })
        .collect();
    // Service roles (ec2-*, filler-*) trust no OIDC provider: not reported; 45 of the 50 are.
    assert_eq!(by_name.len(), 45, "{:?}", by_name.keys());
    let none = Vec::<String>::new;
    let other_provider = format!("otherProvider:arn:aws:iam::{ACCOUNT}:oidc-provider/{OTHER}");
    for i in 0..10 {
        let (admitted, patterns, reasons) = summary(by_name[&format!("exact-{i}")]);
        assert_eq!(admitted, [format!("reports/app-{i}")], "exact-{i}");
        assert_eq!((patterns, reasons), (none(), none()), "exact-{i}");
        let (admitted, patterns, reasons) = summary(by_name[&format!("stale-{i}")]);
        assert_eq!((admitted, patterns), (none(), none()), "stale-{i}");
        assert_eq!(
            reasons,
            ["TrustedRoleUnused", "TrustedServiceAccountMissing"]
        );
        let other = by_name[&format!("other-{i}")];
        assert_eq!(other["trustsCluster"], false);
        assert_eq!(
            summary(other),
            (none(), vec![other_provider.clone()], none()),
            "other-{i}"
        );
    }
    // The controller's `default` is a ServiceAccount of team-a like any other.
    let team_a = ["team-a/alpha", "team-a/beta", "team-a/default"].map(String::from);
    for i in 0..5 {
        let (mut admitted, patterns, reasons) = summary(by_name[&format!("any-{i}")]);
        admitted.sort();
        let mut expected = every_sa.clone();
        expected.sort();
        assert_eq!(admitted, expected, "any-{i}");
        assert_eq!(patterns, ["anyServiceAccount"]);
        assert_eq!(
            reasons,
            ["TrustPolicyAdmitsAnyServiceAccount", "TrustedRoleUnused"]
        );
        let (admitted, patterns, reasons) = summary(by_name[&format!("ns-{i}")]);
        assert_eq!(
            (admitted, patterns),
            (team_a.to_vec(), vec!["namespace:team-a".to_string()])
        );
        let mut expected = vec!["TrustPolicyAdmitsWholeNamespace".to_string()];
        if i > 0 {
            expected.push("TrustedRoleUnused".into());
        }
        assert_eq!(reasons, expected, "ns-{i}");
        let role = by_name[&format!("partly-stale-{i}")];
        let (admitted, patterns, reasons) = summary(role);
        assert_eq!(
            (admitted, patterns),
            (vec!["team-b/worker".to_string()], none())
        );
        let mut expected = vec!["TrustedServiceAccountMissing".to_string()];
        if i > 0 {
            expected.insert(0, "TrustedRoleUnused".into());
        }
        assert_eq!(reasons, expected, "partly-stale-{i}");
        let missing = role["findings"].as_array().unwrap().last().unwrap();
        let message = missing["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("system:serviceaccount:team-b:gone-{i}"))
                && !message.contains("team-b:worker"),
            "{message}"
        );
    }
    assert_eq!(
        strings(&by_name["exact-0"]["annotatedBy"]),
        ["reports/app-0"]
    );
    assert!(by_name["exact-0"]["serviceAccounts"][0]["annotated"] == true);
    // The flat findings list is the roles' findings with their ARNs.
    let flat = report["findings"].as_array().unwrap();
    let per_role: usize = by_name
        .values()
        .map(|r| r["findings"].as_array().unwrap().len())
        .sum();
    assert_eq!(flat.len(), per_role);
    assert!(flat.iter().any(|f| f["roleArn"] == role_arn("any-0")
        && f["severity"] == "error"
        && f["fix"].as_str().is_some_and(|s| s.contains(":sub"))));

    // SARIF for code scanning, valid against the schema; another account without a role to
    // assume is Unknown, never an error of its own.
    let out = audit(
        &cluster,
        &aws.url,
        &[
            "-o",
            "sarif",
            "--account",
            ACCOUNT,
            "--account",
            "210987654321",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<String> = sarif_validator()
        .iter_errors(&log)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), flat.len() + 1);
    let unknown = results
        .iter()
        .find(|r| r["properties"]["account"] == "210987654321")
        .unwrap();
    assert_eq!(
        (unknown["ruleId"].as_str(), unknown["level"].as_str()),
        (Some("AwsAccessDenied"), Some("note"))
    );
    let any = results
        .iter()
        .find(|r| r["properties"]["roleArn"] == role_arn("any-0"))
        .unwrap();
    assert_eq!(any["level"], "error");
    assert_eq!(
        any["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
        role_arn("any-0")
    );

    // The table: one row per reported role.
    let out = audit(&cluster, &aws.url, &[]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "ROLE",
            "SERVICEACCOUNTS",
            "ASSOCIATIONS",
            "PATTERNS",
            "FINDINGS"
        ]
    );
    assert_eq!(rows.len(), 46, "{table}");
    let exact = rows.iter().find(|r| r[0] == role_arn("exact-3")).unwrap();
    assert_eq!(exact[1..], ["reports/app-3", "<none>", "<none>", "<none>"]);
    let ns = rows.iter().find(|r| r[0] == role_arn("ns-1")).unwrap();
    assert_eq!(
        ns[1..],
        [
            "team-a/alpha,team-a/beta,team-a/default",
            "<none>",
            "namespace:team-a",
            "TrustPolicyAdmitsWholeNamespace,TrustedRoleUnused"
        ]
    );
}

/// The trust policy EKS Pod Identity's documentation gives, with the actions given.
fn pod_identity_trust(actions: &[&str]) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": actions}]})
    .to_string()
}

/// `irsa-doctor` with `args`, the cluster's kubeconfig, moto and the EKS stand-in.
fn irsa_doctor(cluster: &Cluster, aws_url: &str, eks_url: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args(["--issuer", cluster.issuer(), "--cluster-name", "test"])
        .env_remove("KUBECONFIG")
        .env("AWS_ENDPOINT_URL_EKS", eks_url);
    aws_env(&mut cmd, aws_url);
    tokio::task::block_in_place(|| cmd.output().unwrap())
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Rows of a kubectl-style table, split on runs of spaces.
fn rows(out: &Output) -> Vec<Vec<String>> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

fn role_names(report: &Value) -> Vec<String> {
    report["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let arn = r["roleArn"].as_str().unwrap();
            arn.rsplit('/').next().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trust_maps_pod_identity_pods_and_selections() {
    let cluster = Cluster::start(ClusterOptions {
        without_node: true,
        webhook: Some(control_plane::webhook::WebhookOptions::default()),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    admin
        .iam
        .create_open_id_connect_provider()
        .url(cluster.issuer())
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .unwrap();
    let hp = cluster.issuer().trim_start_matches("https://").to_string();
    let sub = |subject: &str| json!({"StringEquals": {format!("{hp}:sub"): subject, format!("{hp}:aud"): "sts.amazonaws.com"}});
    let roles = [
        (
            "irsa-web",
            web_identity(&hp, sub("system:serviceaccount:shop:web")),
        ),
        // The namespace in upper case: nothing can be called that.
        (
            "typo",
            web_identity(&hp, sub("system:serviceaccount:Shop:web")),
        ),
        (
            "pi-ok",
            pod_identity_trust(&["sts:AssumeRole", "sts:TagSession"]),
        ),
        ("pi-untagged", pod_identity_trust(&["sts:AssumeRole"])),
    ];
    for (name, policy) in &roles {
        admin
            .iam
            .create_role()
            .role_name(*name)
            .assume_role_policy_document(policy)
            .send()
            .await
            .unwrap();
    }
    let client = cluster.client();
    for ns in ["shop", "ops"] {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    for (ns, name, team, role) in [
        ("shop", "web", Some("shop"), Some("irsa-web")),
        ("shop", "checkout", Some("shop"), None),
        ("shop", "broken", None, None),
        ("ops", "tool", Some("ops"), Some("typo")),
    ] {
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name,
            "labels": team.map(|t| json!({"team": t})).unwrap_or(json!({})),
            "annotations": role.map(|r| json!({"eks.amazonaws.com/role-arn": role_arn(r)})).unwrap_or(json!({}))}}))
        .unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &sa)
            .await
            .unwrap();
    }
    // Deployments whose ReplicaSets' pods stay Pending (no node): live pods all the same.
    for (name, replicas) in [("web", 2), ("checkout", 1)] {
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"serviceAccountName": name, "containers": [{"name": "app", "image": "app"}]}}}}))
        .unwrap();
        Api::<Deployment>::namespaced(client.clone(), "shop")
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    eventually(
        "the Deployments' 3 pods",
        std::time::Duration::from_secs(60),
        async || {
            let n = pods
                .list_metadata(&ListParams::default())
                .await
                .ok()?
                .items
                .len();
            (n == 3).then_some(())
        },
    )
    .await;
    let eks = Eks::start("test", ACCOUNT);
    eks.associate("shop", "checkout", &role_arn("pi-ok"));
    eks.associate("shop", "broken", &role_arn("pi-untagged"));
    eks.install_addon("eks-pod-identity-agent");

    // The map: Pod Identity roles with the associations that use them, evaluated.
    let out = irsa_doctor(
        &cluster,
        &aws.url,
        &eks.url,
        &["audit", "trust", "-o", "json"],
    );
    let report = json_of(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["podIdentity"], json!({"associations": 2}));
    let by_name: BTreeMap<String, &Value> = role_names(&report)
        .into_iter()
        .zip(report["roles"].as_array().unwrap())
        .collect();
    let pi_ok = by_name["pi-ok"];
    assert_eq!(pi_ok["trustsPodIdentity"], true);
    assert_eq!(pi_ok["associations"][0]["serviceAccount"], "shop/checkout");
    assert_eq!(pi_ok["associations"][0]["admitted"], true);
    assert_eq!(summary(pi_ok).2, Vec::<String>::new());
    let untagged = by_name["pi-untagged"];
    assert_eq!(untagged["associations"][0]["admitted"], false);
    assert_eq!(summary(untagged).2, ["PodIdentityTrustMissingTagSession"]);
    let typo = summary(by_name["typo"]).2;
    assert!(
        typo.contains(&"TrustedSubjectInvalid".to_string())
            && typo.contains(&"TrustPolicyAdmitsNoServiceAccount".to_string())
            && typo.contains(&"TrustPolicySubjectMismatch".to_string())
            && !typo.contains(&"TrustedServiceAccountMissing".to_string()),
        "{typo:?}"
    );
    let typo_findings = by_name["typo"]["findings"].to_string();
    assert!(typo_findings.contains("shop/web"), "{typo_findings}");
    // Associations listed once for the cluster (the stand-in pages one at a time), each
    // described once.
    assert_eq!(report["awsCalls"]["eks:ListPodIdentityAssociations"], 2);
    assert_eq!(report["awsCalls"]["eks:DescribePodIdentityAssociation"], 2);

    // Graphviz parses and lays out the graph; it has the roles, ServiceAccounts, workloads.
    let out = irsa_doctor(
        &cluster,
        &aws.url,
        &eks.url,
        &["audit", "trust", "-o", "dot"],
    );
    let dot = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        dot.starts_with("digraph ") && dot.trim_end().ends_with('}'),
        "{dot}"
    );
    assert_eq!(dot.matches("digraph").count(), 1);
    let checked = {
        let mut child = Command::new("dot-check")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("dot-check on PATH (make tools)");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dot.as_bytes())
            .unwrap();
        tokio::task::block_in_place(|| child.wait_with_output().unwrap())
    };
    assert!(
        checked.status.success(),
        "{}\n{dot}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let counts: Value = serde_json::from_slice(&checked.stdout).unwrap();
    // 4 roles, 4 ServiceAccounts, 2 workloads; 4 links, 2 workload edges.
    assert_eq!(counts, json!({"nodes": 10, "edges": 6}), "{dot}");
    assert!(dot.contains(r#"shop/Deployment/web\n2 pods"#), "{dot}");
    assert!(
        dot.contains("color=red, fontcolor=red, style=bold"),
        "{dot}"
    );

    // CSV: one record per role, ServiceAccount and pod.
    let out = irsa_doctor(
        &cluster,
        &aws.url,
        &eks.url,
        &["audit", "trust", "-o", "csv"],
    );
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let of = |role: &str| -> Vec<(String, String)> {
        records
            .iter()
            .filter(|r| r[0] == role_arn(role))
            .map(|r| (r[1].to_string(), r[8].to_string()))
            .collect()
    };
    let web = of("irsa-web");
    assert_eq!(web.len(), 2, "{records:?}");
    assert!(web
        .iter()
        .all(|(m, pod)| m == "irsa" && pod.starts_with("web-")));
    assert_eq!(of("pi-ok")[0].0, "pod-identity");
    assert!(of("pi-ok")[0].1.starts_with("checkout-"));
    // shop/broken has no pod: one record, pod empty.
    assert_eq!(
        of("pi-untagged"),
        [("pod-identity".to_string(), String::new())]
    );

    // One row per pod.
    let out = irsa_doctor(
        &cluster,
        &aws.url,
        &eks.url,
        &["audit", "trust", "-o", "pods"],
    );
    let pod_rows = rows(&out);
    assert_eq!(
        pod_rows[0],
        [
            "NAMESPACE",
            "POD",
            "WORKLOAD",
            "SERVICEACCOUNT",
            "MECHANISM",
            "ROLE",
            "TRUST"
        ]
    );
    assert_eq!(pod_rows.len(), 4, "{pod_rows:?}");
    assert!(pod_rows[1..].iter().all(|r| r[6] == "admitted"));

    // -o wide: the pods and workloads that use each role.
    let out = irsa_doctor(
        &cluster,
        &aws.url,
        &eks.url,
        &["audit", "trust", "-o", "wide"],
    );
    let wide = rows(&out);
    assert_eq!(wide[0][5..], ["PODS", "WORKLOADS"]);
    let row = |role: &str| {
        wide.iter()
            .find(|r| r[0] == role_arn(role))
            .unwrap_or_else(|| panic!("{role}: {wide:?}"))
            .clone()
    };
    assert_eq!(row("irsa-web")[5..], ["2", "1"]);
    assert_eq!(row("pi-ok")[5..], ["1", "1"]);
    assert_eq!(row("pi-untagged")[5..], ["0", "0"]);

    // Selectors, as kubectl's: the roles linked to the selected ServiceAccounts.
    let selected = |args: &[&str]| {
        let mut all = vec!["audit", "trust", "-o", "json"];
        all.extend(args);
        role_names(&json_of(&irsa_doctor(&cluster, &aws.url, &eks.url, &all)))
    };
    assert_eq!(selected(&["-l", "team=shop"]), ["irsa-web", "pi-ok"]);
    assert_eq!(selected(&["-l", "team=ops"]), ["typo"]);
    assert_eq!(
        selected(&["--field-selector", "metadata.name=broken"]),
        ["pi-untagged"]
    );
    let bad = irsa_doctor(
        &cluster,
        &aws.url,
        &eks.url,
        &["audit", "trust", "-l", "team in ("],
    );
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("-l \"team in (\""), "{stderr}");

    // check: the same selectors, and pods and workloads per ServiceAccount in -o wide.
    let out = irsa_doctor(
        &cluster,
        &aws.url,
        &eks.url,
        &[
            "check",
            "-n",
            "shop",
            "-l",
            "team=shop",
            "-o",
            "wide",
            "--skip-node-check",
        ],
    );
    let checked = rows(&out);
    assert_eq!(checked[0][5..7], ["PODS", "WORKLOADS"], "{checked:?}");
    let names: Vec<(&str, &str, &str)> = checked[1..]
        .iter()
        .map(|r| (r[1].as_str(), r[5].as_str(), r[6].as_str()))
        .collect();
    assert_eq!(
        names,
        [("checkout", "1", "1"), ("web", "2", "1")],
        "{checked:?}"
    );

    // The cluster's setup on one screen: associations without a Ready agent are missing.
    let out = irsa_doctor(
        &cluster,
        &aws.url,
        &eks.url,
        &["audit", "cluster", "-o", "json"],
    );
    let setup = json_of(&out);
    assert_eq!(out.status.code(), Some(1), "{setup}");
    assert_eq!(setup["issuer"]["url"], cluster.issuer());
    assert_eq!(
        setup["oidcProvider"]["thumbprints"],
        json!(["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"])
    );
    assert_eq!(setup["agentAddon"]["installed"], true);
    assert_eq!(setup["associations"], 2);
    assert_eq!(setup["irsa"]["status"], "Ready", "{setup}");
    assert_eq!(setup["podIdentity"]["status"], "Missing", "{setup}");
    assert!(setup["podIdentity"]["missing"][0]
        .as_str()
        .unwrap()
        .contains("Agent"));
}
