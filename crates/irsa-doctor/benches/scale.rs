//! Scale benchmark on the real control plane (kube-apiserver, etcd and kube-controller-manager
//! from `make control-plane`): 10,000 annotated ServiceAccounts over
//! 1,000 roles in 100 namespaces, 50,000 pods (Pending: there is no node), 200 IrsaChecks, AWS
//! from moto behind a proxy that adds latency, the real operator running as the chart's
//! ServiceAccount with the chart's RBAC. A second run at 2× ServiceAccounts and 2× pods, and a
//! third at 2× pods only, measure how memory grows. 20 seeded faults say what each tool finds;
//! the manual procedure (`kubectl` + `aws` per ServiceAccount) is timed for comparison. Each
//! figure is printed next to its target and the run exits non-zero when one is missed; the
//! figures are also written to `target/bench/scale.json`.
//!
//! `make bench` (= `cargo bench -p irsa-doctor --bench scale`) runs the full size; under
//! `cargo test` (no `--bench` argument) it runs a small smoke size once, without targets.
//! Options: `--aws-latency-ms N` (default 20), `--aws-rate N` (the operator's `--aws-rate`,
//! default 30: the cold sweep's 1,003 calls then take at least 33 s, so an annotation change
//! lands in the middle of it), `--quick` (one run at a small size), `--one-run` (the full size
//! once, no slopes). To profile the operator: `BENCH_OPERATOR_BIN` (a build with
//! symbols) and `BENCH_OPERATOR_PREFIX` (e.g. `heaptrack -o /tmp/op`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use irsa_aws::Clients;
use irsa_doctor::api::{IrsaCheck, IrsaCheckSpec, ProbeSpec};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use test_support::cluster::{Cluster, ClusterOptions, TestCluster};
use test_support::moto::{slow_proxy, Moto};
use test_support::net::{free_port, get};
use test_support::operator::{aws_env, bootstrap_cluster, checks_api, create_provider, ACCOUNT};

/// The shape of one run.
#[derive(Debug, Clone, Copy)]
struct Size {
    service_accounts: usize,
    roles: usize,
    namespaces: usize,
    pods: usize,
    checks: usize,
}

/// How the benchmark runs.
#[derive(Debug, Clone, Copy)]
struct Setup {
    full: bool,
    latency: Duration,
    aws_rate: u64,
}

fn arg(args: &[String], name: &str) -> Option<u64> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn trust(host_path: &str, subjects: &[String]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{host_path}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{host_path}:sub"): subjects, format!("{host_path}:aud"): "sts.amazonaws.com"}}}]})
}

fn sa_name(i: usize, namespaces: usize) -> (String, String) {
    (format!("ns-{}", i % namespaces), format!("sa-{i}"))
}

fn subject(ns: &str, name: &str) -> String {
    format!("system:serviceaccount:{ns}:{name}")
}

/// The 20 seeded faults: (what, ServiceAccount annotations, its role's trust policy when the
/// fault needs a role of its own, pods without the webhook's injection, the reason expected).
struct Fault {
    what: &'static str,
    reason: &'static str,
}

