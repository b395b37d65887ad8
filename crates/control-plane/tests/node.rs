//! The pod identity webhook, registered as a real mutating admission webhook, injects IRSA into
//! pods of an annotated ServiceAccount; the node agent binds and runs them, mounts a real token
//! from the TokenRequest API, serves their logs through the API server's `pods/log`, enforces
//! `activeDeadlineSeconds`, and confirms deletions; labelled pods are left alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use control_plane::node::NodeAgent;
use control_plane::node::{KubeletOptions, Script, ScriptFn};
use control_plane::webhook::PodIdentityWebhook;
use control_plane::webhook::WebhookOptions;
use control_plane::ControlPlane;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use serde_json::{json, Value};

const ROLE: &str = "arn:aws:iam::123456789012:role/x";
const TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

fn pod(name: &str, labels: Value, spec: Value) -> Pod {
    let mut spec = spec;
    spec["serviceAccountName"] = json!("app");
    spec["restartPolicy"] = json!("Never");
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
        .unwrap()
}

fn shell(script: &str) -> Value {
    json!({"containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]})
}

/// Polls `name` until `done` holds, for at most `timeout`.
async fn wait_for(
    pods: &Api<Pod>,
    name: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let pod = serde_json::to_value(pods.get(name).await.unwrap()).unwrap();
        if done(&pod) {
            return pod;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} not there within {timeout:?}: {:#}",
            pod["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn phase_is(phase: &'static str) -> impl Fn(&Value) -> bool {
    move |pod| pod["status"]["phase"] == phase
}

fn env_names(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect()
}

fn volume_names(pod: &Value) -> Vec<String> {
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mutates_and_node_agent_runs_pods() {
    let plane = ControlPlane::start().await.unwrap();
    let started = Instant::now();
    let webhook = PodIdentityWebhook::start(&plane, WebhookOptions::default())
        .await
        .unwrap();
    eprintln!(
        "webhook registered and called after {:?}",
        started.elapsed()
    );
    let script: ScriptFn =
        Arc::new(
            |pod: &Value| match pod["metadata"]["labels"]["script"].as_str()? {
                "hang" => Some(Script::Hang),
                "pull" => Some(Script::ImagePullFailure),
                "exit" => Some(Script::Exit {
                    log: "scripted\n".into(),
                    code: 3,
                    after: Duration::from_millis(100),
                }),
                _ => None,
            },
        );
    let agent = NodeAgent::start(
        &plane,
        KubeletOptions {
            extra_env: vec![("EXTRA".into(), "from-options".into())],
            script: Some(script),
            ..KubeletOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(agent.node_name(), "local");

    let client = plane.client().unwrap();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "app"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {
        "name": "app", "annotations": {"eks.amazonaws.com/role-arn": ROLE}}}))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "app")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "app");

    // Mutated by the webhook, run by the agent with a real token, logs through the API server.
    let created = Instant::now();
    let irsa = pod(
        "irsa",
        json!({}),
        shell(
            r#"echo "role=$AWS_ROLE_ARN extra=$EXTRA"; cut -d. -f2 "$AWS_WEB_IDENTITY_TOKEN_FILE""#,
        ),
    );
    let irsa =
        serde_json::to_value(pods.create(&PostParams::default(), &irsa).await.unwrap()).unwrap();
    let env = &irsa["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "AWS_ROLE_ARN", "value": ROLE})),
        "{env:#}"
    );
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": TOKEN_FILE})),
        "{env:#}"
    );
    assert_eq!(
        volume_names(&irsa)[0],
        "aws-iam-token",
        "{:#}",
        irsa["spec"]["volumes"]
    );
    assert_eq!(
        irsa["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "sts.amazonaws.com"
    );
    let done = wait_for(
        &pods,
        "irsa",
        Duration::from_secs(60),
        phase_is("Succeeded"),
    )
    .await;
    eprintln!("pod create -> Succeeded: {:?}", created.elapsed());
    assert_eq!(done["spec"]["nodeName"], "local");
    let status = &done["status"]["containerStatuses"][0];
    assert_eq!(status["state"]["terminated"]["exitCode"], 0, "{status:#}");
    assert_eq!(status["state"]["terminated"]["reason"], "Completed");
    assert_eq!(status["restartCount"], 0);
    let logs = pods.logs("irsa", &LogParams::default()).await.unwrap();
    let mut lines = logs.lines();
    assert_eq!(
        lines.next(),
        Some(format!("role={ROLE} extra=from-options").as_str()),
        "{logs}"
    );
    let payload = lines.next().expect("the token's payload");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], plane.issuer(), "{claims:#}");
    assert!(
        claims["aud"]
            .as_array()
            .unwrap()
            .contains(&json!("sts.amazonaws.com")),
        "{claims:#}"
    );
    assert_eq!(claims["sub"], "system:serviceaccount:app:app");
    // Bound to the pod, as a kubelet's projected tokens are.
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "irsa", "{claims:#}");
    let tail = pods
        .logs(
            "irsa",
            &LogParams {
                tail_lines: Some(1),
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail.trim_end(), payload);

    // `follow` streams through the API server until the container exits.
    pods.create(
        &PostParams::default(),
        &pod(
            "ticker",
            json!({}),
            shell("echo one; sleep 1; echo two >&2"),
        ),
    )
    .await
    .unwrap();
    wait_for(
        &pods,
        "ticker",
        Duration::from_secs(60),
        phase_is("Running"),
    )
    .await;
    let mut followed = pods
        .log_stream(
            "ticker",
            &LogParams {
                follow: true,
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    let mut text = String::new();
    futures::AsyncReadExt::read_to_string(&mut followed, &mut text)
        .await
        .unwrap();
    assert_eq!(text, "one\ntwo\n");
    wait_for(
        &pods,
        "ticker",
        Duration::from_secs(10),
        phase_is("Succeeded"),
    )
    .await;

    // The deadline fails a hanging pod.
    let mut hang = pod("hang", json!({"script": "hang"}), shell("sleep 1000"));
    hang.spec.as_mut().unwrap().active_deadline_seconds = Some(2);
    let created = Instant::now();
    pods.create(&PostParams::default(), &hang).await.unwrap();
    wait_for(&pods, "hang", Duration::from_secs(20), phase_is("Running")).await;
    let failed = wait_for(&pods, "hang", Duration::from_secs(20), phase_is("Failed")).await;
    eprintln!("deadline pod create -> Failed: {:?}", created.elapsed());
    assert_eq!(
        failed["status"]["reason"], "DeadlineExceeded",
        "{:#}",
        failed["status"]
    );
    assert!(created.elapsed() >= Duration::from_secs(2));
    let killed = &failed["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(killed["exitCode"], 137, "{:#}", failed["status"]);

    // Scripted outcomes: an exit code with its log, an image that cannot be pulled.
    pods.create(
        &PostParams::default(),
        &pod("exit", json!({"script": "exit"}), shell("true")),
    )
    .await
    .unwrap();
    let exited = wait_for(&pods, "exit", Duration::from_secs(20), phase_is("Failed")).await;
    let terminated = &exited["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 3, "{:#}", exited["status"]);
    assert_eq!(terminated["reason"], "Error");
    assert_eq!(
        pods.logs("exit", &LogParams::default()).await.unwrap(),
        "scripted\n"
    );
    pods.create(
        &PostParams::default(),
        &pod("pull", json!({"script": "pull"}), shell("true")),
    )
    .await
    .unwrap();
    let pulling = wait_for(&pods, "pull", Duration::from_secs(20), |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
    })
    .await;
    assert_eq!(pulling["status"]["phase"], "Pending");
    let refused = pods.logs("pull", &LogParams::default()).await.unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 400 && s.message.contains("waiting to start")),
        "{refused}"
    );

    // Labelled pods never reach the webhook.
    let reviews = webhook.reviews();
    let skipped = pod(
        "skipped",
        json!({"eks.amazonaws.com/skip-pod-identity-webhook": "true"}),
        shell(r#"echo "role=$AWS_ROLE_ARN""#),
    );
    let skipped =
        serde_json::to_value(pods.create(&PostParams::default(), &skipped).await.unwrap()).unwrap();
    assert!(
        !env_names(&skipped).contains(&"AWS_ROLE_ARN".to_string()),
        "{skipped:#}"
    );
    assert!(!volume_names(&skipped).contains(&"aws-iam-token".to_string()));
    assert_eq!(
        webhook.reviews(),
        reviews,
        "the objectSelector keeps the pod from the webhook"
    );
    wait_for(
        &pods,
        "skipped",
        Duration::from_secs(60),
        phase_is("Succeeded"),
    )
    .await;
    assert_eq!(
        pods.logs("skipped", &LogParams::default()).await.unwrap(),
        "role=\n"
    );

    // A graceful deletion is confirmed once the process is stopped, long before the 30s grace.
    pods.create(
        &PostParams::default(),
        &pod("sleeper", json!({}), shell("sleep 1000")),
    )
    .await
    .unwrap();
    wait_for(
        &pods,
        "sleeper",
        Duration::from_secs(60),
        phase_is("Running"),
    )
    .await;
    let deleting = Instant::now();
    pods.delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    while pods.get_opt("sleeper").await.unwrap().is_some() {
        assert!(
            deleting.elapsed() < Duration::from_secs(10),
            "the deletion is not confirmed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("graceful delete -> gone: {:?}", deleting.elapsed());

    let requests = plane
        .requests_from(control_plane::node::USER_AGENT)
        .unwrap();
    for (resource, verb) in [
        ("pods/binding", "create"),
        ("pods/status", "patch"),
        ("serviceaccounts/token", "create"),
        ("pods", "delete"),
    ] {
        assert!(
            requests.contains_key(&("".into(), resource.into(), verb.into())),
            "{resource} {verb}: {requests:?}"
        );
    }
    assert!(webhook.mutated() >= 1);
    webhook.deregister().await.unwrap();
    drop(agent);
}
