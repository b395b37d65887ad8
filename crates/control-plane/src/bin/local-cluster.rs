//! `local-cluster`: the control plane the tests run on, for people. etcd, kube-apiserver and
//! kube-controller-manager with RBAC enforced, one node whose pods run as local processes, the
//! EKS pod identity webhook's emulation, the EKS Pod Identity API stand-in and, with `--moto`,
//! moto for IAM and STS. Prints the kubeconfig and the `export` lines to use it with `kubectl`,
//! `helm`, `aws` and `irsa-doctor check`, then runs until interrupted and removes everything.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use control_plane::eks::Eks;
use control_plane::node::{KubeletOptions, NodeAgent};
use control_plane::webhook::{PodIdentityWebhook, WebhookOptions};
use control_plane::ControlPlane;

/// A local Kubernetes cluster shaped like EKS, until interrupted.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Run the containers of image REPOSITORY (without tag or digest) as the local BINARY with
    /// the container's args, as the image's entrypoint would; repeatable.
    #[arg(long = "image", value_name = "REPOSITORY=BINARY", value_parser = image)]
    images: Vec<(String, PathBuf)>,
    /// Set NAME=VALUE in every container the node runs; repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = variable)]
    env: Vec<(String, String)>,
    /// Start moto (`moto_server` from PATH) for IAM and STS, and point every container at it.
    #[arg(long)]
    moto: bool,
    /// The EKS cluster name the Pod Identity API stand-in answers for.
    #[arg(long, default_value = "local")]
    cluster_name: String,
    /// The AWS account in the stand-in's association ARNs (moto's default account).
    #[arg(long, default_value = "123456789012")]
    account: String,
    /// Also write the `export` lines to this file, last, once the cluster is ready (for
    /// scripts: wait for it, then `source` it).
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
}

fn pair(s: &str, what: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected {what}, got {s:?}")),
    }
}

fn image(s: &str) -> Result<(String, PathBuf), String> {
    let (repository, binary) = pair(s, "REPOSITORY=BINARY")?;
    let binary = std::fs::canonicalize(&binary)
        .map_err(|e| format!("binary {binary:?} of image {repository}: {e}"))?;
    Ok((repository, binary))
}

fn variable(s: &str) -> Result<(String, String), String> {
    pair(s, "NAME=VALUE")
}

/// A moto server on a free loopback port, stopped on drop.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Moto {
    fn start() -> anyhow::Result<Moto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting moto_server (`make venv` installs it in .venv/bin)")?;
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Moto {
                    child,
                    url: format!("http://127.0.0.1:{port}"),
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!("moto_server exited ({status}) before listening");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("moto_server did not listen on 127.0.0.1:{port} within 60s")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for SIGINT or SIGTERM.
async fn interrupted() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let moto = match args.moto {
        true => Some(Moto::start()?),
        false => None,
    };
    let plane = ControlPlane::start().await?;
    let eks = Eks::start(&args.cluster_name, &args.account);
    eks.install_addon("eks-pod-identity-agent");
    eks.serve_cluster(plane.issuer());
    let mut exports = vec![
        (
            "KUBECONFIG".to_string(),
            plane.kubeconfig_path().display().to_string(),
        ),
        ("AWS_ENDPOINT_URL_EKS".to_string(), eks.url.clone()),
    ];
    if let Some(moto) = &moto {
        exports.extend(
            [
                ("AWS_ENDPOINT_URL", moto.url.as_str()),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
    }
    // Every container reaches the same AWS endpoints as the shell that exports these, but gets
    // neither the admin's kubeconfig (the node gives each pod its own) nor static keys: as on
    // EKS, a pod's AWS identity is what IRSA or Pod Identity gives it.
    let mut extra_env: Vec<(String, String)> = exports
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "KUBECONFIG" | "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY"
            )
        })
        .cloned()
        .collect();
    extra_env.extend(args.env);
    let node = NodeAgent::start(
        &plane,
        KubeletOptions {
            extra_env,
            images: args.images,
            ..KubeletOptions::default()
        },
    )
    .await?;
    let webhook =
        PodIdentityWebhook::start_with(&plane, WebhookOptions::default(), Some(eks.associated()))
            .await?;

    let lines: String = exports
        .iter()
        .map(|(k, v)| format!("export {k}={v}\n"))
        .collect();
    println!(
        "kube-apiserver {} at {}\nservice-account issuer: {}\nEKS cluster name: {} (Pod Identity API at {})\n\n{lines}",
        plane.version(),
        plane.url(),
        plane.issuer(),
        args.cluster_name,
        eks.url
    );
    if let Some(path) = &args.env_file {
        let mut file = std::fs::File::create(path)
            .with_context(|| format!("writing --env-file {}", path.display()))?;
        file.write_all(lines.as_bytes())?;
    }
    println!("Ready; Ctrl-C stops the cluster and removes its files.");
    interrupted().await?;
    eprintln!("stopping");
    // The webhook and the node talk to the API server: they go first.
    drop(webhook);
    drop(node);
    drop(plane);
    drop(moto);
    Ok(())
}
