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
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Serve {
        kubeconfig,
        port,
        issuer,
        kubelet,
    } = Cli::parse().command;
    let mut options = Options {
        port,
        kubelet: kubelet.then(KubeletOptions::default),
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
