//! Requests per second kube-sim serves through the real kube-rs client: create, get, list of a
//! large collection, and watch-event delivery. `cargo bench -p kube-sim` runs 10,000
//! ServiceAccounts and 50,000 pods; under `cargo test` it runs a small smoke size.

use std::time::Instant;

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube_sim::{KubeSim, Options};
use serde_json::json;

const CONCURRENCY: usize = 16;

fn rate(n: usize, secs: f64) -> String {
    format!("{:>10.0}/s  ({n} in {secs:.2}s)", n as f64 / secs)
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (service_accounts, pods_total, namespaces) = if full {
        (10_000, 50_000, 100)
    } else {
        (200, 1_000, 4)
    };
    let sim = KubeSim::start_with(Options {
        webhook: None,
        ..Options::default()
    })
    .await
    .unwrap();
    let client = sim.client();
    for i in 0..namespaces {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("ns-{i}")}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    // Watch-event delivery: a watch on all pods counts events while they are created.
    let pods_all: Api<Pod> = Api::all(client.clone());
    let watch = pods_all
        .watch(&WatchParams::default(), &sim.resource_version().to_string())
        .await
        .unwrap();
    let watcher = tokio::spawn(async move {
        let mut stream = watch.boxed();
        let mut n = 0;
        let start = Instant::now();
        while let Some(ev) = stream.try_next().await.unwrap() {
            if matches!(ev, WatchEvent::Added(_)) {
                n += 1;
                if n == pods_total {
                    break;
                }
            }
        }
        start.elapsed().as_secs_f64()
    });

    let start = Instant::now();
    stream::iter(0..service_accounts)
        .for_each_concurrent(CONCURRENCY, |i| {
            let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &format!("ns-{}", i % namespaces));
            async move {
                let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": format!("sa-{i}"),
                    "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::111122223333:role/r-{}", i % 1000)}}})).unwrap();
                api.create(&PostParams::default(), &sa).await.unwrap();
            }
        })
        .await;
    let sa_create = start.elapsed().as_secs_f64();

    let start = Instant::now();
    stream::iter(0..pods_total)
        .for_each_concurrent(CONCURRENCY, |i| {
            let api: Api<Pod> = Api::namespaced(client.clone(), &format!("ns-{}", i % namespaces));
            async move {
                let pod: Pod = serde_json::from_value(json!({"metadata": {"name": format!("pod-{i}"), "labels": {"app": format!("a{}", i % 50)}},
                    "spec": {"serviceAccountName": "default", "containers": [{"name": "c", "image": "busybox",
                        "env": [{"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/r"}]}]}})).unwrap();
                api.create(&PostParams::default(), &pod).await.unwrap();
            }
        })
        .await;
    let pod_create = start.elapsed().as_secs_f64();
    let watch_secs = watcher.await.unwrap();

    let gets = service_accounts.min(5_000);
    let start = Instant::now();
    stream::iter(0..gets)
        .for_each_concurrent(CONCURRENCY, |i| {
            let api: Api<ServiceAccount> =
                Api::namespaced(client.clone(), &format!("ns-{}", i % namespaces));
            async move {
                api.get(&format!("sa-{i}")).await.unwrap();
            }
        })
        .await;
    let get_secs = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let listed = pods_all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    let list_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let selected = Api::<Pod>::namespaced(client.clone(), "ns-0")
        .list(&ListParams::default().fields("spec.serviceAccountName=default"))
        .await
        .unwrap()
        .items
        .len();
    let selected_secs = start.elapsed().as_secs_f64();
    assert_eq!(listed, pods_total);

    println!("kube-sim throughput ({service_accounts} ServiceAccounts, {pods_total} pods, {namespaces} namespaces, {CONCURRENCY} concurrent clients)");
    println!(
        "create serviceaccount  {}",
        rate(service_accounts, sa_create)
    );
    println!("create pod             {}", rate(pods_total, pod_create));
    println!("get serviceaccount     {}", rate(gets, get_secs));
    println!("watch events delivered {}", rate(pods_total, watch_secs));
    println!(
        "list all pods          {}  (one list of {listed} objects)",
        rate(listed, list_secs)
    );
    println!(
        "list one namespace     {}  (field selector, {selected} objects)",
        rate(selected, selected_secs)
    );
}
