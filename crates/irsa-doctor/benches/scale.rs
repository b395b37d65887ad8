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
//! `--wide` (`make bench-wide`) runs the wide scenario instead: 100,000 ServiceAccounts in 5,000
//! namespaces, 10,000 of them annotated, 200,000 pods, 500 IrsaChecks, the same faults; then the
//! operator restarted on the same cluster after adding unannotated ServiceAccounts, pods and
//! annotated ones, for the memory slope of each, from the RSS settled after the cold sweep
//! (the slopes of the peaks are printed beside). Its record is `serviceAccounts100000`.
//!
//! `make bench` (= `cargo bench -p irsa-doctor --bench scale`) runs the full size; under
//! `cargo test` (no `--bench` argument) it runs a small smoke size once, without targets.
//! Options: `--aws-latency-ms N` (default 20), `--aws-rate N` (the operator's `--aws-rate`,
//! default 30: the cold sweep's 1,003 calls then take at least 33 s, so an annotation change
//! lands in the middle of it), `--quick` (one run at a small size), `--one-run` (the full size
//! once, no slopes). `BENCH_OPERATOR_BIN` is the operator binary measured (`make bench` and
//! `make bench-wide` pass the static musl build the container image ships, its allocator
//! included; by default, this build's); to profile it, a build with symbols and
//! `BENCH_OPERATOR_PREFIX` (e.g. `heaptrack -o /tmp/op`); `BENCH_OPERATOR_LOGS`
//! (a directory) keeps each run's operator log there, as `operator-<pid>.log`.

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

/// VmRSS of process `pid` in KiB; `None` once it is gone.
fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// VmRSS of the running operator `pid`, in KiB.
fn rss_now(pid: u32) -> u64 {
    rss_of(pid).expect("the operator exited")
}

fn watch_operator(child: &mut Child) -> Watch {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = lines.clone();
    let mut log = std::env::var_os("BENCH_OPERATOR_LOGS").map(|dir| {
        let path = std::path::Path::new(&dir).join(format!("operator-{}.log", child.id()));
        std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(log) = log.as_mut() {
                use std::io::Write;
                let _ = writeln!(log, "{line}");
            }
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    let rss_kib = Arc::new(Mutex::new(Vec::new()));
    let samples = rss_kib.clone();
    let pid = child.id();
    std::thread::spawn(move || {
        while let Some(kib) = rss_of(pid) {
            samples.lock().unwrap().push(kib);
            std::thread::sleep(Duration::from_millis(100));
        }
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
    /// When `/readyz` first answered 200: every watch has listed, the sweep just starting.
    synced_rss_kib: u64,
    /// Two seconds after the cold sweep: where every run is read for the memory slopes.
    cold_rss_kib: u64,
    /// Two seconds after the last sweep measured.
    steady_rss_kib: u64,
    event_latency_ms: Option<u128>,
    sweep_finished_before_the_event: bool,
    requests_cold_sweep: BTreeMap<String, u64>,
    requests_warm_sweep: BTreeMap<String, u64>,
    faults_found: Vec<String>,
    /// kube-apiserver's resident memory at the end of the run, and its peak, in KiB.
    apiserver_rss_kib: u64,
    apiserver_peak_kib: u64,
    /// etcd's, likewise.
    etcd_rss_kib: u64,
    etcd_peak_kib: u64,
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

/// The operator's binary: BENCH_OPERATOR_BIN (`make bench`: the musl build the image ships),
/// or this build's.
fn operator_binary() -> std::path::PathBuf {
    std::env::var_os("BENCH_OPERATOR_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_irsa-doctor").into())
}

/// A fresh control plane and moto behind a slow proxy, with the CRD and the OIDC provider.
struct Bench {
    _moto: Moto,
    aws_url: String,
    admin: Clients,
    cluster: Cluster,
    host_path: String,
}

impl Bench {
    async fn start(setup: Setup) -> Bench {
        let moto = Moto::start();
        let moto_port: u16 = moto.url.rsplit(':').next().unwrap().parse().unwrap();
        // The proxy adds IAM-like latency; its own cap sits above the operator's rate, so the
        // operator's limiter is what binds.
        let aws_url = format!(
            "http://127.0.0.1:{}",
            slow_proxy(moto_port, setup.latency, setup.aws_rate * 4).await
        );
        let admin = Clients::new(&moto.loader().load().await);
        let cluster = Cluster::start(ClusterOptions {
            without_node: true,
            ..ClusterOptions::default()
        })
        .await
        .unwrap();
        bootstrap_cluster(&cluster).await;
        let host_path = create_provider(&cluster, &admin).await;
        Bench {
            _moto: moto,
            aws_url,
            admin,
            cluster,
            host_path,
        }
    }

    fn client(&self) -> kube::Client {
        self.cluster.client()
    }
}

/// Creates `count` objects with at most 32 requests in flight.
async fn create_all<K>(client: &kube::Client, count: usize, object: impl Fn(usize) -> (String, K))
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    stream::iter(0..count)
        .for_each_concurrent(32, |i| {
            let (ns, obj) = object(i);
            let api: Api<K> = Api::namespaced(client.clone(), &ns);
            async move {
                api.create(&PostParams::default(), &obj).await.unwrap();
            }
        })
        .await;
}

/// Creates the namespaces, at most 32 requests in flight.
async fn create_namespaces(client: &kube::Client, names: Vec<String>) {
    stream::iter(names)
        .for_each_concurrent(32, |n| {
            let api = Api::<Namespace>::all(client.clone());
            async move {
                let ns: Namespace =
                    serde_json::from_value(json!({"metadata": {"name": n}})).unwrap();
                api.create(&PostParams::default(), &ns).await.unwrap();
            }
        })
        .await;
}

/// The roles, each trusting the subjects `subjects_of(role)` names.
async fn create_roles(bench: &Bench, roles: usize, subjects_of: impl Fn(usize) -> Vec<String>) {
    stream::iter(0..roles)
        .for_each_concurrent(8, |r| {
            let admin = bench.admin.clone();
            let policy = trust(&bench.host_path, &subjects_of(r)).to_string();
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
}

/// A ServiceAccount, annotated with `role` when given.
fn service_account(name: &str, role: Option<usize>) -> ServiceAccount {
    let annotations = match role {
        Some(r) => {
            json!({"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/role-{r}")})
        }
        None => json!({}),
    };
    serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations}})).unwrap()
}

