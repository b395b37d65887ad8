//! `kube-sim serve`: the simulator as a standalone process, for the demo and for kubectl.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kube_sim::{KubeSim, KubeletOptions, Options};

/// An in-process Kubernetes API server for tests, run standalone.
#[derive(Parser)]
#[command(name = "kube-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until interrupted, writing a kubeconfig for clients.
    Serve {
        /// Where to write the kubeconfig.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The OIDC issuer to advertise.
        #[arg(long)]
        issuer: Option<String>,
        /// Run pods as local processes.
        #[arg(long)]
        kubelet: bool,
        /// Extra environment for pods run as local processes, KEY=VALUE (repeatable), e.g. the
        /// endpoint of a local AWS emulator.
        #[arg(long = "kubelet-env", value_name = "KEY=VALUE", value_parser = parse_env)]
        kubelet_env: Vec<(String, String)>,
    },
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Serve {
        kubeconfig,
        port,
        issuer,
        kubelet,
        kubelet_env,
    } = Cli::parse().command;
    let mut options = Options {
        port,
        kubelet: kubelet.then(|| KubeletOptions {
            extra_env: kubelet_env,
            script: None,
        }),
        ..Options::default()
    };
    if let Some(issuer) = issuer {
        options.issuer = issuer;
    }
    let sim = KubeSim::start_with(options).await?;
    sim.write_kubeconfig(&kubeconfig)?;
    println!(
        "kube-sim serving {} (kubeconfig {})",
        sim.url(),
        kubeconfig.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
