//! The `irsa-doctor` binary (and, under the name `kubectl-irsa_doctor`, the kubectl plugin):
//! parses the command line and hands over to the library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let (invocation, cli) = irsa_doctor::cli::parse_args(std::env::args_os());
    irsa_doctor::cli::main(invocation, cli).await
}