/// A Pending pod of `sa`, as the webhook admitted it when `role` is given (the role and the
/// token file in its environment).
fn pod(name: &str, sa: &str, role: Option<usize>) -> Pod {
    let env = match role {
        Some(r) => json!([
            {"name": "AWS_ROLE_ARN", "value": format!("arn:aws:iam::{ACCOUNT}:role/role-{r}")},
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}]),
        None => json!([]),
    };
    serde_json::from_value(
        json!({"metadata": {"name": name}, "spec": {"serviceAccountName": sa,
        "containers": [{"name": "app", "image": "busybox", "env": env}]}}),
    )
    .unwrap()
}

/// The seeded faults and the IrsaChecks (`checks[c]`: the namespace and ServiceAccount of check
/// `c`).
async fn create_faults_and_checks(bench: &Bench, checks: &[(String, String)]) {
    let client = bench.client();
    for k in 0..FAULTS.len() {
        seed_fault(k, &client, &bench.admin, &bench.host_path).await;
    }
    for (c, (ns, sa)) in checks.iter().enumerate() {
        let spec = IrsaCheckSpec {
            service_account_name: sa.clone(),
            interval: "1h".into(),
            expected_role_arn: None,
            permissions: Vec::new(),
            probe: ProbeSpec {
                enabled: false,
                ..ProbeSpec::default()
            },
        };
        checks_api(&client, ns)
            .create(
                &PostParams::default(),
                &IrsaCheck::new(&format!("check-{c}"), spec),
            )
            .await
            .unwrap();
    }
}