const FAULTS: [Fault; 20] = [
    Fault {
        what: "trust policy names another ServiceAccount",
        reason: "TrustPolicySubjectMismatch",
    },
    Fault {
        what: "trust policy names another namespace",
        reason: "TrustPolicySubjectMismatch",
    },
    Fault {
        what: "trust policy names the renamed ServiceAccount",
        reason: "TrustPolicySubjectMismatch",
    },
    Fault {
        what: "wrong audience (https://sts.amazonaws.com)",
        reason: "TrustPolicyAudienceMismatch",
    },
    Fault {
        what: "wrong audience (sts.amazonaws.com.cn)",
        reason: "TrustPolicyAudienceMismatch",
    },
    Fault {
        what: "trust names another cluster's provider",
        reason: "TrustPolicyProviderMismatch",
    },
    Fault {
        what: "trust names another region's provider",
        reason: "TrustPolicyProviderMismatch",
    },
    Fault {
        what: "wildcard subject under StringEquals",
        reason: "TrustPolicyWildcardWithoutLike",
    },
    Fault {
        what: "wildcard namespace under StringEquals",
        reason: "TrustPolicyWildcardWithoutLike",
    },
    Fault {
        what: "annotation key misspelled (role_arn)",
        reason: "RoleArnAnnotationKeyMisspelled",
    },
    Fault {
        what: "annotation key misspelled (roleArn)",
        reason: "RoleArnAnnotationKeyMisspelled",
    },
    Fault {
        what: "annotation is a user ARN",
        reason: "RoleArnMalformed",
    },
    Fault {
        what: "annotation has trailing whitespace",
        reason: "RoleArnMalformed",
    },
    Fault {
        what: "role does not exist",
        reason: "RoleNotFound",
    },
    Fault {
        what: "role was deleted",
        reason: "RoleNotFound",
    },
    Fault {
        what: "trust policy for EC2 only",
        reason: "TrustPolicyNoWebIdentityStatement",
    },
    Fault {
        what: "trust policy allows sts:AssumeRole only",
        reason: "TrustPolicyNoWebIdentityStatement",
    },
    Fault {
        what: "condition key with https:// prefix",
        reason: "TrustPolicyConditionKeyMalformed",
    },
    Fault {
        what: "pod without the webhook's variables, no webhook registered",
        reason: "PodIdentityWebhookMissing",
    },
    Fault {
        what: "pods of a Deployment without the webhook's variables, no webhook registered",
        reason: "PodIdentityWebhookMissing",
    },
];

/// GetRole calls the faults cause: 14 roles of their own and 2 that do not exist.
const FAULT_ROLE_LOOKUPS: usize = 16;

/// The namespace and names of the seeded faults' ServiceAccounts.
const FAULT_NS: &str = "faults";

fn fault_sa(k: usize) -> String {
    format!("fault-{k}")
}

