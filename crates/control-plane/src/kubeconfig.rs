//! Kubeconfigs and clients for a token on the control plane.

use std::path::Path;

use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

fn document(url: &str, ca_pem: &str, token: &str) -> serde_json::Value {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": url, "certificate-authority-data": ca}}],
        "users": [{"name": "test", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "default"}}],
        "current-context": "test",
    })
}

/// Writes a kubeconfig for `token` at `path`.
pub fn write(path: &Path, url: &str, ca_pem: &str, token: &str) -> anyhow::Result<()> {
    std::fs::write(
        path,
        serde_yaml_ng::to_string(&document(url, ca_pem, token))?,
    )?;
    Ok(())
}

/// A client for `token`.
pub fn client(url: &str, ca_pem: &str, token: &str) -> anyhow::Result<kube::Client> {
    let kubeconfig: Kubeconfig = serde_json::from_value(document(url, ca_pem, token))?;
    let config = futures_lite_block(kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &KubeConfigOptions::default(),
    ))?;
    Ok(kube::Client::try_from(config)?)
}

/// `from_custom_kubeconfig` is async only in signature: it does no I/O for an inline config.
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("an inline kubeconfig needs no I/O"),
    }
}
