//! kube-sim's API machinery, exercised with the real kube-rs client over HTTP.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    Event as CoreEvent, Namespace, ObjectReference, Pod, ServiceAccount,
};
use k8s_openapi::api::events::v1::Event as EventsV1;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{watcher, WatchStreamExt};
use kube_sim::{KubeSim, KubeletOptions, Options, Script};
use serde_json::{json, Value};

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = from_json(json!({"metadata": {"name": name}}));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn pod(name: &str, sa: &str) -> Pod {
    from_json(json!({
        "metadata": {"name": name, "labels": {"app": "web", "tier": name}},
        "spec": {"serviceAccountName": sa, "containers": [{"name": "main", "image": "busybox"}]}
    }))
}

fn error_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test]
async fn crud_errors_and_metadata() {
    let sim = KubeSim::start().await.unwrap();
    let client = sim.client();
    namespace(&client, "apps").await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "apps");
    // Every namespace gets its default ServiceAccount, as the real controller does.
    assert!(sas.get("default").await.is_ok());
    let created = sas
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "s3-reader"}})),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.resource_version.is_some() && meta.creation_timestamp.is_some()
    );
    assert_eq!(meta.namespace.as_deref(), Some("apps"));
    let dup = sas
        .create(&PostParams::default(), &created)
        .await
        .unwrap_err();
    assert_eq!(error_code(dup), 409);
    let missing = sas.get("nope").await.unwrap_err();
    assert_eq!(error_code(missing), 404);
    let invalid = sas
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "Bad_Name"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(invalid), 422);
    let no_ns = Api::<ServiceAccount>::namespaced(client.clone(), "ghost")
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "x"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(no_ns), 404);

    // Replace with a stale resourceVersion conflicts; with the current one it succeeds.
    let mut fresh = sas.get("s3-reader").await.unwrap();
    fresh.metadata.annotations = Some([("a".to_string(), "1".to_string())].into());
    let replaced = sas
        .replace("s3-reader", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let stale = sas
        .replace("s3-reader", &PostParams::default(), &fresh)
        .await
        .unwrap_err();
    assert_eq!(error_code(stale), 409);
    assert_ne!(
        replaced.metadata.resource_version,
        fresh.metadata.resource_version
    );

    // Patches: merge, JSON patch, strategic merge, server-side apply.
    sas.patch(
        "s3-reader",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"m": "1"}}})),
    )
    .await
    .unwrap();
    let jp: json_patch::Patch =
        from_json(json!([{"op": "add", "path": "/metadata/labels/j", "value": "2"}]));
    sas.patch("s3-reader", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    sas.patch(
        "s3-reader",
        &PatchParams::default(),
        &Patch::Strategic(json!({"metadata": {"labels": {"s": "3"}}})),
    )
    .await
    .unwrap();
    let applied = sas
        .patch(
            "s3-reader",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "s3-reader", "labels": {"a": "4"}}})),
        )
        .await
        .unwrap();
    let labels = applied.metadata.labels.unwrap();
    assert_eq!(labels.len(), 4, "{labels:?}");
    // Apply creates what does not exist.
    sas.patch(
        "applied",
        &PatchParams::apply("test"),
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "applied"}}),
        ),
    )
    .await
    .unwrap();
    assert!(sas.get("applied").await.is_ok());

    // Requests are counted; injected faults come back as API errors.
    assert!(sim.request_count("create", "serviceaccounts") >= 2);
    sim.fail_next("serviceaccounts", Some("get"), 1, 500);
    assert_eq!(error_code(sas.get("s3-reader").await.unwrap_err()), 500);
    assert!(sas.get("s3-reader").await.is_ok());
}

