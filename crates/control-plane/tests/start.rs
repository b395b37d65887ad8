//! The control plane starts, serves the EKS-shaped issuer, mints tokens for ServiceAccounts,
//! enforces RBAC, and records who asked for what; nothing is left running after drop.

use control_plane::ControlPlane;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_mints_tokens_enforces_rbac_and_audits() {
    let plane = ControlPlane::start().await.unwrap();
    eprintln!("kube-apiserver {}", plane.version());
    assert!(plane.version().starts_with("v1."), "{}", plane.version());
    assert!(plane
        .issuer()
        .starts_with("https://oidc.eks.us-east-1.amazonaws.com/id/"));
    let client = plane.client().unwrap();
    let discovery: serde_json::Value = client
        .request(
            http::Request::get("/.well-known/openid-configuration")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], plane.issuer());

    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "t"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "app"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "t")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let kubeconfig = plane.service_account_kubeconfig("t", "app").await.unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let app = kube::Client::try_from(config).unwrap();
    let refused = Api::<ServiceAccount>::namespaced(app, "t")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 403),
        "RBAC is enforced: {refused}"
    );
    let requests = plane.requests_from("").unwrap();
    assert!(
        requests.contains_key(&("".into(), "serviceaccounts/token".into(), "create".into())),
        "{requests:?}"
    );
}
