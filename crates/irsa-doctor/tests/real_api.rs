//! What only a real API server can say: the CRD's schema and CEL rules compile and refuse bad
//! IrsaChecks with their messages, every object the chart renders is accepted, a verb missing
//! from the operator's RBAC is refused (403) and reported, and Event notes fit the 1,024-byte
//! limit.

mod common;

use std::time::Duration;

use common::*;
use irsa_aws::Clients;
use irsa_doctor::api::{IrsaCheck, IrsaCheckSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, PostParams};
use serde_json::json;
use test_support::cluster::{helm_template, kubectl_apply};

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_refuses_bad_checks_and_the_chart_is_accepted() {
    // Cluster::start installs the chart (default values, CRD included) with kubectl apply
    // --server-side, and fails on any object the API server refuses.
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let client = cluster.client();
    namespace(&client, "reports").await;
    namespace(&client, "payments").await;
    let applied = kubectl_apply(
        cluster.kubeconfig_path(),
        &helm_template(&["watchNamespaces={reports,payments}".to_string()], true).unwrap(),
    )
    .unwrap();
    for object in [
        "role.rbac.authorization.k8s.io/irsa-doctor",
        "rolebinding.rbac.authorization.k8s.io/irsa-doctor",
    ] {
        assert!(applied.contains(object), "{applied}");
    }

    let checks: Api<IrsaCheck> = Api::namespaced(client.clone(), "reports");
    let refused = async |spec: serde_json::Value| -> String {
        let spec: IrsaCheckSpec = serde_json::from_value(spec).unwrap();
        match checks
            .create(&PostParams::default(), &IrsaCheck::new("x", spec))
            .await
        {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{s:?}");
                s.message
            }
            other => panic!("accepted: {other:?}"),
        }
    };
    let m = refused(json!({"serviceAccountName": "api", "interval": "30s"})).await;
    assert!(
        m.contains("spec.interval") && m.contains("must be at least 1m"),
        "{m}"
    );
    let m = refused(json!({"serviceAccountName": "Bad_Name"})).await;
    assert!(m.contains("spec.serviceAccountName"), "{m}");
    let m = refused(json!({"serviceAccountName": "api", "interval": "1 hour"})).await;
    assert!(m.contains("spec.interval"), "{m}");
    let m =
        refused(json!({"serviceAccountName": "api", "probe": {"enabled": true, "timeout": "20m"}}))
            .await;
    assert!(m.contains("must be from 10s to 15m"), "{m}");
    let ok: IrsaCheckSpec =
        serde_json::from_value(json!({"serviceAccountName": "api", "interval": "1h30m"})).unwrap();
    let created = checks
        .create(&PostParams::default(), &IrsaCheck::new("ok", ok))
        .await
        .unwrap();
    assert_eq!(
        created.spec.probe.timeout, "2m",
        "the schema's defaults apply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verb_missing_from_rbac_is_refused_and_reported_then_recovers() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    setup(&cluster, &admin).await;
    let client = cluster.client();
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let mut role = roles.get("irsa-doctor").await.unwrap();
    let full = role.rules.clone();
    role.rules.as_mut().unwrap().retain(|r| {
        !r.resources
            .iter()
            .flatten()
            .any(|res| res == "irsachecks/status")
    });
    role.metadata.managed_fields = None;
    roles
        .replace("irsa-doctor", &PostParams::default(), &role)
        .await
        .unwrap();
    let op = start_operator(&cluster, &aws.url, &["--leader-election", "false"]);
    create_check(&client, "good", "s3-reader").await;
    let errors = eventually(
        "a reported status-write failure",
        Duration::from_secs(30),
        async || {
            let (_, body) = get(&op.metrics, "/metrics").await?;
            body.lines()
                .find(|l| l.starts_with("irsa_doctor_reconcile_errors_total{kind=\"irsacheck\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .filter(|n| *n > 0)
        },
    )
    .await;
    assert!(errors > 0);
    let refused = cluster.requests_from("irsa-doctor/");
    assert!(
        refused.contains_key(&(
            "irsa-doctor.io".into(),
            "irsachecks/status".into(),
            "patch".into()
        )),
        "{refused:?}"
    );
    assert!(checks_api(&client, "reports")
        .get("good")
        .await
        .unwrap()
        .status
        .is_none());
    // The operator keeps running and writes as soon as the verb is granted again.
    role.rules = full;
    role.metadata.resource_version = None;
    roles
        .replace("irsa-doctor", &PostParams::default(), &role)
        .await
        .unwrap();
    let good = diagnosed(&checks_api(&client, "reports"), "good").await;
    assert_eq!(
        ready_of(&good),
        Some(("True".into(), "AllChecksPassed".into()))
    );
    assert_rbac_covers(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_warning_fits_the_event_note_limit() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let aws = moto::Moto::start();
    let admin = Clients::new(&aws.loader().load().await);
    bootstrap_cluster(&cluster).await;
    create_provider(&cluster, &admin).await;
    // A user ARN of 1,500 characters where a role ARN belongs: the RoleArnMalformed message
    // quotes the value, so it is far longer than an Event note may be.
    let annotation = format!("arn:aws:iam::{ACCOUNT}:user/{}", "a".repeat(1500));
    let client = cluster.client();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "verbose",
        "annotations": {"eks.amazonaws.com/role-arn": annotation}}}))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "reports")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let _op = start_operator(&cluster, &aws.url, &["--leader-election", "false"]);
    let warning = eventually(
        "the Warning on verbose",
        Duration::from_secs(30),
        async || {
            events_for(&client, "ServiceAccount", "verbose")
                .await
                .into_iter()
                .find(|e| e.type_.as_deref() == Some("Warning"))
        },
    )
    .await;
    let note = warning.message.unwrap_or_default();
    assert_eq!(warning.reason.as_deref(), Some("RoleArnMalformed"));
    assert!(
        note.len() <= 1024 && note.ends_with('…'),
        "{} bytes: {note}",
        note.len()
    );
}