/// Creates the fault's ServiceAccount (and role, and pods).
async fn seed_fault(k: usize, client: &kube::Client, admin: &Clients, host_path: &str) {
    let sa = fault_sa(k);
    let me = subject(FAULT_NS, &sa);
    let provider = format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{host_path}");
    let role = format!("fault-role-{k}");
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{role}");
    let web = |condition: Value, principal: &str| {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": principal}, "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition}]})
    };
    let eq = |sub: &str, aud: &str| json!({"StringEquals": {format!("{host_path}:sub"): sub, format!("{host_path}:aud"): aud}});
    let other_cluster = provider.replace("/id/", "/id/0THERC1USTER");
    let other_region = provider.replace("us-east-1", "eu-west-1");
    let (policy, annotations): (Option<Value>, Value) = match k {
        0 => (
            Some(web(
                eq(&subject(FAULT_NS, "someone-else"), "sts.amazonaws.com"),
                &provider,
            )),
            json!({}),
        ),
        1 => (
            Some(web(
                eq(&subject("other", &sa), "sts.amazonaws.com"),
                &provider,
            )),
            json!({}),
        ),
        2 => (
            Some(web(
                eq(&subject(FAULT_NS, "old-name"), "sts.amazonaws.com"),
                &provider,
            )),
            json!({}),
        ),
        3 => (
            Some(web(eq(&me, "https://sts.amazonaws.com"), &provider)),
            json!({}),
        ),
        4 => (
            Some(web(eq(&me, "sts.amazonaws.com.cn"), &provider)),
            json!({}),
        ),
        5 => (
            Some(web(eq(&me, "sts.amazonaws.com"), &other_cluster)),
            json!({}),
        ),
        6 => (
            Some(web(eq(&me, "sts.amazonaws.com"), &other_region)),
            json!({}),
        ),
        7 => (
            Some(web(
                eq(&subject(FAULT_NS, "fault-*"), "sts.amazonaws.com"),
                &provider,
            )),
            json!({}),
        ),
        8 => (
            Some(web(
                eq("system:serviceaccount:*:fault-8", "sts.amazonaws.com"),
                &provider,
            )),
            json!({}),
        ),
        9 => (None, json!({"eks.amazonaws.com/role_arn": role_arn})),
        10 => (None, json!({"eks.amazonaws.com/roleArn": role_arn})),
        11 => (
            None,
            json!({"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:user/{role}")}),
        ),
        12 => (
            None,
            json!({"eks.amazonaws.com/role-arn": format!("{role_arn} ")}),
        ),
        13 => (None, json!({})),
        14 => (None, json!({})),
        15 => (
            Some(
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
            ),
            json!({}),
        ),
        16 => (
            Some(
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Federated": provider}, "Action": "sts:AssumeRole"}]}),
            ),
            json!({}),
        ),
        17 => (
            Some(web(
                json!({"StringEquals": {format!("https://{host_path}:sub"): me, format!("https://{host_path}:aud"): "sts.amazonaws.com"}}),
                &provider,
            )),
            json!({}),
        ),
        _ => (
            Some(web(eq(&me, "sts.amazonaws.com"), &provider)),
            json!({}),
        ),
    };
    if let Some(policy) = &policy {
        admin
            .iam
            .create_role()
            .role_name(&role)
            .assume_role_policy_document(policy.to_string())
            .send()
            .await
            .unwrap();
    }
    let mut annotations = annotations;
    if annotations.as_object().is_some_and(|a| a.is_empty()) {
        annotations = json!({"eks.amazonaws.com/role-arn": role_arn});
    }
    let sa_obj: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": sa, "annotations": annotations}}))
            .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), FAULT_NS)
        .create(&PostParams::default(), &sa_obj)
        .await
        .unwrap();
    // Pods created without the webhook's variables in a cluster with no webhook registered (the
    // operator reads the registrations: "restart them" would not help). Those of
    // fault 19 belong to a ReplicaSet that really exists (the garbage collector would remove
    // pods of a missing owner); no ReplicaSet controller runs, so it leaves them alone.
    if k >= 18 {
        let owner = if k == 19 {
            let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "api-5d8f"},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "api"}},
                "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"serviceAccountName": sa,
                "containers": [{"name": "app", "image": "busybox"}]}}}}))
            .unwrap();
            let rs = Api::<ReplicaSet>::namespaced(client.clone(), FAULT_NS)
                .create(&PostParams::default(), &rs)
                .await
                .unwrap();
            Some(
                json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-5d8f",
                "uid": rs.metadata.uid, "controller": true}]),
            )
        } else {
            None
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), FAULT_NS);
        for p in 0..2 {
            let pod: Pod = serde_json::from_value(json!({"metadata": {"name": format!("{sa}-{p}"), "ownerReferences": owner},
                "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "busybox"}]}}))
            .unwrap();
            pods.create(&PostParams::default(), &pod).await.unwrap();
        }
    }
}

/// Operator log lines (JSON) as they come, and the RSS samples of its process.
struct Watch {
    lines: Arc<Mutex<Vec<Value>>>,
    rss_kib: Arc<Mutex<Vec<u64>>>,
}

fn watch_operator(child: &mut Child) -> Watch {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    let rss_kib = Arc::new(Mutex::new(Vec::new()));
    let samples = rss_kib.clone();
    let pid = child.id();
    std::thread::spawn(move || loop {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return;
        };
        if let Some(kib) = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        {
            samples.lock().unwrap().push(kib);
        }
        std::thread::sleep(Duration::from_millis(100));
    });
    Watch { lines, rss_kib }
}

