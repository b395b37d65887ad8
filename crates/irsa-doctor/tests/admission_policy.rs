//! The operator's pod power, fenced by the API server: the chart's ValidatingAdmissionPolicy, on a
//! real kube-apiserver, lets the operator's ServiceAccount create only the probe pod the operator
//! builds (with the chart's own image and command) and delete only probe pods, and leaves every
//! other identity alone. Also the chart's optional NetworkPolicy, accepted by the API server.

mod common;

use std::time::Duration;

use clap::Parser as _;
use common::*;
use irsa_doctor::api::{IrsaCheck, IrsaCheckSpec};
use irsa_doctor::cli::{Cli, Command};
use irsa_doctor::operator::probe::{injection, probe_pod, ProbeConfig};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, PostParams};
use serde::Deserialize as _;
use serde_json::{json, Value};
use test_support::cluster::{helm_template, kubectl_apply, OPERATOR_NAMESPACE};

/// The policy's (and its binding's) name with the chart's default release.
const POLICY: &str = "irsa-doctor-probe-pods";
const NS: &str = "reports";

/// The rendered chart's documents.
fn rendered(values: &[&str]) -> anyhow::Result<Vec<Value>> {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    let text = helm_template(&values, false)?;
    Ok(serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("every rendered document is YAML"))
        .filter(|v| !v.is_null())
        .collect())
}

/// The probe configuration of the operator the chart deploys with `values`: the Deployment's
/// arguments, parsed by the operator's own command line.
fn chart_probe_config(values: &[&str]) -> ProbeConfig {
    let docs = rendered(values).unwrap();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string());
    let cli = Cli::try_parse_from(std::iter::once("irsa-doctor".to_string()).chain(args)).unwrap();
    match cli.command {
        Command::Run(run) => run.probe(),
        other => panic!("the chart runs {other:?}"),
    }
}

fn helm_available() -> bool {
    let found = std::process::Command::new("helm")
        .arg("version")
        .output()
        .is_ok();
    if !found {
        eprintln!("SKIPPED: helm is not on PATH (make tools installs it)");
    }
    found
}

#[test]
fn the_policy_bakes_in_the_probe_the_chart_deploys() {
    if !helm_available() {
        return;
    }
    // The chart's defaults are the operator's defaults.
    let defaults = match Cli::try_parse_from(["irsa-doctor", "run"]).unwrap().command {
        Command::Run(run) => run.probe(),
        _ => unreachable!(),
    };
    let deployed = chart_probe_config(&[]);
    assert_eq!(
        (&deployed.image, &deployed.command),
        (&defaults.image, &defaults.command)
    );
    let docs = rendered(&[]).unwrap();
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicy")
        .expect("on by default");
    let expressions: String = policy["spec"]["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["expression"].as_str().unwrap())
        .collect();
    assert!(expressions.contains(&serde_json::to_string(&deployed.image).unwrap()));
    assert!(expressions.contains(&serde_json::to_string(&deployed.command).unwrap()));
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        "request.userInfo.username == \"system:serviceaccount:irsa-doctor:irsa-doctor\""
    );
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicyBinding")
        .unwrap();
    assert_eq!(binding["spec"]["policyName"], POLICY);
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));

    // Another image: the Deployment passes it, the policy admits it.
    let mirrored = rendered(&["probe.image=registry.example.com/aws-cli:2.22.35@sha256:0000000000000000000000000000000000000000000000000000000000000000"]).unwrap();
    let policy = mirrored
        .iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicy")
        .unwrap()
        .to_string();
    assert!(policy.contains("registry.example.com/aws-cli:2.22.35@sha256:0000"));
    assert!(!policy.contains("amazon/aws-cli"));

    // Off: neither object.
    let off = rendered(&["admissionPolicy.enabled=false"]).unwrap();
    assert!(off.iter().all(|d| !d["kind"]
        .as_str()
        .unwrap()
        .starts_with("ValidatingAdmissionPolicy")));

    // A probe command or image set behind the policy's back is refused at render time.
    for values in [
        &["extraArgs={--probe-image=busybox}"][..],
        &["extraArgs={--probe-command=sh -c id}"][..],
        &[
            "extraEnv[0].name=IRSA_DOCTOR_PROBE_COMMAND",
            "extraEnv[0].value=sh -c id",
        ][..],
    ] {
        let err = rendered(values).unwrap_err().to_string();
        assert!(err.contains("admission policy"), "{values:?}: {err}");
    }
    // The same command through extraArgs is fine.
    rendered(&["extraArgs={--probe-command=aws sts get-caller-identity --output json}"]).unwrap();
}