#[tokio::test]
async fn selectors_pagination_and_all_namespaces() {
    let sim = KubeSim::start().await.unwrap();
    let client = sim.client();
    for ns in ["a", "b"] {
        namespace(&client, ns).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        for name in ["p1", "p2", "p3"] {
            pods.create(&PostParams::default(), &pod(name, "default"))
                .await
                .unwrap();
        }
    }
    let all: Api<Pod> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        6
    );
    assert_eq!(
        all.list(&ListParams::default().labels("tier in (p1,p2)"))
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    assert_eq!(
        all.list(&ListParams::default().labels("tier!=p1,app=web"))
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    assert_eq!(
        all.list(&ListParams::default().labels("!app"))
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    let by_field = all
        .list(&ListParams::default().fields("metadata.namespace=b,metadata.name=p2"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);
    assert_eq!(
        all.list(&ListParams::default().fields("spec.serviceAccountName=default"))
            .await
            .unwrap()
            .items
            .len(),
        6
    );
    // Pagination.
    let first = all.list(&ListParams::default().limit(4)).await.unwrap();
    assert_eq!(first.items.len(), 4);
    let token = first.metadata.continue_.clone().unwrap();
    let rest = all
        .list(&ListParams::default().limit(4).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 2);
    assert!(rest.metadata.continue_.is_none());
}

#[tokio::test]
async fn watch_resumes_filters_bookmarks_and_410() {
    let sim = KubeSim::start_with(Options {
        bookmark_interval: Duration::from_millis(100),
        ..Options::default()
    })
    .await
    .unwrap();
    let client = sim.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let first = pods
        .create(&PostParams::default(), &pod("one", "default"))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    pods.create(&PostParams::default(), &pod("two", "default"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("three", "default"))
        .await
        .unwrap();
    // Resume from `rv`: exactly the later changes, filtered by label, then bookmarks.
    let params = WatchParams::default().labels("tier=three").timeout(2);
    assert!(params.bookmarks);
    let mut stream = pods.watch(&params, &rv).await.unwrap().boxed();
    let mut added = Vec::new();
    let mut bookmarks = 0;
    while let Some(ev) = stream.try_next().await.unwrap() {
        match ev {
            WatchEvent::Added(p) => added.push(p.metadata.name.unwrap()),
            WatchEvent::Bookmark(_) => {
                bookmarks += 1;
                if bookmarks == 2 {
                    break;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(added, ["three"]);
    // A compacted history answers 410 Gone inside the watch stream.
    sim.compact();
    let mut gone = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match gone.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("{other:?}"),
    }
}

async fn next(
    names: &mut tokio::sync::mpsc::UnboundedReceiver<Result<String, watcher::Error>>,
) -> Result<String, watcher::Error> {
    tokio::time::timeout(Duration::from_secs(10), names.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn kube_watcher_relists_after_410_and_dropped_watches() {
    let sim = KubeSim::start().await.unwrap();
    let client = sim.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The watcher is driven in its own task, as a controller would.
    let (tx, mut names) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(
        watcher(pods.clone(), watcher::Config::default())
            .applied_objects()
            .for_each(move |p| {
                let _ = tx.send(p.map(|p| p.metadata.name.unwrap_or_default()));
                async {}
            }),
    );
    pods.create(&PostParams::default(), &pod("a", "default"))
        .await
        .unwrap();
    assert_eq!(next(&mut names).await.unwrap(), "a");
    // Drop every watch and fail the re-watches while "b" is created and history is compacted:
    // the watcher then gets 410 on resume, re-lists and carries on.
    sim.fail_next("pods", Some("watch"), 2, 500);
    sim.drop_watches();
    pods.create(&PostParams::default(), &pod("b", "default"))
        .await
        .unwrap();
    sim.compact();
    let mut seen = Vec::new();
    while !seen.contains(&"b".to_string()) {
        if let Ok(name) = next(&mut names).await {
            seen.push(name);
        }
    }
    assert!(
        sim.request_count("list", "pods") >= 2,
        "{:?}",
        sim.requests()
    );
    assert!(
        sim.request_count("watch", "pods") >= 4,
        "{:?}",
        sim.requests()
    );
    driver.abort();
}

#[tokio::test]
async fn status_subresource_generation_finalizers_and_gc() {
    let sim = KubeSim::start().await.unwrap();
    let client = sim.client();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &from_json(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))).await.unwrap();
    let established = crds.get("widgets.example.com").await.unwrap();
    assert!(established
        .status
        .unwrap()
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True"));
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w: DynamicObject = from_json(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1", "finalizers": ["example.com/hold"]}, "spec": {"size": 1}}));
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    // Status writes change only status; object writes keep status; spec changes bump generation.
    widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    let after_status = widgets.get("w1").await.unwrap();
    assert_eq!(after_status.data["status"]["ready"], true);
    assert_eq!(after_status.data["spec"]["size"], 1);
    assert_eq!(after_status.metadata.generation, Some(1));
    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}, "status": {"ready": false}})),
        )
        .await
        .unwrap();
    let after_spec = widgets.get("w1").await.unwrap();
    assert_eq!(after_spec.metadata.generation, Some(2));
    assert_eq!(after_spec.data["status"]["ready"], true);
    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        widgets.get("w1").await.unwrap().metadata.generation,
        Some(2),
        "metadata changes keep generation"
    );

    // A pod owned by the widget; deleting the widget waits for its finalizer, then collects the pod.
    let uid = after_spec.metadata.uid.clone().unwrap();
    let mut owned = pod("owned", "default");
    owned.metadata.owner_references = Some(vec![from_json(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "name": "w1", "uid": uid}),
    )]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &owned).await.unwrap();
    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    assert!(widgets
        .get("w1")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());
    assert!(pods.get("owned").await.is_ok());
    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(error_code(widgets.get("w1").await.unwrap_err()), 404);
    assert_eq!(error_code(pods.get("owned").await.unwrap_err()), 404);
}

#[tokio::test]
async fn webhook_injects_on_create_only_and_kubelet_runs_pods() {
    let script: kube_sim::ScriptFn = std::sync::Arc::new(|pod: &Value| {
        (pod["metadata"]["name"] == "pull").then_some(Script::ImagePullFailure)
    });
    let sim = KubeSim::start_with(Options {
        kubelet: Some(KubeletOptions {
            extra_env: vec![("EXTRA".into(), "yes".into())],
            script: Some(script),
        }),
        ..Options::default()
    })
    .await
    .unwrap();
    let client = sim.client();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sas.create(
        &PostParams::default(),
        &from_json(json!({"metadata": {"name": "app"}})),
    )
    .await
    .unwrap();
    let mut early = pod("early", "app");
    early.spec.as_mut().unwrap().containers[0].command =
        Some(vec!["sh".into(), "-c".into(), "exit 0".into()]);
    pods.create(&PostParams::default(), &early).await.unwrap();
    sas.patch("app", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/app"}}}))).await.unwrap();
    let mut late = pod("late", "app");
    late.spec.as_mut().unwrap().containers[0].command = Some(vec![
        "sh".into(),
        "-c".into(),
        "echo role=$AWS_ROLE_ARN extra=$EXTRA; cut -d. -f2 $AWS_WEB_IDENTITY_TOKEN_FILE | base64 -d 2>/dev/null; exit 3".into(),
    ]);
    let late = pods.create(&PostParams::default(), &late).await.unwrap();
    let env = late.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(env.iter().any(|e| e.name == "AWS_ROLE_ARN"), "{env:?}");
    let early_env = pods.get("early").await.unwrap().spec.unwrap().containers[0]
        .env
        .clone();
    assert!(
        early_env.is_none(),
        "pods created before the annotation stay un-injected"
    );
    let mut pull = pod("pull", "default");
    pull.spec.as_mut().unwrap().containers[0].image = Some("registry.invalid/nope:1".into());
    pods.create(&PostParams::default(), &pull).await.unwrap();

    let wait_for = |name: &'static str, done: fn(&Pod) -> bool| {
        let pods = pods.clone();
        async move {
            for _ in 0..200 {
                let p = pods.get(name).await.unwrap();
                if done(&p) {
                    return p;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!(
                "{name} never got there: {:?}",
                pods.get(name).await.unwrap().status
            );
        }
    };
    let finished = wait_for("late", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
    })
    .await;
    let code = finished.status.unwrap().container_statuses.unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .exit_code;
    assert_eq!(code, 3);
    let log = pods.logs("late", &Default::default()).await.unwrap();
    assert!(
        log.contains("role=arn:aws:iam::111122223333:role/app extra=yes"),
        "{log}"
    );
    assert!(
        log.contains("system:serviceaccount:default:app") && log.contains("sts.amazonaws.com"),
        "{log}"
    );
    let pulling = wait_for("pull", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| {
                c[0].state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("ImagePullBackOff")
            })
    })
    .await;
    assert_eq!(pulling.status.unwrap().phase.as_deref(), Some("Pending"));
    // A pod whose ServiceAccount does not exist is refused, as by the ServiceAccount admission.
    assert_eq!(
        error_code(
            pods.create(&PostParams::default(), &pod("orphan", "ghost"))
                .await
                .unwrap_err()
        ),
        403
    );
}

