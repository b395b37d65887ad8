//! Scale benchmark: a simulated cluster in kube-sim (10,000 annotated ServiceAccounts over 1,000
//! roles in 100 namespaces, 50,000 pods, 200 IrsaChecks), AWS facts from moto (optionally behind
//! a proxy adding per-call latency and a rate cap), the real operator binary — and the manual
//! procedure (`kubectl` + `aws` per ServiceAccount) for comparison. Prints each figure next to
//! its target and exits non-zero when one is missed.
//!
//! `make bench` (= `cargo bench -p irsa-doctor --bench scale`) runs the full size; under
//! `cargo test` (no `--bench` argument) it runs a small smoke size without timing targets.
//! Options: `--aws-latency-ms N`, `--aws-rate N` (the operator's `--aws-rate`), `--quick`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use irsa_aws::Clients;
use irsa_doctor::api::{IrsaCheck, IrsaCheckSpec, ProbeSpec};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube_sim::{KubeSim, Options};
use serde_json::{json, Value};
use test_support::moto::{slow_proxy, Moto};
use test_support::net::{free_port, get};
use test_support::operator::{aws_env, bootstrap_cluster, checks_api, create_provider};

const ACCOUNT: &str = "123456789012";

struct Size {
    service_accounts: usize,
    roles: usize,
    namespaces: usize,
    pods: usize,
    checks: usize,
    manual: usize,
}

fn arg(args: &[String], name: &str) -> Option<u64> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn trust(host_path: &str, subjects: &[String]) -> String {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{host_path}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{host_path}:sub"): subjects, format!("{host_path}:aud"): "sts.amazonaws.com"}}}]})
    .to_string()
}

fn sa_name(i: usize) -> (String, String) {
    (format!("ns-{}", i % 100), format!("sa-{i}"))
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
        std::thread::sleep(Duration::from_millis(200));
    });
    Watch { lines, rss_kib }
}

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