/// A kube client with the operator's own credentials (the chart's ServiceAccount).
async fn operator_client(cluster: &Cluster) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.operator_kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The pod as JSON, changed by `f`, back as a Pod.
fn changed(pod: &Pod, f: impl FnOnce(&mut Value)) -> Pod {
    let mut v = serde_json::to_value(pod).unwrap();
    f(&mut v);
    serde_json::from_value(v).unwrap()
}

/// The policy's refusal of `result`: a 403 naming the policy, its message returned.
fn refusal<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{what}: {s:?}");
            assert!(
                s.message.contains(&format!(
                    "ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request"
                )),
                "{what}: not refused by the policy: {}",
                s.message
            );
            s.message
        }
        other => panic!("{what}: admitted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_may_create_and_delete_only_its_probe_pods() {
    // The chart with its defaults (Cluster::start fails if kubectl apply refuses the policy), the
    // pod identity webhook (so that the admitted probe carries its token volume and env), no node
    // (pods stay Pending: nothing runs).
    let cluster = Cluster::start(ClusterOptions {
        webhook: Some(control_plane::webhook::WebhookOptions {
            region: Some("us-east-1".into()),
            regional_sts: true,
            ..control_plane::webhook::WebhookOptions::default()
        }),
        without_node: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let admin = cluster.client();
    let operator = operator_client(&cluster).await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "s3-reader",
        "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{ACCOUNT}:role/s3-reader")}}}))
    .unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let spec: IrsaCheckSpec = serde_json::from_value(
        json!({"serviceAccountName": "s3-reader", "probe": {"enabled": true}}),
    )
    .unwrap();
    let check = Api::<IrsaCheck>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &IrsaCheck::new("s3-reader", spec))
        .await
        .unwrap();

    // A runtime class to ask for (the API server refuses one that does not exist itself).
    let runc: k8s_openapi::api::node::v1::RuntimeClass =
        serde_json::from_value(json!({"metadata": {"name": "runc"}, "handler": "runc"})).unwrap();
    Api::<k8s_openapi::api::node::v1::RuntimeClass>::all(admin.clone())
        .create(&PostParams::default(), &runc)
        .await
        .unwrap();

    // The probe pod exactly as the operator the chart deploys builds it.
    let good = probe_pod(&check, &chart_probe_config(&[]), Duration::from_secs(120));
    let as_operator: Api<Pod> = Api::namespaced(operator.clone(), NS);
    let as_admin: Api<Pod> = Api::namespaced(admin.clone(), NS);

    // A policy takes effect once the API server has loaded it: wait for its first refusal
    // (dry runs, so that nothing is created meanwhile).
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let other_image = changed(&good, |p| {
        p["spec"]["containers"][0]["image"] = json!("busybox")
    });
    eventually(
        "the admission policy to be in force",
        Duration::from_secs(30),
        async || match as_operator.create(&dry_run, &other_image).await {
            Err(kube::Error::Api(s)) if s.message.contains(POLICY) => Some(()),
            _ => None,
        },
    )
    .await;

    // Every rule, broken once, by the operator's identity: refused with its own message. (A
    // privileged container is not among them: the test API server runs without
    // --allow-privileged and refuses one whoever asks. EKS allows them; the policy does not.)
    let uid = check.metadata.uid.clone().unwrap();
    let cases: Vec<(&str, Pod, &str)> = vec![
        (
            "another image",
            other_image.clone(),
            "the configured probe image amazon/aws-cli:2.22.35",
        ),
        (
            "a second container",
            changed(&good, |p| {
                let c = p["spec"]["containers"][0].clone();
                let mut sidecar = c.clone();
                sidecar["name"] = json!("sidecar");
                p["spec"]["containers"] = json!([c, sidecar]);
            }),
            "one container",
        ),
        (
            "an init container",
            changed(&good, |p| {
                let mut init = p["spec"]["containers"][0].clone();
                init["name"] = json!("init");
                p["spec"]["initContainers"] = json!([init]);
            }),
            "not spec.initContainers",
        ),
        (
            "another command",
            changed(&good, |p| {
                p["spec"]["containers"][0]["command"] = json!([
                    "sh",
                    "-c",
                    "cat /var/run/secrets/eks.amazonaws.com/serviceaccount/token"
                ])
            }),
            "runs only the probe command",
        ),
        (
            "extra args",
            changed(&good, |p| {
                p["spec"]["containers"][0]["args"] = json!(["--debug"])
            }),
            "not probe.args",
        ),
        (
            "hostNetwork",
            changed(&good, |p| p["spec"]["hostNetwork"] = json!(true)),
            "not spec.hostNetwork",
        ),
        (
            "hostPID",
            changed(&good, |p| p["spec"]["hostPID"] = json!(true)),
            "not spec.hostPID",
        ),
        (
            "a hostPort",
            changed(&good, |p| {
                p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 80}])
            }),
            "not probe.ports",
        ),
        (
            "a hostPath volume",
            changed(&good, |p| {
                p["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "root", "hostPath": {"path": "/"}}))
            }),
            "no hostPath, Secret, ConfigMap or other volume",
        ),
        (
            "a Secret volume",
            changed(&good, |p| {
                p["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "s", "secret": {"secretName": "anything"}}))
            }),
            "no hostPath, Secret, ConfigMap or other volume",
        ),
        (
            "a Kubernetes API token volume",
            changed(&good, |p| {
                p["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "api",
                    "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}))
            }),
            "no hostPath, Secret, ConfigMap or other volume",
        ),
        (
            "automountServiceAccountToken",
            changed(&good, |p| {
                p["spec"]["automountServiceAccountToken"] = json!(true)
            }),
            "automountServiceAccountToken: false",
        ),
        (
            "allowPrivilegeEscalation",
            changed(&good, |p| {
                p["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] =
                    json!(true)
            }),
            "allowPrivilegeEscalation false",
        ),
        (
            "an added capability",
            changed(&good, |p| {
                p["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] =
                    json!(["NET_ADMIN"])
            }),
            "no added capability",
        ),
        (
            "root",
            changed(&good, |p| {
                p["spec"]["securityContext"]["runAsUser"] = json!(0);
                p["spec"]["securityContext"]["runAsNonRoot"] = json!(false);
                p["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
            }),
            "runAsUser and runAsGroup 65532",
        ),
        (
            "a Secret in the environment",
            changed(&good, |p| {
                p["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "X",
                    "valueFrom": {"secretKeyRef": {"name": "anything", "key": "k"}}}))
            }),
            "no valueFrom",
        ),
        (
            "another STS endpoint",
            changed(&good, |p| {
                p["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "AWS_ENDPOINT_URL_STS", "value": "http://collector.example"}))
            }),
            "no variable that could send the token elsewhere",
        ),
        (
            "hostAliases",
            changed(
                &good,
                |p| {
                    p["spec"]["hostAliases"] =
                        json!([{"ip": "192.0.2.1", "hostnames": ["sts.us-east-1.amazonaws.com"]}])
                },
            ),
            "not spec.hostAliases",
        ),
        (
            "no seccomp profile",
            changed(&good, |p| {
                p["spec"]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"})
            }),
            "seccompProfile RuntimeDefault",
        ),
        (
            "capabilities kept",
            changed(&good, |p| {
                p["spec"]["containers"][0]["securityContext"]["capabilities"] = json!(null)
            }),
            "capabilities drop ALL",
        ),
        // The review's bypasses of the former deny-list, and fields no rule names.
        (
            "a postStart hook",
            changed(&good, |p| {
                p["spec"]["containers"][0]["lifecycle"] = json!({"postStart": {"exec": {"command":
                    ["sh", "-c", "cat /var/run/secrets/eks.amazonaws.com/serviceaccount/token"]}}})
            }),
            "not probe.lifecycle",
        ),
        (
            "a preStop hook",
            changed(&good, |p| {
                p["spec"]["containers"][0]["lifecycle"] =
                    json!({"preStop": {"exec": {"command": ["sh", "-c", "id"]}}})
            }),
            "not probe.lifecycle",
        ),
        (
            "an exec liveness probe",
            changed(&good, |p| {
                p["spec"]["containers"][0]["livenessProbe"] =
                    json!({"exec": {"command": ["sh", "-c", "id"]}})
            }),
            "not probe.livenessProbe",
        ),
        (
            "a readiness probe to another host",
            changed(&good, |p| {
                p["spec"]["containers"][0]["readinessProbe"] =
                    json!({"httpGet": {"host": "collector.example", "port": 80}})
            }),
            "not probe.readinessProbe",
        ),
        (
            "a startup probe",
            changed(&good, |p| {
                p["spec"]["containers"][0]["startupProbe"] =
                    json!({"exec": {"command": ["sh", "-c", "id"]}})
            }),
            "not probe.startupProbe",
        ),
        (
            "restartPolicy Always",
            changed(&good, |p| p["spec"]["restartPolicy"] = json!("Always")),
            "restartPolicy Never",
        ),
        (
            "no deadline",
            changed(&good, |p| {
                p["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("activeDeadlineSeconds");
            }),
            "activeDeadlineSeconds from 1 to 900",
        ),
        (
            "a deadline past the longest probe timeout",
            changed(&good, |p| p["spec"]["activeDeadlineSeconds"] = json!(901)),
            "activeDeadlineSeconds from 1 to 900",
        ),
        (
            "a nodeSelector",
            changed(&good, |p| {
                p["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "control-plane"})
            }),
            "not spec.nodeSelector",
        ),
        (
            "node affinity",
            changed(&good, |p| {
                p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                    {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}})
            }),
            "not spec.affinity",
        ),
        (
            "a toleration of every taint",
            changed(&good, |p| {
                p["spec"]["tolerations"] = json!([{"operator": "Exists"}])
            }),
            "only the not-ready/unreachable NoExecute tolerations",
        ),
        (
            "system-node-critical",
            changed(&good, |p| {
                p["spec"]["priorityClassName"] = json!("system-node-critical")
            }),
            "not spec.priority",
        ),
        (
            "a runtime class",
            changed(&good, |p| p["spec"]["runtimeClassName"] = json!("runc")),
            "not spec.runtimeClassName",
        ),
        (
            "no resources",
            changed(&good, |p| {
                p["spec"]["containers"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("resources");
            }),
            "requests cpu 50m and memory 64Mi",
        ),
        (
            "huge resources",
            changed(&good, |p| {
                p["spec"]["containers"][0]["resources"]["limits"] =
                    json!({"cpu": "64", "memory": "256Gi"})
            }),
            "limited to cpu 200m and memory 128Mi",
        ),
        (
            "a memory-backed emptyDir",
            changed(&good, |p| {
                p["spec"]["volumes"][0]["emptyDir"]["medium"] = json!("Memory")
            }),
            "emptyDir of 16Mi on disk",
        ),
        (
            "AppArmor unconfined",
            changed(&good, |p| {
                p["spec"]["securityContext"]["appArmorProfile"] = json!({"type": "Unconfined"})
            }),
            "no AppArmor or SELinux options",
        ),
        (
            "AppArmor unconfined by annotation",
            changed(
                &good,
                |p| {
                    p["metadata"]["annotations"] = json!({"container.apparmor.security.beta.kubernetes.io/probe": "unconfined"})
                },
            ),
            "no annotation",
        ),
        (
            "SELinux spc_t",
            changed(&good, |p| {
                p["spec"]["containers"][0]["securityContext"]["seLinuxOptions"] =
                    json!({"type": "spc_t"})
            }),
            "no AppArmor, SELinux or seccomp override",
        ),
        (
            "group root",
            changed(&good, |p| {
                p["spec"]["securityContext"]["runAsGroup"] = json!(0)
            }),
            "runAsUser and runAsGroup 65532",
        ),
        (
            "a writable root filesystem",
            changed(&good, |p| {
                p["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] =
                    json!(false)
            }),
            "readOnlyRootFilesystem true",
        ),
        (
            "the node's user namespace",
            changed(&good, |p| p["spec"]["hostUsers"] = json!(true)),
            "not spec.hostUsers",
        ),
        (
            "a shared process namespace",
            changed(&good, |p| p["spec"]["shareProcessNamespace"] = json!(true)),
            "not spec.shareProcessNamespace",
        ),
        (
            "a subPath mount",
            changed(&good, |p| {
                p["spec"]["containers"][0]["volumeMounts"][0]["subPath"] = json!("x")
            }),
            "no subPath",
        ),
        (
            "service links",
            changed(&good, |p| p["spec"]["enableServiceLinks"] = json!(true)),
            "enableServiceLinks false",
        ),
        (
            "another label",
            changed(&good, |p| p["metadata"]["labels"]["app"] = json!("web")),
            "only its own labels",
        ),
        (
            "another container name",
            changed(&good, |p| p["spec"]["containers"][0]["name"] = json!("app")),
            "named probe",
        ),
        (
            "no owner",
            changed(&good, |p| p["metadata"]["ownerReferences"] = json!(null)),
            "exactly one ownerReference",
        ),
        (
            "an owner that is not the controller",
            changed(&good, |p| {
                p["metadata"]["ownerReferences"][0]["controller"] = json!(false)
            }),
            "exactly one ownerReference",
        ),
        (
            "another kind of owner",
            changed(&good, |p| {
                p["metadata"]["ownerReferences"][0]["kind"] = json!("Deployment");
                p["metadata"]["ownerReferences"][0]["apiVersion"] = json!("apps/v1");
            }),
            "exactly one ownerReference",
        ),
        (
            "no probe label",
            changed(&good, |p| {
                p["metadata"]["labels"]
                    .as_object_mut()
                    .unwrap()
                    .remove("irsa-doctor.io/probe");
            }),
            "irsa-doctor.io/probe=true",
        ),
        (
            "another check's uid",
            changed(&good, |p| {
                p["metadata"]["labels"]["irsa-doctor.io/check-uid"] =
                    json!("00000000-0000-4000-8000-000000000000")
            }),
            "irsa-doctor.io/check-uid is its IrsaCheck's uid",
        ),
        (
            "another name",
            changed(&good, |p| p["metadata"]["name"] = json!("web")),
            "named <IrsaCheck>-irsa-probe",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, pod, expected) in &cases {
        let message = refusal(what, as_operator.create(&PostParams::default(), pod).await);
        if !message.contains(expected) {
            wrong.push(format!("{what}: {message}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "refused for another reason:\n{}",
        wrong.join("\n")
    );
    assert!(as_admin
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty());

    // The admin's own pods are none of the policy's business: the same bad pods are admitted.
    for (i, (what, pod, _)) in cases.iter().enumerate() {
        let pod = changed(pod, |p| {
            p["metadata"]["name"] = json!(format!("admin-{i}"));
        });
        as_admin
            .create(&dry_run, &pod)
            .await
            .unwrap_or_else(|e| panic!("the admin's pod with {what}: {e}"));
    }
    let workload = changed(&other_image, |p| {
        p["metadata"] = json!({"name": "workload"});
        p["spec"]["hostNetwork"] = json!(true);
    });
    as_admin
        .create(&PostParams::default(), &workload)
        .await
        .unwrap();
    let labelled = changed(&good, |p| {
        p["metadata"]["name"] = json!("copycat");
        p["metadata"]["ownerReferences"] = json!(null);
    });
    as_admin
        .create(&PostParams::default(), &labelled)
        .await
        .unwrap();

    // The well-formed probe pod is admitted, after the webhook added its token volume and env.
    let created = as_operator
        .create(&PostParams::default(), &good)
        .await
        .unwrap();
    let injected = injection(&created);
    assert!(
        injected.token_volume && injected.token_file && injected.role_arn.is_some(),
        "the webhook mutated the admitted probe pod: {injected:?}"
    );
    assert_eq!(
        created.metadata.labels.as_ref().unwrap()["irsa-doctor.io/check-uid"],
        uid
    );

    // Updates and subresources, were RBAC ever to grant them (here it does, on purpose): refused
    // by the policy all the same.
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
        "metadata": {"name": "too-much"},
        "rules": [{"apiGroups": [""], "verbs": ["*"],
                   "resources": ["pods", "pods/status", "pods/eviction", "pods/binding",
                                 "pods/ephemeralcontainers", "pods/exec", "pods/attach"]}]}))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "too-much"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "too-much"},
        "subjects": [{"kind": "ServiceAccount", "name": "irsa-doctor", "namespace": OPERATOR_NAMESPACE}]}))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let probe_name = created.metadata.name.clone().unwrap();
    let path = format!("/api/v1/namespaces/{NS}/pods/{probe_name}");
    let merge = |body: Value| {
        http::Request::patch(path.clone())
            .header("Content-Type", "application/merge-patch+json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap()
    };
    let post = |sub: &str, body: Value| {
        http::Request::post(format!("{path}/{sub}"))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap()
    };
    let subresource_patch = |sub: &str, body: Value| {
        http::Request::patch(format!("{path}/{sub}"))
            .header("Content-Type", "application/merge-patch+json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap()
    };
    let requests = vec![
        (
            "an update",
            merge(json!({"metadata": {"labels": {"app": "web"}}})),
            "not UPDATE them",
        ),
        (
            "an ephemeral container",
            subresource_patch(
                "ephemeralcontainers",
                json!({"spec": {"ephemeralContainers": [{"name": "debug", "image": "busybox",
                    "command": ["sh", "-c", "cat /var/run/secrets/eks.amazonaws.com/serviceaccount/token"]}]}}),
            ),
            "not UPDATE pods/ephemeralcontainers",
        ),
        (
            "a status update",
            subresource_patch("status", json!({"status": {"phase": "Succeeded"}})),
            "not UPDATE pods/status",
        ),
        (
            "a binding to a node",
            post(
                "binding",
                json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": probe_name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": "control-plane"}}),
            ),
            "not CREATE pods/binding",
        ),
        (
            "an eviction",
            post(
                "eviction",
                json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": probe_name}}),
            ),
            "not CREATE pods/eviction",
        ),
        (
            "an exec",
            http::Request::post(format!("{path}/exec?command=id&stdout=true"))
                .body(Vec::new())
                .unwrap(),
            "not CONNECT pods/exec",
        ),
    ];
    for (what, request, expected) in requests {
        let message = refusal(what, operator.request::<Value>(request).await);
        assert!(message.contains(expected), "{what}: {message}");
    }

    // Deletes: only probe pods.
    let m = refusal(
        "deleting a workload",
        as_operator
            .delete("workload", &DeleteParams::default())
            .await,
    );
    assert!(m.contains("irsa-doctor.io/probe=true"), "{m}");
    let m = refusal(
        "deleting a labelled pod no IrsaCheck controls",
        as_operator
            .delete("copycat", &DeleteParams::default())
            .await,
    );
    assert!(m.contains("ownerReference"), "{m}");
    as_operator
        .delete(&created.metadata.name.unwrap(), &DeleteParams::default())
        .await
        .unwrap();
    // The admin deletes what it likes.
    for name in ["workload", "copycat"] {
        as_admin
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_policy_is_accepted_and_admits_only_metrics_from_the_listed_peers() {
    let cluster = Cluster::start(ClusterOptions {
        without_node: true,
        chart_values: vec![
            "networkPolicy.enabled=true".into(),
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring".into(),
            "networkPolicy.metricsFrom[0].podSelector.matchLabels.app\\.kubernetes\\.io/name=prometheus".into(),
        ],
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let policies: Api<NetworkPolicy> = Api::namespaced(cluster.client(), OPERATOR_NAMESPACE);
    let policy = policies.get("irsa-doctor").await.unwrap();
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/name"],
        "irsa-doctor"
    );
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    assert!(spec.egress.is_none(), "egress is not restricted");
    let ingress = spec.ingress.unwrap();
    assert_eq!(ingress.len(), 1);
    let peer = &ingress[0].from.as_ref().unwrap()[0];
    assert_eq!(
        peer.namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(
        peer.pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["app.kubernetes.io/name"],
        "prometheus"
    );
    let port = &ingress[0].ports.as_ref().unwrap()[0];
    assert_eq!(
        port.port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into()))
    );

    // No peers listed: nobody may connect (an empty ingress list), still accepted.
    kubectl_apply(
        cluster.kubeconfig_path(),
        &helm_template(&["networkPolicy.enabled=true".to_string()], false).unwrap(),
    )
    .unwrap();
    let spec = policies.get("irsa-doctor").await.unwrap().spec.unwrap();
    assert!(
        spec.ingress.unwrap_or_default().is_empty(),
        "no peer, no ingress rule"
    );
    // On by default (admitting no one until Prometheus is listed); off only when asked.
    let default = rendered(&[]).unwrap();
    assert!(default.iter().any(|d| d["kind"] == "NetworkPolicy"));
    let off = rendered(&["networkPolicy.enabled=false"]).unwrap();
    assert!(off.iter().all(|d| d["kind"] != "NetworkPolicy"));
}
