//! The command line: `lint` (offline), `check` (one-shot), `run` (the operator), `crd`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod args;
pub mod check;
pub mod inputs;
pub mod lint;
pub mod output;

/// Diagnoses IAM Roles for Service Accounts (IRSA) on Amazon EKS and says how to fix what is wrong.
#[derive(Debug, Parser)]
#[command(name = "irsa-doctor", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The operator: watch IrsaChecks and ServiceAccounts, write conditions, Events and metrics.
    Run(Box<args::RunArgs>),
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

/// Runs a parsed command line; errors are printed here, the only place `anyhow` meets the user.
pub async fn main(cli: Cli) -> ExitCode {
    let (name, result) = match cli.command {
        Command::Lint(args) => ("lint", lint::run(&args)),
        Command::Check(args) => ("check", check::run(&args).await),
        Command::Run(args) => (
            "run",
            crate::operator::run(*args)
                .await
                .map(|stopped| ExitCode::from(stopped.exit_code()))
                .map_err(anyhow::Error::from),
        ),
        Command::Crd => {
            print!("{}", crate::api::crd_yaml());
            ("crd", Ok(ExitCode::SUCCESS))
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("irsa-doctor {name}: error: {e:#}");
        ExitCode::from(2)
    })
}
