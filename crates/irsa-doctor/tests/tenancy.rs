//! End to end, the operator as a shared service of many namespaces (issue 13), on a real
//! kube-apiserver with the chart's RBAC and moto:
//!
//! - a namespace cannot use the operator as an IAM oracle: a role that does not trust the
//!   ServiceAccount is not described in its Events or status, and its permissions are not
//!   simulated; with `--allowed-role-arns`, a role outside the patterns is not even looked up;
//! - one namespace's hanging probes do not stall another namespace's checks.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use control_plane::node::{KubeletOptions, Script, ScriptFn};
use futures::StreamExt;
use irsa_aws::Clients;
use irsa_doctor::api::{IrsaCheck, IrsaCheckSpec};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};

/// What another cluster's provider, another namespace's subject and the statement's Sid look
/// like in the victim roles' trust policies: none may reach the nosy namespace.
const SECRETS: [&str; 4] = [
    "secret-app",
    "other:",
    "OTHERCLUSTER0000000000000000000",
    "TeamSecret",
];

const OTHER_ISSUER: &str = "oidc.eks.eu-west-1.amazonaws.com/id/OTHERCLUSTER0000000000000000000";

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn service_account(client: &kube::Client, ns: &str, name: &str, role_arn: &str) {
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name,
        "annotations": {"eks.amazonaws.com/role-arn": role_arn}}}))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
}

async fn check(client: &kube::Client, ns: &str, name: &str, spec: Value) {
    let spec: IrsaCheckSpec = serde_json::from_value(spec).unwrap();
    checks_api(client, ns)
        .create(&PostParams::default(), &IrsaCheck::new(name, spec))
        .await
        .unwrap();
}

/// An hourly check of `sa` without the probe, asking for one permission.
fn with_permissions(sa: &str) -> Value {
    json!({"serviceAccountName": sa, "interval": "1h", "probe": {"enabled": false},
        "permissions": [{"action": "s3:GetObject", "resource": "arn:aws:s3:::reports/*"}]})
}

async fn create_role(admin: &Clients, path: &str, name: &str, trust: Value) -> String {
    admin
        .iam
        .create_role()
        .path(path)
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap()
        .role()
        .unwrap()
        .arn()
        .to_string()
}

fn web_identity(provider_host_path: &str, sid: &str, subject: &str) -> Value {
    json!({"Sid": sid, "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{provider_host_path}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{provider_host_path}:sub"): subject}}})
}