/// The 10,000-ServiceAccount scenario's objects: every ServiceAccount annotated, in
/// `size.namespaces` namespaces; returns the set-up time.
async fn populate(bench: &Bench, size: Size) -> f64 {
    let client = bench.client();
    let started = Instant::now();
    create_roles(bench, size.roles, |r| {
        (0..size.service_accounts)
            .filter(|i| i % size.roles == r)
            .map(|i| {
                let (ns, name) = sa_name(i, size.namespaces);
                subject(&ns, &name)
            })
            .collect()
    })
    .await;
    create_namespaces(
        &client,
        (0..size.namespaces)
            .map(|n| format!("ns-{n}"))
            .chain([FAULT_NS.to_string()])
            .collect(),
    )
    .await;
    create_all(&client, size.service_accounts, |i| {
        let (ns, name) = sa_name(i, size.namespaces);
        (ns, service_account(&name, Some(i % size.roles)))
    })
    .await;
    create_all(&client, size.pods, |p| {
        let i = p % size.service_accounts;
        let (ns, sa) = sa_name(i, size.namespaces);
        (ns, pod(&format!("pod-{p}"), &sa, Some(i % size.roles)))
    })
    .await;
    let checks: Vec<(String, String)> = (0..size.checks)
        .map(|c| sa_name(c, size.namespaces))
        .collect();
    create_faults_and_checks(bench, &checks).await;
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!(
        "set-up (kube-apiserver): {} roles, {} ServiceAccounts, {} pods, {} IrsaChecks, {} faults in {setup_s:.1}s",
        size.roles,
        size.service_accounts,
        size.pods,
        size.checks,
        FAULTS.len()
    );
    setup_s
}

/// What one measurement waits for and changes.
struct Measure {
    /// ServiceAccounts, IrsaChecks and pods in the cluster (for the record).
    service_accounts: usize,
    checks: usize,
    pods: usize,
    /// How many ServiceAccounts the first sweep diagnoses.
    swept: u64,
    /// The ServiceAccount whose annotation is changed during the cold sweep, if any.
    change: Option<(String, String)>,
    /// Whether to wait for the second (warm) sweep.
    warm: bool,
    setup_s: f64,
}