#[tokio::main(worker_threads = 4)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--quick");
    let size = if full {
        Size {
            service_accounts: 10_000,
            roles: 1_000,
            namespaces: 100,
            pods: 50_000,
            checks: 200,
            manual: 100,
        }
    } else {
        Size {
            service_accounts: 200,
            roles: 20,
            namespaces: 100,
            pods: 500,
            checks: 4,
            manual: 5,
        }
    };
    let latency = Duration::from_millis(arg(&args, "--aws-latency-ms").unwrap_or(0));
    let aws_rate = arg(&args, "--aws-rate").unwrap_or(if full { 200 } else { 1000 });

    // AWS: moto, optionally behind the slow proxy.
    let moto = Moto::start();
    let moto_port: u16 = moto.url.rsplit(':').next().unwrap().parse().unwrap();
    let aws_url = if latency.is_zero() {
        moto.url.clone()
    } else {
        format!(
            "http://127.0.0.1:{}",
            slow_proxy(moto_port, latency, aws_rate).await
        )
    };
    let admin = Clients::new(&moto.loader().load().await);

    // Kubernetes: kube-sim with the webhook (pods of annotated ServiceAccounts get the role).
    let sim = KubeSim::start_with(Options::default()).await.unwrap();
    let client = sim.client();
    bootstrap_cluster(&sim).await;
    let host_path = create_provider(&sim, &admin).await;
    let setup = Instant::now();
    stream::iter(0..size.roles)
        .for_each_concurrent(8, |r| {
            let admin = admin.clone();
            let subjects: Vec<String> = (0..size.service_accounts)
                .filter(|i| i % size.roles == r)
                .map(|i| {
                    let (ns, name) = sa_name(i);
                    format!("system:serviceaccount:{ns}:{name}")
                })
                .collect();
            let policy = trust(&host_path, &subjects);
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
    for n in 0..size.namespaces {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("ns-{n}")}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    stream::iter(0..size.service_accounts)
        .for_each_concurrent(16, |i| {
            let (ns, name) = sa_name(i);
            let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
            let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name, "annotations": {
                "eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/role-{}", i % size.roles)}}}))
            .unwrap();
            async move {
                api.create(&PostParams::default(), &sa).await.unwrap();
            }
        })
        .await;
    stream::iter(0..size.pods)
        .for_each_concurrent(16, |p| {
            let i = p % size.service_accounts;
            let (ns, sa) = sa_name(i);
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let pod: Pod = serde_json::from_value(
                json!({"metadata": {"name": format!("pod-{p}")}, "spec": {"serviceAccountName": sa,
                "containers": [{"name": "app", "image": "busybox"}]}}),
            )
            .unwrap();
            async move {
                api.create(&PostParams::default(), &pod).await.unwrap();
            }
        })
        .await;
    for c in 0..size.checks {
        let (ns, sa) = sa_name(c);
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
        let check = IrsaCheck::new(&format!("check-{c}"), spec);
        checks_api(&client, &ns)
            .create(&PostParams::default(), &check)
            .await
            .unwrap();
    }
    eprintln!(
        "set-up: {} roles, {} ServiceAccounts, {} pods, {} IrsaChecks in {:.1}s",
        size.roles,
        size.service_accounts,
        size.pods,
        size.checks,
        setup.elapsed().as_secs_f64()
    );

    // The operator.
    let metrics = format!("127.0.0.1:{}", free_port());
    let sweep_interval = if full { "45s" } else { "5s" };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-doctor"));
    cmd.args([
        "run",
        "--leader-election=false",
        "--log-format",
        "json",
        "--metrics-addr",
        &metrics,
        "--sweep-interval",
        sweep_interval,
    ])
    .args([
        "--aws-rate",
        &aws_rate.to_string(),
        "--aws-max-concurrency",
        "16",
    ])
    .env("KUBECONFIG", sim.kubeconfig_path())
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
    let deadline = started + Duration::from_secs(if full { 420 } else { 120 });
    let swept_total = size.service_accounts - size.checks;
    let checks_done = || async {
        let body = get(&metrics, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with("irsa_doctor_check_ready{"))
            .count()
            >= size.checks
    };
    let mut cold_done = None;
    while Instant::now() < deadline {
        if sweeps(&watch)
            .iter()
            .any(|(n, _)| *n as usize >= swept_total)
            && checks_done().await
        {
            cold_done = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cold = cold_done.expect("the first sweep did not finish in time");
    if std::env::var("BENCH_RUST_LOG").is_ok() {
        for l in watch.lines.lock().unwrap().iter() {
            eprintln!("LOG {} {} {}", l["timestamp"], l["target"], l["fields"]);
        }
    }

    let calls_cold = aws_calls(&metrics).await;
    let rss_after_cold = watch.rss_kib.lock().unwrap().last().copied().unwrap_or(0);
    while sweeps(&watch).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sweep_list = sweeps(&watch);
    let warm_ms = sweep_list.get(1).map(|s| s.1).unwrap_or(0);
    let calls_warm = aws_calls(&metrics).await;
    let warm_calls: u64 = calls_warm.values().sum::<u64>() - calls_cold.values().sum::<u64>();

    // Annotation change → Event.
    let (ns, name) = sa_name(size.service_accounts - 1);
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let changed = Instant::now();
    sas.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {
        "eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/does-not-exist")}}})),
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let mut event_latency = None;
    while changed.elapsed() < Duration::from_secs(30) {
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
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss = watch.rss_kib.lock().unwrap().clone();
    let peak_rss = rss.iter().copied().max().unwrap_or(0);
    let steady_rss = rss.last().copied().unwrap_or(0);
    let _ = operator.kill();
    let _ = operator.wait();
    let requests = sim.requests_from("irsa-doctor/");

    // The manual procedure for a sample of ServiceAccounts: what AWS's troubleshooting guide has
    // people run, per ServiceAccount, against the same simulators.
    let manual_start = Instant::now();
    for i in 0..size.manual {
        let (ns, name) = sa_name(i);
        let run = |program: &str, args: &[&str]| {
            let mut c = Command::new(program);
            c.args(args)
                .env("KUBECONFIG", sim.kubeconfig_path())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            aws_env(&mut c, &aws_url);
            c.env("AWS_DEFAULT_REGION", "us-east-1");
            tokio::task::block_in_place(|| c.status())
                .map(|s| s.success())
                .unwrap_or(false)
        };
        run(
            "kubectl",
            &["get", "serviceaccount", &name, "-n", &ns, "-o", "json"],
        );
        run(
            "aws",
            &[
                "iam",
                "get-role",
                "--role-name",
                &format!("role-{}", i % size.roles),
            ],
        );
        run("aws", &["iam", "list-open-id-connect-providers"]);
        run(
            "kubectl",
            &["get", "--raw", "/.well-known/openid-configuration"],
        );
    }
    let manual_per_sa = manual_start.elapsed().as_secs_f64() / size.manual as f64;
    let manual_total = manual_per_sa * size.service_accounts as f64;

    // The table.
    let bound = size.roles as u64 + 3;
    let cold_calls: u64 = calls_cold.values().sum();
    let mut missed = Vec::new();
    let mut row = |figure: &str, value: String, target: &str, ok: Option<bool>| {
        let mark = match ok {
            Some(true) => "ok",
            Some(false) => {
                missed.push(figure.to_string());
                "MISSED"
            }
            None => "",
        };
        println!("{figure:<46} {value:>22}  {target:<26} {mark}");
    };
    println!(
        "\nirsa-doctor scale: {} ServiceAccounts over {} roles in {} namespaces, {} pods, {} IrsaChecks; AWS +{}ms/call, operator --aws-rate {}",
        size.service_accounts, size.roles, size.namespaces, size.pods, size.checks, latency.as_millis(), aws_rate
    );
    println!("{:<46} {:>22}  {:<26}", "figure", "value", "target");
    row(
        "start → every ServiceAccount diagnosed",
        format!("{:.1}s", cold.as_secs_f64()),
        "bound by the AWS rate",
        None,
    );
    row(
        "  minimum at the configured AWS rate",
        format!("{:.1}s", bound as f64 / aws_rate as f64),
        "",
        None,
    );
    row(
        "second (warm) sweep",
        format!("{:.2}s", warm_ms as f64 / 1000.0),
        "",
        None,
    );
    for (op, n) in &calls_cold {
        row(
            &format!("AWS calls, cold sweep: {op}"),
            n.to_string(),
            "",
            None,
        );
    }
    let within = |n: u64| n as f64 <= bound as f64 * 1.01;
    row(
        "AWS calls, cold sweep: total",
        cold_calls.to_string(),
        &format!("≤ {bound} + 1%"),
        full.then(|| within(cold_calls)),
    );
    row(
        "AWS calls, warm sweep",
        warm_calls.to_string(),
        "0 (cached)",
        full.then_some(warm_calls == 0),
    );
    row(
        "operator RSS, after the first sweep",
        format!("{:.1} MiB", rss_after_cold as f64 / 1024.0),
        "",
        None,
    );
    row(
        "operator RSS, peak",
        format!("{:.1} MiB", peak_rss as f64 / 1024.0),
        "≤ 64 MiB",
        full.then_some(peak_rss <= 64 * 1024),
    );
    row(
        "operator RSS, steady",
        format!("{:.1} MiB", steady_rss as f64 / 1024.0),
        "≤ 64 MiB",
        full.then_some(steady_rss <= 64 * 1024),
    );
    for ((g, r, v), n) in &requests {
        let g = if g.is_empty() { "core" } else { g.as_str() };
        row(
            &format!("API requests: {v} {r} ({g})"),
            n.to_string(),
            "",
            None,
        );
    }
    let latency_target = Duration::from_secs(2) + latency * 2;
    match event_latency {
        Some(l) => row(
            "annotation change → Event",
            format!("{} ms", l.as_millis()),
            &format!("≤ {} ms", latency_target.as_millis()),
            full.then_some(l <= latency_target),
        ),
        None => row(
            "annotation change → Event",
            "none in 30s".into(),
            "",
            Some(false),
        ),
    }
    row(
        &format!(
            "manual procedure, per ServiceAccount ({} sampled)",
            size.manual
        ),
        format!("{manual_per_sa:.2}s"),
        "",
        None,
    );
    row(
        &format!(
            "manual procedure, {} ServiceAccounts (extrapolated)",
            size.service_accounts
        ),
        format!("{:.0}s", manual_total),
        "",
        None,
    );
    row(
        "speed-up over the manual procedure",
        format!("{:.0}×", manual_total / cold.as_secs_f64()),
        "",
        None,
    );
    drop(moto);
    if !missed.is_empty() {
        eprintln!("targets missed: {missed:?}");
        std::process::exit(1);
    }
}