#[tokio::test]
async fn recorder_events_show_in_the_core_api_and_oidc_documents_are_served() {
    let sim = KubeSim::start().await.unwrap();
    let client = sim.client();
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), "default")
        .get("default")
        .await
        .unwrap();
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ServiceAccount".into()),
        name: sa.metadata.name.clone(),
        namespace: sa.metadata.namespace.clone(),
        uid: sa.metadata.uid.clone(),
        ..Default::default()
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "irsa-doctor".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Warning,
        reason: "TrustPolicySubjectMismatch".into(),
        note: Some("bad".into()),
        action: "Diagnose".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let listed = core
        .list(
            &ListParams::default()
                .fields("involvedObject.kind=ServiceAccount,involvedObject.name=default"),
        )
        .await
        .unwrap();
    assert_eq!(
        listed.items.len(),
        1,
        "a repeated event is one object with a series"
    );
    assert_eq!(
        listed.items[0].reason.as_deref(),
        Some("TrustPolicySubjectMismatch")
    );
    assert_eq!(listed.items[0].message.as_deref(), Some("bad"));
    let v1: Api<EventsV1> = Api::namespaced(client.clone(), "default");
    let ev = &v1.list(&ListParams::default()).await.unwrap().items[0];
    assert_eq!(ev.series.as_ref().map(|s| s.count), Some(2));

    let discovery = get_json(&client, "/.well-known/openid-configuration").await;
    assert_eq!(discovery["issuer"], sim.issuer());
    let jwks = get_json(&client, "/openid/v1/jwks").await;
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
}

