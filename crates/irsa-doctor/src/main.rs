//! The `irsa-doctor` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    irsa_doctor::cli::main(irsa_doctor::cli::Cli::parse()).await
}