/// Starts the operator, as the chart's ServiceAccount, against `bench`'s cluster; measures
/// its cold (and warm) sweep, memory, AWS calls and API requests; stops it.
async fn measure(bench: &Bench, m: &Measure, setup: Setup) -> Figures {
    let cluster = &bench.cluster;
    let client = bench.client();
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
    aws_env(&mut cmd, &bench.aws_url);
    let started = Instant::now();
    let mut operator = cmd.spawn().unwrap();
    let watch = watch_operator(&mut operator);
    let deadline = started + Duration::from_secs(if setup.full { 900 } else { 180 });
    while get(&metrics, "/readyz").await.is_none_or(|(c, _)| c != 200) {
        assert!(Instant::now() < deadline, "the operator never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced_rss_kib = rss_now(operator.id());
    let before_sweep = cluster.requests_from("irsa-doctor/");

    // While the first sweep runs: one annotation change, and how long its Event takes.
    let mut event_latency = None;
    let mut sweep_finished_before_the_event = false;
    if let Some((ns, name)) = &m.change {
        tokio::time::sleep(Duration::from_secs(if setup.full { 5 } else { 0 })).await;
        let changed = Instant::now();
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                "eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/does-not-exist")}}})),
            )
            .await
            .unwrap();
        let events: Api<Event> = Api::namespaced(client.clone(), ns);
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
    }

    let checks_done = async || {
        let body = get(&metrics, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default();
        let series = body
            .lines()
            .filter(|l| l.starts_with("irsa_doctor_check_ready{"))
            .count();
        // Past 200 checks a namespace, checks are counted without a series of their own.
        let unseries: f64 = body
            .lines()
            .filter(|l| l.starts_with("irsa_doctor_checks_without_series{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        series + unseries as usize >= m.checks
    };
    let mut cold = None;
    while Instant::now() < deadline {
        if sweeps(&watch).iter().any(|(n, _)| *n + 1 >= m.swept) && checks_done().await {
            cold = Some(sweeps(&watch)[0].1);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cold_ms = cold.expect("the first sweep did not finish in time");
    let after_cold = cluster.requests_from("irsa-doctor/");
    let calls_cold = aws_calls(&metrics).await;
    // Every run is read at this point for the slopes: settled after the cold sweep (the warm
    // sweep comes one interval later: 60 s, 5 s at the smoke size).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cold_rss_kib = rss_now(operator.id());
    let mut warm_ms = 0;
    let mut after_warm = after_cold.clone();
    let mut calls_warm = 0;
    if m.warm {
        while sweeps(&watch).len() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        warm_ms = sweeps(&watch).get(1).map_or(0, |s| s.1);
        after_warm = cluster.requests_from("irsa-doctor/");
        calls_warm =
            aws_calls(&metrics).await.values().sum::<u64>() - calls_cold.values().sum::<u64>();
    }

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
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steady_rss_kib = rss_now(operator.id());
    let rss = watch.rss_kib.lock().unwrap().clone();
    let _ = operator.kill();
    let _ = operator.wait();
    let server = cluster.plane().memory_kib();
    let per_verb = |r: Requests| r.iter().map(|(k, n)| (verb_key(k), *n)).collect();
    Figures {
        service_accounts: m.service_accounts,
        pods: m.pods,
        setup_s: m.setup_s,
        cold_sweep_s: cold_ms as f64 / 1000.0,
        warm_sweep_s: warm_ms as f64 / 1000.0,
        aws_calls_cold: calls_cold,
        aws_calls_warm: calls_warm,
        peak_rss_kib: rss.iter().copied().max().unwrap_or(0),
        synced_rss_kib,
        cold_rss_kib,
        steady_rss_kib,
        event_latency_ms: event_latency.map(|l| l.as_millis()),
        sweep_finished_before_the_event,
        requests_cold_sweep: per_verb(minus(&after_cold, &before_sweep)),
        requests_warm_sweep: per_verb(minus(&after_warm, &after_cold)),
        faults_found,
        apiserver_rss_kib: server.apiserver.map_or(0, |m| m.0),
        apiserver_peak_kib: server.apiserver.map_or(0, |m| m.1),
        etcd_rss_kib: server.etcd.map_or(0, |m| m.0),
        etcd_peak_kib: server.etcd.map_or(0, |m| m.1),
    }
}

/// One run of the 10,000 scenario: a fresh API server and moto, the objects of `size`, the
/// operator, the figures.
async fn run(size: Size, setup: Setup) -> Figures {
    let bench = Bench::start(setup).await;
    let setup_s = populate(&bench, size).await;
    let m = Measure {
        service_accounts: size.service_accounts,
        checks: size.checks,
        pods: size.pods,
        swept: (size.service_accounts - size.checks + FAULTS.len()) as u64,
        change: Some(sa_name(size.service_accounts - 1, size.namespaces)),
        warm: true,
        setup_s,
    };
    measure(&bench, &m, setup).await
}

/// The shape of the 100,000-ServiceAccount scenario: many namespaces, most ServiceAccounts
/// unannotated (every namespace's `default` among them).
#[derive(Debug, Clone, Copy)]
struct Wide {
    namespaces: usize,
    /// Namespaces `ns-0` … that hold the annotated ServiceAccounts.
    annotated_namespaces: usize,
    annotated: usize,
    roles: usize,
    /// Unannotated ServiceAccounts created, besides each namespace's `default`.
    unannotated: usize,
    pods: usize,
    checks: usize,
}

impl Wide {
    /// Every ServiceAccount once the controller has added the `default`s.
    fn service_accounts(&self) -> usize {
        self.annotated + self.unannotated + self.namespaces
    }

    /// Annotated ServiceAccount `j`: its namespace and name.
    fn annotated_sa(&self, j: usize) -> (String, String) {
        (
            format!("ns-{}", j % self.annotated_namespaces),
            format!("app-{j}"),
        )
    }

    /// Unannotated ServiceAccount `k`.
    fn unannotated_sa(&self, k: usize) -> (String, String) {
        (format!("ns-{}", k % self.namespaces), format!("sa-{k}"))
    }

    /// Pod `p`: its namespace, ServiceAccount and the role the webhook injected (none for an
    /// unannotated ServiceAccount's). Pods spread over every namespace; in a namespace with
    /// annotated ServiceAccounts they run as those.
    fn pod(&self, p: usize) -> (String, String, Option<usize>) {
        let n = p % self.namespaces;
        let round = p / self.namespaces;
        if n < self.annotated_namespaces {
            let per = self.annotated / self.annotated_namespaces;
            let j = n + self.annotated_namespaces * (round % per);
            let (ns, name) = self.annotated_sa(j);
            (ns, name, Some(j % self.roles))
        } else {
            let per = (self.unannotated / self.namespaces).max(1);
            let k = n + self.namespaces * (round % per);
            let (ns, name) = self.unannotated_sa(k);
            (ns, name, None)
        }
    }

    /// The subjects role `r` trusts among annotated ServiceAccounts `0..annotated`.
    fn subjects(&self, r: usize, annotated: usize) -> Vec<String> {
        (r..annotated)
            .step_by(self.roles)
            .map(|j| {
                let (ns, name) = self.annotated_sa(j);
                subject(&ns, &name)
            })
            .collect()
    }
}

/// How many ServiceAccounts the cluster holds (one list of one item, its remaining count).
async fn count_service_accounts(client: &kube::Client) -> usize {
    let list = Api::<ServiceAccount>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
        .unwrap();
    list.items.len() + list.metadata.remaining_item_count.unwrap_or(0) as usize
}

/// Waits until the ServiceAccount controller has given every namespace its `default`.
async fn wait_for_service_accounts(client: &kube::Client, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = count_service_accounts(client).await;
        if n >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} ServiceAccounts, not {at_least}, after 10 minutes"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The four measurements of the wide scenario, on one cluster grown between them.
struct WideFigures {
    base: Figures,
    more_unannotated: Figures,
    more_pods: Figures,
    more_annotated: Figures,
    /// (added unannotated ServiceAccounts, added pods, added annotated ServiceAccounts).
    added: (usize, usize, usize),
    namespaces_with_annotated: usize,
    bound: u64,
}

/// The 100,000-ServiceAccount scenario: the base measured with an annotation change during the
/// cold sweep and a warm sweep; then, on the same cluster, the operator restarted after adding
/// unannotated ServiceAccounts, then pods, then annotated ServiceAccounts, for the memory slopes.
async fn wide(w: Wide, setup: Setup) -> WideFigures {
    let bench = Bench::start(setup).await;
    let client = bench.client();
    let before = count_service_accounts(&client).await;
    let started = Instant::now();
    create_roles(&bench, w.roles, |r| w.subjects(r, w.annotated)).await;
    create_namespaces(
        &client,
        (0..w.namespaces)
            .map(|n| format!("ns-{n}"))
            .chain([FAULT_NS.to_string()])
            .collect(),
    )
    .await;
    create_all(&client, w.annotated, |j| {
        let (ns, name) = w.annotated_sa(j);
        (ns, service_account(&name, Some(j % w.roles)))
    })
    .await;
    create_all(&client, w.unannotated, |k| {
        let (ns, name) = w.unannotated_sa(k);
        (ns, service_account(&name, None))
    })
    .await;
    create_all(&client, w.pods, |p| {
        let (ns, sa, role) = w.pod(p);
        (ns, pod(&format!("pod-{p}"), &sa, role))
    })
    .await;
    let checks: Vec<(String, String)> = (0..w.checks).map(|c| w.annotated_sa(c)).collect();
    create_faults_and_checks(&bench, &checks).await;
    // The faults' namespace and its default; the faults' own ServiceAccounts.
    let expected = before + w.service_accounts() + 1 + FAULTS.len();
    wait_for_service_accounts(&client, expected).await;
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!(
        "set-up (kube-apiserver): {} namespaces, {} roles, {} ServiceAccounts ({} annotated), {} pods, {} IrsaChecks, {} faults in {setup_s:.1}s",
        w.namespaces, w.roles, expected, w.annotated, w.pods, w.checks, FAULTS.len()
    );
    let swept = (w.annotated - w.checks + FAULTS.len()) as u64;
    let mut m = Measure {
        service_accounts: expected,
        checks: w.checks,
        pods: w.pods,
        swept,
        change: Some(w.annotated_sa(w.annotated - 1)),
        warm: true,
        setup_s,
    };
    let base = measure(&bench, &m, setup).await;

    // More unannotated ServiceAccounts.
    let added_sa = w.unannotated / 2 + w.unannotated % 2;
    let started = Instant::now();
    create_all(&client, added_sa, |k| {
        let (ns, name) = w.unannotated_sa(w.unannotated + k);
        (ns, service_account(&name, None))
    })
    .await;
    wait_for_service_accounts(&client, expected + added_sa).await;
    m.service_accounts = expected + added_sa;
    m.setup_s = started.elapsed().as_secs_f64();
    m.change = None;
    m.warm = false;
    let more_unannotated = measure(&bench, &m, setup).await;

    // More pods.
    let added_pods = w.pods / 2;
    let started = Instant::now();
    create_all(&client, added_pods, |p| {
        let (ns, sa, role) = w.pod(w.pods + p);
        (ns, pod(&format!("pod-{}", w.pods + p), &sa, role))
    })
    .await;
    m.pods = w.pods + added_pods;
    m.setup_s = started.elapsed().as_secs_f64();
    let more_pods = measure(&bench, &m, setup).await;

    // More annotated ServiceAccounts, trusted by the same roles.
    let added_annotated = w.annotated;
    let all = w.annotated + added_annotated;
    let started = Instant::now();
    stream::iter(0..w.roles)
        .for_each_concurrent(8, |r| {
            let admin = bench.admin.clone();
            let policy = trust(&bench.host_path, &w.subjects(r, all)).to_string();
            async move {
                admin
                    .iam
                    .update_assume_role_policy()
                    .role_name(format!("role-{r}"))
                    .policy_document(policy)
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
    create_all(&client, added_annotated, |j| {
        let j = w.annotated + j;
        let (ns, name) = w.annotated_sa(j);
        (ns, service_account(&name, Some(j % w.roles)))
    })
    .await;
    m.service_accounts += added_annotated;
    m.swept += added_annotated as u64;
    m.setup_s = started.elapsed().as_secs_f64();
    let more_annotated = measure(&bench, &m, setup).await;
    WideFigures {
        base,
        more_unannotated,
        more_pods,
        more_annotated,
        added: (added_sa, added_pods, added_annotated),
        // The annotated ones and the faults'.
        namespaces_with_annotated: w.annotated_namespaces + 1,
        bound: (w.roles + FAULT_ROLE_LOOKUPS + 1 + 3) as u64,
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
    /// The annotation change's Event: within 2 s, while the cold sweep still runs.
    fn event_row(&mut self, f: &Figures, full: bool) {
        let figure = "annotation change → Event, during the cold sweep";
        match f.event_latency_ms {
            Some(ms) => self.row(
                figure,
                format!("{ms} ms"),
                "≤ 2000 ms",
                full.then_some(ms <= 2000 && !f.sweep_finished_before_the_event),
            ),
            None => self.row(figure, "none in 60 s".into(), "≤ 2000 ms", Some(false)),
        }
    }

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

/// Writes `value` under `key` in `target/bench/scale.json`, keeping the other scenarios'
/// records.
fn write_record(key: &str, value: Value) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("bench");
    let _ = std::fs::create_dir_all(&target);
    let path = target.join("scale.json");
    let mut record: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    record[key] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&record).unwrap()).unwrap();
    println!("figures written to {} ({key})", path.display());
}

/// The wide scenario (100,000 ServiceAccounts in 5,000 namespaces, 200,000 pods; `--wide`),
/// its figures next to their targets; exits non-zero when one is missed. Small and without
/// targets unless `full`.
async fn report_wide(setup: Setup, full: bool) {
    let w = if full {
        Wide {
            namespaces: 5_000,
            annotated_namespaces: 500,
            annotated: 10_000,
            roles: 1_000,
            unannotated: 85_000,
            pods: 200_000,
            checks: 500,
        }
    } else {
        Wide {
            namespaces: 50,
            annotated_namespaces: 5,
            annotated: 100,
            roles: 10,
            unannotated: 850,
            pods: 2_000,
            checks: 5,
        }
    };
    let started = Instant::now();
    let f = wide(w, setup).await;
    let a = &f.base;
    let mut t = Table { missed: Vec::new() };
    println!(
        "\nirsa-doctor wide scale on kube-apiserver v1.36.3: {} ServiceAccounts ({} annotated over {} roles, the rest unannotated) in {} namespaces, {} pods, {} IrsaChecks, {} seeded faults; AWS +{} ms/call, operator --aws-rate {}",
        a.service_accounts, w.annotated, w.roles, w.namespaces, a.pods, w.checks, FAULTS.len(),
        setup.latency.as_millis(), setup.aws_rate
    );
    println!("operator binary: {}", operator_binary().display());
    println!("{:<58} {:>16}  {:<30}", "figure", "value", "target");
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    t.row(
        "set-up time (objects created)",
        format!("{:.0} s", a.setup_s),
        "",
        None,
    );
    let floor = f.bound as f64 / setup.aws_rate as f64;
    t.row(
        "cold sweep (start → every ServiceAccount diagnosed)",
        format!("{:.1} s", a.cold_sweep_s),
        &format!("≤ {:.1} s (rate floor {floor:.1} s + 10%)", floor * 1.1),
        full.then_some(a.cold_sweep_s <= floor * 1.1),
    );
    t.row("warm sweep", format!("{:.2} s", a.warm_sweep_s), "", None);
    let cold_calls: u64 = a.aws_calls_cold.values().sum();
    t.row(
        "AWS calls, cold sweep: total",
        cold_calls.to_string(),
        &format!("≤ {} (the bound)", f.bound),
        full.then_some(cold_calls <= f.bound),
    );
    t.row(
        "AWS calls, warm sweep",
        a.aws_calls_warm.to_string(),
        "0 (cached)",
        full.then_some(a.aws_calls_warm == 0),
    );
    t.row(
        "operator RSS, peak (start-up lists included)",
        mib(a.peak_rss_kib),
        "≤ 96 MiB",
        full.then_some(a.peak_rss_kib <= 96 * 1024),
    );
    t.row(
        "operator RSS, ready (every watch listed)",
        mib(a.synced_rss_kib),
        "",
        None,
    );
    t.row(
        "operator RSS, settled after the cold sweep / the warm sweep",
        format!(
            "{:.1} / {:.1} MiB",
            a.cold_rss_kib as f64 / 1024.0,
            a.steady_rss_kib as f64 / 1024.0
        ),
        "",
        None,
    );
    let (added_sa, added_pods, added_annotated) = f.added;
    let runs = [
        (format!("{added_sa} more unannotated"), &f.more_unannotated),
        (format!("{added_pods} more pods"), &f.more_pods),
        (
            format!("{added_annotated} more annotated"),
            &f.more_annotated,
        ),
    ];
    for (added, run) in runs {
        t.row(
            &format!("operator RSS with {added}: ready / settled / peak"),
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                run.synced_rss_kib as f64 / 1024.0,
                run.cold_rss_kib as f64 / 1024.0,
                run.peak_rss_kib as f64 / 1024.0
            ),
            "",
            None,
        );
    }
    // Every slope compares two runs at the same point: settled two seconds after the cold
    // sweep, once the objects are cached and swept. RSS when ready is not: the sweep starts
    // then, and two runs with the same objects read 3.5 MiB apart there. The peaks' slopes
    // follow for reference: they carry the sweep's transient pages.
    let slope = |rss: fn(&Figures) -> u64, after: &Figures, before: &Figures, n: usize| {
        (rss(after) as f64 - rss(before) as f64) * 1024.0 / n as f64
    };
    let settled = |f: &Figures| f.cold_rss_kib;
    let peak = |f: &Figures| f.peak_rss_kib;
    let per_unannotated = slope(settled, &f.more_unannotated, a, added_sa);
    let per_pod = slope(settled, &f.more_pods, &f.more_unannotated, added_pods);
    let per_annotated = slope(settled, &f.more_annotated, &f.more_pods, added_annotated);
    t.row(
        "memory per additional unannotated ServiceAccount (settled)",
        format!("{per_unannotated:.1} B"),
        "≤ 64 B",
        full.then_some(per_unannotated <= 64.0),
    );
    t.row(
        "memory per additional pod (settled)",
        format!("{per_pod:.1} B"),
        "≈ 0 (≤ 10.5 B: 1 MiB / 100,000)",
        full.then_some(per_pod <= 10.5),
    );
    t.row(
        "memory per additional annotated ServiceAccount (settled)",
        format!("{:.2} KiB", per_annotated / 1024.0),
        "≤ 2 KiB",
        full.then_some(per_annotated <= 2048.0),
    );
    let peak_slopes = (
        slope(peak, &f.more_unannotated, a, added_sa),
        slope(peak, &f.more_pods, &f.more_unannotated, added_pods),
        slope(peak, &f.more_annotated, &f.more_pods, added_annotated),
    );
    t.row(
        "  the same from peaks: unannotated / pod / annotated",
        format!(
            "{:.1} B / {:.1} B / {:.2} KiB",
            peak_slopes.0,
            peak_slopes.1,
            peak_slopes.2 / 1024.0
        ),
        "",
        None,
    );
    for (verb, n) in &a.requests_warm_sweep {
        t.row(
            &format!("API requests, warm sweep: {verb}"),
            n.to_string(),
            "",
            None,
        );
    }
    let warm_requests: u64 = a.requests_warm_sweep.values().sum();
    let allowed = f.namespaces_with_annotated as u64 + 1;
    t.row(
        "API requests, warm sweep: total",
        warm_requests.to_string(),
        &format!("≤ {allowed} (namespaces with an annotated SA + 1)"),
        full.then_some(warm_requests <= allowed),
    );
    for (verb, n) in &a.requests_cold_sweep {
        t.row(
            &format!("API requests, cold sweep: {verb}"),
            n.to_string(),
            "",
            None,
        );
    }
    t.event_row(a, full);
    t.row(
        "seeded faults found",
        format!("{} / {}", a.faults_found.len(), FAULTS.len()),
        "20 / 20",
        Some(a.faults_found.len() == FAULTS.len()),
    );
    t.row(
        "kube-apiserver RSS, end / peak",
        format!(
            "{} / {}",
            mib(f.more_annotated.apiserver_rss_kib),
            mib(f.more_annotated.apiserver_peak_kib)
        ),
        "",
        None,
    );
    t.row(
        "etcd RSS, end / peak",
        format!(
            "{} / {}",
            mib(f.more_annotated.etcd_rss_kib),
            mib(f.more_annotated.etcd_peak_kib)
        ),
        "",
        None,
    );
    t.row(
        "benchmark wall time",
        format!("{:.0} s", started.elapsed().as_secs_f64()),
        "",
        None,
    );
    if full {
        write_record(
            "serviceAccounts100000",
            json!({
                "apiServer": "kube-apiserver v1.36.3",
                "operatorBinary": operator_binary(),
                "awsLatencyMs": setup.latency.as_millis() as u64,
                "awsRate": setup.aws_rate,
                "namespaces": w.namespaces,
                "annotatedServiceAccounts": w.annotated,
                "roles": w.roles,
                "awsCallBound": f.bound,
                "runs": {"base": f.base, "moreUnannotated": f.more_unannotated,
                    "morePods": f.more_pods, "moreAnnotated": f.more_annotated},
                "added": {"unannotatedServiceAccounts": added_sa, "pods": added_pods,
                    "annotatedServiceAccounts": added_annotated},
                "bytesPerUnannotatedServiceAccount": per_unannotated,
                "bytesPerPod": per_pod,
                "bytesPerAnnotatedServiceAccount": per_annotated,
                "slopesReadFrom": "cold_rss_kib",
                "bytesFromPeaks": {"perUnannotatedServiceAccount": peak_slopes.0,
                    "perPod": peak_slopes.1, "perAnnotatedServiceAccount": peak_slopes.2},
                "apiRequestsWarmSweep": warm_requests,
                "apiRequestsWarmSweepAllowed": allowed,
                "missed": t.missed,
            }),
        );
    }
    if !t.missed.is_empty() {
        eprintln!("targets missed: {:?}", t.missed);
        std::process::exit(1);
    }
}

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
    if args.iter().any(|a| a == "--wide") {
        report_wide(setup, full).await;
        return;
    }
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
    println!("operator binary: {}", operator_binary().display());
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
    t.event_row(&one, full);
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

    let report = json!({
        "apiServer": "kube-apiserver v1.36.3",
        "operatorBinary": operator_binary(),
        "awsLatencyMs": setup.latency.as_millis() as u64,
        "awsRate": setup.aws_rate,
        "runs": [one, two.unwrap_or_default(), pods_only.unwrap_or_default()],
        "manualSecondsPerServiceAccount": manual_per_sa,
        "peers": PEERS.iter().map(|(p, why)| json!({"peer": p, "ran": false, "why": why})).collect::<Vec<_>>(),
        "missed": t.missed,
    });
    if full {
        write_record("serviceAccounts10000", report);
    } else {
        // The wide scenario's path, at a small size, under `cargo test` too.
        report_wide(setup, false).await;
    }
    if !t.missed.is_empty() {
        eprintln!("targets missed: {:?}", t.missed);
        std::process::exit(1);
    }
}
