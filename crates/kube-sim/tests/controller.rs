//! A kube-rs `Controller` over a small CRD converges against kube-sim, through dropped watches.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use kube_sim::KubeSim;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The spec: a target the controller copies into the status.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "test.kube-sim.io",
    version = "v1",
    kind = "Counter",
    namespaced,
    status = "CounterStatus"
)]
pub struct CounterSpec {
    target: i64,
}

/// The status: what the controller has seen.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct CounterStatus {
    observed: i64,
    observed_generation: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct Error(#[from] kube::Error);

async fn reconcile(counter: Arc<Counter>, api: Arc<Api<Counter>>) -> Result<Action, Error> {
    let status = json!({
        "apiVersion": "test.kube-sim.io/v1", "kind": "Counter",
        "status": {"observed": counter.spec.target, "observed_generation": counter.metadata.generation}
    });
    api.patch_status(
        &counter.name_any(),
        &PatchParams::apply("counter-controller").force(),
        &Patch::Apply(status),
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(_: Arc<Counter>, _: &Error, _: Arc<Api<Counter>>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

async fn converged(api: &Api<Counter>, n: i64) -> bool {
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items.len() as i64 == n
        && list.items.iter().all(|c| {
            c.status.as_ref().is_some_and(|s| {
                s.observed == c.spec.target && s.observed_generation == c.metadata.generation
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_converges_and_survives_dropped_watches() {
    let sim = KubeSim::start().await.unwrap();
    let client = sim.client();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &Counter::crd())
        .await
        .unwrap();
    let api: Api<Counter> = Api::namespaced(client.clone(), "default");
    let ctx = Arc::new(api.clone());
    let controller = tokio::spawn(
        Controller::new(
            Api::<Counter>::all(client.clone()),
            watcher::Config::default(),
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {}),
    );
    for i in 0..20 {
        api.create(
            &PostParams::default(),
            &Counter::new(&format!("c{i}"), CounterSpec { target: i }),
        )
        .await
        .unwrap();
    }
    let wait = |n| {
        let api = api.clone();
        async move {
            for _ in 0..200 {
                if converged(&api, n).await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!(
                "did not converge: {:?}",
                api.list(&ListParams::default()).await.unwrap().items
            );
        }
    };
    wait(20).await;
    // Watches drop and some status writes fail: the controller still reaches every new spec.
    sim.drop_watches();
    sim.fail_next("counters/status", Some("patch"), 3, 500);
    for i in 0..20 {
        api.patch(
            &format!("c{i}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"target": i * 10}})),
        )
        .await
        .unwrap();
    }
    wait(20).await;
    controller.abort();
}
