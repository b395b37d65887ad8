//! irsa-doctor: diagnoses IAM Roles for Service Accounts (IRSA) on Amazon EKS.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod conditions;
mod config;
mod context;
mod controller;
mod crd;
mod gather;
mod http;
mod inputs;
mod issuer;
mod kube_client;
mod lint;
mod metrics;
mod output;
mod probe;
mod run;
mod sweep;
mod telemetry;
mod workloads;

/// Diagnoses IAM Roles for Service Accounts (IRSA) on Amazon EKS and says how to fix what is wrong.
#[derive(Debug, Parser)]
#[command(name = "irsa-doctor", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The operator: watch IrsaChecks and ServiceAccounts, write conditions, Events and metrics.
    Run(Box<config::RunArgs>),
    /// One-shot diagnosis with the current kube context and AWS credentials.
    ///
    /// Exit status: 0 no error findings, 1 error findings, 2 could not run.
    Check(check::CheckArgs),
    /// Offline check of ServiceAccount manifests against trust policies, for CI pipelines.
    ///
    /// Exit status: 0 no error findings, 1 error findings, 2 unusable input.
    Lint(lint::LintArgs),
    /// Print the IrsaCheck CustomResourceDefinition.
    Crd,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        Command::Lint(args) => ("lint", lint::run(&args)),
        Command::Check(args) => ("check", check::run(&args).await),
        Command::Run(args) => ("run", run::run(*args).await.map(|()| ExitCode::SUCCESS)),
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            ("crd", Ok(ExitCode::SUCCESS))
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("irsa-doctor {name}: error: {e:#}");
        ExitCode::from(2)
    })
}