/// A GET through kube's own HTTP client, for the non-resource endpoints.
async fn get_json(client: &kube::Client, path: &str) -> Value {
    client
        .request::<Value>(http::Request::get(path).body(Vec::new()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn streaming_lists_apply_rules_orphans_and_scripted_pods() {
    let script: kube_sim::ScriptFn =
        std::sync::Arc::new(|pod: &Value| match pod["metadata"]["name"].as_str() {
            Some("denied") => Some(Script::Exit {
                log: "An error occurred (AccessDenied)".into(),
                code: 254,
                after: Duration::from_millis(10),
            }),
            Some("stuck") => Some(Script::Hang),
            _ => None,
        });
    let sim = KubeSim::start_with(Options {
        kubelet: Some(KubeletOptions {
            extra_env: Vec::new(),
            script: Some(script),
        }),
        ..Options::default()
    })
    .await
    .unwrap();
    let client = sim.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("denied", "default"))
        .await
        .unwrap();
    let mut stuck = pod("stuck", "default");
    stuck.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
    pods.create(&PostParams::default(), &stuck).await.unwrap();

    // sendInitialEvents: the existing objects, then a bookmark marking the end of the initial list.
    let params = WatchParams::streaming_lists().timeout(3);
    let mut stream = pods.watch(&params, "").await.unwrap().boxed();
    let mut initial = Vec::new();
    loop {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(p) => initial.push(p.metadata.name.unwrap()),
            WatchEvent::Bookmark(b) => {
                assert_eq!(
                    b.metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                break;
            }
            _ => {}
        }
    }
    initial.sort();
    assert_eq!(initial, ["denied", "stuck"]);

    // Scripted outcomes: a given log and exit code; a pod that never finishes hits its deadline.
    for _ in 0..100 {
        let done = |name: &str| {
            let pods = pods.clone();
            let name = name.to_string();
            async move {
                pods.get(&name)
                    .await
                    .unwrap()
                    .status
                    .and_then(|s| s.phase)
                    .unwrap_or_default()
            }
        };
        if done("denied").await == "Failed" && done("stuck").await == "Failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pods.logs("denied", &Default::default()).await.unwrap(),
        "An error occurred (AccessDenied)"
    );
    let stuck = pods.get("stuck").await.unwrap().status.unwrap();
    assert_eq!(
        (stuck.phase.as_deref(), stuck.reason.as_deref()),
        (Some("Failed"), Some("DeadlineExceeded"))
    );

    // Apply needs a field manager.
    let no_manager = pods
        .patch(
            "denied",
            &PatchParams::default(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "denied"}}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(error_code(no_manager), 400);

    // Orphan propagation keeps dependents and strips their owner reference.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let owner = sas
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "owner"}})),
        )
        .await
        .unwrap();
    let mut dependent = pod("dependent", "default");
    dependent.metadata.owner_references = Some(vec![from_json(
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "name": "owner", "uid": owner.metadata.uid}),
    )]);
    pods.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    sas.delete("owner", &DeleteParams::orphan()).await.unwrap();
    let kept = pods.get("dependent").await.unwrap();
    assert!(kept
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());
}