/// (ServiceAccounts swept, took_ms) of every finished sweep.
fn sweeps(w: &Watch) -> Vec<(u64, u64)> {
    w.lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l["fields"]["message"] == "sweep finished")
        .map(|l| {
            (
                l["fields"]["service_accounts"].as_u64().unwrap_or(0),
                l["fields"]["took_ms"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

async fn aws_calls(metrics_addr: &str) -> BTreeMap<String, u64> {
    let body = get(metrics_addr, "/metrics")
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("irsa_doctor_aws_calls_total{"))
        .filter_map(|l| {
            let op = l
                .split("operation=\"")
                .nth(1)?
                .split('"')
                .next()?
                .to_string();
            let n: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((op, n as u64))
        })
        .fold(BTreeMap::new(), |mut m, (op, n)| {
            *m.entry(op).or_default() += n;
            m
        })
}

type Requests = BTreeMap<(String, String, String), u64>;

fn minus(after: &Requests, before: &Requests) -> Requests {
    after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// What one run measured.
#[derive(Debug, Default, serde::Serialize)]
struct Figures {
    service_accounts: usize,
    pods: usize,
    setup_s: f64,
    cold_sweep_s: f64,
    warm_sweep_s: f64,
    aws_calls_cold: BTreeMap<String, u64>,
    aws_calls_warm: u64,
    peak_rss_kib: u64,
    steady_rss_kib: u64,
    event_latency_ms: Option<u128>,
    sweep_finished_before_the_event: bool,
    requests_cold_sweep: BTreeMap<String, u64>,
    requests_warm_sweep: BTreeMap<String, u64>,
    faults_found: Vec<String>,
}

fn verb_key((g, r, v): &(String, String, String)) -> String {
    format!(
        "{v} {r}{}",
        if g.is_empty() {
            String::new()
        } else {
            format!(".{g}")
        }
    )
}

/// The operator's binary: this build's, or BENCH_OPERATOR_BIN (a build with symbols, to profile).
fn operator_binary() -> std::path::PathBuf {
    std::env::var_os("BENCH_OPERATOR_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_irsa-doctor").into())
}

/// One run: a fresh API server and moto, the objects of `size`, the operator, the figures.
async fn run(size: Size, setup: Setup) -> Figures {
    let moto = Moto::start();
    let moto_port: u16 = moto.url.rsplit(':').next().unwrap().parse().unwrap();
    // The proxy adds IAM-like latency; its own cap sits above the operator's rate, so the
    // operator's limiter is what binds.
    let aws_url = format!(
        "http://127.0.0.1:{}",
        slow_proxy(moto_port, setup.latency, setup.aws_rate * 4).await
    );
    let admin = Clients::new(&moto.loader().load().await);
    let api: Box<dyn TestCluster> = {
        Box::new(
            Cluster::start(ClusterOptions {
                without_node: true,
                ..ClusterOptions::default()
            })
            .await
            .unwrap(),
        )
    };
    let cluster = api.as_ref();
    let client = cluster.client();
    bootstrap_cluster(cluster).await;
    let host_path = create_provider(cluster, &admin).await;
    let started_setup = Instant::now();
    stream::iter(0..size.roles)
        .for_each_concurrent(8, |r| {
            let admin = admin.clone();
            let subjects: Vec<String> = (0..size.service_accounts)
                .filter(|i| i % size.roles == r)
                .map(|i| {
                    let (ns, name) = sa_name(i, size.namespaces);
                    subject(&ns, &name)
                })
                .collect();
            let policy = trust(&host_path, &subjects).to_string();
            async move {
                admin
                    .iam
                    .create_role()
                    .role_name(format!("role-{r}"))
                    .assume_role_policy_document(policy)
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
    for n in (0..size.namespaces)
        .map(|n| format!("ns-{n}"))
        .chain([FAULT_NS.to_string()])
    {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": n}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    stream::iter(0..size.service_accounts)
        .for_each_concurrent(32, |i| {
            let (ns, name) = sa_name(i, size.namespaces);
            let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
            let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name, "annotations": {
                "eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/role-{}", i % size.roles)}}}))
            .unwrap();
            async move {
                api.create(&PostParams::default(), &sa).await.unwrap();
            }
        })
        .await;
    // Pods as the webhook admitted them: the role and the token file are in their environment.
    stream::iter(0..size.pods)
        .for_each_concurrent(32, |p| {
            let i = p % size.service_accounts;
            let (ns, sa) = sa_name(i, size.namespaces);
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let pod: Pod = serde_json::from_value(json!({"metadata": {"name": format!("pod-{p}")}, "spec": {"serviceAccountName": sa,
                "containers": [{"name": "app", "image": "busybox", "env": [
                    {"name": "AWS_ROLE_ARN", "value": format!("arn:aws:iam::{ACCOUNT}:role/role-{}", i % size.roles)},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}]}]}}))
            .unwrap();
            async move {
                api.create(&PostParams::default(), &pod).await.unwrap();
            }
        })
        .await;
    for k in 0..FAULTS.len() {
        seed_fault(k, &client, &admin, &host_path).await;
    }
    for c in 0..size.checks {
        let (ns, sa) = sa_name(c, size.namespaces);
        let spec = IrsaCheckSpec {
            service_account_name: sa,
            interval: "1h".into(),
            expected_role_arn: None,
            permissions: Vec::new(),
            probe: ProbeSpec {
                enabled: false,
                ..ProbeSpec::default()
            },
        };
        checks_api(&client, &ns)
            .create(
                &PostParams::default(),
                &IrsaCheck::new(&format!("check-{c}"), spec),
            )
            .await
            .unwrap();
    }
    let setup_s = started_setup.elapsed().as_secs_f64();
    eprintln!(
        "set-up (kube-apiserver): {} roles, {} ServiceAccounts, {} pods, {} IrsaChecks, {} faults in {setup_s:.1}s",
        size.roles,
        size.service_accounts,
        size.pods,
        size.checks,
        FAULTS.len()
    );

    // The operator, as the chart's ServiceAccount.
    let metrics = format!("127.0.0.1:{}", free_port());
    // BENCH_OPERATOR_PREFIX (e.g. `heaptrack -o /tmp/op`) runs the operator under a profiler;
    // its RSS is then the profiler's, not the operator's.
    let prefix = std::env::var("BENCH_OPERATOR_PREFIX").unwrap_or_default();
    let mut prefix = prefix.split_whitespace();
    let mut cmd = match prefix.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(prefix).arg(operator_binary());
            c
        }
        None => Command::new(operator_binary()),
    };
    cmd.args([
        "run",
        "--leader-election=false",
        "--log-format",
        "json",
        "--metrics-addr",
        &metrics,
        "--sweep-interval",
        if setup.full { "60s" } else { "5s" },
        "--aws-rate",
        &setup.aws_rate.to_string(),
        "--aws-max-concurrency",
        "16",
    ])
    .env("KUBECONFIG", cluster.operator_kubeconfig())
    .env(
        "RUST_LOG",
        std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    aws_env(&mut cmd, &aws_url);
    let started = Instant::now();
    let mut operator = cmd.spawn().unwrap();
    let watch = watch_operator(&mut operator);
    let deadline = started + Duration::from_secs(if setup.full { 600 } else { 180 });
    let swept_total = (size.service_accounts - size.checks + FAULTS.len()) as u64;
    while get(&metrics, "/readyz").await.is_none_or(|(c, _)| c != 200) {
        assert!(Instant::now() < deadline, "the operator never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before_sweep = cluster.requests_from("irsa-doctor/");

    // While the first sweep runs: one annotation change, and how long its Event takes.
    tokio::time::sleep(Duration::from_secs(if setup.full { 5 } else { 0 })).await;
    let (ns, name) = sa_name(size.service_accounts - 1, size.namespaces);
    let changed = Instant::now();
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
            "eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/does-not-exist")}}})),
        )
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let mut event_latency = None;
    let mut sweep_finished_before_the_event = false;
    while changed.elapsed() < Duration::from_secs(60) {
        let list = events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .unwrap();
        if list
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("RoleNotFound"))
        {
            event_latency = Some(changed.elapsed());
            sweep_finished_before_the_event = !sweeps(&watch).is_empty();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let checks_done = async || {
        let body = get(&metrics, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with("irsa_doctor_check_ready{"))
            .count()
            >= size.checks
    };
    let mut cold = None;
    while Instant::now() < deadline {
        if sweeps(&watch).iter().any(|(n, _)| *n + 1 >= swept_total) && checks_done().await {
            cold = Some(sweeps(&watch)[0].1);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cold_ms = cold.expect("the first sweep did not finish in time");
    let after_cold = cluster.requests_from("irsa-doctor/");
    let calls_cold = aws_calls(&metrics).await;
    while sweeps(&watch).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let warm_ms = sweeps(&watch).get(1).map_or(0, |s| s.1);
    let after_warm = cluster.requests_from("irsa-doctor/");
    let calls_warm: u64 =
        aws_calls(&metrics).await.values().sum::<u64>() - calls_cold.values().sum::<u64>();

    // What was found of the seeded faults: a Warning with the expected reason on the
    // ServiceAccount.
    let fault_events: Vec<Event> = Api::<Event>::namespaced(client.clone(), FAULT_NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let faults_found = FAULTS
        .iter()
        .enumerate()
        .filter(|(k, f)| {
            fault_events.iter().any(|e| {
                e.involved_object.name.as_deref() == Some(fault_sa(*k).as_str())
                    && e.reason.as_deref() == Some(f.reason)
            })
        })
        .map(|(_, f)| f.what.to_string())
        .collect();
    let rss = watch.rss_kib.lock().unwrap().clone();
    let _ = operator.kill();
    let _ = operator.wait();
    let per_verb = |r: Requests| r.iter().map(|(k, n)| (verb_key(k), *n)).collect();
    Figures {
        service_accounts: size.service_accounts,
        pods: size.pods,
        setup_s,
        cold_sweep_s: cold_ms as f64 / 1000.0,
        warm_sweep_s: warm_ms as f64 / 1000.0,
        aws_calls_cold: calls_cold,
        aws_calls_warm: calls_warm,
        peak_rss_kib: rss.iter().copied().max().unwrap_or(0),
        steady_rss_kib: rss.last().copied().unwrap_or(0),
        event_latency_ms: event_latency.map(|l| l.as_millis()),
        sweep_finished_before_the_event,
        requests_cold_sweep: per_verb(minus(&after_cold, &before_sweep)),
        requests_warm_sweep: per_verb(minus(&after_warm, &after_cold)),
        faults_found,
    }
}

/// The manual procedure for a sample of ServiceAccounts, against its own small cluster: what
/// AWS's troubleshooting guide has people run, per ServiceAccount. Seconds per ServiceAccount.
async fn manual_procedure(sample: usize) -> f64 {
    let moto = Moto::start();
    let admin = Clients::new(&moto.loader().load().await);
    let cluster = Cluster::start(ClusterOptions {
        without_node: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    test_support::operator::setup(&cluster, &admin).await;
    let start = Instant::now();
    for _ in 0..sample {
        let run = |program: &str, args: &[&str]| {
            let mut c = Command::new(program);
            c.args(args)
                .env("KUBECONFIG", cluster.kubeconfig_path())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            aws_env(&mut c, &moto.url);
            c.env("AWS_DEFAULT_REGION", "us-east-1");
            tokio::task::block_in_place(|| c.status())
                .map(|s| s.success())
                .unwrap_or(false)
        };
        run(
            "kubectl",
            &[
                "get",
                "serviceaccount",
                "s3-reader",
                "-n",
                "reports",
                "-o",
                "json",
            ],
        );
        run("aws", &["iam", "get-role", "--role-name", "s3-reader"]);
        run("aws", &["iam", "list-open-id-connect-providers"]);
        run(
            "kubectl",
            &["get", "--raw", "/.well-known/openid-configuration"],
        );
        run("kubectl", &["get", "pods", "-n", "reports", "-o", "json"]);
    }
    start.elapsed().as_secs_f64() / sample as f64
}

/// Prints rows and remembers the missed targets.
struct Table {
    missed: Vec<String>,
}

impl Table {
    fn row(&mut self, figure: &str, value: String, target: &str, ok: Option<bool>) {
        let mark = match ok {
            Some(true) => "ok",
            Some(false) => {
                self.missed.push(figure.to_string());
                "MISSED"
            }
            None => "",
        };
        println!("{figure:<58} {value:>16}  {target:<30} {mark}");
    }
}

/// Peer tools and why they did not run here.
const PEERS: [(&str, &str); 2] = [
    (
        "DataDog managed-kubernetes-auditing-toolkit",
        "github.com/DataDog/managed-kubernetes-auditing-toolkit is not served by the Go module proxy (403)",
    ),
    (
        "pete911 kubectl-iam4sa",
        "github.com/pete911/kubectl-iam4sa is not served by the Go module proxy (403)",
    ),
];

#[tokio::main(worker_threads = 4)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let full = args.iter().any(|a| a == "--bench") && !quick;
    let setup = Setup {
        full,
        latency: Duration::from_millis(arg(&args, "--aws-latency-ms").unwrap_or(20)),
        aws_rate: arg(&args, "--aws-rate").unwrap_or(if full { 30 } else { 1000 }),
    };
    let base = if full {
        Size {
            service_accounts: 10_000,
            roles: 1_000,
            namespaces: 100,
            pods: 50_000,
            checks: 200,
        }
    } else {
        Size {
            service_accounts: 200,
            roles: 20,
            namespaces: 10,
            pods: 500,
            checks: 4,
        }
    };
    let bench_started = Instant::now();
    let one = run(base, setup).await;
    // `--one-run`: the full size once, without the 2× runs (for profiling; no slopes).
    let (two, pods_only) = if full && !args.iter().any(|a| a == "--one-run") {
        let double = Size {
            service_accounts: base.service_accounts * 2,
            pods: base.pods * 2,
            ..base
        };
        let more_pods = Size {
            pods: base.pods * 2,
            ..base
        };
        (
            Some(run(double, setup).await),
            Some(run(more_pods, setup).await),
        )
    } else {
        (None, None)
    };
    let manual_per_sa = manual_procedure(if full { 20 } else { 2 }).await;

    let mut t = Table { missed: Vec::new() };
    println!(
        "\nirsa-doctor scale on kube-apiserver v1.36.3: {} ServiceAccounts over {} roles in {} namespaces, {} pods, {} IrsaChecks, {} seeded faults; AWS +{} ms/call, operator --aws-rate {}",
        base.service_accounts, base.roles, base.namespaces, base.pods, base.checks, FAULTS.len(),
        setup.latency.as_millis(), setup.aws_rate
    );
    println!("{:<58} {:>16}  {:<30}", "figure", "value", "target");
    // GetRole per role, per fault role and per missing role, one for the change; then one
    // ListOpenIDConnectProviders, GetOpenIDConnectProvider and GetCallerIdentity.
    let bound = (base.roles + FAULT_ROLE_LOOKUPS + 1 + 3) as u64;
    let rate_floor = bound as f64 / setup.aws_rate as f64;
    t.row(
        "cold sweep (start → every ServiceAccount diagnosed)",
        format!("{:.1} s", one.cold_sweep_s),
        &format!(
            "≤ {:.1} s (rate floor {rate_floor:.1} s + 10%)",
            rate_floor * 1.1
        ),
        full.then_some(one.cold_sweep_s <= rate_floor * 1.1),
    );
    t.row("warm sweep", format!("{:.2} s", one.warm_sweep_s), "", None);
    for (op, n) in &one.aws_calls_cold {
        t.row(
            &format!("AWS calls, cold sweep: {op}"),
            n.to_string(),
            "",
            None,
        );
    }
    let cold_calls: u64 = one.aws_calls_cold.values().sum();
    t.row(
        "AWS calls, cold sweep: total",
        cold_calls.to_string(),
        &format!("≤ {bound} + 1%"),
        full.then_some(cold_calls as f64 <= bound as f64 * 1.01),
    );
    t.row(
        "AWS calls, warm sweep",
        one.aws_calls_warm.to_string(),
        "0 (cached)",
        full.then_some(one.aws_calls_warm == 0),
    );
    t.row(
        "operator RSS, peak",
        format!("{:.1} MiB", one.peak_rss_kib as f64 / 1024.0),
        "≤ 48 MiB",
        full.then_some(one.peak_rss_kib <= 48 * 1024),
    );
    t.row(
        "operator RSS, steady",
        format!("{:.1} MiB", one.steady_rss_kib as f64 / 1024.0),
        "",
        None,
    );
    if let (Some(two), Some(pods_only)) = (&two, &pods_only) {
        let per_pod = (pods_only.peak_rss_kib as f64 - one.peak_rss_kib as f64) * 1024.0
            / (pods_only.pods - one.pods) as f64;
        let per_sa = (two.peak_rss_kib as f64 - pods_only.peak_rss_kib as f64)
            / (two.service_accounts - one.service_accounts) as f64;
        t.row(
            &format!("operator RSS, peak at 2× pods ({})", pods_only.pods),
            format!("{:.1} MiB", pods_only.peak_rss_kib as f64 / 1024.0),
            "",
            None,
        );
        t.row(
            &format!(
                "operator RSS, peak at 2× both ({} SAs)",
                two.service_accounts
            ),
            format!("{:.1} MiB", two.peak_rss_kib as f64 / 1024.0),
            "",
            None,
        );
        // One MiB across 50,000 pods is noise, not growth.
        t.row(
            "memory per additional pod",
            format!("{per_pod:.1} B"),
            "≈ 0 (≤ 21 B: 1 MiB / 50,000)",
            Some(per_pod <= 21.0),
        );
        t.row(
            "memory per additional ServiceAccount",
            format!("{per_sa:.2} KiB"),
            "≤ 2 KiB",
            Some(per_sa <= 2.0),
        );
    }
    let cold_lists = one
        .requests_cold_sweep
        .get("list pods")
        .copied()
        .unwrap_or(0);
    let allowed_lists = (base.namespaces + 1 + base.checks + 1) as u64;
    for (verb, n) in &one.requests_cold_sweep {
        t.row(
            &format!("API requests, cold sweep: {verb}"),
            n.to_string(),
            "",
            None,
        );
    }
    t.row(
        "pod lists, cold sweep",
        cold_lists.to_string(),
        &format!("≤ {allowed_lists} (namespaces + checks + change)"),
        Some(cold_lists <= allowed_lists),
    );
    let warm_lists = one
        .requests_warm_sweep
        .get("list pods")
        .copied()
        .unwrap_or(0);
    t.row(
        "pod lists, warm sweep",
        warm_lists.to_string(),
        &format!("≤ {} (namespaces)", base.namespaces + 1),
        full.then_some(warm_lists <= (base.namespaces + 1) as u64),
    );
    match one.event_latency_ms {
        Some(ms) => t.row(
            "annotation change → Event, during the cold sweep",
            format!("{ms} ms"),
            "≤ 2000 ms",
            full.then_some(ms <= 2000 && !one.sweep_finished_before_the_event),
        ),
        None => t.row(
            "annotation change → Event, during the cold sweep",
            "none in 60 s".into(),
            "≤ 2000 ms",
            Some(false),
        ),
    }
    t.row(
        "seeded faults found: irsa-doctor",
        format!("{} / {}", one.faults_found.len(), FAULTS.len()),
        "20 / 20",
        Some(one.faults_found.len() == FAULTS.len()),
    );
    t.row(
        "seeded faults found: manual procedure",
        "n/a".into(),
        "a person reads the output",
        None,
    );
    for (peer, why) in PEERS {
        println!("{:<58} {:>16}  {why}", format!("peer: {peer}"), "not run");
    }
    t.row(
        "manual procedure, per ServiceAccount",
        format!("{manual_per_sa:.2} s"),
        "",
        None,
    );
    let manual_total = manual_per_sa * base.service_accounts as f64;
    t.row(
        &format!(
            "manual procedure, {} ServiceAccounts (extrapolated)",
            base.service_accounts
        ),
        format!("{manual_total:.0} s"),
        "",
        None,
    );
    t.row(
        "speed-up over the manual procedure",
        format!("{:.0}×", manual_total / one.cold_sweep_s),
        "",
        None,
    );
    t.row(
        "benchmark wall time",
        format!("{:.0} s", bench_started.elapsed().as_secs_f64()),
        "≤ 900 s",
        full.then_some(bench_started.elapsed() <= Duration::from_secs(900)),
    );

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("bench");
    let _ = std::fs::create_dir_all(&target);
    let report = json!({
        "apiServer": "kube-apiserver v1.36.3",
        "awsLatencyMs": setup.latency.as_millis() as u64,
        "awsRate": setup.aws_rate,
        "runs": [one, two.unwrap_or_default(), pods_only.unwrap_or_default()],
        "manualSecondsPerServiceAccount": manual_per_sa,
        "peers": PEERS.iter().map(|(p, why)| json!({"peer": p, "ran": false, "why": why})).collect::<Vec<_>>(),
        "missed": t.missed,
    });
    let path = target.join("scale.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("figures written to {}", path.display());
    if !t.missed.is_empty() {
        eprintln!("targets missed: {:?}", t.missed);
        std::process::exit(1);
    }
}