/// `irsaCheckQuota`: the chart's ResourceQuota in each watched namespace is accepted by the API
/// server and, once the quota controller has counted, admits that many IrsaChecks and no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_caps_irsachecks_per_namespace() {
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let client = cluster.client();
    namespace(&client, "tenant").await;
    let applied = kubectl_apply(
        cluster.kubeconfig_path(),
        &helm_template(
            &[
                "watchNamespaces={tenant}".to_string(),
                "irsaCheckQuota=2".to_string(),
            ],
            true,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        applied.contains("resourcequota/irsa-doctor-irsachecks"),
        "{applied}"
    );
    let started = std::time::Instant::now();
    let checks: Api<IrsaCheck> = Api::namespaced(client.clone(), "tenant");
    let spec: IrsaCheckSpec = serde_json::from_value(json!({"serviceAccountName": "api"})).unwrap();
    let mut created = 0;
    // The quota refuses everything ("status unknown for quota") until the controller has
    // discovered the CRD and counted.
    let refused = eventually(
        "the third check refused",
        Duration::from_secs(120),
        async || match checks
            .create(
                &PostParams::default(),
                &IrsaCheck::new(&format!("c{created}"), spec.clone()),
            )
            .await
        {
            Ok(_) => {
                created += 1;
                assert!(
                    created <= 2,
                    "a third IrsaCheck admitted past irsaCheckQuota=2"
                );
                None
            }
            Err(kube::Error::Api(s)) if s.message.contains("exceeded quota") => Some(s.message),
            Err(_) => None,
        },
    )
    .await;
    eprintln!(
        "quota enforced {:.1} s after the chart was applied",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(created, 2);
    assert!(
        refused.contains("count/irsachecks.irsa-doctor.io"),
        "{refused}"
    );
}