/// The operator's AWS calls of one operation, whatever their outcome.
async fn aws_calls(op: &Operator, operation: &str) -> u64 {
    let (_, metrics) = get(&op.metrics, "/metrics").await.expect("metrics");
    metrics
        .lines()
        .filter(|l| l.starts_with("irsa_doctor_aws_calls_total{"))
        .filter(|l| l.contains(&format!("operation=\"{operation}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn ready(op: &Operator) {
    eventually("readiness", Duration::from_secs(30), async || {
        get(&op.metrics, "/readyz").await.filter(|(c, _)| *c == 200)
    })
    .await;
}

/// Waits until the check has a Ready condition; returns it with the whole status as JSON.
async fn diagnosed_in(client: &kube::Client, ns: &str, name: &str) -> ((String, String), String) {
    let checks = checks_api(client, ns);
    let c = eventually(
        &format!("{ns}/{name} to be diagnosed"),
        Duration::from_secs(60),
        async || {
            checks
                .get(name)
                .await
                .ok()
                .filter(|c| ready_of(c).is_some())
        },
    )
    .await;
    (
        ready_of(&c).unwrap(),
        serde_json::to_string(&c.status).unwrap(),
    )
}

/// The notes of the Events about one object of `ns`, once there is one.
async fn event_notes(client: &kube::Client, ns: &str, kind: &str, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let fields = format!("involvedObject.kind={kind},involvedObject.name={name}");
    eventually(
        &format!("an Event on {kind} {ns}/{name}"),
        Duration::from_secs(30),
        async || {
            let items = events
                .list(&ListParams::default().fields(&fields))
                .await
                .ok()?
                .items;
            (!items.is_empty()).then(|| {
                items
                    .into_iter()
                    .map(|e| e.message.unwrap_or_default())
                    .collect()
            })
        },
    )
    .await
}

fn assert_no_secrets(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret:?} in {what}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_does_not_trust_the_service_account_is_not_described_simulated_or_looked_up() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    let client = cluster.client();
    let host_path = create_provider(&cluster, &admin).await;
    for ns in ["tenant", "tenant2"] {
        namespace(&client, ns).await;
    }
    // Roles meant for someone else: another cluster's provider, another namespace's subject.
    let other_cluster = create_role(
        &admin,
        "/",
        "victim-other-cluster",
        json!({"Version": "2012-10-17", "Statement": [
            web_identity(OTHER_ISSUER, "TeamSecret", "system:serviceaccount:other:secret-app")]}),
    )
    .await;
    let other_subject = create_role(
        &admin,
        "/",
        "victim-other-subject",
        json!({"Version": "2012-10-17", "Statement": [
            web_identity(&host_path, "TeamSecret", "system:serviceaccount:other:secret-app")]}),
    )
    .await;
    // A role for the tenant, under the path the allow-list admits.
    let good = create_role(
        &admin,
        "/irsa/",
        "good",
        json!({"Version": "2012-10-17", "Statement": [
            web_identity(&host_path, "Tenant", "system:serviceaccount:tenant:good")]}),
    )
    .await;
    service_account(&client, "tenant", "nosy-a", &other_cluster).await;
    service_account(&client, "tenant", "nosy-b", &other_subject).await;
    service_account(&client, "tenant", "good", &good).await;

    // The operator as installed: any role may be named.
    let op = start_operator(
        &cluster,
        &aws.url,
        &["--leader-election", "false", "--namespaces", "tenant"],
    );
    ready(&op).await;
    check(&client, "tenant", "nosy-a", with_permissions("nosy-a")).await;
    check(&client, "tenant", "nosy-b", with_permissions("nosy-b")).await;
    for (name, reason) in [
        ("nosy-a", "TrustPolicyProviderMismatch"),
        ("nosy-b", "TrustPolicySubjectMismatch"),
    ] {
        let (ready, status) = diagnosed_in(&client, "tenant", name).await;
        assert_eq!(ready, ("False".to_string(), reason.to_string()), "{status}");
        assert_no_secrets(&format!("the status of {name}"), &status);
        assert!(
            status.contains("NotEvaluated")
                && status.contains("does not admit this ServiceAccount"),
            "says that the permissions were not simulated: {status}"
        );
        for kind in ["IrsaCheck", "ServiceAccount"] {
            for note in event_notes(&client, "tenant", kind, name).await {
                assert_no_secrets(&format!("an Event on {kind} {name}"), &note);
            }
        }
    }
    // For a provider mismatch, the finding names the provider this cluster expects; for a
    // subject mismatch, the subject it refuses: this ServiceAccount's own.
    let (_, status) = diagnosed_in(&client, "tenant", "nosy-a").await;
    assert!(
        status.contains(&format!("oidc-provider/{host_path}")),
        "{status}"
    );
    let (_, status) = diagnosed_in(&client, "tenant", "nosy-b").await;
    assert!(
        status.contains("system:serviceaccount:tenant:nosy-b"),
        "{status}"
    );
    assert!(aws_calls(&op, "GetRole").await > 0);
    assert_eq!(
        aws_calls(&op, "SimulatePrincipalPolicy").await,
        0,
        "permissions of roles that do not trust the ServiceAccount were simulated"
    );
    // The counter does count: a role that trusts its ServiceAccount gets its permissions
    // simulated (moto does not implement the call; the attempt is what counts here).
    check(&client, "tenant", "good", with_permissions("good")).await;
    diagnosed_in(&client, "tenant", "good").await;
    assert!(aws_calls(&op, "SimulatePrincipalPolicy").await > 0);
    // With every feature off, the operator calls only what deploy/iam-policy.json grants.
    assert_aws_calls_within(&op, &[irsa_aws::CORE_ACTIONS]).await;
    drop(op);

    // With an allow-list, a role outside it is not looked up at all.
    service_account(&client, "tenant2", "nosy", &other_subject).await;
    let op = start_operator(
        &cluster,
        &aws.url,
        &[
            "--leader-election",
            "false",
            "--namespaces",
            "tenant2",
            "--allowed-role-arns",
            "arn:aws:iam::*:role/irsa/*",
        ],
    );
    ready(&op).await;
    check(&client, "tenant2", "nosy", with_permissions("nosy")).await;
    let (ready_nosy, status) = diagnosed_in(&client, "tenant2", "nosy").await;
    assert_eq!(
        ready_nosy,
        ("False".to_string(), "RoleNotAllowed".to_string()),
        "{status}"
    );
    assert!(status.contains("arn:aws:iam::*:role/irsa/*"), "{status}");
    assert_no_secrets("the status of tenant2/nosy", &status);
    // A few sweeps and diagnoses later, still nothing asked about it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for operation in [
        "GetRole",
        "ListOpenIDConnectProviders",
        "SimulatePrincipalPolicy",
    ] {
        assert_eq!(
            aws_calls(&op, operation).await,
            0,
            "{operation} for a role outside --allowed-role-arns"
        );
    }
    // An annotation that is not a role ARN is admitted by no pattern: no probe pod runs as
    // whatever it names.
    service_account(&client, "tenant2", "odd", "role/irsa/odd").await;
    check(
        &client,
        "tenant2",
        "odd",
        json!({"serviceAccountName": "odd", "interval": "1h", "probe": {"enabled": true}}),
    )
    .await;
    diagnosed_in(&client, "tenant2", "odd").await;
    let (_, metrics) = get(&op.metrics, "/metrics").await.expect("metrics");
    let probes: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("irsa_doctor_probe_runs_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        probes, 0.0,
        "a probe ran for a role outside --allowed-role-arns"
    );
    // A role inside the patterns is looked up as usual.
    service_account(&client, "tenant2", "good", &good).await;
    check(&client, "tenant2", "good", with_permissions("good")).await;
    diagnosed_in(&client, "tenant2", "good").await;
    assert!(aws_calls(&op, "GetRole").await > 0);
    assert_rbac_covers(&cluster);
}

/// 500 checks of one namespace whose probe pods hang: the namespace holds its share of the probe
/// slots (2 of 4), never more; a probe-less check of another namespace is still diagnosed within
/// seconds (it used to wait for the probes' 10-minute timeouts, every reconcile slot being held
/// by a check waiting for a probe slot), and a probed one gets its probe pod within seconds, not
/// after a 10-minute probe timeout (it used to find every slot taken by the flood).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_probes_of_one_namespace_do_not_stall_another() {
    const FLOOD: usize = 500;
    let hang_probes: ScriptFn = Arc::new(|pod: &Value| {
        (!pod["metadata"]["labels"]["irsa-doctor.io/probe"].is_null()).then_some(Script::Hang)
    });
    let cluster = Cluster::start(ClusterOptions {
        node: KubeletOptions {
            extra_env: Vec::new(),
            script: Some(hang_probes),
            ..KubeletOptions::default()
        },
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    let client = cluster.client();
    let host_path = create_provider(&cluster, &admin).await;
    let mut statements = Vec::new();
    for ns in ["flood", "calm"] {
        namespace(&client, ns).await;
        statements.push(web_identity(
            &host_path,
            ns,
            &format!("system:serviceaccount:{ns}:app"),
        ));
    }
    let role = create_role(
        &admin,
        "/",
        "app",
        json!({"Version": "2012-10-17", "Statement": statements}),
    )
    .await;
    for ns in ["flood", "calm"] {
        service_account(&client, ns, "app", &role).await;
    }
    let op = start_operator(&cluster, &aws.url, &["--leader-election", "false"]);
    ready(&op).await;

    let created = Instant::now();
    futures::stream::iter(0..FLOOD)
        .map(|i| {
            let client = client.clone();
            async move {
                check(
                    &client,
                    "flood",
                    &format!("probe-{i}"),
                    json!({"serviceAccountName": "app", "interval": "1m",
                        "probe": {"enabled": true, "timeout": "10m"}}),
                )
                .await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!(
        "{FLOOD} probe-enabled IrsaChecks created in {} ms",
        created.elapsed().as_millis()
    );
    // The flood's share of the probe slots is taken by hanging probe pods.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "flood");
    let probe_pods = ListParams::default().labels("irsa-doctor.io/probe=true");
    eventually(
        "2 hanging probe pods, the namespace's share",
        Duration::from_secs(60),
        async || {
            let n = pods.list(&probe_pods).await.ok()?.items.len();
            (n == 2).then_some(())
        },
    )
    .await;

    let asked = Instant::now();
    check(
        &client,
        "calm",
        "app",
        json!({"serviceAccountName": "app", "interval": "1m", "probe": {"enabled": false}}),
    )
    .await;
    let calm = checks_api(&client, "calm");
    let calm_ready = eventually(
        "the calm namespace's check to be diagnosed",
        Duration::from_secs(60),
        async || calm.get("app").await.ok().and_then(|c| ready_of(&c)),
    )
    .await;
    let took = asked.elapsed();
    eprintln!(
        "calm/app diagnosed {} ms after its creation, with {FLOOD} checks of another namespace \
         waiting for 2 hanging probes",
        took.as_millis()
    );
    assert_eq!(
        calm_ready,
        ("True".to_string(), "AllChecksPassed".to_string())
    );
    assert!(
        took < Duration::from_secs(10),
        "the calm check waited {took:?}"
    );

    // A probed check of the calm namespace gets a slot while the flood's checks keep asking.
    let asked = Instant::now();
    check(
        &client,
        "calm",
        "probed",
        json!({"serviceAccountName": "app", "interval": "1m",
            "probe": {"enabled": true, "timeout": "10m"}}),
    )
    .await;
    let calm_pods: Api<Pod> = Api::namespaced(client.clone(), "calm");
    eventually(
        "the calm namespace's probe pod",
        Duration::from_secs(60),
        async || (calm_pods.list(&probe_pods).await.ok()?.items.len() == 1).then_some(()),
    )
    .await;
    let took = asked.elapsed();
    eprintln!(
        "calm/probed's probe pod created {} ms after the check, with {FLOOD} checks of another \
         namespace asking for probe slots",
        took.as_millis()
    );
    assert!(
        took < Duration::from_secs(20),
        "the calm probe waited {took:?}"
    );

    // The flood's checks got their static diagnosis, the probe pending; never more than 4
    // probe pods at once.
    let flood = checks_api(&client, "flood");
    let pending = eventually(
        "the flood's checks to report their probe pending",
        Duration::from_secs(120),
        async || {
            let list = flood.list(&ListParams::default()).await.ok()?.items;
            let pending = list
                .iter()
                .filter(|c| {
                    c.status.as_ref().is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|c| c.type_ == "ProbeSucceeded" && c.reason == "ProbePending")
                    })
                })
                .count();
            (pending >= FLOOD - 2).then_some(pending)
        },
    )
    .await;
    eprintln!("{pending} flood checks report ProbePending");
    assert_eq!(pods.list(&probe_pods).await.unwrap().items.len(), 2);
    assert_rbac_covers(&cluster);
}

/// One check cannot spend the operator's IAM budget: more than 50 distinct permissions are not
/// simulated at all (the finding says so); 50 are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_check_has_at_most_fifty_permissions_simulated() {
    use irsa_aws::{AwsFacts, AwsFactsConfig};
    use irsa_core::{diagnose, ConditionType, Fact, Issuer, Reason};
    use irsa_doctor::gather::{gather_within, MAX_PERMISSIONS_PER_CHECK};

    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    let issuer = Issuer::parse(
        "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
    )
    .unwrap();
    admin
        .iam
        .create_open_id_connect_provider()
        .url(issuer.url())
        .client_id_list("sts.amazonaws.com")
        .send()
        .await
        .unwrap();
    let role = create_role(
        &admin,
        "/",
        "app",
        json!({"Version": "2012-10-17", "Statement": [
            web_identity(issuer.host_path(), "App", "system:serviceaccount:team:app")]}),
    )
    .await;
    let facts = AwsFacts::from_loader(aws.loader(), &AwsFactsConfig::default()).await;
    let sa = irsa_core::ServiceAccount {
        namespace: "team".into(),
        name: "app".into(),
        annotations: [("eks.amazonaws.com/role-arn".to_string(), role)].into(),
        ..Default::default()
    };
    let simulations = || facts.call_stats().calls("SimulatePrincipalPolicy");
    for (n, simulated) in [
        (MAX_PERMISSIONS_PER_CHECK + 1, false),
        (MAX_PERMISSIONS_PER_CHECK, true),
    ] {
        let permissions: Vec<Value> = (0..n)
            .map(|i| json!({"action": format!("s3:Action{i}"), "resource": format!("arn:aws:s3:::bucket-{i}/*")}))
            .collect();
        let spec: IrsaCheckSpec = serde_json::from_value(
            json!({"serviceAccountName": "app", "permissions": permissions}),
        )
        .unwrap();
        let before = simulations();
        let gathered = gather_within(
            &facts,
            &Fact::Known(issuer.clone()),
            "team",
            "app",
            Fact::Known(Some(sa.clone())),
            Some(&spec),
            None,
        )
        .await;
        let calls = simulations() - before;
        let report = diagnose(&gathered);
        let permissions = report.condition(ConditionType::PermissionsValid).unwrap();
        eprintln!(
            "{n} permissions: {calls} SimulatePrincipalPolicy calls, {}",
            permissions.reason
        );
        if simulated {
            // moto does not implement the call: the first one fails, and the rest are not made.
            assert!(calls >= 1);
            assert_eq!(permissions.reason, Reason::PermissionCheckUnavailable);
        } else {
            assert_eq!(calls, 0);
            assert_eq!(permissions.reason, Reason::CheckSkipped);
            assert!(
                permissions.message.contains("more than the 50"),
                "{}",
                permissions.message
            );
        }
    }
}
