//! irsa-doctor: diagnoses IAM Roles for Service Accounts (IRSA) on Amazon EKS.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inputs;
mod lint;
mod output;

/// Diagnoses IAM Roles for Service Accounts (IRSA) on Amazon EKS and says how to fix what is wrong.
#[derive(Debug, Parser)]
#[command(name = "irsa-doctor", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline check of ServiceAccount manifests against trust policies, for CI pipelines.
    ///
    /// Exit status: 0 no error findings, 1 error findings, 2 unusable input.
    Lint(lint::LintArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Lint(args) => match lint::run(&args) {
            Ok(outcome) => outcome.exit_code(),
            Err(e) => {
                eprintln!("irsa-doctor lint: error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
